"""Residual chains and the geometry of power-law spectra (spec: geometric-spectral-alignment.md).

A deep residual network is read as a product of near-identity layer factors ``A_l = I + B_l``. Each
factor is Frobenius-normalised, ``Ā = sqrt(d) A / ||A||_F`` (so ``tr(ĀᵀĀ) = d``), and summarised by
its ordered spectrum ``λ_1 ≥ … ≥ λ_d`` of ``ĀᵀĀ`` (Cartan coordinate ``a_k = ½ log λ_k``). Exact
power laws ``λ_k(α) = d k^{-α} / H_d(α)`` form a one-parameter orbit which is a Gibbs family on
ranks, a Fisher line and a Bures–Wasserstein curve with ``ds² = (d/4) I(α) dα²``.

This module gives every quantity of the spec as a function:

* factors: :func:`frobenius_normalize`, :func:`cartan_coordinates`, :func:`spectral_energy`,
  :func:`top_radial`;
* the orbit: :func:`harmonic_number`, :func:`log_partition`, :func:`gibbs_distribution`,
  :func:`power_law_spectrum`, :func:`mean_log_rank`, :func:`fisher_information`, :func:`orbit_kl`,
  :func:`orbit_hellinger`, :func:`orbit_bures_distance`, :func:`bures_line_element`,
  :func:`bures_wasserstein_distance`, :func:`orbit_top_radial`, :func:`orbit_top_radial_inverse`,
  :func:`inverse_chart_lipschitz`, :func:`fisher_rao_length`, :func:`orbit_actions`;
* fits: :func:`power_law_fit` -> :class:`PowerLawFit`;
* effective rank: :func:`effective_rank`, :func:`orbit_effective_rank`, :func:`tail_mass_bound`,
  :func:`effective_rank_bound`, :func:`rank_summary`, :func:`total_variation`;
* chains: :func:`chain_slack` -> :class:`ChainSlack`, :func:`near_identity_cartan`,
  :func:`near_identity_slack`, :func:`depth_budget` -> :class:`DepthBudget`;
* models: :func:`layer_factors`, :func:`conv_operator_matrix`,
  :func:`circular_conv_singular_values`, :func:`chain_profile`, :func:`exponent_profile` ->
  :class:`ExponentProfile`.

Tags as in the spec: [D] derived (elementary, verified numerically), [C] an implementation choice
(not from the paper), [P] stated in the paper's abstract. Orbit quantities and fits are scalar
problems solved in float64 NumPy/SciPy on the CPU (``O(d)`` per evaluation); factor matrices are
built in torch on the model's device and dtype.

Example:
    >>> round(fisher_information(1.0, 32), 4) > 0
    True
    >>> fit = power_law_fit(power_law_spectrum(1.3, 64), kind="eigen")
    >>> round(fit.alpha, 6), fit.is_power_law
    (1.3, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import integrate, optimize
from torch import nn

from ._checks import check_model, check_tensor

TRACES = ("d", "one")
ALPHA_MAX = 60.0  # exponents are searched in [0, ALPHA_MAX]; beyond it p_α is rank one to 1e-18


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _check_trace(trace: str) -> str:
    if trace not in TRACES:
        raise ValueError(f"trace must be 'd' (tr ĀᵀĀ = d, the default) or 'one', got {trace!r}")
    return trace


def _check_d(d: int) -> int:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d (the width) must be a positive integer, got {d!r}")
    return int(d)


def _check_alpha(alpha: float, name: str = "alpha") -> float:
    a = float(alpha)
    if not math.isfinite(a):
        raise ValueError(f"{name} must be finite, got {alpha}")
    return a


def _as_spectrum(
    spectrum, kind: str = "singular", name: str = "spectrum", drop_zeros: bool = True
) -> np.ndarray:
    """Eigenvalues ``λ`` of ``ĀᵀĀ`` (unnormalised), float64, descending.

    ``drop_zeros=True`` keeps only the numerically nonzero part (``λ > 1e-14 λ_1``), so that ``d``
    becomes the numerical rank (what the power-law fit and the energy distribution on ranks use);
    ``drop_zeros=False`` keeps every value, so that ``d`` is the ambient dimension (what the top
    radial ``log σ_1(Ā)`` of the whole factor uses).
    """
    if kind not in ("singular", "eigen"):
        raise ValueError(
            f"kind must be 'singular' (singular values σ, λ = σ²) or 'eigen' (λ itself), got {kind!r}"
        )
    if isinstance(spectrum, torch.Tensor):
        check_tensor(spectrum, name)
        s = spectrum.detach().to("cpu", torch.float64).numpy()
    else:
        s = np.asarray(spectrum)
        if s.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be numeric, got dtype {s.dtype}")
        s = s.astype(np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one spectrum), got shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} is empty; pass at least one value")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains NaN/Inf; clean the spectrum first")
    if (s < 0).any() and kind == "eigen":
        raise ValueError(f"{name} has negative eigenvalues; pass λ ≥ 0 (eigenvalues of ĀᵀĀ)")
    lam = s**2 if kind == "singular" else s
    lam = np.sort(lam)[::-1]
    if lam[0] <= 0:
        raise ValueError(f"{name} is identically zero; a zero factor has no normalised spectrum")
    if not drop_zeros:
        return lam
    # rank-deficient factors: keep the numerically nonzero part (fit on the rank, not the width)
    keep = lam > lam[0] * 1e-14
    return lam[keep]


# --------------------------------------------------------------------------------------------
# 3.1-3.2  Frobenius normalisation, Cartan coordinate, top radial
# --------------------------------------------------------------------------------------------


def frobenius_normalize(a: torch.Tensor, trace: str = "d") -> torch.Tensor:
    """``Ā = sqrt(d) A / ||A||_F`` (``trace="d"``, default) or ``A / ||A||_F`` (``"one"``).

    ``d = min(rows, cols)``; batched over leading dimensions. With ``trace="d"`` the identity is a
    fixed point and ``tr(ĀᵀĀ) = d`` — the convention under which the Bures line element is
    exactly ``(d/4) I(α)`` [D]; ``"one"`` (trace 1) is the alternative [C]. Cost ``O(d²)``.

    Example:
        >>> frobenius_normalize(2 * torch.eye(3, dtype=torch.float64)).diag().tolist()
        [1.0, 1.0, 1.0]
    """
    a = check_tensor(a, "a", min_dim=2)
    _check_trace(trace)
    d = min(a.shape[-2:])
    fro = torch.linalg.matrix_norm(a, keepdim=True)
    if (fro == 0).any():
        raise ValueError("a has a zero matrix; it has no Frobenius normalisation")
    scale = math.sqrt(d) if trace == "d" else 1.0
    return a * (scale / fro)


def cartan_coordinates(a: torch.Tensor, trace: str = "d") -> torch.Tensor:
    """Cartan coordinate ``a_k = log σ_k(Ā) = ½ log λ_k(ĀᵀĀ)``, descending, batched [P/D].

    Lies in the Weyl chamber ``a_1 ≥ … ≥ a_d`` with ``Σ_k e^{2 a_k} = d`` (trace ``"d"``). Cost: one
    SVD, ``O(d³)``. Zero singular values give ``-inf``.

    Example:
        >>> cartan_coordinates(torch.eye(4)).abs().max().item()
        0.0
    """
    return torch.log(torch.linalg.svdvals(frobenius_normalize(a, trace)))


def spectral_energy(spectrum, kind: str = "singular") -> np.ndarray:
    """Spectral-energy distribution on ranks ``p_k = λ_k / Σ_j λ_j`` (descending), float64.

    ``kind="singular"`` takes singular values (``λ = σ²``), ``"eigen"`` takes ``λ``. Example:
        >>> spectral_energy([1.0, 1.0]).tolist()
        [0.5, 0.5]
    """
    lam = _as_spectrum(spectrum, kind)
    return lam / lam.sum()


def top_radial(
    spectrum, kind: str = "singular", normalized: bool = False, trace: str = "d"
) -> float:
    """Top-radial Cartan coordinate ``r = log σ_1(Ā) = ½ log(d p_1) ∈ [0, ½ log d]`` [P name, D formula].

    ``d`` is the **ambient** dimension: the number of values passed, zeros included (pass all
    ``min(rows, cols)`` singular values of the factor). So ``r`` equals ``log σ_1`` of the
    Frobenius-normalised factor (:func:`frobenius_normalize`) for every factor, rank-deficient or
    not: ``r = 0`` iff the spectrum is flat (``Ā`` orthogonal), ``½ log d`` iff rank one.
    (:func:`power_law_fit` instead fits the numerically nonzero part and reports its own
    ``r_hat`` with ``d`` = the numerical rank; the two agree for full-rank spectra.)
    ``normalized=True`` returns ``r / (½ log d) ∈ [0, 1]`` (choice, not from the paper: its exact
    normalisation is unknown). ``trace="one"`` returns ``½ log p_1 = r − ½ log d``. Cost ``O(d)``.

    Example:
        >>> top_radial([1.0, 1.0, 1.0, 1.0])
        0.0
        >>> round(top_radial([1.0, 0.0, 0.0, 0.0]), 6) == round(0.5 * math.log(4), 6)  # rank one
        True
    """
    _check_trace(trace)
    lam = _as_spectrum(spectrum, kind, drop_zeros=False)
    d = lam.size
    p1 = lam[0] / lam.sum()
    r = 0.5 * math.log(d * p1)
    if normalized:
        return 0.0 if d == 1 else r / (0.5 * math.log(d))
    return r if trace == "d" else r - 0.5 * math.log(d)


# --------------------------------------------------------------------------------------------
# 3.3-3.6  the exact power-law orbit
# --------------------------------------------------------------------------------------------


def _log_ranks(d: int) -> np.ndarray:
    return np.log(np.arange(1, d + 1, dtype=np.float64))


def _gibbs(alpha: float, logk: np.ndarray) -> np.ndarray:
    w = -alpha * logk
    w = w - w.max()
    p = np.exp(w)
    return p / p.sum()


def harmonic_number(d: int, alpha: float) -> float:
    """Generalised harmonic number ``H_d(α) = Σ_{j=1}^d j^{-α}`` [P]. Cost ``O(d)``.

    Example:
        >>> harmonic_number(3, 1.0)
        1.8333333333333333
    """
    d, alpha = _check_d(d), _check_alpha(alpha)
    return float(np.sum(np.arange(1, d + 1, dtype=np.float64) ** (-alpha)))


def log_partition(alpha: float, d: int) -> float:
    """Free energy ``ψ(α) = log H_d(α)`` of the Gibbs family ``p_k ∝ e^{-α log k}`` [D]; stable."""
    d, alpha = _check_d(d), _check_alpha(alpha)
    w = -alpha * _log_ranks(d)
    m = w.max()
    return float(m + np.log(np.exp(w - m).sum()))


def gibbs_distribution(alpha: float, d: int) -> np.ndarray:
    """``p_k(α) = k^{-α} / H_d(α) = exp(−α log k − ψ(α))``, ``k = 1..d`` [P/D]."""
    d, alpha = _check_d(d), _check_alpha(alpha)
    return _gibbs(alpha, _log_ranks(d))


def power_law_spectrum(alpha: float, d: int, trace: str = "d") -> np.ndarray:
    """The orbit point ``λ_k(α) = d k^{-α} / H_d(α)`` (trace ``"d"``) or ``k^{-α}/H_d(α)`` (``"one"``).

    ``α = 0`` is the identity (flat spectrum). Example:
        >>> power_law_spectrum(0.0, 3).tolist()
        [1.0, 1.0, 1.0]
    """
    _check_trace(trace)
    p = gibbs_distribution(alpha, d)
    return p * d if trace == "d" else p


def mean_log_rank(alpha: float, d: int) -> float:
    """``E_α[log k] = −ψ'(α)`` under ``p(α)`` [D]. ``E_0[log k] = log(d!)/d``. Cost ``O(d)``."""
    logk = _log_ranks(_check_d(d))
    return float(_gibbs(_check_alpha(alpha), logk) @ logk)


