"""Parameter Jacobians and their products against dense autograd references (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spectral_lab import MLP, SmallCNN, _func
from spectral_lab.jacobians import parameter_jacobian, parameter_jvp, parameter_vjp

D = torch.float64


def dense_reference(model, x):
    params = _func.trainable(model)
    flat = _func.flatten(params)

    def f(theta):
        return torch.func.functional_call(model, _func.unflatten(theta, params), (x,))

    return torch.autograd.functional.jacobian(f, flat)  # (N, C, p)


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return MLP(5, 3, width=7, depth=3, activation="tanh").double()


def test_parameter_jacobian_matches_autograd(mlp):
    x = torch.randn(6, 5, dtype=D)
    J = parameter_jacobian(mlp, x)
    assert J.shape == (6, 3, sum(p.numel() for p in mlp.parameters()))
    torch.testing.assert_close(J, dense_reference(mlp, x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(parameter_jacobian(mlp, x, chunk_size=4), J)


def test_parameter_jacobian_cnn():
    torch.manual_seed(1)
    m = SmallCNN(1, 4, image_size=8, channels=(2, 3)).double()
    x = torch.randn(3, 1, 8, 8, dtype=D)
    torch.testing.assert_close(
        parameter_jacobian(m, x), dense_reference(m, x), rtol=1e-10, atol=1e-12
    )


def test_products_match_explicit_jacobian(mlp):
    x = torch.randn(6, 5, dtype=D)
    J = parameter_jacobian(mlp, x)
    v = torch.randn(J.shape[2], dtype=D)
    u = torch.randn(6, 3, dtype=D)
    torch.testing.assert_close(parameter_jvp(mlp, x, v), J @ v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        parameter_vjp(mlp, x, u), torch.einsum("ncp,nc->p", J, u), rtol=1e-12, atol=1e-12
    )


def test_kronecker_block_identity_bias_free_mlp():
    """Spec 3.2: ||J_theta||_F^2 = sum_l ||h_{l-1}||^2 ||G_l||_F^2 for a bias-free MLP."""
    torch.manual_seed(2)
    m = MLP(4, 3, width=6, depth=3, activation="tanh", bias=False).double()
    x = torch.randn(1, 4, dtype=D)
    J = parameter_jacobian(m, x)[0]
    linears = [mod for mod in m.layers if isinstance(mod, nn.Linear)]
    hs, h = [x[0]], x[0]
    zs = []
    for i, lin in enumerate(linears):
        z = lin.weight @ h
        zs.append(z)
        h = torch.tanh(z) if i < len(linears) - 1 else z
        hs.append(h)
    total = 0.0
    for idx in range(len(linears)):
        # G_l = df/dz_l = W_L D_{L-1} ... W_{l+1} D_l
        G = torch.eye(3, dtype=D)
        for j in range(len(linears) - 1, idx, -1):
            G = G @ linears[j].weight @ torch.diag(1 - torch.tanh(zs[j - 1]) ** 2)
        total += hs[idx].norm() ** 2 * G.norm() ** 2
    assert float((J**2).sum()) == pytest.approx(float(total), rel=1e-12)


def test_first_order_parameter_sensitivity(mlp):
    """Spec 6.3: ||f_{theta+Delta} - f_theta - J Delta|| = O(||Delta||^2)."""
    x = torch.randn(4, 5, dtype=D)
    params = _func.trainable(mlp)
    theta = _func.flatten(params)
    d = torch.randn_like(theta)
    d = d / d.norm()
    f0 = mlp(x)
    Jd = parameter_jvp(mlp, x, d)
    ratios = []
    for eps in (1e-2, 1e-3, 1e-4):
        f1 = torch.func.functional_call(mlp, _func.unflatten(theta + eps * d, params), (x,))
        ratios.append(float((f1 - f0 - eps * Jd).norm()) / eps**2)
    assert max(ratios) / min(ratios) < 1.5  # remainder scales like eps^2
    # sigma_1(J) bound at first order
    s1 = torch.linalg.matrix_norm(parameter_jacobian(mlp, x).reshape(-1, theta.numel()), ord=2)
    f1 = torch.func.functional_call(mlp, _func.unflatten(theta + 1e-6 * d, params), (x,))
    assert float((f1 - f0).norm()) <= float(s1) * 1e-6 * (1 + 1e-4)


def test_eval_mode_is_used_and_restored():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2)).double()
    x = torch.randn(4, 3, dtype=D)
    m.train()
    J = parameter_jacobian(m, x)
    assert m.training
    m.eval()
    torch.testing.assert_close(J, dense_reference(m, x))


def test_errors(mlp):
    x = torch.randn(3, 5, dtype=D)
    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_jacobian(nn.Flatten(), x)
    # inputs are cast to the parameters' dtype and device (one rule for the whole library)
    J32 = parameter_jacobian(mlp, x.float())
    assert J32.dtype == D
    torch.testing.assert_close(J32, parameter_jacobian(mlp, x.float().double()))
    with pytest.raises(TypeError, match="integer"):
        parameter_jacobian(mlp, torch.ones(3, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        parameter_jacobian(mlp, torch.zeros(0, 5, dtype=D))
    with pytest.raises(ValueError, match="NaN"):
        parameter_jacobian(mlp, torch.full((3, 5), float("nan"), dtype=D))
    with pytest.raises(ValueError, match="flat vector of length"):
        parameter_jvp(mlp, x, torch.zeros(5, dtype=D))
    with pytest.raises(ValueError, match="shaped like the model output"):
        parameter_vjp(mlp, x, torch.zeros(3, 2, dtype=D))
    with pytest.raises(ValueError, match="chunk_size"):
        parameter_jacobian(mlp, x, chunk_size=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_follows_device(mlp):
    m = mlp.cuda()
    x = torch.randn(3, 5, dtype=D, device="cuda")
    assert parameter_jacobian(m, x).device.type == "cuda"
