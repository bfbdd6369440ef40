"""Loss Hessian products and spectra against torch.autograd.functional.hessian (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from spectral_lab import MLP, _func
from spectral_lab.hessian import (
    dense_hessian,
    gd_quadratic,
    gd_with_sharpness,
    gnvp,
    half_mse,
    hessian_density,
    hessian_eigs,
    hessian_operator,
    hessian_trace,
    hvp,
    loss_value,
)
from spectral_lab.jacobians import parameter_jacobian
from spectral_lab.ntk import block_to_matrix, ntk_gram

D = torch.float64


def reference_hessian(model, loss_fn, x, y):
    params = _func.trainable(model)

    def L(theta):
        return loss_fn(torch.func.functional_call(model, _func.unflatten(theta, params), (x,)), y)

    return torch.autograd.functional.hessian(L, _func.flatten(params))


@pytest.fixture
def setup():
    torch.manual_seed(0)
    m = MLP(3, 2, width=6, depth=3, activation="tanh").double()
    x = torch.randn(12, 3, dtype=D)
    y = torch.randn(12, 2, dtype=D)
    return m, x, y


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_dense_hessian_and_hvp_match_autograd(setup, loss):
    m, x, y = setup
    if loss == "cross_entropy":
        y = torch.randint(0, 2, (12,))
    fn = half_mse if loss == "mse" else F.cross_entropy
    H = reference_hessian(m, fn, x, y)
    torch.testing.assert_close(dense_hessian(m, (x, y), loss=loss), H, rtol=1e-10, atol=1e-12)
    v = torch.randn(H.shape[0], dtype=D)
    torch.testing.assert_close(hvp(m, (x, y), v, loss=fn), H @ v, rtol=1e-10, atol=1e-12)


def test_gauss_newton_matches_explicit_jacobian_products(setup):
    m, x, _ = setup
    labels = torch.randint(0, 2, (12,))
    J = parameter_jacobian(m, x)  # (N, C, p)
    s = torch.softmax(m(x), 1).detach()
    Lam = torch.diag_embed(s) - s[:, :, None] * s[:, None, :]  # softmax cross-entropy
    G = torch.einsum("ncp,ncd,ndq->pq", J, Lam, J) / 12
    v = torch.randn(J.shape[2], dtype=D)
    torch.testing.assert_close(
        gnvp(m, (x, labels), v, loss="cross_entropy"), G @ v, rtol=1e-10, atol=1e-12
    )
    # MSE: G = (1/N) J^T J, and the residual term is H - G
    y = torch.randn(12, 2, dtype=D)
    Gm = torch.einsum("ncp,ncq->pq", J, J) / 12
    torch.testing.assert_close(
        dense_hessian(m, (x, y), loss="mse", which="gn"), Gm, rtol=1e-10, atol=1e-12
    )
    H = dense_hessian(m, (x, y), loss="mse")
    assert (H - Gm).norm() > 1e-3  # nonzero residual term away from interpolation


def test_spec67_lambda_max_equals_ntk_over_n_at_interpolation(setup):
    m, x, _ = setup
    y = m(x).detach()  # zero residual: an interpolating solution of 1/2-MSE
    r = hessian_eigs(m, (x, y), loss="mse", k=1, tol=1e-10)
    K = block_to_matrix(ntk_gram(m, x, kind="block"))
    lam_K = float(torch.linalg.eigvalsh(K)[-1])
    assert float(r.eigenvalues[0]) == pytest.approx(lam_K / 12, rel=1e-6)
    # the scalar NTK would be the wrong kernel here (C = 2): caught
    Ks = ntk_gram(m, x)
    assert abs(float(torch.linalg.eigvalsh(Ks)[-1]) / 12 - lam_K / 12) > 1e-3 * lam_K / 12
    # away from interpolation the residual term shifts lambda_max
    y2 = y + torch.randn_like(y)
    r2 = hessian_eigs(m, (x, y2), loss="mse", k=1, tol=1e-10)
    rg = hessian_eigs(m, (x, y2), loss="mse", k=1, tol=1e-10, which="gn")
    assert float(rg.eigenvalues[0]) == pytest.approx(lam_K / 12, rel=1e-6)
    assert abs(float(r2.eigenvalues[0]) - lam_K / 12) > 1e-6 * lam_K


def test_eigs_trace_density_against_dense(setup):
    m, x, y = setup
    H = reference_hessian(m, half_mse, x, y)
    ev = torch.linalg.eigvalsh(H)
    top = hessian_eigs(m, (x, y), loss="mse", k=3, tol=1e-10)
    torch.testing.assert_close(top.eigenvalues, ev.flip(0)[:3], rtol=1e-6, atol=0)
    low = hessian_eigs(m, (x, y), loss="mse", k=2, order="smallest", tol=1e-10)
    torch.testing.assert_close(low.eigenvalues, ev[:2], rtol=1e-6, atol=1e-10)
    pw = hessian_eigs(m, (x, y), loss="mse", k=2, method="power", tol=1e-10)
    mag = ev[ev.abs().argsort(descending=True)[:2]]
    torch.testing.assert_close(pw.eigenvalues, mag, rtol=1e-6, atol=0)
    p = H.shape[0]
    exact = hessian_trace(m, (x, y), loss="mse", num_matvecs=3 * p + 3)  # sketch spans R^p: exact
    assert exact.estimate == pytest.approx(float(H.trace()), rel=1e-8)
    est = hessian_trace(m, (x, y), loss="mse", method="hutchinson", num_matvecs=200)
    assert abs(est.estimate - float(H.trace())) < 5 * est.std_error
    d = hessian_density(m, (x, y), loss="mse", num_probes=3, num_steps=p)
    # SLQ first moment: each normalised Rademacher probe v gives v^T H v, unbiased for tr(H)/p with
    # variance 2 sum_{i != j} H_ij^2 / p^2 (exact, from the dense H); 400 cheap probes (the first
    # moment is exact per probe for any number of steps); 4 s.e. is about 12 % of tr(H)/p here
    n_probes = 400
    dn = hessian_density(m, (x, y), loss="mse", num_probes=n_probes, num_steps=2)
    off = H - torch.diag(torch.diag(H))
    se_theory = float((2 * (off**2).sum()).sqrt()) / p / n_probes**0.5
    per_probe = (dn.weights * dn.nodes).sum(1)
    se_probes = float(per_probe.std()) / n_probes**0.5
    assert 0.8 < se_probes / se_theory < 1.25  # the probes scatter as Rademacher probes should
    assert abs(dn.moment(1) - float(H.trace()) / p) < 4 * se_theory
    assert abs(d.moment(1) - float(H.trace()) / p) < 4 * se_theory * (n_probes / 3) ** 0.5
    assert float(d.nodes.max()) == pytest.approx(float(ev[-1]), rel=1e-6)


def test_eigs_stop_on_the_eigenvalue_estimate_against_dense(setup):
    m, x, y = setup
    ev = torch.linalg.eigvalsh(reference_hessian(m, half_mse, x, y)).flip(0)
    by_res = hessian_eigs(m, (x, y), loss="mse", k=2, tol=1e-8)
    by_eig = hessian_eigs(m, (x, y), loss="mse", k=2, tol=1e-8, stop="eigenvalue")
    assert by_eig.criterion == "eigenvalue" and by_res.criterion == "residual"
    torch.testing.assert_close(by_eig.eigenvalues, ev[:2], rtol=1e-8, atol=0)
    assert by_eig.matvecs <= by_res.matvecs
    with pytest.raises(ValueError, match="needs method='lanczos'"):
        hessian_eigs(m, (x, y), loss="mse", method="power", stop="eigenvalue")


def test_dataloader_accumulates_to_full_batch(setup):
    m, x, y = setup
    loader = DataLoader(TensorDataset(x, y), batch_size=5)  # batches 5, 5, 2
    v = torch.randn(sum(p.numel() for p in m.parameters()), dtype=D)
    torch.testing.assert_close(hvp(m, loader, v, loss="mse"), hvp(m, (x, y), v, loss="mse"))
    torch.testing.assert_close(gnvp(m, loader, v, loss="mse"), gnvp(m, (x, y), v, loss="mse"))
    assert loss_value(m, loader, loss="mse") == pytest.approx(loss_value(m, (x, y), loss="mse"))
    # float32 loader data are cast to the model's dtype
    loader32 = DataLoader(TensorDataset(x.float(), y.float()), batch_size=6)
    assert hvp(m, loader32, v, loss="mse").dtype == D


def test_batched_products_match_single(setup):
    m, x, y = setup
    op = hessian_operator(m, (x, y), loss="mse")
    V = torch.randn(op.dim, 3, dtype=D)
    torch.testing.assert_close(op @ V, torch.stack([op @ V[:, j] for j in range(3)], 1))


def test_eval_mode_with_dropout_and_batchnorm():
    torch.manual_seed(2)
    m = nn.Sequential(
        nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2)
    ).double()
    x, y = torch.randn(10, 3, dtype=D), torch.randn(10, 2, dtype=D)
    m.train()
    m(x)  # give batch-norm non-trivial running statistics
    H_train_mode = dense_hessian(m, (x, y), loss="mse")
    assert m.training
    running = m[1].running_mean.clone()
    m.eval()
    torch.testing.assert_close(
        H_train_mode, reference_hessian(m, half_mse, x, y), rtol=1e-10, atol=1e-12
    )
    assert torch.equal(running, m[1].running_mean)  # statistics untouched


def test_gd_quadratic_step_size_rule():
    H = torch.diag(torch.tensor([4.0, 1.0, 0.1], dtype=D))
    x0 = torch.ones(3, dtype=D)
    assert gd_quadratic(H, x0, 1.95 / 4, 400)[-1] < 1e-3
    assert gd_quadratic(H, x0, 2.05 / 4, 400)[-1] > 1e3


def test_gd_with_sharpness_runs_and_matches_lanczos(setup):
    m, x, y = setup
    tr = gd_with_sharpness(m, (x, y), loss="mse", lr=0.05, steps=20, every=10, tol=1e-8)
    assert len(tr.loss) == 21 and tr.sharpness_steps.tolist() == [0, 10, 20]
    assert tr.loss[-1] < tr.loss[0]
    ref = float(torch.linalg.eigvalsh(reference_hessian(m, half_mse, x, y))[-1])
    assert float(tr.sharpness[-1]) == pytest.approx(ref, rel=1e-6)
    assert "SharpnessTrace" in repr(tr)


def test_errors(setup):
    m, x, y = setup
    p = sum(q.numel() for q in m.parameters())
    v = torch.ones(p, dtype=D)
    with pytest.raises(ValueError, match="scalar"):
        hvp(m, (x, y), v, loss=lambda o, t: (o - t) ** 2)
    with pytest.raises(ValueError, match="no samples"):
        hvp(m, DataLoader(TensorDataset(x[:0], y[:0]), batch_size=4), v, loss="mse")
    with pytest.raises(ValueError, match="empty"):
        hvp(m, (x[:0], y[:0]), v, loss="mse")
    with pytest.raises(ValueError, match="no trainable parameters"):
        hessian_eigs(nn.Flatten(), (x, y), loss="mse")
    with pytest.raises(ValueError, match="larger than the operator's dimension"):
        hessian_eigs(m, (x, y), loss="mse", k=p + 1)
    with pytest.raises(ValueError, match="which must be"):
        hessian_eigs(m, (x, y), loss="mse", which="fisher")
    with pytest.raises(ValueError, match="method must be"):
        hessian_trace(m, (x, y), loss="mse", method="xtrace")
    with pytest.raises(ValueError, match="unknown loss"):
        hvp(m, (x, y), v, loss="hinge")
    # the one dtype policy (issue 12): integer inputs are refused with the library's one message
    # (uint8 images are never silently cast without /255); token ids into an nn.Embedding work
    from spectral_lab._checks import integer_input_message

    for dt in (torch.uint8, torch.int64):
        xi = torch.ones(4, 3, dtype=dt)
        with pytest.raises(TypeError) as err:
            hvp(m, (xi, y[:4]), v, loss="mse")
        assert str(err.value) == integer_input_message(dt)
        with pytest.raises(TypeError, match="integer/bool dtype"):
            hessian_eigs(m, (xi, y[:4]), loss="mse")
    emb = nn.Sequential(nn.Embedding(5, 2), nn.Flatten(), nn.Linear(6, 1)).double()
    tok = torch.tensor([[0, 1, 2], [3, 4, 0], [1, 1, 2], [4, 3, 2]])
    assert hessian_eigs(emb, (tok, y[:4, :1]), loss="mse").converged
    with pytest.raises(ValueError, match="differ in length"):
        hvp(m, (x, y[:5]), v, loss="mse")
    with pytest.raises(ValueError, match="max_params"):
        dense_hessian(m, (x, y), loss="mse", max_params=10)
    with pytest.raises(ValueError, match="flat vector"):
        hvp(m, (x, y), torch.ones(3, dtype=D), loss="mse")


# --- one "mse": the loss train() minimises is the loss hessian_eigs() differentiates ------------


def _formula_loss(model, x, y, theta, params):
    """(1/n) sum_i 1/2 ||f(x_i) - y_i||^2, written out here independently of the library."""
    out = torch.func.functional_call(model, _func.unflatten(theta, params), (x,))
    return ((out - y) ** 2).sum() / (2 * len(x))


def _mse_pair_errors(tiny_mlp):
    """Train with train(loss="mse") (one full-batch SGD step) and return the relative errors of
    (the step train took, the sharpness hessian_eigs(loss="mse") reports) against the gradient and
    the dense Hessian of the formula loss. C = 3 outputs, so a 1/C scale error shows as 2/3."""
    from spectral_lab import ArrayDataset, train

    torch.manual_seed(1)
    x, y = torch.randn(40, 4, dtype=D), torch.randn(40, 3, dtype=D)
    data = ArrayDataset(x, y, num_classes=None, name="regression")
    model = tiny_mlp(4, 3, width=6)
    params = _func.trainable(model)
    theta0 = _func.flatten(params).clone()
    lr = 0.1
    hist = train(
        model, data, loss="mse", optimizer="sgd", lr=lr, batch_size=40, epochs=1, progress=False
    )
    theta1 = _func.flatten(_func.trainable(model))
    grad0 = torch.func.grad(lambda t: _formula_loss(model, x, y, t, params))(theta0)
    step_err = float((theta1 - (theta0 - lr * grad0)).norm() / (lr * grad0).norm())
    H = torch.autograd.functional.hessian(lambda t: _formula_loss(model, x, y, t, params), theta1)
    lam_ref = float(torch.linalg.eigvalsh(H)[-1])
    lam = float(hessian_eigs(model, data, loss="mse", tol=1e-10))
    loss_err = abs(hist.step_loss[0] - float(_formula_loss(model, x, y, theta0, params)))
    return step_err, abs(lam - lam_ref) / lam_ref, loss_err


def test_train_mse_is_the_loss_hessian_eigs_differentiates(tiny_mlp):
    step_err, eig_err, loss_err = _mse_pair_errors(tiny_mlp)
    assert step_err < 1e-10  # train's step is -lr * grad of (1/n) sum_i 1/2 ||f - y||^2
    assert eig_err < 1e-8  # hessian_eigs's lambda_max is that loss's
    assert loss_err < 1e-12


def test_mutation_old_mse_scale_is_caught(tiny_mlp, monkeypatch):
    """The old train() loss 0.5 * F.mse_loss (mean over N*C) is 1/C of the formula: the check
    above must report it (for train and for the Hessian alike)."""
    from spectral_lab import _losses

    # 0.5 * ((out - y) ** 2).mean() is 0.5 * F.mse_loss(out, y) (F.mse_loss itself trips a
    # torch.func ZeroTensor error inside the Hessian's jvp-of-grad)
    old = lambda out, y: 0.5 * ((out - y) ** 2).mean()  # noqa: E731
    assert float(old(torch.ones(2, 3), torch.zeros(2, 3))) == float(
        0.5 * F.mse_loss(torch.ones(2, 3), torch.zeros(2, 3))
    )
    monkeypatch.setitem(_losses.LOSSES, "mse", old)
    step_err, eig_err, loss_err = _mse_pair_errors(tiny_mlp)
    assert step_err > 0.5 and eig_err > 0.5 and loss_err > 1e-3


def test_hessian_accepts_every_data_kind(tiny_mlp, device):
    from spectral_lab import ArrayDataset

    torch.manual_seed(0)
    x, y = torch.randn(10, 4, dtype=D), torch.randint(0, 3, (10,))
    m = tiny_mlp(4, 3, device=device)  # data stay on the CPU: cast and moved batch by batch
    ref = float(hessian_eigs(m, (x, y), tol=1e-10))
    for data in (
        ArrayDataset(x, y, num_classes=3, name="t"),
        TensorDataset(x, y),
        DataLoader(TensorDataset(x, y), batch_size=3),
        [(x[:4], y[:4]), (x[4:], y[4:])],
    ):
        got = float(hessian_eigs(m, data, loss="cross_entropy", tol=1e-10))
        assert got == pytest.approx(ref, rel=1e-8), type(data).__name__
    assert float(hessian_eigs(m, (x, y), batch_size=3, tol=1e-10)) == pytest.approx(ref, rel=1e-8)
    r = hessian_eigs(m, (x, y))
    assert r.eigenvalues.device.type == device and r.eigenvalues.dtype == D
    with pytest.raises(ValueError, match="needs labels"):
        hessian_eigs(m, x)


def test_the_loss_is_a_keyword_after_data(setup):
    m, x, y = setup
    with pytest.raises(TypeError, match="positional"):
        hessian_eigs(m, "mse", (x, y))  # the order f(model, loss, data) is gone
    with pytest.raises(TypeError, match="loss_fn"):
        hessian_eigs(m, (x, y), loss_fn="mse")


def test_results_are_frozen_with_to_dict_and_float(setup):
    import dataclasses
    import json

    m, x, y = setup
    r = hessian_eigs(m, (x, y), loss="mse")
    assert float(r) == float(r.eigenvalues[0])
    json.dumps(r.to_dict())
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.matvecs = 0
    t = hessian_trace(m, (x, y), loss="mse")
    assert float(t) == t.estimate and t.to_dict()["method"] == "hutch++"
    with pytest.raises(TypeError, match="single eigenvalue"):
        float(hessian_eigs(m, (x, y), loss="mse", k=2))
    tr = gd_with_sharpness(m, (x, y), 0.01, 2, loss="mse", every=1)
    assert tr.to_dict()["lr"] == 0.01
