"""The training monitor under ``DistributedDataParallel``: two gloo processes (spawn, a free port,
a timeout), each holding its shard of the probe (5 and 3 samples), against one process on the
concatenated probe, in float64 to 1e-10 for every key of every record (the seconds aside).

The model is trained by DDP with Adam on per-rank minibatches of equal size, which is one process
training on their concatenation; the monitor measures at steps 0, 1 and 2 (the preconditioned
sharpness and the NTK drift from step 1 on). Also: every rank gets the same history, only rank 0
writes to the writer; an empty kept shard (``probe_size=1``) adds nothing; weights that differ
between ranks are refused on every rank. One spawn, about 12 s on two CPU cores."""

from __future__ import annotations

import math
import os
import socket
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import spectral_lab as sl
from spectral_lab.monitor import SpectralMonitor

SHARDS = (5, 3)  # the probe's shards: unequal
BATCH = 4  # each rank's training minibatch (equal: DDP's mean of means is the mean)
TIMEOUT = 20  # seconds: the process group's timeout= and the test's own wait
OPTIONS = {"every": 1, "tol": 1e-12, "max_iter": 200, "probe_size": 7, "num_ntk_samples": 5,
           "num_jacobian_samples": 4, "seed": 1}  # fmt: skip


def _setup():
    torch.manual_seed(0)
    m = sl.MLP(3, 3, width=6, depth=2).double()
    probe = (torch.randn(sum(SHARDS), 3, dtype=torch.float64), torch.randint(0, 3, (8,)))
    train = (torch.randn(3, 2 * BATCH, 3, dtype=torch.float64), torch.randint(0, 3, (3, 2 * BATCH)))
    return m, probe, train


class _Writer:
    """Counts what a ``SummaryWriter`` would be asked to log."""

    def __init__(self) -> None:
        self.calls = 0

    def add_scalar(self, *args, **kwargs) -> None:
        self.calls += 1

    def add_histogram(self, *args, **kwargs) -> None:
        self.calls += 1

    def flush(self) -> None:
        pass


def _run(model, train_model, probe, train, part) -> tuple[list[dict], int]:
    """Two steps of Adam with the monitor (steps 0, 1), then one more measurement (step 2);
    ``part(batch)`` is this process's part of a training batch."""
    writer = _Writer()
    mon = SpectralMonitor(probe, writer=writer, **OPTIONS)
    opt = torch.optim.Adam(train_model.parameters(), lr=1e-2)
    for t in range(2):
        xb, yb = part(train[0][t]), part(train[1][t])
        loss = torch.nn.functional.cross_entropy(train_model(xb), yb)
        mon.step(train_model, opt, loss=loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    mon.measure(train_model, opt)
    return mon.history, writer.calls


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    try:
        torch.distributed.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
            timeout=timedelta(seconds=TIMEOUT),
        )  # fmt: skip
        m, (x, y), train = _setup()
        lo = sum(SHARDS[:rank])
        shard = (x[lo : lo + SHARDS[rank]], y[lo : lo + SHARDS[rank]])
        ddp = torch.nn.parallel.DistributedDataParallel(m)
        # probe_size=1 (before training): one rank keeps no probe sample, and adds nothing
        one = SpectralMonitor(shard, **dict(OPTIONS, probe_size=1)).measure(ddp)
        history, calls = _run(m, ddp, shard, train, lambda b: b[rank * BATCH : (rank + 1) * BATCH])
        result = {"history": history, "writer_calls": calls, "one_sample": one}
        # weights that differ between ranks (no DDP): refused on every rank, no hang
        plain = sl.MLP(3, 3, width=6, depth=2).double()
        with torch.no_grad():
            plain.layers[1].weight.add_(rank)
        try:
            SpectralMonitor(shard, quantities=("layers",)).measure(plain)
            result["differ"] = "no error"
        except ValueError as e:
            result["differ"] = str(e)
    except BaseException:  # noqa: BLE001 -- reported to the test
        result = {"error": traceback.format_exc()}
    torch.save(result, Path(out) / f"rank{rank}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("monitor_ranks")
    ctx = mp.start_processes(
        _worker, args=(_free_port(), str(out)), nprocs=2, join=False, start_method="spawn"
    )
    for p in ctx.processes:
        p.join(TIMEOUT * 2 + 60)
    alive = [p for p in ctx.processes if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, f"a rank hung for {TIMEOUT * 2 + 60} s"
    results = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r, res in enumerate(results):
        assert "error" not in res, f"rank {r}: {res['error']}"
    return results


@pytest.fixture(scope="module")
def one_process() -> list[dict]:
    m, probe, train = _setup()
    history, _ = _run(m, m, probe, train, lambda b: b)
    return history


def test_an_empty_kept_shard_adds_nothing(two_ranks):
    m, probe, _ = _setup()
    ref = SpectralMonitor(probe, **dict(OPTIONS, probe_size=1)).measure(m)
    for r in (0, 1):
        got = two_ranks[r]["one_sample"]
        bad = {k: (got[k], ref[k]) for k in ref if "seconds" not in k and not _same(got[k], ref[k])}
        assert not bad, (r, bad)


def test_weights_that_differ_between_ranks_are_refused_on_every_rank(two_ranks):
    for r in (0, 1):
        assert "DistributedDataParallel" in two_ranks[r]["differ"], two_ranks[r]["differ"]


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-10, abs_tol=1e-10)
    return a == b


@pytest.mark.parametrize("rank", [0, 1])
def test_every_record_equals_one_process_on_the_concatenated_probe(two_ranks, one_process, rank):
    got = two_ranks[rank]["history"]
    assert [h["step"] for h in got] == [0, 1, 2]
    assert "preconditioned_sharpness" in got[-1] and got[-1]["ntk_drift"] > 0
    for g, ref in zip(got, one_process, strict=True):
        keys = {k for k in ref if not k.startswith("seconds")}
        assert keys == {k for k in g if not k.startswith("seconds")}
        bad = {k: (g[k], ref[k]) for k in sorted(keys) if not _same(g[k], ref[k])}
        assert not bad, (rank, g["step"], bad)


def test_every_rank_has_the_same_history_and_only_rank_0_writes(two_ranks):
    h0, h1 = (r["history"] for r in two_ranks)
    for a, b in zip(h0, h1, strict=True):
        a = {k: v for k, v in a.items() if not k.startswith("seconds")}
        b = {k: v for k, v in b.items() if not k.startswith("seconds")}
        assert a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    assert two_ranks[0]["writer_calls"] > 0 and two_ranks[1]["writer_calls"] == 0


def test_without_a_process_group_nothing_is_sharded():
    assert os.environ.get("RANK") is None or not torch.distributed.is_initialized()
    m, probe, _ = _setup()
    mon = SpectralMonitor(probe, process_group=False, quantities=("layers",))
    mon.measure(m)
    assert mon._group is None and mon.rank == 0 and len(mon.probe[0]) == len(probe[0])
