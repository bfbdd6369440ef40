"""The input and parameter Jacobians as rectangular operators of the one operator type, against
dense ``torch.autograd.functional.jacobian`` references (never the library's own products)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab.jacobians import input_jacobian_operator, parameter_jacobian_operator
from tests.test_model_zoo import _TanhNoJvp  # tanh without a forward-mode rule

D = torch.float64


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


def _cnn():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 4)
    ).to(D)
    return m, torch.randn(3, 1, 8, 8, dtype=D)


def _flat_params(m):
    names = [n for n, p in m.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in m.parameters()])

    def unflat(v):
        out, i = {}, 0
        for n, p in zip(names, m.parameters()):
            out[n] = v[i : i + p.numel()].view_as(p)
            i += p.numel()
        return out

    return flat, unflat


def test_input_jacobian_operator_is_the_block_diagonal_jacobian():
    m, x = _cnn()
    op = input_jacobian_operator(m, x)
    assert op.shape == (3 * 4, 3 * 64) and not op.symmetric
    ref = torch.block_diag(
        *[
            torch.autograd.functional.jacobian(lambda z: m(z[None])[0], xi).reshape(4, 64)
            for xi in x
        ]
    )
    assert _rel(op.dense(), ref) < 1e-13
    u = torch.randn(12, dtype=D, generator=torch.Generator().manual_seed(1))
    assert _rel(op.rmv(u), ref.T @ u) < 1e-13
    assert _rel(op.adjoint().dense(), ref.T) < 1e-13


def test_parameter_jacobian_operator_against_autograd_and_its_gram_is_the_ntk():
    m, x = _cnn()
    flat, unflat = _flat_params(m)
    ref = torch.autograd.functional.jacobian(
        lambda v: torch.func.functional_call(m, unflat(v), (x,)).reshape(-1), flat
    )  # (N C, p), first-order reverse mode only
    op = parameter_jacobian_operator(m, x)
    assert op.shape == ref.shape
    assert _rel(op.dense(), ref) < 1e-13
    v = torch.randn(op.dim, dtype=D, generator=torch.Generator().manual_seed(2))
    u = torch.randn(op.out_dim, dtype=D, generator=torch.Generator().manual_seed(3))
    assert abs(float(u @ (op @ v)) - float(op.rmv(u) @ v)) < 1e-10 * float(u.norm() * v.norm())
    K = op.gram("right").dense()  # the block NTK J J^T, (N C) x (N C)
    assert _rel(K, ref @ ref.T) < 1e-12
    top = sl.linalg.lanczos(op.gram(), 1, tol=1e-10).eigenvalues[0]
    assert float(top) == pytest.approx(float(torch.linalg.svdvals(ref)[0]) ** 2, rel=1e-9)


def test_products_are_counted_and_the_solvers_refuse_a_rectangular_operator():
    m, x = _cnn()
    op = parameter_jacobian_operator(m, x)
    op @ torch.zeros(op.dim, dtype=D)
    op.rmv(torch.zeros(op.out_dim, dtype=D))
    assert op.n_products == 2
    with pytest.raises(ValueError, match=r"symmetric operator.*gram"):
        sl.linalg.lanczos(op, 1)
    with pytest.raises(ValueError, match="rmatvec"):
        sl.linalg.LinearOperator(lambda v: v[:2], 3, out_dim=2)


class _NoJvp(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.b(_TanhNoJvp.apply(self.a(x)))


def test_an_operation_without_forward_mode_takes_the_reverse_route():
    torch.manual_seed(0)
    m, x = _NoJvp().to(D), torch.randn(4, 5, dtype=D)
    twin = nn.Sequential(m.a, nn.Tanh(), m.b)
    for build in (input_jacobian_operator, parameter_jacobian_operator):
        op = build(m, x)
        assert op.route == "reverse-over-reverse"
        assert _rel(op.dense(), build(twin, x).dense()) < 1e-13
        assert build(twin, x).route == "forward-over-reverse"


def test_token_ids_give_the_jacobian_at_the_embedding():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Embedding(7, 3), nn.Flatten(), nn.Linear(12, 2)).to(D)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 1]])
    op = input_jacobian_operator(m, ids)
    assert op.shape == (2 * 2, 2 * 12)
    W = m[2].weight.detach()
    assert _rel(op.dense(), torch.block_diag(W, W)) < 1e-14  # d logits / d embeddings = W
