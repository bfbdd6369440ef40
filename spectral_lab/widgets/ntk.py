"""Explorers for ntk: controls only; the drawing functions live in :mod:`spectral_lab.plots.ntk`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plots.ntk import ntk_draw
from ._core import explorer

if TYPE_CHECKING:
    from ipywidgets import interactive


def ntk_explorer(x, y, steps: int = 200, lr_factor: float = 0.5, seed: int = 0) -> interactive:
    """Width, depth and activation of an MLP -> its block-NTK spectrum, and the training residual
    predicted by ``(I - eta K~)^k r_0`` against actual gradient descent (``eta = lr_factor /
    lambda_max``). ``x`` (N, d) and ``y`` (N, C) float64; keep ``N`` small (tens).

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt, torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = ntk_explorer(x, y, steps=10)
        >>> fig = ui.draw(width=16, depth=2)
        >>> len(fig.axes)
        2
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = ntk_draw(x, y, steps, lr_factor, seed)
    return explorer(
        draw,
        width=w.SelectionSlider(
            options=[8, 16, 32, 64, 128, 256, 512, 1024], value=256, description="width"
        ),
        depth=w.IntSlider(2, 2, 5, 1, description="depth"),
        activation=w.Dropdown(
            options=["tanh", "relu", "gelu", "identity"], value="tanh", description="activation"
        ),
    )
