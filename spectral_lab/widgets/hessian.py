"""Explorers for hessian: controls only; the drawing functions live in :mod:`spectral_lab.plots.hessian`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plots.hessian import step_size_draw
from ._core import explorer

if TYPE_CHECKING:
    from ipywidgets import interactive


def step_size_explorer(model, loss_fn, data, lam_max: float, steps: int = 60) -> interactive:
    """A learning-rate slider (in units of ``2 / lambda_max``): gradient descent on the network
    (a copy; ``model`` is not changed) and on a quadratic with the same ``lambda_max``.

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt, torch
        >>> lin = torch.nn.Linear(2, 1, bias=False).double()
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = step_size_explorer(lin, "mse", (x, torch.zeros(2, 1, dtype=torch.float64)), lam_max=2.0, steps=5)
        >>> fig = ui.draw(lr_over_critical=1.2)  # above 2 / lambda_max: the loss grows
        >>> losses = fig.axes[1].lines[0].get_ydata()
        >>> bool(losses[-1] > losses[0])
        True
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = step_size_draw(model, loss_fn, data, lam_max, steps)
    return explorer(
        draw,
        lr_over_critical=w.FloatSlider(
            value=0.9, min=0.1, max=1.5, step=0.05, description="η·λmax/2"
        ),
    )
