"""The walk of :func:`~spectral_lab.operators.operator_product`: the registry of walkers, the walk's
state (:class:`WalkContext`) and the one dispatch rule for every module it meets.

Dispatch (:func:`walk_module`), in this order, for a module ``m`` at its input ``h``:

1. a registered *walker* for ``type(m)`` (or a base class whose ``forward`` ``m`` still uses):
   its named, structured factors (``W``, ``D``, ``B``, ``P``, ``R``, ``LN``, ``A``, ...);
2. else, for a module with submodules or a subclass of a known layer with its own ``forward``,
   a **capture** of its ``forward`` (:mod:`spectral_lab._capture`,
   one level of ``torch.fx``): its submodules are walked by this same rule, its functions become
   gates, reshapes (no factor) or generic factors, and branches that merge become ``R``/``M``;
3. else (a leaf module without a walker, a forward ``torch.fx`` cannot trace, a graph that is not
   a product and sum of paths) ONE generic factor ``G`` (:class:`~spectral_lab._generic.GenericFactor`),
   the module's own JVP/VJP at ``h``.

Whatever a walker or a capture builds for a module with submodules is checked: its output must be
``m(h)`` (to ``1e-10`` relative in float64), else its factors are dropped for one generic factor.
The only refusals are about the model's *state* (:class:`ModelStateError`: BatchNorm with batch
statistics, active dropout), never about an unknown layer.

Example:
    >>> from torch import nn
    >>> ctx = WalkContext()
    >>> with torch.no_grad():
    ...     out = ctx.walk([nn.Linear(3, 4), nn.ELU(), nn.Linear(4, 2)], torch.randn(1, 3))
    >>> [f.name for f in ctx.factors]
    ['W1', 'G1', 'W2']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ._capture import capture, forget_trace, same_output
from ._factors import Factor, ModelStateError, NotATensor
from ._generic import GenericFactor

__all__ = [
    "ModelStateError",
    "WalkContext",
    "Walker",
    "check_state",
    "find_walker",
    "register_walker",
    "supported_layers",
    "walk_module",
]

Walker = Callable[[nn.Module, torch.Tensor, "WalkContext"], torch.Tensor]
"""``walker(module, h, ctx) -> module(h)``: append ``module``'s factors at ``h`` to ``ctx``."""

_WALKERS: dict[type | str, Walker] = {}


