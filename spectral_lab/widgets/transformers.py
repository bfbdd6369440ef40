"""Explorers for transformers: controls only; the drawing function lives in :mod:`spectral_lab.plots.transformers`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plots.transformers import transformer_draw
from ._core import explorer

if TYPE_CHECKING:
    import torch
    from ipywidgets import interactive


def transformer_explorer(
    x: torch.Tensor | None = None,
    image_size: int = 8,
    patch_size: int = 2,
    dim: int = 16,
    heads: int = 2,
    seed: int = 0,
) -> interactive:
    """Temperature, depth and pre-/post-LN of a random-initialised vision transformer -> the
    effective rank of its residual-stream partial products through depth, and each attention
    layer's value and pattern norms, at the one image ``x``.

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = transformer_explorer(image_size=8, patch_size=4, dim=8)
        >>> fig = ui.draw(temperature=0.5, depth=1, norm="post")
        >>> len(fig.axes[1].lines[0].get_ydata())  # one attention layer
        1
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = transformer_draw(x, image_size, patch_size, dim, heads, seed)
    return explorer(
        draw,
        temperature=w.FloatLogSlider(1.0, base=10, min=-2, max=2, description="temperature"),
        depth=w.IntSlider(2, 1, 6, 1, description="depth"),
        norm=w.Dropdown(options=["pre", "post"], value="pre", description="LayerNorm"),
    )
