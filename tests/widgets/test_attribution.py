"""Attribution explorer: the draw function for every method, and the widget builds."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from spectral_lab import widgets


@pytest.mark.parametrize(
    "method", ["saliency", "grad_x_input", "smoothgrad", "integrated_gradients"]
)
def test_attribution_draw_every_method(model_and_data, method):
    model, x, y = model_and_data
    fig = widgets.attribution_draw(model, x, y)(index=3, noise=0.1, method=method, seed=1)
    assert len(fig.axes) == 4 and "Δgrad" in fig._suptitle.get_text()
    plt.close(fig)


def test_attribution_explorer_builds(model_and_data):
    model, x, y = model_and_data
    ui = widgets.attribution_explorer(model, x, y)
    assert callable(ui.draw)
    plt.close(ui.draw(index=0))
