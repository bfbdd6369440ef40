"""Residual chains: the near-identity expansion, the chain slack and the depth budget on exponent
drift, as reconstructed from "Geometric and Spectral Alignment for Deep Neural Network I".

Factors are torch tensors (chains are accumulated in float64 on their device); budgets are float64
NumPy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._checks import check_tensor
from ._common import _check_alpha, _check_d
from .normalize import frobenius_normalize
from .orbit import inverse_chart_lipschitz, orbit_top_radial


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
    ``r ≈ (ε/2)(μ_1 − tr(B + Bᵀ)/d)``. Batched; cost one symmetric eigensolve, ``O(d³)``. Runs
    on the device and dtype of its input.

    Example: the first-order coordinate matches the exact one to ``O(ε²)``.
        >>> from spectral_lab.geometry import cartan_coordinates
        >>> b = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> exact = cartan_coordinates(torch.eye(6, dtype=torch.float64) + 1e-3 * b)
        >>> bool((exact - near_identity_cartan(b, 1e-3)).abs().max() < 1e-5)
        True
    """
    b = check_tensor(b, "b", min_dim=2)
    if b.shape[-1] != b.shape[-2]:
        raise ValueError(f"b must be square, got shape {tuple(b.shape)}")
    mu = torch.linalg.eigvalsh(b + b.transpose(-1, -2)).flip(-1)
    return 0.5 * eps * (mu - mu.mean(-1, keepdim=True))


def near_identity_slack(bs, eps: float) -> float:
    """First-order total slack of ``A_l = I + εB_l``: ``½[Σ_l c(S_l) − c(Σ_l S_l)]`` [D].

    ``c(M) = μ_max(M) − tr M / d``, ``S_l = ε(B_l + B_lᵀ)``; nonnegative by Ky Fan. Cost ``L + 1``
    symmetric eigensolves, ``O(L d³)``.

    Example:
        >>> bs = torch.randn(3, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> near_identity_slack(bs, 1e-2) >= 0
        True
    """
    b = _factor_stack(bs, "bs")
    s = eps * (b + b.transpose(-1, -2))
    d = s.shape[-1]
    c = lambda m: torch.linalg.eigvalsh(m)[..., -1] - m.diagonal(dim1=-2, dim2=-1).sum(-1) / d  # noqa: E731
    return float(0.5 * (c(s).sum() - c(s.sum(0))))


@dataclass(frozen=True)
class ChainSlack:
    """Top radials, slacks and amplitudes of a chain of normalised factors (see :func:`chain_slack`).

    ``r_l = log σ_1(Ā_l)``, the interface slacks ``s_l = r_l + r_{l+1} − log σ_1(Ā_{l+1} Ā_l)``,
    the total slack ``S = Σ r_l − log σ_1(P̄)`` and the amplitude ``G = (Π σ_1(Ā_l))^{1/L}``.

    Example: two factors whose top directions do not chain leave a positive slack.
        >>> a = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))
        >>> cs = chain_slack(torch.stack([a, a.flip(0, 1)]))
        >>> cs.L, bool(cs.total_slack > 0), cs.interface_slack.shape
        (2, True, (1,))
    """

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
    list), ``A_1`` first. The chain product is accumulated in float64 on the factors' device. Cost
    ``O(L d³)``.

    Example: a chain of copies of one factor chains its top direction through every interface.
        >>> a = torch.diag(torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64))
        >>> cs = chain_slack(torch.stack([a, a, a]))
        >>> abs(cs.total_slack) < 1e-12, cs.L
        (True, 3)
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
# depth budget and exponent drift
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthBudget:
    """Adjacent-layer exponent drift against the depth budget ``(log M)/L`` [D].

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
    tight (``tests/geometry/``, the chapter on residual chains).

    Example: see :func:`depth_budget`.
        >>> b = depth_budget([0.0, 0.0], [0.0, 0.0], 8, log_sigma_chain=0.0, total_slack=0.0)
        >>> b.holds, b.tightness, b.exact_hypotheses
        (True, 0.0, True)
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
    """Check the rigidity inequality on exponent drift on a measured chain [D].

    The inequality ``|α_{l+1} − α_l| ≤ Lip · ((log M)/L + |ρ_{l+1} − ρ_l|)`` (with its general and
    slack-corrected forms, :class:`DepthBudget`) is a reconstruction of the ``(log M)/L`` rate
    that "Geometric and Spectral Alignment for Deep Neural Network I" states; its constants are a
    choice of this library.

    ``alphas``: full-spectrum (ML) exponents per layer; ``r``: top radials ``r_l``; ``d``: width;
    ``log_sigma_chain`` and ``total_slack`` from :func:`chain_slack`. ``log_M`` defaults to
    ``log σ_1(P̄)`` (choice, not from the paper: ``M`` is any bound on the chain amplitude; pass an
    a-priori budget to test the uniform-budget rate ``r_l ≤ (log M)/L``). The residuals are
    ``ρ_l = r_l − r(α_l)`` so that ``α_l = r⁻¹(r_l − ρ_l)`` exactly; with these choices every
    bound reported holds by construction (see :class:`DepthBudget`). ``r`` must be the top radials
    of the full ``d × d`` factors and ``alphas`` fits on all ``d`` ranks (full-rank factors).
    Cost ``O(L d)``.

    Example: on exact orbit points (``ρ = 0``) with zero slack every bound holds.
        >>> from spectral_lab.geometry import orbit_top_radial
        >>> alphas = [0.5, 0.6, 0.7]
        >>> r = [orbit_top_radial(a, 16) for a in alphas]
        >>> b = depth_budget(alphas, r, 16, log_sigma_chain=sum(r), total_slack=0.0)
        >>> b.holds, round(float(b.drift.max()), 6)
        (True, 0.1)
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
