"""The monitor's probe sharded across the ranks of a process group (``DistributedDataParallel``).

Each rank holds its shard of the probe; every quantity is that of the *concatenated* probe (rank
0's shard first), so a two-rank monitor records what one process records on the whole probe:

* the seeded subsets (``probe_size``, the NTK's and the input Jacobian's samples) are drawn from
  ``randperm(N, seed)`` over the ``N = sum_r n_r`` concatenated indices, as one process draws
  them; each rank keeps the indices in its range;
* the NTK's (few) samples are gathered once (one ``all_gather_object``) and its Gram is computed
  **replicated** on every rank: exact, and simplest (``num_ntk_samples`` is small);
* the input Jacobians are computed on each rank's own samples and their per-sample singular values
  gathered (one ``all_gather_object`` per measurement), in the single-process order;
* the probe loss is ``sum_r n_r L_r / N``, gathered with a digest of each rank's parameters: ranks
  whose weights differ (a model not wrapped in DDP) are refused on every rank.

The Hessian is the distributed operator (:func:`~spectral_lab.hessian.hessian_operator` with
``process_group=``); layer statistics are read from the replicated weights. Cost per measurement:
the shard's share of the Hessian products (one all-reduce of ``p`` numbers each), the whole NTK
Gram on every rank, this rank's Jacobians, and three small object exchanges.

Example: without a process group there is nothing to shard.
    >>> import spectral_lab.distributed as sd
    >>> sd.resolve_group(None) is None
    True
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.distributed as dist

from .._random import resolve_generator
from ..distributed import exchange


class ShardedProbe:
    """This rank's part of the concatenated probe and the gathered NTK samples.

    ``x, y``: this rank's kept samples (``probe_size`` applied over the concatenated probe);
    ``x_ntk``: the NTK's samples of the whole probe (every rank), in the single-process order;
    ``jac_order`` and ``x_jac``: the input Jacobian's global indices and this rank's samples among
    them. Built once, with two exchanges."""

    def __init__(
        self,
        group: Any,
        x: torch.Tensor,
        y: torch.Tensor,
        seed: int,
        probe_size: int | None,
        num_ntk: int,
        num_jac: int,
    ) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        counts = exchange(group, "SpectralMonitor (probe shard sizes)", len(x))
        self.counts = counts
        lo, n = sum(counts[: self.rank]), counts[self.rank]
        order = torch.randperm(sum(counts), generator=resolve_generator(seed=seed)).tolist()
        sel = order if probe_size is None else order[:probe_size]

        def mine(idx: list[int]) -> list[int]:
            return [i for i in idx if lo <= i < lo + n]

        keep = torch.tensor([i - lo for i in sorted(mine(sel))], dtype=torch.long)
        self.x, self.y = x[keep], y[keep]
        self.ntk_order, self.jac_order = sel[:num_ntk], sel[:num_jac]
        local_ntk = mine(self.ntk_order)
        rows = x[torch.tensor([i - lo for i in local_ntk], dtype=torch.long)].cpu()
        got = exchange(group, "SpectralMonitor (NTK samples)", (local_ntk, rows))
        self.x_ntk = _in_order(self.ntk_order, got)
        self.jac_local = mine(self.jac_order)
        self.x_jac = x[torch.tensor([i - lo for i in self.jac_local], dtype=torch.long)]

    def gather_jacobian(self, s: torch.Tensor | None, error: BaseException | None):
        """Every rank's per-sample singular values (``s``: this rank's, rows in
        ``jac_local`` order), stacked in the single-process order."""
        payload = (self.jac_local, None if s is None else s.cpu())
        got = exchange(self.group, "SpectralMonitor (input Jacobians)", payload, error=error)
        return _in_order(self.jac_order, [(i, t) for i, t in got if i])


def _in_order(order: list[int], parts: list) -> torch.Tensor:
    """Rows from ``(global indices, rows)`` parts, stacked in the order of ``order``."""
    at = {}
    for idx, rows in parts:
        for i, row in zip(idx, rows, strict=True):
            at[i] = row
    return torch.stack([at[i] for i in order])


def param_digest(params) -> str:
    """A digest of the parameters' bytes: equal on every rank iff the weights are replicated."""
    h = hashlib.sha1()
    for p in params:
        h.update(p.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def combine_losses(group, n: int, probe_loss_sum: float, loss, digest: str):
    """``(probe loss of the concatenated probe, mean of the given training losses or None)``,
    the same on every rank (summed in rank order); raises ``ValueError`` on every rank when the
    ranks' parameters differ."""
    got = exchange(group, "SpectralMonitor (probe loss)", (n, probe_loss_sum, loss, digest))
    if len({d for *_, d in got}) > 1:
        raise ValueError(
            "SpectralMonitor under torch.distributed: the model's parameters differ between "
            "ranks, so there is no one model to measure; wrap it in "
            "torch.nn.parallel.DistributedDataParallel (which keeps them equal), or pass "
            "process_group=False to measure each rank's model on its own probe"
        )
    total = sum(c for c, *_ in got)
    probe_loss = sum(s for _, s, *_ in got) / total
    losses = [lo for _, _, lo, _ in got if lo is not None]
    return probe_loss, (sum(losses) / len(losses) if losses else None)
