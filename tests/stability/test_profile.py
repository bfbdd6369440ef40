"""The Matrix Stability Profile against dense references (torch.autograd on tiny float64 models):
streaming, quantiles, caps, the block NTK option and input errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

import spectral_lab as sl
from spectral_lab.stability import (
    StabilityProfile,
    index_terms,
    measure_forward_sensitivity,
    measure_max_stable_lr,
    measure_parameter_sensitivity,
    quantile,
    stability_profile,
)

from ._helpers import _dense_param_jacobian, _flat_params


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
    assert math.isclose(prof.jac_top, s[:, 0].max().item(), rel_tol=1e-12) and prof.q == 1.0
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
    prof2 = stability_profile(model, loader, max_iter=200, batch_size=5)
    for k in ("jac_top", "param_top", "jac_entropy"):
        assert torch.allclose(prof.samples[k], prof2.samples[k], rtol=1e-10)
    assert math.isclose(prof.ntk_top, prof2.ntk_top, rel_tol=1e-10)
    capped = stability_profile(
        model,
        loader,
        max_samples=7,
        num_ntk_samples=4,
        num_hessian_samples=6,
        operators=("input_jacobian", "ntk"),
    )
    assert (
        capped.n == 7 and capped.n_ntk == 4 and capped.param_top is None and capped.hess_top is None
    )
    assert set(index_terms(capped)) == {"input_jacobian", "ntk"}
    # inputs only: labels are the model's own predictions
    only_x = stability_profile(model, x, operators=("input_jacobian", "hessian"), max_iter=200)
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