def register_walker(*types: type[nn.Module] | str) -> Callable[[Walker], Walker]:
    """Decorator: make :func:`~spectral_lab.operators.operator_product` walk modules of ``types``
    with the decorated walker.

    A walker ``walker(module, h, ctx)`` receives the module, its input ``h`` (a batch of one,
    ``(1, *shape)``) and the :class:`WalkContext`; it appends the module's linear factors at ``h``
    with ``ctx.add(...)`` (named by ``ctx.name(kind)``), recurses into sublayers with
    ``ctx.walk(layers, h)`` (branches: ``ctx.sub(prefix).walk(...)``) and returns ``module(h)``.
    Lookup follows ``type(module).__mro__``, so a walker for a base class covers its subclasses
    that keep its ``forward`` (a subclass with its own ``forward`` is captured instead);
    registering a type again replaces its walker. A type may also be named by its full dotted name
    (``"torchvision.models.resnet.BasicBlock"``), so a walker for an optional package's layer can
    be registered without importing that package. A walker that raises (``TypeError`` for a
    configuration it does not handle, by convention) hands the module to the capture / generic
    factor; :class:`ModelStateError` is a refusal and propagates. Cost: a dictionary entry.

    Example:
        >>> from spectral_lab.operators import MapFactor, operator_product
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


def _registered(module: nn.Module) -> tuple[type, Walker] | None:
    for cls in type(module).__mro__:
        for key in (cls, f"{cls.__module__}.{cls.__qualname__}"):
            if key in _WALKERS:
                return cls, _WALKERS[key]
    return None


def find_walker(module: nn.Module) -> Walker | None:
    """The walker registered for ``type(module)`` or its nearest base class (``None`` if none)."""
    found = _registered(module)
    return None if found is None else found[1]


def supported_layers() -> str:
    """The names of the layer types with a registered walker, comma-separated."""

    def label(t: type | str) -> str:
        name = t.rsplit(".", 1)[-1] if isinstance(t, str) else t.__name__
        return "Dropout (eval, any)" if name == "_DropoutNd" else name

    return ", ".join(sorted({label(t) for t in _WALKERS}))


def check_state(model: nn.Module, where: str = "") -> None:
    """Refuse (:class:`ModelStateError`) a module whose output is random or batch-dependent:
    BatchNorm in train mode or without running statistics, dropout or attention dropout active.
    Cost: one pass over ``model.modules()``."""
    for name, m in model.named_modules():
        here = f"{where}{name or type(model).__name__} ({type(m).__name__})"
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.training:
                raise ModelStateError(
                    f"{here} is in train mode: it normalises with the batch's statistics, so its "
                    "output depends on the batch and has no per-input Jacobian; call model.eval() "
                    "first"
                )
            if m.running_var is None:
                raise ModelStateError(
                    f"{here} has no running statistics (track_running_stats=False), so even in "
                    "eval mode it normalises with the batch's statistics and has no per-input "
                    "Jacobian; model.eval() does not change that: build it with "
                    "track_running_stats=True and estimate the statistics on training data"
                )
        active = isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0
        active |= isinstance(m, nn.MultiheadAttention) and m.dropout > 0
        if active and m.training:
            raise ModelStateError(f"{here} is in train mode (random); call model.eval() first")


@dataclass(eq=False)
class WalkContext:
    """The state of one walk: the ``factors`` found so far, their ``prefix`` and numbering.

    ``name(kind)`` numbers factors per kind (``"W"`` -> ``W1``, ``W2``, ...; the prefix is
    prepended, e.g. ``R2.W1`` inside the second residual block); ``add(factor)`` appends;
    ``walk(layers, h)`` walks sublayers into THIS context (a nested Sequential); ``sub(prefix)``
    starts a fresh context (own factors and numbering) for a branch whose product is kept apart;
    ``branch()`` a context with its own factors but THIS numbering (a captured graph's paths).
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

    def branch(self) -> WalkContext:
        return WalkContext(prefix=self.prefix, counters=self.counters)

    def walk(self, layers: Sequence[nn.Module], h: torch.Tensor) -> torch.Tensor:
        for m in layers:
            h = walk_module(m, h, self)
        return h


def _keeps_forward(m: nn.Module, cls: type) -> bool:
    """``m`` runs the ``forward`` its walker was written for (an abstract base: any subclass's)."""
    return type(m).forward is cls.forward or cls.forward is nn.Module.forward


def _rollback(ctx: WalkContext, mark: int, counters: dict[str, int]) -> None:
    del ctx.factors[mark:]
    ctx.counters.clear()
    ctx.counters.update(counters)


def walk_module(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    """Append the factors of ``m`` at ``h`` (a batch of one) to ``ctx`` and return ``m(h)``:
    walker, else capture, else one generic factor (see the module docstring). Cost: the walker's
    or capture's own, plus one forward of ``m`` for the output check of a module with submodules."""
    found = _registered(m)
    composite = next(m.children(), None) is not None
    trusted = found is not None and _keeps_forward(m, found[0])
    ref = m(h.clone()) if composite or not trusted else None
    if ref is not None and not isinstance(ref, torch.Tensor):
        raise NotATensor(f"{type(m).__name__} returns {type(ref).__name__}, not a tensor")
    mark, counters = len(ctx.factors), dict(ctx.counters)
    if trusted:
        try:
            out = found[1](m, h, ctx)
            if ref is None or same_output(out, ref):
                return out
        except ModelStateError:
            raise
        except Exception:  # noqa: BLE001  (a configuration the walker does not handle)
            pass
        _rollback(ctx, mark, counters)
        if ref is None:
            ref = m(h.clone())
    if composite or (found is not None and not trusted):  # a custom forward: capture it
        for _ in range(2):  # a kept trace that fails is traced afresh once
            try:
                out = capture(m, h, ctx, walk_module)
                if same_output(out, ref):
                    return out
            except ModelStateError:
                raise
            except Exception:  # noqa: BLE001  (CaptureError, or the traced code failing at x)
                pass
            _rollback(ctx, mark, counters)
            if not forget_trace(m):
                break
    return generic_module(m, h, ctx, ref)


def generic_module(
    m: nn.Module, h: torch.Tensor, ctx: WalkContext, out: torch.Tensor | None = None
) -> torch.Tensor:
    """ONE generic factor ``G`` for ``m`` at ``h`` (its own JVP/VJP); returns ``m(h)``."""
    check_state(m, f"{ctx.prefix}")
    out = m(h.clone()) if out is None else out
    if not isinstance(out, torch.Tensor):
        raise NotATensor(f"{type(m).__name__} returns {type(out).__name__}, not a tensor")

    def fn(t: torch.Tensor, m: nn.Module = m) -> torch.Tensor:
        return m(t.clone())

    shape_in, shape_out = tuple(h.shape[1:]), tuple(out.shape[1:])
    what = type(m).__name__
    ctx.add(GenericFactor(ctx.name("G"), "generic", shape_in, shape_out, m, fn, h, what))
    return out
