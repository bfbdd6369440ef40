"""Attribution explorer: the draw function for every method, and the widget builds."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from spectral_lab import widgets


def test_attribution_explorer_builds(model_and_data):
    model, x, y = model_and_data
    ui = widgets.attribution_explorer(model, x, y)
    assert callable(ui.draw)
    plt.close(ui.draw(index=0))
