"""The regularisation study: standard vs stable models, across strengths and seeds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ._style import COLORS


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
) -> Figure:
    """Ratio stable/standard of each ``(metric, scale)`` of a ``StudyResult`` (1 = unchanged;
    log scale), with the per-seed ratios as dots.

    Example (a tiny study: one seed, one epoch on ``digits``):
        >>> from spectral_lab.experiments import StudyConfig, strength_sweep
        >>> cfg = StudyConfig(model_kwargs={"width": 16, "depth": 2}, epochs=1, seeds=(0,), n_eval=40,
        ...                   n_draws=2, scales=(0.1,), fd_pca_dim=6)
        >>> sweep = strength_sweep(cfg, [0.01, 0.1], cache_dir=False, progress=False)
        >>> fig = plot_study_comparison(sweep[0.1])
        >>> len(fig.axes[0].patches)  # one bar per metric
        4
        >>> plt.close(fig)
    """
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
) -> Figure:
    """Trade-off across regularisation strengths: ``y_metric`` of the stable model against
    ``x_metric``; the standard model is the star.

    Example (a tiny study: one seed, one epoch on ``digits``):
        >>> from spectral_lab.experiments import StudyConfig, strength_sweep
        >>> cfg = StudyConfig(model_kwargs={"width": 16, "depth": 2}, epochs=1, seeds=(0,), n_eval=40,
        ...                   n_draws=2, scales=(0.1,), fd_pca_dim=6)
        >>> sweep = strength_sweep(cfg, [0.01, 0.1], cache_dir=False, progress=False)
        >>> fig = plot_strength_sweep(sweep, "accuracy", "FD", scale=0.1)
        >>> len(fig.axes[0].lines[0].get_xdata())  # one point per strength
        2
        >>> plt.close(fig)
    """
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
) -> Figure:
    """Rank-ordered singular values of ``J_f(x)`` for two models (``(N, r)`` arrays each):
    median over samples and a 10-90 % band; ``normalize`` divides each sample by its ``sigma_1``
    (the *shape*, which is what SE sees).

    Example:
        >>> s = np.array([[2.0, 1.0], [4.0, 1.0]])
        >>> fig = plot_spectrum_tails(s, s / 2)
        >>> np.asarray(fig.axes[0].lines[0].get_ydata()).tolist()  # median of sigma_k / sigma_1
        [1.0, 0.375]
        >>> plt.close(fig)
    """
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


def study_draw(sweep: dict) -> Callable[..., Figure]:
    """``draw(strength, scale)`` for :func:`spectral_lab.widgets.study_explorer`: spectra tails and the metric ratios of
    the study at one regularisation strength (``sweep``: strength -> ``StudyResult``).

    Cost: none beyond drawing (the study has run).

    Example (a tiny study: one seed, one epoch on ``digits``):
        >>> from spectral_lab.experiments import StudyConfig, strength_sweep
        >>> cfg = StudyConfig(model_kwargs={"width": 16, "depth": 2}, epochs=1, seeds=(0,), n_eval=40,
        ...                   n_draws=2, scales=(0.1,), fd_pca_dim=6)
        >>> sweep = strength_sweep(cfg, [0.01, 0.1], cache_dir=False, progress=False)
        >>> fig = study_draw(sweep)(0.1)
        >>> len(fig.axes)
        2
        >>> plt.close(fig)
    """

    def draw(strength: float, scale: float | None = None):
        res = sweep[strength]
        sc = res.config.scales[len(res.config.scales) // 2] if scale is None else scale
        fig, (a0, a1) = plt.subplots(
            1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1.5]}
        )
        seed = res.config.seeds[0]
        plot_spectrum_tails(
            res.record("standard", seed)["sigma"].numpy(),
            res.record("stable", seed)["sigma"].numpy(),
            ax=a0,
            title=f"λ={strength:g}: σ_k/σ_1 (seed {seed})",
        )
        plot_study_comparison(
            res,
            [
                ("accuracy", None),
                ("SE", None),
                ("ACN", None),
                ("sigma1", None),
                ("FD", sc),
                ("FD_shape", sc),
                ("delta_grad", sc),
            ],
            ax=a1,
            title=f"stable / standard at λ={strength:g}, s={sc:g}",
        )
        fig.tight_layout()
        return fig

    return draw
