"""The right-hand sides of Theorem 4.2: NTK conditioning and the stable step size against dense
references, and bounds that refuse an index that does not dominate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import spectral_lab as sl
from spectral_lab.stability import (
    forward_sensitivity_bound,
    gd_diverges,
    measure_max_stable_lr,
    ntk_condition_bound,
    parameter_sensitivity_bound,
    stability_index,
    stability_profile,
    stable_step_size,
)

from ._helpers import _dense_param_jacobian


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


def test_stable_step_size_on_quadratic_and_linear_model():
    # a linear model under 1/2-MSE is exactly quadratic: H = [X 1]^T [X 1] / n (per output)
    torch.manual_seed(0)
    model = sl.MLP(4, 2, depth=1).double()
    x = torch.randn(20, 4)
    y = torch.randn(20, 2)
    prof = stability_profile(model, (x, y), loss="mse", max_iter=100)
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
