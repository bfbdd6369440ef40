"""The course's matplotlib style and the figures every chapter reuses."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

COLORS = ["#1b6ca8", "#e07a1f", "#3a9a5b", "#c0392b", "#7d5ba6", "#8c6d31", "#d46fa8", "#5f6b73"]
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


def use_style() -> None:
    """Apply the course style globally (chapters call this once at the top)."""
    mpl.rcParams.update(STYLE)


@contextmanager
def style():
    """The course style inside a ``with`` block only."""
    with mpl.rc_context(STYLE):
        yield


def plot_history(history, ax=None, keys: Sequence[str] = ("train_acc", "test_acc")):
    """Per-step loss (left) and per-epoch accuracies (right) of a training ``History``."""
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


def plot_spectra(
    spectra,
    ax=None,
    labels: Sequence[str] | None = None,
    normalize: bool = False,
    title: str = "singular values",
):
    """Rank-ordered singular values, one line per row of ``spectra`` (log scale)."""
    s = np.atleast_2d(np.asarray(spectra, dtype=float))
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.4))
    if normalize:
        s = s / s[:, :1]
    ranks = np.arange(1, s.shape[1] + 1)
    for i, row in enumerate(s):
        ax.plot(ranks, row, "o-", ms=3, label=None if labels is None else labels[i])
    ax.set(
        xlabel="rank k",
        ylabel=r"$\sigma_k / \sigma_1$" if normalize else r"$\sigma_k$",
        yscale="log",
        title=title,
    )
    if labels is not None:
        ax.legend()
    return ax.figure


# --- chapters 03-04: NTK and Hessian figures (issue 4) -----------------------------------------


def _axis(ax, figsize=(5, 3.4)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax


def plot_eigenvalues(
    eigenvalues,
    ax=None,
    labels: Sequence[str] | None = None,
    normalize: bool = False,
    title: str = "eigenvalues",
    ylabel: str = r"$\lambda_k$",
):
    """Rank-ordered eigenvalues (descending), one line per entry of ``eigenvalues`` (log scale)."""
    ax = _axis(ax)
    for i, ev in enumerate(eigenvalues):
        e = np.sort(np.asarray(ev, dtype=float).ravel())[::-1]
        if normalize:
            e = e / e[0]
        ax.plot(
            np.arange(1, len(e) + 1), e, "o-", ms=2.5, label=None if labels is None else labels[i]
        )
    ax.set(xlabel="rank k", ylabel=ylabel + (r" / $\lambda_1$" if normalize else ""), title=title)
    ax.set_yscale("log")
    if labels is not None:
        ax.legend()
    return ax.figure


def plot_residuals(predicted, actual=None, ax=None, title: str = "training residual", labels=None):
    """``||r_k||`` against step ``k``: predicted (line) and, optionally, actual (dots)."""
    ax = _axis(ax)
    lp, la = labels or ("predicted $(I-\\eta\\tilde K)^k r_0$", "actual gradient descent")
    ax.plot(np.linalg.norm(np.asarray(predicted, dtype=float), axis=1), label=lp)
    if actual is not None:
        a = np.linalg.norm(np.asarray(actual, dtype=float), axis=1)
        step = max(1, len(a) // 25)
        ax.plot(np.arange(len(a))[::step], a[::step], "o", ms=4, label=la)
    ax.set(xlabel="step k", ylabel=r"$\|r_k\|$", yscale="log", title=title)
    ax.legend()
    return ax.figure


def plot_convergence(results: dict, reference, ax=None, title: str = "convergence"):
    """Relative error of the top eigenvalue estimate against the number of matrix-vector products,
    for each ``EigResult`` in ``results`` (``{label: result}``)."""
    ax = _axis(ax)
    ref = float(np.asarray(reference).ravel()[0])
    for label, r in results.items():
        h = np.asarray(r.history, dtype=float)[:, 0]
        err = np.abs(h - ref) / abs(ref)
        ax.plot(np.asarray(r.history_matvecs), np.maximum(err, 1e-16), "-", label=label)
    ax.set(
        xlabel="matrix-vector products",
        ylabel=r"$|\hat\lambda_1 - \lambda_1| / \lambda_1$",
        yscale="log",
        title=title,
    )
    ax.legend()
    return ax.figure


def plot_density(density, exact=None, ax=None, title: str = "spectral density", label: str = "SLQ"):
    """A :class:`~spectral_lab.linalg.SpectralDensity`, with an optional histogram of exact
    eigenvalues for comparison."""
    ax = _axis(ax)
    if exact is not None:
        ax.hist(
            np.asarray(exact, dtype=float),
            bins=80,
            density=True,
            color="0.8",
            label="exact eigenvalues",
        )
    ax.plot(np.asarray(density.grid), np.asarray(density.density), label=label)
    ax.set(xlabel=r"$\lambda$", ylabel="density", yscale="log", title=title)
    ax.set_ylim(bottom=1e-4)
    ax.legend()
    return ax.figure


def plot_sharpness(trace, ax=None, title: str = "sharpness during gradient descent"):
    """Loss (left) and sharpness ``lambda_max(H)`` with the ``2/eta`` line (right) of a
    :class:`~spectral_lab.hessian.SharpnessTrace`."""
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax = np.atleast_1d(ax)
    ax[0].plot(np.asarray(trace.steps), np.asarray(trace.loss))
    ax[0].set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax[1].plot(
        np.asarray(trace.sharpness_steps),
        np.asarray(trace.sharpness),
        "o-",
        ms=3,
        label=r"$\lambda_{\max}(H)$",
    )
    ax[1].axhline(2 / trace.lr, color="C3", ls="--", label=r"$2/\eta$")
    ax[1].set(xlabel="step", ylabel="sharpness", title=title)
    ax[1].legend()
    ax[0].figure.tight_layout()
    return ax[0].figure
