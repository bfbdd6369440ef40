"""verify_consequences: evidence separated from construction, and the certified step against the
measured divergence threshold (with mutation tests of the index)."""

from __future__ import annotations

import math

import pytest
import torch

import spectral_lab as sl
from spectral_lab.stability import (
    BY_CONSTRUCTION,
    verify_consequences,
)


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
