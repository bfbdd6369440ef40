"""Capture of a custom ``forward``: one level of ``torch.fx``, turned into factors at one input.

Why ``torch.fx`` (and one level of it): the operator view wants the *modules* a forward calls
(so their walkers still give ``W``, ``D``, ``B``, ``LN``, attention paths, ``R``) and the *data
flow* between them (which path is added to which). ``torch.fx`` symbolic tracing gives exactly
that graph, with modules as ``call_module`` nodes when they are leaves; the linearization that
the curvature engine records (``_linearized``) works at the level of ATen operations and has lost
the modules. Tracing ONE level (every submodule is a leaf) and walking each submodule by the
dispatch rule of :mod:`spectral_lab._walk` keeps a failure local: a submodule ``torch.fx`` cannot
trace (data-dependent control flow, ``x.shape`` in an ``if``) becomes one generic factor, not the
whole model.

The graph is run at the actual input ``h`` (concrete values) while each node keeps the *path*
that leads to it from the module's input: a tuple of factors (``()`` is the identity; ``None``: a
constant, e.g. a parameter or a shape). Per node:

* a submodule called on one path, ``m(a)``: ``path(a) + factors(m)`` (walked by the dispatch rule);
* ``relu``/``gelu``/``silu``/``tanh``/``sigmoid``/``leaky_relu`` (functions or methods): a gate
  ``D``; ``F.batch_norm`` in eval mode: ``B``; ``F.layer_norm`` over the last dimension: ``LN``; ``view``/``reshape``/``flatten``/``contiguous``/``squeeze``/``unsqueeze``, eval dropout,
  adding or subtracting a constant of the same shape: no factor (the identity on flattened
  vectors);
* any other function of one path: a generic factor ``G`` (its own JVP/VJP);
* an operation on several paths from one input, ``op(a_1, ..., a_m)``: with ``P`` the longest
  common prefix of the paths and ``S_i`` the rest, ``P + (F,)`` where ``F`` is
  ``ResidualFactor`` ``R = S_a + S_b`` for ``a + b`` (same shapes) and otherwise a
  ``MergeFactor`` ``M = sum_i J_op,i S_i`` (partial Jacobians ``M1.J1``, ``M1.J2``, ... generic);
  the ``S_i`` must not share a factor (a series-parallel graph) -- else (DenseNet's concatenation
  of every earlier feature map) the capture fails and the module becomes one generic factor;
* a non-tensor value that holds tensors (``q, k, v = qkv.unbind(0)``, ``mha(x, x, x)``, a Hugging
  Face ``ModelOutput``) is kept as a function of one path until a tensor is taken out of it.

Every capture is then checked against autograd with one random vector (:func:`spot_check`:
``u^T J`` of the factors vs. the module's VJP); a capture that fails it, like one that cannot be
built, leaves the module to one generic factor. Cost: one symbolic trace, one forward and one
backward pass of the module, plus the factors' bookkeeping.

Example: a residual MLP written with a custom forward keeps its weights and becomes ``R``.
    >>> from torch import nn
    >>> from spectral_lab._walk import WalkContext, walk_module
    >>> class Res(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.b(x + torch.tanh(self.a(x)))
    >>> ctx = WalkContext()
    >>> with torch.no_grad():
    ...     _ = walk_module(Res(), torch.randn(1, 4), ctx)
    >>> [f.name for f in ctx.factors], [f.name for f in ctx.factors[0].branch.factors]
    (['R1', 'W2'], ['W1', 'D1'])
"""

from __future__ import annotations

import inspect
import operator
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ._factors import (
    DiagonalFactor,
    Factor,
    GateFactor,
    MergeFactor,
    ModelStateError,
    NotATensor,
    ResidualFactor,
    activation_derivative,
)
from ._generic import GenericFactor
from ._product import OperatorProduct

__all__ = ["CaptureError", "capture", "forget_trace", "same_output", "spot_check"]


class CaptureError(Exception):
    """The forward cannot be captured as a product and sum of paths (then: one generic factor)."""


