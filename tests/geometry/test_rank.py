"""Effective rank as a spectral-energy quantile: regimes, tail bounds, robustness."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_lab import geometry as g

from ._helpers import D


def test_effective_rank_quantile_and_monotone_in_alpha():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    assert [g.energy_quantile_rank(p, t, kind="eigen") for t in (0.5, 0.8, 0.9, 0.99)] == [
        1,
        2,
        3,
        4,
    ]
    ks = [g.orbit_energy_quantile_rank(a, D, 0.9) for a in np.linspace(0, 3, 31)]
    assert all(b <= a for a, b in zip(ks[:-1], ks[1:]))
    # definition against the harmonic-number form
    for a in (0.5, 1.0, 2.0):
        h = [g.harmonic_number(k, a) for k in range(1, D + 1)]
        ref = next(k for k in range(1, D + 1) if h[k - 1] >= 0.9 * h[-1])
        assert g.orbit_energy_quantile_rank(a, D, 0.9) == ref


@pytest.mark.parametrize("alpha", [1.2, 1.5, 2.0, 3.0])
def test_finite_width_tail_bounds(alpha):
    for d in (64, 1024):
        p = g.gibbs_distribution(alpha, d)
        for k in (1, 3, 10, 50):
            tail = p[k:].sum()
            assert tail <= g.tail_mass_bound(alpha, k, d) + 1e-15
            assert g.tail_mass_bound(alpha, k, d) <= g.tail_mass_bound(alpha, k)
        for tau in (0.5, 0.9, 0.99):
            assert g.orbit_energy_quantile_rank(alpha, d, tau) <= g.energy_quantile_rank_bound(
                alpha, tau
            )
    # the spec's measured values at tau = 0.9
    assert [g.orbit_energy_quantile_rank(2.0, d, 0.9) for d in (64, 256, 1024, 4096)] == [
        6,
        6,
        6,
        6,
    ]
    assert (
        g.energy_quantile_rank_bound(2.0, 0.9) == 10 or g.energy_quantile_rank_bound(2.0, 0.9) == 11
    )


def test_effective_rank_regimes_match_spec_table():
    got = {
        a: [g.orbit_energy_quantile_rank(a, d, 0.9) for d in (64, 256, 1024, 4096)]
        for a in (0.5, 1.0, 1.5)
    }
    assert got[0.5] == [53, 210, 834, 3327]
    assert got[1.0] == [40, 139, 483, 1683]
    assert got[1.5] == [17, 29, 40, 48]


def test_quantile_robustness_under_total_variation():
    rng = np.random.default_rng(0)
    p = g.gibbs_distribution(1.2, D)
    for _ in range(50):
        q = p * np.exp(0.3 * rng.standard_normal(D))
        q = np.sort(q / q.sum())[::-1]
        tv = g.total_variation(p, q)
        for tau in (0.5, 0.8, 0.9):
            lo = g.energy_quantile_rank(p, max(tau - tv, 1e-9), kind="eigen")
            hi = g.energy_quantile_rank(p, min(tau + tv, 1 - 1e-12), kind="eigen")
            assert lo <= g.energy_quantile_rank(q, tau, kind="eigen") <= hi


def test_rank_summary():
    s = g.rank_summary(np.ones(10), kind="eigen")
    assert s.entropy_rank == pytest.approx(10) and s.participation_ratio == pytest.approx(10)
    assert s.stable_rank == pytest.approx(10) and s.k_tau[0.9] == 9
    with pytest.raises(ValueError, match="tau"):
        g.energy_quantile_rank(np.ones(3), tau=1.0)
    with pytest.raises(ValueError, match="alpha > 1"):
        g.tail_mass_bound(1.0, 3)


def test_energy_quantile_rank_has_one_name():
    from spectral_lab import geometry as g

    s = np.array([3.0, 2.0, 1.0, 0.5])
    for old in ("effective_rank", "orbit_effective_rank", "effective_rank_bound"):
        assert not hasattr(g, old), old  # exp(SE) is spectra.effective_rank; k_tau has its own name
    assert g.energy_quantile_rank(s, 0.9) == 2  # energy 9, 4, 1, .25: 9/14.25 < .9 <= 13/14.25