def fisher_information(alpha: float, d: int) -> float:
    """Fisher information of the orbit ``I(α) = ψ''(α) = Var_α[log k]`` [D]. Cost ``O(d)``.

    Example:
        >>> fisher_information(0.0, 1)
        0.0
    """
    logk = _log_ranks(_check_d(d))
    p = _gibbs(_check_alpha(alpha), logk)
    m = p @ logk
    return float(p @ (logk - m) ** 2)


def orbit_kl(alpha: float, beta: float, d: int) -> float:
    """``KL(p_α ‖ p_β) = (β − α) E_α[log k] + ψ(β) − ψ(α)`` (closed form) [D]. Cost ``O(d)``."""
    a, b = _check_alpha(alpha), _check_alpha(beta, "beta")
    return float((b - a) * mean_log_rank(a, d) + log_partition(b, d) - log_partition(a, d))


def orbit_hellinger(alpha: float, beta: float, d: int) -> float:
    """Hellinger distance without the ½ convention: ``sqrt(Σ_k (sqrt p_k(α) − sqrt p_k(β))²)`` [D]."""
    p, q = gibbs_distribution(alpha, d), gibbs_distribution(beta, d)
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def orbit_bures_distance(alpha: float, beta: float, d: int, trace: str = "d") -> float:
    """Bures–Wasserstein distance between ``diag(λ(α))`` and ``diag(λ(β))`` [D].

    Commuting matrices: ``d_BW² = Σ_k (sqrt λ_k(α) − sqrt λ_k(β))² = d · Hel²`` (trace ``"d"``;
    ``Hel²`` for trace ``"one"``). Cost ``O(d)``.
    """
    _check_trace(trace)
    c = d if trace == "d" else 1.0
    return math.sqrt(c) * orbit_hellinger(alpha, beta, d)


