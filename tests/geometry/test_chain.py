"""Residual chains: near-identity expansion, chain slack against dense products, and the depth
budget (exact, tight, and mutation tests of its formulas)."""

from __future__ import annotations

import inspect
import math
import sys

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats
import torch

from spectral_lab import geometry as g

from ._helpers import D, _haar, _np_log_sigma1_normalized, _np_orbit_r


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


def _tight_chain(rng, L=12, share=0.02):
    """Zero-slack chain alternating between α = 0 and the α_s with r(α_s) = share, under the
    a-priori amplitude budget log M = L · share (every layer within its share): the exact rate
    Lip · (log M)/L is attained to within O(share)."""
    a_s = g.orbit_top_radial_inverse(share, D)
    alphas = np.where(np.arange(L) % 2 == 0, 0.0, a_s)
    return _orbit_chain(alphas, rng), alphas, L * share


def _steep_chain(rng):
    """Zero-slack chain 0, 1.0, 1.01, 1.0, 1.01, ...: the small steps sit at the top of the
    exponent window, where r⁻¹ is steepest, so the general bound Lip (|Δr| + |Δρ|) is attained there
    to O(0.01), and a Lipschitz constant taken at α_min = 0 is far too small."""
    alphas = np.r_[0.0, np.tile([1.0, 1.01], 4)]
    return _orbit_chain(alphas, rng), alphas


def _mutant(monkeypatch, func: str, old: str, new: str) -> None:
    """Swap in a copy of ``geometry.<func>`` with one source fragment replaced (a mutation),
    everywhere it is bound: its own module, the modules that import it and the package."""
    orig = getattr(g, func)
    home = sys.modules[orig.__module__]
    src = inspect.getsource(orig)
    assert src.count(old) == 1, f"mutation target {old!r} not found once in {func}: update test"
    ns = dict(vars(home))
    exec(src.replace(old, new), ns)  # noqa: S102
    for mod in [g, *(m for n, m in sys.modules.items() if n.startswith(g.__name__ + "."))]:
        if getattr(mod, func, None) is orig:
            monkeypatch.setattr(mod, func, ns[func])


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


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_depth_budget_mutants_are_caught(mutant, monkeypatch):
    func, old, new, case = MUTANTS[mutant]
    assert _mutation_case(case).holds  # the right formulas pass on the case ...
    _mutant(monkeypatch, func, old, new)
    assert not _mutation_case(case).holds, (
        f"mutant {mutant} was not caught"
    )  # ... a wrong one fails


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
