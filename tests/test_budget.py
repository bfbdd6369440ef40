"""Budgets that hold (issue 23): pieces predicted from a probe, cut phases reported, the memory
budget's chunks, gradient-equivalents; against independent references (the wall clock, dense
autograd Grams, a profile without budget)."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab._budget import Budget, OutOfBudget, Rate, counted, ntk_phase
from spectral_lab._budget.ntk import class_gradient_cost, largest_prefix
from spectral_lab.hessian import hessian_operator
from spectral_lab.linalg import LinearOperator

DELAY = 0.03  # seconds of every forward and backward pass of the slow layer


class _Slow(torch.autograd.Function):
    """Identity whose forward, backward and forward-mode pass each sleep ``DELAY`` seconds."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        time.sleep(DELAY)
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        time.sleep(DELAY)
        return g

    @staticmethod
    def jvp(ctx, t):
        time.sleep(DELAY)
        return t


class SlowNet(nn.Module):
    def __init__(self, d=4, width=8, classes=40):
        super().__init__()
        self.a, self.b = nn.Linear(d, width), nn.Linear(width, classes)

    def forward(self, x):
        return self.b(_Slow.apply(torch.tanh(self.a(x))))


def _slow_case():
    torch.manual_seed(0)
    m = SlowNet().double().eval()
    x = torch.randn(32, 4, dtype=torch.float64)
    # set-up, not budget: the first torch.func pass through an autograd.Function imports
    # torch._dynamo (seconds on a loaded machine)
    params = dict(m.named_parameters())
    out, vjp_fn = torch.func.vjp(lambda p: torch.func.functional_call(m, p, (x[:1],)), params)
    vjp_fn(torch.ones_like(out))
    op = hessian_operator(m, (x[:2], torch.arange(2)), loss="cross_entropy")  # forward mode
    op.mv(torch.ones(op.dim, dtype=torch.float64))
    return m, x, torch.arange(32) % 40


def test_time_budget_holds_on_a_slow_model_and_reports_the_cut():
    """One batch's 40 input-Jacobian rows take 40 x 30 ms = 1.2 s; a 1 s budget must hold
    within 10% plus one product (one forward and backward: ~0.1 s), the rows cut reported."""
    m, x, y = _slow_case()
    prep = sl.prepare(m, (x, y))
    T = 1.0
    t = time.perf_counter()
    prof = sl.stability_profile(prep, (x, y), time_budget=T, batch_size=32, progress=False)
    wall = time.perf_counter() - t
    assert wall <= 1.1 * T + 4 * DELAY
    b = prof.settings["budget"]
    ij = b["phases"]["input_jacobian"]
    assert ij["cut"] and "lower estimates" in ij["cut"] and "rows" in ij["computed"]
    assert b["wall_s"] <= 1.1 * T + 4 * DELAY
    rep_lines = sl.diagnose(prep, (x, y), time_budget=T, batch_size=32, progress=False).summary()
    assert "phase input_jacobian:" in rep_lines and "cut:" in rep_lines


def test_time_budget_mutation_ignoring_the_prediction_overruns(monkeypatch):
    """The slip: pieces started whatever their prediction (the old code's one check between
    batches); the same call then overruns the budget."""
    monkeypatch.setattr(Budget, "fits", lambda self, predicted, phase=None: True)
    m, x, y = _slow_case()
    prep = sl.prepare(m, (x, y))
    t = time.perf_counter()
    sl.stability_profile(prep, (x, y), time_budget=1.0, batch_size=32, progress=False)
    assert time.perf_counter() - t > 1.1 + 4 * DELAY


def test_rate_predicts_from_the_last_and_the_mean():
    r = Rate()
    assert r.predict(10) is None
    r.observe(4, 2.0)  # 0.5 s per unit
    assert r.predict(10) == pytest.approx(5.0)
    r.observe(4, 1.0)  # faster now: the mean (0.375) is kept as the larger estimate
    assert r.predict(10) == pytest.approx(3.75)
    r.observe(1, 2.0)  # slower: 2 s per unit at once
    assert r.predict(1) == pytest.approx(2.0)


def test_budget_fits_and_counted_refuse_a_product_predicted_past_the_budget(monkeypatch):
    b = Budget(time_budget=100.0, progress=False)
    assert b.fits(None) and b.fits(99.0) and not b.fits(101.0)
    b.reserve = 0.25
    assert b.fits(70.0, "samples") and not b.fits(80.0, "samples") and b.fits(80.0)
    op = LinearOperator(lambda v: 2 * v, 3, torch.float64, "cpu")
    cop = counted(op, b, phase="demo", units=1.0)
    cop.mv(torch.ones(3, dtype=torch.float64))
    assert b.phases["demo"].pieces == 1 and b.matvecs == 1
    b.phases["demo"].rate.observe(1, 500.0)  # the next product would take 500 s
    with pytest.raises(OutOfBudget, match="predicted"):
        cop.mv(torch.ones(3, dtype=torch.float64))
    assert b.matvecs == 1  # refused before spending