class _OneLevel(fx.Tracer):
    """Every submodule is a leaf: the graph of ONE forward, its modules as ``call_module`` nodes."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


@dataclass(frozen=True)
class _Opaque:
    """A non-tensor value (tuple, ``ModelOutput``) computed by ``fn`` from the value of ``src``."""

    src: fx.Node
    fn: Callable


@dataclass(frozen=True)
class _Pack:
    """A tuple value whose parts have their own paths (``mha(x, x, x)``: output, weights)."""

    parts: tuple


_UNUSABLE = object()  # a part of a value whose path is not known (mha's attention weights)

_VIEWS = {"view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze", "view_as"}
_VIEWS_FN = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_ADD = {operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__iadd__"}
_SUB = {operator.sub, operator.isub, torch.sub, "sub", "sub_"}
_DROPOUT = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}


def _gate(node: fx.Node, args: tuple, kwargs: dict) -> nn.Module | None:
    """The activation module of a functional gate call, or ``None``."""
    t = node.target
    name = t if isinstance(t, str) else getattr(t, "__name__", "")
    name = name.rstrip("_")
    extra = dict(kwargs)
    extra.pop("inplace", None)
    if name == "relu" and len(args) == 1 and not extra:
        return nn.ReLU()
    if name in ("tanh", "sigmoid") and len(args) == 1 and not extra:
        return nn.Tanh() if name == "tanh" else nn.Sigmoid()
    if name == "silu" and len(args) == 1 and not extra:
        return nn.SiLU()
    if name == "gelu" and len(args) == 1 and set(extra) <= {"approximate"}:
        return nn.GELU(approximate=extra.get("approximate", "none"))
    if name == "leaky_relu" and len(args) <= 2 and set(extra) <= {"negative_slope"}:
        slope = args[1] if len(args) == 2 else extra.get("negative_slope", 0.01)
        return nn.LeakyReLU(float(slope))
    return None


def _inplace(node: fx.Node, kwargs: dict, root: nn.Module) -> bool:
    t = node.target
    if node.op == "call_module":
        return bool(getattr(root.get_submodule(t), "inplace", False))
    name = t if isinstance(t, str) else getattr(t, "__name__", "")
    if name.endswith("_") and not name.startswith("__") or name.startswith("__i"):
        return True  # x.relu_(), torch.relu_(x), x.__iadd__(y)
    return t in (operator.iadd, operator.isub, operator.imul, operator.itruediv) or bool(
        kwargs.get("inplace", False)
    )


def _label(node: fx.Node, root: nn.Module) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(root.get_submodule(node.target)).__name__})"
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", repr(t))


def _run(node: fx.Node, root: nn.Module, args: tuple, kwargs: dict):
    if node.op == "call_module":
        return root.get_submodule(node.target)(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


def _is_constant(v: object) -> bool:
    """A value without tensors (a shape, a number, a dtype): carries no derivative."""
    if isinstance(v, (tuple, list)):
        return all(_is_constant(a) for a in v)
    return v is None or isinstance(v, (bool, int, float, str, torch.dtype, torch.device, slice))


_TRACES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _trace(m: nn.Module) -> fx.Graph:
    """The one-level graph of ``m.forward`` called with ONE tensor (other arguments: defaults),
    kept per module and train flag (a stale graph cannot pass the output and spot checks)."""
    key = (m.training, type(m).forward)
    kept = _TRACES.get(m)
    if kept is not None and kept[0] == key:
        if isinstance(kept[1], CaptureError):
            raise CaptureError(str(kept[1]))
        return kept[1]
    try:
        graph = _trace_now(m)
    except CaptureError as err:
        _TRACES[m] = (key, err)
        raise
    _TRACES[m] = (key, graph)
    return graph


def forget_trace(m: nn.Module) -> bool:
    """Drop the kept trace of ``m`` (``True`` if there was one)."""
    return _TRACES.pop(m, None) is not None


def _trace_now(m: nn.Module) -> fx.Graph:
    params = list(inspect.signature(m.forward).parameters.values())
    if not params or params[0].kind not in (
        params[0].POSITIONAL_ONLY,
        params[0].POSITIONAL_OR_KEYWORD,
    ):
        raise CaptureError(f"{type(m).__name__}.forward takes no positional input")
    concrete = {}
    for p in params[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise CaptureError(f"{type(m).__name__}.forward needs more than one input")
        concrete[p.name] = p.default
    try:
        return _OneLevel().trace(m, concrete_args=concrete or None)
    except Exception as err:  # noqa: BLE001  (any tracing failure: the module stays whole)
        raise CaptureError(f"torch.fx cannot trace {type(m).__name__}: {err}") from err


def _ids(factors) -> set[int]:
    """Every factor reachable from ``factors`` (inside residual branches and merges too)."""
    out: set[int] = set()
    for f in factors:
        out.add(id(f))
        for sub in (getattr(f, "branch", None), getattr(f, "shortcut", None)):
            if isinstance(sub, OperatorProduct):
                out |= _ids(sub.factors)
        for t in getattr(f, "terms", ()):
            out |= _ids(t.factors)
    return out


def _common_prefix(paths: list[tuple]) -> int:
    n = min(len(p) for p in paths)
    for i in range(n):
        if any(p[i] is not paths[0][i] for p in paths):
            return i
    return n


class _Capture:
    """Runs the graph of ``root`` at ``h``, keeping each node's value and path."""

    def __init__(self, root, h, ctx, walk):
        self.root, self.h, self.ctx, self.walk = root, h, ctx, walk
        self.val: dict[fx.Node, object] = {}
        self.path: dict[fx.Node, object] = {}
        self.shape_in = tuple(h.shape[1:])

    # -------------------------------------------------------------------- helpers
    def _deps(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda a: found.append(a) or a)
        return [a for a in dict.fromkeys(found) if self.path[a] is not None]

    def _sources(self, deps: list[fx.Node]) -> list[fx.Node]:
        out = []
        for a in deps:
            p = self.path[a]
            if isinstance(p, _Pack) or p is _UNUSABLE:
                raise CaptureError(f"{a.name}: a value whose path is not known here")
            src = p.src if isinstance(p, _Opaque) else a
            if src not in out:
                out.append(src)
        return out

    def _closure(self, node: fx.Node, sources: list[fx.Node]) -> Callable:
        """``(t_1, ..., t_m) -> node's value`` with ``t_i`` in place of source ``i``."""
        consts = {}
        for a in dict.fromkeys(self._all_nodes(node)):
            if self.path[a] is None:
                v = self.val[a]
                keep = a.op == "get_attr" or not isinstance(v, torch.Tensor)
                consts[a] = v if keep else v.detach().clone()

        def value(a, ts):
            if a in consts:
                return consts[a]
            p = self.path[a]
            if isinstance(p, _Opaque):
                return p.fn(ts[sources.index(p.src)])
            return ts[sources.index(a)].clone()

        def fn(*ts, node=node, root=self.root):
            args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda a: value(a, ts))
            return _run(node, root, args, kwargs)

        return fn

    def _all_nodes(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda a: found.append(a) or a)
        return found

    def _shape_at(self, prefix: tuple) -> tuple[int, ...]:
        return tuple(prefix[-1].out_shape) if prefix else self.shape_in

    def _generic(self, name: str, fn: Callable, x: torch.Tensor, out: torch.Tensor, what: str):
        return GenericFactor(
            name, "generic", tuple(x.shape[1:]), tuple(out.shape[1:]), None, fn, x, what
        )

    # -------------------------------------------------------------------- one node
    def _call_one_path(self, node, src, args, kwargs) -> tuple[object, object]:
        """A node whose inputs depend on one path ``src``: (value, path)."""
        path, x = self.path[src], self.val[src]
        direct = all(not isinstance(self.path[a], _Opaque) for a in self._deps(node))
        once = self._all_nodes(node).count(src) == 1
        if _inplace(node, kwargs, self.root):
            x = x.detach().clone()  # the snapshot the factors keep; the op overwrites the value
        if node.op == "call_module" and direct:
            sub = self.root.get_submodule(node.target)
            if node.args == (src,) and not node.kwargs:
                br = self.ctx.branch()
                try:
                    return self.walk(sub, x, br), path + tuple(br.factors)
                except NotATensor:
                    pass
            if isinstance(sub, nn.MultiheadAttention) and node.args == (src, src, src):
                got = self._self_attention(sub, x, kwargs)
                if got is not None:
                    return got[0], _Pack((path + got[1], _UNUSABLE))
        first = node.args[0] if node.args else None
        if direct and once and node.op != "call_module" and first is src:
            gate = _gate(node, args, kwargs)
            out = _run(node, self.root, args, kwargs)
            if gate is not None:
                shape = tuple(x.shape[1:])
                diag = activation_derivative(gate, x).reshape(-1)
                f = GateFactor(self.ctx.name("D"), "gate", shape, shape, gate, diag)
                return out, path + (f,)
            norm = self._norm(node, args, kwargs, x, out)
            if norm is not None:
                return out, path + (norm,)
            if self._is_identity(node, args, kwargs, x, out):
                return out, path
            return out, self._one_path_generic(node, src, path, x, out)
        fn = self._closure(node, [src])
        out = _run(node, self.root, args, kwargs)
        if isinstance(out, torch.Tensor):
            f = self._generic(self.ctx.name("G"), fn, x, out, _label(node, self.root))
            return out, path + (f,)
        if _is_constant(out):
            return out, None
        return out, _Opaque(src, fn)

    def _one_path_generic(self, node, src, path, x, out):
        if not isinstance(out, torch.Tensor):
            return None if _is_constant(out) else _Opaque(src, self._closure(node, [src]))
        f = self._generic(
            self.ctx.name("G"), self._closure(node, [src]), x, out, _label(node, self.root)
        )
        return path + (f,)

    def _norm(self, node, args, kwargs, x, out) -> Factor | None:
        """``F.batch_norm`` in eval mode (``B``) and ``F.layer_norm`` over the last dimension
        (``LN``) as the walkers' factors; ``None`` for anything else."""
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            return None
        shape = tuple(x.shape[1:])
        if node.target is F.batch_norm:
            names = ("running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
            a = dict(zip(names, args[1:]), **kwargs)
            if a.get("training", False) or a.get("running_var") is None:
                raise ModelStateError(
                    f"{node.name}: batch_norm with the batch's statistics (training=True or no "
                    "running statistics) has no per-input Jacobian; call model.eval() first"
                )
            scale = torch.rsqrt(a["running_var"].detach() + a.get("eps", 1e-5))
            if a.get("weight") is not None:
                scale = scale * a["weight"].detach()
            c = x.shape[1]
            diag = scale.reshape(c, *([1] * (x.dim() - 2))).expand(shape).reshape(-1)
            return DiagonalFactor(self.ctx.name("B"), "norm", shape, shape, None, diag.to(x.dtype))
        if node.target is F.layer_norm:
            from .transformer_ops import layernorm_factor

            names = ("normalized_shape", "weight", "bias", "eps")
            a = dict(zip(names, args[1:]), **kwargs)
            if len(tuple(a["normalized_shape"])) != 1:
                return None
            d = x.shape[-1]
            ln = SimpleNamespace(
                normalized_shape=(d,), weight=a.get("weight"), eps=a.get("eps", 1e-5)
            )
            f = layernorm_factor(ln, x.reshape(-1, d), self.ctx.name("LN"))
            f.in_shape = f.out_shape = shape
            return f
        return None

    def _is_identity(self, node, args, kwargs, x, out) -> bool:
        if not isinstance(out, torch.Tensor) or out.numel() != x.numel() or out.shape[0] != 1:
            return False
        t = node.target
        if t in _VIEWS or t in _VIEWS_FN:
            return True
        if t in _DROPOUT:
            p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
            training = args[2] if len(args) > 2 else kwargs.get("training", True)
            if training and p > 0:
                raise ModelStateError(
                    f"{node.name}: functional dropout with training=True (p={p}) is random; call "
                    "model.eval() first (or pass training=self.training)"
                )
            return True
        if (t in _ADD or t in _SUB) and len(args) == 2 and not kwargs:
            return out.shape == x.shape
        return False

    def _self_attention(self, m, x, kwargs):
        """``mha(x, x, x)`` with no mask, batch first: the attention factor (value + pattern)."""
        from .transformer_ops import attention_factor

        allowed = {"need_weights", "average_attn_weights"}
        if not m.batch_first or any(k not in allowed for k in kwargs) or x.shape[0] != 1:
            return None
        full = m(x, x, x, **kwargs)
        try:
            f, out = attention_factor(m, x[0], self.ctx.name("A"))
        except (TypeError, ValueError):
            return None
        if not same_output(out[None], full[0]):
            return None
        return full, (f,)

    def _merge(self, node, sources, args, kwargs) -> tuple[object, object]:
        paths = [self.path[s] for s in sources]
        n = _common_prefix(paths)
        prefix, rests = paths[0][:n], [p[n:] for p in paths]
        seen: set[int] = set()
        for r in rests:
            ids = _ids(r)
            if ids & seen:
                raise CaptureError(f"{node.name}: paths that share a factor (not series-parallel)")
            seen |= ids
        shape = self._shape_at(prefix)
        ref = self.h
        values = [self.val[s].detach().clone() for s in sources]
        out = _run(node, self.root, args, kwargs)
        if not isinstance(out, torch.Tensor):
            raise CaptureError(f"{node.name}: a non-tensor value of several paths")
        direct = all(not isinstance(self.path[a], _Opaque) for a in self._deps(node))
        plain = node.target in _ADD and len(node.args) == 2 and not node.kwargs
        if plain and direct and values[0].shape == values[1].shape == out.shape:
            a, b = sorted(rests, key=len)
            sc = None if not a else OperatorProduct(a, shape, ref)
            f = ResidualFactor(
                self.ctx.name("R"),
                "residual",
                shape,
                tuple(out.shape[1:]),
                None,
                1.0,
                OperatorProduct(b, shape, ref),
                sc,
            )
            return out, prefix + (f,)
        name = self.ctx.name("M")
        fn = self._closure(node, sources)
        terms = []
        for i, (r, v) in enumerate(zip(rests, values)):

            def part(t, i=i, fn=fn, values=values):
                return fn(*[t if j == i else w for j, w in enumerate(values)])

            g = self._generic(
                f"{name}.J{i + 1}", part, v, out, f"{_label(node, self.root)} (argument {i + 1})"
            )
            terms.append(OperatorProduct((*r, g), shape, ref))
        f = MergeFactor(
            name, "merge", shape, tuple(out.shape[1:]), None, tuple(terms), _label(node, self.root)
        )
        return out, prefix + (f,)

    def step(self, node: fx.Node) -> None:
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda a: self.val[a])
        deps = self._deps(node)
        if not deps:
            self.val[node], self.path[node] = _run(node, self.root, args, kwargs), None
            return
        if node.target is operator.setitem or "out" in node.kwargs:
            raise CaptureError(f"{node.name}: writes into a tensor (x[i] = ..., out=)")
        pack = self.path[node.args[0]] if node.args and isinstance(node.args[0], fx.Node) else None
        if node.target is operator.getitem and isinstance(pack, _Pack):
            part = pack.parts[node.args[1]] if isinstance(node.args[1], int) else _UNUSABLE
            value = args[0][args[1]]
            self.val[node] = value
            self.path[node] = None if value is None else part  # _UNUSABLE: refused when used
            return
        sources = self._sources(deps)
        if len(sources) == 1:
            out, path = self._call_one_path(node, sources[0], args, kwargs)
        else:
            out, path = self._merge(node, sources, args, kwargs)
        self.val[node], self.path[node] = out, path
        first = node.args[0] if node.args else None
        if isinstance(first, fx.Node) and _inplace(node, kwargs, self.root):
            # the tensor was overwritten: later uses see the new value and its path
            self.val[first], self.path[first] = out, path

    def run(self, graph: fx.Graph) -> tuple[torch.Tensor, tuple[Factor, ...]]:
        params = list(inspect.signature(self.root.forward).parameters.values())
        placeholders = 0
        for node in graph.nodes:
            if node.op == "placeholder":
                if placeholders == 0:
                    self.val[node], self.path[node] = self.h, ()
                else:
                    p = params[placeholders] if placeholders < len(params) else None
                    self.val[node], self.path[node] = _default(p), None
                placeholders += 1
            elif node.op == "get_attr":
                v = self.root
                for part in node.target.split("."):
                    v = getattr(v, part)
                self.val[node], self.path[node] = v, None
            elif node.op == "output":
                res = node.args[0]
                if not isinstance(res, fx.Node) or not isinstance(self.path[res], tuple):
                    raise CaptureError("the forward does not return one tensor that depends on x")
                return self.val[res], self.path[res]
            else:
                self.step(node)
        raise CaptureError("the graph has no output")


def _default(p: inspect.Parameter | None) -> object:
    """The value a parameter of ``forward`` takes when the module is called with ONE input."""
    if p is None:
        return None
    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
        return () if p.kind == p.VAR_POSITIONAL else {}
    return None if p.default is p.empty else p.default


def same_output(out: object, ref: object) -> bool:
    """``out == ref`` to ``1e-10`` (float64; ``1e-4`` otherwise) relative to ``max |ref|``."""
    if not (isinstance(out, torch.Tensor) and isinstance(ref, torch.Tensor)):
        return False
    if out.shape != ref.shape:
        return False
    tol = (1e-10 if ref.dtype == torch.float64 else 1e-4) * max(1.0, float(ref.abs().max()))
    return bool((out - ref).abs().max() <= tol)


def spot_check(m: nn.Module, h: torch.Tensor, factors: tuple, out: torch.Tensor) -> bool:
    """``u^T J`` of the factors equals autograd's VJP of ``m`` at ``h`` for one random ``u``
    (seeded, the global random state untouched): a wrong path (an alias, an in-place write the
    capture missed) cannot pass, even where the values, and so the output check, are right.
    Cost: one backward pass of ``m`` and one transposed product. ``True`` where autograd
    cannot differentiate ``m`` itself (nothing to compare with)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    u = torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)
    try:
        with torch.enable_grad(), sdpa_kernel([SDPBackend.MATH]):
            x = h.detach().clone().requires_grad_(True)
            y = m(x.clone())
            (ref,) = torch.autograd.grad(y, x, u, allow_unused=True)
    except RuntimeError:
        return True
    ref = torch.zeros_like(h) if ref is None else ref
    got = OperatorProduct(factors, tuple(h.shape[1:]), h).rmatvec(u.reshape(1, -1))
    tol = (1e-9 if h.dtype == torch.float64 else 1e-3) * (1.0 + float(ref.norm()))
    return float((got.reshape(-1) - ref.reshape(-1)).norm()) <= tol


def capture(m: nn.Module, h: torch.Tensor, ctx, walk) -> torch.Tensor:
    """Append the factors of ``m``'s captured forward at ``h`` to ``ctx``; return ``m(h)``.

    ``walk(module, h, ctx)`` walks each submodule (the dispatch rule of ``_walk``). Raises
    :class:`CaptureError` when the forward cannot be captured, or when the captured product fails
    :func:`spot_check` (then the caller makes ``m`` one generic factor). Formula and cost: see the
    module docstring.
    """
    graph = _trace(m)
    with torch.no_grad():
        out, path = _Capture(m, h, ctx, walk).run(graph)
    if not spot_check(m, h, path, out):
        raise CaptureError(f"the captured product of {type(m).__name__} is not its Jacobian")
    for f in path:
        ctx.add(f)
    return out
