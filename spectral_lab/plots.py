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
