"""Explorers for stability: controls only; the drawing functions live in :mod:`spectral_lab.plots.stability`."""

from __future__ import annotations

from ..plots.stability import stability_draw
from ._core import explorer


def stability_explorer(profile, key: str = "jac_top"):
    """Chapter 05: slide the quantile level ``q`` and switch ``max``/``geomean`` aggregation; see
    the index terms move and where ``Q_q`` falls in the per-sample histogram (no recomputation).
    """
    import ipywidgets as w

    draw = stability_draw(profile, key)
    return explorer(
        draw,
        q=w.FloatSlider(1.0, min=0.5, max=1.0, step=0.01, description="quantile q"),
        agg=w.Dropdown(options=["max", "geomean"], value="max", description="aggregate"),
    )
