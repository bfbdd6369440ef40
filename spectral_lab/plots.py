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


# --- chapters 01-02: operator products, spectra through depth, sensitivity bounds -------------


def plot_depth_spectra(partial_spectra, ax=None, normalize: bool = False, title: str = ""):
    """Singular values of the partial products ``F_k ... F_1`` through depth.

    ``partial_spectra`` is ``[(name, s), ...]`` from ``OperatorProduct.partial_spectra``; one line
    per partial product, coloured from dark (shallow) to light (deep), log scale. Singular values
    below ``1e-12 sigma_1`` (numerical zeros of a rank-deficient product) are left out.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
    n = len(partial_spectra)
    cmap = plt.get_cmap("viridis")
    for i, (name, s) in enumerate(partial_spectra):
        s = np.asarray(s.detach().cpu() if hasattr(s, "detach") else s, dtype=float)
        s = s[s > s[0] * 1e-12]  # numerical zeros (rank-deficient products) are not drawn
        if normalize:
            s = s / s[0]
        ax.plot(np.arange(1, len(s) + 1), s, color=cmap(i / max(1, n - 1)), lw=1.4, label=name)
    ax.set(
        xlabel="rank k",
        ylabel=r"$\sigma_k / \sigma_1$" if normalize else r"$\sigma_k$",
        yscale="log",
        xscale="log",
        title=title or "singular values of the partial products",
    )
    if n <= 10:
        ax.legend(ncol=2, fontsize=8)
    return ax.figure


def plot_depth_summary(names, values, ax=None, ylabel: str = "", title: str = "", label=None):
    """One number per partial product (e.g. sigma_1, condition number) against depth."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(range(len(names)), values, "o-", ms=4, label=label)
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 12 else 0, fontsize=8)
    ax.set(xlabel="partial product up to factor", ylabel=ylabel, yscale="log", title=title)
    if label is not None:
        ax.legend()
    return ax.figure


def plot_gates(gates, ax=None, title: str = "gates D_l(x): which units are on"):
    """Gate diagonals ``phi'(z_l(x))`` as an image: rows = inputs, columns = units."""
    g = np.asarray(gates.detach().cpu() if hasattr(gates, "detach") else gates, dtype=float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 2.6))
    im = ax.imshow(g, aspect="auto", cmap="magma", vmin=0, interpolation="nearest")
    ax.set(xlabel="hidden unit", ylabel="input", title=title)
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, label=r"$\phi'(z)$")
    return ax.figure


def plot_sensitivity_bounds(bounds, monte_carlo=None, ax=None, title: str = ""):
    """Per sample: Monte-Carlo mean squared change, typical ``eps^2||J||_F^2/d``, entropy bound
    ``K eps^2 exp(SE)``, rank bound and worst case ``eps^2 sigma_1^2`` (log scale)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
    n = len(bounds.typical)
    idx = np.arange(n)
    rows = [
        ("worst case $\\epsilon^2\\sigma_1^2$", bounds.worst_case, "v", COLORS[3]),
        ("rank bound", bounds.rank_bound, "s", COLORS[5]),
        ("entropy bound $K\\epsilon^2 e^{SE}$", bounds.entropy_bound, "^", COLORS[1]),
        ("typical $\\epsilon^2\\|J\\|_F^2/d$", bounds.typical, "o", COLORS[0]),
    ]
    for label, v, marker, color in rows:
        ax.plot(idx, np.asarray(v.detach().cpu(), float), marker, color=color, ms=5, label=label)
    if monte_carlo is not None:
        mc = np.asarray(monte_carlo.detach().cpu(), float)
        ax.plot(idx, mc, "x", color="k", ms=6, label="Monte Carlo")
    ax.set(xlabel="sample", ylabel=r"$\|\Delta f\|^2$", yscale="log", title=title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return ax.figure
