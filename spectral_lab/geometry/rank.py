"""Effective rank as a spectral-energy quantile, its orbit value and tail bounds (the
effective rank of "Geometric and Spectral Alignment for Deep Neural Network I").

Spectra are taken as given (``kind="singular"`` or ``"eigen"``) and handled in float64 NumPy on
the CPU."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._common import _check_alpha
from .normalize import spectral_energy
from .orbit import gibbs_distribution, harmonic_number


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not 0 < tau < 1:
        raise ValueError(f"tau must lie strictly between 0 and 1, got {tau}")
    return tau


def _quantile(p: np.ndarray, tau: float) -> int:
    c = np.cumsum(p)
    return int(min(np.searchsorted(c, tau * c[-1] * (1 - 1e-13), side="left") + 1, p.size))


def energy_quantile_rank(spectrum, tau: float = 0.9, kind: str = "singular") -> int:
    """Effective rank as a spectral-energy quantile ``k_τ = min{k : Σ_{j≤k} p_j ≥ τ}`` [P; D].

    ``p_k = λ_k / Σ_j λ_j`` (:func:`spectral_energy`). Cost ``O(d log d)`` (a sort).

    Example:
        >>> energy_quantile_rank([1.0, 1.0, 1.0, 1.0], tau=0.6, kind="eigen")
        3
    """
    tau = _check_tau(tau)
    return _quantile(spectral_energy(spectrum, kind), tau)


def orbit_energy_quantile_rank(alpha: float, d: int, tau: float = 0.9) -> int:
    """``k_τ(α) = min{k : H_k(α) ≥ τ H_d(α)}`` on the orbit; non-increasing in ``α`` [D]. Cost ``O(d)``.

    Example:
        >>> orbit_energy_quantile_rank(0.0, 10, tau=0.5), orbit_energy_quantile_rank(2.0, 10, tau=0.5)
        (5, 1)
    """
    return _quantile(gibbs_distribution(alpha, d), _check_tau(tau))


def tail_mass_bound(alpha: float, k: int, d: int | None = None) -> float:
    """Finite-width tail bound (``α > 1``): ``Σ_{j>k} p_j ≤ k^{1−α} / ((α−1) H_d(α)) ≤ k^{1−α}/(α−1)``.

    With ``d=None`` the width-free form ``k^{1−α}/(α−1)`` [D]. Cost ``O(d)`` (``O(1)`` without ``d``).

    Example: the bound dominates the exact tail of the orbit.
        >>> from spectral_lab.geometry import gibbs_distribution
        >>> float(gibbs_distribution(2.0, 100)[4:].sum()) <= tail_mass_bound(2.0, 4, 100)
        True
    """
    alpha = _check_alpha(alpha)
    if alpha <= 1:
        raise ValueError(f"the tail bound needs alpha > 1, got {alpha}")
    if int(k) < 1:
        raise ValueError(f"k must be a positive rank, got {k}")
    b = float(k) ** (1 - alpha) / (alpha - 1)
    return b if d is None else b / harmonic_number(d, alpha)


def energy_quantile_rank_bound(alpha: float, tau: float = 0.9) -> int:
    """Width-free bound ``k_τ ≤ ⌈((1−τ)(α−1))^{−1/(α−1)}⌉`` for ``α > 1`` [D]. Cost ``O(1)``.

    Example:
        >>> energy_quantile_rank_bound(2.0, 0.9), orbit_energy_quantile_rank(2.0, 1000, 0.9)
        (10, 6)
    """
    alpha, tau = _check_alpha(alpha), _check_tau(tau)
    if alpha <= 1:
        raise ValueError(f"the effective-rank bound needs alpha > 1, got {alpha}")
    return int(math.ceil(((1 - tau) * (alpha - 1)) ** (-1 / (alpha - 1)) - 1e-12))


def total_variation(p, q) -> float:
    """``TV = ½ ‖p − q‖_1`` between two distributions of equal length (normalised here). Cost ``O(d)``.

    Example:
        >>> total_variation([1, 0], [0.5, 0.5])
        0.5
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"p and q must be 1-D of equal length, got {p.shape} and {q.shape}")
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


@dataclass(frozen=True)
class RankSummary:
    """Effective-rank summaries of one spectrum (see :func:`rank_summary`).

    With ``p_k = λ_k / Σ_j λ_j``: ``k_tau[τ]`` the energy quantile ranks, ``entropy_rank =
    exp(−Σ p_k log p_k)``, ``participation_ratio = 1 / Σ p_k²``, ``stable_rank = 1 / p_1``.

    Example:
        >>> s = rank_summary([3.0, 1.0], taus=(0.5,), kind="eigen")
        >>> s.k_tau, s.stable_rank, round(s.participation_ratio, 4)  # p = (3/4, 1/4)
        ({0.5: 1}, 1.3333333333333333, 1.6)
    """

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
    """``k_τ`` for several ``τ`` plus entropy rank, participation ratio and stable rank.

    All four are computed from ``p_k = λ_k / Σ_j λ_j`` (:class:`RankSummary` gives the formulas);
    for a flat spectrum they all equal ``d``. Cost ``O(d log d)``.

    Example:
        >>> s = rank_summary([1.0, 1.0, 1.0, 1.0], taus=(0.5,), kind="eigen")
        >>> s.k_tau, round(s.entropy_rank, 6), s.participation_ratio, s.stable_rank
        ({0.5: 2}, 4.0, 4.0, 4.0)
    """
    p = spectral_energy(spectrum, kind)
    ent = -np.sum(p * np.log(np.where(p > 0, p, 1.0)))
    return RankSummary(
        {float(t): _quantile(p, _check_tau(t)) for t in taus},
        float(np.exp(ent)),
        float(1.0 / np.sum(p**2)),
        float(1.0 / p[0]),
        p.size,
    )
