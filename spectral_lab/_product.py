"""The product ``J_f(x) = F_K ... F_1`` of linear factors at one input (:class:`OperatorProduct`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._factors import Factor


class OperatorProduct:
    """``J_f(x) = F_K ... F_2 F_1`` at one input ``x``; ``factors[0]`` acts first.

    Attributes: ``factors`` (tuple of :class:`Factor`), ``input_shape``, ``d`` (input size),
    ``n_outputs`` (``C``). Methods: ``matvec``/``rmatvec`` (matrix-free ``J v``, ``u J``),
    ``dense()`` (the ``C x d`` Jacobian, built by ``C`` transposed products: cost ``C`` backward
    sweeps), ``partial_products()`` and ``partial_spectra()`` (``F_k ... F_1`` through depth).
    Built by :func:`~spectral_lab.operators.operator_product`; runs on the device and dtype of the model it came from.

    Example: the product equals the autograd Jacobian.
        >>> from spectral_lab import MLP, operator_product
        >>> model = MLP(4, 3, width=8, depth=3).double().eval()
        >>> x = torch.randn(4, dtype=torch.float64)
        >>> op = operator_product(model, x)
        >>> J = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x)
        >>> torch.allclose(op.dense(), J), op.norm_bound() >= float(torch.linalg.matrix_norm(J, 2))
        (True, True)
    """

    def __init__(self, factors: Sequence[Factor], input_shape: tuple[int, ...], ref: torch.Tensor):
        self.factors = tuple(factors)
        self.input_shape = tuple(input_shape)
        self._ref = ref

    @property
    def d(self) -> int:
        return math.prod(self.input_shape)

    @property
    def n_outputs(self) -> int:
        return self.factors[-1].n_out if self.factors else self.d

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.factors]

    def __len__(self) -> int:
        return len(self.factors)

    def __repr__(self) -> str:
        chain = " · ".join(f.name for f in reversed(self.factors)) or "I"
        return f"OperatorProduct({self.n_outputs} x {self.d} = {chain})"

    def all_factors(self) -> list[Factor]:
        """Every factor, depth first: the top-level ones and, after each, those inside it (a
        residual factor's ``branch`` and ``shortcut``, a merge's ``terms``, attention's two paths).
        """
        out: list[Factor] = []
        for f in self.factors:
            out.append(f)
            for sub in (getattr(f, "branch", None), getattr(f, "shortcut", None)):
                if isinstance(sub, OperatorProduct):
                    out += sub.all_factors()
            for t in getattr(f, "terms", ()):
                out += t.all_factors()
            out += [p for p in (getattr(f, "value", None), getattr(f, "pattern", None)) if p]
        return out

    def generic_factors(self) -> list[Factor]:
        """The generic factors ``G`` (and merges' partial Jacobians) anywhere in the product:
        the modules and functions that have no structured factor."""
        return [f for f in self.all_factors() if f.kind == "generic"]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``J v`` for rows ``v``: ``(k, d) -> (k, C)``."""
        for f in self.factors:
            v = f.matvec(v)
        return v

    def rmatvec(self, u: torch.Tensor) -> torch.Tensor:
        """``u J`` for rows ``u``: ``(k, C) -> (k, d)``."""
        for f in reversed(self.factors):
            u = f.rmatvec(u)
        return u

    def dense(self, max_entries: int = 50_000_000) -> torch.Tensor:
        """The ``C x d`` Jacobian, multiplied out from the output side (``C`` rows)."""
        eye = torch.eye(self.n_outputs, dtype=self._ref.dtype, device=self._ref.device)
        return self.rmatvec(eye)

    def partial_products(self, max_entries: int = 50_000_000) -> list[torch.Tensor]:
        """``[F_1, F_2 F_1, ..., F_K ... F_1]``: dense ``n_k x d`` matrices through depth.

        Cost: ``d`` forward sweeps (the identity pushed through); memory ``max_k n_k * d``.
        """
        biggest = max((f.n_out for f in self.factors), default=self.d) * self.d
        if biggest > max_entries:
            raise ValueError(
                f"partial products need {biggest} entries (> max_entries={max_entries}); "
                "use a smaller input or pass a larger max_entries"
            )
        p = torch.eye(self.d, dtype=self._ref.dtype, device=self._ref.device)
        out = []
        for f in self.factors:
            p = f.matvec(p)
            out.append(p.T)
        return out

    def partial_spectra(self, kinds: Sequence[str] | None = None) -> list[tuple[str, torch.Tensor]]:
        """``(name, singular values)`` of each partial product ``F_k ... F_1`` whose last factor's
        kind is in ``kinds`` (default: all). Descending; ``min(n_k, d)`` values each."""
        out = []
        for f, p in zip(self.factors, self.partial_products()):
            if kinds is None or f.kind in kinds:
                out.append((f.name, torch.linalg.svdvals(p)))
        return out

    def factor_norms(self) -> list[float]:
        """``||F_k||_2`` at this input for every factor."""
        return [f.spectral_norm() for f in self.factors]

    def norm_bound(self) -> float:
        """``prod_k ||F_k||_2`` at this input, a bound on ``||J_f(x)||_2`` by submultiplicativity."""
        return math.prod(self.factor_norms())

    def sup_norm_bound(self) -> float:
        """``prod_k sup_x ||F_k(x)||_2``: gates replaced by ``sup |phi'|``, max pool by its worst
        overlap; a bound on ``||J_f(x)||_2`` valid at every ``x`` (a global Lipschitz constant)."""
        return math.prod(f.sup_norm() for f in self.factors)
