"""operator_product on common blocks written elsewhere (BatchNorm, adaptive pooling, torchvision's
residual blocks and ResNets): dense() against autograd's Jacobian, adjointness, mutation tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet, conv1x1

import spectral_lab as sl
from spectral_lab import _walkers
from spectral_lab.models import ResidualBlock
from spectral_lab.operators import (
    MapFactor,
    ResidualFactor,
    find_walker,
    register_walker,
    supported_layers,
)

D64 = torch.float64


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters: with the defaults (mean 0, var 1,
    gamma 1) the factor gamma / sqrt(var + eps) is ~1 and hides a wrong formula."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(0.5 * torch.randn(c, generator=g))
            m.running_var.copy_(0.05 + 2.5 * torch.rand(c, generator=g))
            if m.affine:
                m.weight.data.copy_(1 + 0.5 * torch.randn(c, generator=g))
                m.bias.data.copy_(0.3 * torch.randn(c, generator=g))
    return model


def autograd_jacobian(model, x):
    j = torch.autograd.functional.jacobian(lambda z: model(z[None].clone())[0], x)
    return j.reshape(j.shape[0], -1)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def bn_cnn():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4, eps=0.3),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 6, 3, stride=2),
        nn.BatchNorm2d(6, affine=False),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(8, 5),
    )


def adaptive_avg_cnn(out=(3, 2)):
    c = 4 * out[0] * out[1]
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.SiLU(), nn.AdaptiveAvgPool2d(out), nn.Flatten(), nn.Linear(c, 5)
    )


def adaptive_max_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.AdaptiveMaxPool2d((3, 2)),
        nn.Identity(),
        nn.Flatten(),
        nn.Linear(24, 5),
    )


def basic_block_down():
    ds = nn.Sequential(conv1x1(4, 8, stride=2), nn.BatchNorm2d(8))
    return nn.Sequential(BasicBlock(4, 8, stride=2, downsample=ds), nn.Flatten(), nn.Linear(128, 3))


def bottleneck(down: bool):
    if down:  # 4 -> 8 channels (expansion 4), stride 2
        ds = nn.Sequential(conv1x1(4, 8, stride=2), nn.BatchNorm2d(8))
        block, n = Bottleneck(4, 2, stride=2, downsample=ds), 8 * 4 * 4
    else:  # identity shortcut: 8 -> 8 channels
        block, n = Bottleneck(8, 2), 8 * 8 * 8
    return nn.Sequential(block, nn.Flatten(), nn.Linear(n, 3))


def inplace_relus():
    """Inplace ReLUs first in the model (the walk must not overwrite the caller's x) and inside a
    residual branch."""
    br = nn.Sequential(nn.Linear(6, 6), nn.ReLU(inplace=True), nn.Linear(6, 6))
    return nn.Sequential(
        nn.ReLU(inplace=True), nn.Linear(5, 6), ResidualBlock(br, 0.7), nn.Tanh(), nn.Linear(6, 3)
    )


CASES = {
    "bn-cnn": (bn_cnn, (2, 8, 8)),
    "adaptive-avg-3x2": (adaptive_avg_cnn, (1, 9, 9)),
    "adaptive-avg-1x1": (lambda: adaptive_avg_cnn((1, 1)), (1, 7, 7)),
    "adaptive-max": (adaptive_max_cnn, (1, 9, 9)),
    "basicblock-downsample": (basic_block_down, (4, 8, 8)),
    "bottleneck-identity": (lambda: bottleneck(False), (8, 8, 8)),
    "bottleneck-downsample": (lambda: bottleneck(True), (4, 8, 8)),
    "inplace-relus": (inplace_relus, (5,)),
    "resnet-basic-1111": (lambda: ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10), (3, 16, 16)),
    "resnet-bottleneck-1111": (
        lambda: ResNet(Bottleneck, [1, 1, 1, 1], num_classes=4),
        (3, 16, 16),
    ),
}


def build(name, seed=0):
    torch.manual_seed(seed)
    make, shape = CASES[name]
    return randomize_bn(make().double().eval(), seed), shape


def check_against_autograd(model, x, g):
    """The checks every case runs; returns the relative error of dense() against autograd."""
    op = sl.operator_product(model, x)
    ref = autograd_jacobian(model, x)
    dense = op.dense()
    assert dense.shape == (op.n_outputs, op.d) == ref.shape
    err = rel(dense, ref)
    assert err < 1e-10, err
    v = torch.randn(3, op.d, dtype=D64, generator=g)
    u = torch.randn(3, op.n_outputs, dtype=D64, generator=g)
    assert rel(op.matvec(v), v @ ref.T) < 1e-10
    assert rel(op.rmatvec(u), u @ ref) < 1e-10
    # adjointness <J v, u> = <v, J^T u>, for the product and for every factor
    assert torch.allclose((op.matvec(v) * u).sum(1), (v * op.rmatvec(u)).sum(1), atol=1e-12)
    for f in op.factors:
        a = torch.randn(2, f.n_in, dtype=D64, generator=g)
        b = torch.randn(2, f.n_out, dtype=D64, generator=g)
        fa, fb = f.matvec(a), f.rmatvec(b)
        assert torch.allclose((fa * b).sum(1), (a * fb).sum(1), atol=1e-10), f.name
        if f.n_in * f.n_out > 300_000:  # a factor's own dense form only where it is cheap
            continue
        m = f.dense()
        assert torch.allclose(fa, a @ m.T, atol=1e-10), f.name
        assert torch.allclose(fb, b @ m, atol=1e-10), f.name
    return op, err


@pytest.mark.parametrize("name", list(CASES))
def test_dense_equals_autograd_jacobian(name):
    model, shape = build(name)
    g = torch.Generator().manual_seed(1)
    for _ in range(1 if name.startswith("resnet") else 2):
        x = torch.randn(shape, dtype=D64, generator=g)
        x0 = x.clone()
        check_against_autograd(model, x, g)
        assert torch.equal(x, x0)  # the walk leaves the caller's input alone


def test_inplace_op_on_a_reused_tensor_becomes_one_generic_factor():
    # a pre-activation branch starting with an inplace ReLU overwrites the block input that the
    # identity path reuses: the model computes relu(h) + branch(h), not h + branch(h). The walker
    # (which never writes in place) would describe h + branch(h), so its output check fails and
    # the block becomes one generic factor: exact, never the other function
    br = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(6, 6))
    model = nn.Sequential(nn.Linear(5, 6), ResidualBlock(br, 0.7), nn.Linear(6, 3)).double()
    x = torch.randn(5, dtype=D64)
    op = sl.operator_product(model, x)
    assert op.names == ["W1", "G1", "W2"] and op.factors[1].what == "ResidualBlock"
    assert rel(op.dense(), autograd_jacobian(model, x)) < 1e-12


@pytest.mark.slow
def test_resnet18_dense_equals_autograd():
    torch.manual_seed(0)
    model = randomize_bn(resnet18(num_classes=10).double().eval())
    x = torch.randn(3, 32, 32, dtype=D64)
    op, _ = check_against_autograd(model, x, torch.Generator().manual_seed(2))
    assert op.names == ["W1", "B1", "D1", "P1", *[f"R{i}" for i in range(1, 9)], "P2", "W2"]
    assert [f.n_in == f.n_out for f in op.factors if isinstance(f, ResidualFactor)] == [
        True,
        True,
        False,
        True,
        False,
        True,
        False,
        True,
    ]


def test_factor_names_and_kinds():
    model, shape = build("basicblock-downsample")
    op = sl.operator_product(model, torch.randn(shape, dtype=D64))
    (r,) = [f for f in op.factors if isinstance(f, ResidualFactor)]
    assert op.names == ["R1", "W1"]
    assert r.branch.names == ["R1.W1", "R1.B1", "R1.D1", "R1.W2", "R1.B2"]
    assert r.shortcut.names == ["R1.S.W1", "R1.S.B1"]
    assert (r.n_out, r.n_in) == (8 * 4 * 4, 4 * 8 * 8)
    # the data-free bound bounds the norm at this input
    assert r.spectral_norm() <= r.sup_norm() + 1e-12
    bn = build("bn-cnn")[0]
    op = sl.operator_product(bn, torch.randn(2, 8, 8, dtype=D64))
    assert op.names == ["W1", "B1", "D1", "W2", "B2", "D2", "W3", "B3", "D3", "W4"]


def test_norm_bounds_hold_on_new_factors():
    g = torch.Generator().manual_seed(3)
    for name in ("bn-cnn", "adaptive-avg-3x2", "adaptive-max", "bottleneck-downsample"):
        model, shape = build(name)
        x = torch.randn(shape, dtype=D64, generator=g)
        op = sl.operator_product(model, x)
        true = float(torch.linalg.matrix_norm(autograd_jacobian(model, x), 2))
        assert true <= op.norm_bound() * (1 + 1e-10) <= op.sup_norm_bound() * (1 + 1e-10), name


def test_mutation_bn_without_eps_is_caught(monkeypatch):
    model, shape = build("bn-cnn")
    g = torch.Generator().manual_seed(4)
    x = torch.randn(shape, dtype=D64, generator=g)
    check_against_autograd(model, x, g)
    monkeypatch.setattr(
        _walkers,
        "_bn_scale",
        lambda m: (m.weight.detach() if m.weight is not None else 1) / m.running_var.sqrt(),
    )
    with pytest.raises(AssertionError):
        check_against_autograd(model, x, g)


def test_mutation_dropped_shortcut_is_caught(monkeypatch):
    g = torch.Generator().manual_seed(5)
    for name in ("basicblock-downsample", "bottleneck-identity"):
        model, shape = build(name)
        x = torch.randn(shape, dtype=D64, generator=g)
        check_against_autograd(model, x, g)
        with monkeypatch.context() as mp:
            mp.setattr(
                ResidualFactor,
                "_paths",
                lambda self, v, fwd: (
                    self.scale * (self.branch.matvec(v) if fwd else self.branch.rmatvec(v))
                ),
            )
            mp.setattr(ResidualFactor, "paths", lambda self, max_entries=0: self.branch.dense())
            with pytest.raises(AssertionError):
                check_against_autograd(model, x, g)


def test_mutation_dropped_gate_after_sum_is_caught(monkeypatch):
    model, shape = build("bottleneck-identity")
    g = torch.Generator().manual_seed(6)
    x = torch.randn(shape, dtype=D64, generator=g)
    check_against_autograd(model, x, g)
    # the ReLU after the sum read as the identity (every other gate untouched)
    monkeypatch.setattr(ResidualFactor, "matvec", lambda self, v: self._paths(v, True))
    monkeypatch.setattr(ResidualFactor, "rmatvec", lambda self, u: self._paths(u, False))
    monkeypatch.setattr(ResidualFactor, "dense", lambda self, max_entries=0: self.paths())
    with pytest.raises(AssertionError):
        check_against_autograd(model, x, g)


def test_batchnorm_batch_statistics_are_refused():
    model, shape = build("bn-cnn")
    x = torch.randn(shape, dtype=D64)
    ref = sl.operator_product(model, x).dense()
    model[4].train()  # one BatchNorm in train mode: analysed in eval mode (the one policy)
    assert torch.equal(sl.operator_product(model, x).dense(), ref)
    assert model[4].training and not model[0].training  # each module's mode left as it was
    nostats = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2, track_running_stats=False),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    with pytest.raises(ValueError, match="track_running_stats=False"):
        sl.operator_product(nostats.double().eval(), torch.randn(1, 4, 4, dtype=D64))
    drop = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.Linear(3, 2)).double().eval()
    drop[1].train()
    xd = torch.randn(3, dtype=D64)
    J = torch.autograd.functional.jacobian(lambda v: drop.eval()(v[None])[0], xd)
    drop[1].train()
    assert torch.allclose(sl.operator_product(drop, xd).dense(), J, rtol=0, atol=1e-14)
    assert drop[1].training


def test_unknown_modules_are_captured_or_generic():
    class Mine(nn.Module):  # a custom forward: its Linear stays W, exp is generic
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 2)

        def forward(self, x):
            return self.a(x).exp()

    x = torch.randn(3, dtype=D64)
    model = Mine().double()
    op = sl.operator_product(model, x)
    assert op.names == ["W1", "G1"] and op.factors[1].what == "exp"
    assert rel(op.dense(), autograd_jacobian(model, x)) < 1e-12
    model = nn.Sequential(nn.Linear(3, 2), nn.Softplus()).double()
    op = sl.operator_product(model, x)
    assert op.names == ["W1", "G1"] and op.factors[1].what == "Softplus"
    assert rel(op.dense(), autograd_jacobian(model, x)) < 1e-12


def test_custom_forward_of_a_known_layer_is_captured_not_walked():
    class SEBlock(BasicBlock):  # a subclass whose forward differs from BasicBlock's
        def forward(self, x):
            return super().forward(x) * 0.5

    torch.manual_seed(0)
    model = nn.Sequential(SEBlock(4, 4), nn.Flatten(), nn.Linear(64, 2))
    model = randomize_bn(model.double().eval())
    x = torch.randn(4, 4, 4, dtype=D64)
    op = sl.operator_product(model, x)
    # BasicBlock's forward, captured: conv-bn-relu-conv-bn + identity, relu, then * 0.5
    assert op.names == ["R1", "D2", "G1", "W3"]
    assert op.factors[0].shortcut is None and op.factors[0].branch.names == [
        "W1",
        "B1",
        "D1",
        "W2",
        "B2",
    ]
    assert rel(op.dense(), autograd_jacobian(model, x)) < 1e-12

    class Scaled(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    model = Scaled(nn.Linear(3, 2)).double()
    op = sl.operator_product(model, torch.randn(3, dtype=D64))
    assert op.names == ["W1", "G1"]
    assert torch.allclose(op.dense(), 2 * model[0].weight, atol=1e-14)


def test_register_walker_by_class_and_by_dotted_name():
    class Twice(nn.Module):
        def forward(self, h):
            return 2 * h

    class Thrice(nn.Module):
        def forward(self, h):
            return 3 * h

    def walker(c):
        def walk(m, h, ctx):
            s = tuple(h.shape[1:])
            ctx.add(MapFactor(ctx.name("S"), "weight", s, s, m, lambda v: c * v, h))
            return m(h)

        return walk

    register_walker(Twice)(walker(2.0))
    register_walker(f"{Thrice.__module__}.{Thrice.__qualname__}")(walker(3.0))
    model = nn.Sequential(nn.Linear(3, 4), Twice(), nn.Tanh(), Thrice(), nn.Linear(4, 2)).double()
    x = torch.randn(3, dtype=D64)
    op = sl.operator_product(model, x)
    assert op.names == ["W1", "S1", "D1", "S2", "W2"]
    assert rel(op.dense(), autograd_jacobian(model, x)) < 1e-12
    assert find_walker(Twice()) is not None and "Twice" in supported_layers()
    with pytest.raises(TypeError, match="nn.Module subclasses"):
        register_walker(int)
