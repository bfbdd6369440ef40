"""The profile (:func:`~spectral_lab.stability_profile`, :func:`~spectral_lab.diagnose`) over data
sharded across ranks: the per-sample sketches of every rank merged (exactly while exact), the curvature
phases on the first samples of the concatenation, one result on every rank."""

from __future__ import annotations

import functools
from typing import Any

import torch

from ..quantiles import QuantileSketch
from ._comm import all_reduce_checked, exchange


def gather_sketches(
    group,
    sketches: dict[str, QuantileSketch],
    keep_x: list[torch.Tensor],
    keep_y: list[torch.Tensor],
    n_keep: int,
    labels_given: bool,
) -> tuple[dict[str, QuantileSketch], list[torch.Tensor], list[torch.Tensor], bool]:
    """Every rank's per-sample sketches merged in rank order (:meth:`QuantileSketch.merge`: while
    each holds every value, the merge is the concatenation, rank 0's first, so quantiles and means
    are those of the whole data exactly), and the first ``n_keep`` samples of the concatenated
    data (rank 0's shard first) for the curvature phases: each rank kept at most ``n_keep`` of its
    own, so they are among them. One ``all_gather_object`` of the sketches' ``state()`` (``O(N)``
    numbers while exact, bounded after) and ``n_keep`` inputs per rank."""
    dev = keep_x[0].device if keep_x else None
    mine = (
        {k: v.state() for k, v in sketches.items()},
        torch.cat(keep_x).cpu() if keep_x else None,
        torch.cat(keep_y).cpu() if keep_y else None,
        labels_given,
    )
    got = exchange(group, "the profile's per-sample statistics", mine)
    merged = {
        k: functools.reduce(
            lambda a, b: a.merge(b), [QuantileSketch.from_state(g[0][k]) for g in got]
        )
        for k in sketches
    }
    xs = [g[1] for g in got if g[1] is not None]
    ys = [g[2] for g in got if g[2] is not None]
    if not xs:
        return merged, [], [], all(g[3] for g in got)
    dev = dev if dev is not None else xs[0].device
    x = torch.cat(xs)[:n_keep].to(dev)
    y = torch.cat(ys)[:n_keep].to(dev)
    return merged, [x], [y], all(g[3] for g in got)


def agreed(group, result: Any) -> Any:
    """Rank 0's ``result`` on every rank (one ``all_gather_object``): the curvature phases run
    replicated on the same samples, so the ranks agree already unless a time budget cut them at
    different points; the profile returned is the same everywhere either way."""
    if group is None:
        return result
    return exchange(group, "the profile's result", result)[0]


def sum_over_ranks(group, *values: float | torch.Tensor | None) -> tuple:
    """Each value (a number, a tensor, or ``None`` on every rank) summed over the ranks, in one
    checked all-reduce of float64 numbers: the sums behind a report's loss and accuracy."""
    if group is None:
        return values
    parts = [
        torch.as_tensor(v, dtype=torch.float64).reshape(-1).cpu() for v in values if v is not None
    ]
    flat = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
    all_reduce_checked(group, flat, "the report's loss and accuracy", None)
    out, i = [], 0
    for v in values:
        if v is None:
            out.append(None)
            continue
        k = torch.as_tensor(v).numel()
        chunk = flat[i : i + k]
        i += k
        out.append(chunk.reshape(v.shape).to(v) if isinstance(v, torch.Tensor) else float(chunk[0]))
    return tuple(out)
