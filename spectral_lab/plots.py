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


def to_numpy(values) -> np.ndarray:
    """A float numpy array from a tensor (any device, with or without grad), list or array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)


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
    s = np.atleast_2d(to_numpy(spectra))
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


# --------------------------------------------------------------------------------------------
# chapter 08: residual chains and power-law geometry (spectral_lab.geometry)
# --------------------------------------------------------------------------------------------


def plot_orbit_geometry(d: int = 32, alphas: Sequence[float] = (0.0, 0.5, 1.0, 2.0), axes=None):
    """The power-law orbit: spectra ``λ_k(α)``, Fisher information with the Bures line element
    ``(d/4) I(α)``, and the top-radial chart ``r(α)`` with its slope ``½ E_α[log k]``."""
    from . import geometry as geo

    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.3))
    fig = axes[0].figure
    k = np.arange(1, d + 1)
    for a in alphas:
        axes[0].loglog(k, geo.power_law_spectrum(a, d), "o-", ms=2.5, label=rf"$\alpha={a:g}$")
    axes[0].set(xlabel="rank k", ylabel=r"$\lambda_k(\alpha)$", title=f"orbit points, d={d}")
    axes[0].legend()
    grid = np.linspace(0, max(3.0, max(alphas) + 0.5), 200)
    fi = np.array([geo.fisher_information(a, d) for a in grid])
    axes[1].plot(grid, fi, label=r"Fisher $I(\alpha)$")
    axes[1].plot(grid, d / 4 * fi, "--", label=r"Bures $ds^2/d\alpha^2 = (d/4) I$")
    axes[1].set(xlabel=r"$\alpha$", yscale="log", title="information geometry of the orbit")
    axes[1].legend()
    r = np.array([geo.orbit_top_radial(a, d) for a in grid])
    axes[2].plot(grid, r, label=r"$r(\alpha)$")
    axes[2].axhline(0.5 * np.log(d), color="0.5", ls=":", label=r"$\frac{1}{2}\log d$")
    axes[2].set(xlabel=r"$\alpha$", ylabel="top radial", title="top-radial chart (concave)")
    axes[2].legend()
    fig.tight_layout()
    return fig


def plot_power_law_fit(
    spectrum, fit=None, kind: str = "singular", ax=None, title: str | None = None
):
    """Rank-ordered ``p_k`` on log-log axes with the fitted orbit points of the four charts."""
    from . import geometry as geo

    p = geo.spectral_energy(spectrum, kind)
    fit = geo.power_law_fit(spectrum, kind) if fit is None else fit
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.4))
    k = np.arange(1, p.size + 1)
    ax.loglog(k, p, "o", ms=3, color="0.3", label="spectrum")
    for name, a, st in [
        ("ML", fit.alpha_mle, "-"),
        ("LS window", fit.alpha_ls, "--"),
        ("top radial", fit.alpha_top_radial, ":"),
    ]:
        ax.loglog(k, geo.gibbs_distribution(a, p.size), st, label=rf"{name}: $\alpha={a:.2f}$")
    lo, hi = fit.window
    if (lo, hi) != (1, p.size):
        ax.axvspan(lo, hi, color="C2", alpha=0.08)
    verdict = "power law" if fit.is_power_law else "NOT a power law"
    ax.set(
        xlabel="rank k",
        ylabel=r"$p_k = \lambda_k / \sum \lambda$",
        title=title or f"{verdict} (rel. residual {fit.relative_residual:.2f})",
    )
    ax.legend(fontsize=8)
    return ax.figure


def plot_exponent_profile(profiles, labels: Sequence[str] | None = None, axes=None):
    """Per-layer fitted exponent, chart residual ``res_hel`` and effective rank ``k_τ`` along depth."""
    profiles = list(profiles) if isinstance(profiles, (list, tuple)) else [profiles]
    labels = labels or [p.kind for p in profiles]
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    fig = axes[0].figure
    for p, lab in zip(profiles, labels):
        layers = np.arange(1, p.L + 1)
        axes[0].plot(layers, p.alpha, "o-", ms=3, label=lab)
        axes[1].plot(layers, p.res_hel, "o-", ms=3, label=lab)
        axes[2].plot(layers, p.k_tau / p.d, "o-", ms=3, label=lab)
    axes[0].set(xlabel="layer l", ylabel=r"$\hat\alpha_l$ (ML chart)", title="exponent profile")
    axes[1].set(xlabel="layer l", ylabel=r"res$_{hel}$", title="distance to the orbit")
    axes[2].set(
        xlabel="layer l", ylabel=r"$k_\tau / d$", title=f"effective rank, tau={profiles[0].tau:g}"
    )
    axes[0].legend()
    fig.tight_layout()
    return fig


def plot_depth_budget(budget, ax=None, title: str = "adjacent-layer drift vs the depth budget"):
    """Drift ``|α_{l+1} − α_l|`` per interface against the general bound, the budget bound with the
    measured slack and residuals, and the paper's rate ``Lip · (log M)/L``."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.4, 3.4))
    i = np.arange(1, budget.L)
    ax.plot(i, budget.drift, "o-", ms=3, label=r"drift $|\alpha_{l+1}-\alpha_l|$")
    ax.plot(i, budget.bound_general, "--", label=r"Lip$(|\Delta r| + |\Delta\rho|)$")
    ax.plot(i, budget.bound_budget, ":", label=r"Lip$(u (\log M + S)/L + |\Delta\rho|)$")
    ax.axhline(budget.bound_exact, color="C3", lw=1, label=r"Lip $(\log M)/L$")
    ax.set(xlabel="interface l -> l+1", ylabel="exponent drift", yscale="log", title=title)
    ax.legend(fontsize=8)
    return ax.figure
