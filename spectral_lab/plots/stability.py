"""The stability profile and index, and the consequences of the index (the course's
reconstruction of those "A Unified Matrix-Spectral Framework for Stability and Interpretability in
Deep Learning" is summarised as deriving in its Theorem 4.2) against their bounds."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ._style import COLORS

_OPERATOR_NAMES = {
    "input_jacobian": r"$J_f$",
    "parameter_jacobian": r"$J_\theta$",
    "ntk": r"NTK $K$",
    "hessian": r"Hessian $H$",
}


def plot_index_terms(index, robust_index=None, ax=None, title: str | None = None) -> Figure:
    """Bars of the four operator terms of a stability index (log scale), with ``Gamma`` as a line.

    Example:
        >>> from spectral_lab.stability import StabilityIndex
        >>> idx = StabilityIndex(2.0, {"input_jacobian": 2.0, "hessian": 0.5},
        ...                      {"input_jacobian": 1.0, "hessian": 1.0}, "max", 1.0)
        >>> fig = plot_index_terms(idx)
        >>> [float(b.get_height()) for b in fig.axes[0].patches]
        [2.0, 0.5]
        >>> plt.close(fig)
    """
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


def plot_profile_samples(
    profile, key: str = "jac_top", q: float = 0.95, ax=None, bins: int = 30
) -> Figure:
    """Histogram of one per-sample statistic of a profile with its supremum and ``q``-quantile.

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> from spectral_lab.stability import stability_profile
        >>> prof = stability_profile(MLP(4, 3, width=8), torch.randn(32, 4), operators=("input_jacobian",))
        >>> fig = plot_profile_samples(prof, "jac_top", q=0.9)
        >>> float(fig.axes[0].lines[0].get_xdata()[0]) == prof.jac_top  # the supremum line
        True
        >>> plt.close(fig)
    """
    from ..stability import quantile

    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.2))
    if key in profile.samples:
        v, w = profile.samples[key].numpy(), None
        sup, qv = float(v.max()), quantile(profile.samples[key], q)
    elif key in getattr(profile, "sketches", {}):  # a stream too long to keep: the sketch's values
        sk = profile.sketches[key]
        v, w = (t.numpy() for t in sk.weighted())
        sup, qv = sk.quantile(1.0), sk.quantile(q)
    else:
        raise ValueError(f"the profile has no per-sample {key!r}; compute it (operators=)")
    ax.hist(v, bins=bins, weights=w, color=COLORS[0], alpha=0.75)
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
                     ylabel: str = "measured", color=None, lower: bool = False) -> Figure:  # fmt: skip
    """Measured value against its bound, one point per configuration, log-log, with ``y = x``.

    An upper bound: every point must lie on or below the diagonal; its distance below says how
    loose the bound is. ``lower=True`` (a certified minimum, e.g. a stable step size): on or above.

    Example:
        >>> fig = plot_bound_check([0.5, 1.0], [1.0, 2.0])
        >>> fig.axes[0].collections[0].get_offsets().tolist()  # (bound, measured) points
        [[1.0, 0.5], [2.0, 1.0]]
        >>> plt.close(fig)
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


def plot_stability_report(report, figsize=(12, 3.4)) -> Figure:
    """Summary figure of a :class:`~spectral_lab.diagnose.StabilityReport`: index terms (sup and
    robust quantile), per-sample ``sigma_1(J_f)`` and ``sigma_1(J_theta)`` with their sup and
    quantile, and the certified step size against ``2/lambda_max(H)``.

    Example:
        >>> import torch
        >>> from spectral_lab import MLP, diagnose
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> fig = plot_stability_report(diagnose(MLP(4, 3, width=8), (x, y), progress=False))
        >>> len(fig.axes)
        3
        >>> plt.close(fig)
    """
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


def plot_consequences(checks, labels=None, operator: bool = False, figsize=(15, 3.3)) -> Figure:
    """One panel per consequence of the index (the course's reconstruction): measured against bound for a list of
    :class:`~spectral_lab.stability.ConsequenceCheck` (one point each). ``operator=True`` adds the
    single-operator bounds as hollow points.

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> from spectral_lab.stability import verify_consequences
        >>> data = (torch.randn(16, 4), torch.randint(0, 3, (16,)))
        >>> chk = verify_consequences(MLP(4, 3, width=8, activation="tanh"), data, curvature_eps=None,
        ...                           lr_steps=10, lr_iters=4, max_iter=20)
        >>> fig = plot_consequences([chk])
        >>> len(fig.axes) == len(chk.measured)
        True
        >>> plt.close(fig)
    """
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


def stability_draw(profile, key: str = "jac_top") -> Callable[..., Figure]:
    """The drawing function of :func:`spectral_lab.widgets.stability_explorer` (testable without a kernel).

    Chapter 05: slide the quantile level ``q`` and switch ``max``/``geomean`` aggregation; see
    the index terms move and where ``Q_q`` falls in the per-sample histogram (no recomputation).

    Cost: one :func:`~spectral_lab.stability.stability_index` per ``draw`` (no model evaluation).

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> from spectral_lab.stability import stability_profile
        >>> prof = stability_profile(MLP(4, 3, width=8), torch.randn(16, 4), operators=("input_jacobian",))
        >>> fig = stability_draw(prof)(q=0.9, agg="max")
        >>> len(fig.axes)
        2
        >>> plt.close(fig)
    """

    from ..stability import stability_index

    sup = stability_index(profile)

    def draw(q: float = 1.0, agg: str = "max"):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(9.5, 3.2))
        idx = stability_index(profile.with_q(q), agg=agg)
        plot_index_terms(sup if agg == "max" else stability_index(profile, agg=agg), idx, ax=a0)
        plot_profile_samples(profile, key, q=q, ax=a1)
        a0.set_title(
            rf"$\Gamma$(sup) = {sup.value:.3g},  $\Gamma$(q={q:g}, {agg}) = {idx.value:.3g}"
        )
        fig.tight_layout()
        return fig

    return draw
