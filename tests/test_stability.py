"""Matrix Stability Profile, Global Matrix Stability Index and the Theorem 4.2 bounds, against
dense references on tiny float64 models (torch.autograd.functional jacobian/hessian)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

import spectral_lab as sl
from spectral_lab.stability import (
    BY_CONSTRUCTION,
    StabilityProfile,
    attribution_change_bound,
    check_attribution_curvature,
    forward_sensitivity_bound,
    gd_diverges,
    index_terms,
    logit_hessian_norm,
    measure_attribution_change,
    measure_forward_sensitivity,
    measure_max_stable_lr,
    measure_parameter_sensitivity,
    ntk_condition_bound,
    parameter_sensitivity_bound,
    quantile,
    stability_index,
    stability_profile,
    stable_step_size,
    verify_consequences,
)


@pytest.fixture(scope="module", autouse=True)
def _float64():
    """float64 inside this module only (the default dtype is global: restore it afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _model(act="tanh", width=7, depth=3, d=5, c=3, seed=0, gain=1.3):
    torch.manual_seed(seed)
    return sl.MLP(d, c, width=width, depth=depth, activation=act, gain=gain).double()


def _data(n=12, d=5, c=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def _flat_params(model):
    names = [k for k, _ in model.named_parameters()]
    shapes = [v.shape for _, v in model.named_parameters()]
    flat = torch.cat([v.detach().flatten() for v in model.parameters()])

    def unflat(v):
        out, i = {}, 0
        for k, s in zip(names, shapes):
            out[k] = v[i : i + math.prod(s)].reshape(s)
            i += math.prod(s)
        return out

    return flat, unflat


def _dense_param_jacobian(model, xi):
    flat, unflat = _flat_params(model)
    return torch.autograd.functional.jacobian(
        lambda v: functional_call(model, unflat(v), (xi[None],))[0], flat
    )


@pytest.fixture(scope="module")
def setup(_float64):
    model, (x, y) = _model(), _data()
    prof = stability_profile(model, (x, y), lanczos_steps=200)
    return model, x, y, prof


# --------------------------------------------------------------------------- profile vs dense
def test_profile_matches_dense_references(setup):
    model, x, y, prof = setup
    jf = torch.stack(
        [torch.autograd.functional.jacobian(lambda z: model(z[None])[0], xi) for xi in x]
    )
    s = torch.linalg.svdvals(jf)
    assert torch.allclose(prof.samples["jac_top"], s[:, 0], rtol=1e-10)
    assert torch.allclose(prof.samples["jac_fro"], s.norm(dim=1) / math.sqrt(3), rtol=1e-10)
    p = s**2 / (s**2).sum(1, keepdim=True)
    assert torch.allclose(prof.samples["jac_entropy"], -(p * p.log()).sum(1), rtol=1e-8)
    jt = torch.stack([_dense_param_jacobian(model, xi) for xi in x])  # (n, C, p)
    assert torch.allclose(prof.samples["param_top"], torch.linalg.svdvals(jt)[:, 0], rtol=1e-8)
    K = torch.einsum("icp,jcp->ij", jt, jt)
    lam = torch.linalg.eigvalsh(K)
    assert math.isclose(prof.ntk_top, lam[-1].item() / len(x), rel_tol=1e-8)
    assert math.isclose(prof.ntk_min, lam[0].item() / len(x), rel_tol=1e-6)
    flat, unflat = _flat_params(model)
    H = torch.autograd.functional.hessian(
        lambda v: nn.functional.cross_entropy(functional_call(model, unflat(v), (x,)), y), flat
    )
    assert math.isclose(prof.hess_top, torch.linalg.eigvalsh(H)[-1].item(), rel_tol=1e-6)
    # aggregates: sup by default, the mean of the Frobenius statistic
    assert prof.jac_top == s[:, 0].max().item() and prof.q == 1.0
    assert math.isclose(prof.jac_fro, (s.norm(dim=1) / math.sqrt(3)).mean().item(), rel_tol=1e-12)


def test_quantile_and_with_q(setup):
    *_, prof = setup
    v = torch.tensor([3.0, 1.0, 2.0, 10.0])
    assert quantile(v, 1.0) == 10.0
    assert quantile(v, 0.5) == 3.0  # "higher" rule: position 1.5 of [1, 2, 3, 10] rounds up
    p9 = prof.with_q(0.9)
    assert p9.q == 0.9 and p9.jac_top == quantile(prof.samples["jac_top"], 0.9)
    assert p9.jac_top <= prof.jac_top and p9.param_top <= prof.param_top
    assert p9.ntk_top == prof.ntk_top and p9.hess_top == prof.hess_top
    with pytest.raises(ValueError, match="q must be"):
        prof.with_q(0.0)
    with pytest.raises(ValueError, match="q must be"):
        quantile(v, 1.5)


def test_dataloader_streaming_and_caps_agree_with_tensors(setup):
    model, x, y, prof = setup
    loader = DataLoader(TensorDataset(x, y), batch_size=5)
    prof2 = stability_profile(model, loader, lanczos_steps=200, batch_size=5)
    for k in ("jac_top", "param_top", "jac_entropy"):
        assert torch.allclose(prof.samples[k], prof2.samples[k], rtol=1e-10)
    assert math.isclose(prof.ntk_top, prof2.ntk_top, rel_tol=1e-10)
    capped = stability_profile(
        model,
        loader,
        max_samples=7,
        ntk_samples=4,
        hessian_samples=6,
        operators=("input_jacobian", "ntk"),
    )
    assert (
        capped.n == 7 and capped.n_ntk == 4 and capped.param_top is None and capped.hess_top is None
    )
    assert set(index_terms(capped)) == {"input_jacobian", "ntk"}
    # inputs only: labels are the model's own predictions
    only_x = stability_profile(model, x, operators=("input_jacobian", "hessian"), lanczos_steps=200)
    assert only_x.settings["labels"] == "predicted by the model"


def test_iter_batches_covers_every_sample_for_every_input_kind(setup):
    from spectral_lab.stability import iter_batches

    model, x, y, prof = setup
    ds = sl.ArrayDataset(x, y, num_classes=3, name="t")
    for data in ((x, y), x, ds, TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=5)):
        got = torch.cat([b[0] for b in iter_batches(data, batch_size=5)])
        assert torch.equal(got, x), type(data).__name__
        assert sum(len(b[0]) for b in iter_batches(data, batch_size=5, max_samples=7)) == 7
    small = stability_profile(model, (x, y), batch_size=5, operators=("input_jacobian",))
    assert torch.allclose(small.samples["jac_top"], prof.samples["jac_top"], rtol=1e-12)


def test_profile_repr_and_dict(setup):
    *_, prof = setup
    assert "StabilityProfile(q=1" in repr(prof) and "lambda_max(H)" in repr(prof)
    d = prof.to_dict(samples=True)
    assert d["n"] == 12 and len(d["samples"]["jac_top"]) == 12 and d["ntk_condition"] > 1


# --------------------------------------------------------------------------- index
def test_index_max_geomean_weights_callable(setup):
    *_, prof = setup
    t = index_terms(prof)
    assert t == {
        "input_jacobian": prof.jac_top,
        "parameter_jacobian": prof.param_top,
        "ntk": math.sqrt(prof.ntk_top),
        "hessian": math.sqrt(prof.hess_top),
    }
    idx = stability_index(prof)
    assert idx.value == max(t.values()) and idx.terms[idx.dominant] == idx.value
    assert all(idx.dominates(k) for k in t)
    geo = stability_index(prof, agg="geomean")
    assert math.isclose(geo.value, math.prod(t.values()) ** 0.25, rel_tol=1e-12)
    assert geo.value < idx.value  # the typical scale does not dominate the largest term
    w = stability_index(prof, weights={"parameter_jacobian": 0.0, "ntk": 0.0, "hessian": 0.0})
    assert w.value == t["input_jacobian"]
    mine = stability_index(prof, agg=lambda terms: sum(terms.values()))
    assert math.isclose(mine.value, sum(t.values())) and mine.agg == "<lambda>"
    assert "Gamma=" in repr(idx) and idx.to_dict()["dominant"] == idx.dominant


def test_index_errors(setup):
    *_, prof = setup
    with pytest.raises(ValueError, match="unknown operator"):
        stability_index(prof, weights={"jacobian": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        stability_index(prof, weights={"ntk": -1.0})
    with pytest.raises(ValueError, match="agg must be"):
        stability_index(prof, agg="mean")
    with pytest.raises(TypeError, match="StabilityProfile"):
        stability_index({"jac_top": 1.0})


# --------------------------------------------------------------------------- bounds
def test_forward_bound_exact_for_linear_network_and_catches_a_wrong_one():
    model = _model(act="identity")
    x, y = _data()
    idx = stability_index(stability_profile(model, (x, y), operators=("input_jacobian",)))
    eps = 0.3
    worst = measure_forward_sensitivity(model, x, eps, direction="worst")
    rand = measure_forward_sensitivity(model, x, eps, direction="random", draws=16)
    bound = forward_sensitivity_bound(idx, eps)
    assert bool((worst <= bound * (1 + 1e-12)).all()) and bool((rand <= bound).all())
    # linear network: the worst direction attains the bound exactly at the sup sample
    assert math.isclose(worst.max().item(), bound, rel_tol=1e-10)
    # a bound 1% too small is violated: the check has teeth
    assert bool((worst > 0.99 * bound).any())


def test_forward_bound_first_order_on_tanh(setup):
    model, x, _, prof = setup
    idx = stability_index(prof)
    for eps in (1e-3, 1e-5):
        m = measure_forward_sensitivity(model, x, eps)
        assert bool((m <= forward_sensitivity_bound(idx, eps)).all())
        ratio = (m / (prof.samples["jac_top"] * eps)).max().item()
        assert abs(ratio - 1) < 20 * eps  # tight to first order, error O(eps)
    assert forward_sensitivity_bound(idx, 1.0, scale="operator") == prof.jac_top


def test_parameter_bound_and_second_order_remainder(setup):
    model, x, _, prof = setup
    idx = stability_index(prof)
    ratios = []
    for dn in (1e-2, 1e-3, 1e-4):
        worst = measure_parameter_sensitivity(model, x, dn, direction="worst")
        rand = measure_parameter_sensitivity(model, x, dn, draws=4)
        assert bool((rand <= parameter_sensitivity_bound(idx, dn, scale="operator")).all())
        ratios.append((worst / (prof.samples["param_top"] * dn)).max().item())
    # worst direction: ratio -> 1 with an O(||Delta||) error, i.e. an O(||Delta||^2) remainder
    errs = [abs(r - 1) for r in ratios]
    assert errs[2] < 1e-3 and errs[1] < 1e-2 and errs[2] < errs[0]
    assert parameter_sensitivity_bound(idx, 2.0) == 2 * idx.value


def test_attribution_bound_over_clean_and_perturbed_points(setup):
    # 2 Gamma is the triangle inequality (true for every model): what is tested here is the
    # premise ||a(x)|| <= sigma_1(J_f(x)) against a dense autograd Jacobian, and the API
    model, x, y, _ = setup
    J = torch.stack(
        [torch.autograd.functional.jacobian(lambda v: model(v[None])[0], xi) for xi in x]
    )
    c = model(x).argmax(1)
    a = J[torch.arange(len(x)), c]
    assert bool((a.norm(dim=1) <= torch.linalg.svdvals(J)[:, 0] * (1 + 1e-12)).all())
    idx = stability_index(stability_profile(model, x, operators=("input_jacobian",)))
    assert attribution_change_bound(idx, eps=0.1, curvature=1.0) == min(2 * idx.value, 0.1)
    with pytest.raises(ValueError, match="curvature needs eps"):
        attribution_change_bound(idx, curvature=1.0)
    change = measure_attribution_change(model, x, 0.5, draws=3, seed=0)
    assert change.shape == (len(x),) and bool((change > 0).all())


def _dense_logit_hessian_norm(model, x, c):
    """Independent reference: torch.autograd.functional.hessian per sample, numpy eigenvalues."""
    out = []
    for xi, ci in zip(x, c):
        h = torch.autograd.functional.hessian(lambda v, ci=ci: model(v[None])[0, ci], xi)
        out.append(np.abs(np.linalg.eigvalsh(h.numpy())).max())
    return np.array(out)


def test_logit_hessian_norm_matches_dense_autograd(setup):
    model, x, _, _ = setup
    c = model(x).argmax(1)
    ref = _dense_logit_hessian_norm(model, x, c)
    got = logit_hessian_norm(model, x, c).numpy()
    assert np.allclose(got, ref, rtol=1e-10, atol=1e-12) and ref.min() > 0
    # and against central finite differences of the gradient along the top eigenvector
    i = 0
    h = torch.autograd.functional.hessian(lambda v: model(v[None])[0, c[i]], x[i])
    ev, vec = torch.linalg.eigh(h)
    v = vec[:, ev.abs().argmax()]
    grad = lambda z: torch.autograd.functional.jacobian(lambda u: model(u[None])[0, c[i]], z)  # noqa: E731
    fd = (grad(x[i] + 1e-5 * v) - grad(x[i] - 1e-5 * v)) / 2e-5
    assert math.isclose(float(fd.norm()), float(got[i]), rel_tol=1e-6)


def test_curvature_form_of_the_attribution_bound_holds_and_is_tight(setup):
    model, x, _, _ = setup
    chk = check_attribution_curvature(model, x, eps=(1e-3, 1e-2, 1e-1, 0.5), points=9)
    assert chk.holds, chk
    # along the worst direction the first-order bound is attained at small eps: so any curvature
    # measure too small by more than rtol is caught there
    assert chk.ratio[0] > 0.99
    assert all(f == 1.0 for f in chk.curvature_branch)  # the falsifiable branch M eps < 2 Gamma
    rnd = check_attribution_curvature(model, x, eps=(1e-2, 0.5), direction="random")
    assert rnd.holds and max(rnd.ratio) < 1


@pytest.mark.parametrize(
    "mutant",
    [
        "dropped_half",  # M / 2: a dropped factor (e.g. symmetrising without adding the transpose)
        "wrong_logit",  # the Hessian of another logit than the one whose saliency is compared
        "no_segment_sup",  # the Hessian at x only, instead of the sup along the segment
    ],
)
def test_curvature_check_catches_a_wrong_curvature(setup, monkeypatch, mutant):
    from spectral_lab import stability as st

    model, x, _, _ = setup
    orig = st.logit_hessian_norm
    if mutant == "dropped_half":
        monkeypatch.setattr(st, "logit_hessian_norm", lambda m, z, c, **k: 0.5 * orig(m, z, c))
    elif mutant == "wrong_logit":
        monkeypatch.setattr(st, "logit_hessian_norm", lambda m, z, c, **k: orig(m, z, (c + 1) % 3))
    else:
        monkeypatch.setattr(st, "segment_curvature", lambda m, z, d, c, points=9: orig(m, z, c))
    chk = check_attribution_curvature(model, x, eps=(1e-3, 1e-2, 1e-1, 0.5))
    assert not chk.holds, chk


def test_curvature_form_fails_for_relu_where_it_does_not_apply(setup):
    # a genuine failure, no mutant: ReLU's input Hessian is zero almost everywhere but the
    # gradient jumps at kinks, so the curvature form (smooth activations only) is violated
    _, x, _, _ = setup
    chk = check_attribution_curvature(_model("relu"), x, eps=(0.5, 1.0), direction="random")
    assert not chk.holds and chk.curvature.max() == 0


def test_ntk_condition_bound_against_dense_references_and_block_ntk_domination(setup):
    # kappa(K) <= Gamma^2 n / lambda_min(K) holds by construction (an identity when the NTK term
    # sets Gamma): test the *values* against a dense finite-free reference instead
    model, x, _, prof = setup
    idx = stability_index(prof)
    Jt = torch.stack([_dense_param_jacobian(model, xi) for xi in x])  # (n, C, p)
    K = np.einsum("icp,jcp->ij", Jt.numpy(), Jt.numpy())  # scalar NTK: tr J_i J_j^T
    lam = np.linalg.eigvalsh(K)
    n = len(x)
    assert math.isclose(prof.ntk_condition, lam[-1] / lam[0], rel_tol=1e-8)
    assert math.isclose(ntk_condition_bound(idx, prof.ntk_min), idx.value**2 * n / lam[0],
                        rel_tol=1e-8)  # fmt: skip
    assert math.isclose(ntk_condition_bound(idx, prof.ntk_min, scale="operator"),
                        lam[-1] / lam[0], rel_tol=1e-8)  # fmt: skip
    # a genuine inequality, not true by construction: the block NTK's top eigenvalue over n is at
    # most max_i sigma_1(J_theta(x_i))^2 -- fails if param_top under-estimates
    Kb = sl.ntk.block_to_matrix(sl.ntk_gram(model, x, kind="block"))
    assert torch.linalg.eigvalsh(Kb)[-1].item() / len(x) <= prof.param_top**2 * (1 + 1e-10)
    assert ntk_condition_bound(idx, 0.0) == math.inf


def test_block_ntk_option(setup):
    model, x, y, prof = setup
    blk = stability_profile(model, (x, y), ntk_kind="block", operators=("input_jacobian", "ntk"))
    Kb = sl.ntk.block_to_matrix(sl.ntk_gram(model, x, kind="block"))
    assert math.isclose(blk.ntk_top, torch.linalg.eigvalsh(Kb)[-1].item() / len(x), rel_tol=1e-10)
    assert blk.ntk_top <= prof.param_top**2 * (1 + 1e-10) and blk.settings["ntk"].startswith(
        "block"
    )
    with pytest.raises(ValueError, match="ntk_kind"):
        stability_profile(model, (x, y), ntk_kind="full")


def test_stable_step_size_on_quadratic_and_linear_model():
    # a linear model under 1/2-MSE is exactly quadratic: H = [X 1]^T [X 1] / n (per output)
    torch.manual_seed(0)
    model = sl.MLP(4, 2, depth=1).double()
    x = torch.randn(20, 4)
    y = torch.randn(20, 2)
    prof = stability_profile(model, (x, y), loss="mse", lanczos_steps=100)
    Xa = torch.cat([x, torch.ones(20, 1)], 1)
    lam = torch.linalg.eigvalsh(Xa.T @ Xa / 20)[-1].item()
    assert math.isclose(prof.hess_top, lam, rel_tol=1e-8)
    idx = stability_index(prof)
    eta = stable_step_size(idx)
    assert eta <= 2 / lam * (1 + 1e-12)
    assert math.isclose(stable_step_size(idx, scale="operator"), 2 / lam, rel_tol=1e-8)
    assert not gd_diverges(model, x, y, 0.98 * eta, loss="mse", steps=150)
    assert gd_diverges(model, x, y, 1.1 * 2 / lam, loss="mse", steps=150)
    measured = measure_max_stable_lr(model, (x, y), loss="mse", steps=150, iters=12, lo=1e-3, hi=10)
    assert eta <= measured and abs(measured / (2 / lam) - 1) < 0.03  # bisection finds 2/lambda


def test_bounds_refuse_a_non_dominating_index(setup):
    *_, prof = setup
    geo = stability_index(prof, agg="geomean")
    fns = {
        "input_jacobian": lambda i: forward_sensitivity_bound(i, 1.0),
        "parameter_jacobian": lambda i: parameter_sensitivity_bound(i, 1.0),
        "ntk": lambda i: ntk_condition_bound(i, prof.ntk_min),
        "hessian": lambda i: stable_step_size(i),
    }
    assert not geo.dominates(geo.dominant)
    with pytest.raises(ValueError, match="would not hold"):
        fns[geo.dominant](geo)
    with pytest.raises(ValueError, match="scale must be"):
        stable_step_size(geo, scale="both")
    assert forward_sensitivity_bound(2.0, 0.5) == 1.0
    with pytest.raises(ValueError, match="finite number"):
        forward_sensitivity_bound(-1.0, 0.5)


def test_verify_consequences_separates_evidence_from_construction(setup):
    model, x, y, _ = setup
    chk = verify_consequences(model, (x, y), lr_steps=10, lr_iters=4)
    assert set(chk.measured) == {
        "forward",
        "parameter",
        "attribution",
        "ntk_condition",
        "stable_lr",
    }
    assert set(BY_CONSTRUCTION) == {"attribution", "ntk_condition"}
    assert set(chk.evidence) == {"forward", "parameter", "stable_lr", "attribution_curvature"}
    assert all(chk.evidence.values()), chk
    assert chk.step_ratio >= 1 and chk.curvature is not None and chk.curvature.holds
    assert "(by construction)" in repr(chk)
    # the operator's own parameter bound is tight along the worst direction
    assert chk.measured["parameter"] / chk.operator_bound["parameter"] > 0.99


def _stiff_linear_problem():
    """A linear model under 50 x (1/2-MSE): exactly quadratic, with lambda_max(H) = 50
    lambda_max([X 1]^T [X 1] / n) far above every Jacobian term (the Jacobians do not see the loss's
    scale), so only the Hessian term of Gamma makes 2/Gamma^2 safe."""
    from spectral_lab.hessian import half_mse

    torch.manual_seed(0)
    model = sl.MLP(4, 2, depth=1).double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 4, generator=g), torch.randn(20, 2, generator=g)

    def stiff(out, t):
        return 50.0 * half_mse(out, t)

    Xa = torch.cat([x, torch.ones(20, 1)], 1)
    lam = 50.0 * torch.linalg.eigvalsh(Xa.T @ Xa / 20)[-1].item()
    return model, x, y, stiff, lam


def _stiff_check(model, x, y, stiff):
    return verify_consequences(model, (x, y), loss=stiff, lr_range=(1e-4, 1.0), lr_steps=50,
                               lr_iters=12, curvature_eps=None)  # fmt: skip


def test_certified_step_against_the_measured_divergence_threshold():
    model, x, y, stiff, lam = _stiff_linear_problem()
    chk = _stiff_check(model, x, y, stiff)
    assert chk.index.dominant == "hessian" and math.isclose(chk.profile.hess_top, lam, rel_tol=1e-8)
    assert chk.holds["stable_lr"] and chk.step_ratio >= 1
    # on an exact quadratic the measured threshold is 2/lambda_max(H) (up to the blow-up rule)
    assert abs(chk.measured["stable_lr"] / (2 / lam) - 1) < 0.03


@pytest.mark.parametrize("mutant", ["no_hessian_term", "hessian_not_squared"])
def test_step_size_check_catches_a_wrong_index(monkeypatch, mutant):
    from spectral_lab import stability as st

    model, x, y, stiff, _ = _stiff_linear_problem()
    orig = st.index_terms
    if mutant == "no_hessian_term":  # Gamma that omits the Hessian term
        monkeypatch.setattr(st, "index_terms",
                            lambda p: {k: v for k, v in orig(p).items() if k != "hessian"})  # fmt: skip
    else:  # lambda_max(H)^(1/4) instead of its square root: a wrong scale for the Hessian term
        monkeypatch.setattr(st, "index_terms",
                            lambda p: {**orig(p), "hessian": max(p.hess_top, 0) ** 0.25})  # fmt: skip
    chk = _stiff_check(model, x, y, stiff)
    assert not chk.holds["stable_lr"] and chk.step_ratio < 1, chk


# --------------------------------------------------------------------------- input errors
def test_input_errors(setup):
    model, x, y, _ = setup
    with pytest.raises(ValueError, match="NaN"):
        stability_profile(model, (torch.full_like(x, float("nan")), y))
    with pytest.raises(ValueError, match="empty"):
        stability_profile(model, (x[:0], y[:0]))
    with pytest.raises(TypeError, match="DataLoader"):
        stability_profile(model, {"x": x})
    with pytest.raises(ValueError, match="operators"):
        stability_profile(model, (x, y), operators=("ntk",))
    with pytest.raises(ValueError, match="unknown loss"):
        stability_profile(model, (x, y), loss="hinge")
    with pytest.raises(ValueError, match="no parameters"):
        stability_profile(nn.Flatten(), (x, y))
    with pytest.raises(ValueError, match="perturbation size"):
        measure_forward_sensitivity(model, x, 0.0)
    with pytest.raises(ValueError, match="direction"):
        measure_parameter_sensitivity(model, x, 1e-3, direction="best")
    with pytest.raises(ValueError, match="labels"):
        measure_max_stable_lr(model, x)
    assert isinstance(stability_profile(model, (x.float().double(), y)), StabilityProfile)
