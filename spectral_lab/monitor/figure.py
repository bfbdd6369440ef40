"""The monitor's history as a Matplotlib figure, and a notebook display that redraws it in place.

Matplotlib and IPython are the course's packages: imported when a figure is drawn, never when
:mod:`spectral_lab.monitor` is imported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .._extras import require

__all__ = ["LiveFigure", "default_keys", "monitor_figure"]

_LABELS = {
    "sharpness": "sharpness  lambda_max(H)",
    "preconditioned_sharpness": "lambda_max(P^-1 H)",
    "ntk_drift": "NTK drift  ||K_t - K_0||_F / ||K_0||_F",
    "ntk_top": "NTK lambda_max",
    "ntk_cond": "NTK condition number",
    "jac_entropy": "input-Jacobian spectral entropy (nats)",
    "jac_top": "input-Jacobian sigma_1",
    "probe_loss": "probe loss",
}


def default_keys(history: list[dict]) -> list[str]:
    """The panels drawn by default: the sharpness (with ``2/eta``), the preconditioned sharpness,
    the NTK drift, the input Jacobian's entropy, the layers' stable ranks (one panel), and the probe
    loss -- those present in ``history``."""
    if not history:
        return []
    present = set().union(*history)
    keys = [k for k in ("sharpness", "preconditioned_sharpness", "ntk_drift", "jac_entropy")
            if k in present]  # fmt: skip
    if any(k.startswith("stable_rank/") for k in present):
        keys.append("stable_rank/*")
    return [*keys, "probe_loss"]


def monitor_figure(history: list[dict], keys: Sequence[str] | None = None, fig=None):
    """One panel per key against the step (``"stable_rank/*"``: every layer in one panel); the
    sharpness panel draws ``2/eta`` dashed, the preconditioned one its threshold. ``fig``: redraw
    into an existing figure (cleared first).

    Example:
        >>> h = [{"step": 0, "sharpness": 1.0, "two_over_lr": 4.0, "probe_loss": 2.0},
        ...      {"step": 50, "sharpness": 3.0, "two_over_lr": 4.0, "probe_loss": 1.0}]
        >>> fig = monitor_figure(h)
        >>> len(fig.axes), [float(v) for v in fig.axes[0].lines[0].get_ydata()]
        (2, [1.0, 3.0])
        >>> require("matplotlib.pyplot", "").close(fig)
    """
    plt = require("matplotlib.pyplot", "SpectralMonitor.figure")
    keys = default_keys(history) if keys is None else list(keys)
    n = max(1, len(keys))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    if fig is None:
        fig = plt.figure(figsize=(3.6 * cols, 2.7 * rows))
    fig.clear()
    steps = [h["step"] for h in history]
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        if key == "stable_rank/*":
            names = sorted({k for h in history for k in h if k.startswith("stable_rank/")})
            for name in names:
                ax.plot(steps, [h.get(name, math.nan) for h in history], "o-", ms=3,
                        label=name.split("/", 1)[1])  # fmt: skip
            ax.legend(fontsize=7)
            ax.set_title("stable rank of each weight", fontsize=9)
        else:
            ax.plot(steps, [h.get(key, math.nan) for h in history], "o-", ms=3, label=key)
            ax.set_title(_LABELS.get(key, key), fontsize=9)
            ref = {"sharpness": ("two_over_lr", "2/eta"),
                   "preconditioned_sharpness": ("preconditioned_threshold", "threshold")}.get(key)  # fmt: skip
            if ref and any(ref[0] in h for h in history):
                ax.plot(steps, [h.get(ref[0], math.nan) for h in history], "k--", lw=1,
                        label=ref[1])  # fmt: skip
                ax.legend(fontsize=7)
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig


class LiveFigure:
    """A figure of a monitor's history shown once in a notebook and redrawn in place after each
    measurement (an ``IPython.display`` display id)."""

    def __init__(self, monitor, keys: Sequence[str] | None = None) -> None:
        plt = require("matplotlib.pyplot", "SpectralMonitor.live")
        self.display = require("IPython.display", "SpectralMonitor.live")
        self.monitor, self.keys = monitor, keys
        self.fig = plt.figure()
        plt.close(self.fig)  # shown through the display handle only
        self.handle = None

    def update(self) -> None:
        """Redraw from the monitor's history and refresh the display."""
        monitor_figure(self.monitor.history, self.keys, fig=self.fig)
        if self.handle is None:
            self.handle = self.display.display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)
