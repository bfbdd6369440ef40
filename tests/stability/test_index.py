"""The Global Matrix Stability Index: aggregation, weights and errors."""

from __future__ import annotations

import math

import pytest

from spectral_lab.stability import (
    index_terms,
    stability_index,
)


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
