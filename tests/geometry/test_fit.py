"""Power-law fits: exact and noisy power laws recovered, the MLE is the KL minimiser, non-power
laws flagged, error paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral_lab import geometry as g

from ._helpers import D, _np_log_sigma1_normalized, _np_orbit_r


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 2.5])
def test_exact_power_law_recovered_by_every_chart(alpha):
    fit = g.power_law_fit(g.power_law_spectrum(alpha, 64), kind="eigen")
    for a in (fit.alpha_mle, fit.alpha_ls, fit.alpha_top_radial, fit.alpha_hellinger):
        assert a == pytest.approx(alpha, abs=1e-6)
    assert fit.is_power_law and fit.res_hel < 1e-6 and abs(fit.rho) < 1e-9 and fit.res_kl < 1e-12
    # singular values route: σ = sqrt(λ)
    fit_s = g.power_law_fit(np.sqrt(g.power_law_spectrum(alpha, 64)))
    assert fit_s.alpha == pytest.approx(alpha, abs=1e-6)


@pytest.mark.parametrize("d", [64, 256])
@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.5, 2.0])
def test_noisy_power_law_recovered_within_tolerance(alpha, d):
    """Stated tolerance: 5% multiplicative log-normal noise, |α̂_mle − α| ≤ 0.05 and accepted."""
    rng = np.random.default_rng(int(10 * alpha) + d)
    lam = g.power_law_spectrum(alpha, d) * np.exp(0.05 * rng.standard_normal(d))
    fit = g.power_law_fit(lam, kind="eigen")
    assert abs(fit.alpha_mle - alpha) <= 0.05
    assert abs(fit.alpha_ls - alpha) <= 0.05
    assert fit.is_power_law, fit


def test_mle_is_the_kl_minimiser_and_windowed_fit():
    rng = np.random.default_rng(0)
    lam = np.sort(g.power_law_spectrum(1.1, D) * np.exp(0.2 * rng.standard_normal(D)))[::-1]
    fit = g.power_law_fit(lam, kind="eigen")
    p = lam / lam.sum()
    kl = lambda a: float(np.sum(p * np.log(p / g.gibbs_distribution(a, D))))  # noqa: E731
    grid = np.linspace(0, 3, 3001)
    assert fit.alpha_mle == pytest.approx(grid[np.argmin([kl(a) for a in grid])], abs=2e-3)
    assert fit.res_kl == pytest.approx(kl(fit.alpha_mle), rel=1e-8)
    hel = lambda a: np.sqrt(np.sum((np.sqrt(p) - np.sqrt(g.gibbs_distribution(a, D))) ** 2))  # noqa: E731
    assert fit.res_hel == pytest.approx(min(hel(a) for a in grid), rel=1e-4)
    assert fit.rho == pytest.approx(
        g.top_radial(lam, "eigen") - g.orbit_top_radial(fit.alpha_mle, D)
    )
    # a spectrum that is a power law only on ranks 5..40 (head flattened) is fitted on that window
    lam2 = g.power_law_spectrum(1.2, 48)
    lam2[:4] = lam2[4]
    w = g.power_law_fit(lam2, kind="eigen", window=(5, 40))
    assert w.alpha_mle == pytest.approx(1.2, abs=1e-8) and w.alpha_ls == pytest.approx(
        1.2, abs=1e-8
    )
    assert w.window == (5, 40)
    assert w.ks < 1e-12


@pytest.mark.parametrize(
    "name,lam",
    [
        ("two-level", np.r_[np.full(16, 10.0), np.ones(16)]),
        ("two-level mild", np.r_[np.full(8, 2.0), np.ones(24)]),
        ("exponential", np.exp(-np.arange(32) / 5)),
        ("exponential width", np.exp(-np.arange(256) * 4 / 256)),
        (
            "Marchenko-Pastur",
            np.linalg.svd(np.random.default_rng(0).standard_normal((64, 64)), compute_uv=False)
            ** 2,
        ),
    ],
)
def test_non_power_laws_are_flagged(name, lam):
    fit = g.power_law_fit(lam, kind="eigen")
    assert not fit.is_power_law, (name, fit)
    assert fit.verdict.startswith("NOT a power law")


def test_fit_error_paths():
    with pytest.raises(ValueError, match="NaN"):
        g.power_law_fit([1.0, np.nan, 0.5])
    with pytest.raises(ValueError, match="at least 3"):
        g.power_law_fit([1.0, 0.5])
    with pytest.raises(ValueError, match="window"):
        g.power_law_fit(np.ones(10), window=(5, 3))
    with pytest.raises(ValueError, match="chart"):
        g.power_law_fit(np.ones(10), chart="foo")
    with pytest.raises(ValueError, match="kind"):
        g.power_law_fit(np.ones(10), kind="sv")
    with pytest.raises(ValueError, match="1-D"):
        g.power_law_fit(np.ones((3, 3)))
    with pytest.raises(ValueError, match="identically zero"):
        g.power_law_fit(np.zeros(5))
    with pytest.raises(ValueError, match="trace"):
        g.frobenius_normalize(torch.eye(3), trace="two")
    with pytest.raises(TypeError, match="integer"):
        g.frobenius_normalize(torch.eye(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="positive integer"):
        g.fisher_information(1.0, 0)
    # flat spectrum: the identity point
    flat = g.power_law_fit(np.ones(8))
    assert flat.alpha == 0.0 and flat.is_power_law and "flat" in flat.verdict


def test_rank_deficient_spectrum_fit_uses_numerical_rank_top_radial_ambient():
    lam = np.r_[g.power_law_spectrum(1.0, 20), np.zeros(12)]
    fit = g.power_law_fit(lam, kind="eigen")
    # the fit lives on the orbit of the rank (20) ...
    assert fit.d == 20 and fit.alpha == pytest.approx(1.0, abs=1e-8)
    assert fit.r_hat == pytest.approx(_np_orbit_r(1.0, 20), abs=1e-12) and abs(fit.rho) < 1e-10
    # ... while the top radial is log σ_1 of the whole 32 x 32 factor (numpy reference)
    ref = _np_log_sigma1_normalized(np.diag(np.sqrt(lam)))
    assert g.top_radial(lam, kind="eigen") == pytest.approx(ref, abs=1e-12)
    assert ref == pytest.approx(fit.r_hat + 0.5 * math.log(32 / 20), abs=1e-12)
    # the budget refuses to mix the two: a rank-deficient factor gives no budget
    fac = torch.stack([torch.diag(torch.tensor(np.sqrt(lam)))] * 2) + 0.0
    fac[0] = torch.eye(32, dtype=torch.float64)
    assert g.chain_profile(fac).budget is None
