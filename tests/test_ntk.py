"""The empirical NTK against explicit Jacobian products; linearised dynamics (spec 6.6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spectral_lab import MLP, SmallCNN
from spectral_lab.jacobians import parameter_jacobian
from spectral_lab.ntk import (
    block_to_matrix,
    gd_residuals,
    label_noise_filter,
    label_noise_response,
    linearized_residuals,
    ntk_eigs,
    ntk_gram,
    ntk_operator,
)

D = torch.float64


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return MLP(4, 3, width=12, depth=3, activation="tanh").double()


def explicit(model, x1, x2):
    J1, J2 = parameter_jacobian(model, x1), parameter_jacobian(model, x2)
    return torch.stack([torch.stack([a @ b.T for b in J2]) for a in J1])  # (N1, N2, C, C)


@pytest.mark.parametrize("method", ["jacobian", "ntvp", "auto"])
def test_gram_matches_explicit_products(mlp, method):
    x1, x2 = torch.randn(5, 4, dtype=D), torch.randn(3, 4, dtype=D)
    ref = explicit(mlp, x1, x2)
    torch.testing.assert_close(ntk_gram(mlp, x1, x2, method=method, kind="block"), ref)
    torch.testing.assert_close(
        ntk_gram(mlp, x1, x2, method=method), torch.diagonal(ref, dim1=2, dim2=3).sum(-1)
    )


def test_gram_symmetric_psd_and_methods_agree_on_cnn():
    torch.manual_seed(1)
    m = SmallCNN(1, 3, image_size=8, channels=(2, 3)).double()
    x = torch.randn(6, 1, 8, 8, dtype=D)
    Kj = ntk_gram(m, x, method="jacobian", kind="block")
    Kn = ntk_gram(m, x, method="ntvp", kind="block", chunk_size=5)
    torch.testing.assert_close(Kj, Kn)
    M = block_to_matrix(Kj)
    torch.testing.assert_close(M, M.T)
    assert torch.linalg.eigvalsh(M).min() > -1e-10 * torch.linalg.eigvalsh(M).max()
    Ks = ntk_gram(m, x)
    torch.testing.assert_close(Ks, Ks.T)
    assert torch.linalg.eigvalsh(Ks).min() > -1e-10 * Ks.diagonal().max()
    # the scalar NTK is the trace of the blocks, and tr K = ||J||_F^2
    torch.testing.assert_close(Ks, torch.diagonal(Kj, dim1=2, dim2=3).sum(-1))
    assert float(Ks.trace()) == pytest.approx(
        float((parameter_jacobian(m, x) ** 2).sum()), rel=1e-12
    )


@pytest.mark.parametrize("kind", ["scalar", "block"])
def test_operator_and_eigs_match_dense(mlp, kind):
    x = torch.randn(7, 4, dtype=D)
    K = ntk_gram(mlp, x, kind=kind)
    M = block_to_matrix(K) if kind == "block" else K
    op = ntk_operator(mlp, x, kind=kind, chunk_size=3)
    v = torch.randn(op.dim, dtype=D)
    torch.testing.assert_close(op @ v, M @ v)
    V = torch.randn(op.dim, 2, dtype=D)
    torch.testing.assert_close(op @ V, M @ V)
    ref = torch.linalg.eigvalsh(M).flip(0)[:4]
    for method in ("dense", "lanczos"):
        r = ntk_eigs(mlp, x, k=4, kind=kind, method=method, tol=1e-10)
        torch.testing.assert_close(r.eigenvalues, ref, rtol=1e-6, atol=0)


def spec66_setup():
    torch.manual_seed(0)
    m = MLP(4, 1, width=64, depth=2, activation="tanh").double()
    x = torch.randn(20, 4, dtype=D)
    y = torch.randn(20, 1, dtype=D)
    return m, x, y


def test_spec66_linearised_gd_matches_prediction_and_diverges_above_2_over_lambda_max():
    m, x, y = spec66_setup()
    K = block_to_matrix(ntk_gram(m, x, kind="block"))
    lam_max = float(torch.linalg.eigvalsh(K)[-1])
    r0 = (m(x) - y).detach().reshape(-1)
    eta = 1.0 / lam_max
    actual = gd_residuals(m, x, y, eta, 50, linearized=True)
    pred = linearized_residuals(K, r0, eta, 50)
    assert float((actual - pred).abs().max()) < 1e-10
    # a wrong kernel (scaled by 1.01) is visibly off
    assert float((actual - linearized_residuals(1.01 * K, r0, eta, 50)).abs().max()) > 1e-4
    # stability threshold 2 / lambda_max
    stable = gd_residuals(m, x, y, 1.95 / lam_max, 150, linearized=True)
    unstable = gd_residuals(m, x, y, 2.05 / lam_max, 150, linearized=True)
    assert stable[-1].norm() < stable[0].norm()
    assert unstable[-1].norm() > 10 * unstable[0].norm()
    # decay bound: K is positive definite (wide net, n < p), and for eta <= 1/lambda_max every mode
    # contracts by |1 - eta lambda_i| <= 1 - eta lambda_min, so
    #   c_min (1 - eta lambda_min)^k <= ||r_k|| <= (1 - eta lambda_min)^k ||r_0|| <= exp(-eta lambda_min k) ||r_0||
    # (c_min = |<u_min, r_0>|), checked on the network's linearised GD trajectory with lambda_min from an
    # independent dense K = J J^T (J_theta by torch.autograd.functional.jacobian)
    params = dict(m.named_parameters())
    names = list(params)
    theta0 = torch.cat([params[k].detach().reshape(-1) for k in names])

    def f(theta):
        ps = {
            k: t.reshape(params[k].shape)
            for k, t in zip(names, theta.split([params[k].numel() for k in names]))
        }
        return torch.func.functional_call(m, ps, (x,)).reshape(-1)

    Jt = torch.autograd.functional.jacobian(f, theta0)
    lam, U = torch.linalg.eigh(Jt @ Jt.T)
    torch.testing.assert_close(lam, torch.linalg.eigvalsh(K), rtol=1e-8, atol=1e-12)
    assert lam[0] > 0
    k = torch.arange(actual.shape[0], dtype=D)
    norms = actual.reshape(len(k), -1).norm(dim=1)
    rate = 1 - eta * lam[0]
    assert bool((norms <= rate**k * r0.norm() * (1 + 1e-10)).all())
    assert bool((rate**k <= torch.exp(-eta * lam[0] * k)).all())
    assert bool((norms >= (U[:, 0] @ r0).abs() * rate**k * (1 - 1e-10)).all())
    # the rate is the slowest mode's and no faster: far along the dense linear
    # recursion the bound with 2 lambda_min fails, the true one still holds
    A = torch.eye(len(lam), dtype=D) - eta * (Jt @ Jt.T)
    far = int(5 / float(eta * lam[0]))
    r_far = torch.linalg.matrix_power(A, far) @ r0
    assert float(r_far.norm()) <= float(torch.exp(-eta * lam[0] * far) * r0.norm())
    assert float(r_far.norm()) > float(torch.exp(-2 * eta * lam[0] * far) * r0.norm())


def test_wide_network_tracks_linearised_prediction():
    m, x, y = spec66_setup()
    K = block_to_matrix(ntk_gram(m, x, kind="block"))
    eta = 0.5 / float(torch.linalg.eigvalsh(K)[-1])
    net = gd_residuals(m, x, y, eta, 100)
    pred = linearized_residuals(K, net[0], eta, 100)
    rel = (net - pred).norm(dim=1) / net[0].norm()
    assert float(rel.max()) < 0.05
    assert not any(p.grad is not None for p in m.parameters())


def test_label_noise_propagation_and_bound():
    m, x, _ = spec66_setup()
    K = block_to_matrix(ntk_gram(m, x, kind="block"))
    lam, U = torch.linalg.eigh(K)
    eta = 1.0 / float(lam[-1])
    dy = torch.randn(20, dtype=D, generator=torch.Generator().manual_seed(4))
    for k in (1, 5, 50):
        df = label_noise_response(K, dy, eta, k)
        # (I - (I - eta K)^k) dy computed by matrix powers, independently
        ref = dy - torch.linalg.matrix_power(torch.eye(20, dtype=D) - eta * K, k) @ dy
        torch.testing.assert_close(df, ref)
        assert float(df.norm()) <= min(1.0, k * eta * float(lam[-1])) * float(dy.norm()) + 1e-12
        # per eigen-direction the fitted fraction is the filter 1 - (1 - eta lambda)^k
        torch.testing.assert_close(U.T @ df, label_noise_filter(lam, eta, k) * (U.T @ dy))
    filt = label_noise_filter(lam, eta, 10)
    assert filt[-1] > filt[0]  # top eigen-directions are fitted first


def test_errors(mlp):
    x = torch.randn(3, 4, dtype=D)
    with pytest.raises(ValueError, match="method must be"):
        ntk_gram(mlp, x, method="fast")
    with pytest.raises(ValueError, match="kind must be"):
        ntk_gram(mlp, x, kind="full")
    with pytest.raises(ValueError, match="same per-sample shape"):
        ntk_gram(mlp, x, torch.randn(2, 5, dtype=D))
    with pytest.raises(ValueError, match="k must be"):
        ntk_eigs(mlp, x, k=4)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ntk_gram(nn.Flatten(), x)
    with pytest.raises(ValueError, match="empty"):
        ntk_gram(mlp, torch.zeros(0, 4, dtype=D))
    with pytest.raises(ValueError, match="lr must be"):
        linearized_residuals(torch.eye(3, dtype=D), torch.ones(3, dtype=D), -1.0, 3)
    with pytest.raises(ValueError, match="r0 has"):
        linearized_residuals(torch.eye(3, dtype=D), torch.ones(4, dtype=D), 0.1, 3)
    with pytest.raises(ValueError, match="output's shape"):
        gd_residuals(mlp, x, torch.zeros(3, 1, dtype=D), 0.1, 2)


def test_auto_switches_to_ntvp_under_a_tiny_memory_budget(mlp):
    x = torch.randn(4, 4, dtype=D)
    torch.testing.assert_close(
        ntk_gram(mlp, x, method="auto", memory_budget=1), ntk_gram(mlp, x, method="jacobian")
    )


def test_contraction_bound_of_linearised_gd():
    """||r_k|| <= max_i |1 - eta lambda_i|^k ||r_0||; fails for a kernel with a wrong scale."""
    m, x, y = spec66_setup()
    K = block_to_matrix(ntk_gram(m, x, kind="block"))
    lam = torch.linalg.eigvalsh(K)
    eta = 1.5 / float(lam[-1])
    r = gd_residuals(m, x, y, eta, 30, linearized=True)
    rate = float((1 - eta * lam).abs().max())
    k = torch.arange(31, dtype=D)
    assert (r.norm(dim=1) <= rate**k * r[0].norm() * (1 + 1e-9)).all()
    wrong = float((1 - eta * lam[-1]).abs())  # the top mode's rate alone: too optimistic
    assert not (r.norm(dim=1)[1:] <= wrong ** k[1:] * r[0].norm()).all()


# --- accurate accumulation of the Jacobian-route Gram (issue 12) ----------------------------------


def _float32_gram_error() -> float:
    """Relative error of the default (auto -> jacobian) NTK of a float32 linear model with p = 2M
    parameters against its closed form ``K_ij = x_i . x_j + 1`` in float64 (the parameter Jacobian
    of ``w.x + b`` is ``(x, 1)``); positive inputs, so every one of the 2M terms adds up."""
    d = 2_000_000
    x = torch.rand(3, d, generator=torch.Generator().manual_seed(0))
    K = ntk_gram(nn.Linear(d, 1), x)
    assert K.dtype == torch.float32
    ref = x.double() @ x.double().T + 1
    return float(((K.double() - ref).abs() / ref).max())


def test_ntk_gram_accumulates_accurately_in_float32():
    assert _float32_gram_error() < 1e-6  # float32 rounding of the result itself: ~6e-8


def test_mutation_float32_contraction_is_caught(monkeypatch):
    import spectral_lab.ntk as N

    def float32_einsum(J1, J2, kind):  # the old contraction: one float32 sum over C p terms
        return torch.einsum("ncp,mcp->nm", J1, J1 if J2 is None else J2)

    monkeypatch.setattr(N, "_contract", float32_einsum)
    assert _float32_gram_error() > 1e-5  # ~5e-5 measured


def test_contraction_blocks_agree_with_float64_einsum(monkeypatch):
    import spectral_lab.ntk as N

    g = torch.Generator().manual_seed(1)
    J1, J2 = torch.randn(3, 4, 50, generator=g), torch.randn(2, 4, 50, generator=g)
    monkeypatch.setattr(N, "_ACC_BYTES", 8 * 7 * 20)  # blocks of 7 parameters: 8 blocks
    for kind, eq in (("scalar", "ncp,mcp->nm"), ("block", "ncp,mdp->nmcd")):
        for a, b in ((J1, None), (J1, J2)):
            ref = torch.einsum(eq, a.double(), (a if b is None else b).double())
            got = N._contract(a, b, kind)
            assert got.dtype == torch.float32 and got.shape == ref.shape
            torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=1e-6)
