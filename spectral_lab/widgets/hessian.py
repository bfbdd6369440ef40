"""Explorers for hessian: controls only; the drawing functions live in :mod:`spectral_lab.plots.hessian`."""

from __future__ import annotations

from ..plots.hessian import step_size_draw
from ._core import explorer


def step_size_explorer(model, loss_fn, data, lam_max: float, steps: int = 60):
    """A learning-rate slider (in units of ``2 / lambda_max``): gradient descent on the network
    (a copy; ``model`` is not changed) and on a quadratic with the same ``lambda_max``.
    """
    import ipywidgets as w

    draw = step_size_draw(model, loss_fn, data, lam_max, steps)
    return explorer(
        draw,
        lr_over_critical=w.FloatSlider(
            value=0.9, min=0.1, max=1.5, step=0.05, description="η·λmax/2"
        ),
    )
