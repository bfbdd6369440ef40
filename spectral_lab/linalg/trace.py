"""Stochastic trace estimators: Girard--Hutchinson and Hutch++."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._random import resolve_generator
from .._results import Result
from .operator import LinearOperator, Matvec, _rademacher, _randn, as_operator

__all__ = ["TraceResult", "hutchinson", "hutchpp"]


@dataclass(frozen=True)
class TraceResult(Result):
    """A stochastic trace estimate with its standard error and the products it cost; ``route``
    says how the operator's products were computed (or None)."""

    estimate: float
    std_error: float
    matvecs: int
    method: str
    route: str | None = None

    def __float__(self) -> float:
        """The trace estimate."""
        return float(self.estimate)

    def __repr__(self) -> str:
        return (
            f"TraceResult(method={self.method!r}, estimate={self.estimate:.6g} "
            f"± {self.std_error:.2g}, matvecs={self.matvecs})"
        )


def _probes(op: LinearOperator, m: int, distribution: str, g: torch.Generator) -> torch.Tensor:
    if distribution == "rademacher":
        return _rademacher(op, op.dim, m, g=g)
    if distribution == "gaussian":
        return _randn(op, op.dim, m, g=g)
    raise ValueError(f"distribution must be 'rademacher' or 'gaussian', got {distribution!r}")


def _blocked(op: LinearOperator, Z: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    b = Z.shape[1] if chunk_size is None else int(chunk_size)
    return torch.cat([op.mm(Z[:, i : i + b]) for i in range(0, Z.shape[1], b)], dim=1)


def _check_budget(num_matvecs: int, least: int) -> None:
    if not isinstance(num_matvecs, int) or num_matvecs < least:
        raise ValueError(f"num_matvecs must be an int >= {least}, got {num_matvecs!r}")


def hutchinson(
    A: LinearOperator | torch.Tensor | Matvec,
    num_matvecs: int = 60,
    *,
    distribution: str = "rademacher",
    dim: int | None = None,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> TraceResult:
    """Girard--Hutchinson trace estimate ``tr(A) ~ (1/m) sum_i z_i^T A z_i``.

    ``z_i`` Rademacher (default) or Gaussian; unbiased, variance ``2 ||A||_F^2 / m`` for Gaussian
    probes (``2 sum_{i!=j} A_ij^2 / m`` for Rademacher), so error ``O(1/sqrt(m))``. Products are
    taken in blocks of ``chunk_size`` columns (all at once by default). Cost: ``m`` products.

    Runs on the device and dtype of the operator ``A``.

    Example:
        >>> hutchinson(torch.eye(50, dtype=torch.float64), 10).estimate
        50.0
    """
    op = as_operator(A, dim, dtype, device)
    _check_budget(num_matvecs, 1)
    g = resolve_generator(generator, seed, op.device)
    start = op.n_products
    Z = _probes(op, num_matvecs, distribution, g)
    s = (Z * _blocked(op, Z, chunk_size)).sum(0).double()
    se = float(s.std() / math.sqrt(len(s))) if len(s) > 1 else math.inf
    return TraceResult(float(s.mean()), se, op.n_products - start, "hutchinson", op.route)


def hutchpp(
    A: LinearOperator | torch.Tensor | Matvec,
    num_matvecs: int = 60,
    *,
    distribution: str = "rademacher",
    dim: int | None = None,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> TraceResult:
    """Hutch++ trace estimate (Meyer, Musco, Musco & Woodruff 2021).

    Split ``m`` products in thirds: sketch ``Q = orth(A S)`` (``m/3``), take ``tr(Q^T A Q)`` exactly
    (``m/3``), and run Hutchinson on the deflated rest ``(I - QQ^T) A (I - QQ^T)`` with the remaining
    probes. Unbiased; the low-rank part removes the top of the spectrum, so the error is
    ``O(1/m)`` rather than ``O(1/sqrt(m))`` for matrices with decaying spectra (e.g. Hessians).
    ``std_error`` covers the Hutchinson part (the sketched part is exact given ``Q``).
    Cost: ``m`` products (``m >= 3``) plus ``O(m^2 dim)`` orthogonalisation.

    Runs on the device and dtype of the operator ``A``.

    Example:
        >>> round(hutchpp(torch.diag(torch.arange(1.0, 31.0)), 93).estimate)  # sketch spans R^30: exact
        465
    """
    op = as_operator(A, dim, dtype, device)
    _check_budget(num_matvecs, 3)
    g = resolve_generator(generator, seed, op.device)
    start = op.n_products
    n_s = num_matvecs // 3
    n_g = num_matvecs - 2 * n_s
    S = _probes(op, n_s, distribution, g)
    Q, _ = torch.linalg.qr(_blocked(op, S, chunk_size))
    low = float(torch.trace(Q.T @ _blocked(op, Q, chunk_size)))
    G = _probes(op, n_g, distribution, g)
    G = G - Q @ (Q.T @ G)
    AG = _blocked(op, G, chunk_size)
    AG = AG - Q @ (Q.T @ AG)
    s = (G * AG).sum(0).double()
    se = float(s.std() / math.sqrt(n_g)) if n_g > 1 else math.inf
    return TraceResult(low + float(s.mean()), se, op.n_products - start, "hutch++", op.route)
