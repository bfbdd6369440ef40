"""Per-sample attribution metrics and the attribution condition number against NumPy."""

from __future__ import annotations

import numpy as np
import torch

import spectral_lab as sl
from spectral_lab.attribution import finite_difference_sensitivity, topk_overlap

from ._helpers import _linear, _tanh_mlp


def test_per_sample_metrics_against_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 20))
    b = a + 0.3 * rng.normal(size=(6, 20))
    ta, tb = torch.tensor(a), torch.tensor(b)
    rel = np.linalg.norm(b - a, axis=1) / np.linalg.norm(a, axis=1)
    cos = 1 - (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert np.allclose(sl.attribution.relative_change(ta, tb).numpy(), rel)
    assert np.allclose(sl.attribution.cosine_distance(ta, tb).numpy(), cos)
    k = 5
    ref = [
        len(set(np.argsort(-np.abs(a[i]))[:k]) & set(np.argsort(-np.abs(b[i]))[:k])) / k
        for i in range(6)
    ]
    assert np.allclose(topk_overlap(ta, tb, k).numpy(), ref)
    assert np.allclose(topk_overlap(ta, tb, 0.25).numpy(), ref)  # 25% of 20 features = 5
    assert torch.allclose(topk_overlap(ta, ta, 3), torch.ones(6, dtype=torch.float64))


def test_attribution_condition_number_median_and_classical():
    torch.manual_seed(0)
    J = torch.randn(5, 4, 30, dtype=torch.float64)
    s = np.linalg.svd(J.numpy(), compute_uv=False)
    ref = s[:, 0] / np.median(s, axis=1)
    assert np.allclose(sl.attribution.attribution_condition_number(J).numpy(), ref)
    assert np.allclose(
        sl.attribution.attribution_condition_number(J, kind="classical").numpy(), s[:, 0] / s[:, -1]
    )
    m = _tanh_mlp()
    x = torch.randn(5, 6, dtype=torch.float64)
    via_model = sl.attribution.attribution_condition_number(m, x)
    assert torch.allclose(
        via_model, sl.attribution.attribution_condition_number(sl.input_jacobian(m, x))
    )
    assert (via_model >= 1).all()
    # a flat spectrum has kappa = 1
    Q = torch.linalg.qr(torch.randn(30, 4, dtype=torch.float64)).Q.T
    assert torch.allclose(
        sl.attribution.attribution_condition_number(3 * Q), torch.tensor(1.0, dtype=torch.float64)
    )


def test_finite_difference_sensitivity_of_a_linear_map():
    m = _linear()
    W = m[0].weight.detach()
    x = torch.randn(4, 5, dtype=torch.float64)
    d = torch.randn(4, 5, dtype=torch.float64)
    ref = (d @ W.T).norm(dim=1) / d.norm(dim=1)
    assert torch.allclose(finite_difference_sensitivity(m, x, d), ref)
