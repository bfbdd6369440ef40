"""A network at one input as a product of linear operators.

By the chain rule, a network ``f = z_L`` built from affine maps and coordinate-wise activations has
the input Jacobian

    J_f(x) = W_L D_{L-1}(x) W_{L-1} ... D_1(x) W_1,      D_l(x) = diag(phi'(z_l(x))),

exact for smooth ``phi`` and almost everywhere for ReLU-type ``phi`` (biases enter only through
``D_l``). This product is the starting point of "A Unified Matrix-Spectral Framework for Stability
and Interpretability in Deep Learning" (Katende 2026). :func:`operator_product` walks the model's
layers and returns the factors in the order they act: dense weights (``nn.Linear``), matrix-free
convolutions (``nn.Conv2d``) with ``.dense()`` for small inputs, BatchNorm in eval mode (a fixed
per-channel diagonal), pooling (max pool = a 0/1 selection matrix at ``x``; average pool = a fixed
linear map; adaptive pools too), the diagonal gates, and residual blocks ``g(S h + scale *
branch(h))`` as one factor ``D_g (J_S + scale * J_branch)`` (the library's ``ResidualBlock``:
``I + scale * J_branch``; torchvision's ``BasicBlock``/``Bottleneck`` and whole ``ResNet`` s).

Extending the walk: every layer type is handled by a *walker* found in a registry by
``type(module).__mro__``. To support a new layer from any file, register one::

    from spectral_lab.operators import MapFactor, WalkContext, register_walker

    @register_walker(MyLayer)
    def _walk_my_layer(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
        shape = tuple(h.shape[1:])                 # h is a batch of one: (1, *shape)
        ctx.add(MapFactor(ctx.name("W"), "weight", shape, shape, m, lambda v: ..., h))
        return m(h)                                # the walk continues from the output

``ctx.name(kind)`` numbers factors per kind (``W1``, ``D2``, ...), ``ctx.walk(layers, h)`` recurses
into sublayers (factors land in the same product) and ``ctx.sub(prefix)`` opens a separate
context for a branch (its ``factors`` become an :class:`OperatorProduct` of their own). A walker
must append factors whose product is the module's Jacobian at ``h`` and return ``module(h)``.

Example:
    >>> from spectral_lab import MLP
    >>> model = MLP(4, 3, width=8, depth=2).double()
    >>> op = operator_product(model, torch.randn(4, dtype=torch.float64))
    >>> op
    OperatorProduct(3 x 4 = W2 · D1 · W1)
    >>> op.dense().shape
    torch.Size([3, 4])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ._checks import check_model, check_tensor

__all__ = [
    "ACTIVATION_SUP_DERIVATIVE",
    "Factor",
    "OperatorProduct",
    "WalkContext",
    "Walker",
    "activation_derivative",
    "find_walker",
    "operator_product",
    "register_walker",
    "supported_layers",
]

# sup_z |phi'(z)| for the supported activations (used by the data-free bound
# ||J_f(x)||_2 <= prod_k sup_x ||F_k(x)||_2).
# GELU: max of Phi(z) + z phi(z), at z = sqrt(2); SiLU: max of s + z s (1 - s), at z ~ 2.3994.
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

    ``kind`` is ``"weight"``, ``"gate"``, ``"pool"``, ``"norm"`` (BatchNorm in eval mode) or
    ``"residual"``. Subclasses implement
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


class OperatorProduct:
    """``J_f(x) = F_K ... F_2 F_1`` at one input ``x``; ``factors[0]`` acts first.

    Attributes: ``factors`` (tuple of :class:`Factor`), ``input_shape``, ``d`` (input size),
    ``n_outputs`` (``C``). Methods: ``matvec``/``rmatvec`` (matrix-free ``J v``, ``u J``),
    ``dense()`` (the ``C x d`` Jacobian, built by ``C`` transposed products: cost ``C`` backward
    sweeps), ``partial_products()`` and ``partial_spectra()`` (``F_k ... F_1`` through depth).
    Built by :func:`operator_product`; runs on the device and dtype of the model it came from.

    Example: the product equals the autograd Jacobian.
        >>> from spectral_lab import MLP
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


Walker = Callable[[nn.Module, torch.Tensor, "WalkContext"], torch.Tensor]
"""``walker(module, h, ctx) -> module(h)``: append ``module``'s factors at ``h`` to ``ctx``."""

_WALKERS: dict[type | str, Walker] = {}


