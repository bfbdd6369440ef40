"""The collectives of the distributed layer: which group, the status exchange that turns a failed
rank into an error on every rank, the checked all-reduce of partial products, the all-gather of
unequal slices, and the replicated random source.

Example: without an initialised process group everything is single-process.
    >>> resolve_group() is None, resolve_group(False) is None
    (True, True)
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from ..linalg import LinearOperator

__all__ = [
    "DistributedError",
    "all_gather_rows",
    "all_reduce_checked",
    "exchange",
    "guarded",
    "local_count",
    "local_only",
    "on_every_rank",
    "replicated_generator",
    "resolve_group",
    "shard_info",
    "sharded_sum",
    "unpadded",
]


class DistributedError(RuntimeError):
    """Another rank failed (its own traceback says why), or a collective failed or timed out."""


def resolve_group(process_group: Any = None) -> Any:
    """The process group a call runs on, or ``None`` for a single process.

    ``None``: the default group when ``torch.distributed`` is available, initialised and has more
    than one process, else ``None``. ``False``: ``None`` (this rank's data alone). A
    ``ProcessGroup``: itself (``None`` when it has one process). Cost: none.

    Example:
        >>> resolve_group(None) is None  # torch.distributed is not initialised here
        True
    """
    if process_group is False or (process_group is None and _LOCAL.get()):
        return None
    if process_group is True:
        raise TypeError("process_group must be None, False or a torch.distributed ProcessGroup")
    if not (dist.is_available() and dist.is_initialized()):
        if process_group is not None:
            raise ValueError(
                "process_group was given but torch.distributed is not initialised: call "
                "torch.distributed.init_process_group first (torchrun sets the environment)"
            )
        return None
    group = dist.group.WORLD if process_group is None else process_group
    return group if dist.get_world_size(group) > 1 else None


def _rank(group) -> int:
    return dist.get_rank(group)


def _collective(group, what: str, fn: Callable[[], Any]) -> Any:
    """Run one collective, turning a failure (a peer gone, the group's timeout) into a
    :class:`DistributedError` that says what was being done."""
    try:
        return fn()
    except (RuntimeError, OSError) as e:
        if isinstance(e, DistributedError):
            raise
        raise DistributedError(
            f"rank {_rank(group)}: the collective of {what} failed -- another rank stopped (its "
            f"own traceback says why) or the process group's timeout passed: {e}"
        ) from e


def exchange(group, what: str, payload: Any = None, error: BaseException | None = None) -> list:
    """Every rank's ``payload`` (in rank order), after agreeing that no rank failed.

    A rank that hit ``error`` sends it instead and re-raises it after the exchange; every other
    rank raises :class:`DistributedError` naming the failed ranks and their messages. One
    ``all_gather_object``. Use it at the end of a phase that every rank runs (setup, a result).
    """
    mine = ("error", f"{type(error).__name__}: {error}") if error is not None else ("ok", payload)
    out: list = [None] * dist.get_world_size(group)
    _collective(group, what, lambda: dist.all_gather_object(out, mine, group=group))
    failed = [(r, msg) for r, (status, msg) in enumerate(out) if status == "error"]
    if error is not None:
        raise error
    if failed:
        who = "; ".join(f"rank {r}: {msg}" for r, msg in failed)
        raise DistributedError(
            f"rank {_rank(group)} stops because another rank failed during {what} ({who})"
        )
    return [p for _, p in out]


def guarded(group, what: str, fn: Callable[[], Any]) -> Any:
    """``fn()`` on every rank, then one :func:`exchange` of its status: returns ``fn()``'s result
    when every rank succeeded, else every rank raises (the failed one its own error)."""
    try:
        result = fn()
    except DistributedError:
        raise  # a collective inside fn failed already: the peers know
    except Exception as e:  # noqa: BLE001 -- every error is forwarded, then re-raised
        exchange(group, what, error=e)
        raise  # pragma: no cover (exchange re-raises e)
    exchange(group, what)
    return result


def all_reduce_checked(group, t: torch.Tensor, what: str, error: BaseException | None) -> None:
    """Sum ``t`` over the ranks in place, with every rank's status as ``R`` extra numbers (rank
    ``r`` writes 1 at place ``r`` when it failed): ``error`` is re-raised here, a failure
    elsewhere raises :class:`DistributedError` naming the ranks."""
    status = t.new_zeros(dist.get_world_size(group))
    status[_rank(group)] = 0.0 if error is None else 1.0
    buf = torch.cat([t.reshape(-1), status])
    _collective(group, what, lambda: dist.all_reduce(buf, group=group))
    if error is not None:
        raise error
    bad = [r for r, f in enumerate(buf[t.numel() :].tolist()) if f > 0]
    if bad:
        raise DistributedError(
            f"rank {_rank(group)} stops: rank(s) {bad} failed during {what} (see their tracebacks)"
        )
    t.copy_(buf[: t.numel()].reshape(t.shape))


def shard_info(group, n_local: int, what: str, extra: Any = None) -> tuple[list[int], list]:
    """Every rank's sample count (rank order) and ``extra``, agreed in one exchange; raises on
    every rank when the whole data is empty."""
    got = exchange(group, what, (int(n_local), extra))
    counts = [c for c, _ in got]
    if sum(counts) == 0:
        raise ValueError(f"{what}: data is empty on every rank; pass at least one sample")
    return counts, [e for _, e in got]


def sharded_sum(
    local: Callable[[torch.Tensor], torch.Tensor] | None,
    dim: int,
    dtype: torch.dtype,
    device: torch.device,
    weight: float,
    group,
    name: str,
    local_mm: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> LinearOperator:
    """The symmetric operator ``v -> sum_r weight_r local_r(v)``: this rank's product ``local``
    (``None`` for an empty shard: it adds zeros) times its ``weight`` (``n_r / N``), summed over
    the ranks by one all-reduce of ``dim + R`` numbers per product (``dim b + R`` for a block; ``R``
    statuses).

    Example: the weights are the shares of the samples; on one process it is ``weight * local``.
        >>> op = sharded_sum(lambda v: 2 * v, 3, torch.float64, torch.device("cpu"), 1.0, None, "A")
        >>> (op @ torch.ones(3, dtype=torch.float64)).tolist()
        [2.0, 2.0, 2.0]
    """

    def combine(fn, v):
        err, out = None, None
        try:
            if fn is not None:
                out = weight * fn(v)
        except Exception as e:  # noqa: BLE001 -- forwarded in the all-reduce, then re-raised
            err = e
        if out is None:
            out = torch.zeros(v.shape, dtype=dtype, device=device)
        if group is None:
            if err is not None:
                raise err
            return out
        out = out.contiguous()
        all_reduce_checked(group, out, f"a product of {name}", err)
        return out

    def mm(V):
        if local_mm is not None or local is None:
            return combine(local_mm, V)
        return combine(lambda W: torch.stack([local(W[:, j]) for j in range(W.shape[1])], 1), V)

    return LinearOperator(lambda v: combine(local, v), dim, dtype, device, matmat=mm, name=name)


def all_gather_rows(
    group, t: torch.Tensor, counts: list[int], what: str, error: BaseException | None = None
) -> torch.Tensor:
    """Concatenate every rank's ``t`` along dim 0, rank 0's first; rank ``r`` holds ``counts[r]``
    rows (unequal sizes: padded to the largest, cut back). One all-gather, carrying this rank's
    status as one extra number: ``error`` (this rank failed; ``t`` is ignored) is re-raised after
    it, a failure elsewhere raises :class:`DistributedError`."""
    if group is None:
        if error is not None:
            raise error
        return t
    width, row = max(counts), t.shape[1:]
    flat = t.new_zeros(width * math.prod(row) + 1)
    if error is None:
        flat[: t.numel()] = t.reshape(-1)
    else:
        flat[-1] = 1.0
    parts = [torch.empty_like(flat) for _ in counts]
    _collective(group, what, lambda: dist.all_gather(parts, flat, group=group))
    if error is not None:
        raise error
    bad = [r for r, part in enumerate(parts) if float(part[-1]) > 0]
    if bad:
        raise DistributedError(
            f"rank {_rank(group)} stops: rank(s) {bad} failed during {what} (see their tracebacks)"
        )
    return torch.cat(
        [p[: c * math.prod(row)].reshape(c, *row) for p, c in zip(parts, counts, strict=True)]
    )


def replicated_generator(
    generator: torch.Generator | None,
    seed: int | None,
    device: torch.device,
    group,
    what: str,
) -> torch.Generator:
    """:func:`~spectral_lab._random.resolve_generator`, checked to be in the same state on every
    rank (so every rank draws the same start and probe vectors): a ``seed`` (default 0) always is;
    a ``generator`` seeded differently on some rank raises ``ValueError`` on every rank."""
    from .._random import resolve_generator

    g = resolve_generator(generator, seed, device)
    if group is None or generator is None:
        return g
    digest = hashlib.sha1(g.get_state().cpu().numpy().tobytes()).hexdigest()
    states = exchange(group, what, digest)
    if len(set(states)) > 1:
        raise ValueError(
            f"{what}: generator= is in a different state on some ranks, so they would draw "
            "different random vectors; seed it identically on every rank, or pass seed="
        )
    return g


class _Unpadded:
    """A ``DataLoader`` over a padded ``DistributedSampler`` cut to this rank's own samples."""

    def __init__(self, loader: DataLoader, n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self):
        seen = 0
        for batch in self.loader:
            if seen >= self.n:
                break
            x, *rest = batch if isinstance(batch, (tuple, list)) else (batch,)
            take = min(len(x), self.n - seen)
            seen += take
            yield (x[:take], *(r[:take] for r in rest))


def unpadded(data: Any) -> Any:
    """``data`` without the samples a ``DistributedSampler`` repeats to even out the shards.

    With ``drop_last=False`` (its default) the sampler pads the index list with repeats of its
    first ``R - N mod R`` entries, so some ranks see one sample twice; each rank ``r`` owns the
    first ``len(range(r, N, R))`` samples it is given, and the rest are cut here, so the sum over
    ranks is over the ``N`` samples exactly once. Any other ``data`` is returned as it is. With
    ``drop_last=True`` the sampler itself leaves samples out (that is the user's choice). Cost:
    none (the batches are cut as they stream).

    Example: 5 samples on 2 ranks; rank 1 is given sample 0 again, and it is cut.
        >>> from torch.utils.data import TensorDataset
        >>> ds = TensorDataset(torch.arange(5.0))
        >>> s = DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
        >>> [b[0].tolist() for b in DataLoader(ds, batch_size=2, sampler=s)]
        [[1.0, 3.0], [0.0]]
        >>> [b[0].tolist() for b in unpadded(DataLoader(ds, batch_size=2, sampler=s))]
        [[1.0, 3.0]]
    """
    if isinstance(data, DataLoader) and isinstance(data.sampler, DistributedSampler):
        s = data.sampler
        if not s.drop_last:
            n_total = len(s.dataset)  # type: ignore[arg-type]
            return _Unpadded(data, len(range(s.rank, n_total, s.num_replicas)))
    return data


def local_count(data: Any) -> int | None:
    """Samples in in-memory ``data`` (``0`` for an empty tensor pair), or ``None`` (streamed)."""
    if isinstance(data, torch.Tensor):
        return len(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return len(data[0])
    return None


_LOCAL = contextvars.ContextVar("spectral_lab_distributed_local", default=False)


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Inside it, ``process_group=None`` means a single process: for work that every rank runs
    replicated on the same data (the profile's curvature phases on the gathered samples)."""
    token = _LOCAL.set(True)
    try:
        yield
    finally:
        _LOCAL.reset(token)


def on_every_rank(what: str) -> Callable:
    """Decorate a public call taking ``process_group=``: the group is resolved once and passed on,
    and an error on this rank is sent to the others (one :func:`exchange`, matched by the next
    object collective they run: that call's own exchanges) before it is re-raised, so every rank
    raises instead of waiting. Single-process calls run as they are."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            group = resolve_group(kwargs.get("process_group"))
            if group is None:
                kwargs["process_group"] = False
                return fn(*args, **kwargs)
            kwargs["process_group"] = group
            token = _LOCAL.set(False)  # reset below even if fn left a local_only() open
            try:
                return fn(*args, **kwargs)
            except DistributedError:
                raise
            except Exception as e:  # noqa: BLE001 -- forwarded to the other ranks, then re-raised
                exchange(group, what, error=e)
                raise  # pragma: no cover (exchange re-raises e)
            finally:
                _LOCAL.reset(token)

        return wrapped

    return deco
