"""spectral_lab.geometry against independent computations (spec: geometric-spectral-alignment.md)."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats
import torch

from spectral_lab import ConvResNet, ResidualMLP
from spectral_lab import geometry as g

D = 32


def _haar(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# ---------------------------------------------------------------- factors, Cartan, top radial


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


def _np_log_sigma1_normalized(a: np.ndarray) -> float:
    """Independent reference: log σ_1 of sqrt(d) A / ||A||_F, d = min(rows, cols), in numpy."""
    ab = math.sqrt(min(a.shape)) * a / np.linalg.norm(a, "fro")
    return math.log(np.linalg.svd(ab, compute_uv=False)[0])


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


# ---------------------------------------------------------------- the orbit


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


# ---------------------------------------------------------------- fits


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


# ---------------------------------------------------------------- effective rank (spec 5)


def test_effective_rank_quantile_and_monotone_in_alpha():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    assert [g.effective_rank(p, t, kind="eigen") for t in (0.5, 0.8, 0.9, 0.99)] == [1, 2, 3, 4]
    ks = [g.orbit_effective_rank(a, D, 0.9) for a in np.linspace(0, 3, 31)]
    assert all(b <= a for a, b in zip(ks[:-1], ks[1:]))
    # definition against the harmonic-number form
    for a in (0.5, 1.0, 2.0):
        h = [g.harmonic_number(k, a) for k in range(1, D + 1)]
        ref = next(k for k in range(1, D + 1) if h[k - 1] >= 0.9 * h[-1])
        assert g.orbit_effective_rank(a, D, 0.9) == ref


@pytest.mark.parametrize("alpha", [1.2, 1.5, 2.0, 3.0])
def test_finite_width_tail_bounds(alpha):
    for d in (64, 1024):
        p = g.gibbs_distribution(alpha, d)
        for k in (1, 3, 10, 50):
            tail = p[k:].sum()
            assert tail <= g.tail_mass_bound(alpha, k, d) + 1e-15
            assert g.tail_mass_bound(alpha, k, d) <= g.tail_mass_bound(alpha, k)
        for tau in (0.5, 0.9, 0.99):
            assert g.orbit_effective_rank(alpha, d, tau) <= g.effective_rank_bound(alpha, tau)
    # the spec's measured values at tau = 0.9
    assert [g.orbit_effective_rank(2.0, d, 0.9) for d in (64, 256, 1024, 4096)] == [6, 6, 6, 6]
    assert g.effective_rank_bound(2.0, 0.9) == 10 or g.effective_rank_bound(2.0, 0.9) == 11


def test_effective_rank_regimes_match_spec_table():
    got = {
        a: [g.orbit_effective_rank(a, d, 0.9) for d in (64, 256, 1024, 4096)]
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
            lo = g.effective_rank(p, max(tau - tv, 1e-9), kind="eigen")
            hi = g.effective_rank(p, min(tau + tv, 1 - 1e-12), kind="eigen")
            assert lo <= g.effective_rank(q, tau, kind="eigen") <= hi


def test_rank_summary():
    s = g.rank_summary(np.ones(10), kind="eigen")
    assert s.entropy_rank == pytest.approx(10) and s.participation_ratio == pytest.approx(10)
    assert s.stable_rank == pytest.approx(10) and s.k_tau[0.9] == 9
    with pytest.raises(ValueError, match="tau"):
        g.effective_rank(np.ones(3), tau=1.0)
    with pytest.raises(ValueError, match="alpha > 1"):
        g.tail_mass_bound(1.0, 3)


# ---------------------------------------------------------------- near identity, slack, budget


def test_near_identity_expansion_is_second_order():
    torch.manual_seed(0)
    b = torch.randn(D, D, dtype=torch.float64) / math.sqrt(D)
    errs = []
    for eps in (1e-2, 1e-3):
        exact = g.cartan_coordinates(torch.eye(D, dtype=torch.float64) + eps * b)
        errs.append((exact - g.near_identity_cartan(b, eps)).abs().max().item())
    assert errs[1] < errs[0] / 50  # O(ε²): a tenfold smaller ε gives ~100x smaller error
    assert errs[1] < 1e-5


def test_chain_slack_against_dense_products_and_first_order():
    torch.manual_seed(1)
    L, eps = 6, 1e-3
    bs = torch.randn(L, D, D, dtype=torch.float64) / math.sqrt(D)
    fac = torch.eye(D, dtype=torch.float64) + eps * bs
    sl = g.chain_slack(fac)
    nb = g.frobenius_normalize(fac)
    p = torch.linalg.multi_dot(list(nb.flip(0)))
    log_chain = math.log(torch.linalg.matrix_norm(p, 2).item())
    assert sl.log_sigma_chain == pytest.approx(log_chain, rel=1e-10)
    r = torch.log(torch.linalg.matrix_norm(nb, 2)).numpy()
    assert sl.total_slack == pytest.approx(r.sum() - log_chain, abs=1e-12)
    assert sl.total_slack >= 0 and np.all(sl.interface_slack >= -1e-12)
    assert sl.amplitude == pytest.approx(math.exp((log_chain + sl.total_slack) / L))
    first = g.near_identity_slack(bs, eps)
    assert first >= 0
    assert sl.total_slack == pytest.approx(first, rel=0.05)


def test_zero_slack_chain_and_rotations():
    rng = np.random.default_rng(0)
    alphas = np.linspace(0.1, 0.3, 8)
    diag = torch.stack(
        [torch.diag(torch.tensor(np.sqrt(g.power_law_spectrum(a, D)))) for a in alphas]
    )
    sl = g.chain_slack(diag)
    assert abs(sl.total_slack) < 1e-10 and np.all(np.abs(sl.interface_slack) < 1e-10)
    rots = torch.stack([torch.tensor(_haar(D, rng)) for _ in alphas])
    sl_rot = g.chain_slack(rots @ diag)
    assert sl_rot.total_slack > 0.1  # unaligned layers backtrack
    assert np.allclose(sl_rot.r, sl.r)  # per-layer radials are rotation invariant


def _np_orbit_r(alpha: float, d: int) -> float:
    """Independent reference: top radial ½ log(d p_1) of the power law p_k ∝ k^{-α}, numpy."""
    w = np.arange(1, d + 1, dtype=np.float64) ** -alpha
    return 0.5 * math.log(d * w[0] / w.sum())


def _np_lipschitz(alpha_star: float, d: int, n: int = 20001) -> float:
    """Independent Lipschitz constant of r⁻¹ on [0, r(α*)]: the largest finite-difference slope
    Δα/Δr of the map α ↦ r(α) = ½ log(d p_1(α)) on a fine grid (no closed form used)."""
    a = np.linspace(0.0, alpha_star, n)
    w = np.arange(1, d + 1, dtype=np.float64)[None, :] ** -a[:, None]
    r = 0.5 * np.log(d / w.sum(1))
    return float(np.max(np.diff(a) / np.diff(r)))


def _orbit_chain(alphas, rng, aligned=True):
    """Dense factors with exact orbit spectra α_l. ``aligned``: A_l = Q_{l+1} D_l Q_lᵀ (each top
    output direction is the next top input direction: zero slack, yet non-diagonal); otherwise an
    independent Haar rotation is inserted after every factor."""
    qs = [_haar(D, rng) for _ in range(len(alphas) + 1)]
    out = []
    for i, x in enumerate(alphas):
        dl = np.diag(np.sqrt(g.power_law_spectrum(x, D)))
        out.append(qs[i + 1] @ dl @ (qs[i].T if aligned else qs[i + 1].T @ _haar(D, rng)))
    return np.stack(out)


def _budget_of_chain(fac):
    sl = g.chain_slack(fac)
    sv = torch.linalg.svdvals(fac)
    alphas = [g.power_law_fit(s).alpha_mle for s in sv]
    return g.depth_budget(alphas, sl.r, fac.shape[-1], sl.log_sigma_chain, sl.total_slack), sl


def test_depth_budget_exact_chart_zero_slack_uniform():
    """Spec 4.2 check (i): co-diagonal orbit chains with a uniform budget meet Lip·(log M)/L."""
    L = 12
    r_share = 0.05
    a = g.orbit_top_radial_inverse(r_share, D)
    alphas = np.full(L, a)
    alphas[1::2] = g.orbit_top_radial_inverse(
        0.6 * r_share, D
    )  # alternate: uniform cap r_l <= share
    fac = torch.stack(
        [torch.diag(torch.tensor(np.sqrt(g.power_law_spectrum(x, D)))) for x in alphas]
    )
    bud, sl = _budget_of_chain(fac)
    assert abs(sl.total_slack) < 1e-10
    # converse gap (exact chart, zero slack) = log σ_1(P) − L r(α_min), with σ_1(P) of the dense
    # numpy product of the normalised factors and r(α_min) = ½ log(d p_1) from its definition
    nb = [math.sqrt(D) * f / np.linalg.norm(f) for f in fac.numpy()]
    log_p = math.log(np.linalg.svd(np.linalg.multi_dot(nb[::-1]), compute_uv=False)[0])
    ref_gap = log_p - L * _np_orbit_r(alphas.min(), D)
    assert bud.converse_gap == pytest.approx(ref_gap, abs=1e-9) and bud.converse_gap > 0
    # the chain amplitude budget M: every layer gets at most (log M)/L
    log_M = L * r_share
    bud = g.depth_budget(
        [g.power_law_fit(s).alpha_mle for s in torch.linalg.svdvals(fac)],
        sl.r,
        D,
        sl.log_sigma_chain,
        0.0,
        log_M=log_M,
    )
    assert np.all(bud.drift <= bud.lipschitz * log_M / L + 1e-12)
    assert bud.holds
    # converse lower bound: log σ_1(P) >= L r(α_min) - S
    assert sl.log_sigma_chain >= L * g.orbit_top_radial(alphas.min(), D) - sl.total_slack - 1e-12
    # the bound is not vacuous: a deliberately halved Lipschitz constant is violated
    assert np.any(bud.drift > 0.5 * bud.lipschitz * np.abs(np.diff(sl.r)) - 1e-15)


def test_depth_budget_needs_slack_with_rotations_and_residual_off_orbit():
    rng = np.random.default_rng(2)
    L = 10
    alphas = np.linspace(0.05, 0.4, L)
    diag = torch.stack(
        [torch.diag(torch.tensor(np.sqrt(g.power_law_spectrum(x, D)))) for x in alphas]
    )
    rots = torch.stack([torch.tensor(_haar(D, rng)) for _ in range(L)])
    bud, sl = _budget_of_chain(rots @ diag)
    # (ii) with rotations S > 0: the amplitude alone under-counts the radial budget ...
    assert sl.total_slack > 0
    assert sl.r.sum() > sl.log_sigma_chain + 0.1
    # ... and the identity Σ r_l = log σ_1(P) + S restores it
    assert sl.r.sum() == pytest.approx(sl.log_sigma_chain + sl.total_slack)
    assert bud.holds and not bud.exact_hypotheses
    # (iii) off-orbit spectra: every layer keeps the top share p_1 of alpha = 0.5 but the tails
    # alternate between the orbit shapes of alpha = 0.3 and 1.0, so r_l is constant while the
    # fitted exponent moves: top-radial control alone misses it, the residual term catches it
    p1 = g.gibbs_distribution(0.5, D)[0]
    rows = []
    for x in [0.3, 1.0] * (L // 2):
        tail = g.gibbs_distribution(x, D)[1:]
        rows.append(np.r_[p1, (1 - p1) * tail / tail.sum()] * D)
    fac = torch.stack([torch.diag(torch.tensor(np.sqrt(v))) for v in rows])
    bud2, _ = _budget_of_chain(fac)
    assert np.max(bud2.residual_increments) > 0.05
    assert bud2.holds
    without = bud2.lipschitz * bud2.radial_increments
    assert np.any(bud2.drift > without + 1e-12), "residual term was not needed: test too weak"


def test_depth_budget_tracks_random_residual_chains():
    """Every field of the budget of a random chain against numpy recomputations (``holds`` itself
    is true by construction; what can be wrong is the bookkeeping and the constant)."""
    torch.manual_seed(0)
    fac = torch.eye(D, dtype=torch.float64) + 0.1 * torch.randn(
        16, D, D, dtype=torch.float64
    ) / math.sqrt(D)
    bud, sl = _budget_of_chain(fac)
    f = fac.numpy()
    r = np.array([_np_log_sigma1_normalized(x) for x in f])
    nb = [math.sqrt(D) * x / np.linalg.norm(x) for x in f]
    log_p = math.log(np.linalg.svd(np.linalg.multi_dot(nb[::-1]), compute_uv=False)[0])
    # independent ML exponents: moment match E_α[log k] = Σ p̂_k log k by bisection (scipy)
    logk = np.log(np.arange(1, D + 1.0))
    alphas = []
    for x in f:
        p = np.linalg.svd(x, compute_uv=False) ** 2
        p /= p.sum()
        t = p @ logk
        m = lambda a, t=t: (np.exp(-a * logk) / np.exp(-a * logk).sum()) @ logk - t  # noqa: E731
        alphas.append(scipy.optimize.brentq(m, 0.0, 20.0, xtol=1e-14))
    alphas = np.array(alphas)
    rho = r - np.array([_np_orbit_r(x, D) for x in alphas])
    lip = _np_lipschitz(alphas.max(), D)
    assert np.allclose(sl.r, r, atol=1e-12) and sl.log_sigma_chain == pytest.approx(log_p)
    assert sl.total_slack == pytest.approx(r.sum() - log_p, abs=1e-10)
    assert np.allclose(bud.drift, np.abs(np.diff(alphas)), atol=1e-9)
    assert bud.lipschitz == pytest.approx(lip, rel=1e-4)
    assert np.allclose(bud.residual_increments, np.abs(np.diff(rho)), atol=1e-9)
    ref_general = lip * (np.abs(np.diff(r)) + np.abs(np.diff(rho)))
    assert np.allclose(bud.bound_general, ref_general, rtol=1e-4)
    u = r.max() / r.mean()
    ref_budget = lip * (u * (log_p + r.sum() - log_p) / 16 + np.abs(np.diff(rho)))
    assert np.allclose(bud.bound_budget, ref_budget, rtol=1e-4)
    assert np.all(np.abs(np.diff(alphas)) <= ref_general * (1 + 1e-6))
    with pytest.raises(ValueError, match="log_M"):
        g.depth_budget([0.1, 0.2], [0.1, 0.2], D, 1.0, 0.0, log_M=0.5)


# The depth-budget inequality as implemented holds by construction for any data (see the
# DepthBudget docstring). The tests below check consequences that can fail: the chain amplitude
# predicted from per-layer exponents alone against the product's measured σ_1, and the drift on
# chains with known exponents where the bound is tight; then mutation tests show that ``holds``
# reports failure when a plausible wrong formula is swapped in.


def test_chain_amplitude_predicted_from_per_layer_exponents():
    """Zero-slack chain with known α_l: log σ_1(P) of the dense product equals Σ_l r(α_l), computed
    from the exponents alone; unaligned layers fall short of it by exactly the measured slack."""
    rng = np.random.default_rng(5)
    alphas = rng.uniform(0.05, 0.8, 10)
    predicted = sum(_np_orbit_r(x, D) for x in alphas)
    for aligned in (True, False):
        fac = _orbit_chain(alphas, rng, aligned)
        nb = [math.sqrt(D) * f / np.linalg.norm(f) for f in fac]
        log_p = math.log(np.linalg.svd(np.linalg.multi_dot(nb[::-1]), compute_uv=False)[0])
        sl = g.chain_slack(torch.tensor(fac))
        if aligned:
            assert log_p == pytest.approx(predicted, abs=1e-10)
            assert abs(sl.total_slack) < 1e-10
        else:
            assert log_p < predicted - 0.5  # random rotations backtrack
            assert sl.total_slack == pytest.approx(predicted - log_p, abs=1e-10)


def _tight_chain(rng, L=12, share=0.02):
    """Zero-slack chain alternating between α = 0 and the α_s with r(α_s) = share, under the
    a-priori amplitude budget log M = L · share (every layer within its share): the exact rate
    Lip · (log M)/L is attained to within O(share)."""
    a_s = g.orbit_top_radial_inverse(share, D)
    alphas = np.where(np.arange(L) % 2 == 0, 0.0, a_s)
    return _orbit_chain(alphas, rng), alphas, L * share


def test_depth_budget_is_tight_on_a_known_chain():
    fac, alphas, log_M = _tight_chain(np.random.default_rng(3))
    bud, sl = _budget_of_chain(torch.tensor(fac))
    bud = g.depth_budget(
        [g.power_law_fit(s).alpha_mle for s in np.linalg.svd(fac, compute_uv=False)],
        sl.r,
        D,
        sl.log_sigma_chain,
        sl.total_slack,
        log_M=log_M,
    )
    assert bud.exact_hypotheses
    assert np.allclose(bud.drift, np.abs(np.diff(alphas)), atol=1e-9)  # fits recover known α
    lip = _np_lipschitz(alphas.max(), D)
    rate = lip * log_M / len(alphas)  # independent: finite-difference Lip, a-priori M
    assert bud.bound_exact == pytest.approx(rate, rel=1e-4)
    # the bound holds, and is tight: a constant 2x too small (or Lip taken at α_min = 0) fails
    assert np.all(bud.drift <= rate * (1 + 1e-6)) and bud.drift.max() >= 0.99 * rate
    assert bud.drift.max() > (2 / g.mean_log_rank(0.0, D)) * log_M / len(alphas)
    assert bud.holds


def _steep_chain(rng):
    """Zero-slack chain 0, 1.0, 1.01, 1.0, 1.01, ...: the small steps sit at the top of the
    exponent window, where r⁻¹ is steepest, so the general bound Lip (|Δr| + |Δρ|) is attained there
    to O(0.01), and a Lipschitz constant taken at α_min = 0 is far too small."""
    alphas = np.r_[0.0, np.tile([1.0, 1.01], 4)]
    return _orbit_chain(alphas, rng), alphas


def test_depth_budget_general_bound_is_tight_at_the_top_of_the_window():
    fac, alphas = _steep_chain(np.random.default_rng(4))
    bud, sl = _budget_of_chain(torch.tensor(fac))
    assert np.allclose(bud.drift, np.abs(np.diff(alphas)), atol=1e-9)
    r = np.array([_np_log_sigma1_normalized(a) for a in fac])
    lip = _np_lipschitz(alphas.max(), D)
    ratio = np.abs(np.diff(alphas)) / (lip * np.abs(np.diff(r)))
    assert np.all(ratio <= 1 + 1e-6) and ratio.max() >= 0.99
    assert np.allclose(bud.bound_general, lip * np.abs(np.diff(r)), rtol=1e-4, atol=1e-12)
    lip_at_min = 2 / g.mean_log_rank(0.0, D)
    assert ratio.max() * lip / lip_at_min > 1.5  # a constant at α_min would be violated by 50 %


def _mutant(monkeypatch, func: str, old: str, new: str) -> None:
    """Swap in a copy of ``geometry.<func>`` with one source fragment replaced (a mutation)."""
    src = inspect.getsource(getattr(g, func))
    assert src.count(old) == 1, f"mutation target {old!r} not found once in {func}: update test"
    ns = dict(vars(g))
    exec(src.replace(old, new), ns)  # noqa: S102
    monkeypatch.setattr(g, func, ns[func])


MUTANTS = {
    # the audit's M15: Lipschitz constant of r⁻¹ evaluated at α_min instead of α* = max α_l
    "lip_at_alpha_min": ("depth_budget", "float(a.max())", "float(a.min())", "steep"),
    # Lipschitz constant 2x too small
    "lip_halved": (
        "inverse_chart_lipschitz",
        "2.0 / mean_log_rank",
        "1.0 / mean_log_rank",
        "tight",
    ),
    # non-uniformity factor u dropped from the budget bound
    "u_dropped": ("depth_budget", "u * b_slack", "b_slack", "alternating"),
    # sign of the slack flipped in the budget
    "slack_sign_flipped": (
        "depth_budget",
        "(log_M + total_slack) / L",
        "(log_M - total_slack) / L",
        "rotated",
    ),
}


def _mutation_case(name):
    rng = np.random.default_rng(7)
    alt = np.where(np.arange(12) % 2 == 0, 0.15, 0.6)
    if name == "tight":
        fac, _, log_M = _tight_chain(rng)
    elif name == "steep":
        (fac, _), log_M = _steep_chain(rng), None
    else:
        fac, log_M = _orbit_chain(alt, rng, aligned=name == "alternating"), None
    sl = g.chain_slack(torch.tensor(fac))
    alphas = [g.power_law_fit(s).alpha_mle for s in np.linalg.svd(fac, compute_uv=False)]
    return g.depth_budget(alphas, sl.r, D, sl.log_sigma_chain, sl.total_slack, log_M=log_M)


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_depth_budget_mutants_are_caught(mutant, monkeypatch):
    func, old, new, case = MUTANTS[mutant]
    assert _mutation_case(case).holds  # the right formulas pass on the case ...
    _mutant(monkeypatch, func, old, new)
    assert not _mutation_case(case).holds, (
        f"mutant {mutant} was not caught"
    )  # ... a wrong one fails


# ---------------------------------------------------------------- models


def test_circular_conv_singular_values_match_dense_operator():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1).double()
    fft = g.circular_conv_singular_values(conv.weight.detach(), 6)
    dense = torch.linalg.svdvals(g.conv_operator_matrix(conv, 6).detach())
    assert torch.allclose(fft, dense, atol=1e-10)
    # zero padding: the dense matrix is the model's own conv (bias removed)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    m = g.conv_operator_matrix(conv, 6, padding="zero").detach()
    ref = torch.nn.functional.conv2d(x, conv.weight, padding=1).reshape(2, -1)
    assert torch.allclose((m @ x.reshape(2, -1).T).T, ref.detach(), atol=1e-10)


def test_layer_factors_static_and_jacobian_against_autograd():
    torch.manual_seed(0)
    m = ResidualMLP(5, 3, width=6, depth=3, residual_scale=0.2).double().eval()
    st = g.layer_factors(m)
    w = m.blocks[1].branch[1].weight
    assert torch.allclose(st[1], torch.eye(6, dtype=torch.float64) + 0.2 * w.detach())
    x = torch.randn(4, 5, dtype=torch.float64)
    jf = g.layer_factors(m, x, kind="jacobian")
    assert jf.shape == (4, 3, 6, 6)
    # independent: dense autograd Jacobian of the block at its input, for sample 2
    h = m.layers[1](m.layers[0](x))  # embed
    h = m.blocks[0](h)
    ref = torch.autograd.functional.jacobian(lambda v: m.blocks[1](v.unsqueeze(0))[0], h[2])
    assert torch.allclose(jf[2, 1], ref, atol=1e-12)
    # the chain of Jacobian factors times the embedding and read-out gives the input Jacobian
    from spectral_lab import input_jacobian

    jin = input_jacobian(m, x)
    chain = torch.linalg.multi_dot([jf[0, 2], jf[0, 1], jf[0, 0]])
    full = m.layers[-1].weight @ chain @ m.layers[1].weight
    assert torch.allclose(full, jin[0], atol=1e-12)


def test_two_matrix_branch_surrogate_and_errors():
    m = ResidualMLP(4, 2, width=5, depth=2, hidden=7, residual_scale=0.3).double()
    st = g.layer_factors(m)
    b = m.blocks[0].branch
    assert torch.allclose(
        st[0], torch.eye(5, dtype=torch.float64) + 0.3 * (b[3].weight @ b[1].weight).detach()
    )
    with pytest.raises(ValueError, match="ResidualBlock"):
        g.layer_factors(torch.nn.Sequential(torch.nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="needs inputs x"):
        g.layer_factors(m, kind="jacobian")
    with pytest.raises(ValueError, match="kind"):
        g.layer_factors(m, kind="weights")


def test_exponent_profiles_mlp_and_conv():
    torch.manual_seed(0)
    m = ResidualMLP(8, 3, width=16, depth=6, residual_scale=0.1).double()
    p = g.exponent_profile(m)
    assert p.alpha.shape == (6,) and p.L == 6 and p.d == 16
    # static factors are I + scale W (independent: the weights themselves), r_l = log σ_1 of the
    # normalised factor and log σ_1(P) of the dense product, both in numpy
    ws = [blk.branch[1].weight.detach().numpy() for blk in m.blocks]
    f = [np.eye(16) + 0.1 * w for w in ws]
    nb = [4.0 * x / np.linalg.norm(x) for x in f]
    assert np.allclose(p.r, [_np_log_sigma1_normalized(x) for x in f], atol=1e-12)
    log_p = math.log(np.linalg.svd(np.linalg.multi_dot(nb[::-1]), compute_uv=False)[0])
    assert p.slack.log_sigma_chain == pytest.approx(log_p, abs=1e-10)
    assert p.slack.total_slack == pytest.approx(p.r.sum() - log_p, abs=1e-10)
    fits = [g.power_law_fit(s) for s in torch.linalg.svdvals(g.layer_factors(m))]
    assert np.allclose(p.alpha, [f.alpha_mle for f in fits])
    assert np.allclose(p.budget.drift, np.abs(np.diff(p.alpha)))
    x = torch.randn(3, 8, dtype=torch.float64)
    pj = g.exponent_profile(m, x, kind="jacobian")
    assert len(pj.per_sample) == 3
    assert np.allclose(pj.alpha, np.mean([q.alpha for q in pj.per_sample], 0))
    # each sample's chain is the chain of that sample's Jacobian factors (numpy recomputation)
    jf = g.layer_factors(m, x, kind="jacobian").numpy()
    for q, fs in zip(pj.per_sample, jf):
        assert np.allclose(q.r, [_np_log_sigma1_normalized(a) for a in fs], atol=1e-12)
        nbj = [4.0 * a / np.linalg.norm(a) for a in fs]
        lp = math.log(np.linalg.svd(np.linalg.multi_dot(nbj[::-1]), compute_uv=False)[0])
        assert q.slack.log_sigma_chain == pytest.approx(lp, abs=1e-10)
    c = ConvResNet(1, 3, image_size=6, channels=2, depth=3, pool=2).double()
    xc = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    pc = g.exponent_profile(c, xc)
    assert pc.d == 2 * 36
    fc = g.layer_factors(c, xc).numpy()
    assert np.allclose(pc.r, [_np_log_sigma1_normalized(a) for a in fc], atol=1e-12)
    # static conv factor spectra are the FFT ones of I + scale*K (circular padding)
    sv = torch.linalg.svdvals(g.layer_factors(c, xc)[0])
    conv = c.blocks[0].branch[1]
    dense = torch.eye(72, dtype=torch.float64) + c.blocks[0].scale * g.conv_operator_matrix(conv, 6)
    assert torch.allclose(sv, torch.linalg.svdvals(dense.detach()), atol=1e-10)
    pcj = g.exponent_profile(c, xc, kind="jacobian")
    assert pcj.alpha.shape == (3,)
    fcj = g.layer_factors(c, xc, kind="jacobian").numpy()[1]
    assert np.allclose(pcj.per_sample[1].r, [_np_log_sigma1_normalized(a) for a in fcj])
    with pytest.raises(ValueError, match="feature-map size"):
        g.layer_factors(c)


def test_small_residual_scale_keeps_spectra_near_identity():
    torch.manual_seed(0)
    rs = []
    for scale in (0.01, 0.1, 0.5):
        torch.manual_seed(0)
        m = ResidualMLP(8, 3, width=32, depth=4, residual_scale=scale).double()
        rs.append(g.exponent_profile(m).r.mean())
    assert rs[0] < rs[1] < rs[2]
    assert rs[1] / rs[0] == pytest.approx(10, rel=0.2)  # first order in the scale


def test_docstring_examples():
    import doctest

    res = doctest.testmod(g, verbose=False)
    assert res.failed == 0 and res.attempted > 10


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


def test_chain_and_budget_error_paths():
    with pytest.raises(ValueError, match="square"):
        g.chain_slack(torch.randn(3, 4, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="empty"):
        g.chain_slack([])
    with pytest.raises(ValueError, match="equal length"):
        g.depth_budget([0.1, 0.2, 0.3], [0.1, 0.2], D, 0.3, 0.0)
    with pytest.raises(ValueError, match="finite"):
        g.depth_budget([0.1, float("nan")], [0.1, 0.2], D, 0.3, 0.0)
    with pytest.raises(ValueError, match="square"):
        g.near_identity_cartan(torch.randn(3, 4, dtype=torch.float64), 0.1)
    with pytest.raises(ValueError, match="two exponents"):
        g.orbit_actions([0.5], D)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_profiles_on_cuda_match_cpu():
    torch.manual_seed(0)
    m = ResidualMLP(8, 3, width=16, depth=4, residual_scale=0.2).double()
    x = torch.randn(3, 8, dtype=torch.float64)
    cpu = g.exponent_profile(m, x, kind="jacobian")
    f = g.layer_factors(m.cuda(), x.cuda(), kind="jacobian")
    assert f.device.type == "cuda"
    gpu = g.exponent_profile(m, x.cuda(), kind="jacobian")
    assert np.allclose(cpu.alpha, gpu.alpha, atol=1e-8)
