"""Power iteration with deflation: the top eigenpairs of largest magnitude."""

from __future__ import annotations

import math

import torch

from .._random import resolve_generator
from .eigen import EigResult, _check_k
from .operator import LinearOperator, Matvec, _dot, _norm, _randn, as_operator

__all__ = ["power_iteration"]


def power_iteration(
    A: LinearOperator | torch.Tensor | Matvec,
    k: int = 1,
    *,
    dim: int | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    v0: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> EigResult:
    """Top-``k`` eigenpairs of largest **magnitude** by power iteration with deflation.

    For each pair: ``v <- A v / ||A v||`` with ``v`` kept orthogonal to the pairs already found
    (deflation by projection, as in PyHessian), Rayleigh quotient ``theta = v^T A v``; stop when the
    residual ``||A v - theta v|| <= tol |theta|`` (which bounds ``|lambda - theta| <= tol |theta|``).
    One product per iteration; convergence rate ``|lambda_{i+1} / lambda_i|`` per step, so close
    eigenvalues cost many products -- :func:`lanczos` is the better default. ``max_iter`` is per
    eigenpair. Cost: ``matvecs`` products, memory ``O(k dim)``.

    Runs on the device and dtype of the operator ``A``.

    Example:
        >>> power_iteration(torch.diag(torch.tensor([3.0, 1.0, 0.5])), k=1).eigenvalues
        tensor([3.])
    """
    op = as_operator(A, dim, dtype, device)
    k = _check_k(k, op.dim)
    g = resolve_generator(generator, seed, op.device)
    start = op.n_products
    vals: list[float] = []
    vecs: list[torch.Tensor] = []
    res: list[float] = []
    hist: list[list[float]] = []
    hist_mv: list[int] = []
    converged = True
    for i in range(k):
        v = (
            v0.to(device=op.device, dtype=op.dtype).clone()
            if (v0 is not None and i == 0)
            else _randn(op, op.dim, g=g)
        )
        Q = torch.stack(vecs, 1) if vecs else None
        if Q is not None:
            v = v - Q @ (Q.T @ v)
        v = v / _norm(v)
        ok, theta, r = False, 0.0, float("inf")
        for _ in range(max_iter):
            w = op.mv(v)
            if Q is not None:
                w = w - Q @ (Q.T @ w)
            theta = _dot(v, w)
            r = _norm(w - theta * v)
            hist.append(vals + [theta] + [math.nan] * (k - i - 1))
            hist_mv.append(op.n_products - start)
            if r <= tol * abs(theta) or r == 0.0:
                ok = True
                break
            nw = _norm(w)
            if nw == 0:  # v is in the null space of the deflated operator
                ok = True
                break
            v = w / nw
        converged &= ok
        vals.append(theta)
        vecs.append(v)
        res.append(r)
    return EigResult(
        eigenvalues=torch.tensor(vals, dtype=op.dtype, device=op.device),
        eigenvectors=torch.stack(vecs, 1),
        residuals=torch.tensor(res, dtype=torch.float64),
        matvecs=op.n_products - start,
        converged=converged,
        method="power",
        history=torch.tensor(hist, dtype=torch.float64),
        history_matvecs=torch.tensor(hist_mv),
        route=op.route,
        peak_basis=k,
    )
