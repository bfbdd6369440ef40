"""operator_product: the explicit factor product against autograd's Jacobian."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab.models import ResidualBlock

D64 = torch.float64
ACTS = ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu"]


def autograd_jacobian(model, x):
    j = torch.autograd.functional.jacobian(lambda z: model(z[None])[0], x)
    return j.reshape(j.shape[0], -1)


def rel(a, b):
    return float((a - b).norm() / b.norm())


def models():
    torch.manual_seed(0)
    out = [(f"mlp-{a}", sl.MLP(20, 5, width=32, depth=4, activation=a), (20,)) for a in ACTS]
    out += [
        ("cnn-max", sl.SmallCNN(1, 10, image_size=8, channels=(4, 6), pool="max"), (1, 8, 8)),
        ("cnn-avg", sl.SmallCNN(1, 10, image_size=8, channels=(4, 6), pool="avg"), (1, 8, 8)),
        ("cnn-none-gelu", sl.SmallCNN(2, 3, 6, (3,), activation="gelu", pool=None), (2, 6, 6)),
        ("resmlp", sl.ResidualMLP(20, 5, width=16, depth=3, activation="silu"), (20,)),
        ("resmlp-hidden", sl.ResidualMLP(20, 5, width=16, depth=2, hidden=8), (20,)),
        ("convresnet", sl.ConvResNet(1, 10, 8, channels=4, depth=2, pool=4), (1, 8, 8)),
    ]
    return out


@pytest.mark.parametrize("name,model,shape", models(), ids=[m[0] for m in models()])
def test_dense_equals_autograd_jacobian(name, model, shape):
    model = model.double().eval()
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(shape, dtype=D64, generator=g)
        op = sl.operator_product(model, x)
        ref = autograd_jacobian(model, x)
        assert op.dense().shape == (op.n_outputs, op.d) == ref.shape
        assert rel(op.dense(), ref) < 1e-10
        # the last partial product (pushed from the input side) is the same matrix
        assert rel(op.partial_products()[-1], ref) < 1e-10
        # matrix-free products agree with the dense matrix
        v = torch.randn(4, op.d, dtype=D64, generator=g)
        u = torch.randn(4, op.n_outputs, dtype=D64, generator=g)
        assert torch.allclose(op.matvec(v), v @ ref.T, atol=1e-12)
        assert torch.allclose(op.rmatvec(u), u @ ref, atol=1e-12)
        # every factor's dense form is consistent with its own matvec / rmatvec
        for f in op.factors:
            m = f.dense()
            w = torch.randn(2, f.n_in, dtype=D64, generator=g)
            assert torch.allclose(f.matvec(w), w @ m.T, atol=1e-12), f.name
            z = torch.randn(2, f.n_out, dtype=D64, generator=g)
            assert torch.allclose(f.rmatvec(z), z @ m, atol=1e-12), f.name


def test_linear_network_is_weight_product():
    model = sl.MLP(6, 3, width=5, depth=3, activation="identity").double()
    x = torch.randn(6, dtype=D64)
    op = sl.operator_product(model, x)
    ws = [m.weight for m in model.layers if isinstance(m, nn.Linear)]
    assert op.names == ["W1", "W2", "W3"]
    assert torch.allclose(op.dense(), ws[2] @ ws[1] @ ws[0], atol=1e-13)


def test_factor_order_and_gates_are_unit_indicators_for_relu():
    model = sl.MLP(8, 3, width=6, depth=3).double()
    x = torch.randn(8, dtype=D64)
    op = sl.operator_product(model, x)
    assert op.names == ["W1", "D1", "W2", "D2", "W3"]
    assert repr(op) == "OperatorProduct(3 x 8 = W3 · D2 · W2 · D1 · W1)"
    z1 = model.layers[1](x[None])[0]
    assert torch.equal(op.factors[1].diag, (z1 > 0).double())
    assert [f.kind for f in op.factors] == ["weight", "gate", "weight", "gate", "weight"]


@pytest.mark.parametrize("act", ACTS)
def test_activation_derivative_matches_finite_differences(act):
    m = sl.models.activation(act).double()
    z = torch.linspace(-4, 4, 101, dtype=D64) + 1e-3  # avoid the ReLU kink at 0
    h = 1e-6
    fd = (m(z + h) - m(z - h)) / (2 * h)
    assert torch.allclose(sl.operators.activation_derivative(m, z), fd, atol=1e-8)


def test_gelu_tanh_approximation_derivative():
    m = nn.GELU(approximate="tanh").double()
    z = torch.linspace(-4, 4, 51, dtype=D64)
    fd = (m(z + 1e-6) - m(z - 1e-6)) / 2e-6
    assert torch.allclose(sl.operators.activation_derivative(m, z), fd, atol=1e-8)


def test_sup_derivative_constants():
    z = torch.linspace(-20, 20, 400001, dtype=D64)
    for name, sup in sl.operators.ACTIVATION_SUP_DERIVATIVE.items():
        m = getattr(nn, name)()
        assert abs(float(sl.operators.activation_derivative(m, z).abs().max()) - sup) < 1e-6, name


def test_partial_spectra_shapes_and_kinds():
    model = sl.SmallCNN(1, 10, image_size=8, channels=(4,), pool="max").double()
    op = sl.operator_product(model, torch.randn(1, 8, 8, dtype=D64))
    sp = op.partial_spectra()
    assert [n for n, _ in sp] == ["W1", "D1", "P1", "W2"]
    assert sp[0][1].shape == (64,) and sp[-1][1].shape == (10,)
    assert [n for n, _ in op.partial_spectra(kinds=("weight",))] == ["W1", "W2"]
    # max pool = selection matrix: 0/1 entries, one 1 per row
    p = op.factors[2].dense()
    assert set(p.unique().tolist()) <= {0.0, 1.0} and torch.all(p.sum(1) == 1)


def test_norm_bounds_of_spec_6_2():
    for name, model, shape in models():
        model = model.double()
        x = torch.randn(shape, dtype=D64)
        op = sl.operator_product(model, x)
        b = sl.sensitivity.norm_bounds(op)
        assert b.holds(), name
        # the factor product is not trivially infinite, and the exact Jacobian norm is below it
        assert 0 < b.jacobian_norm <= b.product_at_x * (1 + 1e-9) < float("inf")
    # MLP closed form: the global bound is (sup|phi'|)^(L-1) prod ||W_l||_2
    model = sl.MLP(10, 4, width=8, depth=3, activation="sigmoid").double()
    op = sl.operator_product(model, torch.randn(10, dtype=D64))
    ws = [m.weight.detach() for m in model.layers if isinstance(m, nn.Linear)]
    expect = 0.25**2 * torch.prod(torch.stack([torch.linalg.matrix_norm(w, 2) for w in ws]))
    assert abs(op.sup_norm_bound() - float(expect)) < 1e-12


def test_path_bound_over_a_segment():
    # ||f(x+delta) - f(x)|| <= sup_t ||J(x + t delta)||_2 ||delta|| <= global bound ||delta||
    model = sl.MLP(10, 4, width=16, depth=3, activation="tanh").double()
    x, delta = torch.randn(10, dtype=D64), torch.randn(10, dtype=D64)
    ts = torch.linspace(0, 1, 256, dtype=D64)
    J = sl.input_jacobian(model, x[None] + ts[:, None] * delta)
    sup = float(torch.linalg.matrix_norm(J, ord=2).max())
    with torch.no_grad():
        change = float((model((x + delta)[None]) - model(x[None])).norm())
    assert change <= 1.01 * sup * float(delta.norm())
    assert sup <= sl.operator_product(model, x).sup_norm_bound()


def test_residual_factor_is_identity_plus_scaled_branch():
    block = ResidualBlock(nn.Sequential(nn.Tanh(), nn.Linear(5, 5)), scale=0.3)
    model = nn.Sequential(nn.Linear(4, 5), block, nn.Linear(5, 2)).double()
    x = torch.randn(4, dtype=D64)
    op = sl.operator_product(model, x)
    r = op.factors[1]
    assert r.kind == "residual" and r.name == "R1"
    eye = torch.eye(5, dtype=D64)
    assert torch.allclose(r.dense(), eye + 0.3 * r.branch.dense(), atol=1e-14)
    assert rel(op.dense(), autograd_jacobian(model, x)) < 1e-10


def test_plain_sequential_and_nested_sequential_are_walked():
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Linear(4, 2)).double()
    x = torch.randn(3, dtype=D64)
    assert rel(sl.operator_product(model, x).dense(), autograd_jacobian(model, x)) < 1e-12


def test_unknown_layers_become_generic_factors_equal_to_autograd():
    # ELU and Softplus have no walker: each is ONE generic factor G, exact against autograd
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(3, 4), nn.ELU(), nn.Linear(4, 4), nn.Softplus(), nn.Linear(4, 2)
    )
    model = model.double()
    x = torch.randn(3, dtype=D64)
    op = sl.operator_product(model, x)
    assert op.names == ["W1", "G1", "W2", "G2", "W3"]
    assert [f.what for f in op.generic_factors()] == ["ELU", "Softplus"]
    assert rel(op.dense(), autograd_jacobian(model, x)) < 1e-12
    # G1 is ELU's derivative: exp(z) for z < 0, 1 for z > 0
    z = model[0](x[None])[0].detach()
    expect = torch.where(z > 0, torch.ones_like(z), torch.exp(z))
    assert torch.allclose(op.factors[1].dense(), torch.diag(expect), atol=1e-14)
    assert op.factors[1].sup_norm() == float("inf")  # no data-free bound for an unknown map


def test_errors():
    with pytest.raises(TypeError, match="dtype|float64|float32"):
        sl.operator_product(sl.MLP(3, 2), torch.randn(3, dtype=D64))
    with pytest.raises(ValueError, match="NaN"):
        sl.operator_product(sl.MLP(3, 2), torch.tensor([1.0, float("nan"), 0.0]))
    with pytest.raises(TypeError, match="integer"):
        sl.operator_product(sl.MLP(3, 2), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="ONE input"):
        sl.operator_product(sl.MLP(3, 2), torch.randn(5, 3))

    class NoForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="could not run.*forward"):
        sl.operator_product(NoForward(), torch.randn(2))

    class Tokens(nn.Module):  # (1, n, d) output: not (1, C) logits
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x)

    with pytest.raises(ValueError, match=r"\(1, C\) logits.*flatten"):
        sl.operator_product(Tokens(), torch.randn(3, 2))
    op = sl.operator_product(sl.SmallCNN(1, 2, 4, (2,)), torch.randn(1, 4, 4))
    with pytest.raises(ValueError, match="max_entries"):
        op.factors[0].dense(max_entries=2)
