"""Two gloo processes (``torch.multiprocessing`` spawn, a free port, a timeout) against one process
on the concatenated data: Hessian and Gauss--Newton eigenvalues, Hutch++ trace, NTK eigenvalues and
the profile of ``diagnose``, in float64 to 1e-10, on unequal shards (7 and 4 samples) with a
partial last batch; every rank returns the same result; a rank that fails makes the other raise a
clear error within the timeout. Each worker run is one spawn (about 5 s on two CPU cores)."""

from __future__ import annotations

import os
import socket
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import spectral_lab as sl
import spectral_lab.distributed as sd
from spectral_lab.hessian import hessian_operator

SHARDS = (7, 4)  # unequal; with batch_size=3 both shards end on a partial batch
BATCH = 3
TIMEOUT = 20  # seconds: the process group's timeout= and the test's own wait


def _model_and_data():
    torch.manual_seed(0)
    m = sl.MLP(3, 3, width=6, depth=2).double()
    x = torch.randn(sum(SHARDS), 3, dtype=torch.float64)
    y = torch.randint(0, 3, (sum(SHARDS),))
    return m, x, y


def _shard(x, y, rank):
    lo = sum(SHARDS[:rank])
    return x[lo : lo + SHARDS[rank]], y[lo : lo + SHARDS[rank]]


def _quantities(m, data, x, group):
    """Everything compared, computed by the public calls (``group=False``: one process)."""
    pg = {"process_group": group}
    report = sl.diagnose(
        m, data, progress=False, batch_size=BATCH, max_samples=None, num_ntk_samples=9,
        num_hessian_samples=8, **pg,
    )  # fmt: skip
    prof = report.profile
    return {
        "hessian_top3": sl.hessian_eigs(
            m, data, loss="cross_entropy", k=3, tol=1e-12, batch_size=BATCH, **pg
        ).eigenvalues,  # fmt: skip
        "gn_top": sl.hessian_eigs(
            m, data, loss="cross_entropy", which="gn", tol=1e-12, batch_size=BATCH, **pg
        ).eigenvalues,  # fmt: skip
        "trace": torch.tensor(
            float(
                sl.hessian_trace(
                    m, data, loss="cross_entropy", seed=5, num_matvecs=30, batch_size=BATCH, **pg
                )
            )
        ),  # fmt: skip
        "ntk_top3": sl.ntk_eigs(m, x, k=3, **pg).eigenvalues,
        "ntk_block_lanczos": sl.ntk_eigs(
            m, x, k=3, kind="block", method="lanczos", tol=1e-12, **pg
        ).eigenvalues,  # fmt: skip
        "profile": torch.tensor(
            [
                prof.jac_top,
                prof.jac_fro,
                prof.jac_entropy,
                prof.param_top,
                prof.ntk_top,
                prof.ntk_min,
                prof.hess_top,
                prof.n,
                prof.n_ntk,
                prof.n_hess,
            ],
            dtype=torch.float64,
        ),  # fmt: skip
        "report_metrics": torch.tensor([report.data["loss"], report.data["accuracy"]]),
        "profile_samples": torch.cat([prof.samples[k] for k in sorted(prof.samples)]),
    }


class _Boom(torch.nn.Module):
    """A model whose forward raises on its 3rd call once armed (a rank running out of memory)."""

    def __init__(self, m):
        super().__init__()
        self.m, self.armed, self.calls = m, False, 0

    def forward(self, x):
        if self.armed:
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("out of memory on rank 1 (simulated)")
        return self.m(x)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = ("equal", "fail_setup", "fail_product", "fail_profile", "die")


def _case(case: str, rank: int, m, xs, ys):
    if case == "equal":
        out = _quantities(m, (xs, ys), xs, None)
        # a DataLoader over a DistributedSampler: interleaved shards of 6 and 5 samples, padded
        # to 6 + 6 by the sampler (rank 1 sees sample 0 twice: the repeat must be cut)
        _, x, y = _model_and_data()
        sampler = DistributedSampler(TensorDataset(x, y), shuffle=False)
        loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, sampler=sampler)
        out["sampler_hessian_top3"] = sl.hessian_eigs(
            m, loader, loss="cross_entropy", k=3, tol=1e-12
        ).eigenvalues
        return out
    if case == "fail_setup":  # rank 1's shard has a NaN: it raises in the setup
        if rank == 1:
            xs = xs.clone()
            xs[0, 0] = float("nan")
        return {"top": sl.hessian_eigs(m, (xs, ys), loss="cross_entropy").eigenvalues}
    if case == "fail_product":  # rank 1 raises inside a product, mid-Lanczos
        boom = _Boom(m)
        op = hessian_operator(boom, (xs, ys), loss="cross_entropy", memory_budget=0)
        boom.armed = rank == 1
        return {"top": sl.linalg.lanczos(op, 1).eigenvalues}
    if case == "fail_profile":  # rank 1's shard is refused by the profile's checks
        if rank == 1:
            ys = ys.clone()
            ys[0] = 99  # a label out of range
        return {"p": torch.tensor(sl.stability_profile(m, (xs, ys), progress=False).jac_top)}
    if rank == 1:  # "die": rank 1 dies without a word; rank 0 must not hang
        os._exit(3)
    return {"top": sl.hessian_eigs(m, (xs, ys), loss="cross_entropy").eigenvalues}


