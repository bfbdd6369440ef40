"""Running a command under ``torchrun``: the process group from its environment, and a
contiguous shard of in-memory data per rank."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def torchrun_world() -> int:
    """The number of processes ``torchrun`` started (``WORLD_SIZE``; 1 outside it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str, timeout: float) -> tuple[int, int, str]:
    """Initialise the default process group from ``torchrun``'s environment (``gloo`` on CPU,
    ``nccl`` on CUDA, with ``timeout`` seconds on every collective) unless it already is;
    returns ``(rank, world size, device)``, the device ``cuda:LOCAL_RANK`` on CUDA."""
    if device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.startswith("cuda") else "gloo", timeout=timedelta(seconds=timeout)
        )
    return dist.get_rank(), dist.get_world_size(), device


def contiguous_shard(x: torch.Tensor, y, rank: int, world: int, limit: int | None = None):
    """Rank ``rank``'s contiguous block of the first ``limit`` samples (all by default): sizes
    differ by at most one (the first ``N mod R`` ranks take one more), and the concatenation in
    rank order is the data itself, so a sharded run equals the single-process run on it.

    Example:
        >>> x = torch.arange(7.0)
        >>> [contiguous_shard(x, None, r, 3)[0].tolist() for r in range(3)]
        [[0.0, 1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    """
    n = len(x) if limit is None else min(limit, len(x))
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    hi = lo + base + (1 if rank < extra else 0)
    return x[lo:hi], (None if y is None else y[lo:hi])
