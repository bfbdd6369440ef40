"""Layer factors of models and exponent profiles against dense operators and autograd; the
package's docstring examples."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from spectral_lab import ConvResNet, ResidualMLP
from spectral_lab import geometry as g

from ._helpers import _np_log_sigma1_normalized


def test_circular_conv_singular_values_match_dense_operator():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).double()
    fft = g.circular_conv_singular_values(conv.weight.detach(), 6)
    dense = torch.linalg.svdvals(g.conv_operator_matrix(conv, 6).detach())
    assert torch.allclose(fft, dense, atol=1e-10)
    # zero padding: the dense matrix is the model's own conv (bias removed)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    m = g.conv_operator_matrix(conv, 6, padding="zero").detach()
    ref = torch.nn.functional.conv2d(x, conv.weight, padding=1).reshape(2, -1)
    assert torch.allclose((m @ x.reshape(2, -1).T).T, ref.detach(), atol=1e-10)


def test_layer_factors_static_and_jacobian_against_autograd():
    torch.manual_seed(0)
    m = ResidualMLP(5, 3, width=6, depth=3, residual_scale=0.2).double().eval()
    st = g.layer_factors(m)
    w = m.blocks[1].branch[1].weight
    assert torch.allclose(st[1], torch.eye(6, dtype=torch.float64) + 0.2 * w.detach())
    x = torch.randn(4, 5, dtype=torch.float64)
    jf = g.layer_factors(m, x, kind="jacobian")
    assert jf.shape == (4, 3, 6, 6)
    # independent: dense autograd Jacobian of the block at its input, for sample 2
    h = m.layers[1](m.layers[0](x))  # embed
    h = m.blocks[0](h)
    ref = torch.autograd.functional.jacobian(lambda v: m.blocks[1](v.unsqueeze(0))[0], h[2])
    assert torch.allclose(jf[2, 1], ref, atol=1e-12)
    # the chain of Jacobian factors times the embedding and read-out gives the input Jacobian
    from spectral_lab import input_jacobian

    jin = input_jacobian(m, x)
    chain = torch.linalg.multi_dot([jf[0, 2], jf[0, 1], jf[0, 0]])
    full = m.layers[-1].weight @ chain @ m.layers[1].weight
    assert torch.allclose(full, jin[0], atol=1e-12)


def test_two_matrix_branch_surrogate_and_errors():
    m = ResidualMLP(4, 2, width=5, depth=2, hidden=7, residual_scale=0.3).double()
    st = g.layer_factors(m)
    b = m.blocks[0].branch
    assert torch.allclose(
        st[0], torch.eye(5, dtype=torch.float64) + 0.3 * (b[3].weight @ b[1].weight).detach()
    )
    with pytest.raises(ValueError, match="ResidualBlock"):
        g.layer_factors(torch.nn.Sequential(torch.nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="needs inputs x"):
        g.layer_factors(m, kind="jacobian")
    with pytest.raises(ValueError, match="kind"):
        g.layer_factors(m, kind="weights")


def test_exponent_profiles_mlp_and_conv():
    torch.manual_seed(0)
    m = ResidualMLP(8, 3, width=16, depth=6, residual_scale=0.1).double()
    p = g.exponent_profile(m)
    assert p.alpha.shape == (6,) and p.L == 6 and p.d == 16
    # static factors are I + scale W (independent: the weights themselves), r_l = log σ_1 of the
    # normalised factor and log σ_1(P) of the dense product, both in numpy
    ws = [blk.branch[1].weight.detach().numpy() for blk in m.blocks]
    f = [np.eye(16) + 0.1 * w for w in ws]
    nb = [4.0 * x / np.linalg.norm(x) for x in f]
    assert np.allclose(p.r, [_np_log_sigma1_normalized(x) for x in f], atol=1e-12)
    log_p = math.log(np.linalg.svd(np.linalg.multi_dot(nb[::-1]), compute_uv=False)[0])
    assert p.slack.log_sigma_chain == pytest.approx(log_p, abs=1e-10)
    assert p.slack.total_slack == pytest.approx(p.r.sum() - log_p, abs=1e-10)
    fits = [g.power_law_fit(s) for s in torch.linalg.svdvals(g.layer_factors(m))]
    assert np.allclose(p.alpha, [f.alpha_mle for f in fits])
    assert np.allclose(p.budget.drift, np.abs(np.diff(p.alpha)))
    x = torch.randn(3, 8, dtype=torch.float64)
    pj = g.exponent_profile(m, x, kind="jacobian")
    assert len(pj.per_sample) == 3
    assert np.allclose(pj.alpha, np.mean([q.alpha for q in pj.per_sample], 0))
    # each sample's chain is the chain of that sample's Jacobian factors (numpy recomputation)
    jf = g.layer_factors(m, x, kind="jacobian").numpy()
    for q, fs in zip(pj.per_sample, jf):
        assert np.allclose(q.r, [_np_log_sigma1_normalized(a) for a in fs], atol=1e-12)
        nbj = [4.0 * a / np.linalg.norm(a) for a in fs]
        lp = math.log(np.linalg.svd(np.linalg.multi_dot(nbj[::-1]), compute_uv=False)[0])
        assert q.slack.log_sigma_chain == pytest.approx(lp, abs=1e-10)
    c = ConvResNet(1, 3, image_size=6, channels=2, depth=3, pool=2).double()
    xc = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    pc = g.exponent_profile(c, xc)
    assert pc.d == 2 * 36
    fc = g.layer_factors(c, xc).numpy()
    assert np.allclose(pc.r, [_np_log_sigma1_normalized(a) for a in fc], atol=1e-12)
    # static conv factor spectra are the FFT ones of I + scale*K (circular padding)
    sv = torch.linalg.svdvals(g.layer_factors(c, xc)[0])
    conv = c.blocks[0].branch[1]
    dense = torch.eye(72, dtype=torch.float64) + c.blocks[0].scale * g.conv_operator_matrix(conv, 6)
    assert torch.allclose(sv, torch.linalg.svdvals(dense.detach()), atol=1e-10)
    pcj = g.exponent_profile(c, xc, kind="jacobian")
    assert pcj.alpha.shape == (3,)
    fcj = g.layer_factors(c, xc, kind="jacobian").numpy()[1]
    assert np.allclose(pcj.per_sample[1].r, [_np_log_sigma1_normalized(a) for a in fcj])
    with pytest.raises(ValueError, match="feature-map size"):
        g.layer_factors(c)


def test_small_residual_scale_keeps_spectra_near_identity():
    torch.manual_seed(0)
    rs = []
    for scale in (0.01, 0.1, 0.5):
        torch.manual_seed(0)
        m = ResidualMLP(8, 3, width=32, depth=4, residual_scale=scale).double()
        rs.append(g.exponent_profile(m).r.mean())
    assert rs[0] < rs[1] < rs[2]
    assert rs[1] / rs[0] == pytest.approx(10, rel=0.2)  # first order in the scale


def test_docstring_examples():
    import doctest
    import pkgutil

    mods = [g] + [sys.modules[f"{g.__name__}.{m.name}"] for m in pkgutil.iter_modules(g.__path__)]
    res = [doctest.testmod(m, verbose=False) for m in mods]  # the package and each submodule
    failed, attempted = sum(r.failed for r in res), sum(r.attempted for r in res)
    assert failed == 0 and attempted > 10


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_profiles_on_cuda_match_cpu():
    torch.manual_seed(0)
    m = ResidualMLP(8, 3, width=16, depth=4, residual_scale=0.2).double()
    x = torch.randn(3, 8, dtype=torch.float64)
    cpu = g.exponent_profile(m, x, kind="jacobian")
    f = g.layer_factors(m.cuda(), x.cuda(), kind="jacobian")
    assert f.device.type == "cuda"
    gpu = g.exponent_profile(m, x.cuda(), kind="jacobian")
    assert np.allclose(cpu.alpha, gpu.alpha, atol=1e-8)
