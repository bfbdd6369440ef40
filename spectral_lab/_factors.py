"""The linear factors of :func:`~spectral_lab.operators.operator_product`: one class per kind of map.

Every factor is a linear map ``R^{n_in} -> R^{n_out}`` on flattened vectors at one input ``x``,
with matrix-free products on batches of rows (``matvec``: ``(k, n_in) -> (k, n_out)``;
``rmatvec``: the transpose) and a ``dense()`` form. Kinds and names (the course's vocabulary):
``W`` weights (:class:`DenseFactor`, matrix-free :class:`MapFactor` for convolutions,
:class:`TokenLinearFactor` for a Linear on every position), ``D`` gates (:class:`GateFactor`,
``diag(phi'(z))``), ``B`` BatchNorm in eval mode (:class:`DiagonalFactor`), ``P`` pooling
(:class:`MapFactor`, :class:`SelectionFactor`), ``R`` residual sums (:class:`ResidualFactor`,
``D_g (J_S + scale J_branch)``) and ``M`` merges of several paths from one input
(:class:`MergeFactor`, ``sum_i J_i P_i``). The matrix-free generic factor ``G`` (a module's or a
function's own JVP/VJP) is in :mod:`spectral_lab._generic`; the product of factors in
:mod:`spectral_lab._product`.

Example:
    >>> w = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    >>> DenseFactor("W1", "weight", (2,), (2,), None, w).matvec(torch.ones(1, 2)).tolist()
    [[3.0, 1.0]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from ._product import OperatorProduct


class ModelStateError(ValueError):
    """The model's state makes its output random or batch-dependent (no per-input Jacobian)."""


class NotATensor(TypeError):
    """A module's output is not one tensor (a tuple, a ``ModelOutput``...): not a factor."""


ACTIVATION_SUP_DERIVATIVE = {
    "ReLU": 1.0,
    "Tanh": 1.0,
    "Sigmoid": 0.25,
    "GELU": 0.5 * (1 + math.erf(1.0)) + math.sqrt(2) * math.exp(-1.0) / math.sqrt(2 * math.pi),
    "SiLU": 1.0998393194474928,
}

_GATES = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU)
# identity on flattened vectors (dropout: eval only)
_SKIP = (nn.Flatten, nn.Unflatten, nn.Identity, nn.modules.dropout._DropoutNd)


def activation_derivative(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """``phi'(z)`` elementwise, in closed form, for ReLU, LeakyReLU, Tanh, Sigmoid, GELU, SiLU.

    ReLU-type derivatives at the kink follow PyTorch's convention (``phi'(0) = 0`` for ReLU, the
    negative slope for LeakyReLU). Cost ``O(numel)``. Runs on the device and dtype of ``z``.

    Example:
        >>> activation_derivative(nn.Tanh(), torch.zeros(2)).tolist()
        [1.0, 1.0]
    """
    if isinstance(module, nn.ReLU):
        return (z > 0).to(z.dtype)
    if isinstance(module, nn.LeakyReLU):
        return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, module.negative_slope))
    if isinstance(module, nn.Tanh):
        return 1 - torch.tanh(z) ** 2
    if isinstance(module, nn.Sigmoid):
        s = torch.sigmoid(z)
        return s * (1 - s)
    if isinstance(module, nn.GELU):
        if module.approximate == "tanh":
            c = math.sqrt(2 / math.pi)
            u = c * (z + 0.044715 * z**3)
            t = torch.tanh(u)
            return 0.5 * (1 + t) + 0.5 * z * (1 - t**2) * c * (1 + 3 * 0.044715 * z**2)
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        pdf = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        return cdf + z * pdf
    if isinstance(module, nn.SiLU):
        s = torch.sigmoid(z)
        return s + z * s * (1 - s)
    raise TypeError(f"no closed-form derivative for activation {type(module).__name__}")


def _sup_derivative(module: nn.Module) -> float:
    if isinstance(module, nn.LeakyReLU):
        return max(1.0, abs(module.negative_slope))
    if isinstance(module, nn.GELU) and module.approximate == "tanh":
        z = torch.linspace(-10, 10, 200001, dtype=torch.float64)
        return float(activation_derivative(module, z).abs().max())
    return ACTIVATION_SUP_DERIVATIVE[type(module).__name__]