def bures_line_element(alpha: float, d: int, trace: str = "d") -> float:
    """Squared Bures–Wasserstein line element per ``dα²`` along the orbit: ``(d/4) I(α)`` [P; D].

    With ``trace="one"`` it is ``I(α)/4`` — the ``d`` comes from the trace-``d`` normalisation.
    Example:
        >>> math.isclose(bures_line_element(0.7, 32), 8 * fisher_information(0.7, 32))
        True
    """
    _check_trace(trace)
    return (d if trace == "d" else 1.0) / 4.0 * fisher_information(alpha, d)


def _psd_sqrt(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt().unsqueeze(-2)) @ v.transpose(-1, -2)


def bures_wasserstein_distance(s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """General Bures–Wasserstein distance between PSD matrices (batched) [standard formula].

    ``d_BW(Σ_1, Σ_2)² = tr Σ_1 + tr Σ_2 − 2 tr (Σ_1^{1/2} Σ_2 Σ_1^{1/2})^{1/2}``; square roots by
    ``eigh``. Cost ``O(d³)``. Example:
        >>> round(bures_wasserstein_distance(torch.eye(2), 4 * torch.eye(2)).item(), 6)
        1.414214
    """
    s1, s2 = check_tensor(s1, "s1", min_dim=2), check_tensor(s2, "s2", min_dim=2)
    if s1.shape != s2.shape or s1.shape[-1] != s1.shape[-2]:
        raise ValueError(
            f"s1 and s2 must be square and of equal shape, got {tuple(s1.shape)}, {tuple(s2.shape)}"
        )
    r1 = _psd_sqrt(s1)
    cross = _psd_sqrt(r1 @ s2 @ r1)
    tr = lambda m: m.diagonal(dim1=-2, dim2=-1).sum(-1)  # noqa: E731
    return (tr(s1) + tr(s2) - 2 * tr(cross)).clamp_min(0).sqrt()


def orbit_top_radial(alpha: float, d: int) -> float:
    """Top radial on the orbit ``r(α) = ½ [log d − ψ(α)]``; increasing, concave, ``r(0) = 0`` [D]."""
    return 0.5 * (math.log(_check_d(d)) - log_partition(alpha, d))


def orbit_top_radial_inverse(r: float, d: int) -> float:
    """The inverse chart ``α = r⁻¹(ρ)`` on ``[0, ½ log d)`` by bracketing (Brent) [D].

    Values ``≤ 0`` map to ``α = 0``; values at or above ``r(ALPHA_MAX)`` map to ``ALPHA_MAX``.
    """
    d, r = _check_d(d), float(r)
    if not math.isfinite(r):
        raise ValueError(f"r must be finite, got {r}")
    if r <= 0 or d == 1:
        return 0.0
    if r >= orbit_top_radial(ALPHA_MAX, d):
        return ALPHA_MAX
    return float(optimize.brentq(lambda a: orbit_top_radial(a, d) - r, 0.0, ALPHA_MAX, xtol=1e-13))


def inverse_chart_lipschitz(alpha_star: float, d: int) -> float:
    """Lipschitz constant of ``r⁻¹`` on ``[0, r(α*)]``: ``2 / E_{α*}[log k]`` (``r⁻¹`` is convex) [D].

    Near the identity it is ``≈ 2 / (log d − 1)``.
    """
    return 2.0 / mean_log_rank(max(float(alpha_star), 0.0), d)


def fisher_rao_length(alpha0: float, alpha1: float, d: int) -> float:
    """Fisher–Rao length ``∫ sqrt(I(α)) dα`` of the orbit between two exponents (quadrature) [D].

    The Bures–Wasserstein length is ``(sqrt d / 2)`` times this.
    """
    a0, a1 = _check_alpha(alpha0, "alpha0"), _check_alpha(alpha1, "alpha1")
    val, _ = integrate.quad(lambda a: math.sqrt(fisher_information(a, d)), a0, a1, limit=200)
    return float(abs(val))


@dataclass(frozen=True)
class OrbitActions:
    """Action sums along an exponent path ``α_1..α_L`` (spec 4.3) [D]."""

    fisher_action: float  # Σ I(α_l) (α_{l+1} − α_l)²
    kl_action: float  # 2 Σ KL(p_{α_l} ‖ p_{α_{l+1}})
    bures_action: float  # Σ d_BW²(α_l, α_{l+1})
    fisher_length: float  # Σ ∫ sqrt(I) over each step
    fisher_action_exact: (
        float  # Σ |Δα_l| ∫_step I dα = Σ |Δα_l| |E_{α_l}[log k] − E_{α_{l+1}}[log k]|
    )
    steps: int  # L − 1
    d: int

    @property
    def cauchy_schwarz_holds(self) -> bool:
        """``(Fisher length)² ≤ (L − 1) · Σ_l |Δα_l| ∫_step I dα`` (Cauchy–Schwarz, exact form)."""
        return self.fisher_length**2 <= self.steps * self.fisher_action_exact * (1 + 1e-9) + 1e-15

    def __repr__(self) -> str:
        return (
            f"OrbitActions(fisher={self.fisher_action:.4g}, 2*KL={self.kl_action:.4g}, "
            f"bures={self.bures_action:.4g} [(d/4)*fisher={self.d / 4 * self.fisher_action:.4g}], "
            f"fisher_length={self.fisher_length:.4g})"
        )


def orbit_actions(alphas: Sequence[float], d: int) -> OrbitActions:
    """Fisher, KL and Bures actions of a path ``α_1..α_L`` on the orbit (spec 4.3) [D].

    ``𝒜_F = Σ_l I(α_l) Δα_l² ≈ 2 Σ_l KL(p_{α_l} ‖ p_{α_{l+1}})``, ``𝒜_BW = Σ_l d_BW² ≈ (d/4) 𝒜_F``;
    the ratios tend to 1 as the steps shrink. Cost ``O(L d)`` plus ``L`` quadratures.
    """
    a = [_check_alpha(x) for x in alphas]
    if len(a) < 2:
        raise ValueError("alphas needs at least two exponents (a path)")
    d = _check_d(d)
    fa = sum(fisher_information(x, d) * (y - x) ** 2 for x, y in zip(a[:-1], a[1:]))
    kl = 2 * sum(orbit_kl(x, y, d) for x, y in zip(a[:-1], a[1:]))
    bw = sum(orbit_bures_distance(x, y, d) ** 2 for x, y in zip(a[:-1], a[1:]))
    fl = sum(fisher_rao_length(x, y, d) for x, y in zip(a[:-1], a[1:]))
    # ∫_a^b I dα = ψ'(b) − ψ'(a) = E_a[log k] − E_b[log k]
    fe = sum(
        abs(y - x) * abs(mean_log_rank(x, d) - mean_log_rank(y, d)) for x, y in zip(a[:-1], a[1:])
    )
    return OrbitActions(float(fa), float(kl), float(bw), float(fl), float(fe), len(a) - 1, d)


# --------------------------------------------------------------------------------------------
# 3.7  fitted power-law charts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLawFit:
    """A fitted power-law chart ``λ_k ∝ k^{-α}`` of one spectrum, with its quality (spec 3.7).

    ``alpha`` is the exponent of the chart named by ``chart`` (default ``"mle"``); all four charts
    are always reported. Exponents refer to the eigenvalues ``λ = σ²`` of ``ĀᵀĀ``.
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

    Charts (spec 3.7; the paper's exact fit is unknown, so all are choices [C]):

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


# --------------------------------------------------------------------------------------------
# 5  effective rank as a spectral-energy quantile
# --------------------------------------------------------------------------------------------


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not 0 < tau < 1:
        raise ValueError(f"tau must lie strictly between 0 and 1, got {tau}")
    return tau


def _quantile(p: np.ndarray, tau: float) -> int:
    c = np.cumsum(p)
    return int(min(np.searchsorted(c, tau * c[-1] * (1 - 1e-13), side="left") + 1, p.size))


def effective_rank(spectrum, tau: float = 0.9, kind: str = "singular") -> int:
    """Effective rank as a spectral-energy quantile ``k_τ = min{k : Σ_{j≤k} p_j ≥ τ}`` [P; D].

    Example:
        >>> effective_rank([1.0, 1.0, 1.0, 1.0], tau=0.6, kind="eigen")
        3
    """
    tau = _check_tau(tau)
    return _quantile(spectral_energy(spectrum, kind), tau)


def orbit_effective_rank(alpha: float, d: int, tau: float = 0.9) -> int:
    """``k_τ(α) = min{k : H_k(α) ≥ τ H_d(α)}`` on the orbit; non-increasing in ``α`` [D]."""
    return _quantile(gibbs_distribution(alpha, d), _check_tau(tau))


def tail_mass_bound(alpha: float, k: int, d: int | None = None) -> float:
    """Finite-width tail bound (``α > 1``): ``Σ_{j>k} p_j ≤ k^{1−α} / ((α−1) H_d(α)) ≤ k^{1−α}/(α−1)``.

    With ``d=None`` the width-free form ``k^{1−α}/(α−1)`` [D].
    """
    alpha = _check_alpha(alpha)
    if alpha <= 1:
        raise ValueError(f"the tail bound needs alpha > 1, got {alpha}")
    if int(k) < 1:
        raise ValueError(f"k must be a positive rank, got {k}")
    b = float(k) ** (1 - alpha) / (alpha - 1)
    return b if d is None else b / harmonic_number(d, alpha)


def effective_rank_bound(alpha: float, tau: float = 0.9) -> int:
    """Width-free bound ``k_τ ≤ ⌈((1−τ)(α−1))^{−1/(α−1)}⌉`` for ``α > 1`` [D]."""
    alpha, tau = _check_alpha(alpha), _check_tau(tau)
    if alpha <= 1:
        raise ValueError(f"the effective-rank bound needs alpha > 1, got {alpha}")
    return int(math.ceil(((1 - tau) * (alpha - 1)) ** (-1 / (alpha - 1)) - 1e-12))


def total_variation(p, q) -> float:
    """``TV = ½ ‖p − q‖_1`` between two distributions of equal length (normalised here)."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"p and q must be 1-D of equal length, got {p.shape} and {q.shape}")
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


@dataclass(frozen=True)
class RankSummary:
    """Effective-rank summaries of one spectrum (spec 5)."""

    k_tau: dict  # {τ: k_τ}
    entropy_rank: float  # exp(Shannon entropy of p)
    participation_ratio: float  # 1 / Σ p_k²
    stable_rank: float  # 1 / p_1 = Σλ / λ_1
    d: int  # numerical rank (zeros are dropped; they change none of the summaries)

    def __repr__(self) -> str:
        ks = ", ".join(f"k_{t:g}={k}" for t, k in self.k_tau.items())
        return (
            f"RankSummary(d={self.d}, {ks}, entropy_rank={self.entropy_rank:.3g}, "
            f"participation={self.participation_ratio:.3g}, stable={self.stable_rank:.3g})"
        )


def rank_summary(
    spectrum, taus: Sequence[float] = (0.5, 0.9, 0.99), kind: str = "singular"
) -> RankSummary:
    """``k_τ`` for several ``τ`` plus entropy rank, participation ratio and stable rank."""
    p = spectral_energy(spectrum, kind)
    ent = -np.sum(p * np.log(np.where(p > 0, p, 1.0)))
    return RankSummary(
        {float(t): _quantile(p, _check_tau(t)) for t in taus},
        float(np.exp(ent)),
        float(1.0 / np.sum(p**2)),
        float(1.0 / p[0]),
        p.size,
    )


# --------------------------------------------------------------------------------------------
# 3.8, 4.1  near-identity expansion and chain slack
# --------------------------------------------------------------------------------------------


def _top_sv(m: torch.Tensor) -> torch.Tensor:
    """Largest singular value via the top eigenvalue of ``MᵀM`` (cheaper than a full SVD)."""
    return torch.linalg.eigvalsh(m.transpose(-1, -2) @ m)[..., -1].clamp_min(0).sqrt()


def _factor_stack(factors, name: str = "factors") -> torch.Tensor:
    if isinstance(factors, (list, tuple)):
        if not factors:
            raise ValueError(f"{name} is empty; pass at least one layer factor")
        factors = torch.stack([check_tensor(f, name, min_dim=2) for f in factors])
    f = check_tensor(factors, name, min_dim=3)
    if f.shape[-1] != f.shape[-2]:
        raise ValueError(f"{name} must be square d x d factors, got shape {tuple(f.shape)}")
    return f


def near_identity_cartan(b: torch.Tensor, eps: float) -> torch.Tensor:
    """First-order Cartan coordinate of ``Ā`` for ``A = I + εB``: ``a_k ≈ (ε/2)(μ_k − mean μ)`` [D].

    ``μ_1 ≥ … ≥ μ_d`` are the eigenvalues of ``B + Bᵀ``; the error is ``O(ε²)``. In particular
    ``r ≈ (ε/2)(μ_1 − tr(B + Bᵀ)/d)``. Batched; cost one symmetric eigensolve.
    """
    b = check_tensor(b, "b", min_dim=2)
    if b.shape[-1] != b.shape[-2]:
        raise ValueError(f"b must be square, got shape {tuple(b.shape)}")
    mu = torch.linalg.eigvalsh(b + b.transpose(-1, -2)).flip(-1)
    return 0.5 * eps * (mu - mu.mean(-1, keepdim=True))


def near_identity_slack(bs, eps: float) -> float:
    """First-order total slack of ``A_l = I + εB_l``: ``½[Σ_l c(S_l) − c(Σ_l S_l)]`` [D].

    ``c(M) = μ_max(M) − tr M / d``, ``S_l = ε(B_l + B_lᵀ)``; nonnegative by Ky Fan.
    """
    b = _factor_stack(bs, "bs")
    s = eps * (b + b.transpose(-1, -2))
    d = s.shape[-1]
    c = lambda m: torch.linalg.eigvalsh(m)[..., -1] - m.diagonal(dim1=-2, dim2=-1).sum(-1) / d  # noqa: E731
    return float(0.5 * (c(s).sum() - c(s.sum(0))))


@dataclass(frozen=True)
class ChainSlack:
    """Top radials, slacks and amplitudes of a chain of normalised factors (spec 4.1)."""

    r: np.ndarray  # r_l = log σ_1(Ā_l), l = 1..L
    interface_slack: np.ndarray  # s_l = r_l + r_{l+1} − log σ_1(Ā_{l+1} Ā_l), l = 1..L−1
    total_slack: float  # S = Σ r_l − log σ_1(P̄)
    log_sigma_chain: float  # log σ_1(P̄), P̄ = Ā_L ⋯ Ā_1
    amplitude: float  # G = (Π σ_1(Ā_l))^{1/L}

    @property
    def L(self) -> int:
        return int(self.r.size)

    def __repr__(self) -> str:
        return (
            f"ChainSlack(L={self.L}, sum r={self.r.sum():.4g}, log sigma1(P)={self.log_sigma_chain:.4g}, "
            f"S={self.total_slack:.4g}, max s_l={self.interface_slack.max(initial=0):.3g}, G={self.amplitude:.4g})"
        )


def chain_slack(factors, trace: str = "d") -> ChainSlack:
    """Non-backtracking slack of a chain ``P̄ = Ā_L ⋯ Ā_1`` of Frobenius-normalised factors [D].

    ``S = Σ_l r_l − log σ_1(P̄) ≥ 0`` and ``s_l = r_l + r_{l+1} − log σ_1(Ā_{l+1}Ā_l) ≥ 0`` by
    submultiplicativity; ``G = (Π_l σ_1(Ā_l))^{1/L} = exp((log σ_1(P̄) + S)/L)``. ``S = 0`` iff the
    top singular directions chain through every interface. ``factors``: ``(L, d, d)`` tensor (or a
    list), ``A_1`` first. The chain product is accumulated in float64. Cost ``O(L d³)``.
    """
    f = _factor_stack(factors)
    if f.dim() != 3:
        raise ValueError(f"factors must have shape (L, d, d), got {tuple(f.shape)}")
    a = frobenius_normalize(f.to(torch.float64), trace)
    s1 = _top_sv(a)
    r = torch.log(s1)
    pairs = a[1:] @ a[:-1]
    s_int = r[:-1] + r[1:] - torch.log(_top_sv(pairs))
    # product with running rescaling (no overflow for long chains)
    p = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    log_scale = 0.0
    for al in a:
        p = al @ p
        n = torch.linalg.matrix_norm(p).item()
        p = p / n
        log_scale += math.log(n)
    log_chain = log_scale + math.log(_top_sv(p).item())
    rr = r.cpu().numpy()
    return ChainSlack(
        r=rr,
        interface_slack=s_int.cpu().numpy(),
        total_slack=float(rr.sum() - log_chain),
        log_sigma_chain=float(log_chain),
        amplitude=float(np.exp(rr.mean())),
    )


# --------------------------------------------------------------------------------------------
# 4.2  depth budget and exponent drift
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthBudget:
    """Adjacent-layer exponent drift against the depth budget ``(log M)/L`` (spec 4.2) [D].

    With ``α_l`` the full-spectrum (ML) exponents and ``ρ_l = r_l − r(α_l)``:

    * ``bound_general[l] = Lip · (|r_{l+1} − r_l| + |ρ_{l+1} − ρ_l|)`` always bounds the drift;
    * ``bound_budget[l] = Lip · (u · (log M + S)/L + |ρ_{l+1} − ρ_l|)`` with the measured
      non-uniformity ``u = max_l r_l / mean_l r_l ≥ 1`` (``u = 1``: uniform budget);
    * ``bound_exact = Lip · (log M)/L`` is the paper's rate, valid with zero slack, exact chart and a
      uniform budget ``r_l ≤ (log M)/L`` for every ``l`` (``exact_hypotheses``).

    **These inequalities hold by construction, for any data.** ``ρ_l`` is *defined* so that
    ``α_l = r⁻¹(r_l − ρ_l)``, so ``bound_general`` is the mean-value theorem for ``r⁻¹``; with the
    default ``log M = log σ_1(P̄)`` one has ``Σ r_l = log M + S``, hence ``u (log M + S)/L = max_l
    r_l ≥ |r_{l+1} − r_l|``; and ``converse_gap`` is identically ``Σ_l [r(α_l) − r(α_min)] ≥ 0``.
    So :attr:`holds` tests the implementation (the Lipschitz constant ``2/E_{α*}[log k]`` taken at
    the right place ``α* = max α_l``, the ``u`` factor, the sign of ``S``), not the data; it is
    ``True`` for any numbers whatever when those are right. Consequences that *can* fail are
    checked elsewhere: the chain amplitude predicted from per-layer exponents alone against the
    product's measured ``σ_1``, and the drift on chains with known exponents where the bound is
    tight (``tests/test_geometry.py``, chapter 08 section 6).
    """

    drift: np.ndarray  # |α_{l+1} − α_l|
    radial_increments: np.ndarray  # |r_{l+1} − r_l|
    residual_increments: np.ndarray  # |ρ_{l+1} − ρ_l|
    lipschitz: float  # 2 / E_{α*}[log k], α* = max_l α_l
    log_M: float
    total_slack: float
    L: int
    uniformity: float  # u = max r_l / mean r_l
    budget: float  # (log M)/L
    budget_with_slack: float  # (log M + S)/L
    bound_general: np.ndarray
    bound_budget: np.ndarray
    bound_exact: float
    converse_gap: (
        float  # log σ_1(P̄) − (L r(α_min) + Σρ_l − S) = Σ_l [r(α_l) − r(α_min)] ≥ 0 (converse bound)
    )
    exact_hypotheses: bool  # S ≈ 0, ρ ≈ 0 and r_l ≤ (log M)/L for every l

    @property
    def holds(self) -> bool:
        """Drift within the general and budget bounds at every interface (and the exact rate when
        its hypotheses hold), and the converse gap ``≥ 0``.

        True by construction for any data once ``Lip``, ``u`` and the sign of ``S`` are right (see
        the class docstring): a check of the implementation, not evidence about a network.
        """
        tol = 1e-9
        ok = bool(np.all(self.drift <= self.bound_general + tol)) and bool(
            np.all(self.drift <= self.bound_budget + tol)
        )
        ok = ok and self.converse_gap >= -tol
        if self.exact_hypotheses:
            ok = ok and bool(np.all(self.drift <= self.bound_exact + 1e-6))
        return ok

    @property
    def tightness(self) -> float:
        """``max drift / max bound_budget`` (1 = the bound is attained)."""
        m = float(np.max(self.bound_budget, initial=0.0))
        return float(np.max(self.drift, initial=0.0)) / m if m > 0 else 0.0

    def __repr__(self) -> str:
        return (
            f"DepthBudget(L={self.L}, max drift={np.max(self.drift, initial=0):.4g}, "
            f"(log M)/L={self.budget:.4g}, (log M + S)/L={self.budget_with_slack:.4g}, "
            f"Lip={self.lipschitz:.4g}, u={self.uniformity:.3g}, "
            f"max |d rho|={np.max(self.residual_increments, initial=0):.3g}, "
            f"tightness={self.tightness:.3g}, holds={self.holds})"
        )


def depth_budget(
    alphas: Sequence[float],
    r: Sequence[float],
    d: int,
    log_sigma_chain: float,
    total_slack: float,
    log_M: float | None = None,
    tol: float = 1e-6,
) -> DepthBudget:
    """Check the reconstructed rigidity inequality of spec 4.2 on a measured chain [D].

    ``alphas``: full-spectrum (ML) exponents per layer; ``r``: top radials ``r_l``; ``d``: width;
    ``log_sigma_chain`` and ``total_slack`` from :func:`chain_slack`. ``log_M`` defaults to
    ``log σ_1(P̄)`` (choice, not from the paper: ``M`` is any bound on the chain amplitude; pass an
    a-priori budget to test the uniform-budget rate ``r_l ≤ (log M)/L``). The residuals are
    ``ρ_l = r_l − r(α_l)`` so that ``α_l = r⁻¹(r_l − ρ_l)`` exactly; with these choices every
    bound reported holds by construction (see :class:`DepthBudget`). ``r`` must be the top radials
    of the full ``d × d`` factors and ``alphas`` fits on all ``d`` ranks (full-rank factors).
    """
    a = np.asarray([_check_alpha(x) for x in alphas], dtype=np.float64)
    rr = np.asarray(r, dtype=np.float64)
    if a.shape != rr.shape or a.size < 2:
        raise ValueError(f"alphas and r need equal length >= 2, got {a.size} and {rr.size}")
    d = _check_d(d)
    L = a.size
    log_M = float(log_sigma_chain) if log_M is None else float(log_M)
    if log_M < log_sigma_chain - 1e-9:
        raise ValueError(
            f"log_M = {log_M} is below the measured log sigma_1(P) = {log_sigma_chain}"
        )
    rho = rr - np.array([orbit_top_radial(x, d) for x in a])
    lip = inverse_chart_lipschitz(float(a.max()), d)
    dr, drho, drift = np.abs(np.diff(rr)), np.abs(np.diff(rho)), np.abs(np.diff(a))
    mean_r = rr.mean()
    u = float(rr.max() / mean_r) if mean_r > 0 else 1.0
    b_slack = (log_M + total_slack) / L
    converse = log_sigma_chain - (L * orbit_top_radial(float(a.min()), d) + rho.sum() - total_slack)
    # uniform budget: every layer takes at most the average share (log M)/L of the amplitude
    exact = abs(total_slack) <= tol and np.all(np.abs(rho) <= tol) and rr.max() <= log_M / L + tol
    return DepthBudget(
        drift=drift,
        radial_increments=dr,
        residual_increments=drho,
        lipschitz=lip,
        log_M=log_M,
        total_slack=float(total_slack),
        L=L,
        uniformity=u,
        budget=log_M / L,
        budget_with_slack=float(b_slack),
        bound_general=lip * (dr + drho),
        bound_budget=lip * (u * b_slack + drho),
        bound_exact=lip * log_M / L,
        converse_gap=float(converse),
        exact_hypotheses=bool(exact),
    )


# --------------------------------------------------------------------------------------------
# 6  layer factors of models and exponent profiles
# --------------------------------------------------------------------------------------------


def _residual_blocks(model: nn.Module):
    from .models import ResidualBlock

    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    if not blocks:
        raise ValueError(
            "model has no ResidualBlock; exponent profiles need a residual chain "
            "(ResidualMLP, ConvResNet or your own model built from ResidualBlock)"
        )
    return blocks


def conv_operator_matrix(
    conv: nn.Conv2d, image_size: int, padding: str = "circular"
) -> torch.Tensor:
    """Dense ``(c_out n², c_in n²)`` matrix of a stride-1 'same' conv on ``n × n`` images (no bias).

    ``padding="circular"`` wraps around (its singular values are exactly those of the per-frequency
    FFT blocks, see :func:`circular_conv_singular_values`); ``"zero"`` is the model's own operator.
    Built by applying the conv to the identity basis; cost ``O(c² n⁴ k²)``.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if padding not in ("circular", "zero"):
        raise ValueError(f"padding must be 'circular' or 'zero', got {padding!r}")
    if conv.stride != (1, 1) or conv.groups != 1 or conv.dilation != (1, 1):
        raise ValueError("only stride-1, dilation-1, groups-1 convolutions are supported")
    w = conv.weight
    c_in, n = w.shape[1], int(image_size)
    kh, kw = w.shape[-2:]
    eye = torch.eye(c_in * n * n, dtype=w.dtype, device=w.device).reshape(-1, c_in, n, n)
    ph, pw = kh // 2, kw // 2
    if padding == "circular":
        x = torch.nn.functional.pad(eye, (pw, pw, ph, ph), mode="circular")
        out = torch.nn.functional.conv2d(x, w)
    else:
        out = torch.nn.functional.conv2d(eye, w, padding=(ph, pw))
    return out.reshape(c_in * n * n, -1).T


def circular_conv_singular_values(weight: torch.Tensor, image_size: int) -> torch.Tensor:
    """Exact singular values of a circular 'same' conv on ``n × n`` images via per-frequency FFT.

    The operator is block-diagonalised by the 2-D DFT: for each frequency ``(u, v)`` the
    ``c_out × c_in`` block ``K̂(u,v) = Σ_{i,j} K[:, :, i, j] e^{−2πi(u i + v j)/n}`` (Sedghi, Gupta &
    Long 2019). Returns all ``n² min(c_out, c_in)`` values, descending. Cost ``O(n² c³)``.
    """
    w = check_tensor(weight, "weight", min_dim=4)
    n = int(image_size)
    kh, kw = w.shape[-2:]
    if n < max(kh, kw):
        raise ValueError(f"image_size {n} is smaller than the kernel {kh}x{kw}")
    pad = torch.zeros(*w.shape[:2], n, n, dtype=w.dtype, device=w.device)
    # place tap (i, j) at offset (i - kh//2, j - kw//2) modulo n (cross-correlation convention)
    for i in range(kh):
        for j in range(kw):
            pad[:, :, (kh // 2 - i) % n, (kw // 2 - j) % n] = w[:, :, i, j]
    blocks = torch.fft.fft2(pad).permute(2, 3, 0, 1)  # (n, n, c_out, c_in)
    return torch.linalg.svdvals(blocks).flatten().sort(descending=True).values


def _static_factor(block, image_size: int | None, conv_padding: str) -> torch.Tensor:
    lin = [m for m in block.branch.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not lin:
        raise ValueError("a residual branch has no Linear/Conv2d layer; no static factor to build")
    if isinstance(lin[0], nn.Conv2d):
        if image_size is None:
            raise ValueError(
                "conv blocks need image_size (the feature-map side) for static factors"
            )
        mats = [conv_operator_matrix(c, image_size, conv_padding) for c in lin]
    else:
        mats = [m.weight for m in lin]
    w = mats[0]
    for m in mats[1:]:
        w = m @ w
    if w.shape[0] != w.shape[1]:
        raise ValueError(
            f"the branch maps width {w.shape[1]} to {w.shape[0]}; residual factors must be square"
        )
    return torch.eye(w.shape[0], dtype=w.dtype, device=w.device) + block.scale * w


def _block_inputs(model: nn.Module, x: torch.Tensor, blocks) -> list[torch.Tensor]:
    hs: list[torch.Tensor] = []
    hooks = [b.register_forward_pre_hook(lambda m, inp: hs.append(inp[0].detach())) for b in blocks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return hs


def layer_factors(
    model: nn.Module,
    x: torch.Tensor | None = None,
    kind: str = "static",
    conv_padding: str = "circular",
) -> torch.Tensor:
    """Layer factors ``A_l`` of every ``ResidualBlock`` ``h ↦ h + scale · branch(h)`` of ``model``.

    * ``kind="static"`` (weights only, ``(L, d, d)``) [C]: ``I + scale · W`` for a one-matrix
      branch, the surrogate ``I + scale · W_2 W_1`` for a two-matrix branch; for conv branches
      ``W`` is the dense operator matrix of the conv on the block's feature map, with
      ``conv_padding="circular"`` (default; its singular values are exactly the per-frequency FFT
      ones of :func:`circular_conv_singular_values`) or ``"zero"`` (the model's own padding).
      Biases and activations are ignored: diagnostics only, as the paper says.
    * ``kind="jacobian"`` (data-dependent, ``(N, L, d, d)``) [P]: ``A_l(x) = I + scale ·
      ∂branch/∂h (h_l(x))`` at the block's actual input ``h_l(x)`` — the true factors of the
      end-to-end Jacobian chain. Computed with ``torch.func.jacrev`` + ``vmap`` (no sample loop).

    ``d`` is the residual width (MLP) or ``channels · n²`` (conv). Cost: static ``O(L d²)`` (plus
    the conv matrices), Jacobian ``O(N L d)`` backward passes, memory ``O(N L d²)``.
    """
    check_model(model)
    if kind not in ("static", "jacobian"):
        raise ValueError(f"kind must be 'static' or 'jacobian', got {kind!r}")
    blocks = _residual_blocks(model)
    if kind == "static":
        image_size = None
        if any(isinstance(m, nn.Conv2d) for b in blocks for m in b.branch.modules()):
            if x is None:
                raise ValueError(
                    "conv blocks need the feature-map size: pass an input x (one sample is enough)"
                )
            else:
                image_size = _block_inputs(model, check_tensor(x[:1], "x", min_dim=2), blocks)[
                    0
                ].shape[-1]
        with torch.no_grad():
            return torch.stack([_static_factor(b, image_size, conv_padding) for b in blocks])
    if x is None:
        raise ValueError("kind='jacobian' needs inputs x at which to evaluate the factors")
    x = check_tensor(x, "x", min_dim=2)
    hs = _block_inputs(model, x, blocks)
    from torch.func import functional_call, jacrev, vmap

    out = []
    for b, h in zip(blocks, hs):
        params = {k: v.detach() for k, v in b.branch.named_parameters()}
        shape = h.shape[1:]

        def f(v, b=b, params=params, shape=shape):
            return functional_call(b.branch, params, (v.reshape(1, *shape),)).reshape(-1)

        j = vmap(jacrev(f))(h.reshape(len(h), -1))
        eye = torch.eye(j.shape[-1], dtype=j.dtype, device=j.device)
        out.append(eye + b.scale * j)
    return torch.stack(out, 1)


@dataclass(frozen=True)
class ExponentProfile:
    """Per-layer exponent, fit quality and effective rank along depth, plus the chain's budget.

    For Jacobian factors the per-layer arrays are means over the samples and ``per_sample`` holds
    one profile per input (each with its own chain, slack and budget).
    """

    kind: str
    alpha: np.ndarray  # chart exponent per layer (ML by default)
    alpha_ls: np.ndarray
    r: np.ndarray  # top radial r_l
    rho: np.ndarray  # signed top-radial residual
    res_hel: np.ndarray
    ls_r2: np.ndarray
    k_tau: np.ndarray
    power_law: np.ndarray  # verdict per layer (fraction of samples for Jacobian factors)
    d: int
    tau: float
    slack: ChainSlack | None
    budget: DepthBudget | None
    fits: tuple = field(default=(), repr=False)
    per_sample: tuple = field(default=(), repr=False)

    @property
    def L(self) -> int:
        return int(self.alpha.size)

    @property
    def holds(self) -> bool:
        """:attr:`DepthBudget.holds` for the chain (every sample's chain).

        True by construction for any data when the code is right (see :class:`DepthBudget`): a
        check of the implementation, not a finding about the model.
        """
        if self.per_sample:
            return all(p.holds for p in self.per_sample)
        return self.budget is None or self.budget.holds

    def __repr__(self) -> str:
        s = f", S={self.slack.total_slack:.3g}" if self.slack is not None else ""
        b = (
            f", max drift={np.max(self.budget.drift):.3g}, (log M)/L={self.budget.budget:.3g}"
            if self.budget
            else ""
        )
        n = f", samples={len(self.per_sample)}" if self.per_sample else ""
        return (
            f"ExponentProfile({self.kind}, L={self.L}, d={self.d}, alpha in "
            f"[{self.alpha.min():.3g}, {self.alpha.max():.3g}], mean res_hel={self.res_hel.mean():.3g}, "
            f"k_{self.tau:g} mean={self.k_tau.mean():.3g}{s}{b}{n}, holds={self.holds})"
        )


def chain_profile(
    factors,
    kind: str = "static",
    trace: str = "d",
    tau: float = 0.9,
    chart: str = "mle",
    window=None,
) -> ExponentProfile:
    """Exponent profile of one chain of square factors ``(L, d, d)`` (``A_1`` first).

    Per layer: eigenvalues of ``A_lᵀA_l`` (symmetric eigensolve), :func:`power_law_fit` (exponent by ``chart``, ML by
    default), ``k_τ``; per chain: :func:`chain_slack` and :func:`depth_budget` (which always uses
    the ML exponents, the chart for which ``ρ`` is defined). The budget is ``None`` when a factor is
    numerically rank-deficient: its fit then lives on the orbit of its rank while ``r_l`` (from
    the whole factor) uses the ambient ``d``, and the two cannot be combined. Cost ``O(L d³)``.
    """
    f = _factor_stack(factors)
    if f.dim() != 3:
        raise ValueError(f"factors must have shape (L, d, d), got {tuple(f.shape)}")
    tau = _check_tau(tau)
    f64 = f.detach().to(torch.float64)
    # eigenvalues of AᵀA (= σ², unnormalised): a symmetric eigensolve is much cheaper than an SVD
    sv = torch.linalg.eigvalsh(f64.transpose(-1, -2) @ f64).flip(-1).clamp_min(0).cpu().numpy()
    fits = tuple(power_law_fit(s, "eigen", window=window, chart=chart) for s in sv)
    sl = chain_slack(f.detach(), trace)
    d = f.shape[-1]
    a_mle = np.array([ft.alpha_mle for ft in fits])
    dims = {ft.d for ft in fits}
    budget = (
        depth_budget(a_mle, sl.r, d, sl.log_sigma_chain, sl.total_slack)
        if len(fits) >= 2 and dims == {d}
        else None
    )
    return ExponentProfile(
        kind=kind,
        alpha=np.array([ft.alpha for ft in fits]),
        alpha_ls=np.array([ft.alpha_ls for ft in fits]),
        r=sl.r,
        rho=np.array([ft.rho for ft in fits]),
        res_hel=np.array([ft.res_hel for ft in fits]),
        ls_r2=np.array([ft.ls_r2 for ft in fits]),
        k_tau=np.array([effective_rank(s, tau, kind="eigen") for s in sv]),
        power_law=np.array([ft.is_power_law for ft in fits], dtype=float),
        d=d,
        tau=tau,
        slack=sl,
        budget=budget,
        fits=fits,
    )


def exponent_profile(
    model: nn.Module,
    x: torch.Tensor | None = None,
    kind: str = "static",
    trace: str = "d",
    tau: float = 0.9,
    chart: str = "mle",
    window=None,
    conv_padding: str = "circular",
) -> ExponentProfile:
    """Exponent profile along depth of a residual model (``ResidualMLP``, ``ConvResNet``, ...).

    ``kind="static"``: weights-only factors (diagnostics only [P]); ``kind="jacobian"``: the
    data-dependent factors ``I + scale · ∂branch/∂h`` at each row of ``x`` (one chain per sample,
    per-layer means reported). See :func:`layer_factors` and :func:`chain_profile`.

    Example:
        >>> from spectral_lab.models import ResidualMLP
        >>> prof = exponent_profile(ResidualMLP(8, 3, width=16, depth=4))
        >>> prof.alpha.shape
        (4,)
    """
    f = layer_factors(model, x, kind, conv_padding)
    if kind == "static":
        return chain_profile(f, "static", trace, tau, chart, window)
    profs = tuple(chain_profile(fi, "jacobian", trace, tau, chart, window) for fi in f)
    mean = lambda name: np.mean([getattr(p, name) for p in profs], axis=0)  # noqa: E731
    return ExponentProfile(
        kind="jacobian",
        alpha=mean("alpha"),
        alpha_ls=mean("alpha_ls"),
        r=mean("r"),
        rho=mean("rho"),
        res_hel=mean("res_hel"),
        ls_r2=mean("ls_r2"),
        k_tau=mean("k_tau"),
        power_law=mean("power_law"),
        d=profs[0].d,
        tau=float(tau),
        slack=None,
        budget=None,
        per_sample=profs,
    )
