"""residual_block_jacobians on torchvision ResNets and the library's residual models: each block's
factor against autograd on the block's own modules, the chains the geometry functions take, and
the chain functions on them against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from spectral_lab import ResidualMLP
from spectral_lab import geometry as g
from spectral_lab.operators import ResidualFactor

from ._helpers import _np_log_sigma1_normalized

D64 = torch.float64


def _randomize_bn(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(0.5 * torch.randn(c, generator=gen))
            m.running_var.copy_(0.05 + 2.5 * torch.rand(c, generator=gen))
            m.weight.data.copy_(1 + 0.5 * torch.randn(c, generator=gen))
            m.bias.data.copy_(0.3 * torch.randn(c, generator=gen))
    return model


def _net(block=BasicBlock, layers=(2, 1, 1, 1)):
    torch.manual_seed(0)
    return _randomize_bn(ResNet(block, list(layers), num_classes=4).double().eval())


def _block_inputs(model, x, names):
    mods = dict(model.named_modules())
    hs = {}
    hooks = [
        mods[n].register_forward_pre_hook(lambda m, a, n=n: hs.__setitem__(n, a[0].detach()))
        for n in names
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return hs, mods


def _sum_reference(block):
    """h -> shortcut(h) + branch(h), written from the block's own modules (no final ReLU)."""

    def f(h):
        out = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(h)))))
        if isinstance(block, Bottleneck):
            out = block.bn3(block.conv3(torch.relu(out)))
        return out + (h if block.downsample is None else block.downsample(h))

    return f


def _jac(fn, h):
    j = torch.autograd.functional.jacobian(lambda v: fn(v[None])[0], h, vectorize=True)
    return j.reshape(-1, h.numel())


def _bottleneck_net():
    """Two identity-shortcut Bottlenecks (8 -> 8 channels) and one that downsamples: cheap."""
    torch.manual_seed(0)
    ds = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    net = nn.Sequential(
        Bottleneck(8, 2), Bottleneck(8, 2), Bottleneck(8, 4, stride=2, downsample=ds)
    )
    net.append(nn.Flatten()).append(nn.Linear(16 * 2 * 2, 3))
    return _randomize_bn(net.double().eval())


@pytest.mark.parametrize("kind", [pytest.param("resnet", marks=pytest.mark.slow), "bottlenecks"])
def test_block_factors_match_autograd_on_the_blocks_own_modules(kind):
    if kind == "resnet":  # torchvision's ResNet: blocks of 256, 256, then 256 -> 128, ...
        net, x = _net(BasicBlock, (2, 1, 1, 1)), torch.randn(1, 3, 8, 8, dtype=D64)
        names = ("layer1.0", "layer1.1", "layer2.0", "layer3.0", "layer4.0")
        checked = names[:3]  # autograd references of the 512-channel blocks are slow
    else:
        net, x = _bottleneck_net(), torch.randn(2, 8, 4, 4, dtype=D64)
        names = checked = ("0", "1", "2")
    bs = g.residual_block_jacobians(net, x)
    bb = g.residual_block_jacobians(net, x, part="block")
    assert bs.names == names
    hs, mods = _block_inputs(net, x, bs.names)
    for j, name in enumerate(checked):
        m = mods[name]
        for n in range(len(x)):
            ref_sum = _jac(_sum_reference(m), hs[name][n])
            ref_block = _jac(lambda v, m=m: m(v.clone()), hs[name][n])
            assert bs.factors[j][n].shape == ref_sum.shape
            assert float((bs.factors[j][n] - ref_sum).norm() / ref_sum.norm()) < 1e-10, name
            assert float((bb.factors[j][n] - ref_block).norm() / ref_block.norm()) < 1e-10, name
    # only shape-preserving blocks form a chain; the downsample blocks are reported
    assert bs.chains == ((0, 1),) and bs.chain_names() == names[:2]
    assert bs.skipped == names[2:]
    assert bs.square == (True, True) + (False,) * (len(names) - 2)
    d = math.prod(bs.in_shapes[0])
    assert bs.chain().shape == (len(x), 2, d, d)