def _worker(rank: int, port: int, out: str) -> None:
    """Every case in turn on one process group (a failure handled by the status exchange leaves
    the group usable); each case's result or error is saved as soon as it is known."""
    torch.set_num_threads(1)
    os.environ["SPECTRAL_LAB_HEADLESS"] = "1"
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
        timeout=timedelta(seconds=TIMEOUT),
    )  # fmt: skip
    m, x, y = _model_and_data()
    xs, ys = _shard(x, y, rank)
    results: dict = {}
    for case in CASES:
        try:
            results[case] = {"ok": _case(case, rank, m, xs, ys)}
        except BaseException as e:  # noqa: BLE001 -- reported to the test
            results[case] = {"error": type(e).__name__, "message": str(e),
                             "tb": traceback.format_exc()}  # fmt: skip
        torch.save(results, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    """One spawn of two gloo processes running every case; ``[rank0, rank1]`` results."""
    out = tmp_path_factory.mktemp("ranks")
    ctx = mp.start_processes(
        _worker, args=(_free_port(), str(out)), nprocs=2, join=False, start_method="spawn"
    )
    for p in ctx.processes:
        p.join(TIMEOUT * 2 + 60)
    alive = [p for p in ctx.processes if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, f"a rank hung for {TIMEOUT * 2 + 60} s"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def one_process():
    m, x, y = _model_and_data()
    out = _quantities(m, (x, y), x, False)
    out["sampler_hessian_top3"] = out["hessian_top3"]
    return out


@pytest.mark.parametrize(
    "key",
    ["hessian_top3", "gn_top", "trace", "ntk_top3", "ntk_block_lanczos", "profile",
     "report_metrics", "profile_samples", "sampler_hessian_top3"],
)  # fmt: skip
def test_two_ranks_equal_one_process_on_the_concatenated_data(two_ranks, one_process, key):
    for r, got in enumerate(ranks["equal"] for ranks in two_ranks):
        assert "ok" in got, f"rank {r}: {got.get('tb')}"
        a, b = got["ok"][key], one_process[key]
        assert a.shape == b.shape, key
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10), (key, r, a, b)


def test_every_rank_returns_the_same_result(two_ranks):
    r0, r1 = (ranks["equal"]["ok"] for ranks in two_ranks)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key


def test_the_shares_matter_unweighted_average_is_caught(one_process):
    """The single-process check is independent of the weights; the 7/4 split makes the
    unweighted average (1/2 each) of the shard Hessians differ from the whole data's."""
    m, x, y = _model_and_data()
    ops = [hessian_operator(m, _shard(x, y, r), loss="cross_entropy", batch_size=BATCH) for r in (0, 1)]  # fmt: skip
    v = torch.randn(ops[0].dim, dtype=torch.float64)
    whole = hessian_operator(m, (x, y), loss="cross_entropy", batch_size=BATCH) @ v
    weighted = sum(n / sum(SHARDS) * (op @ v) for n, op in zip(SHARDS, ops, strict=True))
    unweighted = sum(0.5 * (op @ v) for op in ops)
    assert torch.allclose(weighted, whole, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(unweighted, whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", ["fail_setup", "fail_product", "fail_profile", "die"])
def test_a_failing_rank_makes_every_rank_raise(case, two_ranks):
    r0, r1 = (ranks.get(case, {"error": "died"}) for ranks in two_ranks)
    assert r0.get("error") == "DistributedError", r0
    if case == "die":
        assert "timeout" in r0["message"] or "another rank" in r0["message"], r0["message"]
        return
    assert "rank 1" in r0["message"] or "rank(s) [1]" in r0["message"], r0["message"]
    assert r1.get("error") in ("ValueError", "RuntimeError"), r1
    if case != "fail_product":  # the other rank names the failed rank's own message
        assert r1["message"].split("\n")[0][:30] in r0["message"], (r0, r1)


def test_resolve_group_without_torch_distributed():
    assert sd.resolve_group() is None and sd.resolve_group(False) is None
    with pytest.raises(ValueError, match="init_process_group"):
        sd.resolve_group(object())


def test_distributed_sampler_padding_is_cut():
    """A DistributedSampler pads 11 samples on 2 ranks to 12 (rank 1 sees sample 0 twice): the
    rank's own samples are the first len(range(r, N, R))."""
    ds = TensorDataset(torch.arange(11.0)[:, None], torch.arange(11))
    seen = []
    for r in (0, 1):
        s = DistributedSampler(ds, num_replicas=2, rank=r, shuffle=False)
        loader = sd.unpadded(DataLoader(ds, batch_size=4, sampler=s))
        seen += [int(i) for _, yb in loader for i in yb]
    assert sorted(seen) == list(range(11))


@pytest.mark.parametrize("kind", ["scalar", "block"])
def test_sharded_ntk_in_column_blocks_equals_the_gram(monkeypatch, kind):
    """One process: the sharded NTK operator, its blocks cut to one column each (as a large
    model's are), against the Gram from per-sample Jacobians (``ntk_gram``)."""
    from spectral_lab.distributed import _ntk
    from spectral_lab.ntk import block_to_matrix

    m, x, _ = _model_and_data()
    monkeypatch.setattr(_ntk, "_BLOCK_BYTES", 1)
    dense = _ntk.sharded_ntk_operator(m, x, kind, None).dense()
    K = sl.ntk_gram(m, x, kind=kind)
    K = block_to_matrix(K) if kind == "block" else K
    assert torch.allclose(dense, K, rtol=1e-12, atol=1e-12)
