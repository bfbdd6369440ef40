"""Explorers for geometry: controls only; the drawing functions live in :mod:`spectral_lab.plots.geometry`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plots.geometry import power_law_fit_draw, residual_profile_draw
from ._core import explorer

if TYPE_CHECKING:
    from ipywidgets import interactive


def residual_profile_explorer(
    in_features: int = 64, num_classes: int = 10, seed: int = 0, x=None
) -> interactive:
    """Depth, residual scale and width -> the exponent profile of a (random-init) ``ResidualMLP``
    and its adjacent-layer drift against the depth budget ``(log M)/L``.

    Static-weight factors by default; choose "jacobian" to use the data-dependent factors at the
    rows of ``x`` (random inputs when ``x`` is None; slower).

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = residual_profile_explorer(in_features=4, num_classes=2)
        >>> fig = ui.draw(depth=3, width=6)
        >>> len(fig.axes[0].lines[0].get_ydata())  # one exponent per layer
        3
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = residual_profile_draw(in_features, num_classes, seed, x)
    return explorer(
        draw,
        depth=w.IntSlider(12, 2, 32, 1, description="depth L"),
        residual_scale=w.FloatLogSlider(0.1, base=10, min=-2.5, max=0.3, description="scale"),
        width=w.IntSlider(32, 8, 96, 8, description="width d"),
        factors=w.Dropdown(options=["static", "jacobian"], value="static", description="factors"),
    )


def power_law_fit_explorer(d: int = 64, seed: int = 0) -> interactive:
    """Pick a spectrum shape (power law, two-level, exponential), its exponent and noise; see the
    four fitted charts and the verdict of :func:`spectral_lab.geometry.power_law_fit`.

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = power_law_fit_explorer(d=16)
        >>> fig = ui.draw(shape="two-level", alpha=1.0, noise=0.0)
        >>> len(fig.axes)
        1
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = power_law_fit_draw(d, seed)
    return explorer(
        draw,
        shape=w.Dropdown(options=["power law", "two-level", "exponential"], description="shape"),
        alpha=w.FloatSlider(1.0, min=0.0, max=3.0, step=0.05, description="alpha / steepness"),
        noise=w.FloatSlider(0.05, min=0.0, max=0.5, step=0.01, description="log-noise"),
    )
