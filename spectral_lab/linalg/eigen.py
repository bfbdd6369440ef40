"""What the eigen-solvers return: :class:`EigResult`, and the check of ``k`` they share."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._results import Result

__all__ = ["EigResult"]


def _check_k(k: int, dim: int) -> int:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if k > dim:
        raise ValueError(f"k={k} is larger than the operator's dimension {dim}; ask for k <= {dim}")
    return k


@dataclass(frozen=True)
class EigResult(Result):
    """Eigenpairs found by a matrix-free solver.

    ``eigenvalues`` (k,), ``eigenvectors`` (dim, k) or None, ``residuals`` ``||A u - lambda u||``
    (k,), ``matvecs`` products spent, ``converged`` whether every residual met the tolerance,
    ``history`` (iterations, k) the estimates after each product count in ``history_matvecs``,
    ``route`` how the operator's products were computed (e.g. ``"reverse-over-reverse"`` for a
    Hessian) or None. Memory: ``peak_basis`` the most ``dim``-vectors the solver held at once (its
    Krylov basis, or the deflation vectors of power iteration), ``basis_cap`` the most it was
    allowed (None: no cap), ``restarts`` how often a full basis was restarted (see
    :func:`lanczos`). ``criterion``: the stopping test ``converged`` refers to -- ``"residual"``
    (a certificate: each value within ``residuals[i]`` of an eigenvalue) or ``"eigenvalue"`` (an
    estimate of the eigenvalue error from the Ritz gap; see :func:`lanczos`).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor | None
    residuals: torch.Tensor
    matvecs: int
    converged: bool
    method: str
    history: torch.Tensor
    history_matvecs: torch.Tensor
    route: str | None = None
    restarts: int = 0
    peak_basis: int = 0
    basis_cap: int | None = None
    criterion: str = "residual"

    def __float__(self) -> float:
        """The eigenvalue, when exactly one was asked for (``k=1``)."""
        if self.eigenvalues.numel() != 1:
            raise TypeError(
                f"float() needs a single eigenvalue, this result has {self.eigenvalues.numel()}; "
                "use result.eigenvalues[i]"
            )
        return float(self.eigenvalues[0])

    def __repr__(self) -> str:
        vals = ", ".join(f"{x:.6g}" for x in self.eigenvalues.tolist())
        return (
            f"EigResult(method={self.method!r}, eigenvalues=[{vals}], matvecs={self.matvecs}, "
            f"converged={self.converged}, restarts={self.restarts}, peak_basis={self.peak_basis})"
        )
