"""Mutation tests of the profile and the index: each slip an audit found surviving (and each of
this round's own) is applied, and the check against an independent reference must reject it.

The reference is dense and independent of the library's operators: ``torch.autograd.functional``
Jacobians and Hessians of a tiny float64 model, reduced with NumPy (``np.linalg.svd``,
``np.linalg.eigvalsh``, ``np.quantile(method="higher")``). Every test calls the public API
(``sl.stability_profile``, ``StabilityProfile.with_q``, ``sl.stability_index``, ``sl.diagnose``)
and re-implements the slip on the public result (``dataclasses.replace``) or monkeypatches a
public method, so it survives a refactor of the profile's internals. Each asserts both ways: the
check passes on the library's value and fails on the mutant's (and the two values differ by more
than the tolerance, so the test is never vacuous).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

import spectral_lab as sl
from spectral_lab.stability import StabilityProfile

from ._helpers import _dense_param_jacobian, _flat_params, _model

BATCH = 3  # several batches: Q_q over samples and over per-batch maxima differ


def _np_entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _reference(model, x, y, loss: str) -> dict:
    """Dense per-sample and data-set spectra of ``model`` on ``(x, y)``, reduced with NumPy."""
    jf = np.stack(
        [torch.autograd.functional.jacobian(lambda z: model(z[None])[0], xi).numpy() for xi in x]
    )
    s = np.linalg.svd(jf, compute_uv=False)  # (n, min(C, d)), descending
    jt = np.stack([_dense_param_jacobian(model, xi).numpy() for xi in x])  # (n, C, p)
    st = np.linalg.svd(jt, compute_uv=False)
    lam_k = np.linalg.eigvalsh(np.einsum("icp,jcp->ij", jt, jt))
    flat, unflat = _flat_params(model)

    def loss_of(v):
        out = functional_call(model, unflat(v), (x,))
        if loss == "mse":
            return 0.5 * ((out - y) ** 2).sum(1).mean()
        return nn.functional.cross_entropy(out, y)

    lam_h = np.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat).numpy())
    p = s**2 / (s**2).sum(1, keepdims=True)
    return {
        "n": len(x),
        "C": jf.shape[1],
        "jac_top": s[:, 0],
        "jac_fro": np.sqrt((s**2).sum(1)) / math.sqrt(jf.shape[1]),
        "jac_entropy": np.array([_np_entropy(pi) for pi in p]),
        "param_top": st[:, 0],
        "param_fro": np.sqrt((st**2).sum(1)),
        "ntk_eigs": lam_k,
        "hess_eigs": lam_h,
    }


def _q(v: np.ndarray, q: float) -> float:
    return float(np.quantile(v, q, method="higher"))


def profile_mismatches(prof: StabilityProfile, ref: dict, rtol: float = 1e-6) -> list[str]:
    """Every aggregate of ``prof`` against the dense reference; the names of those that differ."""
    lam = np.clip(ref["ntk_eigs"], 0, None)
    want = {
        "jac_top": _q(ref["jac_top"], prof.q),
        "jac_fro": float(ref["jac_fro"].mean()),
        "jac_entropy": float(ref["jac_entropy"].mean()),
        "jac_entropy_q": _q(ref["jac_entropy"], prof.q),
        "param_top": _q(ref["param_top"], prof.q),
        "ntk_top": float(ref["ntk_eigs"][-1]) / ref["n"],
        "ntk_min": max(float(ref["ntk_eigs"][0]), 0.0) / ref["n"],
        "ntk_entropy": _np_entropy(lam / lam.sum()),  # p_k = lambda_k / sum lambda (sigma^2)
        "hess_top": float(ref["hess_eigs"][-1]),  # the largest *algebraic* eigenvalue
    }
    bad = []
    for key, w in want.items():
        got = getattr(prof, key)
        if got is None or not math.isclose(got, w, rel_tol=rtol, abs_tol=1e-9):
            bad.append(key)
    return bad


def index_mismatches(idx, ref: dict, q: float, rtol: float = 1e-6) -> list[str]:
    """The index's terms and ``Gamma = max`` against the dense reference."""
    want = {
        "input_jacobian": _q(ref["jac_top"], q),
        "parameter_jacobian": _q(ref["param_top"], q),
        "ntk": math.sqrt(float(ref["ntk_eigs"][-1]) / ref["n"]),
        "hessian": math.sqrt(max(float(ref["hess_eigs"][-1]), 0.0)),
    }
    bad = [k for k, w in want.items() if not math.isclose(idx.terms[k], w, rel_tol=rtol)]
    if not math.isclose(idx.value, max(want.values()), rel_tol=rtol):
        bad.append("value")
    return bad