@pytest.mark.parametrize("kind", [pytest.param("resnet", marks=pytest.mark.slow), "bottlenecks"])
def test_chain_functions_on_resnet_blocks_against_numpy_and_the_stage_jacobian(kind):
    if kind == "resnet":
        net, x = _net(BasicBlock, (3, 1, 1, 1)), torch.randn(1, 3, 8, 8, dtype=D64)
        first, stage = "layer1.0", net.layer1
    else:
        net, x = _bottleneck_net(), torch.randn(2, 8, 4, 4, dtype=D64)
        first, stage = "0", net[:2]
    bb = g.residual_block_jacobians(net, x, part="block")
    hs, _ = _block_inputs(net, x, [first])
    for n in range(len(x)):
        chain = bb.chain()[n]
        # part="block": the chain's product is the Jacobian of that whole stage (autograd)
        ref = _jac(lambda v: stage(v.clone()), hs[first][n])
        prod = torch.linalg.multi_dot(list(chain.flip(0)))
        assert float((prod - ref).norm() / ref.norm()) < 1e-10
        # chain_slack and chain_profile against numpy on the same matrices
        a = chain.numpy()
        d = a.shape[-1]
        nb = [math.sqrt(d) * f / np.linalg.norm(f) for f in a]
        log_p = math.log(np.linalg.svd(np.linalg.multi_dot(nb[::-1]), compute_uv=False)[0])
        r = [_np_log_sigma1_normalized(f) for f in a]
        cs = g.chain_slack(chain)
        assert cs.log_sigma_chain == pytest.approx(log_p, abs=1e-9)
        assert np.allclose(cs.r, r, atol=1e-10)
        assert cs.total_slack == pytest.approx(sum(r) - log_p, abs=1e-9)
        prof = g.chain_profile(chain)
        assert prof.L == len(a) and prof.d == d and np.allclose(prof.r, r, atol=1e-10)
    # part="sum" factors are the near-identity ones: the chain functions take them too
    fs = g.residual_block_jacobians(net, x).chain()[0]
    prof = g.chain_profile(fs)
    assert np.allclose(prof.r, [_np_log_sigma1_normalized(f) for f in fs.numpy()], atol=1e-10)


def test_library_residual_models_agree_with_layer_factors():
    torch.manual_seed(0)
    m = ResidualMLP(5, 3, width=6, depth=3, residual_scale=0.3).double().eval()
    x = torch.randn(3, 5, dtype=D64)
    bj = g.residual_block_jacobians(m, x)
    assert bj.chains == ((0, 1, 2),) and bj.skipped == ()
    # independent route: layer_factors uses jacrev on the branch, not the operator walk
    assert torch.allclose(bj.chain(), g.layer_factors(m, x, kind="jacobian"), atol=1e-12)
    bb = g.residual_block_jacobians(m, x, part="block")  # no activation after the sum
    assert torch.allclose(bb.chain(), bj.chain())


def test_mutation_dropped_shortcut_or_gate_is_caught(monkeypatch):
    net = _bottleneck_net()
    x = torch.randn(1, 8, 4, 4, dtype=D64, generator=torch.Generator().manual_seed(3))
    hs, mods = _block_inputs(net, x, ["0"])
    ref_sum = _jac(_sum_reference(mods["0"]), hs["0"][0])
    ref_block = _jac(lambda v: mods["0"](v.clone()), hs["0"][0])

    def err(part, ref):
        f = g.residual_block_jacobians(net, x, part=part).factors[0][0]
        return float((f - ref).norm() / ref.norm())

    assert err("sum", ref_sum) < 1e-10 and err("block", ref_block) < 1e-10
    with monkeypatch.context() as mp:  # the shortcut path dropped
        mp.setattr(ResidualFactor, "paths", lambda self, max_entries=0: self.branch.dense())
        assert err("sum", ref_sum) > 1e-3
    with monkeypatch.context() as mp:  # the gate after the sum dropped
        mp.setattr(ResidualFactor, "dense", lambda self, max_entries=0: self.paths())
        assert err("block", ref_block) > 1e-3


def test_errors():
    with pytest.raises(ValueError, match="no residual block"):
        g.residual_block_jacobians(nn.Sequential(nn.Linear(3, 2)).double(), torch.randn(2, 3))
    net = _bottleneck_net()
    with pytest.raises(ValueError, match="part"):
        g.residual_block_jacobians(net, torch.randn(1, 8, 4, 4), part="branch")
    with pytest.raises(ValueError, match="max_entries"):
        g.residual_block_jacobians(net, torch.randn(1, 8, 4, 4), max_entries=1000)
    with pytest.raises(ValueError, match="residual_block_jacobians"):
        g.exponent_profile(net, torch.randn(1, 8, 4, 4))
