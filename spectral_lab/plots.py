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
