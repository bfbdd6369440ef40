"""Frobenius normalisation, Cartan coordinates and the top radial against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral_lab import geometry as g

from ._helpers import _haar, _np_log_sigma1_normalized


def test_frobenius_normalize_and_cartan_coordinates():
    torch.manual_seed(0)
    a = torch.randn(3, 5, 5, dtype=torch.float64)
    ab = g.frobenius_normalize(a)
    assert torch.allclose((ab**2).sum((-1, -2)), torch.full((3,), 5.0, dtype=torch.float64))
    assert torch.allclose(
        (g.frobenius_normalize(a, "one") ** 2).sum((-1, -2)), torch.ones(3, dtype=torch.float64)
    )
    c = g.cartan_coordinates(a)
    # independent: eigenvalues of ĀᵀĀ from numpy, a_k = ½ log λ_k, descending, Σ e^{2a} = d
    lam = np.sort(np.linalg.eigvalsh((ab.transpose(-1, -2) @ ab).numpy()), axis=-1)[:, ::-1]
    assert np.allclose(c.numpy(), 0.5 * np.log(lam))
    assert torch.allclose(torch.exp(2 * c).sum(-1), torch.full((3,), 5.0, dtype=torch.float64))
    # invariance under left/right orthogonal factors (quotient map)
    rng = np.random.default_rng(0)
    q1, q2 = (torch.tensor(_haar(5, rng)) for _ in range(2))
    assert torch.allclose(g.cartan_coordinates(q1 @ a[0] @ q2), c[0])


def test_top_radial_range_and_options():
    d = 16
    assert g.top_radial(np.ones(d)) == 0.0
    rank1 = np.r_[1.0, np.zeros(d - 1)]
    near = np.r_[1.0, np.full(d - 1, 1e-6)]
    assert math.isclose(g.top_radial(near), 0.5 * math.log(d), rel_tol=1e-6)
    assert math.isclose(g.top_radial(near, normalized=True), 1.0, rel_tol=1e-6)
    s = np.random.default_rng(1).uniform(0.1, 2, d)
    r = g.top_radial(s)
    # independent: log σ_1 of the trace-d normalised diagonal matrix
    ab = g.frobenius_normalize(torch.diag(torch.tensor(s)))
    assert math.isclose(r, math.log(torch.linalg.matrix_norm(ab, 2).item()), rel_tol=1e-12)
    assert math.isclose(g.top_radial(s, trace="one"), r - 0.5 * math.log(d))
    # rank one: the zeros are part of the d x d factor, so r = ½ log d (not 0, "flat")
    assert math.isclose(g.top_radial(rank1), 0.5 * math.log(d), rel_tol=1e-12)
    assert math.isclose(g.top_radial(rank1, normalized=True), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize("rank", [1, 5, 16])
def test_top_radial_of_rank_deficient_factors_is_log_sigma1(rank):
    """r = log σ_1(frobenius_normalize(A)) for any factor; reference: numpy SVD of a dense matrix."""
    d = 16
    rng = np.random.default_rng(rank)
    a = rng.standard_normal((d, rank)) @ rng.standard_normal((rank, d))
    ref = _np_log_sigma1_normalized(a)
    sv = np.linalg.svd(a, compute_uv=False)  # d values, d - rank of them ~1e-15
    assert g.top_radial(sv) == pytest.approx(ref, abs=1e-12)
    assert g.top_radial(np.r_[sv[:rank], np.zeros(d - rank)]) == pytest.approx(ref, abs=1e-12)
    assert g.top_radial(sv**2, kind="eigen") == pytest.approx(ref, abs=1e-12)
    lib = torch.log(torch.linalg.matrix_norm(g.frobenius_normalize(torch.tensor(a)), 2)).item()
    assert lib == pytest.approx(ref, abs=1e-12)
    if rank == 1:
        assert ref == pytest.approx(0.5 * math.log(d), abs=1e-12)
