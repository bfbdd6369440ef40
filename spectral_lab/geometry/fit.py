"""Fitted power-law charts: the exponent of a measured spectrum and whether a power law describes it
(the fitted power-law charts of "Geometric and Spectral Alignment for Deep Neural Network I"; how
the paper fits them is not stated there, so every chart here is a choice of this library).

Spectra are taken as given and fitted in float64 NumPy/SciPy on the CPU."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from ._common import ALPHA_MAX, _as_spectrum
from .orbit import _gibbs, _log_ranks, orbit_top_radial, orbit_top_radial_inverse


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted power-law chart ``λ_k ∝ k^{-α}`` of one spectrum, with its quality.

    ``alpha`` is the exponent of the chart named by ``chart`` (default ``"mle"``); all four charts
    are always reported. Exponents refer to the eigenvalues ``λ = σ²`` of ``ĀᵀĀ``. Built by
    :func:`power_law_fit`.

    Example: on an exact orbit point every chart finds the exponent.
        >>> from spectral_lab.geometry import power_law_spectrum
        >>> fit = power_law_fit(power_law_spectrum(0.8, 32), kind="eigen")
        >>> [round(a, 6) for a in (fit.alpha_mle, fit.alpha_ls, fit.alpha_top_radial)], fit.verdict != ""
        ([0.8, 0.8, 0.8], True)
    """

    alpha: float
    chart: str
    alpha_mle: float  # I-projection / moment match on the window
    alpha_ls: float  # least-squares slope of log λ vs log k on the window
    alpha_top_radial: float  # solves r(α) = r̂
    alpha_hellinger: float  # metric chart: argmin Hel(p̂, p_α)
    window: tuple[int, int]  # ranks [k_lo, k_hi] (1-based, inclusive) used by mle and ls
    d: int  # numerical rank: number of nonzero eigenvalues (the fit ignores exact zeros)
    r_hat: float  # observed top radial ½ log(d p̂_1) with d = the numerical rank
    rho: float  # signed top-radial residual r̂ − r(α̂_mle)
    res_hel: float  # min_α Hel(p̂, p_α) (full spectrum)
    res_kl: float  # KL(p̂ ‖ p_α̂_mle) on the window (goodness of the ML fit)
    ks: float  # max_k |F̂(k) − F_α̂(k)| on the window (Kolmogorov–Smirnov-type)
    ls_r2: float  # R² of the log-log regression
    relative_residual: float  # res_hel / Hel(p̂, flat): share of the departure from flat unexplained
    is_power_law: bool
    verdict: str

    def __repr__(self) -> str:
        return (
            f"PowerLawFit(alpha={self.alpha:.4g} [{self.chart}], ls={self.alpha_ls:.4g}, "
            f"top_radial={self.alpha_top_radial:.4g}, hellinger={self.alpha_hellinger:.4g}, "
            f"window={self.window}, d={self.d}, res_hel={self.res_hel:.3g}, "
            f"res_kl={self.res_kl:.3g}, ks={self.ks:.3g}, rho={self.rho:.3g}, "
            f"R2={self.ls_r2:.4f}, rel_res={self.relative_residual:.3g}: {self.verdict})"
        )


def _mle_alpha(logk: np.ndarray, target: float) -> float:
    """Solve ``E_α[log k] = target`` for ``α ≥ 0`` (ψ strictly convex ⇒ unique)."""
    f = lambda a: float(_gibbs(a, logk) @ logk) - target  # noqa: E731
    if f(0.0) <= 0:
        return 0.0
    if f(ALPHA_MAX) >= 0:
        return ALPHA_MAX
    return float(optimize.brentq(f, 0.0, ALPHA_MAX, xtol=1e-13, rtol=1e-15))


def _hel2(p: np.ndarray, logk: np.ndarray, a: float) -> float:
    return float(np.sum((np.sqrt(p) - np.sqrt(_gibbs(a, logk))) ** 2))


