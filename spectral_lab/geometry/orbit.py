"""The exact power-law orbit ``lambda_k(alpha) = d k^{-alpha} / H_d(alpha)``: a Gibbs family on ranks, a
Fisher line and a Bures-Wasserstein curve, as in "Geometric and Spectral Alignment for Deep Neural
Network I". Scalar problems in float64 NumPy/SciPy on the CPU."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import integrate, optimize

from .._checks import check_tensor
from ._common import ALPHA_MAX, _check_alpha, _check_d, _check_trace


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
    """Free energy ``ψ(α) = log H_d(α)`` of the Gibbs family ``p_k ∝ e^{-α log k}`` [D].

    Computed with a log-sum-exp shift (stable for large ``α``). Cost ``O(d)``.

    Example:
        >>> math.isclose(log_partition(1.0, 3), math.log(harmonic_number(3, 1.0)))
        True
    """
    d, alpha = _check_d(d), _check_alpha(alpha)
    w = -alpha * _log_ranks(d)
    m = w.max()
    return float(m + np.log(np.exp(w - m).sum()))


def gibbs_distribution(alpha: float, d: int) -> np.ndarray:
    """``p_k(α) = k^{-α} / H_d(α) = exp(−α log k − ψ(α))``, ``k = 1..d`` [P/D]. Cost ``O(d)``.

    Example:
        >>> gibbs_distribution(1.0, 2).round(4).tolist()  # (1, 1/2) / 1.5
        [0.6667, 0.3333]
    """
    d, alpha = _check_d(d), _check_alpha(alpha)
    return _gibbs(alpha, _log_ranks(d))


def power_law_spectrum(alpha: float, d: int, trace: str = "d") -> np.ndarray:
    """The orbit point ``λ_k(α) = d k^{-α} / H_d(α)`` (trace ``"d"``) or ``k^{-α}/H_d(α)`` (``"one"``).

    ``α = 0`` is the identity (flat spectrum). Cost ``O(d)``. Example:
        >>> power_law_spectrum(0.0, 3).tolist()
        [1.0, 1.0, 1.0]
    """
    _check_trace(trace)
    p = gibbs_distribution(alpha, d)
    return p * d if trace == "d" else p


def mean_log_rank(alpha: float, d: int) -> float:
    """``E_α[log k] = −ψ'(α)`` under ``p(α)`` [D]. ``E_0[log k] = log(d!)/d``. Cost ``O(d)``.

    Example:
        >>> math.isclose(mean_log_rank(0.0, 4), math.log(24) / 4)
        True
    """
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
    """``KL(p_α ‖ p_β) = (β − α) E_α[log k] + ψ(β) − ψ(α)`` (closed form) [D]. Cost ``O(d)``.

    Example: for a small step it is ``½ I(α) Δα²`` to second order.
        >>> round(orbit_kl(1.0, 1.01, 16) / (0.5 * fisher_information(1.0, 16) * 1e-4), 2)
        1.0
    """
    a, b = _check_alpha(alpha), _check_alpha(beta, "beta")
    return float((b - a) * mean_log_rank(a, d) + log_partition(b, d) - log_partition(a, d))


def orbit_hellinger(alpha: float, beta: float, d: int) -> float:
    """Hellinger distance without the ½ convention: ``sqrt(Σ_k (sqrt p_k(α) − sqrt p_k(β))²)`` [D].

    Cost ``O(d)``.

    Example:
        >>> orbit_hellinger(0.5, 0.5, 8)
        0.0
        >>> 0 < orbit_hellinger(0.0, 5.0, 8) < math.sqrt(2)
        True
    """
    p, q = gibbs_distribution(alpha, d), gibbs_distribution(beta, d)
    return float(np.sqrt(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def orbit_bures_distance(alpha: float, beta: float, d: int, trace: str = "d") -> float:
    """Bures–Wasserstein distance between ``diag(λ(α))`` and ``diag(λ(β))`` [D].

    Commuting matrices: ``d_BW² = Σ_k (sqrt λ_k(α) − sqrt λ_k(β))² = d · Hel²`` (trace ``"d"``;
    ``Hel²`` for trace ``"one"``). Cost ``O(d)``.

    Example:
        >>> math.isclose(orbit_bures_distance(0.0, 1.0, 8), math.sqrt(8) * orbit_hellinger(0.0, 1.0, 8))
        True
    """
    _check_trace(trace)
    c = d if trace == "d" else 1.0
    return math.sqrt(c) * orbit_hellinger(alpha, beta, d)


def bures_line_element(alpha: float, d: int, trace: str = "d") -> float:
    """Squared Bures–Wasserstein line element per ``dα²`` along the orbit: ``(d/4) I(α)`` [P; D].

    With ``trace="one"`` it is ``I(α)/4`` — the ``d`` comes from the trace-``d`` normalisation.
    Cost ``O(d)``.

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
    ``eigh``. Cost ``O(d³)``. Runs on the device and dtype of its inputs.

    Example:
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
    """Top radial on the orbit ``r(α) = ½ [log d − ψ(α)]``; increasing, concave, ``r(0) = 0`` [D].

    It equals :func:`~spectral_lab.geometry.top_radial` of :func:`power_law_spectrum`. Cost ``O(d)``.

    Example:
        >>> orbit_top_radial(0.0, 16)
        0.0
        >>> from spectral_lab.geometry import top_radial
        >>> math.isclose(orbit_top_radial(1.2, 16), top_radial(power_law_spectrum(1.2, 16), kind="eigen"))
        True
    """
    return 0.5 * (math.log(_check_d(d)) - log_partition(alpha, d))


