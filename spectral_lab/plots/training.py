"""Training curves."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def plot_history(history, ax=None, keys: Sequence[str] = ("train_acc", "test_acc")) -> Figure:
    """Per-step loss (left) and per-epoch accuracies (right) of a training ``History``.

    Example:
        >>> from spectral_lab.training import History
        >>> h = History(step_loss=[1.0, 0.5, 0.25], epochs=[{"epoch": 1, "train_acc": 0.8, "test_acc": 0.7}])
        >>> fig = plot_history(h)
        >>> len(fig.axes), np.asarray(fig.axes[0].lines[0].get_ydata()).tolist()
        (2, [1.0, 0.5, 0.25])
        >>> plt.close(fig)
    """
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    else:
        fig = np.atleast_1d(ax)[0].figure
    ax = np.atleast_1d(ax)
    ax[0].plot(history.step_loss, lw=1)
    ax[0].set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    if len(ax) > 1:
        epochs = [e["epoch"] for e in history.epochs]
        for k in keys:
            if history.epochs and k in history.epochs[0]:
                ax[1].plot(epochs, [e[k] for e in history.epochs], "o-", label=k)
        ax[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        ax[1].legend()
    fig.tight_layout()
    return fig
