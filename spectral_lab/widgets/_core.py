"""The one widget factory: a drawing function plus ipywidgets controls."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt


def explorer(draw: Callable[..., object], **controls):
    """``ipywidgets.interactive(draw, **controls)`` with figures closed after display.

    ``controls`` are ipywidgets (sliders, dropdowns) keyed by ``draw``'s argument names.
    The returned object has ``.draw`` (the raw function) for tests.
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
