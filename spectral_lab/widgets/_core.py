"""The one widget factory: a drawing function plus ipywidgets controls."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._extras import require

# imported before every explorer module: without ipywidgets, one message naming the extra
require("ipywidgets", "spectral_lab.widgets (the course's explorers)")
plt = require("matplotlib.pyplot", "spectral_lab.widgets (the course's explorers)")

if TYPE_CHECKING:
    from ipywidgets import interactive


def _png(fig) -> bytes:
    """The figure as PNG bytes, drawn the way the inline backend draws it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def explorer(draw: Callable[..., object], **controls) -> interactive:
    """``ipywidgets.interactive(draw, **controls)`` with figures closed after display.

    ``controls`` are ipywidgets (sliders, dropdowns) keyed by ``draw``'s argument names.
    The returned object has ``.draw`` (the raw function) for tests.

    Where no live widget can render (the HTML book, a committed notebook opened before it is
    run or trusted, GitHub's viewer), the output still shows a picture: the widget's display data
    carries its first drawn figure as ``image/png`` beside the widget view, so a static renderer
    picks the PNG while a live JupyterLab shows the sliders.

    Example:
        >>> import contextlib, io
        >>> import ipywidgets as w
        >>> def draw(k):
        ...     fig, ax = plt.subplots()
        ...     ax.plot(range(k + 2))
        ...     return fig
        >>> with contextlib.redirect_stdout(io.StringIO()):  # outside IPython display() prints
        ...     ui = explorer(draw, k=w.IntSlider(1, 0, 3))
        >>> bundle = ui._repr_mimebundle_()
        >>> sorted(bundle)
        ['application/vnd.jupyter.widget-view+json', 'image/png', 'text/plain']
        >>> bundle["image/png"][:4] == b"\\x89PNG"
        True
    """
    import ipywidgets as w
    from IPython.display import display

    first: dict[str, bytes] = {}

    def show(**values):
        fig = draw(**values)
        if fig is not None:
            if "png" not in first:
                first["png"] = _png(fig)
            display(fig)
            plt.close(fig)

    class Explorer(w.interactive):
        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs) or {}
            if "png" in first:
                bundle = {**bundle, "image/png": first["png"]}
            return bundle

    ui = Explorer(show, **controls)
    ui.draw = draw
    return ui
