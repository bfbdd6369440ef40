"""Geometry explorers: residual exponent profile and power-law fit."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from spectral_lab import geometry as g
from spectral_lab import widgets
from spectral_lab.models import ResidualMLP


def test_residual_profile_explorer_static_draws_profile_and_budget():
    ui = widgets.residual_profile_explorer(in_features=8, num_classes=3)
    fig = ui.draw(depth=5, residual_scale=0.1, width=16, factors="static")
    a0, a1 = fig.axes[:2]
    # the plotted exponents are the library's ML exponents for the same seeded model
    torch.manual_seed(0)
    ref = g.exponent_profile(ResidualMLP(8, 3, width=16, depth=5, residual_scale=0.1).double())
    assert np.allclose(a0.lines[0].get_ydata(), ref.alpha)
    assert np.allclose(a1.lines[0].get_ydata(), ref.budget.drift)
    assert "static" in a0.get_title()
    plt.close(fig)


def test_residual_profile_explorer_jacobian_and_controls():
    ui = widgets.residual_profile_explorer(in_features=8, num_classes=3)
    fig = ui.draw(depth=3, residual_scale=0.3, width=8, factors="jacobian")
    assert len(fig.axes[0].lines[0].get_ydata()) == 3
    plt.close(fig)
    names = {c.description for c in ui.children[:-1]}
    assert {"depth L", "scale", "width d", "factors"} <= names


@pytest.mark.parametrize("shape", ["power law", "two-level", "exponential"])
def test_power_law_fit_explorer_verdicts(shape):
    ui = widgets.power_law_fit_explorer(d=64)
    fig = ui.draw(shape=shape, alpha=1.0, noise=0.0)
    title = fig.axes[0].get_title()
    assert title.startswith("power law") == (shape == "power law"), title
    plt.close(fig)
