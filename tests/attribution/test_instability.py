"""The attribution-instability study: shapes, FD, monotone in noise; on the GPU."""

from __future__ import annotations

import pytest
import torch

import spectral_lab as sl

from ._helpers import _tanh_mlp


def test_attribution_instability_shapes_fd_and_monotone_in_noise():
    m = _tanh_mlp()
    x = torch.randn(40, 6, dtype=torch.float64)
    inst = sl.attribution_instability(m, x, scales=(0.01, 0.3), num_draws=4, fd_pca_dim=4)
    assert inst.delta_grad.shape == (2, 40) and inst.fd.shape == (2,)
    assert inst.perturbed.shape == (2, 40, 6) and inst.clean.shape == (40, 6)
    assert (inst.delta_grad[1].mean() > inst.delta_grad[0].mean()).item()
    assert (inst.fd[1] > inst.fd[0]).item()
    # Delta_grad for small noise ~ ||H delta|| / ||a||: scales linearly with s for a smooth net
    i2 = sl.attribution_instability(m, x, scales=(1e-4, 2e-4), num_draws=4)
    ratio = float(i2.delta_grad[1].mean() / i2.delta_grad[0].mean())
    assert abs(ratio - 2.0) < 0.05
    assert "Δgrad" in repr(inst) and len(inst.summary()) == 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_attributions_follow_the_device():
    m = _tanh_mlp().cuda()
    x = torch.randn(8, 6, dtype=torch.float64, device="cuda")
    inst = sl.attribution_instability(m, x, scales=(0.1,), num_draws=2)
    assert inst.delta_grad.device.type == "cuda"
    assert sl.smoothgrad(m, x, num_draws=2).device.type == "cuda"
