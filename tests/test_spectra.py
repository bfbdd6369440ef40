"""Singular spectra and their summaries against closed forms, numpy and invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import spectral_lab as sl

D64 = torch.float64


def test_singular_values_match_numpy_all_methods():
    g = torch.Generator().manual_seed(0)
    for shape in [(7, 7), (3, 40), (40, 3), (5, 10, 200)]:
        m = torch.randn(*shape, dtype=D64, generator=g)
        ref = torch.from_numpy(np.linalg.svd(m.numpy(), compute_uv=False))
        for method in ("auto", "svd", "gram"):
            s = sl.singular_values(m, method=method)
            assert torch.allclose(s, ref, rtol=1e-9, atol=1e-12), (shape, method)


def test_gram_route_caveat_and_auto_fallback():
    # singular values spanning 1 .. 1e-10: the Gram route loses the small ones, auto falls back
    u, _ = torch.linalg.qr(torch.randn(10, 10, dtype=D64))
    v, _ = torch.linalg.qr(torch.randn(200, 10, dtype=D64))
    s_true = torch.logspace(0, -10, 10, dtype=D64)
    m = (u * s_true) @ v.T
    gram = sl.singular_values(m, method="gram")
    auto = sl.singular_values(m)
    assert (gram[-1] - s_true[-1]).abs() / s_true[-1] > 1e-2  # the caveat is real
    assert torch.allclose(auto, s_true, rtol=1e-5)  # and the fallback fixes it
    # batched: only the bad matrix is recomputed, the good one keeps its Gram values
    good = torch.randn(10, 200, dtype=D64)
    both = sl.singular_values(torch.stack([good, m]))
    assert torch.allclose(both[1], s_true, rtol=1e-5)
    assert torch.allclose(both[0], torch.linalg.svdvals(good), rtol=1e-10)


def test_orthogonal_invariance_and_scaling():
    g = torch.Generator().manual_seed(1)
    m = torch.randn(6, 30, dtype=D64, generator=g)
    q1, _ = torch.linalg.qr(torch.randn(6, 6, dtype=D64, generator=g))
    q2, _ = torch.linalg.qr(torch.randn(30, 30, dtype=D64, generator=g))
    assert torch.allclose(sl.singular_values(q1 @ m @ q2), sl.singular_values(m), rtol=1e-10)
    for fn in (
        sl.spectral_entropy,
        sl.stable_rank,
        sl.spectra.participation_ratio,
        sl.effective_rank,
    ):
        assert torch.allclose(fn(7.5 * m), fn(m), rtol=1e-10), fn.__name__
    assert torch.allclose(sl.condition_number(3 * m), sl.condition_number(m), rtol=1e-10)


def test_entropy_closed_forms_on_diagonal_matrices():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=D64)
    m = torch.diag(s)
    p2 = s[:3] ** 2 / (s[:3] ** 2).sum()
    p1 = s[:3] / s[:3].sum()
    h2 = float(-(p2 * p2.log()).sum())
    h1 = float(-(p1 * p1.log()).sum())
    assert math.isclose(float(sl.spectral_entropy(m)), h2, rel_tol=1e-12)
    assert math.isclose(float(sl.spectral_entropy(m, "amplitude")), h1, rel_tol=1e-12)
    assert math.isclose(float(sl.spectral_entropy(m, base=2)), h2 / math.log(2), rel_tol=1e-12)
    # normalised by log r, with r = 3 (the zero singular value is dropped)
    assert math.isclose(
        float(sl.spectral_entropy(m, normalized=True)), h2 / math.log(3), rel_tol=1e-12
    )
    assert math.isclose(float(sl.spectral_entropy(s, kind="singular")), h2, rel_tol=1e-12)
    # flat spectrum: log r; rank one: 0; zero matrix: 0
    assert math.isclose(
        float(sl.spectral_entropy(torch.eye(5, dtype=D64))), math.log(5), rel_tol=1e-12
    )
    assert float(sl.spectral_entropy(torch.eye(5, dtype=D64), normalized=True)) == pytest.approx(
        1.0
    )
    assert float(sl.spectral_entropy(torch.ones(4, 6, dtype=D64))) == pytest.approx(0.0, abs=1e-12)
    assert float(sl.spectral_entropy(torch.zeros(3, 3, dtype=D64))) == 0.0
    assert float(sl.spectral_entropy(torch.ones(4, 6, dtype=D64), normalized=True)) == 0.0
    # a deliberately wrong normalisation would be caught
    assert not math.isclose(h1, h2, rel_tol=1e-3)


def test_rank_summaries_closed_forms():
    m = torch.diag(torch.tensor([4.0, 2.0, 1.0, 1.0], dtype=D64))
    e = torch.tensor([16.0, 4.0, 1.0, 1.0], dtype=D64)
    assert float(sl.stable_rank(m)) == pytest.approx(22 / 16)
    assert float(sl.spectra.participation_ratio(m)) == pytest.approx(22**2 / float((e**2).sum()))
    assert float(sl.condition_number(m)) == pytest.approx(4.0)
    assert float(sl.condition_number(m, "median")) == pytest.approx(4.0 / 1.5)
    odd = torch.diag(torch.tensor([9.0, 3.0, 1.0], dtype=D64))
    assert float(sl.condition_number(odd, "median")) == pytest.approx(3.0)
    # classical uses the smallest NONZERO singular value; median counts all min(m, n)
    sing = torch.diag(torch.tensor([2.0, 1.0, 0.0], dtype=D64))
    assert float(sl.condition_number(sing)) == pytest.approx(2.0)
    assert float(sl.condition_number(torch.zeros(2, 2, dtype=D64))) == math.inf
    assert int(sl.spectra.numerical_rank(sing)) == 2


def test_renyi_chain_on_100_random_matrices():
    g = torch.Generator().manual_seed(2)
    for _ in range(100):
        r, c = torch.randint(1, 12, (2,), generator=g).tolist()
        m = torch.randn(r, c, dtype=D64, generator=g) * torch.rand(c, dtype=D64, generator=g) ** 3
        s = sl.spectra.spectral_summary(m)
        tol = 1 + 1e-10
        assert 1 <= s.stable_rank * tol
        assert s.stable_rank <= s.participation_ratio * tol
        assert s.participation_ratio <= s.effective_rank * tol
        assert s.effective_rank <= s.rank * tol
        assert torch.allclose(s.frobenius_sq, (m**2).sum())


def test_batched_leading_dimensions():
    m = torch.randn(2, 3, 4, 9, dtype=D64)
    for fn in (
        sl.spectral_entropy,
        sl.stable_rank,
        sl.spectra.participation_ratio,
        sl.effective_rank,
        sl.condition_number,
    ):
        out = fn(m)
        assert out.shape == (2, 3)
        assert torch.allclose(out[1, 2], fn(m[1, 2]))
    assert "SpectralSummary(" in repr(sl.spectra.spectral_summary(m))


def test_errors():
    with pytest.raises(ValueError, match="normalization"):
        sl.spectral_entropy(torch.eye(2), "bits")
    with pytest.raises(ValueError, match="base"):
        sl.spectral_entropy(torch.eye(2), base=10)
    with pytest.raises(ValueError, match="definition"):
        sl.condition_number(torch.eye(2), "worst")
    with pytest.raises(ValueError, match="kind must be"):
        sl.spectral_entropy(torch.eye(2), kind="spectrum")
    with pytest.raises(ValueError, match="method"):
        sl.singular_values(torch.eye(2), method="qr")
    with pytest.raises(ValueError, match="at least 2"):
        sl.singular_values(torch.ones(3))
    with pytest.raises(TypeError, match="integer"):
        sl.stable_rank(torch.eye(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        sl.spectral_entropy(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="nonnegative"):
        sl.spectral_entropy(torch.tensor([1.0, -1.0]), kind="singular")


def test_auto_route_is_differentiable():
    m = torch.randn(3, 40, dtype=D64, requires_grad=True)
    s = sl.singular_values(m)
    s.sum().backward()
    u, _, vh = torch.linalg.svd(m.detach(), full_matrices=False)
    assert torch.allclose(m.grad, u @ vh, atol=1e-10)


def test_a_1d_spectrum_with_the_default_kind_names_the_fix():
    with pytest.raises(ValueError, match="pass kind='singular'"):
        sl.spectral_entropy(torch.tensor([3.0, 1.0]))


def test_kind_singular_and_eigen_agree_with_the_matrix():
    torch.manual_seed(0)
    m = torch.randn(5, 8, dtype=D64)
    s = torch.linalg.svdvals(m)
    lam = torch.linalg.eigvalsh(m @ m.T)  # eigenvalues of the Gram = sigma^2, ascending
    for fn in (
        sl.spectral_entropy,
        sl.effective_rank,
        sl.stable_rank,
        sl.spectra.participation_ratio,
        sl.spectra.numerical_rank,
    ):
        ref = fn(m)
        # numerical_rank uses k in place of max(m, n) in the tolerance; equal here (full rank)
        assert torch.allclose(fn(s, kind="singular").to(D64), ref.to(D64), rtol=1e-10), fn.__name__
        assert torch.allclose(fn(lam, kind="eigen").to(D64), ref.to(D64), rtol=1e-8), fn.__name__
    # independent reference for the eigen route: p_k = lam_k / sum lam
    p = lam / lam.sum()
    assert float(sl.spectral_entropy(lam, kind="eigen")) == pytest.approx(
        float(-(p * p.log()).sum()), rel=1e-12
    )
    with pytest.raises(ValueError, match="PSD"):
        sl.spectral_entropy(torch.tensor([1.0, -0.5]), kind="eigen")


def test_kind_says_what_the_tensor_holds_and_old_spellings_are_refused():
    s = torch.tensor([3.0, 1.0, 0.5], dtype=D64)
    with pytest.raises(TypeError, match="is_spectrum"):
        sl.spectral_entropy(s, is_spectrum=True)
    with pytest.raises(ValueError, match="kind must be one of"):
        sl.condition_number(torch.diag(s), kind="median")  # the variant is definition=
    assert float(sl.condition_number(torch.diag(s), "median")) == 3.0


def test_spectral_summary_is_a_frozen_result_with_to_dict():
    import dataclasses

    summ = sl.spectra.spectral_summary(torch.eye(3, dtype=D64))
    assert summ.to_dict()["rank"] == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        summ.rank = 0