@pytest.fixture(scope="module")
def case(_float64):
    """A tiny float64 MLP under 1/2-MSE whose Hessian's most negative eigenvalue is larger in
    magnitude than its largest (-17.7 vs 8.7), profiled from a DataLoader of several batches."""
    model = _model(seed=1, gain=1.3, width=6, depth=2, d=4, c=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 4, generator=g)
    y = 5 * torch.randn(10, 2, generator=g)
    ref = _reference(model, x, y, "mse")
    assert -ref["hess_eigs"][0] > 1.5 * ref["hess_eigs"][-1] > 0  # the case the slip needs
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    prof = sl.stability_profile(model, loader, loss="mse", max_iter=200, q=0.5)
    return model, x, y, loader, ref, prof


def _caught(mutant: StabilityProfile, prof: StabilityProfile, ref: dict, key: str) -> None:
    """The check passes on the library's profile and names ``key`` on the mutant's."""
    assert profile_mismatches(prof, ref) == []
    assert not math.isclose(getattr(mutant, key), getattr(prof, key), rel_tol=1e-3)
    assert key in profile_mismatches(mutant, ref)


def _entropy_of_probs(p: torch.Tensor) -> float:
    p = p[p > 0]
    return float(-(p * p.log()).sum())


# --- the five survivors of the audit ---------------------------------------------------------


def test_ntk_entropy_uses_sigma_squared_weights(case):
    """Survivor 1: NTK eigenvalues passed as singular values (weights lambda^2, not lambda)."""
    *_, ref, prof = case
    lam = torch.tensor(ref["ntk_eigs"]).clamp_min(0)
    mutant = dataclasses.replace(prof, ntk_entropy=_entropy_of_probs(lam**2 / (lam**2).sum()))
    _caught(mutant, prof, ref, "ntk_entropy")


def test_with_q_reaggregates_every_per_sample_term(case, monkeypatch):
    """Survivor 2: ``with_q`` re-aggregating the input-Jacobian term but keeping the
    parameter-Jacobian term at the profile's own quantile (the supremum here)."""
    model, x, y, loader, ref, prof = case
    sup = prof.with_q(1.0)
    assert profile_mismatches(sup, ref) == [] and profile_mismatches(sup.with_q(0.5), ref) == []
    assert index_mismatches(sl.stability_index(sup.with_q(0.5)), ref, 0.5) == []
    right = StabilityProfile.with_q

    def slip(self, q):
        return dataclasses.replace(right(self, q), param_top=self.param_top)

    monkeypatch.setattr(StabilityProfile, "with_q", slip)
    half = sup.with_q(0.5)
    assert "param_top" in profile_mismatches(half, ref)
    assert "parameter_jacobian" in index_mismatches(sl.stability_index(half), ref, 0.5)


def test_quantile_is_over_samples_not_per_batch_maxima(case):
    """Survivor 3: ``Q_q`` over per-batch maxima (equal to the right value when one batch holds
    every sample: the fixture streams batches of 3)."""
    *_, ref, prof = case
    maxima = torch.stack([v.max() for v in prof.samples["jac_top"].split(BATCH)])
    mutant = dataclasses.replace(prof, jac_top=sl.stability.quantile(maxima, prof.q))
    _caught(mutant, prof, ref, "jac_top")
    # and the same slip on the parameter Jacobian's term
    maxima = torch.stack([v.max() for v in prof.samples["param_top"].split(BATCH)])
    mutant = dataclasses.replace(prof, param_top=sl.stability.quantile(maxima, prof.q))
    _caught(mutant, prof, ref, "param_top")


def test_hessian_term_is_the_largest_algebraic_eigenvalue(case):
    """Survivor 5: ``lambda_max(H)`` taken as the eigenvalue of largest magnitude (negative
    here, so the Hessian would drop out of Gamma)."""
    *_, ref, prof = case
    lam = ref["hess_eigs"]
    mutant = dataclasses.replace(prof, hess_top=float(lam[np.abs(lam).argmax()]))
    _caught(mutant, prof, ref, "hess_top")
    assert "hessian" in index_mismatches(sl.stability_index(mutant), ref, prof.q)
    assert index_mismatches(sl.stability_index(prof), ref, prof.q) == []


