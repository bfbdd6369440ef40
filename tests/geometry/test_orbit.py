"""The power-law orbit: Gibbs identities, KL/Fisher/Hellinger/Bures against finite differences,
scipy sqrtm and closed forms; the top-radial chart and Fisher-Rao length."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats
import torch

from spectral_lab import geometry as g

from ._helpers import D


def test_harmonic_number_and_orbit_point():
    assert math.isclose(g.harmonic_number(100, 2.0), sum(j**-2.0 for j in range(1, 101)))
    lam = g.power_law_spectrum(0.8, D)
    assert math.isclose(lam.sum(), D)
    assert np.allclose(lam, D * np.arange(1, D + 1) ** -0.8 / g.harmonic_number(D, 0.8))
    assert np.allclose(g.power_law_spectrum(0.0, D), 1.0)
    assert math.isclose(g.power_law_spectrum(0.8, D, trace="one").sum(), 1.0)
    assert math.isclose(g.log_partition(0.8, D), math.log(g.harmonic_number(D, 0.8)))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.3, 3.0])
def test_gibbs_identities_by_finite_differences(alpha):
    h = 1e-4
    psi = lambda a: g.log_partition(a, D)  # noqa: E731
    d1 = (psi(alpha + h) - psi(alpha - h)) / (2 * h)
    d2 = (psi(alpha + h) - 2 * psi(alpha) + psi(alpha - h)) / h**2
    assert math.isclose(-d1, g.mean_log_rank(alpha, D), rel_tol=1e-7)
    assert math.isclose(d2, g.fisher_information(alpha, D), rel_tol=1e-5)
    # independent variance via scipy.stats on the rank distribution
    rv = scipy.stats.rv_discrete(values=(np.arange(1, D + 1), g.gibbs_distribution(alpha, D)))
    logk = np.log(np.arange(1, D + 1))
    var = rv.expect(lambda k: np.log(k) ** 2) - rv.expect(np.log) ** 2
    assert math.isclose(var, g.fisher_information(alpha, D), rel_tol=1e-8)
    assert math.isclose(g.mean_log_rank(0.0, D), math.lgamma(D + 1) / D, rel_tol=1e-12)
    assert logk.size == D


def test_kl_closed_form_and_fisher_by_kl_finite_differences():
    p, q = g.gibbs_distribution(0.6, D), g.gibbs_distribution(1.3, D)
    direct = float(np.sum(p * np.log(p / q)))
    assert math.isclose(g.orbit_kl(0.6, 1.3, D), direct, rel_tol=1e-10)
    assert math.isclose(direct, 0.3069257, rel_tol=1e-6)  # value quoted in the spec
    for a in (0.2, 1.0, 2.5):
        h = 1e-3
        assert math.isclose(
            2 * g.orbit_kl(a, a + h, D) / h**2, g.fisher_information(a, D), rel_tol=3e-3
        )


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
def test_bures_line_element_against_sqrtm_bw(alpha):
    h = 1e-3
    s1 = np.diag(g.power_law_spectrum(alpha, D))
    s2 = np.diag(g.power_law_spectrum(alpha + h, D))
    # independent: general BW formula with scipy's sqrtm (no use of commutativity)
    r1 = scipy.linalg.sqrtm(s1)
    bw2 = np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(r1 @ s2 @ r1)).real
    assert math.isclose(bw2 / h**2, g.bures_line_element(alpha, D), rel_tol=5e-3)
    assert math.isclose(g.orbit_bures_distance(alpha, alpha + h, D) ** 2, bw2, rel_tol=1e-6)
    # trace "one": line element I/4
    assert math.isclose(
        g.bures_line_element(alpha, D, trace="one") * D, g.bures_line_element(alpha, D)
    )
    # a deliberately wrong factor (d/2) would be caught
    assert not math.isclose(bw2 / h**2, D / 2 * g.fisher_information(alpha, D), rel_tol=5e-2)


def test_general_bures_distance_and_quotient_lower_bound():
    rng = np.random.default_rng(3)
    d = 6
    for _ in range(20):
        x, y = rng.standard_normal((d, d)), rng.standard_normal((d, d))
        s1, s2 = x @ x.T, y @ y.T
        r1 = scipy.linalg.sqrtm(s1)
        ref = math.sqrt(
            max(
                np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(r1 @ s2 @ r1)).real, 0
            )
        )
        got = g.bures_wasserstein_distance(torch.tensor(s1), torch.tensor(s2)).item()
        assert math.isclose(got, ref, rel_tol=1e-6, abs_tol=1e-8)
        # quotient (ordered-spectra) distance is a lower bound (spec 3.1)
        l1 = np.sort(np.linalg.eigvalsh(s1))[::-1]
        l2 = np.sort(np.linalg.eigvalsh(s2))[::-1]
        assert np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2) <= got**2 + 1e-9


def test_hellinger_relation_on_orbit():
    a, b = 0.4, 0.9
    hel = g.orbit_hellinger(a, b, D)
    p, q = g.gibbs_distribution(a, D), g.gibbs_distribution(b, D)
    assert math.isclose(hel**2, np.sum((np.sqrt(p) - np.sqrt(q)) ** 2))
    assert math.isclose(g.orbit_bures_distance(a, b, D) ** 2, D * hel**2)


def test_top_radial_chart_derivatives_inverse_and_lipschitz():
    h = 1e-5
    for a in (0.0, 0.7, 2.0):
        rp = (g.orbit_top_radial(a + h, D) - g.orbit_top_radial(a - h if a > 0 else a, D)) / (
            2 * h if a > 0 else h
        )
        assert math.isclose(rp, 0.5 * g.mean_log_rank(a, D), rel_tol=1e-4)
        rpp = (
            g.orbit_top_radial(a + 2 * h, D)
            - 2 * g.orbit_top_radial(a + h, D)
            + g.orbit_top_radial(a, D)
        ) / h**2
        assert math.isclose(rpp, -0.5 * g.fisher_information(a + h, D), rel_tol=1e-2)
        assert math.isclose(
            g.orbit_top_radial_inverse(g.orbit_top_radial(a, D), D), a, abs_tol=1e-9
        )
    assert math.isclose(0.5 * g.mean_log_rank(0.0, D), 1.27434, rel_tol=1e-5)  # spec's check value
    # Lipschitz constant of r⁻¹ on [0, r(α*)]: max of the secant slopes equals 2/E_{α*}[log k]
    a_star = 1.5
    grid = np.linspace(0, a_star, 400)
    rs = np.array([g.orbit_top_radial(a, D) for a in grid])
    slopes = np.diff(grid) / np.diff(rs)
    lip = g.inverse_chart_lipschitz(a_star, D)
    assert slopes.max() <= lip * (1 + 1e-9)
    assert slopes.max() > lip * 0.99
    # using the slope at the identity instead would under-estimate it (r⁻¹ is convex)
    assert g.inverse_chart_lipschitz(0.0, D) < slopes.max()
    assert math.isclose(
        g.inverse_chart_lipschitz(0.0, 4096), 2 / (math.log(4096) - 1), rel_tol=2e-3
    )


def test_fisher_rao_length_and_actions():
    # independent length: trapezoid on a fine grid
    grid = np.linspace(0.2, 1.4, 4001)
    ref = np.trapezoid([math.sqrt(g.fisher_information(a, D)) for a in grid], grid)
    assert math.isclose(g.fisher_rao_length(0.2, 1.4, D), ref, rel_tol=1e-6)
    coarse = g.orbit_actions(np.linspace(0.2, 1.4, 6), D)
    fine = g.orbit_actions(np.linspace(0.2, 1.4, 60), D)

    def err(a):
        return (
            abs(a.kl_action / a.fisher_action - 1),
            abs(a.bures_action / (D / 4 * a.fisher_action) - 1),
        )  # noqa: E731

    assert all(f < c for f, c in zip(err(fine), err(coarse)))
    assert max(err(fine)) < 5e-3
    assert coarse.cauchy_schwarz_holds and fine.cauchy_schwarz_holds
    assert math.isclose(fine.fisher_length, g.fisher_rao_length(0.2, 1.4, D), rel_tol=1e-8)
    # BW length is (sqrt d / 2) x Fisher-Rao length: sum of BW step distances over a fine path
    path = np.linspace(0.2, 1.4, 400)
    bw_len = sum(g.orbit_bures_distance(a, b, D) for a, b in zip(path[:-1], path[1:]))
    assert math.isclose(bw_len, math.sqrt(D) / 2 * g.fisher_rao_length(0.2, 1.4, D), rel_tol=1e-4)
