"""Explorers for ntk: controls only; the drawing functions live in :mod:`spectral_lab.plots.ntk`."""

from __future__ import annotations

from ..plots.ntk import ntk_draw
from ._core import explorer


def ntk_explorer(x, y, steps: int = 200, lr_factor: float = 0.5, seed: int = 0):
    """Width, depth and activation of an MLP -> its block-NTK spectrum, and the training residual
    predicted by ``(I - eta K~)^k r_0`` against actual gradient descent (``eta = lr_factor /
    lambda_max``). ``x`` (N, d) and ``y`` (N, C) float64; keep ``N`` small (tens).
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
