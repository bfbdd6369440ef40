"""Measured forward, parameter and attribution changes against the Theorem 4.2 bounds (exact for
a linear network, first order on tanh)."""

from __future__ import annotations

import math

import pytest
import torch

from spectral_lab.stability import (
    attribution_change_bound,
    forward_sensitivity_bound,
    measure_attribution_change,
    measure_forward_sensitivity,
    measure_parameter_sensitivity,
    parameter_sensitivity_bound,
    stability_index,
    stability_profile,
)

from ._helpers import _data, _model


def test_forward_bound_exact_for_linear_network_and_catches_a_wrong_one():
    model = _model(act="identity")
    x, y = _data()
    idx = stability_index(stability_profile(model, (x, y), operators=("input_jacobian",)))
    eps = 0.3
    worst = measure_forward_sensitivity(model, x, eps, direction="worst")
    rand = measure_forward_sensitivity(model, x, eps, direction="random", num_draws=16)
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
        rand = measure_parameter_sensitivity(model, x, dn, num_draws=4)
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
    change = measure_attribution_change(model, x, 0.5, num_draws=3, seed=0)
    assert change.shape == (len(x),) and bool((change > 0).all())