def register_walker(*types: type[nn.Module] | str) -> Callable[[Walker], Walker]:
    """Decorator: make :func:`operator_product` walk modules of ``types`` with the decorated walker.

    A walker ``walker(module, h, ctx)`` receives the module, its input ``h`` (a batch of one,
    ``(1, *shape)``) and the :class:`WalkContext`; it appends the module's linear factors at ``h``
    with ``ctx.add(...)`` (named by ``ctx.name(kind)``), recurses into sublayers with
    ``ctx.walk(layers, h)`` (branches: ``ctx.sub(prefix).walk(...)``) and returns ``module(h)``.
    Lookup follows ``type(module).__mro__``, so a walker for a base class covers its subclasses;
    registering a type again replaces its walker. A type may also be named by its full dotted name
    (``"torchvision.models.resnet.BasicBlock"``), so a walker for an optional package's layer can
    be registered without importing that package. Cost: a dictionary entry.

    Example:
        >>> class Twice(nn.Module):
        ...     def forward(self, h):
        ...         return 2 * h
        >>> @register_walker(Twice)
        ... def _twice(m, h, ctx):
        ...     shape = tuple(h.shape[1:])
        ...     ctx.add(MapFactor(ctx.name("S"), "weight", shape, shape, m, lambda v: 2 * v, h))
        ...     return m(h)
        >>> operator_product(nn.Sequential(nn.Linear(3, 2), Twice()), torch.randn(3)).names
        ['W1', 'S1']
    """

    for t in types:
        if not (isinstance(t, str) or (isinstance(t, type) and issubclass(t, nn.Module))):
            raise TypeError(
                f"register_walker takes nn.Module subclasses or dotted class names, got {t!r}"
            )

    def deco(fn: Walker) -> Walker:
        for t in types:
            _WALKERS[t] = fn
        return fn

    return deco


def find_walker(module: nn.Module) -> Walker | None:
    """The walker registered for ``type(module)`` or its nearest base class (``None`` if none)."""
    for cls in type(module).__mro__:
        for key in (cls, f"{cls.__module__}.{cls.__qualname__}"):
            if key in _WALKERS:
                return _WALKERS[key]
    return None


@dataclass(eq=False)
class WalkContext:
    """The state of one walk: the ``factors`` found so far, their ``prefix`` and numbering.

    ``name(kind)`` numbers factors per kind (``"W"`` -> ``W1``, ``W2``, ...; the prefix is
    prepended, e.g. ``R2.W1`` inside the second residual block); ``add(factor)`` appends;
    ``walk(layers, h)`` walks sublayers into THIS context (a nested Sequential); ``sub(prefix)``
    starts a fresh context (own factors and numbering) for a branch whose product is kept apart.
    """

    factors: list[Factor] = field(default_factory=list)
    prefix: str = ""
    counters: dict[str, int] = field(default_factory=dict)

    def name(self, kind: str) -> str:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return f"{self.prefix}{kind}{self.counters[kind]}"

    def add(self, factor: Factor) -> None:
        self.factors.append(factor)

    def sub(self, prefix: str) -> WalkContext:
        return WalkContext(prefix=prefix)

    def walk(self, layers: Sequence[nn.Module], h: torch.Tensor) -> torch.Tensor:
        return _walk(layers, h, self)