def orbit_top_radial_inverse(r: float, d: int) -> float:
    """The inverse chart ``α = r⁻¹(ρ)`` on ``[0, ½ log d)`` by bracketing (Brent) [D].

    Values ``≤ 0`` map to ``α = 0``; values at or above ``r(ALPHA_MAX)`` map to ``ALPHA_MAX``.
    Cost: a few dozen evaluations of ``r``, ``O(d)`` each.

    Example:
        >>> round(orbit_top_radial_inverse(orbit_top_radial(1.5, 32), 32), 9)
        1.5
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

    Near the identity it is ``≈ 2 / (log d − 1)``. Cost ``O(d)``.

    Example:
        >>> math.isclose(inverse_chart_lipschitz(0.0, 4), 2 / mean_log_rank(0.0, 4))
        True
    """
    return 2.0 / mean_log_rank(max(float(alpha_star), 0.0), d)


def fisher_rao_length(alpha0: float, alpha1: float, d: int) -> float:
    """Fisher–Rao length ``∫ sqrt(I(α)) dα`` of the orbit between two exponents (quadrature) [D].

    The Bures–Wasserstein length is ``(sqrt d / 2)`` times this. Cost: one adaptive quadrature,
    ``O(d)`` per node.

    Example: a short segment has length ``≈ sqrt(I(α)) Δα``.
        >>> round(fisher_rao_length(1.0, 1.01, 16) / (math.sqrt(fisher_information(1.0, 16)) * 0.01), 3)
        1.0
    """
    a0, a1 = _check_alpha(alpha0, "alpha0"), _check_alpha(alpha1, "alpha1")
    val, _ = integrate.quad(lambda a: math.sqrt(fisher_information(a, d)), a0, a1, limit=200)
    return float(abs(val))


@dataclass(frozen=True)
class OrbitActions:
    """Action sums along an exponent path ``α_1..α_L`` [D] (see :func:`orbit_actions`).

    ``fisher_action = Σ_l I(α_l) Δα_l²``, ``kl_action = 2 Σ_l KL(p_{α_l} ‖ p_{α_{l+1}})``,
    ``bures_action = Σ_l d_BW²(α_l, α_{l+1})``, ``fisher_length = Σ_l ∫ sqrt(I) dα`` over each step.

    Example:
        >>> act = orbit_actions([0.0, 0.5], 8)
        >>> act.steps, act.d, act.cauchy_schwarz_holds
        (1, 8, True)
    """

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
    """Fisher, KL and Bures actions of a path ``α_1..α_L`` on the orbit [D].

    ``𝒜_F = Σ_l I(α_l) Δα_l² ≈ 2 Σ_l KL(p_{α_l} ‖ p_{α_{l+1}})``, ``𝒜_BW = Σ_l d_BW² ≈ (d/4) 𝒜_F``;
    the ratios tend to 1 as the steps shrink (the action estimates along depth of "Geometric and
    Spectral Alignment for Deep Neural Network I"). Cost ``O(L d)`` plus ``L`` quadratures.

    Example:
        >>> act = orbit_actions([1.0, 1.01, 1.02], 16)
        >>> round(act.kl_action / act.fisher_action, 2), round(act.bures_action / (4 * act.fisher_action), 2)
        (1.0, 1.0)
        >>> act.cauchy_schwarz_holds
        True
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
