"""Attribution figures: saliency maps and entropy vs instability."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch

import spectral_lab as sl
from spectral_lab import plots


def test_attribution_plots(model_and_data):
    model, x, y = model_and_data
    inst = sl.attribution_instability(model, x, scales=(0.1,), num_draws=2)
    fig = plots.plot_saliency_maps(
        x[:4], inst.clean[:4], inst.perturbed[0, :4], titles=[str(int(t)) for t in y[:4]]
    )
    assert len(fig.axes) == 12
    plt.close(fig)
    rng = np.random.default_rng(0)
    se, dg = rng.uniform(size=80), rng.uniform(size=80)
    fig = plots.plot_entropy_instability(
        se, dg, sl.attribution.upper_envelope(se, dg, bins=5), rho=0.1
    )
    assert "Spearman" in fig.axes[0].get_title()
    plt.close(fig)
    # colour images (3 channels) become one heat map
    assert plots._as_heat(torch.ones(3, 4, 4)).shape == (4, 4)
    assert plots._as_image(torch.ones(3, 4, 4)).shape == (4, 4, 3)
