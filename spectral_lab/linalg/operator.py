"""The matrix-free operator every solver here takes (symmetric; rectangular ones give their Gram
matrices), and the vector helpers they share.

A :class:`LinearOperator` is known only through products ``v -> A v`` and counts them; :func:`as_operator`
wraps a dense symmetric tensor or a callable. The helpers draw random vectors on the operator's device
in its dtype and take dots and norms by cascade summation (:func:`_dot`), not BLAS.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["LinearOperator", "Matvec", "as_operator"]


class LinearOperator:
    """A matrix-free operator given by ``matvec`` (and optionally a batched ``matmat``): symmetric
    ``dim x dim`` by default, or rectangular ``out_dim x dim`` with its adjoint ``rmatvec``.

    ``A @ v`` works for ``v`` of shape ``(dim,)`` or ``(dim, b)``; ``A.rmv(u)`` is ``A^T u``;
    ``n_products`` counts the products spent so far, adjoint ones included (a block of ``b``
    columns counts ``b``). The four operators of the course share this type: the input and
    parameter Jacobians are rectangular (:func:`~spectral_lab.jacobians.input_jacobian_operator`,
    :func:`~spectral_lab.jacobians.parameter_jacobian_operator`), the NTK and the loss Hessian
    symmetric. The eigen-solvers, trace and density estimators take symmetric operators only; a
    rectangular one gives its Gram matrices :meth:`gram` (``A^T A`` or ``A A^T``). Vectors live on
    ``device`` in ``dtype`` (default: CPU, torch's default dtype). Cost: that of ``matvec``.

    Example:
        >>> op = LinearOperator(lambda v: 2 * v, dim=3)
        >>> (op @ torch.ones(3)).tolist(), op.dense().diagonal().tolist(), op.n_products
        ([2.0, 2.0, 2.0], [2.0, 2.0, 2.0], 4)
        >>> M = torch.arange(6.0).reshape(2, 3)
        >>> J = LinearOperator(lambda v: M @ v, 3, rmatvec=lambda u: M.T @ u, out_dim=2)
        >>> J.shape, J.rmv(torch.ones(2)).tolist(), torch.equal(J.gram("right").dense(), M @ M.T)
        ((2, 3), [3.0, 5.0, 7.0], True)
    """

    def __init__(
        self,
        matvec: Matvec,
        dim: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        matmat: Matvec | None = None,
        name: str = "A",
        *,
        rmatvec: Matvec | None = None,
        out_dim: int | None = None,
    ) -> None:
        if not callable(matvec):
            raise TypeError(f"matvec must be callable v -> A v, got {type(matvec).__name__}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int (the operator's size), got {dim!r}")
        out_dim = dim if out_dim is None else out_dim
        if not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"out_dim must be a positive int (the rows), got {out_dim!r}")
        if rmatvec is None and out_dim != dim:
            raise ValueError(
                "a rectangular operator needs its adjoint product rmatvec= (u -> A^T u)"
            )
        self._matvec, self._matmat, self._rmatvec = matvec, matmat, rmatvec
        self.dim, self.out_dim = dim, out_dim
        #: symmetric: ``A^T = A`` (no ``rmatvec`` given); the solvers need it
        self.symmetric = rmatvec is None
        self.dtype = dtype if dtype is not None else torch.get_default_dtype()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.name = name
        self.n_products = 0
        #: how the products are computed (e.g. the AD route of a Hessian), or None
        self.route: str | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(out_dim, dim)``."""
        return self.out_dim, self.dim

    def mv(self, v: torch.Tensor) -> torch.Tensor:
        """``A v`` for one vector of shape ``(dim,)``."""
        self.n_products += 1
        return self._matvec(v)

    def mm(self, V: torch.Tensor) -> torch.Tensor:
        """``A V`` for a block ``(dim, b)``: one batched call if ``matmat`` was given."""
        self.n_products += V.shape[1]
        if self._matmat is not None:
            return self._matmat(V)
        return torch.stack([self._matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

    def rmv(self, u: torch.Tensor) -> torch.Tensor:
        """``A^T u`` for ``u`` of shape ``(out_dim,)`` (``A u`` when symmetric): one product."""
        if self._rmatvec is None:
            return self.mv(u)
        self.n_products += 1
        return self._rmatvec(u)

    def adjoint(self) -> LinearOperator:
        """``A^T``: the operator itself when symmetric, else a view whose products are this
        operator's adjoint products (counted here too). Cost: none."""
        if self.symmetric:
            return self
        t = LinearOperator(self.rmv, self.out_dim, self.dtype, self.device,
                           name=f"{self.name}^T", rmatvec=self.mv, out_dim=self.dim)  # fmt: skip
        t.route = self.route
        return t

    def gram(self, side: str = "left") -> LinearOperator:
        """The symmetric Gram operator ``A^T A`` (``side="left"``, ``dim x dim``) or ``A A^T``
        (``"right"``, ``out_dim x out_dim``), for the solvers: its eigenvalues are the squared
        singular values of ``A``. Cost: two products of ``A`` per product."""
        if side not in ("left", "right"):
            raise ValueError(f"side must be 'left' (A^T A) or 'right' (A A^T), got {side!r}")
        first, second = (self.mv, self.rmv) if side == "left" else (self.rmv, self.mv)
        size = self.dim if side == "left" else self.out_dim
        name = f"{self.name}^T {self.name}" if side == "left" else f"{self.name} {self.name}^T"
        g = LinearOperator(lambda v: second(first(v)), size, self.dtype, self.device, name=name)
        g.route = self.route
        return g

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        return self.mv(v) if v.dim() == 1 else self.mm(v)

    def dense(self, chunk_size: int = 256) -> torch.Tensor:
        """The full ``out_dim x dim`` matrix from ``dim`` products, ``chunk_size`` columns at a
        time (toy sizes only)."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return torch.cat(
            [self.mm(eye[:, i : i + chunk_size]) for i in range(0, self.dim, chunk_size)], dim=1
        )

    def __repr__(self) -> str:
        size = f"dim={self.dim}" if self.symmetric else f"shape={self.shape}"
        return (
            f"LinearOperator({self.name}, {size}, dtype={self.dtype}, "
            f"device={self.device}, products so far={self.n_products})"
        )


def as_operator(
    A: LinearOperator | torch.Tensor | Matvec,
    dim: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> LinearOperator:
    """Wrap a dense symmetric tensor or a callable as a :class:`LinearOperator`.

    A tensor keeps its device and dtype; a callable gets ``dim``, ``dtype`` and ``device``.
    Cost: none until products are asked for.

    Example:
        >>> as_operator(torch.eye(3, dtype=torch.float64))
        LinearOperator(matrix, dim=3, dtype=torch.float64, device=cpu, products so far=0)
    """
    if isinstance(A, LinearOperator):
        if not A.symmetric:
            raise ValueError(
                f"the eigen-solvers and estimators take a symmetric operator; {A.name} is a "
                f"{A.out_dim} x {A.dim} operator with its own adjoint: pass A.gram() (A^T A) or "
                "A.gram('right') (A A^T), whose eigenvalues are its squared singular values"
            )
        return A
    if isinstance(A, torch.Tensor):
        if A.dim() != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"A must be a square matrix, got shape {tuple(A.shape)}")
        if not torch.is_floating_point(A):
            raise TypeError(f"A has dtype {A.dtype}; pass a floating-point matrix, e.g. A.double()")
        return LinearOperator(
            lambda v: A @ v, A.shape[0], A.dtype, A.device, matmat=lambda V: A @ V, name="matrix"
        )
    if callable(A):
        if dim is None:
            raise ValueError("a callable matvec needs dim= (the length of the vectors it acts on)")
        return LinearOperator(A, int(dim), dtype, device, name="matvec")
    raise TypeError(
        f"A must be a LinearOperator, a square tensor or a callable v -> A v; got {type(A).__name__}"
    )


def _randn(op: LinearOperator, *shape: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=op.dtype, device=op.device)


def _rademacher(op: LinearOperator, *shape: int, g: torch.Generator) -> torch.Tensor:
    bits = torch.randint(0, 2, shape, generator=g, device=op.device)
    return (2 * bits - 1).to(op.dtype)


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """``a . b`` by torch's cascade summation. In float32, BLAS ``sdot`` and ``Tensor.norm``
    accumulate ``p`` terms with an error growing with ``p`` (3e-5 and 6e-4 relative at ``p = 2M``:
    enough to put a Ritz value 5e-4 above ``lambda_max`` while the residual test passes);
    ``(a * b).sum()`` stays near float32's rounding. Cost: one temporary vector."""
    return float((a * b).sum())


def _norm(a: torch.Tensor) -> float:
    """``||a||`` by cascade summation (see :func:`_dot`)."""
    return math.sqrt(_dot(a, a))
