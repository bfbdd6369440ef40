"""Explorers for geometry: controls only; the drawing functions live in :mod:`spectral_lab.plots.geometry`."""

from __future__ import annotations

from ..plots.geometry import power_law_fit_draw, residual_profile_draw
from ._core import explorer


def residual_profile_explorer(in_features: int = 64, num_classes: int = 10, seed: int = 0, x=None):
    """Depth, residual scale and width -> the exponent profile of a (random-init) ``ResidualMLP``
    and its adjacent-layer drift against the depth budget ``(log M)/L``.

    Static-weight factors by default; choose "jacobian" to use the data-dependent factors at the
    rows of ``x`` (random inputs when ``x`` is None; slower).
    """
    import ipywidgets as w

    draw = residual_profile_draw(in_features, num_classes, seed, x)
    return explorer(
        draw,
        depth=w.IntSlider(12, 2, 32, 1, description="depth L"),
        residual_scale=w.FloatLogSlider(0.1, base=10, min=-2.5, max=0.3, description="scale"),
        width=w.IntSlider(32, 8, 96, 8, description="width d"),
        factors=w.Dropdown(options=["static", "jacobian"], value="static", description="factors"),
    )


def power_law_fit_explorer(d: int = 64, seed: int = 0):
    """Pick a spectrum shape (power law, two-level, exponential), its exponent and noise; see the
    four fitted charts and the verdict of :func:`spectral_lab.geometry.power_law_fit`.
    """
    import ipywidgets as w

    draw = power_law_fit_draw(d, seed)
    return explorer(
        draw,
        shape=w.Dropdown(options=["power law", "two-level", "exponential"], description="shape"),
        alpha=w.FloatSlider(1.0, min=0.0, max=3.0, step=0.05, description="alpha / steepness"),
        noise=w.FloatSlider(0.05, min=0.0, max=0.5, step=0.01, description="log-noise"),
    )
