"""The paper's claims as verdicts: every rule checked on fake studies with known statistics, and
its mutants caught."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_lab.experiments import Claim, assess_claims

from ._helpers import N_FAKE, _correlated, _fake


def test_claims_fd_verdicts_raw_and_unit_norm():
    good = assess_claims(_fake(200.0, 50.0, shape=(1.0, 1.0)))
    assert all(isinstance(c, Claim) for c in good) and len(good) == 6
    assert good[0].verdict == "supported"  # ratio 0.25, CI well below 1
    assert good[0].stats["ci"][0] < good[0].stats["ratio"] < good[0].stats["ci"][1] < 0.5
    assert "0.250" in good[0].evidence
    assert good[1].verdict == "inconclusive"  # unit-norm FD unchanged: CI straddles 1
    assert assess_claims(_fake(200.0, 50.0, shape=(1.0, 0.3)))[1].verdict == "supported"
    # a real but small drop is "mixed"; a rise is "not supported"; noise-level changes inconclusive
    assert assess_claims(_fake(200.0, 160.0))[0].verdict == "mixed"
    assert assess_claims(_fake(200.0, 260.0))[0].verdict == "not supported"
    assert assess_claims(_fake(200.0, 260.0, shape=(1.0, 1.3)))[1].verdict == "not supported"
    assert assess_claims(_fake(200.0, 190.0, boot_sd=0.3))[0].verdict == "inconclusive"


def test_claims_se_verdict_uses_seed_to_seed_spread():
    # SE moves by 0.01 while retraining moves it by 0.05 (sd): little
    c = assess_claims(_fake(200.0, 50.0, se_stab=3.01, se_seed_sd=0.05))[2]
    assert c.verdict == "supported" and c.stats["seed_sd"] == pytest.approx(0.05, rel=0.15)
    # the same change with a tiny seed spread is 10 sd: not "little" (a mutant threshold without
    # the seed spread would not see the difference between these two runs)
    assert assess_claims(_fake(200.0, 50.0, se_stab=3.01, se_seed_sd=0.001))[2].verdict == (
        "not supported"
    )
    c = assess_claims(_fake(200.0, 50.0, se_stab=3.6))[2]
    assert c.verdict == "not supported"
    assert c.stats["ci"][0] < c.stats["delta"] < c.stats["ci"][1]
    assert c.stats["delta"] == pytest.approx(0.6, abs=0.03)


def test_claims_accuracy_verdict_is_a_t_interval_over_seeds():
    from scipy.stats import t as student_t

    c = assess_claims(_fake(200.0, 50.0, acc=(0.95, 0.948)))[3]
    assert c.verdict == "supported"
    d = np.array(c.stats["per_seed"])
    half = student_t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert c.stats["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert assess_claims(_fake(200.0, 50.0, acc=(0.95, 0.90)))[3].verdict == "not supported"
    # a 0.5-point mean drop with seed spread of 1 point: the interval straddles 1 point
    noisy = assess_claims(_fake(200.0, 50.0, acc=(0.95, 0.945), acc_seed_sd=0.005))[3]
    assert noisy.verdict == "inconclusive"


def test_rho_heterogeneity_against_closed_forms():
    from scipy.stats import norm

    from spectral_lab.experiments import rho_heterogeneity

    # equal rhos: Q = 0, p = 1
    h = rho_heterogeneity([0.2, 0.2, 0.2], [400, 400, 400])
    assert h["Q"] == pytest.approx(0.0, abs=1e-12) and h["p"] == pytest.approx(1.0)
    assert h["pooled_rho"] == pytest.approx(0.2)
    # two seeds: Q is the squared two-sample z statistic of Fisher's z, p its two-sided p-value
    r, n = np.array([0.35, 0.1]), np.array([300, 500])
    z = np.arctanh(r)
    zstat = (z[0] - z[1]) / np.sqrt(1.06 / (n[0] - 3) + 1.06 / (n[1] - 3))
    h = rho_heterogeneity(r, n)
    assert h["Q"] == pytest.approx(zstat**2, rel=1e-12)
    assert h["p"] == pytest.approx(2 * norm.sf(abs(zstat)), rel=1e-9)
    # the audit's full-MNIST rhos differ by less than their standard errors: not rejected
    h = rho_heterogeneity([0.273, 0.166, 0.238], [500, 500, 500])
    assert h["p"] > 0.1 and 0.17 < h["pooled_rho"] < 0.27


def test_claims_correlation_verdict_known_both_ways():
    # clearly seed dependent, weak on the whole (pooled rho ~ 0): weak AND seed dependent
    dep = assess_claims(_fake(200.0, 50.0, per_seed=_correlated([0.45, 0.0, -0.35])))[4]
    assert dep.stats["seed_dependent"] and dep.stats["heterogeneity"]["p"] < 1e-6
    assert dep.verdict == "supported" and "seed dependent" in dep.evidence
    # identical per-sample data in every seed: identical rhos, Q = 0 -> consistent, not dependent
    same = _correlated([0.2, 0.2, 0.2])

    def fixed(seed, rng):
        return same(0, np.random.default_rng(5))

    eq = assess_claims(_fake(200.0, 50.0, per_seed=fixed))[4]
    assert not eq.stats["seed_dependent"] and eq.stats["heterogeneity"]["Q"] < 1e-12
    assert eq.verdict == "mixed" and "consistent across seeds" in eq.evidence
    assert all(p < 0.01 for p in eq.stats["p"])  # rho = 0.15 at n = 400 is significant
    # strong and equal: neither weak nor seed dependent
    strong = _correlated([0.8, 0.8, 0.8])
    st = assess_claims(
        _fake(200.0, 50.0, per_seed=lambda s, r: strong(0, np.random.default_rng(5)))
    )
    assert st[4].verdict == "not supported" and not st[4].stats["weak"]


def test_correlation_verdict_mutants_are_caught(monkeypatch):
    """Mutation tests: a wrong standard error, or the old 'range of rho > 0.1' rule, must flip the
    verdict on rhos that differ only by sampling noise (like the full MNIST study's)."""
    from spectral_lab import experiments as ex

    def noisy(seed, rng):  # one true rho, three independent samples
        return _correlated([0.25, 0.25, 0.25])(seed, np.random.default_rng(60 + seed))

    res = _fake(200.0, 50.0, per_seed=noisy)
    right = assess_claims(res)[4]
    assert not right.stats["seed_dependent"]
    rhos = right.stats["rho"]
    assert np.ptp(rhos) > 0.1  # the old rule would call these "varying across seeds"
    # mutant 1: se of Fisher z without the square root (1.06 / (n - 3)): far too small
    monkeypatch.setattr(ex, "_z_se", lambda n: 1.06 / (n - 3))
    assert assess_claims(res)[4].stats["seed_dependent"]
    monkeypatch.undo()
    # mutant 2: the old heuristic in place of the test
    real = ex.rho_heterogeneity

    def range_rule(r, n):
        h = real(r, n)
        return {**h, "p": 0.0 if np.ptp(r) > 0.1 else 1.0}

    monkeypatch.setattr(ex, "rho_heterogeneity", range_rule)
    assert assess_claims(res)[4].verdict != right.verdict


def test_claims_envelope_verdict_known_both_ways():
    def capped(sign):
        def make(seed, rng):
            x = rng.uniform(0, 1, N_FAKE)
            cap = (1 - x) if sign < 0 else x
            return x, rng.uniform(0, 1, N_FAKE) * cap

        return make

    falling = assess_claims(_fake(200.0, 50.0, per_seed=capped(-1)))[5]
    assert falling.verdict == "supported" and falling.stats["ci"][1] < 0
    rising = assess_claims(_fake(200.0, 50.0, per_seed=capped(+1)))[5]
    assert rising.verdict == "not supported" and rising.stats["ci"][0] > 0
    flat = assess_claims(_fake(200.0, 50.0))[5]  # delta_grad independent of SE
    assert flat.verdict == "inconclusive"
    assert flat.stats["ci"][0] <= flat.stats["mean"] <= flat.stats["ci"][1]