def _walk(layers: Sequence[nn.Module], h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    """Append the factors of ``layers`` applied to ``h`` (batch of one) to ``ctx``; return the output."""
    for m in layers:
        walker = find_walker(m)
        if walker is None:
            raise TypeError(
                f"operator_product does not support layer {ctx.prefix}{type(m).__name__} ({m!r}); "
                f"supported: {supported_layers()}. To add one, register a walker: "
                "@spectral_lab.operators.register_walker(YourLayer) def walk(module, h, ctx): ... "
                "(see the spectral_lab.operators docstring)"
            )
        h = walker(m, h, ctx)
    return h


def supported_layers() -> str:
    """The names of the layer types with a registered walker, comma-separated."""

    def label(t: type | str) -> str:
        name = t.rsplit(".", 1)[-1] if isinstance(t, str) else t.__name__
        return "Dropout (eval, any)" if name == "_DropoutNd" else name

    return ", ".join(sorted({label(t) for t in _WALKERS}))


def operator_product(model: nn.Module, x: torch.Tensor) -> OperatorProduct:
    """The network at ONE input ``x`` (shape ``input_shape``, no batch dimension) as the product
    ``J_f(x) = F_K(x) ... F_1(x)`` of its layers' linear factors, e.g. ``W_L D_{L-1}(x) ... W_1``.

    What is walked: ``model.layers`` when it is an ``nn.Sequential`` (the library's models), else
    the model itself through its registered walker (``nn.Sequential``, torchvision's ``ResNet``,
    ...). Supported layers and their factors:

    * ``Linear`` (dense ``W``), ``Conv2d`` (matrix-free, zero padding, any stride/dilation/groups);
    * ``ReLU``, ``LeakyReLU``, ``Tanh``, ``Sigmoid``, ``GELU``, ``SiLU`` (inplace or not): the gate
      ``D = diag(phi'(z))``;
    * ``BatchNorm1d``/``BatchNorm2d`` in eval mode with running statistics: the per-channel
      diagonal ``gamma / sqrt(running_var + eps)`` (refused in train mode or without running
      statistics: their output depends on the batch);
    * ``MaxPool2d``, ``AdaptiveMaxPool2d`` (a 0/1 selection at ``x``), ``AvgPool2d``,
      ``AdaptiveAvgPool2d`` (fixed linear maps);
    * ``Flatten``, ``Unflatten``, ``Identity``, dropout in eval mode: the identity;
    * residual blocks as one factor ``D_g (J_shortcut + scale J_branch)``: the library's
      ``ResidualBlock`` (``I + scale J_branch``) and torchvision's ``BasicBlock``/``Bottleneck``
      (shortcut identity or ``downsample``, ReLU after the sum);
    * torchvision's ``ResNet`` (its ``forward`` order: stem, ``layer1..4``, pool, flatten, ``fc``)
      and nested ``nn.Sequential``.

    :func:`supported_layers` lists what is registered; :func:`register_walker` adds a layer type
    from any module (see this module's docstring). The walked output is compared with ``model(x)``
    and a mismatch (a ``forward`` that does more than its layers in order) is refused.

    Cost: two forward passes plus the factors' bookkeeping; every factor is stored matrix-free or
    as its own (small) dense matrix. ``matvec``/``rmatvec`` cost about one forward/backward pass;
    ``dense()`` costs ``C`` transposed sweeps. Runs on the device and dtype of the model's
    parameters; ``x`` must already have them (a ``TypeError`` says how to cast), because the
    factors are compared with autograd to the last bit.

    Example:
        >>> from spectral_lab import SmallCNN
        >>> op = operator_product(SmallCNN(1, 10, image_size=8, channels=(4,)), torch.randn(1, 8, 8))
        >>> op.names
        ['W1', 'D1', 'P1', 'W2']

    Example: a torchvision ResNet; each residual block is one factor ``R``.
        >>> from torchvision.models.resnet import BasicBlock, ResNet
        >>> _ = torch.manual_seed(0)
        >>> net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=3).double().eval()
        >>> x = torch.randn(3, 16, 16, dtype=torch.float64)
        >>> op = operator_product(net, x)
        >>> op.names
        ['W1', 'B1', 'D1', 'P1', 'R1', 'R2', 'R3', 'R4', 'P2', 'W2']
        >>> J = torch.autograd.functional.jacobian(lambda v: net(v[None])[0], x).reshape(3, -1)
        >>> torch.allclose(op.dense(), J, rtol=0, atol=1e-12)
        True
    """
    check_model(model)
    x = check_tensor(x, "x")
    layers = getattr(model, "layers", None)
    if isinstance(layers, nn.Sequential):
        layers, what = list(layers), f"{type(model).__name__}.layers"
    elif find_walker(model) is not None:
        layers, what = [model], type(model).__name__
    else:
        raise TypeError(
            f"operator_product cannot walk {type(model).__name__}: it has no `.layers` "
            "nn.Sequential and no registered walker. Register one for it with "
            f"@spectral_lab.operators.register_walker({type(model).__name__}) (a function "
            "(module, h, ctx) -> module(h) that adds its factors; see the spectral_lab.operators "
            f"docstring), or build the model as an nn.Sequential of supported layers: "
            f"{supported_layers()}"
        )
    p = next(model.parameters())
    if x.dtype != p.dtype or x.device != p.device:
        raise TypeError(
            f"x is {x.dtype} on {x.device} but the model is {p.dtype} on {p.device}; "
            "use x.to(model's dtype/device) or model.to(x.dtype)"
        )
    ctx = WalkContext()
    with torch.no_grad():
        try:
            out = ctx.walk(layers, x.detach().clone()[None])
            ref = model(x.detach().clone()[None])
        except RuntimeError as err:
            raise ValueError(
                f"the model could not run on x of shape {tuple(x.shape)}: pass ONE input without a "
                f"batch dimension (e.g. X[0], not X[:1]) ({err})"
            ) from err
    if out.dim() != 2:
        raise ValueError(f"model output must be (1, C) logits, got shape {tuple(out.shape)}")
    _check_walk_output(out, ref, what, model)
    return OperatorProduct(ctx.factors, tuple(x.shape), x)


def _check_walk_output(out: torch.Tensor, ref: object, what: str, model: nn.Module) -> None:
    """Refuse a walk whose output is not ``model(x)`` (a forward that does more than its layers)."""
    ok = isinstance(ref, torch.Tensor) and ref.shape == out.shape
    if ok:
        tol = (1e-10 if out.dtype == torch.float64 else 1e-4) * max(1.0, float(ref.abs().max()))
        ok = bool((out - ref).abs().max() <= tol)
    if not ok:
        raise ValueError(
            f"walking {what} in order does not reproduce {type(model).__name__}(x) "
            f"({'shape ' + str(tuple(ref.shape)) if isinstance(ref, torch.Tensor) else type(ref).__name__}"
            f" vs walked {tuple(out.shape)}): {type(model).__name__}.forward does more than apply "
            "its layers in order (or an inplace operation overwrites a tensor it reuses). "
            "Register a walker for it with "
            f"@spectral_lab.operators.register_walker({type(model).__name__})"
        )


# the walkers of every supported layer (the library's, torch's and torchvision's) register here
from . import _walkers as _walkers  # noqa: E402,F401
