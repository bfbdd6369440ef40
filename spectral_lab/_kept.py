"""Private plumbing for kept graphs: build a chunk's differentiation graph once, then answer every
curvature or NTK product with backward passes through it (``retain_graph=True``).

A *kept graph* is the autograd graph of one chunk of data, kept alive between products: for the
Hessian the graph of ``grad L`` built with ``create_graph=True`` (one backward through it per
product ``H v``, as PyHessian does); for the Gauss--Newton matrix and the NTK the graph of the
outputs plus that of ``J^T u`` (``J v`` is the derivative of ``<J^T u, v>`` in ``u``, the
double-VJP trick). A *memory budget* (bytes) decides whether the graphs of all chunks may be kept;
their size is measured on the first chunk as the bytes of the tensors autograd saves
(``torch.autograd.graph.saved_tensors_hooks``) and scaled by the number of samples. When they do
not fit, the operator *streams*: each product recomputes the chunk's forward (and backward) pass.

Blocks of ``b`` products use one batched backward (``is_grads_batched=True``: the backward is
vmapped over the ``b`` cotangents), or a loop over columns when some operation has no batching
rule; ``state["matmat"]`` records which.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

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
    (``state["matmat"]`` becomes ``"loop"``; otherwise ``"batched backward"``).
    """
    if not batched:
        return _one(outputs, inputs, cots, False)
    if state.get("matmat") != "loop":
        try:
            with warnings.catch_warnings():  # "performance drop ... batching rule" is not an error
                warnings.filterwarnings("ignore", message=".*[Bb]atching rule.*")
                warnings.filterwarnings("ignore", message=".*performance drop.*")
                out = _one(outputs, inputs, cots, True)
            state.setdefault("matmat", "batched backward")
            return out
        except (RuntimeError, NotImplementedError) as err:
            if state.get("matmat") == "batched backward":
                raise
            state["matmat"] = "loop"
            state["matmat_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
    cols = [_one(outputs, inputs, [c[j] for c in cots], False) for j in range(cots[0].shape[0])]
    return [torch.stack(parts) for parts in zip(*cols)]


def keep_all(
    chunks, build: Callable, n_total: int, memory_budget: float, record: dict
) -> list | None:
    """Build ``build(x, y)`` for every chunk ``(x, y)`` and keep them, or ``None`` to stream.

    The first chunk's saved bytes, scaled by ``n_total / len(x)``, is the estimate recorded in
    ``record["estimate_bytes"]``; beyond ``memory_budget`` nothing is kept (nor when the running
    total of the measured chunks passes it). Returns ``[(len(x) / n_total, kept), ...]``.
    """
    kept, used = [], 0
    for x, y in chunks:
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
