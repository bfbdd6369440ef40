"""Explorers for attribution: controls only; the drawing functions live in :mod:`spectral_lab.plots.attribution`."""

from __future__ import annotations

from ..plots.attribution import attribution_draw
from ._core import explorer


def attribution_explorer(model, x, y=None):
    """Pick a sample, a noise scale and an attribution method; see the clean and perturbed maps."""
    import ipywidgets as w

    from ..attribution import METHODS

    return explorer(
        attribution_draw(model, x, y),
        index=w.IntSlider(0, 0, len(x) - 1, 1, description="sample"),
        noise=w.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.1, description="noise s"),
        method=w.Dropdown(options=list(METHODS), value="saliency", description="method"),
        seed=w.IntSlider(0, 0, 9, 1, description="noise seed"),
    )
