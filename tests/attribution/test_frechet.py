"""The Fréchet distance against scipy.linalg.sqrtm and closed forms; its bootstrap over points."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import spectral_lab as sl


def _scipy_fd(mu1, c1, mu2, c2):
    covmean = scipy.linalg.sqrtm(c1 @ c2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def test_gaussian_frechet_distance_matches_scipy_sqrtm_and_1d_closed_form():
    rng = np.random.default_rng(1)
    d = 6
    A = rng.normal(size=(d, d))
    B = rng.normal(size=(d, d))
    c1, c2 = A @ A.T + 0.1 * np.eye(d), B @ B.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    ours = sl.attribution.gaussian_frechet_distance(*map(torch.tensor, (mu1, c1, mu2, c2)))
    assert abs(float(ours) - _scipy_fd(mu1, c1, mu2, c2)) < 1e-8 * max(
        1, _scipy_fd(mu1, c1, mu2, c2)
    )
    # 1-D closed form: (m1 - m2)^2 + (s1 - s2)^2
    one = sl.attribution.gaussian_frechet_distance(
        torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([-1.0]), torch.tensor([[9.0]])
    )
    assert abs(float(one) - (4.0 + 1.0)) < 1e-12
    # commuting covariances: sum (sqrt(l1) - sqrt(l2))^2
    l1, l2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    dia = sl.attribution.gaussian_frechet_distance(
        torch.zeros(3), torch.diag(torch.tensor(l1)), torch.zeros(3), torch.diag(torch.tensor(l2))
    )
    assert abs(float(dia) - ((np.sqrt(l1) - np.sqrt(l2)) ** 2).sum()) < 1e-10


def test_frechet_distance_of_samples_matches_closed_form_of_their_moments():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    Y = rng.normal(size=(300, 5)) * 2 + 1
    ref = _scipy_fd(X.mean(0), np.cov(X.T), Y.mean(0), np.cov(Y.T))
    ours = float(sl.frechet_distance(torch.tensor(X), torch.tensor(Y)))
    assert abs(ours - ref) < 1e-8 * ref
    assert (
        abs(float(sl.frechet_distance(torch.tensor(X), torch.tensor(Y), squared=False)) - ref**0.5)
        < 1e-8
    )
    # samples of known Gaussians approach the population value: N(0, I) vs N(m, I) -> ||m||^2
    g = torch.Generator().manual_seed(0)
    m = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    P = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    Q = torch.randn(20000, 3, generator=g, dtype=torch.float64) + m
    assert abs(float(sl.frechet_distance(P, Q)) - float(m @ m)) < 0.05
    assert float(sl.frechet_distance(P, P)) < 1e-9  # identical clouds: zero (no negative round-off)


def test_frechet_distance_normalisation_and_pca_projection():
    rng = np.random.default_rng(3)
    A = torch.tensor(rng.normal(size=(50, 40)))
    B = A * 3.0  # same shapes, three times larger
    assert float(sl.frechet_distance(A, B, normalize=True)) < 1e-9
    assert float(sl.frechet_distance(A, B)) > 1.0
    # projection onto the top-k PCs of A equals FD of the explicitly projected clouds
    k = 7
    mean = A.mean(0)
    V = torch.linalg.svd(A - mean, full_matrices=False).Vh[:k].T
    ref = sl.frechet_distance((A - mean) @ V, (B - mean) @ V)
    assert torch.allclose(sl.frechet_distance(A, B, pca_dim=k), ref)
    # with n < d (50 samples in 40 dims is fine; take 20 samples in 40 dims) the covariances are
    # singular; the eigh route must still agree with scipy's sqrtm formula. Both carry a round-off
    # floor of order sqrt(machine eps) relative (the square root of a singular PSD matrix), so
    # compare to 1e-5 relative: a dropped factor 2 or a missing trace term is off by O(1).
    A20, B20 = A[:20].numpy(), (B[:20] + 0.1).numpy()
    ref = _scipy_fd(A20.mean(0), np.cov(A20.T), B20.mean(0), np.cov(B20.T))
    ours = float(sl.frechet_distance(torch.tensor(A20), torch.tensor(B20)))
    assert abs(ours - ref) < 1e-5 * ref
    # the scale law FD(tA, tB) = t^2 FD(A, B); unit-norm maps are blind to t
    t = 0.4
    assert float(sl.frechet_distance(t * A, t * B + 0.1 * t)) == pytest.approx(
        t**2 * float(sl.frechet_distance(A, B + 0.1)), rel=1e-10
    )
    assert float(sl.frechet_distance(t * A, t * B, normalize=True)) == pytest.approx(
        float(sl.frechet_distance(A, B, normalize=True)), abs=1e-12
    )


def test_frechet_distance_bootstrap_resamples_points_paired():
    rng = np.random.default_rng(4)
    n, m, d, k = 30, 3, 12, 4
    clean = torch.tensor(rng.normal(size=(n, d)))
    pert = clean[None] + 0.3 * torch.tensor(rng.normal(size=(m, n, d)))
    reps = sl.attribution.frechet_distance_bootstrap(clean, pert, 5, pca_dim=k, seed=7)
    # replicate 0 by hand: the same seeded index draw, projected on the full clean cloud's top-k
    # principal directions, FD by scipy's sqrtm formula
    idx = torch.randint(0, n, (n,), generator=torch.Generator().manual_seed(7)).numpy()
    Cn, Pn = clean.numpy(), pert.numpy()
    mean = Cn.mean(0)
    V = np.linalg.svd(Cn - mean, full_matrices=False)[2][:k].T
    a, p = (Cn[idx] - mean) @ V, ((Pn[:, idx] - mean) @ V).reshape(-1, k)
    ref = _scipy_fd(a.mean(0), np.cov(a.T), p.mean(0), np.cov(p.T))
    assert float(reps[0]) == pytest.approx(ref, rel=1e-8)
    # same seed, same index sets: a second model's replicates are paired with the first's, so a
    # model whose maps are t times smaller gives exactly t^2 times every replicate
    small = sl.attribution.frechet_distance_bootstrap(0.5 * clean, 0.5 * pert, 5, pca_dim=k, seed=7)
    assert torch.allclose(small, 0.25 * reps, rtol=1e-10)
    unit = sl.attribution.frechet_distance_bootstrap(
        clean, pert, 5, pca_dim=k, seed=7, normalize=True
    )
    unit_small = sl.attribution.frechet_distance_bootstrap(
        0.5 * clean, 0.5 * pert, 5, pca_dim=k, seed=7, normalize=True
    )
    assert torch.allclose(unit, unit_small, rtol=1e-10)
    # the bootstrap distribution surrounds the point estimate of the full clouds
    many = sl.attribution.frechet_distance_bootstrap(clean, pert, 200, pca_dim=k)
    point = float(sl.frechet_distance(clean, pert.reshape(-1, d), pca_dim=k))
    lo, hi = np.quantile(many.numpy(), [0.025, 0.975])
    assert lo < point < hi
    with pytest.raises(ValueError, match="perturbed must be"):
        sl.attribution.frechet_distance_bootstrap(clean, pert[:, :5], 5)


# --- the exact Gram route (issue 12: a Fréchet distance whose cost scales) ----------------------


def _mp_fd(A: np.ndarray, B: np.ndarray) -> float:
    """FD of the Gaussians fitted to the rows of A and B, from the d x d covariances, in 50-digit
    arithmetic (mpmath): no round-off floor even when the covariances are singular (n < d)."""
    import mpmath as mp

    mp.mp.dps = 50

    def cov(X):
        M = mp.matrix(X.tolist())
        n, d = M.rows, M.cols
        mu = [mp.fsum(M[i, j] for i in range(n)) / n for j in range(d)]
        C = mp.matrix(d, d)
        for a in range(d):
            for b in range(d):
                C[a, b] = mp.fsum((M[i, a] - mu[a]) * (M[i, b] - mu[b]) for i in range(n)) / (n - 1)
        return mu, C

    def sqrt_psd(C):
        w, V = mp.eigsy(C)
        return V * mp.diag([mp.sqrt(max(x, 0)) for x in w]) * V.T

    mu1, C1 = cov(A)
    mu2, C2 = cov(B)
    S = sqrt_psd(C1)
    w, _ = mp.eigsy(S * C2 * S)
    tr_sqrt = mp.fsum(mp.sqrt(max(x, 0)) for x in w)
    d = len(mu1)
    fd = mp.fsum((mu1[i] - mu2[i]) ** 2 for i in range(d))
    fd += mp.fsum(C1[i, i] + C2[i, i] for i in range(d)) - 2 * tr_sqrt
    return float(fd)


def _gram_agrees_with_reference() -> list[float]:
    """Relative errors of the default (Gram) route against the 50-digit dense formula, on clouds
    with n > d (full-rank covariances) and n < d (singular: the case the Gram route is for)."""
    rng = np.random.default_rng(5)
    errs = []
    for n1, n2, d in [(30, 20, 6), (5, 7, 12), (4, 12, 16)]:
        A = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d))
        B = rng.normal(size=(n2, d)) * 1.5 + 0.2
        ref = _mp_fd(A, B)
        got = float(sl.frechet_distance(torch.tensor(A), torch.tensor(B), method="gram"))
        errs.append(abs(got - ref) / ref)
    return errs


def test_frechet_gram_route_is_exact_and_auto_picks_it_when_n_below_d():
    errs = _gram_agrees_with_reference()
    assert max(errs) < 1e-10, errs
    # full-rank covariances (n > d): the Gram and dense routes agree to 1e-8
    rng = np.random.default_rng(6)
    A, B = torch.tensor(rng.normal(size=(40, 5))), torch.tensor(rng.normal(size=(50, 5)) + 0.1)
    fg, fd = (float(sl.frechet_distance(A, B, method=m)) for m in ("gram", "dense"))
    assert abs(fg - fd) < 1e-8 * fd
    # n < d: "auto" takes the Gram route; the dense route carries a round-off floor of order
    # sqrt(machine eps) per zero eigenvalue (the square root of a singular PSD matrix), so it
    # agrees to 1e-6 only -- the 50-digit reference above shows which of the two is exact
    A, B = torch.tensor(rng.normal(size=(6, 30))), torch.tensor(rng.normal(size=(18, 30)) + 0.1)
    fg, fd = (float(sl.frechet_distance(A, B, method=m)) for m in ("gram", "dense"))
    assert float(sl.frechet_distance(A, B)) == fg
    assert abs(fg - fd) < 1e-6 * fd
    # the bootstrap takes the same route: replicate 0 by hand with the Gram formula
    pert = A[None] + 0.3 * torch.tensor(rng.normal(size=(3, 6, 30)))
    reps = sl.attribution.frechet_distance_bootstrap(A, pert, 2, seed=3)
    dense = sl.attribution.frechet_distance_bootstrap(A, pert, 2, seed=3, method="dense")
    assert torch.allclose(reps, dense, rtol=1e-6)
    with pytest.raises(ValueError, match="method must be one of"):
        sl.frechet_distance(A, B, method="pca")


def test_mutation_frechet_gram_without_factor_two_is_caught(monkeypatch):
    from spectral_lab.attribution import frechet

    def no_two(A, B):  # the cross term without its factor 2
        mu_a, mu_b = A.mean(0), B.mean(0)
        Xa = (A - mu_a) / (len(A) - 1) ** 0.5
        Xb = (B - mu_b) / (len(B) - 1) ** 0.5
        nuclear = torch.linalg.svdvals(Xa @ Xb.T).sum()
        return (mu_a - mu_b).pow(2).sum() + Xa.pow(2).sum() + Xb.pow(2).sum() - nuclear

    monkeypatch.setattr(frechet, "_frechet_gram", no_two)
    assert max(_gram_agrees_with_reference()) > 1e-2


def test_frechet_distance_at_224x224_is_cheap_and_never_forms_a_covariance(monkeypatch):
    import time

    from spectral_lab.attribution import frechet

    def refuse(*a, **k):
        raise AssertionError("a d x d covariance was formed")

    monkeypatch.setattr(frechet, "gaussian_frechet_distance", refuse)
    monkeypatch.setattr(torch, "cov", refuse)
    g = torch.Generator().manual_seed(0)
    d = 3 * 224 * 224  # a d x d float64 covariance would take 181 GB
    A = torch.randn(8, d, generator=g, dtype=torch.float64)
    B = A.repeat(8, 1) + 0.1 * torch.randn(64, d, generator=g, dtype=torch.float64)
    t0 = time.perf_counter()
    fd = float(sl.frechet_distance(A, B))
    assert time.perf_counter() - t0 < 10  # about 0.2 s alone on one core; generous for a shared CI
    # the noise adds 0.01 variance per pixel to the pooled cloud: FD is of order d * 0.01 * (...)
    assert 0 < fd < 2 * d * 0.01 + 1
