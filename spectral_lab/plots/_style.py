"""The course's matplotlib style (colours, rc settings) and the small helpers every figure uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from .._extras import require

# the first module spectral_lab.plots imports: without Matplotlib, one message naming the extra
mpl = require("matplotlib", "spectral_lab.plots (the course's figures)")
plt = require("matplotlib.pyplot", "spectral_lab.plots (the course's figures)")

COLORS = ["#1b6ca8", "#e07a1f", "#3a9a5b", "#c0392b", "#7d5ba6", "#8c6d31", "#d46fa8", "#5f6b73"]
"""The course's colour cycle (``C0``... in figures drawn under :data:`STYLE`)."""


STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 90,
    "savefig.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=COLORS),
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}
"""The course's matplotlib rc settings (applied by :func:`use_style` or :func:`style`)."""


def to_numpy(values) -> np.ndarray:
    """A float numpy array from a tensor (any device, with or without grad), list or array.

    Tensors are detached and copied to the CPU in float64. Cost: one copy.

    Example:
        >>> import torch
        >>> to_numpy(torch.tensor([1, 2], requires_grad=False)).tolist()
        [1.0, 2.0]
    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


def use_style() -> None:
    """Apply the course style globally (chapters call this once at the top).

    Example:
        >>> with mpl.rc_context():  # restores the previous settings afterwards
        ...     use_style()
        ...     mpl.rcParams["figure.dpi"]
        90.0
    """
    mpl.rcParams.update(STYLE)


@contextmanager
def style() -> Iterator[None]:
    """The course style inside a ``with`` block only.

    Example:
        >>> with style():
        ...     fig, ax = plt.subplots()
        >>> ax.get_lines() == [] and fig.get_dpi() == 90
        True
        >>> plt.close(fig)
    """
    with mpl.rc_context(STYLE):
        yield


def _axis(ax, figsize=(5, 3.4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax
