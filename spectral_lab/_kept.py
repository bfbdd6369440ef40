"""Private plumbing for kept graphs: build what a chunk's products share once, then answer every
curvature or NTK product from it.

Two kinds of kept state, tried in this order on a one-sample probe:

- **linearized** (:mod:`._linearized`): the tangent operations of forward-mode AD recorded once
  per chunk -- of ``grad L`` for the Hessian (``H v`` is its JVP), of the outputs for the
  Gauss--Newton matrix and the NTK (``J v``) -- replayed on each new vector; ``J^T u`` is a
  backward pass through the kept graph of the outputs. About 1.2 gradients per Hessian product.
- **reverse-over-reverse** (when some operation lacks forward-mode AD or cannot be recorded): the
  autograd graph of ``grad L`` built with ``create_graph=True`` (one backward through it per
  product ``H v``, as PyHessian does; about 1.5 gradients); for the GGN and the NTK the graph of
  the outputs plus that of ``J^T u`` (``J v`` is the derivative of ``<J^T u, v>`` in ``u``).

A *memory budget* (bytes) decides whether the state of all chunks may be kept; its size is
measured on the first chunk -- the constants a recording holds, or the bytes of the tensors
autograd saves (``torch.autograd.graph.saved_tensors_hooks``) -- and scaled by the number of
samples. When it does not fit, the operator *streams*: each product recomputes the chunk's forward
(and backward) pass.

Blocks of ``b`` products use one batched backward (``is_grads_batched=True``: the backward is
vmapped over the ``b`` cotangents), or a loop over columns when some operation has no batching
rule or when the loop is faster per column (measured on the first block, :func:`block`);
``memory["matmat"]`` records which.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from types import SimpleNamespace

import torch

from . import _func
from ._linearized import Linearized
from ._losses import scalar_loss

#: the default ``memory_budget`` (bytes) of the curvature and NTK operators: 1 GiB
DEFAULT_MEMORY_BUDGET = 2**30


def check_budget(memory_budget: object) -> float:
    """``memory_budget`` as a non-negative number of bytes (0 forces streaming)."""
    if not isinstance(memory_budget, int | float) or not memory_budget >= 0:
        raise ValueError(
            f"memory_budget must be a number of bytes >= 0 (0 forces streaming), got {memory_budget!r}"
        )
    return float(memory_budget)


def saved_bytes(fn: Callable[[], object]) -> tuple[object, int]:
    """``(fn(), bytes)``: the bytes of the distinct storages autograd saved while ``fn`` ran."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def _one(outputs, inputs, cots, batched: bool) -> list[torch.Tensor]:
    pairs = [(o, c) for o, c in zip(outputs, cots) if o.requires_grad]
    if not pairs:
        grads: Sequence[torch.Tensor | None] = [None] * len(inputs)
    else:
        grads = torch.autograd.grad(
            [o for o, _ in pairs],
            list(inputs),
            [c for _, c in pairs],
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=batched,
        )
    lead = (cots[0].shape[0],) if batched else ()
    return [
        torch.zeros(*lead, *i.shape, dtype=i.dtype, device=i.device) if g is None else g
        for g, i in zip(grads, inputs)
    ]


def _batched_or_loop(batched_call: Callable, column: Callable, b: int, state: dict) -> list:
    """``batched_call()`` (one call over all ``b`` columns) or, when it raises, ``column(j)`` for
    each column stacked; the first failure sets ``state["batching"] = "failed"`` (with the error
    in ``state["matmat_error"]``) and later blocks go straight to the loop."""
    if state.get("batching") != "failed":
        try:
            with warnings.catch_warnings():  # "performance drop ... batching rule" is not an error
                warnings.filterwarnings("ignore", message=".*[Bb]atching rule.*")
                warnings.filterwarnings("ignore", message=".*performance drop.*")
                out = batched_call()
            state["batching"] = "ok"
            return out
        except (RuntimeError, NotImplementedError) as err:
            if state.get("batching") == "ok":
                raise
            state["batching"] = "failed"
            state["matmat_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    return [torch.stack(parts) for parts in zip(*(column(j) for j in range(b)))]


def backward(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    cots: Sequence[torch.Tensor],
    batched: bool,
    state: dict,
) -> list[torch.Tensor]:
    """``d/d inputs <outputs, cots>`` through a kept graph (the graph is retained).

    With ``batched`` every cotangent carries a leading dimension ``b`` and so do the results: one
    vmapped backward (``is_grads_batched``), or a loop over the ``b`` columns when that fails
    (``state["batching"]`` becomes ``"failed"``, with the error in ``state["matmat_error"]``).
    """
    if not batched:
        return _one(outputs, inputs, cots, False)
    return _batched_or_loop(
        lambda: _one(outputs, inputs, cots, True),
        lambda j: _one(outputs, inputs, [c[j] for c in cots], False),
        cots[0].shape[0],
        state,
    )


def forward(lin: Linearized, tangents: Sequence[torch.Tensor], batched: bool, state: dict):
    """``J t`` through a recording (:class:`Linearized`); with ``batched`` every tangent carries a
    leading dimension ``b``: one ``torch.vmap`` over the replay, or a loop over the columns when
    that fails (``state["batching"]`` becomes ``"failed"``, as in :func:`backward`)."""
    if not batched:
        return lin(tangents)
    return _batched_or_loop(
        lambda: torch.vmap(lin)([t.contiguous() for t in tangents]),  # contiguous, as recorded
        lambda j: lin([t[j] for t in tangents]),
        tangents[0].shape[0],
        state,
    )


def block(apply: Callable[[torch.Tensor, bool], torch.Tensor], V: torch.Tensor, memory: dict):
    """``A V`` for a block ``(dim, b)`` of kept-graph products ``apply(V, batched)``.

    A batched backward is not always cheaper per column than single products (on a CPU the
    batched double backward of a convolution can be slower), so the first block of at least 4
    columns times both -- 2 columns batched, 2 one by one, no product wasted -- and keeps the
    faster: ``memory["matmat"]`` is ``"batched backward"``, ``"loop (faster here)"`` or
    ``"loop (no batching rule)"``, the timings (seconds per column) ``memory["per_column_s"]``.
    Batched calls take at most ``memory_budget / kept bytes`` columns at once; a wider batch that
    runs > 1.2x slower per column than single products switches to the loop for good.
    """
    b = V.shape[1]
    mode = memory.get("matmat")
    if mode is None and b >= 4:
        t0 = time.perf_counter()
        first = apply(V[:, :2], True)
        t1 = time.perf_counter()
        second = torch.stack([apply(V[:, j], False) for j in (2, 3)], dim=1)
        t2 = time.perf_counter()
        memory["per_column_s"] = {"batched": (t1 - t0) / 2, "single": (t2 - t1) / 2}
        if memory.get("batching") == "failed":
            memory["matmat"] = "loop (no batching rule)"
        else:
            memory["matmat"] = "batched backward" if t1 - t0 <= t2 - t1 else "loop (faster here)"
        rest = [block(apply, V[:, 4:], memory)] if b > 4 else []
        return torch.cat([first, second, *rest], dim=1)
    if mode == "batched backward":  # b columns hold ~b times a graph's transient memory
        width = max(1, int(memory["budget_bytes"] // max(1, memory.get("kept_bytes", 1))))
        parts = []
        for i in range(0, b, width):
            if memory["matmat"] != "batched backward":  # wider blocks turned out slower
                parts.append(block(apply, V[:, i:], memory))
                break
            t0 = time.perf_counter()
            parts.append(apply(V[:, i : i + width], True))
            per_column = (time.perf_counter() - t0) / parts[-1].shape[1]
            single = memory.get("per_column_s", {}).get("single", math.inf)
            if parts[-1].shape[1] > 2 and per_column > 1.2 * single:
                memory["matmat"] = "loop (faster here)"  # e.g. page faults of wide blocks on a CPU
                memory["per_column_s"]["batched (wide)"] = per_column
        return torch.cat(parts, dim=1)
    return torch.stack([apply(V[:, j], False) for j in range(b)], dim=1)


def keep_all(
    chunks, build: Callable, n_total: int, memory_budget: float, record: dict
) -> list | None:
    """Build ``build(x, y)`` for every chunk ``(x, y)`` and keep them, or ``None`` to stream.

    The first chunk's bytes (``state.nbytes`` when ``build.measures_itself``, else the bytes
    autograd saved while building it), scaled by ``n_total / len(x)``, is the estimate recorded in
    ``record["estimate_bytes"]``; beyond ``memory_budget`` nothing is kept (nor when the running
    total of the measured chunks passes it). Returns ``[(len(x) / n_total, kept), ...]``.
    """
    kept, used = [], 0
    for x, y in chunks:
        if getattr(build, "measures_itself", False):  # torch.func.grad refuses saved-tensor hooks
            state = build(x, y)
            nbytes = state.nbytes
        else:
            state, nbytes = saved_bytes(lambda x=x, y=y: build(x, y))
        used += nbytes
        if not kept:
            record["estimate_bytes"] = int(nbytes * n_total / max(1, len(x)))
            if record["estimate_bytes"] > memory_budget:
                return None
        if used > memory_budget:
            record["estimate_bytes"] = max(record["estimate_bytes"], used)
            return None
        kept.append((len(x) / n_total, state))
    record["kept_bytes"] = used
    return kept


def versions(leaves: Sequence[torch.Tensor]) -> tuple[int, ...]:
    """The version counters of the parameters (an in-place update makes a kept graph stale)."""
    return tuple(t._version for t in leaves)


def split(v: torch.Tensor, like: Sequence[torch.Tensor], batched: bool) -> list[torch.Tensor]:
    """A flat ``(p,)`` vector, or a block ``(p, b)`` when ``batched``, as per-parameter
    cotangents (with a leading ``b`` when batched)."""
    rows = v.T if batched else v
    out, i = [], 0
    for t in like:
        part = rows[..., i : i + t.numel()]
        out.append(part.reshape(*part.shape[:-1], *t.shape))
        i += t.numel()
    return out


# --- the curvature and NTK products through kept graphs ------------------------------------------


class Products:
    """Products through kept graphs: ``self(v, batched)``; rebuilt when the parameters change."""

    def __init__(self, build, product, leaves, params, chunks, n_total, memory, ad) -> None:
        self.build, self.product, self.leaves, self.params = build, product, leaves, params
        self.chunks, self.n_total, self.memory, self.ad = chunks, n_total, memory, ad
        self.route = ad.name
        self.graphs = None

    def make(self, budget: float) -> bool:
        with self.ad.context():
            self.graphs = keep_all(self.chunks(), self.build, self.n_total, budget, self.memory)
        self.version = versions(list(self.leaves.values()))
        return self.graphs is not None

    def __call__(self, v: torch.Tensor, batched: bool) -> torch.Tensor:
        return block(self.apply, v, self.memory) if batched else self.apply(v, False)

    def apply(self, v: torch.Tensor, batched: bool) -> torch.Tensor:
        if versions(list(self.leaves.values())) != self.version:
            self.graphs = None
            self.make(math.inf)
        cots = split(v, list(self.params.values()), batched)
        acc = None
        with self.ad.context():
            for w, graph in self.graphs:
                res = self.product(graph, cots, batched)
                flat = _func.flatten_batched(dict(enumerate(res)), 1 if batched else 0)
                acc = w * flat if acc is None else acc + w * flat
        return (acc.T if batched else acc).detach()


def _kept_route(route, probe, what: str, ad0, memory: dict):
    """The kept-graph AD route matching the streaming route ``ad0`` (composite kernels or not), or
    ``None`` with ``memory["reason"]`` when none runs on this model."""
    try:
        cands = [c for c in _func.KEPT_CANDIDATES if c[2] == ad0.composite]
        return _func.choose_route(route, probe, what, cands)
    except (RuntimeError, NotImplementedError) as err:
        memory["reason"] = f"no kept-graph route runs ({type(err).__name__})"
        return None


def _probe_fits(ad, n_total: int, budget: float, memory: dict) -> bool:
    """Whether a recording may fit: the one-sample probe's bytes (``memory["probe_bytes"]``),
    times the samples, within ``budget`` -- checked before a whole chunk is recorded."""
    if ad.reverse or memory.get("probe_bytes") is None:
        return True
    memory["estimate_bytes"] = int(memory["probe_bytes"] * n_total)
    if memory["estimate_bytes"] <= budget:
        return True
    memory["reason"] = (
        f"the recording needs ~{memory['estimate_bytes']:.3g} bytes > memory_budget={budget:.3g}"
    )
    return False


def _made(kept, budget: float, memory: dict):
    """``kept`` with its graphs built, or ``None`` (stream) when they do not fit ``budget``."""
    if not kept.make(budget):
        memory["reason"] = (
            f"the graphs need ~{memory['estimate_bytes']:.3g} bytes > memory_budget={budget:.3g}"
        )
        return None
    memory["storage"] = "kept graph"
    return kept


def hessian_products(
    model, f, params, labelled, n_total, loss_fn, which, route, budget, memory, ad0
):
    """Hessian (``which="full"``) or GGN products from kept per-chunk state, or ``None`` to
    stream (over budget, ``route="forward"``, or no kept route runs on this model); fills
    ``memory``. ``labelled()`` streams the ``(x, y)`` chunks. The linearized state where the
    model has forward-mode AD and records, else reverse-over-reverse kept graphs. Composite
    kernels only where the streaming route ``ad0`` needs them too (they are the same function,
    but not bit for bit)."""
    state = memory
    if budget <= 0 or route == "forward":
        memory["reason"] = "memory_budget is 0" if budget <= 0 else "route='forward'"
        return None
    leaves = {k: p.detach().requires_grad_(True) for k, p in params.items()}
    lv, names = list(leaves.values()), list(leaves)
    g_opts = {"create_graph": True, "allow_unused": True, "materialize_grads": True}

    def output_graphs(x, y):  # GGN: the outputs' graph and the loss's graph in the outputs
        with torch.enable_grad():
            out = f(leaves, x)
            od = out.detach().requires_grad_(True)
            (go,) = torch.autograd.grad(scalar_loss(loss_fn(od, y)), od, create_graph=True)
            return out, od, go

    def build_linearized(x, y):
        if which == "full":

            def grad_loss(ps):
                g = torch.func.grad(lambda q: scalar_loss(loss_fn(f(q, x), y)))(dict(zip(names, ps)))  # fmt: skip
                return [g[k] for k in names]

            return Linearized(grad_loss, lv, held=[x, y])
        (out, od, go), nbytes = saved_bytes(lambda: output_graphs(x, y))
        lin = Linearized(lambda ps: [f(dict(zip(names, ps)), x)], lv, held=[x])
        return SimpleNamespace(out=out, od=od, go=go, lin=lin, nbytes=nbytes + lin.nbytes)

    build_linearized.measures_itself = True

    def build_reverse(x, y):
        with torch.enable_grad():
            if which == "full":
                return torch.autograd.grad(scalar_loss(loss_fn(f(leaves, x), y)), lv, **g_opts)
            out, od, go = output_graphs(x, y)
            u = torch.zeros_like(out, requires_grad=True)
            gu = torch.autograd.grad(out, lv, u, **g_opts)
            return SimpleNamespace(out=out, od=od, go=go, u=u, gu=gu)

    def product(graph, cots, batched):
        if isinstance(graph, Linearized):
            return forward(graph, cots, batched, state)
        if which == "full":
            return backward(graph, lv, cots, batched, state)
        if hasattr(graph, "lin"):
            jv = forward(graph.lin, cots, batched, state)
        else:
            jv = backward(graph.gu, [graph.u], cots, batched, state)
        hu = backward([graph.go], [graph.od], jv, batched, state)
        return backward([graph.out], lv, hu, batched, state)

    def probe(r: _func.ADRoute) -> None:
        with _func.eval_mode(model):
            x, y = next(iter(labelled()))
            graph = (build_reverse if r.reverse else build_linearized)(x[:1], y[:1])
            product(graph, [torch.ones_like(t) for t in lv], False)
            memory["probe_bytes"] = getattr(graph, "nbytes", None)

    ad = _kept_route(route, probe, "hessian", ad0, memory)
    if ad is None:
        return None

    def chunks():
        with _func.eval_mode(model):
            yield from labelled()

    def make(ad):
        if not _probe_fits(ad, n_total, budget, memory):
            return None
        build = build_reverse if ad.reverse else build_linearized
        return _made(Products(build, product, leaves, params, chunks, n_total, memory, ad), budget, memory)  # fmt: skip

    kept = make(ad)
    if kept is None and not ad.reverse:  # a recording holds more than the autograd graph
        ad = _kept_route("reverse", probe, "hessian", ad0, memory)
        kept = None if ad is None else make(ad)
    return kept


class NTKProducts:
    """NTK products from kept per-chunk state: ``self(v, batched)``; rebuilt when parameters
    change. ``J^T U`` is a backward pass through the kept graph of the outputs; ``J t`` replays
    the chunk's recording (linearized) or is the derivative of ``<J^T u, t>`` in ``u``."""

    def __init__(self, build, leaves, chunks, n, C, kind, memory, ad) -> None:
        self.build, self.leaves, self.chunks, self.memory, self.ad = (
            build,
            leaves,
            chunks,
            memory,
            ad,
        )
        self.n, self.C, self.kind, self.route = n, C, kind, ad.name

    def make(self, budget: float) -> bool:
        with self.ad.context():
            self.graphs = keep_all(self.chunks(), self.build, self.n, budget, self.memory)
        self.version = versions(self.leaves)
        return self.graphs is not None

    def __call__(self, v: torch.Tensor, batched: bool) -> torch.Tensor:
        return block(self.apply, v, self.memory) if batched else self.apply(v, False)

    def apply(self, v: torch.Tensor, batched: bool) -> torch.Tensor:
        if versions(self.leaves) != self.version:
            self.make(math.inf)
        n, C, st = self.n, self.C, self.memory
        b = v.shape[1] if batched else 1
        if self.kind == "block":
            U = (v.T if batched else v[None]).reshape(b, n, C)
        else:  # the C class cotangents v e_c^T of each column, batched together
            w = v.T if batched else v[None]
            U = w[:, None, :, None] * torch.eye(C, dtype=v.dtype, device=v.device)[None, :, None, :]
            U = U.reshape(b * C, n, C)  # fmt: skip
        with self.ad.context():
            t, i = None, 0
            for _, g in self.graphs:  # J^T U, summed over chunks
                m = len(g.out)
                jt = backward([g.out], self.leaves, [U[:, i : i + m]], True, st)
                t = jt if t is None else [a + c for a, c in zip(t, jt)]
                i += m
            JU = torch.cat([ntk_jvp(g, t, st) for _, g in self.graphs], 1)
        if self.kind == "block":
            res = JU.reshape(b, n * C)
        else:
            JU = JU.reshape(b, C, n, C)
            res = torch.diagonal(JU, dim1=1, dim2=3).sum(-1)  # sum_c [J_c J_c^T v]
        return (res.T if batched else res[0]).detach()


def ntk_jvp(graph, t: list[torch.Tensor], state: dict) -> torch.Tensor:
    """``J t`` of one chunk for a block of tangents ``t`` (leading dimension = columns)."""
    if hasattr(graph, "lin"):
        return forward(graph.lin, t, True, state)[0]
    return backward(graph.gu, [graph.u], t, True, state)[0]


def ntk_products(model, f, params, x, chunk, C, kind, route, budget, memory, ad0):
    """The kept NTK products (linearized where the model records, else reverse-over-reverse), or
    ``None`` to stream; fills ``memory``. Composite kernels only where the streaming route ``ad0``
    needs them too (the same function, not bit for bit)."""
    if budget <= 0 or route == "forward":
        memory["reason"] = "memory_budget is 0" if budget <= 0 else "route='forward'"
        return None
    leaves = [p.detach().requires_grad_(True) for p in params.values()]
    names = list(params)
    named = dict(zip(names, leaves))

    def build_reverse(xb, _y=None):
        with torch.enable_grad():
            out = f(named, xb)
            u = torch.zeros_like(out, requires_grad=True)
            gu = torch.autograd.grad(out, leaves, u, create_graph=True, allow_unused=True, materialize_grads=True)  # fmt: skip
            return SimpleNamespace(out=out, u=u, gu=gu)

    def build_linearized(xb, _y=None):
        with torch.enable_grad():
            out, nbytes = saved_bytes(lambda: f(named, xb))
        lin = Linearized(lambda ps: [f(dict(zip(names, ps)), xb)], leaves, held=[xb])
        return SimpleNamespace(out=out, lin=lin, nbytes=nbytes + lin.nbytes)

    build_linearized.measures_itself = True

    def probe(r: _func.ADRoute) -> None:
        with _func.eval_mode(model):
            g = (build_reverse if r.reverse else build_linearized)(x[:1])
            t = backward([g.out], leaves, [torch.ones_like(g.out)[None]], True, {})
            ntk_jvp(g, t, {})
            memory["probe_bytes"] = getattr(g, "nbytes", None)

    def chunks():
        with _func.eval_mode(model):
            for i in range(0, len(x), chunk):
                yield x[i : i + chunk], None

    def make(ad):
        if not _probe_fits(ad, len(x), budget, memory):
            return None
        build = build_reverse if ad.reverse else build_linearized
        return _made(NTKProducts(build, leaves, chunks, len(x), C, kind, memory, ad), budget, memory)  # fmt: skip

    ad = _kept_route(route, probe, "ntk (operator)", ad0, memory)
    kept = None if ad is None else make(ad)
    if kept is None and ad is not None and not ad.reverse:  # the recording may not fit
        ad = _kept_route("reverse", probe, "ntk (operator)", ad0, memory)
        kept = None if ad is None else make(ad)
    return kept
