"""Power-law geometry of spectra and residual chains (:mod:`spectral_lab.geometry`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure


def plot_orbit_geometry(
    d: int = 32, alphas: Sequence[float] = (0.0, 0.5, 1.0, 2.0), axes=None
) -> Figure:
    """The power-law orbit: spectra ``λ_k(α)``, Fisher information with the Bures line element
    ``(d/4) I(α)``, and the top-radial chart ``r(α)`` with its slope ``½ E_α[log k]``.

    Example:
        >>> fig = plot_orbit_geometry(d=8, alphas=(0.0, 1.0))
        >>> len(fig.axes), len(fig.axes[0].lines)
        (3, 2)
        >>> plt.close(fig)
    """
    from .. import geometry as geo

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
) -> Figure:
    """Rank-ordered ``p_k`` on log-log axes with the fitted orbit points of the four charts.

    Example:
        >>> from spectral_lab.geometry import power_law_spectrum
        >>> fig = plot_power_law_fit(power_law_spectrum(1.0, 16), kind="eigen")
        >>> round(float(fig.axes[0].lines[0].get_ydata().sum()), 6)  # p_k sums to 1
        1.0
        >>> plt.close(fig)
    """
    from .. import geometry as geo

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


def plot_exponent_profile(profiles, labels: Sequence[str] | None = None, axes=None) -> Figure:
    """Per-layer fitted exponent, chart residual ``res_hel`` and effective rank ``k_τ`` along depth.

    Example:
        >>> from spectral_lab.geometry import exponent_profile
        >>> from spectral_lab.models import ResidualMLP
        >>> prof = exponent_profile(ResidualMLP(4, 2, width=6, depth=3))
        >>> fig = plot_exponent_profile(prof)
        >>> np.allclose(fig.axes[0].lines[0].get_ydata(), prof.alpha)
        True
        >>> plt.close(fig)
    """
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


def plot_depth_budget(
    budget, ax=None, title: str = "adjacent-layer drift vs the depth budget"
) -> Figure:
    """Drift ``|α_{l+1} − α_l|`` per interface against the general bound, the budget bound with the
    measured slack and residuals, and the paper's rate ``Lip · (log M)/L``.

    Example:
        >>> from spectral_lab.geometry import depth_budget, orbit_top_radial
        >>> r = [orbit_top_radial(a, 16) for a in (0.5, 0.6, 0.7)]
        >>> fig = plot_depth_budget(depth_budget([0.5, 0.6, 0.7], r, 16, sum(r), 0.0))
        >>> np.round(fig.axes[0].lines[0].get_ydata(), 6).tolist()  # the drift per interface
        [0.1, 0.1]
        >>> plt.close(fig)
    """
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


def residual_profile_draw(
    in_features: int = 64, num_classes: int = 10, seed: int = 0, x=None
) -> Callable[..., Figure]:
    """The drawing function of :func:`spectral_lab.widgets.residual_profile_explorer` (testable without a kernel).

    Depth, residual scale and width -> the exponent profile of a (random-init) ``ResidualMLP``
    and its adjacent-layer drift against the depth budget ``(log M)/L``.

    Static-weight factors by default; choose "jacobian" to use the data-dependent factors at the
    rows of ``x`` (random inputs when ``x`` is None; slower).

    Cost per ``draw``: ``O(L d³)`` for the static chain, plus one Jacobian per layer and sample for
    ``factors="jacobian"``. Runs in float64 on the CPU.

    Example:
        >>> fig = residual_profile_draw(in_features=4, num_classes=2)(depth=3, width=6)
        >>> len(fig.axes), len(fig.axes[0].lines[0].get_ydata())  # 3 layers
        (2, 3)
        >>> plt.close(fig)
    """

    from .. import geometry as geo
    from ..models import ResidualMLP

    def draw(
        depth: int = 12, residual_scale: float = 0.1, width: int = 32, factors: str = "static"
    ):
        torch.manual_seed(seed)
        model = ResidualMLP(
            in_features, num_classes, width=width, depth=depth, residual_scale=residual_scale
        ).double()
        if factors == "static":
            prof = geo.exponent_profile(model)
            budget, slack = prof.budget, prof.slack
        else:
            xs = (
                x
                if x is not None
                else torch.randn(4, in_features, generator=torch.Generator().manual_seed(seed))
            )
            prof = geo.exponent_profile(model, xs.double(), kind="jacobian")
            budget, slack = prof.per_sample[0].budget, prof.per_sample[0].slack
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.4))
        layers = range(1, prof.L + 1)
        a0.plot(layers, prof.alpha, "o-", ms=3, label=r"$\hat\alpha_l$ (ML)")
        a0.plot(layers, prof.alpha_ls, "s--", ms=3, label=r"$\hat\alpha_l$ (log-log LS)")
        a0.set(
            xlabel="layer l",
            ylabel="exponent",
            title=f"{factors} factors: power law in {prof.power_law.mean():.0%} of layers",
        )
        a0.legend()
        plot_depth_budget(
            budget,
            ax=a1,
            title=f"S = {slack.total_slack:.3f}, (log M)/L = {budget.budget:.4f}",
        )
        fig.tight_layout()
        return fig

    return draw


def power_law_fit_draw(d: int = 64, seed: int = 0) -> Callable[..., Figure]:
    """The drawing function of :func:`spectral_lab.widgets.power_law_fit_explorer` (testable without a kernel).

    Pick a spectrum shape (power law, two-level, exponential), its exponent and noise; see the
    four fitted charts and the verdict of :func:`spectral_lab.geometry.power_law_fit`.

    Cost per ``draw``: one :func:`~spectral_lab.geometry.power_law_fit` (``O(d)`` per chart
    evaluation). NumPy float64 on the CPU.

    Example:
        >>> fig = power_law_fit_draw(d=16)(shape="power law", alpha=1.0, noise=0.0)
        >>> len(fig.axes)
        1
        >>> plt.close(fig)
    """
    from .. import geometry as geo

    def draw(shape: str = "power law", alpha: float = 1.0, noise: float = 0.05):
        rng = np.random.default_rng(seed)
        k = np.arange(1, d + 1)
        if shape == "power law":
            lam = geo.power_law_spectrum(alpha, d)
        elif shape == "two-level":
            lam = np.where(k <= d // 4, 1.0 + 4 * alpha, 1.0)
        else:
            lam = np.exp(-alpha * 4 * (k - 1) / d)
        lam = lam * np.exp(noise * rng.standard_normal(d))
        fit = geo.power_law_fit(lam, kind="eigen")
        fig, ax = plt.subplots(figsize=(6, 3.6))
        plot_power_law_fit(lam, fit, kind="eigen", ax=ax)
        fig.tight_layout()
        return fig

    return draw
