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


# --------------------------------------------------------------------------- stability (chapter 05)
_OPERATOR_NAMES = {
    "input_jacobian": r"$J_f$",
    "parameter_jacobian": r"$J_\theta$",
    "ntk": r"NTK $K$",
    "hessian": r"Hessian $H$",
}


def plot_index_terms(index, robust_index=None, ax=None, title: str | None = None):
    """Bars of the four operator terms of a stability index (log scale), with ``Gamma`` as a line."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.2))
    keys = list(index.terms)
    pos = np.arange(len(keys))
    width = 0.38 if robust_index is not None else 0.6
    ax.bar(pos - (width / 2 if robust_index is not None else 0), [index.terms[k] for k in keys],
           width, label=f"sup (q={index.q:g})", color=COLORS[0])  # fmt: skip
    if robust_index is not None:
        ax.bar(pos + width / 2, [robust_index.terms[k] for k in keys], width,
               label=f"q={robust_index.q:g}", color=COLORS[1])  # fmt: skip
    ax.axhline(
        index.value, color="k", ls="--", lw=1, label=rf"$\Gamma$ ({index.agg}) = {index.value:.3g}"
    )
    ax.set_xticks(pos, [_OPERATOR_NAMES.get(k, k) for k in keys])
    vals = [v for v in index.terms.values() if v > 0] + [index.value]
    if robust_index is not None:
        vals += [v for v in robust_index.terms.values() if v > 0]
    ax.set_ylim(min(vals) / 3, max(vals) * 6)
    ax.set(yscale="log", ylabel="term (gain scale)", title=title or "Global Matrix Stability Index")
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    return ax.figure


def plot_profile_samples(profile, key: str = "jac_top", q: float = 0.95, ax=None, bins: int = 30):
    """Histogram of one per-sample statistic of a profile with its supremum and ``q``-quantile."""
    from .stability import quantile

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.2))
    v = profile.samples[key].numpy()
    ax.hist(v, bins=bins, color=COLORS[0], alpha=0.75)
    sup, qv = float(v.max()), quantile(profile.samples[key], q)
    ax.axvline(sup, color=COLORS[3], lw=1.5, label=f"sup = {sup:.3g}")
    ax.axvline(qv, color=COLORS[1], lw=1.5, ls="--", label=f"q={q:g}: {qv:.3g}")
    label = {
        "jac_top": r"$\sigma_1(J_f(x_i))$",
        "param_top": r"$\sigma_1(J_\theta(x_i))$",
        "jac_entropy": r"SE$(J_f(x_i))$",
        "jac_fro": r"$\|J_f(x_i)\|_F/\sqrt{C}$",
    }.get(key, key)
    ax.set(xlabel=label, ylabel="samples", title=f"per-sample {label}")
    ax.legend(fontsize=8)
    return ax.figure


def plot_bound_check(measured, bound, ax=None, labels=None, title: str = "", xlabel: str = "bound",
                     ylabel: str = "measured", color=None, lower: bool = False):  # fmt: skip
    """Measured value against its bound, one point per configuration, log-log, with ``y = x``.

    An upper bound: every point must lie on or below the diagonal; its distance below says how
    loose the bound is. ``lower=True`` (a certified minimum, e.g. a stable step size): on or above.
    """
    m = np.asarray(measured, dtype=float)
    b = np.asarray(bound, dtype=float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.scatter(b, m, s=22, c=color if color is not None else COLORS[0], zorder=3)
    if labels is not None:
        for xi, yi, t in zip(b, m, labels):
            ax.annotate(
                str(t), (xi, yi), fontsize=6, alpha=0.7, xytext=(2, 2), textcoords="offset points"
            )
    pos = np.concatenate([m[m > 0], b[b > 0]])
    lo, hi = (pos.min() / 2, pos.max() * 2) if pos.size else (1e-3, 1)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = bound")
    ax.fill_between([lo, hi], [lo, hi], [lo, lo] if lower else [hi, hi], color=COLORS[3],
                    alpha=0.08, label="violation")  # fmt: skip
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel=xlabel,
        ylabel=ylabel,
        title=title,
    )
    ax.xaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    ax.legend(fontsize=7, loc="upper left")
    return ax.figure


def plot_stability_report(report, figsize=(12, 3.4)):
    """Summary figure of a :class:`~spectral_lab.diagnose.StabilityReport`: index terms (sup and
    robust quantile), per-sample ``sigma_1(J_f)`` and ``sigma_1(J_theta)`` with their sup and
    quantile, and the certified step size against ``2/lambda_max(H)``."""
    fig, ax = plt.subplots(1, 3, figsize=figsize)
    plot_index_terms(report.index, report.robust_index, ax=ax[0])
    q = report.robust_index.q
    plot_profile_samples(report.profile, "jac_top", q=q, ax=ax[1])
    if "param_top" in report.profile.samples:
        plot_profile_samples(report.profile, "param_top", q=q, ax=ax[2])
    else:
        plot_profile_samples(report.profile, "jac_entropy", q=q, ax=ax[2])
    name = f"{report.model.get('name', 'model')} on {report.data.get('name', 'data')}"
    fig.suptitle(f"stability report: {name}", fontsize=11)
    fig.tight_layout()
    return fig


_CONSEQUENCES = {
    "forward": ("forward sensitivity", r"$\Gamma\,\varepsilon$", r"max $\|f(x+\delta)-f(x)\|$"),
    "parameter": ("parameter sensitivity", r"$\Gamma\,\|\Delta\|$", r"max $\|f_{\theta+\Delta}-f_\theta\|$"),
    "attribution": ("saliency change", r"$2\Gamma$", r"max $\|a(x+\delta)-a(x)\|$"),
    "ntk_condition": ("NTK condition number", r"$\Gamma^2 n/\lambda_{min}(K)$", r"$\kappa(K)$"),
    "stable_lr": ("stable step size", r"largest stable $\eta$ (measured)", r"certified $2/\Gamma^2$"),
}  # fmt: skip


def plot_consequences(checks, labels=None, operator: bool = False, figsize=(15, 3.3)):
    """One panel per consequence of Theorem 4.2: measured against bound for a list of
    :class:`~spectral_lab.stability.ConsequenceCheck` (one point each). ``operator=True`` adds the
    single-operator bounds as hollow points."""
    fig, axes = plt.subplots(1, len(_CONSEQUENCES), figsize=figsize)
    for ax, (key, (title, bl, ml)) in zip(axes, _CONSEQUENCES.items()):
        m = [c.measured[key] for c in checks]
        b = [c.bound[key] for c in checks]
        if key == "stable_lr":  # lower bound: plot the certified step against the measured one
            plot_bound_check(b, m, ax=ax, labels=labels, title=title, xlabel=bl, ylabel=ml)
            if operator:
                ob = [c.operator_bound[key] for c in checks]
                ax.scatter(m, ob, s=22, facecolors="none", edgecolors=COLORS[1], zorder=3,
                           label=r"$2/\lambda_{max}(H)$")  # fmt: skip
        else:
            plot_bound_check(m, b, ax=ax, labels=labels, title=title, xlabel=bl, ylabel=ml)
            if operator:
                ob = [c.operator_bound[key] for c in checks]
                ax.scatter(ob, m, s=22, facecolors="none", edgecolors=COLORS[1], zorder=3,
                           label="operator term alone")  # fmt: skip
        if operator:
            vals = np.array([v for v in m + b + [c.operator_bound[key] for c in checks] if v > 0])
            lo, hi = vals.min() / 2, vals.max() * 2
            ax.set(xlim=(lo, hi), ylim=(lo, hi))
            ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig
