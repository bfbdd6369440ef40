"""Explorers for spectra: controls only; the drawing functions live in :mod:`spectral_lab.plots.spectra`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plots.spectra import depth_spectra_draw, entropy_draw, jacobian_spectrum_draw
from ._core import explorer

if TYPE_CHECKING:
    from ipywidgets import interactive


def jacobian_spectrum_explorer(model, x, y=None) -> interactive:
    """Pick a sample with a slider; see the input and its Jacobian's singular values.

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt, torch
        >>> from spectral_lab import MLP
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = jacobian_spectrum_explorer(MLP(6, 3, width=8), torch.randn(4, 6))
        >>> fig = ui.draw(index=2)
        >>> len(fig.axes[1].lines)
        5
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = jacobian_spectrum_draw(model, x, y)
    return explorer(draw, index=w.IntSlider(0, 0, len(x) - 1, 1, description="sample"))


def depth_spectra_explorer(x, num_classes: int = 10, seed: int = 0) -> interactive:
    """Sliders for initialisation gain, width, depth and activation; redraws the spectra of the
    partial products ``W_l D_{l-1} ... W_1`` at the first input of ``x`` (chapter 01).

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt, torch
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = depth_spectra_explorer(torch.randn(2, 5), num_classes=3)
        >>> fig = ui.draw(width=8, depth=2)
        >>> len(fig.axes)
        2
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = depth_spectra_draw(x, num_classes, seed)
    return explorer(
        draw,
        gain=w.FloatLogSlider(value=1.0, base=2, min=-2, max=2, step=0.25, description="gain"),
        width=w.IntSlider(64, 8, 256, 8, description="width"),
        depth=w.IntSlider(4, 1, 12, 1, description="depth"),
        activation=w.Dropdown(
            options=["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "identity"],
            value="tanh",
            description="activation",
        ),
        normalize=w.Checkbox(False, description=r"divide by sigma_1"),
    )


def entropy_explorer(J, eps: float = 0.1) -> interactive:
    """Pick a Jacobian, flatten its spectrum with a slider, watch SE, ranks, condition numbers and
    the sensitivity bounds move (chapter 02).

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt, torch
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = entropy_explorer(torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0)))
        >>> fig = ui.draw(index=1, t=0.5)
        >>> len(fig.axes[1].patches)  # p_k for the 3 ranks
        3
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = entropy_draw(J, eps)
    return explorer(
        draw,
        index=w.IntSlider(0, 0, len(J) - 1, 1, description="sample"),
        t=w.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="flatten t"),
        base=w.Dropdown(options=["e", "2"], value="e", description="log base"),
    )
