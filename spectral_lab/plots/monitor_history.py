"""A spectral monitor's recorded history, scrubbed step by step (chapter 11)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

LOG_KEYS = ("loss", "probe_loss", "ntk_drift", "ntk_cond")


def _as_histories(histories) -> dict[str, list[Mapping]]:
    """``{label: records}`` from a mapping of histories or one history (a list of records)."""
    if isinstance(histories, Mapping):
        out = {str(k): list(v) for k, v in histories.items()}
    else:
        out = {"run": list(histories)}
    if not out or not any(out.values()):
        raise ValueError("histories holds no records: train with a monitor first")
    for label, recs in out.items():
        if any(not isinstance(r, Mapping) or "step" not in r for r in recs):
            raise ValueError(f"history {label!r}: every record must be a dict with a 'step'")
    return out


def _finite(recs: Sequence[Mapping], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], r[key]) for r in recs if r.get(key) is not None]
    pts = [(s, float(v)) for s, v in pts if math.isfinite(float(v))]
    return np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts], dtype=float)


def monitor_steps(histories) -> list[int]:
    """The sorted steps at which any of ``histories`` holds a record (the scrubber's positions).

    Example:
        >>> monitor_steps({"a": [{"step": 0}, {"step": 10}], "b": [{"step": 5}]})
        [0, 5, 10]
    """
    return sorted({int(r["step"]) for recs in _as_histories(histories).values() for r in recs})


def monitor_history_draw(
    histories, keys: Sequence[str] = ("sharpness", "loss")
) -> Callable[..., Figure]:
    """``draw(step) -> Figure``: one panel per quantity in ``keys``, one curve per history
    (``{label: records}``, or one monitor's ``history``), a marker on each curve at its last record
    at or before ``step`` and a dotted line at ``step``. Beside ``"sharpness"``, a record's
    ``"two_over_lr"`` is drawn dashed in the curve's colour (the edge of stability ``2/eta``);
    ``loss``, ``probe_loss``, ``ntk_drift`` and ``ntk_cond`` use a log scale.

    Cost: drawing only (the histories are already measured).

    Example:
        >>> h = [{"step": s, "sharpness": 1.0 + s, "two_over_lr": 20.0, "loss": 1 / (1 + s)} for s in range(0, 30, 10)]
        >>> fig = monitor_history_draw({"eta=0.1": h})(step=10)
        >>> [float(ln.get_ydata()[0]) for ln in fig.axes[0].lines if ln.get_marker() == "o"]
        [11.0]
        >>> plt.close(fig)
    """
    hs = _as_histories(histories)
    keys = list(keys)
    if not keys:
        raise ValueError("keys must name at least one recorded quantity, e.g. ('sharpness',)")
    missing = [k for k in keys if not any(r.get(k) is not None for v in hs.values() for r in v)]
    if missing:
        have = sorted({k for v in hs.values() for r in v for k in r})
        raise ValueError(f"keys {missing} are in no record; recorded: {have}")

    def draw(step: int) -> Figure:
        fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.3), squeeze=False)
        for ax, key in zip(axes[0], keys):
            for i, (label, recs) in enumerate(hs.items()):
                xs, ys = _finite(recs, key)
                color = f"C{i % 10}"
                ax.plot(xs, ys, "-", color=color, lw=1.2, label=label)
                if key == "sharpness":
                    tx, ty = _finite(recs, "two_over_lr")
                    if len(tx):
                        ax.plot(tx, ty, "--", color=color, lw=0.8)
                if len(xs) and (xs <= step).any():
                    j = int(np.nonzero(xs <= step)[0][-1])
                    ax.plot([xs[j]], [ys[j]], "o", color=color, ms=6)
            ax.axvline(step, color="0.5", ls=":", lw=1)
            if key in LOG_KEYS and all((_finite(r, key)[1] > 0).all() for r in hs.values()):
                ax.set_yscale("log")
            ax.set(xlabel="step", title=key)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"step {step}", fontsize=10)
        fig.tight_layout()
        return fig

    return draw