def test_diagnose_agrees_with_the_dense_reference(case):
    """The one path ``diagnose`` takes gives the same profile and index (sup and robust)."""
    model, x, y, loader, ref, _ = case
    rep = sl.diagnose(
        model, loader, loss="mse", progress=False, robust_q=0.5, max_iter=200, tol=1e-10,
        num_ntk_samples=10, num_hessian_samples=10,
    )  # fmt: skip
    assert profile_mismatches(rep.profile, ref) == []
    assert index_mismatches(rep.index, ref, 1.0) == []
    assert index_mismatches(rep.robust_index, ref, 0.5) == []


# --- this round's own slips ------------------------------------------------------------------
# Each builds the value a plausible slip would give from the public profile; the check must name it.


def _mut_fro_over_c(prof, ref):  # ||J||_F / C instead of / sqrt(C)
    return "jac_fro", prof.jac_fro / math.sqrt(ref["C"])


def _mut_ntk_not_over_n(prof, ref):  # lambda_max(K) without the 1/n
    return "ntk_top", prof.ntk_top * ref["n"]


def _mut_ntk_top_first(prof, ref):  # eigvalsh's first (smallest) value read as lambda_max
    return "ntk_top", float(ref["ntk_eigs"][0]) / ref["n"]


def _mut_entropy_bits(prof, ref):  # the profile's entropy in bits although base e was asked
    return "jac_entropy", prof.jac_entropy / math.log(2)


def _mut_quantile_linear(prof, ref):  # torch.quantile's default (linear) rule, not "higher"
    return "jac_top", float(torch.quantile(prof.samples["jac_top"], prof.q))


def _mut_quantile_lower(prof, ref):  # the "lower" rule (a median that rounds down)
    v = prof.samples["jac_entropy"]
    return "jac_entropy_q", float(torch.quantile(v, prof.q, interpolation="lower"))


def _mut_entropy_mean_is_q(prof, ref):  # the mean entropy replaced by its quantile
    return "jac_entropy", sl.stability.quantile(prof.samples["jac_entropy"], prof.q)


def _mut_param_top_fro(prof, ref):  # ||J_theta(x_i)||_F in place of sigma_1(J_theta(x_i))
    return "param_top", _q(ref["param_fro"], prof.q)


PROFILE_SLIPS = [
    _mut_fro_over_c,
    _mut_ntk_not_over_n,
    _mut_ntk_top_first,
    _mut_entropy_bits,
    _mut_quantile_linear,
    _mut_quantile_lower,
    _mut_entropy_mean_is_q,
    _mut_param_top_fro,
]


@pytest.mark.parametrize("slip", PROFILE_SLIPS, ids=lambda f: f.__name__[5:])
def test_own_round_profile_slips_are_caught(case, slip):
    *_, ref, prof = case
    key, value = slip(prof, ref)
    _caught(dataclasses.replace(prof, **{key: value}), prof, ref, key)


def test_own_round_index_slips_are_caught(case):
    """The index: the NTK term without the 1/n, the Hessian term without the square root, and
    ``sqrt(|lambda|)`` for a negative top eigenvalue (a concave loss must not enter Gamma)."""
    *_, ref, prof = case
    idx = sl.stability_index(prof)
    assert index_mismatches(idx, ref, prof.q) == []
    for key, value in (
        ("ntk", math.sqrt(prof.ntk_top * ref["n"])),
        ("hessian", prof.hess_top),
    ):
        wrong = dataclasses.replace(idx, terms={**idx.terms, key: value})
        assert key in index_mismatches(wrong, ref, prof.q)
    # a negative lambda_max(H): the term is 0, not sqrt(|lambda|)
    neg = dataclasses.replace(prof, hess_top=-4.0)
    assert sl.stability_index(neg).terms["hessian"] == 0.0
    # the weighted geometric mean uses the weights (exp(sum w log t / sum w)), not a plain mean
    w = {"input_jacobian": 3.0, "parameter_jacobian": 1.0, "ntk": 1.0, "hessian": 1.0}
    t = sl.stability_index(prof).terms
    want = math.exp(sum(w[k] * math.log(t[k]) for k in t) / sum(w.values()))
    plain = math.exp(sum(math.log(v) for v in t.values()) / len(t))
    got = sl.stability_index(prof, weights=w, agg="geomean").value
    assert math.isclose(got, want, rel_tol=1e-12) and not math.isclose(got, plain, rel_tol=1e-3)
