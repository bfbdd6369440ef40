"""Curvature and NTK products over data sharded across processes (``torch.distributed``).

The Hessian, Gauss--Newton and NTK products are sums over samples, so each process (a *rank*)
computes its shard's part and one collective combines them; the solvers (Lanczos, power iteration,
Hutchinson/Hutch++, SLQ) then run **replicated**: every rank holds the same Krylov state, draws the
same random vectors (the same seed) and receives the same combined product, so every rank returns
the same result.

* **Parameter-space products** (Hessian, GGN): the loss is the mean over the *whole* data,
  ``L = (1/N) sum_i l_i`` with ``N = sum_r n_r``, so ``H v = sum_r (n_r / N) H_r v`` where ``H_r``
  is the Hessian of the mean loss over shard ``r``. Each rank weights its partial product by its
  share ``n_r / N`` and one all-reduce (sum) of ``p`` numbers gives ``H v`` on every rank. Unequal
  shards and a partial last batch are exact (within a shard, batches are weighted by their sizes
  already); nothing is dropped or padded.
* **Sample-indexed products** (the NTK ``K = J J^T`` on the concatenated inputs, rank 0's shard
  first): the vector ``v`` lives on the ``N`` (or ``N C``) samples; rank ``r`` forms
  ``J_r^T v_r`` from its slice, one all-reduce of ``p`` numbers gives ``J^T v``, the rank applies
  ``J_r`` to it and an all-gather of the slices (of unequal sizes: padded to the largest, cut
  back) assembles ``K v``.

**Which group.** ``process_group=None`` (the default everywhere) means: the default group when
``torch.distributed`` is initialised with more than one process, else a single process (no
collective at all). Pass a ``ProcessGroup`` to use a sub-group, or ``process_group=False`` to
compute on this rank's data alone even when ``torch.distributed`` is initialised.

**Failure policy: an error, never a hang.** Each call agrees on its setup with one exchange of a
status (and the shard sizes) between the ranks, and every product carries one extra number, the
rank's status, inside its all-reduce. A rank that raises still takes part in that collective and
then re-raises its own error; every other rank raises :class:`DistributedError` naming the rank
and its message. A rank that dies outright (killed, out of memory) is caught by the process
group's own ``timeout=`` (set it in ``init_process_group(..., timeout=timedelta(seconds=...))``;
``torchrun``'s default is 30 minutes): the collective fails and :class:`DistributedError` says
so. Cost model of one product: the shard's own products (``n_r / N`` of the single-process time)
plus one all-reduce of ``p + R`` numbers (``R`` rank statuses; NTK: plus an all-gather of ``N``
or ``N C`` numbers).

Run it with ``torchrun --nproc_per_node 2 your_script.py`` (each process builds its shard and
calls e.g. ``hessian_eigs(model, shard, loss="mse")``), or ``spectral-lab diagnose`` under
``torchrun`` (one report, written by rank 0).

One idea per file: ``_comm`` (the group, status exchange, checked all-reduce, all-gather of
unequal slices, replicated generator), ``_ntk`` (the NTK on sharded inputs) and ``_profile`` (the
profile's per-sample statistics and curvature phases across ranks). The Hessian's sharded operator
lives beside the Hessian (:func:`~spectral_lab.hessian.hessian_operator`).

Example: without an initialised process group everything is single-process.
    >>> import spectral_lab.distributed as sd
    >>> sd.resolve_group() is None
    True
"""

from __future__ import annotations

from ._comm import (
    DistributedError,
    all_gather_rows,
    all_reduce_checked,
    exchange,
    guarded,
    local_count,
    local_only,
    on_every_rank,
    replicated_generator,
    resolve_group,
    shard_info,
    sharded_sum,
    unpadded,
)

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
