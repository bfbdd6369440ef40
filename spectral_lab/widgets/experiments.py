"""Explorers for experiments: controls only; the drawing functions live in :mod:`spectral_lab.plots.experiments`."""

from __future__ import annotations

from ..plots.experiments import study_draw
from ._core import explorer


def study_explorer(sweep: dict):
    """A slider over the regularisation strengths of a sweep (see :func:`study_draw`)."""
    import ipywidgets as w

    strengths = sorted(sweep)
    scales = list(next(iter(sweep.values())).config.scales)
    return explorer(
        study_draw(sweep),
        strength=w.SelectionSlider(
            options=strengths, value=strengths[len(strengths) // 2], description="strength λ"
        ),
        scale=w.Dropdown(options=scales, value=scales[len(scales) // 2], description="noise s"),
    )
