"""Explorers for attribution: controls only; the drawing functions live in :mod:`spectral_lab.plots.attribution`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plots.attribution import attribution_draw
from ._core import explorer

if TYPE_CHECKING:
    from ipywidgets import interactive


def attribution_explorer(model, x, y=None) -> interactive:
    """Pick a sample, a noise scale and an attribution method; see the clean and perturbed maps.

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt, torch
        >>> from spectral_lab import MLP
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = attribution_explorer(MLP(16, 3, width=8), torch.rand(2, 16))
        >>> fig = ui.draw(index=0, noise=0.1, method="saliency", seed=0)
        >>> len(fig.axes)
        4
        >>> plt.close(fig)
    """
    import ipywidgets as w

    from ..attribution import METHODS

    return explorer(
        attribution_draw(model, x, y),
        index=w.IntSlider(0, 0, len(x) - 1, 1, description="sample"),
        noise=w.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.1, description="noise s"),
        method=w.Dropdown(options=list(METHODS), value="saliency", description="method"),
        seed=w.IntSlider(0, 0, 9, 1, description="noise seed"),
    )
