"""``hessian_eigs`` over sharded data: 2 processes x 1 thread against 1 process x 2 threads.

Run: ``python benchmarks/bench_distributed.py [--n 4096] [--width 256] [--steps 30]``

The same model and data; the single process runs with ``torch.set_num_threads(2)`` on all of it,
the two gloo processes (``torch.multiprocessing`` spawn) with one thread each on 2 unequal
shards (the first ``n // 2 + 1`` samples and the rest). Lanczos runs a fixed ``--steps``
products (``tol`` below reach, so both do the same work). Printed: the wall times of the
``hessian_eigs`` call (best of ``--repeats``; 1 process x 1 thread too, as a check), their
ratio (goal <= 1.2), the share of the
distributed time spent inside the collectives (all-reduce of the ``p + R`` numbers per product,
waiting for the slower rank included), the top eigenvalues of both (they agree to rounding), and
the load average of the machine (the figures only mean something on idle cores).
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import spectral_lab as sl


def _problem(n: int, width: int):
    torch.manual_seed(0)
    model = sl.MLP(64, 10, width=width, depth=3, activation="tanh").double()
    x = torch.randn(n, 64, dtype=torch.float64)
    y = torch.randint(0, 10, (n,))
    return model, x, y


def _eigs(model, data, steps: int, group):
    return sl.hessian_eigs(
        model, data, loss="cross_entropy", k=1, tol=1e-300, max_iter=steps, process_group=group
    )


def _worker(rank: int, port: int, args, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
        timeout=timedelta(seconds=600),
    )  # fmt: skip
    model, x, y = _problem(args.n, args.width)
    cut = args.n // 2 + 1
    shard = (x[:cut], y[:cut]) if rank == 0 else (x[cut:], y[cut:])
    spent = [0.0]
    inner = dist.all_reduce

    def timed_all_reduce(*a, **k):  # the communication share: time inside the collectives
        t = time.perf_counter()
        try:
            return inner(*a, **k)
        finally:
            spent[0] += time.perf_counter() - t

    dist.all_reduce = timed_all_reduce
    best = None
    for _ in range(args.repeats):
        dist.barrier()
        spent[0] = 0.0
        t = time.perf_counter()
        r = _eigs(model, shard, args.steps, None)
        wall = time.perf_counter() - t
        if best is None or wall < best[0]:
            best = (wall, spent[0], float(r.eigenvalues[0]), int(r.matvecs))
    torch.save(best, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="samples in the loss")
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30, help="Lanczos products (fixed)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("SPECTRAL_LAB_HEADLESS", "1")
    model, x, y = _problem(args.n, args.width)
    p = sum(q.numel() for q in model.parameters())
    print(f"MLP 64-{args.width}x3-10 tanh, p = {p}, n = {args.n}, float64, {args.steps} HVPs")
    print(f"load average before: {os.getloadavg()}")

    single = {}
    for threads in (1, 2):  # 1 x 1: what one core does alone (a check on the 1 x 2 figure)
        torch.set_num_threads(threads)
        one = None
        for _ in range(args.repeats):
            t = time.perf_counter()
            r1 = _eigs(model, (x, y), args.steps, False)
            wall = time.perf_counter() - t
            one = wall if one is None else min(one, wall)
        lam, single[threads] = float(r1.eigenvalues[0]), one
        print(f"1 process x {threads} thread(s): {one:.2f} s, lambda_max = {lam:.10g}")

    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(
            _worker, args=(_free_port(), args, out), nprocs=2, join=True, start_method="spawn"
        )
        ranks = [torch.load(Path(out) / f"rank{r}.pt") for r in range(2)]
    wall = max(w for w, *_ in ranks)
    comm = max(c for _, c, *_ in ranks)
    print(
        f"2 processes x 1 thread: {wall:.2f} s, lambda_max = {ranks[0][2]:.10g} "
        f"(rank 1: {ranks[1][2]:.10g}), {ranks[0][3]} HVPs"
    )
    print(f"ratio (2 x 1) / (1 x 2): {wall / single[2]:.2f}  (goal <= 1.2)")
    print(f"ratio (2 x 1) / (1 x 1): {wall / single[1]:.2f}  (2 ideal cores: 0.5)")
    print(f"communication share (time inside all-reduce, waits included): {comm / wall:.1%}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
