"""Matrix-free solvers against dense torch.linalg.eigh on matrices with known spectra."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral_lab.linalg import (
    LinearOperator,
    as_operator,
    hutchinson,
    hutchpp,
    lanczos,
    power_iteration,
    spectral_density,
)

D = torch.float64


def with_spectrum(lam: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=g, dtype=D))
    return (U * lam) @ U.T


SPECTRA = {
    # a few well-separated outliers on top of a tight cluster (typical of Hessians)
    "clustered": torch.cat(
        [
            torch.tensor([50.0, 30.0, 20.0, 12.0, 8.0], dtype=D),
            1 + 0.01 * torch.rand(145, dtype=D, generator=torch.Generator().manual_seed(1)),
        ]
    ),
    "power_law": torch.arange(1, 151, dtype=D) ** -1.5 * 100,
    "indefinite": torch.cat(
        [torch.linspace(-7, -1, 40, dtype=D), torch.linspace(0.5, 9, 110, dtype=D)]
    ),
}


@pytest.mark.parametrize("name", list(SPECTRA))
def test_lanczos_matches_dense_largest_and_smallest(name):
    lam = SPECTRA[name]
    A = with_spectrum(lam)
    ref = torch.linalg.eigvalsh(A)
    top = lanczos(A, k=5, tol=1e-10, max_iter=150)
    assert top.converged
    torch.testing.assert_close(top.eigenvalues, ref.flip(0)[:5], rtol=1e-6, atol=0)
    # the power-law spectrum's small end is a tight cluster (gap ratio ~5e-6): a restarted basis of
    # 30 vectors needs ~1500 products there (an unrestarted one reached the whole space in 150)
    bottom = lanczos(A, k=3, which="SA", tol=1e-10, max_iter=3000)
    assert bottom.converged
    torch.testing.assert_close(bottom.eigenvalues, ref[:3], rtol=1e-6, atol=1e-12)
    # Ritz vectors are eigenvectors: ||A u - lambda u|| small
    U = top.eigenvectors
    assert ((A @ U - U * top.eigenvalues).norm(dim=0) < 1e-6 * top.eigenvalues.abs()).all()
    # a deliberately wrong reference would be caught
    assert not torch.allclose(top.eigenvalues, ref.flip(0)[1:6], rtol=1e-6)


def test_lanczos_magnitude_and_reproducible():
    A = with_spectrum(SPECTRA["indefinite"])
    r1 = lanczos(A, k=2, which="LM", tol=1e-10, seed=3)
    r2 = lanczos(A, k=2, which="LM", tol=1e-10, seed=3)
    ref = torch.linalg.eigvalsh(A)
    ref = ref[ref.abs().argsort(descending=True)[:2]]
    torch.testing.assert_close(r1.eigenvalues, ref, rtol=1e-8, atol=0)
    assert torch.equal(r1.eigenvalues, r2.eigenvalues) and r1.matvecs == r2.matvecs


def test_lanczos_fewer_products_than_power_iteration():
    A = with_spectrum(SPECTRA["power_law"])
    ref = torch.linalg.eigvalsh(A).flip(0)[:5]
    la = lanczos(A, k=5, tol=1e-6)
    pw = power_iteration(A, k=5, tol=1e-6, max_iter=5000)
    assert la.converged and pw.converged
    torch.testing.assert_close(pw.eigenvalues, ref, rtol=1e-6, atol=0)
    assert 3 * la.matvecs < pw.matvecs


def test_lanczos_low_rank_restarts_after_invariant_subspace():
    # rank-3 PSD matrix: the Krylov space becomes invariant after 4 steps
    g = torch.Generator().manual_seed(0)
    B = torch.randn(60, 3, generator=g, dtype=D)
    A = B @ B.T
    r = lanczos(A, k=5, tol=1e-10)
    ref = torch.linalg.eigvalsh(A).flip(0)[:5]
    torch.testing.assert_close(r.eigenvalues, ref, rtol=1e-8, atol=1e-8)


def test_callable_operator_counts_products_and_follows_dtype():
    A = with_spectrum(SPECTRA["clustered"]).float()
    op = as_operator(lambda v: A @ v, dim=150, dtype=torch.float32)
    r = lanczos(op, k=1, tol=1e-4)
    assert op.n_products == r.matvecs
    assert r.eigenvectors.dtype == torch.float32
    assert abs(r.eigenvalues[0] - 50) < 1e-3
    assert "LinearOperator" in repr(op) and "lanczos" in repr(r)


def test_history_tracks_products():
    A = with_spectrum(SPECTRA["power_law"])
    r = lanczos(A, k=2, tol=1e-10)
    assert r.history.shape == (len(r.history_matvecs), 2)
    assert int(r.history_matvecs[-1]) == r.matvecs


def test_power_iteration_dense_small():
    A = torch.diag(torch.tensor([4.0, -2.0, 1.0], dtype=D))
    r = power_iteration(A, k=2, tol=1e-10)
    torch.testing.assert_close(r.eigenvalues, torch.tensor([4.0, -2.0], dtype=D))


def test_errors():
    A = torch.eye(4, dtype=D)
    with pytest.raises(ValueError, match="larger than the operator's dimension"):
        lanczos(A, k=5)
    with pytest.raises(ValueError, match="larger than the operator's dimension"):
        power_iteration(A, k=5)
    with pytest.raises(ValueError, match="positive int"):
        lanczos(A, k=0)
    with pytest.raises(ValueError, match="which must be"):
        lanczos(A, k=1, which="XX")
    with pytest.raises(ValueError, match="needs dim="):
        lanczos(lambda v: v, k=1)
    with pytest.raises(ValueError, match="square"):
        lanczos(torch.zeros(3, 4), k=1)
    with pytest.raises(TypeError, match="floating-point"):
        lanczos(torch.eye(3, dtype=torch.int64), k=1)
    with pytest.raises(ValueError, match="num_matvecs"):
        hutchpp(A, 2)
    with pytest.raises(ValueError, match="distribution"):
        hutchinson(A, 4, distribution="cauchy")
    with pytest.raises(TypeError, match="LinearOperator"):
        lanczos("not an operator", k=1)
    with pytest.raises(ValueError, match="dim must be"):
        LinearOperator(lambda v: v, 0)


def test_hutchinson_exact_for_diagonal_with_rademacher():
    A = torch.diag(torch.arange(1.0, 11.0, dtype=D))
    assert hutchinson(A, 3).estimate == pytest.approx(55.0)


def test_hutchpp_exact_when_sketch_spans_space():
    A = with_spectrum(SPECTRA["indefinite"][:20])
    assert hutchpp(A, 63).estimate == pytest.approx(float(torch.trace(A)), rel=1e-10)


def test_hutchpp_unbiased_and_lower_variance_than_hutchinson():
    lam = torch.arange(1, 101, dtype=D) ** -2.0 * 10
    A = with_spectrum(lam)
    truth = float(lam.sum())
    budget, reps = 30, 300
    h = torch.tensor([hutchinson(A, budget, seed=s).estimate for s in range(reps)])
    hp = torch.tensor([hutchpp(A, budget, seed=s).estimate for s in range(reps)])
    for est in (h, hp):  # unbiased: mean within 4 standard errors of the truth
        assert abs(est.mean() - truth) < 4 * est.std() / math.sqrt(reps)
    assert hp.var() < 0.2 * h.var()


def test_spectral_density_quadrature_is_exact_for_low_degree_moments():
    lam = SPECTRA["indefinite"]
    A = with_spectrum(lam)
    d = spectral_density(A, num_probes=1, num_steps=10, seed=0)
    g = torch.Generator().manual_seed(0)
    v = (2 * torch.randint(0, 2, (150, 1), generator=g) - 1).to(D)[:, 0]
    v = v / v.norm()
    for j in range(1, 19):  # Gauss quadrature with m nodes is exact for degree < 2m
        exact = float(v @ torch.linalg.matrix_power(A, j) @ v)
        assert d.moment(j) == pytest.approx(exact, rel=1e-8, abs=1e-8)
    area = torch.trapezoid(d.density, d.grid)
    assert float(area) == pytest.approx(1.0, abs=1e-3)


def test_spectral_density_locates_two_clusters():
    lam = torch.cat([torch.full((60,), -3.0, dtype=D), torch.full((140,), 5.0, dtype=D)])
    A = with_spectrum(
        lam + 0.01 * torch.randn(200, dtype=D, generator=torch.Generator().manual_seed(2))
    )
    d = spectral_density(A, num_probes=16, num_steps=20, sigma=0.3)
    mass_right = float(torch.trapezoid(d.density * (d.grid > 1), d.grid))
    assert mass_right == pytest.approx(0.7, abs=0.06)
    assert "SpectralDensity" in repr(d)


# --- thick restart and the basis cap (issue 12: Krylov memory grows with what convergence needs) ---

RESTART_CASES = [
    # (spectrum, which, k): clustered top, gap-less (equispaced), negative end, largest magnitude
    ("clustered", "LA", 3),
    ("gapless", "LA", 2),
    ("gapless", "SA", 2),
    ("indefinite", "SA", 3),
    ("indefinite", "LM", 2),
    ("negative", "LA", 2),
]


def _restart_spectrum(name: str) -> torch.Tensor:
    if name == "gapless":
        return torch.linspace(-1.0, 1.0, 120, dtype=D)
    if name == "negative":  # every eigenvalue negative: "largest" are those nearest zero
        return -(torch.linspace(0.5, 10.0, 120, dtype=D) ** 1.5)
    return SPECTRA[name]


def _restarted_errors(cap: int = 8):
    """For every case (lazily): the largest relative error of the top-k against numpy's dense
    eigvalsh, the restarts taken and whether the solver claimed convergence; the cap is forced
    small."""
    for name, which, k in RESTART_CASES:
        lam = _restart_spectrum(name)
        A = with_spectrum(lam, seed=4)
        ref = np.linalg.eigvalsh(A.numpy())
        order = {"LA": ref[::-1], "SA": ref, "LM": ref[np.argsort(-np.abs(ref), kind="stable")]}
        want = torch.tensor(order[which][:k].copy())
        r = lanczos(A, k=k, which=which, tol=1e-12, max_iter=1000, basis_cap=cap)
        err = float(((r.eigenvalues - want).abs() / want.abs()).max())
        yield f"{name}/{which}", err, r.restarts, r.converged


def test_thick_restart_matches_dense_eigh_with_a_small_cap():
    for case, err, restarts, converged in _restarted_errors():
        assert converged, case
        assert restarts > 0, case  # the cap really forced restarts
        assert err < 1e-8, (case, err)


def test_mutation_restart_without_coupling_or_with_wrong_vectors_is_caught(monkeypatch):
    import spectral_lab.linalg.krylov as L

    real = L._restart

    def no_coupling(basis, theta, S, keep, beta):  # drop the kept vectors' coupling to q_{m+1}
        d, c = real(basis, theta, S, keep, beta)
        return d, torch.zeros_like(c)

    def lanczos_vectors(basis, theta, S, keep, beta):  # keep Lanczos vectors, not Ritz vectors
        return real(basis, theta, torch.eye(len(theta), dtype=S.dtype), keep, beta)

    for mutant in (no_coupling, lanczos_vectors):
        monkeypatch.setattr(L, "_restart", mutant)
        caught = any(err > 1e-6 or not conv for _, err, _, conv in _restarted_errors())
        assert caught, mutant.__name__  # any() stops at the first case that catches it


def test_basis_never_exceeds_its_cap_whatever_max_iter():
    import gc
    import warnings

    n, cap = 20_000, 12
    lam = torch.linspace(-1.0, 3.0, n, dtype=D)
    live: list[float] = []

    def count_live_vectors() -> float:
        """Bytes of every live tensor storage of at least n numbers, in n-vectors (independent of
        the solver's own bookkeeping)."""
        seen, total = set(), 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for o in gc.get_objects():
                if isinstance(o, torch.Tensor) and o.numel() >= n:
                    st = o.untyped_storage()
                    if st.data_ptr() not in seen:
                        seen.add(st.data_ptr())
                        total += st.nbytes()
        return total / (n * 8)

    calls = [0]

    def mv(v):
        calls[0] += 1
        if calls[0] % 50 == 0:
            live.append(count_live_vectors())
        return lam * v

    gc.collect()
    # large tensors other tests left alive in this process (not the solver's; lam excluded, the
    # budget below counts it) -- CI once saw 0.3 of a vector of such leftovers
    foreign = count_live_vectors() - 1.0
    r = lanczos(LinearOperator(mv, n, D), k=2, max_iter=200, basis_cap=cap, tol=1e-14)
    assert r.matvecs == 200 and r.restarts >= 10 and not r.converged
    assert r.basis_cap == cap and r.peak_basis <= cap
    # basis + the diagonal lam + the next vector and one temporary; an up-front 200 x n basis
    # (the old allocation, max_iter rows) would show ~200 here
    assert max(live) - foreign <= cap + 4, (max(live), foreign)
    # without restarts the basis grows only as far as the steps taken
    small = lanczos(torch.diag(lam[:200]), k=1, tol=1e-6, basis_cap=100, max_iter=10**6)
    assert small.converged and small.restarts == 0 and small.peak_basis <= small.matvecs + 8


def _float32_lambda_max_error() -> float:
    """Relative error of float32 Lanczos (tol 1e-6) on a 2M-dimensional diagonal operator with
    known top eigenvalue 50 over a bulk in [0, 0.01]."""
    p = 2_000_000
    lam = 0.01 * torch.rand(p, generator=torch.Generator().manual_seed(0))
    lam[:3] = torch.tensor([50.0, 30.0, 20.0])
    r = lanczos(LinearOperator(lambda v: lam * v, p, torch.float32), k=1, tol=1e-6)
    assert r.converged
    return abs(float(r.eigenvalues[0]) - 50.0) / 50.0


def test_float32_lanczos_at_millions_of_parameters_is_accurate():
    assert _float32_lambda_max_error() < 1e-5


def test_mutation_blas_float32_dot_and_norm_are_caught(monkeypatch):
    import spectral_lab.linalg.krylov as L

    monkeypatch.setattr(L, "_dot", lambda a, b: float(a @ b))
    monkeypatch.setattr(L, "_norm", lambda a: float(a.norm()))
    assert _float32_lambda_max_error() > 1e-4  # 5e-4 measured: a Ritz value above lambda_max


def test_spectral_density_runs_probes_in_blocks_within_its_memory_budget(monkeypatch):
    import spectral_lab.linalg.slq as L

    A = with_spectrum(SPECTRA["indefinite"])
    widths: list[int] = []

    def op():
        return LinearOperator(
            lambda v: A @ v, 150, D, matmat=lambda V: widths.append(V.shape[1]) or A @ V
        )

    whole = spectral_density(op(), num_probes=5, num_steps=12, chunk_size=5)
    assert set(widths) == {5}
    widths.clear()
    # a budget of two probes' bases (12 steps x 150 x 8 bytes each): blocks of 2, 2, 1
    monkeypatch.setattr(L, "SLQ_BASIS_BYTES", 2 * 12 * 150 * 8)
    blocked = spectral_density(op(), num_probes=5, num_steps=12)
    assert sorted(set(widths)) == [1, 2] and max(widths) == 2
    torch.testing.assert_close(blocked.nodes, whole.nodes, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(blocked.weights, whole.weights, rtol=1e-10, atol=1e-10)
    assert blocked.matvecs == whole.matvecs == 60
    with pytest.raises(ValueError, match="chunk_size"):
        spectral_density(A, 2, 4, chunk_size=0)


# --- stop="eigenvalue": the gap-theorem estimate ---------------------------------------------


@pytest.mark.parametrize("name", ["clustered", "power_law", "indefinite"])
@pytest.mark.parametrize("k", [1, 3])
def test_eigenvalue_stop_is_accurate_to_tol_and_cheaper_than_the_residual_test(name, k):
    lam = SPECTRA[name]
    A = with_spectrum(lam)
    true = torch.sort(lam, descending=True).values[:k]
    tol = 1e-8
    by_res = lanczos(A, k=k, tol=tol, max_iter=1000)
    by_eig = lanczos(A, k=k, tol=tol, max_iter=1000, stop="eigenvalue")
    assert by_res.criterion == "residual" and by_eig.criterion == "eigenvalue"
    assert by_eig.converged and by_res.converged
    err = ((by_eig.eigenvalues - true).abs() / true.abs()).max()
    assert err <= tol, f"{name}: estimated-error stop left a relative error {err:.1e} > {tol}"
    assert by_eig.matvecs <= by_res.matvecs
    # the certificate still holds: each value within its residual of an eigenvalue
    assert bool(((by_eig.eigenvalues - true).abs() <= by_eig.residuals + 1e-12).all())


def test_eigenvalue_stop_saves_products_on_a_separated_top_eigenvalue():
    lam = torch.cat([torch.tensor([10.0], dtype=D), torch.linspace(0, 8, 299, dtype=D)])
    A = with_spectrum(lam)
    by_res = lanczos(A, k=1, tol=1e-8)
    by_eig = lanczos(A, k=1, tol=1e-8, stop="eigenvalue")
    assert abs(float(by_eig) - 10.0) <= 1e-7
    # stopped before the residual met tol: the saving is real, not a relabelled residual test
    assert by_eig.matvecs < by_res.matvecs
    assert float(by_eig.residuals[0]) > 1e-8 * 10.0


def test_error_estimate_matches_the_gap_theorem_by_hand():
    from spectral_lab.linalg.krylov import _error_estimate

    theta = torch.tensor([1.0, 2.0, 5.0], dtype=D)
    S = torch.eye(3, dtype=D)
    S[-1] = torch.tensor([0.1, 0.2, 0.01], dtype=D)  # last row: r_j = b |s_{m,j}|
    b = 2.0
    # r_j = b |s_{m,j}| = 0.2, 0.4, 0.02
    est = _error_estimate(theta, S, b, torch.tensor([2, 1]))
    # theta=5: delta = min(4 - 0.2, 3 - 0.4) = 2.6 > r -> r^2 / delta
    # theta=2: delta = min(1 - 0.2, 3 - 0.02) = 0.8 > r=0.4 -> 0.16 / 0.8
    assert est.tolist() == pytest.approx([0.02**2 / 2.6, 0.4**2 / 0.8], rel=1e-12)
    # a gap smaller than the residual falls back to the residual itself
    close = _error_estimate(
        torch.tensor([1.0, 1.1], dtype=D), torch.eye(2, dtype=D) + 0.5, 1.0, torch.tensor([1])
    )
    assert float(close[0]) == pytest.approx(1.5)


def test_stop_is_validated():
    with pytest.raises(ValueError, match="stop must be one of"):
        lanczos(torch.eye(3, dtype=D), k=1, stop="gap")


def test_package_reexports_every_public_name_from_its_algorithm_file():
    import importlib

    import spectral_lab as sl
    import spectral_lab.linalg as L

    homes = {"operator", "eigen", "power", "krylov", "trace", "slq"}
    for name in L.__all__:
        obj = getattr(sl.linalg, name)
        assert obj.__module__.rsplit(".", 1)[1] in homes, name
        assert getattr(importlib.import_module(obj.__module__), name) is obj, name


def test_adjoint_product_of_a_symmetric_operator_is_the_transpose_product():
    A = with_spectrum(SPECTRA["indefinite"])
    op = as_operator(A)
    v = torch.randn(150, dtype=D, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(op.rmv(v), A.T @ v, atol=1e-12) and op.adjoint() is op
    assert op.n_products == 1
