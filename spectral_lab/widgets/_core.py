"""The one widget factory: a drawing function plus ipywidgets controls."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from ipywidgets import interactive


def explorer(draw: Callable[..., object], **controls) -> interactive:
    """``ipywidgets.interactive(draw, **controls)`` with figures closed after display.

    ``controls`` are ipywidgets (sliders, dropdowns) keyed by ``draw``'s argument names.
    The returned object has ``.draw`` (the raw function) for tests.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> def draw(n: int = 2):
        ...     fig, ax = plt.subplots()
        ...     ax.plot(range(n))
        ...     return fig
        >>> import ipywidgets as w
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = explorer(draw, n=w.IntSlider(3, 1, 5))
        >>> fig = ui.draw(n=4)
        >>> len(fig.axes[0].lines[0].get_xdata()), type(ui).__name__
        (4, 'interactive')
        >>> plt.close(fig)
    """
    import ipywidgets as w
    from IPython.display import display

    def show(**values):
        fig = draw(**values)
        if fig is not None:
            display(fig)
            plt.close(fig)

    ui = w.interactive(show, **controls)
    ui.draw = draw
    return ui
