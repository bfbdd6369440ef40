"""The generic factor ``G``: any module or function, as its own Jacobian at its input.

When :func:`~spectral_lab.operators.operator_product` meets a module without a walker that it
cannot capture either (a forward ``torch.fx`` cannot trace, a subgraph that is not a product and
sum of paths) or a function it has no closed form for (``permute``, ``softmax``, ``F.layer_norm``,
a ``getitem``...), the factor is the map itself, linearised at its actual input ``h``:

    G v = d/dt f(h + t v) |_{t=0}   (a JVP),      u G = u^T J_f(h)   (a VJP).

Products are exact (autograd's own derivatives). Routes, chosen once per factor and kept:
``matvec`` runs ``torch.func.jvp`` vectorised over the rows with ``torch.func.vmap`` (else one row
at a time; where an operation has no forward-mode formula, the double-backward trick
``J v = d/du <J^T u, v>``; else the dense matrix from ``n_out`` VJPs, kept); fused attention
kernels run as the math kernel there (same values, with forward-mode formulas); ``rmatvec`` runs backward passes through the autograd graph of
``f(h)``, recorded once (batched with ``is_grads_batched``, else row by row). ``dense()`` takes
the cheaper side (``min(n_in, n_out)`` products). Memory: the recorded graph of ``f`` at ``h``.

Example:
    >>> h = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    >>> g = GenericFactor("G1", "generic", (2,), (2,), None, torch.nn.functional.softplus, h, "softplus")
    >>> g.dense().diag().tolist() == torch.sigmoid(h[0]).tolist()
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ._factors import Factor

__all__ = ["GenericFactor"]


@dataclass(eq=False, repr=False)
class GenericFactor(Factor):
    """A module or function ``f`` linearised at its input ``h``: ``G = J_f(h)``, matrix-free.

    ``fn`` maps a batch-of-one input ``(1, *in_shape)`` to ``(1, *out_shape)`` (it must not
    change its argument in place); ``h`` is that input (kept as a copy); ``what`` names the
    module or function (shown in ``repr``). See the module docstring for the routes and costs.
    """

    fn: Callable[[torch.Tensor], torch.Tensor] = None  # type: ignore[assignment]
    h: torch.Tensor = None  # type: ignore[assignment]
    what: str = ""
    _routes: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.h = self.h.detach().clone()

    # ---------------------------------------------------------------- forward (J v)
    def _jvp(self, t: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(self.fn, (self.h,), (t,))[1]

    def matvec(self, v):
        k = len(v)
        tangents = v.reshape(k, 1, *self.in_shape).to(self.h.dtype)
        route = self._routes.get("jvp")
        # fused attention kernels have no forward-mode formula; the math kernel computes the same
        with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
            if route in (None, "vmap"):
                try:
                    out = torch.func.vmap(self._jvp)(tangents)
                    self._routes["jvp"] = "vmap"
                    return out.reshape(k, -1)
                except Exception:  # noqa: BLE001  (any op vmap cannot batch: go row by row)
                    self._routes["jvp"] = route = "loop"
            if route == "loop":
                try:
                    return torch.stack([self._jvp(t).reshape(-1) for t in tangents])
                except Exception:  # noqa: BLE001  (no forward-mode formula: double backward)
                    self._routes["jvp"] = route = "double-backward"
            if route == "double-backward":
                try:
                    return self._double_backward(tangents)
                except Exception:  # noqa: BLE001  (no double backward either: dense from VJPs)
                    self._routes["jvp"] = "dense"
        return v.to(self.h.dtype) @ self._dense_from_vjp().T

    def _dense_from_vjp(self) -> torch.Tensor:
        """The matrix from ``n_out`` VJPs, kept (the last route for ``J v``)."""
        if "dense" not in self._routes:
            eye = torch.eye(self.n_out, dtype=self.h.dtype, device=self.h.device)
            self._routes["dense"] = self.rmatvec(eye)
        return self._routes["dense"]

    def _double_backward(self, tangents: torch.Tensor) -> torch.Tensor:
        """``J v = d/du <J^T u, v>``: reverse mode twice (for ops without forward-mode AD)."""
        x = self.h.clone().requires_grad_(True)
        y = self.fn(x)
        u = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y, x, u, create_graph=True, allow_unused=True)
        rows = []
        for t in tangents:
            if g is None or not g.requires_grad:
                rows.append(y.new_zeros(y.numel()))
                continue
            (jv,) = torch.autograd.grad(g, u, t, retain_graph=True, allow_unused=True)
            rows.append(y.new_zeros(y.numel()) if jv is None else jv.reshape(-1))
        return torch.stack(rows)

    # ---------------------------------------------------------------- reverse (u J)
    def _graph(self) -> tuple[torch.Tensor, torch.Tensor]:
        if "graph" not in self._routes:
            with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
                x = self.h.clone().requires_grad_(True)
                y = self.fn(x)
            self._routes["graph"] = (x, y)
        return self._routes["graph"]

    def rmatvec(self, u):
        x, y = self._graph()
        if not y.requires_grad:  # f does not depend on its input
            return u.new_zeros(len(u), self.n_in)
        k = len(u)
        cot = u.reshape(k, *y.shape).to(y.dtype)
        with torch.enable_grad():
            if self._routes.get("vjp") in (None, "batched") and k > 1:
                try:
                    (g,) = torch.autograd.grad(
                        y, x, cot, retain_graph=True, is_grads_batched=True, allow_unused=True
                    )
                    self._routes["vjp"] = "batched"
                    return u.new_zeros(k, self.n_in) if g is None else g.reshape(k, -1)
                except Exception:  # noqa: BLE001  (an op vmap cannot batch: row by row)
                    self._routes["vjp"] = "loop"
            rows = []
            for c in cot:
                (g,) = torch.autograd.grad(y, x, c, retain_graph=True, allow_unused=True)
                rows.append(u.new_zeros(self.n_in) if g is None else g.reshape(-1))
        return torch.stack(rows)

    # ---------------------------------------------------------------- dense and norms
    def dense(self, max_entries: int = 50_000_000):
        if self.n_out * self.n_in > max_entries:
            return super().dense(max_entries)  # refuses with the message
        if self.n_out <= self.n_in:
            return self.rmatvec(torch.eye(self.n_out, dtype=self.h.dtype, device=self.h.device))
        return self.matvec(torch.eye(self.n_in, dtype=self.h.dtype, device=self.h.device)).T

    def sup_norm(self):
        return math.inf  # no data-free bound is known for an arbitrary map

    def _param(self):
        return self.h

    def __repr__(self) -> str:
        return f"GenericFactor({self.name} = {self.what}: {self.n_out} x {self.n_in})"
