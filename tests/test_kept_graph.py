"""Kept graphs (spectral_lab._kept): the products that reuse one chunk's graph equal the streamed
ones and independent dense references, in float64; the memory budget decides and is recorded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab import _func, _kept
from spectral_lab import hessian as hs
from spectral_lab import ntk as nk
from tests.test_model_zoo import Encoder, Recurrent

LIN = "forward-over-reverse (linearized, kept graph)"  # recorded tangent operations
REV = "reverse-over-reverse (kept graph)"  # backward passes through the autograd graph


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _model(name: str):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if name == "mlp":
        m, x = sl.MLP(3, 3, width=5, depth=3, activation="tanh"), torch.randn(5, 3, generator=g)
    elif name == "cnn":
        m = sl.SmallCNN(1, 3, image_size=6, channels=(2,))
        x = torch.randn(5, 1, 6, 6, generator=g)
    elif name == "gru":
        m, x = Recurrent(nn.GRU), torch.randn(4, 3, 4, generator=g)
    else:  # a transformer encoder (attention on the composite MATH kernel)
        m, x = Encoder(fused=False), torch.randn(3, 4, 4, generator=g)
    m = m.double().eval()
    x = x.double()
    return m, x, torch.arange(len(x)) % 3


def _flat_loss(model, x, y, loss):
    """theta -> loss(model_theta(x), y) on the flat trainable parameters (first-order autograd)."""
    params = {k: p.detach() for k, p in model.named_parameters()}
    shapes = [(k, p.shape, p.numel()) for k, p in params.items()]

    def f(theta):
        out, i = {}, 0
        for k, s, n in shapes:
            out[k] = theta[i : i + n].view(s)
            i += n
        return torch.func.functional_call(model, out, (x,))

    theta0 = torch.cat([p.reshape(-1) for p in params.values()])
    return f, theta0, (lambda t: loss(f(t), y))


@pytest.mark.parametrize("which", ["full", "gn"])
def test_kept_equals_dense_autograd_on_a_tiny_mlp(which):
    """Against torch.autograd.functional.hessian / jacobian, never spectral_lab."""
    m, x, _ = _model("mlp")
    y = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    f, theta, lossf = _flat_loss(m, x, y, lambda o, t: 0.5 * ((o - t) ** 2).sum() / len(t))
    if which == "full":
        ref = torch.autograd.functional.hessian(lossf, theta)
    else:
        J = torch.autograd.functional.jacobian(f, theta).reshape(-1, len(theta))
        ref = J.T @ J / len(x)  # (1/n) sum_i J_i^T I J_i for the course's 1/2-MSE
    for budget, route, name in ((2**30, "auto", LIN), (2**30, "reverse", REV), (0, "auto", None)):
        op = hs.hessian_operator(
            m, (x, y), loss="mse", which=which, memory_budget=budget, route=route
        )
        assert op.memory["storage"] == ("streaming" if name is None else "kept graph")
        assert name is None or op.route == name
        assert _rel(op.dense(), ref) < 1e-10, (budget, route, which)
        # several chunks of unequal size (2, 2, 1): each weighted n_b / N
        op = hs.hessian_operator(
            m, (x, y), loss="mse", which=which, batch_size=2, memory_budget=budget, route=route
        )
        assert _rel(op.dense(), ref) < 1e-10


def test_mutation_equal_chunk_weights_are_caught(monkeypatch):
    """Weighting the chunks (2, 2, 1) equally instead of by n_b / N must fail the check above."""
    m, x, _ = _model("mlp")
    y = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    _, theta, lossf = _flat_loss(m, x, y, lambda o, t: 0.5 * ((o - t) ** 2).sum() / len(t))
    ref = torch.autograd.functional.hessian(lossf, theta)
    real = _kept.keep_all

    def equal_weights(*a, **k):
        kept = real(*a, **k)
        return None if kept is None else [(1 / len(kept), g) for _, g in kept]

    monkeypatch.setattr(_kept, "keep_all", equal_weights)
    op = hs.hessian_operator(m, (x, y), loss="mse", batch_size=2)
    assert op.memory["storage"] == "kept graph"
    assert _rel(op.dense(), ref) > 1e-3


def test_kept_ntk_equals_the_jacobian_gram():
    m, x, _ = _model("mlp")
    f, theta, _ = _flat_loss(m, x, None, None)
    J = torch.autograd.functional.jacobian(f, theta)  # (N, C, p)
    Kb = torch.einsum("ncp,mdp->ncmd", J, J).reshape(15, 15)
    Ks = torch.einsum("ncp,mcp->nm", J, J)
    for kind, ref in (("block", Kb), ("scalar", Ks)):
        for chunk in (None, 2):
            for route, name in (("auto", LIN), ("reverse", REV)):
                op = nk.ntk_operator(m, x, kind, chunk, memory_budget=2**30, route=route)
                assert op.route == name and op.memory["storage"] == "kept graph"
                assert _rel(op.dense(), ref) < 1e-10, (kind, chunk, route)


@pytest.mark.parametrize("name", ["mlp", "cnn", "gru", "transformer"])
def test_kept_and_streaming_agree(name):
    """Hessian, GGN and NTK: kept graph == streaming to 1e-10, and mm columns == single products."""
    m, x, y = _model(name)
    g = torch.Generator().manual_seed(1)
    for which, route in (("full", "auto"), ("gn", "auto"), ("full", "reverse"), ("gn", "reverse")):
        kept = hs.hessian_operator(m, (x, y), which=which, route=route)
        assert name in ("gru",) or (route == "reverse") == kept.route.startswith("reverse")
        stream = hs.hessian_operator(m, (x, y), which=which, memory_budget=0)
        assert "kept graph" in kept.route and "kept graph" not in stream.route
        assert kept.memory["storage"] == "kept graph" and stream.memory["storage"] == "streaming"
        V = torch.randn(kept.dim, 5, dtype=torch.float64, generator=g)
        block = kept @ V  # the first block of >= 4 columns times batched against single
        assert kept.memory["matmat"] in ("batched backward", "loop (faster here)")
        assert set(kept.memory["per_column_s"]) == {"batched", "single"}
        kept.memory["matmat"] = "batched backward"  # whichever won, both must be right
        assert _rel(kept @ V, block) < 1e-10
        assert _rel(block, stream @ V) < 1e-10, (which, route)
        for j in range(5):
            assert _rel(block[:, j], kept @ V[:, j]) < 1e-10
            assert _rel(block[:, j], stream @ V[:, j]) < 1e-10
    for kind, route in (("scalar", "auto"), ("block", "auto"), ("scalar", "reverse")):
        kept = nk.ntk_operator(m, x, kind, route=route)
        stream = nk.ntk_operator(m, x, kind, memory_budget=0)
        assert "kept graph" in kept.route and stream.memory["storage"] == "streaming"
        U = torch.randn(kept.dim, 4, dtype=torch.float64, generator=g)
        block = kept @ U
        kept.memory["matmat"] = "batched backward"
        assert _rel(kept @ U, block) < 1e-10
        assert _rel(block, stream @ U) < 1e-10, kind
        assert _rel(block[:, 1], kept @ U[:, 1]) < 1e-10


def test_memory_budget_decides_and_is_recorded(monkeypatch):
    m, x, y = _model("cnn")
    op = hs.hessian_operator(m, (x, y))
    est = op.memory["estimate_bytes"]
    assert op.route == LIN and est > 0 and op.memory["budget_bytes"] == 2**30
    rev = hs.hessian_operator(m, (x, y), route="reverse").memory["estimate_bytes"]
    assert rev > 0
    # a budget under the recording's size keeps the autograd graph instead when that fits (here
    # the recording is made 100x larger than measured, so that a budget falls between the two)
    real = _kept.Linearized.__init__

    def larger(self, *a, **k):
        real(self, *a, **k)
        self.nbytes *= 100

    with monkeypatch.context() as mp:
        mp.setattr(_kept.Linearized, "__init__", larger)
        mid = hs.hessian_operator(m, (x, y), memory_budget=2 * rev)
    assert mid.route == REV and mid.memory["storage"] == "kept graph"
    v = torch.randn(op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    assert _rel(mid @ v, op @ v) < 1e-10
    # ... and a budget under both streams, and says why
    small = hs.hessian_operator(m, (x, y), memory_budget=min(est, rev) - 1)
    assert small.memory["storage"] == "streaming" and small.route == "forward-over-reverse"
    assert "memory_budget" in small.memory["reason"]
    zero = hs.hessian_operator(m, (x, y), memory_budget=0)
    assert zero.memory["reason"] == "memory_budget is 0"
    assert zero.route == "forward-over-reverse"
    assert nk.ntk_operator(m, x, memory_budget=1).memory["storage"] == "streaming"
    # batched blocks take at most budget / kept bytes columns at once (here 2 of 5)
    tight = hs.hessian_operator(m, (x, y), memory_budget=2 * op.memory["kept_bytes"] + 1)
    tight.memory["matmat"] = "batched backward"
    V = torch.randn(op.dim, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert _rel(tight @ V, zero @ V) < 1e-10
    # the results carry the route
    assert sl.hessian_eigs(m, (x, y), memory_budget=0).route == "forward-over-reverse"
    assert sl.hessian_trace(m, (x, y), num_matvecs=6).route == LIN
    with pytest.raises(ValueError, match="memory_budget"):
        hs.hessian_operator(m, (x, y), memory_budget=-1)


def test_in_place_parameter_change_rebuilds_the_graph():
    m, x, y = _model("mlp")
    op = hs.hessian_operator(m, (x, y))
    v = torch.randn(op.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    before = op @ v
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    after = op @ v
    assert _rel(after, hs.hessian_operator(m, (x, y), memory_budget=0) @ v) < 1e-10
    assert _rel(after, before) > 1e-3


def test_batched_backward_falls_back_to_a_loop(monkeypatch):
    """An op without a batching rule: the block is answered column by column, and recorded."""
    m, x, y = _model("mlp")
    real = _kept._one

    def no_batching(outputs, inputs, cots, batched):
        if batched:
            raise RuntimeError("Batching rule not implemented for aten::fake_op")
        return real(outputs, inputs, cots, batched)

    monkeypatch.setattr(_kept, "_one", no_batching)
    op = hs.hessian_operator(m, (x, y), route="reverse")
    V = torch.randn(op.dim, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    want = hs.hessian_operator(m, (x, y), memory_budget=0) @ V
    assert _rel(op @ V, want) < 1e-10
    assert op.memory["matmat"] == "loop (no batching rule)"
    assert op.memory["batching"] == "failed" and "fake_op" in op.memory["matmat_error"]
    assert _rel(op @ V, want) < 1e-10


@pytest.mark.parametrize("kind", ["scalar", "block"])
def test_default_chunk_bounds_the_streaming_memory(kind, monkeypatch):
    """Without chunk_size the NTK streams chunks sized from the memory budget (not all samples at
    once: at 20,000 MNIST images that peaked at 17.9 GB); the products do not change."""
    m, x, _ = _model("cnn")
    f, theta, _ = _flat_loss(m, x, None, None)
    J = torch.autograd.functional.jacobian(f, theta)  # (N, C, p)
    n, C = J.shape[:2]
    ref = (
        torch.einsum("ncp,mdp->ncmd", J, J).reshape(n * C, n * C)
        if kind == "block"
        else torch.einsum("ncp,mcp->nm", J, J)
    )
    assert nk.ntk_operator(m, x, kind, memory_budget=0).memory["chunk_size"] == n  # small: all
    leaves = {k: p.detach().requires_grad_(True) for k, p in m.named_parameters()}
    with torch.enable_grad():
        _, nbytes = _kept.saved_bytes(lambda: _func.functional(m)(leaves, x))
    width = C if kind == "scalar" else 1
    budget = 2.5 * nbytes * width / n  # room for about two samples' graphs
    monkeypatch.setattr(_kept, "DEFAULT_MEMORY_BUDGET", budget)
    op = nk.ntk_operator(m, x, kind, memory_budget=0)
    assert 1 <= op.memory["chunk_size"] < n
    assert _rel(op.dense(), ref) < 1e-10


def test_batched_replay_falls_back_to_a_loop(monkeypatch):
    """The linearized route: a replay that cannot be vmapped is answered column by column."""
    m, x, y = _model("mlp")
    op = hs.hessian_operator(m, (x, y))
    assert op.route == LIN
    V = torch.randn(op.dim, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    want = hs.hessian_operator(m, (x, y), memory_budget=0) @ V

    def no_vmap(*a, **k):
        raise RuntimeError("Batching rule not implemented for aten::fake_op")

    monkeypatch.setattr(_kept.torch, "vmap", no_vmap)
    assert _rel(op @ V, want) < 1e-10
    assert op.memory["matmat"] == "loop (no batching rule)"
    assert op.memory["batching"] == "failed" and "fake_op" in op.memory["matmat_error"]


def test_a_slow_wide_batch_switches_to_the_loop():
    """A batch wider than the timed one that runs slower per column than single products (wide
    vmapped blocks page-fault on a CPU) switches the operator to the loop, with the same products."""
    m, x, y = _model("cnn")
    op = hs.hessian_operator(m, (x, y))
    op.memory["matmat"] = "batched backward"
    op.memory["per_column_s"] = {"batched": 0.0, "single": 1e-12}  # single products look free
    V = torch.randn(op.dim, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    got = op @ V
    assert op.memory["matmat"] == "loop (faster here)"
    assert op.memory["per_column_s"]["batched (wide)"] > 1e-12
    assert _rel(got, hs.hessian_operator(m, (x, y), memory_budget=0) @ V) < 1e-10