def test_ntk_cost_model_and_largest_prefix():
    # column chunk b recomputes every chunk before it: C * sum of chunk ends
    assert class_gradient_cost(10, 4, 3) == 3 * (4 + 8 + 10)
    assert class_gradient_cost(10, 10, 3) == 30
    # the most samples whose Gram fits: exactly at the boundary, then one second short
    cost8 = class_gradient_cost(8, 4, 3)
    assert largest_prefix(10, 4, 3, 1.0, cost8) == 8
    assert largest_prefix(10, 4, 3, 1.0, cost8 - 1) == 7
    assert largest_prefix(10, 4, 3, 1.0, 1.0) == 0


def _mlp(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 7), nn.Tanh(), nn.Linear(7, 3))
    return m.double().eval(), torch.randn(12, 5, dtype=torch.float64)


def _dense_ntk(m, x):
    names = [k for k, _ in m.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    shapes = [p.shape for p in m.parameters()]

    def f(t):
        ps, i = {}, 0
        for k, s in zip(names, shapes):
            ps[k] = t[i : i + s.numel()].view(s)
            i += s.numel()
        return torch.func.functional_call(m, ps, (x,))

    J = torch.autograd.functional.jacobian(f, theta)  # (n, C, p)
    return torch.einsum("ncp,mcp->nm", J, J)


def test_ntk_cut_by_the_matvec_budget_is_the_gram_of_the_first_samples():
    m, x = _mlp()
    b = Budget(matvec_budget=5, progress=False)
    lam = ntk_phase(m, x[:8], "scalar", budget=b)
    ref = torch.linalg.eigvalsh(_dense_ntk(m, x[:5]))
    torch.testing.assert_close(lam, ref, rtol=1e-10, atol=1e-10)
    assert "3 of 8 samples" in b.phases["ntk"].cut and b.matvecs == 5


def test_small_memory_budget_gives_smaller_chunks_and_the_same_numbers():
    torch.manual_seed(1)  # 9219 parameters: one sample's gradient rows take 147 kB in float64
    m = nn.Sequential(nn.Linear(5, 128), nn.Tanh(), nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 3))
    m = m.double().eval()
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.arange(12) % 3
    opts = dict(progress=False, num_ntk_samples=12, tol=1e-10, max_iter=100)
    free = sl.stability_profile(m, (x, y), **opts)
    small = sl.stability_profile(m, (x, y), memory_budget=2**20, **opts)
    for k in ("jac_top", "jac_fro", "jac_entropy", "param_top", "ntk_top", "ntk_min",
              "ntk_entropy", "hess_top"):  # fmt: skip
        assert getattr(small, k) == pytest.approx(getattr(free, k), rel=1e-9), k
    fb, sb = free.settings["budget"], small.settings["budget"]
    # NTK: two chunks of 2**20 // (2 * 147 kB) = 3 samples; parameter Jacobians: 4 samples
    assert "chunks of 3" in sb["phases"]["ntk"]["computed"]
    assert "chunks of 12" in fb["phases"]["ntk"]["computed"]
    assert (
        sb["phases"]["parameter_jacobian"]["pieces"] > fb["phases"]["parameter_jacobian"]["pieces"]
    )
    assert sb["memory"]["largest_chunk_bytes"] < fb["memory"]["largest_chunk_bytes"]
    assert sb["memory"]["largest_chunk_bytes"] <= 2**20
    lam = ntk_phase(m, x, "scalar", budget=Budget(memory_budget=2**20, progress=False))
    torch.testing.assert_close(lam, torch.linalg.eigvalsh(_dense_ntk(m, x)), rtol=1e-10, atol=1e-10)
    assert fb["memory"]["peak_bytes"] > 0 and "ru_maxrss" in fb["memory"]["peak_how"]


def test_memory_budget_limits_the_chunks_held():
    m, x = _mlp(2)
    p = sum(q.numel() for q in m.parameters())
    per = 2 * p * 8  # bytes of one sample's gradient row and its copy
    b = Budget(memory_budget=2**20, progress=False)
    assert b.chunk(per, 10**6) == 2**20 // per
    assert Budget(progress=False).chunk(per, 7) == 7  # no budget: the default
    assert Budget(memory_budget=2**20, progress=False).chunk(2**30, 7) == 1  # at least one


def test_gradient_equivalents_are_counted_per_phase():
    """Input and parameter Jacobian: C sample-gradients per sample (C ge on the n samples);
    the Hessian: 3 per sample per product; the NTK: its class-gradient cost plus the probe."""
    m, x = _mlp(3)
    y = torch.arange(12) % 3
    prof = sl.stability_profile(m, (x, y), progress=False, num_ntk_samples=6, tol=1e-10)
    b = prof.settings["budget"]
    n, C = 12, 3
    ph = b["phases"]
    assert ph["input_jacobian"]["ge"] == pytest.approx(C + 1 / 3)
    assert ph["parameter_jacobian"]["ge"] == pytest.approx(C)
    assert ph["hessian"]["ge"] == pytest.approx(3 * ph["hessian"]["products"])
    assert ph["ntk"]["ge"] == pytest.approx((class_gradient_cost(6, 6, C) + 1) / n)
    assert b["ge"] == pytest.approx(sum(p["ge"] for p in ph.values()))
    assert not math.isnan(b["ge"])


def test_memory_budget_is_validated():
    with pytest.raises(ValueError, match="memory_budget"):
        Budget(memory_budget=10)
