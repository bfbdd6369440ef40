"""Explorer for a monitor's history: controls only; the drawing function lives in
:mod:`spectral_lab.plots.monitor_history`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..plots.monitor_history import monitor_history_draw, monitor_steps
from ._core import explorer

if TYPE_CHECKING:
    from ipywidgets import interactive


def monitor_history_explorer(histories, keys: Sequence[str] = ("sharpness", "loss")) -> interactive:
    """A step slider over recorded monitor histories (``{label: records}``, or one monitor's
    ``history``): every quantity in ``keys`` against the step, with each run's value at the chosen
    step marked.

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import contextlib, io
        >>> import matplotlib.pyplot as plt
        >>> h = [{"step": s, "sharpness": 1.0 + s, "loss": 1 / (1 + s)} for s in (0, 10, 20)]
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = monitor_history_explorer(h)
        >>> fig = ui.draw(step=20)
        >>> [float(ln.get_ydata()[0]) for ln in fig.axes[1].lines if ln.get_marker() == "o"]
        [0.047619047619047616]
        >>> plt.close(fig)
    """
    import ipywidgets as w

    draw = monitor_history_draw(histories, keys)
    steps = monitor_steps(histories)
    return explorer(
        draw, step=w.SelectionSlider(options=steps, value=steps[-1], description="step")
    )
