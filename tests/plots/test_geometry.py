"""Geometry figures return what they draw."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from spectral_lab import geometry as g
from spectral_lab import plots
from spectral_lab.models import ResidualMLP


def test_geometry_plots_return_figures():
    fig = plots.plot_orbit_geometry(16, (0.0, 1.0))
    fi = fig.axes[1].lines
    assert np.allclose(fi[1].get_ydata(), 16 / 4 * fi[0].get_ydata())
    plt.close(fig)
    prof = g.exponent_profile(ResidualMLP(4, 2, width=8, depth=4).double())
    fig = plots.plot_exponent_profile([prof], ["static"])
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), prof.alpha)
    plt.close(fig)
    fig = plots.plot_depth_budget(prof.budget)
    assert np.allclose(fig.axes[0].lines[0].get_ydata(), prof.budget.drift)
    plt.close(fig)
    fig = plots.plot_power_law_fit(np.sqrt(g.power_law_spectrum(1.0, 32)))
    assert fig.axes[0].get_title().startswith("power law")
    plt.close(fig)