def power_law_fit(
    spectrum,
    kind: str = "singular",
    window: tuple[int, int] | None = None,
    chart: str = "mle",
    tol_relative: float = 0.2,
    tol_r2: float = 0.9,
) -> PowerLawFit:
    """Fit the power-law orbit ``λ_k ∝ k^{-α}`` to one spectrum and judge whether it is one.

    Charts (the paper does not state its fit, so all four are choices of this library [C]):

    * ``"mle"`` (default): maximum likelihood / I-projection on the rank window,
      ``E_α̂[log k | window] = Σ_{k∈window} p̂_k log k / Σ_{k∈window} p̂_k`` (unique root);
    * ``"ls"``: least-squares slope of ``log λ_k`` against ``log k`` on the window;
    * ``"top_radial"``: solve ``r(α) = r̂ = ½ log(d p̂_1)``;
    * ``"hellinger"``: ``argmin_α Σ_k (sqrt p̂_k − sqrt p_k(α))²`` (metric chart).

    Quality: ``res_hel`` (Hellinger distance to the orbit), ``res_kl = KL(p̂ ‖ p_α̂)`` and ``ks``
    (largest CDF gap) on the window, ``ls_r2`` and the signed top-radial residual
    ``ρ = r̂ − r(α̂_mle)``. Verdict [C]: a power law iff ``relative_residual = res_hel / Hel(p̂,
    flat) ≤ tol_relative`` and ``ls_r2 ≥ tol_r2`` (a flat spectrum is the orbit point ``α = 0``).

    ``window = (k_lo, k_hi)`` (1-based, inclusive; default all ranks). Zero eigenvalues are
    dropped and ``d`` becomes the numerical rank: a rank-deficient spectrum is fitted on the orbit
    of its rank, so ``r_hat``, ``rho`` and the top-radial chart use that ``d`` too (for a
    full-rank spectrum ``r_hat = top_radial(spectrum)``; for a rank-deficient one
    :func:`top_radial`, which keeps the ambient ``d``, is larger by ``½ log(d_ambient/rank)``). Cost ``O(d)`` per chart evaluation (a few
    hundred evaluations).

    Example:
        >>> power_law_fit([4.0] * 8 + [1.0] * 8, kind="eigen").is_power_law  # two-level spectrum
        False
    """
    if chart not in ("mle", "ls", "top_radial", "hellinger"):
        raise ValueError(f"chart must be 'mle', 'ls', 'top_radial' or 'hellinger', got {chart!r}")
    lam = _as_spectrum(spectrum, kind)
    d = lam.size
    if d < 3:
        raise ValueError(f"spectrum needs at least 3 nonzero values to fit a power law, got {d}")
    if window is None:
        k_lo, k_hi = 1, d
    else:
        k_lo, k_hi = (int(v) for v in window)
        if not 1 <= k_lo < k_hi <= d or k_hi - k_lo < 2:
            raise ValueError(
                f"window must satisfy 1 <= k_lo, k_lo + 2 <= k_hi <= d = {d}; got {window}"
            )
    p = lam / lam.sum()
    logk = _log_ranks(d)
    # ML / I-projection on the window
    wl = logk[k_lo - 1 : k_hi]
    pw = p[k_lo - 1 : k_hi] / p[k_lo - 1 : k_hi].sum()
    a_mle = _mle_alpha(wl, float(pw @ wl))
    q = _gibbs(a_mle, wl)
    with np.errstate(divide="ignore", invalid="ignore"):
        res_kl = float(np.sum(np.where(pw > 0, pw * np.log(pw / q), 0.0)))
    ks = float(np.max(np.abs(np.cumsum(pw) - np.cumsum(q))))
    # least squares on the window
    y = np.log(lam[k_lo - 1 : k_hi])
    slope, icpt = np.polyfit(wl, y, 1)
    a_ls = float(-slope)
    ss_res = float(np.sum((y - (slope * wl + icpt)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 if ss_tot <= 1e-300 else 1.0 - ss_res / ss_tot
    # top radial chart
    r_hat = 0.5 * math.log(d * p[0])
    a_top = orbit_top_radial_inverse(r_hat, d)
    # metric (Hellinger) chart on the full spectrum
    hi = max(4.0, 3.0 * a_mle + 2.0, 3.0 * a_top + 2.0)
    grid = np.linspace(0.0, min(hi, ALPHA_MAX), 121)
    w = -np.outer(grid, logk)
    q_grid = np.exp(w - w.max(1, keepdims=True))
    q_grid /= q_grid.sum(1, keepdims=True)
    vals = np.sum((np.sqrt(p) - np.sqrt(q_grid)) ** 2, axis=1)
    i = int(np.argmin(vals))
    lo, up = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(
        lambda a: _hel2(p, logk, a), bounds=(lo, up), method="bounded", options={"xatol": 1e-10}
    )
    a_hel = float(res.x) if res.fun <= vals[i] else float(grid[i])
    res_hel = math.sqrt(max(min(res.fun, vals[i]), 0.0))
    flat = math.sqrt(_hel2(p, logk, 0.0))
    rel = 0.0 if flat <= 1e-12 else res_hel / flat
    rho = r_hat - orbit_top_radial(a_mle, d)
    ok = rel <= tol_relative and r2 >= tol_r2
    if flat <= 1e-12:
        verdict = "flat spectrum: the identity point alpha = 0 of the orbit"
    elif ok:
        verdict = "consistent with a power law"
    else:
        why = []
        if rel > tol_relative:
            why.append(f"{rel:.0%} of the departure from flat is off the orbit")
        if r2 < tol_r2:
            why.append(f"log-log R^2 = {r2:.3f} < {tol_r2}")
        verdict = "NOT a power law: " + "; ".join(why)
    alphas = {"mle": a_mle, "ls": a_ls, "top_radial": a_top, "hellinger": a_hel}
    return PowerLawFit(
        alpha=float(alphas[chart]),
        chart=chart,
        alpha_mle=float(a_mle),
        alpha_ls=a_ls,
        alpha_top_radial=float(a_top),
        alpha_hellinger=a_hel,
        window=(k_lo, k_hi),
        d=d,
        r_hat=float(r_hat),
        rho=float(rho),
        res_hel=float(res_hel),
        res_kl=res_kl,
        ks=ks,
        ls_r2=float(r2),
        relative_residual=float(rel),
        is_power_law=bool(ok),
        verdict=verdict,
    )
