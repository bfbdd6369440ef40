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
    per partial product, coloured from light (shallow) to dark (deep), log scale.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
    n = len(partial_spectra)
    cmap = plt.get_cmap("viridis")
    for i, (name, s) in enumerate(partial_spectra):
        s = np.asarray(s.detach().cpu() if hasattr(s, "detach") else s, dtype=float)
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


# --------------------------------------------------------------------------- chapters 06-07
def _as_heat(a) -> np.ndarray:
    """An attribution (C, H, W) / (H, W) / (d,) as a 2-D heat map (sum of |a| over channels)."""
    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=float)
    if a.ndim == 3:
        return np.abs(a).sum(0)
    if a.ndim == 1:
        side = int(round(np.sqrt(a.size)))
        return np.abs(a).reshape(side, side) if side * side == a.size else np.abs(a)[None]
    return np.abs(a)


def _as_image(x) -> np.ndarray:
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)
    if x.ndim == 3:
        return x[0] if x.shape[0] == 1 else np.clip(x.transpose(1, 2, 0), 0, 1)
    return x


def plot_saliency_maps(
    images,
    clean,
    perturbed,
    titles: Sequence[str] | None = None,
    row_labels=("input", "clean |a(x)|", "perturbed |a(x+δ)|"),
):
    """Columns: samples; rows: the input, its clean saliency, its saliency under noise. Each
    column's two maps share one colour scale so the change is visible."""
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.5 * n + 0.6, 4.6), squeeze=False)
    for j in range(n):
        h0, h1 = _as_heat(clean[j]), _as_heat(perturbed[j])
        vmax = max(h0.max(), h1.max(), 1e-12)
        axes[0, j].imshow(
            _as_image(images[j]), cmap="gray_r" if np.ndim(_as_image(images[j])) == 2 else None
        )
        axes[1, j].imshow(h0, cmap="magma", vmin=0, vmax=vmax)
        axes[2, j].imshow(h1, cmap="magma", vmin=0, vmax=vmax)
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    for i, lab in enumerate(row_labels):
        axes[i, 0].set_ylabel(lab, fontsize=8)
    fig.tight_layout()
    return fig


def plot_entropy_instability(
    se,
    instability,
    envelope=None,
    rho: float | None = None,
    ax=None,
    xlabel: str = "spectral entropy SE(J_f(x)) [bits]",
    ylabel: str = r"instability $\Delta_{grad}$",
    title: str = "",
):
    """Per-sample scatter of spectral entropy against attribution instability, with the upper
    envelope (``attribution.Envelope``) and the Spearman rho in the title."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.scatter(
        np.asarray(se, float),
        np.asarray(instability, float),
        s=8,
        alpha=0.45,
        color=COLORS[0],
        label="samples",
    )
    if envelope is not None:
        ax.plot(
            envelope.centers,
            envelope.upper,
            "o-",
            color=COLORS[3],
            label=f"{int(100 * envelope.q)}% envelope (trend {envelope.trend:+.2f})",
        )
    t = title + (f"  Spearman ρ = {rho:+.2f}" if rho is not None else "")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=t.strip())
    ax.legend(fontsize=8)
    return ax.figure


def plot_study_comparison(
    result,
    metrics: Sequence[tuple[str, float | None]] = (
        ("accuracy", None),
        ("SE", None),
        ("ACN", None),
        ("sigma1", None),
    ),
    ax=None,
    title: str = "stable / standard (mean over seeds, bars: per-seed spread)",
):
    """Ratio stable/standard of each ``(metric, scale)`` of a ``StudyResult`` (1 = unchanged;
    log scale), with the per-seed ratios as dots."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.8, 3.4))
    labels, ratios, per_seed = [], [], []
    for metric, scale in metrics:
        a, b = result.value("standard", metric, scale), result.value("stable", metric, scale)
        labels.append(metric + ("" if scale is None else f"\n@{scale:g}"))
        ratios.append(b["mean"] / a["mean"])
        per_seed.append(np.asarray(b["values"]) / np.asarray(a["values"]))
    idx = np.arange(len(labels))
    ax.bar(idx, ratios, color=[COLORS[2] if r < 1 else COLORS[1] for r in ratios], alpha=0.8)
    for i, v in enumerate(per_seed):
        ax.plot(np.full(len(v), i), v, "k.", ms=5)
    ax.axhline(1.0, color="0.3", lw=1)
    ax.set_xticks(idx, labels, fontsize=8)
    ax.set(yscale="log", ylabel="stable / standard", title=title)
    return ax.figure


def plot_strength_sweep(
    sweep: dict,
    x_metric: str = "accuracy",
    y_metric: str = "FD",
    scale: float | None = None,
    ax=None,
    title: str = "",
):
    """Trade-off across regularisation strengths: ``y_metric`` of the stable model against
    ``x_metric``; the standard model is the star."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.4, 3.6))
    xs, ys, errs = [], [], []
    for strength, res in sorted(sweep.items()):
        sx = None if x_metric in ("accuracy", "SE", "ACN", "sigma1") else scale
        sy = None if y_metric in ("accuracy", "SE", "ACN", "sigma1") else scale
        xs.append(res.value("stable", x_metric, sx)["mean"])
        r = res.value("stable", y_metric, sy)
        ys.append(r["mean"])
        errs.append(r["std"])
        ax.annotate(
            f"λ={strength:g}",
            (xs[-1], ys[-1]),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    ax.errorbar(xs, ys, yerr=errs, fmt="o-", color=COLORS[2], label="stable (sweep)")
    any_res = next(iter(sweep.values()))
    sx = None if x_metric in ("accuracy", "SE", "ACN", "sigma1") else scale
    sy = None if y_metric in ("accuracy", "SE", "ACN", "sigma1") else scale
    ax.plot(
        any_res.value("standard", x_metric, sx)["mean"],
        any_res.value("standard", y_metric, sy)["mean"],
        "*",
        ms=12,
        color=COLORS[3],
        label="standard",
    )
    ax.set(
        xlabel=x_metric,
        ylabel=y_metric + ("" if scale is None else f" @ s={scale:g}"),
        yscale="log",
        title=title,
    )
    ax.legend(fontsize=8)
    return ax.figure


def plot_spectrum_tails(
    sigma_standard,
    sigma_stable,
    ax=None,
    normalize: bool = True,
    title: str = "Jacobian spectra: median and 10-90% band over samples",
):
    """Rank-ordered singular values of ``J_f(x)`` for two models (``(N, r)`` arrays each):
    median over samples and a 10-90 % band; ``normalize`` divides each sample by its ``sigma_1``
    (the *shape*, which is what SE sees)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for s, label, color in (
        (sigma_standard, "standard", COLORS[0]),
        (sigma_stable, "stable", COLORS[2]),
    ):
        s = np.asarray(s, float)
        if normalize:
            s = s / s[:, :1]
        k = np.arange(1, s.shape[1] + 1)
        lo, med, hi = np.quantile(s, [0.1, 0.5, 0.9], axis=0)
        ax.plot(k, med, "o-", ms=3, color=color, label=label)
        ax.fill_between(k, lo, hi, color=color, alpha=0.2)
    ax.set(
        xlabel="rank k",
        ylabel=r"$\sigma_k/\sigma_1$" if normalize else r"$\sigma_k$",
        yscale="log",
        title=title,
    )
    ax.legend()
    return ax.figure