@dataclass(eq=False)
class Factor:
    """One linear factor ``R^{n_in} -> R^{n_out}`` acting on flattened vectors.

    ``kind`` is ``"weight"``, ``"gate"``, ``"pool"``, ``"norm"`` (BatchNorm, LayerNorm),
    ``"residual"``, ``"merge"``, ``"attention"``, ``"embed"`` or ``"generic"`` (a module's or
    function's own JVP/VJP, :class:`~spectral_lab._generic.GenericFactor`). Subclasses implement
    :meth:`matvec` on a batch of row vectors ``(k, n_in) -> (k, n_out)``; :meth:`rmatvec` (the
    transpose) defaults to a vector-Jacobian product of that linear map. A factor holds tensors
    on the device and dtype of the model it came from. Example: see :class:`OperatorProduct`.
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    module: nn.Module | None = field(default=None, repr=False)

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def rmatvec(self, u: torch.Tensor) -> torch.Tensor:
        """``u @ M``: rows ``(k, n_out) -> (k, n_in)``, i.e. ``M^T`` applied to each row.

        Default: the vector-Jacobian product of the (row-wise, linear) map ``matvec``.
        """
        with torch.enable_grad():
            v = u.new_zeros(len(u), self.n_in, requires_grad=True)
            (g,) = torch.autograd.grad(self.matvec(v), v, u)
        return g

    def dense(self, max_entries: int = 50_000_000) -> torch.Tensor:
        """The ``n_out x n_in`` matrix (refused above ``max_entries`` entries)."""
        if self.n_out * self.n_in > max_entries:
            raise ValueError(
                f"{self.name} is {self.n_out} x {self.n_in}; dense() refuses more than "
                f"{max_entries} entries: use matvec/rmatvec or pass a larger max_entries"
            )
        p = self._param()
        return self.matvec(torch.eye(self.n_in, dtype=p.dtype, device=p.device)).T

    def spectral_norm(self) -> float:
        """``||M||_2`` at this input (exact SVD of the dense form)."""
        return float(torch.linalg.matrix_norm(self.dense(), ord=2))

    def sup_norm(self) -> float:
        """An upper bound of ``||M||_2`` valid at *every* input (the data-free bound of §6.2)."""
        return self.spectral_norm()

    def _param(self) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}: {self.n_out} x {self.n_in})"


@dataclass(eq=False, repr=False)
class DenseFactor(Factor):
    """A weight matrix ``W`` (``nn.Linear``); ``matvec(v) = v W^T``."""

    weight: torch.Tensor = None  # type: ignore[assignment]

    def matvec(self, v):
        return v @ self.weight.T

    def rmatvec(self, u):
        return u @ self.weight

    def dense(self, max_entries: int = 50_000_000):
        return self.weight

    def _param(self):
        return self.weight


class DiagonalMaps:
    """``diag(self.diag)`` on flattened vectors: the products, dense form and norm shared by the
    diagonal factors (gates here, BatchNorm's fixed scale in ``_walkers``)."""

    diag: torch.Tensor

    def matvec(self, v):
        return v * self.diag

    def rmatvec(self, u):
        return u * self.diag

    def dense(self, max_entries: int = 50_000_000):
        return torch.diag(self.diag)

    def spectral_norm(self):
        return float(self.diag.abs().max())


@dataclass(eq=False, repr=False)
class GateFactor(DiagonalMaps, Factor):
    """The diagonal gate ``D(x) = diag(phi'(z))``: which units are on, and how much."""

    diag: torch.Tensor = None  # type: ignore[assignment]

    def sup_norm(self):
        return _sup_derivative(self.module)

    def _param(self):
        return self.diag


@dataclass(eq=False, repr=False)
class MapFactor(Factor):
    """A matrix-free linear map given by a function on ``(k, *in_shape)`` tensors (conv, avg pool)."""

    fn: object = None
    ref: torch.Tensor = None  # type: ignore[assignment]
    bound: float | None = None
    rfn: object = None  # the transpose on (k, *out_shape) tensors, if known (else a VJP)

    def matvec(self, v):
        return self.fn(v.reshape(len(v), *self.in_shape)).reshape(len(v), -1)

    def rmatvec(self, u):
        if self.rfn is None:
            return super().rmatvec(u)
        return self.rfn(u.reshape(len(u), *self.out_shape)).reshape(len(u), -1)

    def sup_norm(self):
        return self.spectral_norm() if self.bound is None else self.bound

    def _param(self):
        return self.ref


@dataclass(eq=False, repr=False)
class SelectionFactor(Factor):
    """Max pooling at ``x``: row ``i`` of the matrix picks the input entry ``index[i]``."""

    index: torch.Tensor = None  # type: ignore[assignment]
    ref: torch.Tensor = None  # type: ignore[assignment]
    overlap: float = 1

    def matvec(self, v):
        return v[:, self.index]

    def rmatvec(self, u):
        out = u.new_zeros(len(u), self.n_in)
        return out.index_add_(1, self.index, u)

    def dense(self, max_entries: int = 50_000_000):
        m = self.ref.new_zeros(self.n_out, self.n_in)
        m[torch.arange(self.n_out, device=m.device), self.index] = 1
        return m

    def spectral_norm(self):
        # S S^T = I (one pick per row); ||S||_2^2 = max number of times one input is picked
        return math.sqrt(int(torch.bincount(self.index, minlength=self.n_in).max()))

    def sup_norm(self):
        return float(self.overlap)

    def _param(self):
        return self.ref


@dataclass(eq=False, repr=False)
class ResidualFactor(Factor):
    """A residual block ``g(S h + scale * branch(h))``: the factor ``D_g (J_S + scale * J_branch)``.

    ``branch`` and ``shortcut`` are :class:`OperatorProduct` s at the block's input; ``shortcut``
    ``None`` is the identity (then ``J = I + scale * J_branch``, the library's ``ResidualBlock``),
    otherwise e.g. a strided 1x1 conv + BatchNorm (torchvision's ``downsample``), which makes the
    factor non-square. ``gate`` (``None``: no activation) is ``phi'`` of the sum, flattened, for an
    activation applied after the sum (torchvision's ``BasicBlock``/``Bottleneck``). :meth:`paths`
    is ``J_S + scale * J_branch`` without the gate. Cost of a product: one product through each path.
    """

    scale: float = 1.0
    branch: OperatorProduct = None  # type: ignore[assignment]
    shortcut: OperatorProduct | None = None
    gate: torch.Tensor | None = None
    gate_module: nn.Module | None = None

    def _paths(self, v, forward: bool):
        b = self.branch.matvec(v) if forward else self.branch.rmatvec(v)
        if self.shortcut is None:
            s = v
        else:
            s = self.shortcut.matvec(v) if forward else self.shortcut.rmatvec(v)
        return s + self.scale * b

    def matvec(self, v):
        out = self._paths(v, True)
        return out if self.gate is None else out * self.gate

    def rmatvec(self, u):
        return self._paths(u if self.gate is None else u * self.gate, False)

    def paths(self, max_entries: int = 50_000_000) -> torch.Tensor:
        """``J_S + scale * J_branch`` (``I + scale * J_branch`` for an identity shortcut), dense."""
        b = self.branch.dense(max_entries)
        if self.shortcut is None:
            s = torch.eye(self.n_in, dtype=b.dtype, device=b.device)
        else:
            s = self.shortcut.dense(max_entries)
        return s + self.scale * b

    def dense(self, max_entries: int = 50_000_000):
        m = self.paths(max_entries)
        return m if self.gate is None else self.gate[:, None] * m

    def sup_norm(self):
        # ||D (S + s B)|| <= sup|phi'| (||S||_sup + |s| prod ||branch factors||_sup)
        s = 1.0 if self.shortcut is None else self.shortcut.sup_norm_bound()
        g = 1.0 if self.gate is None else _sup_derivative(self.gate_module)
        return g * (s + abs(self.scale) * self.branch.sup_norm_bound())

    def _param(self):
        return self.branch._ref


@dataclass(eq=False, repr=False)
class DiagonalFactor(DiagonalMaps, Factor):
    """A fixed diagonal map ``diag(s)`` on flattened vectors (BatchNorm in eval mode).

    Unlike a gate it does not depend on ``x``, so its norm ``max |s|`` is also its data-free bound.
    """

    diag: torch.Tensor = None  # type: ignore[assignment]

    def sup_norm(self):
        return self.spectral_norm()

    def _param(self):
        return self.diag


def _rows(v: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return v.reshape(len(v), *shape)


@dataclass(eq=False, repr=False)
class TokenLinearFactor(Factor):
    """A Linear layer applied at each of ``n`` positions (tokens, or pixels of a channels-last
    image): ``I_n ⊗ W`` (``W`` is ``out x in``; ``n`` = every leading dimension but the batch)."""

    weight: torch.Tensor = None  # type: ignore[assignment]

    @property
    def n_tokens(self) -> int:
        return self.n_in // self.weight.shape[1]

    def matvec(self, v):
        return (_rows(v, (self.n_tokens, -1)) @ self.weight.T).reshape(len(v), -1)

    def rmatvec(self, u):
        return (_rows(u, (self.n_tokens, -1)) @ self.weight).reshape(len(u), -1)

    def dense(self, max_entries: int = 50_000_000):
        w = self.weight
        return torch.kron(torch.eye(self.n_tokens, dtype=w.dtype, device=w.device), w)

    def spectral_norm(self):
        return float(torch.linalg.matrix_norm(self.weight, ord=2))

    def _param(self):
        return self.weight


@dataclass(eq=False, repr=False)
class MergeFactor(Factor):
    """Several paths from one input merged by one operation ``y = op(a_1, ..., a_m)``, each
    ``a_i = path_i(h)``: the factor ``M = sum_i J_op,i P_i`` with ``P_i`` the product of path
    ``i`` and ``J_op,i`` the operation's Jacobian in its ``i``-th argument (e.g. ``cat``, ``x * s(x)``
    of a squeeze-excitation gate, attention's ``q, k, v``). ``terms[i]`` is the
    :class:`~spectral_lab._product.OperatorProduct` ``J_op,i P_i`` (its last factor the partial
    Jacobian, usually a generic ``G``). Cost of a product: one product through every term. A plain
    sum ``a + b`` of two paths is a :class:`ResidualFactor` instead.
    """

    terms: tuple = ()
    op: str = ""

    def matvec(self, v):
        return sum(t.matvec(v) for t in self.terms)

    def rmatvec(self, u):
        return sum(t.rmatvec(u) for t in self.terms)

    def dense(self, max_entries: int = 50_000_000):
        return sum(t.dense(max_entries) for t in self.terms)

    def sup_norm(self):
        return sum(t.sup_norm_bound() for t in self.terms)

    def _param(self):
        return self.terms[0]._ref

    def __repr__(self) -> str:
        return f"MergeFactor({self.name} = {self.op} of {len(self.terms)} paths: {self.n_out} x {self.n_in})"
