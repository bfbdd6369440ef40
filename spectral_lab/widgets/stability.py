"""Explorers for stability: controls only; the drawing functions live in :mod:`spectral_lab.plots.stability`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plots.stability import stability_draw
from ._core import explorer

if TYPE_CHECKING:
    from ipywidgets import interactive


def stability_explorer(profile, key: str = "jac_top") -> interactive:
    """Chapter 05: slide the quantile level ``q`` and switch ``max``/``geomean`` aggregation; see
    the index terms move and where ``Q_q`` falls in the per-sample histogram (no recomputation).

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt, torch
        >>> from spectral_lab import MLP
        >>> from spectral_lab.stability import stability_profile
        >>> prof = stability_profile(MLP(4, 3, width=8), torch.randn(16, 4), operators=("input_jacobian",))
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = stability_explorer(prof)
        >>> fig = ui.draw(q=0.9, agg="geomean")
        >>> len(fig.axes)
        2
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = stability_draw(profile, key)
    return explorer(
        draw,
        q=w.FloatSlider(1.0, min=0.5, max=1.0, step=0.01, description="quantile q"),
        agg=w.Dropdown(options=["max", "geomean"], value="max", description="aggregate"),
    )
