"""spectral_lab._linearized: a JVP recorded once and replayed equals torch.func.jvp (an
independent forward-mode evaluation at every call) and the dense Hessian; what a replay could not
reproduce is refused, and the refusal is what keeps the answers right."""

from __future__ import annotations

import pytest
import torch

import spectral_lab as sl
from spectral_lab import _kept, _linearized
from spectral_lab import hessian as hs
from spectral_lab._linearized import Linearized, NotLinearizable
from tests.test_model_zoo import _TanhNoJvp  # tanh with a backward and no forward-mode rule


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _cnn():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    m = sl.SmallCNN(1, 3, image_size=8, channels=(2, 3)).double().eval()  # conv, relu, max pool
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64, generator=g)
    return m, x, torch.arange(6) % 3


def test_replay_equals_a_fresh_jvp_of_the_gradient():
    """H v for several v from one recording == torch.func.jvp(grad L) evaluated afresh."""
    m, x, y = _cnn()
    params = {k: p.detach() for k, p in m.named_parameters()}
    names = list(params)

    def loss(p):
        return torch.nn.functional.cross_entropy(torch.func.functional_call(m, p, (x,)), y)

    def grad_list(ps):
        g = torch.func.grad(loss)(dict(zip(names, ps)))
        return [g[k] for k in names]

    lin = Linearized(grad_list, list(params.values()))
    assert lin.nbytes > 0 and len(lin.steps) > 0
    g = torch.Generator().manual_seed(2)
    for _ in range(3):  # the replay does not change between products
        v = {k: torch.randn(t.shape, dtype=t.dtype, generator=g) for k, t in params.items()}
        want = torch.func.jvp(torch.func.grad(loss), (params,), (v,))[1]
        got = lin([v[k] for k in names])
        for k, t in zip(names, got):
            assert _rel(t, want[k]) < 1e-12, k


def test_replay_equals_the_dense_hessian_and_vmaps():
    m, x, y = _cnn()
    theta = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    shapes = [(k, p.shape, p.numel()) for k, p in m.named_parameters()]

    def flat_loss(t):
        out, i = {}, 0
        for k, s, n in shapes:
            out[k] = t[i : i + n].view(s)
            i += n
        return torch.nn.functional.cross_entropy(torch.func.functional_call(m, out, (x,)), y)

    H = torch.autograd.functional.hessian(flat_loss, theta)
    lin = Linearized(lambda ps: [torch.func.grad(flat_loss)(ps[0])], [theta])
    V = torch.randn(len(theta), 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    cols = torch.stack([lin([V[:, j]])[0] for j in range(4)], 1)
    assert _rel(cols, H @ V) < 1e-10
    state: dict = {}  # a block: vmapped over the replay, or column by column where that fails
    assert _rel(_kept.forward(lin, [V.T], True, state)[0].T, H @ V) < 1e-10
    assert state["batching"] in ("ok", "failed")


def test_an_output_independent_of_the_inputs_is_zero():
    lin = Linearized(lambda xs: [xs[0] * 2, torch.ones(3)], [torch.zeros(3)])
    a, b = lin([torch.ones(3)])
    assert torch.equal(a, torch.full((3,), 2.0)) and torch.equal(b, torch.zeros(3))


def test_writing_tangents_into_a_constant_is_refused():
    """Forward-mode AD gives every tangent a fresh tensor, so a recording never meets this in the
    library's functions; the guard is tested at the recorder: an in-place write of a tangent into
    a plain tensor would be replayed into the stored constant, accumulating across products."""
    t = torch.ones(3)
    buf = torch.zeros(3)
    with pytest.raises(NotLinearizable, match="constant"):
        with _linearized._Recorder([t]):
            buf.add_(t)
    with _linearized._Recorder([t]) as rec:  # into a tangent's own result it is recorded
        s = t * 2
        s.add_(t)
    assert [str(f) for f, *_ in rec.steps] == ["aten.mul.Tensor", "aten.add_.Tensor"]


def test_reading_tangent_values_is_refused():
    t = torch.ones(3)
    with pytest.raises(NotLinearizable, match="reads tangent values"):
        with _linearized._Recorder([t]):
            float((t * 2).sum())


def test_a_model_that_cannot_be_recorded_keeps_the_autograd_graph():
    """hessian_operator and ntk_operator fall back to reverse-over-reverse kept graphs."""

    class Custom(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.b(_TanhNoJvp.apply(self.a(x)))

    torch.manual_seed(0)
    m = Custom().double()
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(5, 2, dtype=torch.float64)
    op = hs.hessian_operator(m, (x, y), loss="mse")
    assert op.route == "reverse-over-reverse (kept graph)"
    ref = hs.hessian_operator(m, (x, y), loss="mse", memory_budget=0)
    assert ref.route == "reverse-over-reverse"
    assert _rel(op.dense(), ref.dense()) < 1e-10
    assert sl.ntk.ntk_operator(m, x).route == "reverse-over-reverse (kept graph)"


def _read_then_changed(ps):
    """``h`` is read by a tangent step (``h @ p1_t``), then changed in place by the primal code."""
    g = torch.Generator().manual_seed(7)
    A = torch.randn(3, 3, dtype=torch.float64, generator=g)
    W = torch.randn(3, 3, dtype=torch.float64, generator=g)
    h = A @ ps[0]
    out = h @ W + h @ ps[1]
    h.mul_(2)
    return [out]


def _jvp_check(monkeypatch=None) -> float:
    g = torch.Generator().manual_seed(8)
    p = [torch.randn(3, 3, dtype=torch.float64, generator=g) for _ in range(2)]
    t = [torch.randn(3, 3, dtype=torch.float64, generator=g) for _ in range(2)]
    lin = Linearized(_read_then_changed, p)
    want = torch.func.jvp(lambda a, b: _read_then_changed([a, b])[0], tuple(p), tuple(t))[1]
    return _rel(lin(t)[0], want)


def test_a_constant_changed_in_place_later_is_copied_first():
    assert _jvp_check() < 1e-14


def test_mutation_without_copy_on_write_the_replay_is_wrong(monkeypatch):
    monkeypatch.setattr(_linearized._Recorder, "_copy_before_write", lambda self, written: None)
    assert _jvp_check() > 1e-2


def test_ntk_of_a_model_with_in_place_operations():
    """An in-place residual add and ReLU, as torchvision's ResNet blocks do (a model that reverse
    mode accepts cannot change a tensor it saved, so this is what real models do in place): the
    recorded NTK and Hessian products equal the streamed ones."""

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = (torch.nn.Linear(4, 4) for _ in range(3))

        def forward(self, x):
            h = torch.relu(self.a(x))
            out = self.b(h)
            out += h  # in place on b's output, which a tangent step produced
            return self.c(torch.relu_(out))  # and in place again

    torch.manual_seed(0)
    m = Block().double()
    x = torch.randn(5, 4, dtype=torch.float64)
    kept = sl.ntk.ntk_operator(m, x, "block")
    stream = sl.ntk.ntk_operator(m, x, "block", memory_budget=0)
    assert kept.route == "forward-over-reverse (linearized, kept graph)"
    assert _rel(kept.dense(), stream.dense()) < 1e-10
    y = torch.arange(5) % 4
    H = hs.hessian_operator(m, (x, y))
    assert H.route == kept.route
    assert _rel(H.dense(), hs.hessian_operator(m, (x, y), memory_budget=0).dense()) < 1e-10
