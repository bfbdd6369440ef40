"""input_jacobian: every route against torch.autograd.functional.jacobian and finite differences."""

from __future__ import annotations

import pytest
import torch

import spectral_lab as sl

D64 = torch.float64


def reference(model, x):
    return torch.stack(
        [
            torch.autograd.functional.jacobian(lambda z: model(z[None])[0], xi).reshape(
                -1, xi.numel()
            )
            for xi in x
        ]
    )


CASES = [
    ("mlp", lambda: sl.MLP(12, 4, width=16, depth=3, activation="tanh"), (12,)),
    ("cnn-max", lambda: sl.SmallCNN(1, 5, image_size=8, channels=(3,), pool="max"), (1, 8, 8)),
    ("cnn-avg", lambda: sl.SmallCNN(1, 5, image_size=8, channels=(3,), pool="avg"), (1, 8, 8)),
    ("resmlp", lambda: sl.ResidualMLP(12, 4, width=8, depth=2), (12,)),
    ("convresnet", lambda: sl.ConvResNet(1, 5, 8, channels=3, depth=2, pool=4), (1, 8, 8)),
]


@pytest.mark.parametrize("route", ["auto", "backward", "vmap", "forward"])
@pytest.mark.parametrize("name,make,shape", CASES, ids=[c[0] for c in CASES])
def test_routes_match_autograd(name, make, shape, route):
    torch.manual_seed(0)
    model = make().double()
    x = torch.randn(5, *shape, dtype=D64)
    J = sl.input_jacobian(model, x, route=route)
    assert J.shape == (5, model(x).shape[1], x[0].numel())
    assert J.dtype == D64 and not J.requires_grad
    assert torch.allclose(J, reference(model, x), atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 100])
def test_chunking_does_not_change_the_result(chunk):
    model = sl.SmallCNN(1, 3, image_size=6, channels=(2,)).double()
    x = torch.randn(5, 1, 6, 6, dtype=D64)
    full = sl.input_jacobian(model, x)
    assert torch.equal(sl.input_jacobian(model, x, chunk_size=chunk), full)


def test_central_finite_differences():
    model = sl.MLP(10, 3, width=8, depth=3, activation="silu").double()
    x, v = torch.randn(4, 10, dtype=D64), torch.randn(4, 10, dtype=D64)
    h = 1e-6
    fd = (model(x + h * v) - model(x - h * v)) / (2 * h)
    jv = torch.einsum("ncd,nd->nc", sl.input_jacobian(model, x), v)
    assert torch.allclose(fd, jv, atol=1e-8)


def test_matches_operator_product_and_float32():
    model = sl.SmallCNN(1, 4, image_size=8, channels=(3,))
    x = torch.randn(3, 1, 8, 8)
    J = sl.input_jacobian(model, x)
    assert J.dtype == torch.float32
    for i in range(3):
        assert torch.allclose(J[i], sl.operator_product(model, x[i]).dense(), atol=1e-5)


def test_forward_route_for_few_inputs():
    # d < C: auto picks forward mode; still exact
    model = sl.MLP(2, 7, width=5).double()
    x = torch.randn(4, 2, dtype=D64)
    assert torch.allclose(sl.input_jacobian(model, x), reference(model, x), atol=1e-12)


def test_errors():
    model = sl.MLP(4, 2)
    with pytest.raises(ValueError, match="NaN"):
        sl.input_jacobian(model, torch.full((2, 4), float("nan")))
    with pytest.raises(TypeError, match="integer"):
        sl.input_jacobian(model, torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 2"):
        sl.input_jacobian(model, torch.randn(4))
    with pytest.raises(ValueError, match="empty"):
        sl.input_jacobian(model, torch.randn(0, 4))
    with pytest.raises(ValueError, match="chunk_size"):
        sl.input_jacobian(model, torch.randn(2, 4), chunk_size=0)
    with pytest.raises(ValueError, match="route"):
        sl.input_jacobian(model, torch.randn(2, 4), route="magic")
    x64 = torch.randn(2, 4, dtype=D64)  # cast to the model's float32, not refused
    J = sl.input_jacobian(model, x64)
    assert J.dtype == torch.float32
    assert torch.equal(J, sl.input_jacobian(model, x64.float()))
    with pytest.raises(ValueError, match="could not run"):
        sl.input_jacobian(model, torch.randn(2, 5))
    with pytest.raises(TypeError, match="Module"):
        sl.input_jacobian(lambda t: t, torch.randn(2, 4))
    # a model left in train mode is analysed in eval mode (one policy, by behaviour), and its own
    # mode is left as it was
    drop = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Dropout(0.5)).train()
    x = torch.randn(3, 4)
    J = sl.input_jacobian(drop, x)
    assert drop.training and drop[1].training
    assert torch.equal(J, drop[0].weight.detach().expand(3, 2, 4))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_routes_and_operator_product():
    model = sl.SmallCNN(1, 5, image_size=8, channels=(3,)).double().cuda()
    x = torch.randn(4, 1, 8, 8, dtype=D64, device="cuda")
    ref = reference(model.cpu(), x.cpu())
    model.cuda()
    for route in ("backward", "vmap"):
        J = sl.input_jacobian(model, x, route=route)
        assert J.device.type == "cuda"
        assert torch.allclose(J.cpu(), ref, atol=1e-12)
    op = sl.operator_product(model, x[0])
    assert op.dense().device.type == "cuda"
    assert torch.allclose(op.dense().cpu(), ref[0], atol=1e-12)
    s = sl.singular_values(J)
    assert s.device.type == "cuda" and sl.spectral_entropy(J).device.type == "cuda"
    b = sl.sensitivity_bounds(J, 0.1)
    mc = sl.sensitivity.monte_carlo_sensitivity(model, x, 0.1, 100)
    assert b.typical.device.type == "cuda" and mc.device.type == "cuda"
