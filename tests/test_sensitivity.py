"""Sensitivity bounds (typical vs worst case, the entropy bound) and Schur-concavity helpers."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

import spectral_lab as sl

D64 = torch.float64


def test_typical_sensitivity_by_monte_carlo_matrix():
    g = torch.Generator().manual_seed(0)
    J = torch.randn(1, 10, 784, dtype=D64, generator=g) * torch.rand(784, dtype=D64, generator=g)
    b = sl.sensitivity_bounds(J, eps=0.1)
    for dist in ("gaussian", "sphere"):
        mc = sl.sensitivity.monte_carlo_sensitivity(J, None, 0.1, 20000, dist, generator=g)
        assert abs(float(mc[0] / b.typical[0]) - 1) < 0.03, dist
    assert bool(b.holds().all())
    # closed form: (eps^2/d)||J||_F^2, not eps^2 ||J||_F^2 (a wrong constant would be caught)
    assert torch.allclose(b.typical, 0.01 * (J**2).sum((1, 2)) / 784)
    assert torch.allclose(b.worst_case, 0.01 * torch.linalg.matrix_norm(J, 2) ** 2)
    assert bool((b.typical < b.worst_case / 10).all())


def test_typical_sensitivity_network_first_order():
    torch.manual_seed(0)
    model = sl.MLP(20, 5, width=32, depth=3, activation="tanh").double()
    x = torch.randn(3, 20, dtype=D64)
    J = sl.input_jacobian(model, x)
    gaps = []
    for eps in (1e-1, 1e-3):
        g = torch.Generator().manual_seed(1)
        mc = sl.sensitivity.monte_carlo_sensitivity(model, x, eps, 4000, generator=g)
        g = torch.Generator().manual_seed(1)
        lin = sl.sensitivity.monte_carlo_sensitivity(J, None, eps, 4000, generator=g)  # same draws
        gaps.append(float(((mc - lin).abs() / lin).max()))
    assert gaps[1] < 1e-3 and gaps[1] < gaps[0]


def test_entropy_bound_holds_tight_and_loose():
    # flat spectrum: srank = exp(SE) = rank, so the entropy bound is tight
    flat = torch.eye(4, 50, dtype=D64)
    b = sl.sensitivity_bounds(flat, 1.0)
    assert math.isclose(float(b.typical), float(b.entropy_bound), rel_tol=1e-12)
    # one dominant + a flat tail: exp(SE) ~ 3 srank (bound loose but valid)
    s = torch.tensor([1.0] + [0.3] * 9, dtype=D64)
    m = torch.cat([torch.diag(s), torch.zeros(10, 40, dtype=D64)], 1)
    b = sl.sensitivity_bounds(m, 1.0)
    assert bool(b.holds()) and float(b.entropy_bound / b.typical) > 2.5


def test_entropy_bound_constant_over_a_dataset():
    torch.manual_seed(1)
    model = sl.MLP(16, 4, width=16, depth=3).double()
    J = sl.input_jacobian(model, torch.randn(30, 16, dtype=D64))
    K = sl.sensitivity.entropy_bound_constant(J)
    eps = 0.05
    lhs = (eps**2 / 16 * (J**2).sum((1, 2))).mean()
    rhs = K * eps**2 * sl.effective_rank(J).mean()
    assert lhs <= rhs
    assert math.isclose(float(K), float(sl.singular_values(J)[:, 0].max() ** 2 / 16))


# --- the entropy bound pinned to an independent closed form (numpy), plus mutation tests ---


def _reference_bounds(J: np.ndarray, eps: float) -> dict[str, np.ndarray]:
    """Independent numpy closed form of the four terms, per matrix of a stack ``(N, C, d)``.

    Energy-normalised entropy p_i = s_i^2 / sum s^2, SE = -sum p log p (nats); K = s_1^2 / d.
    """
    d = J.shape[-1]
    s = np.linalg.svd(J, compute_uv=False)  # (N, min(C, d)), descending
    energy = (s**2).sum(-1, keepdims=True)
    p = s**2 / energy
    se = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1)
    rank = (s > max(J.shape[-2:]) * np.finfo(float).eps * s[:, :1]).sum(-1)
    s1sq = s[:, 0] ** 2
    return {
        "typical": eps**2 * energy[:, 0] / d,
        "entropy_bound": (s1sq / d) * eps**2 * np.exp(se),
        "rank_bound": (s1sq / d) * eps**2 * rank,
        "worst_case": eps**2 * s1sq,
        "K": s1sq / d,
        "dataset_K": s1sq.max() / d,
        "dataset_rhs": (s1sq.max() / d) * eps**2 * np.exp(se).mean(),
    }


def _pinning_stacks() -> list[torch.Tensor]:
    """Matrices whose spectra are far from flat (so every normalisation gives a different SE)."""
    g = torch.Generator().manual_seed(11)
    a = torch.randn(6, 10, 40, dtype=D64, generator=g) * torch.rand(40, dtype=D64, generator=g)
    s = torch.tensor([3.0, 1.0, 0.5, 0.2, 0.05], dtype=D64)
    b = torch.cat([torch.diag(s), torch.zeros(5, 7, dtype=D64)], 1)[None]  # known spectrum, d = 12
    return [a, b]


def _bounds_match_reference(bounds_fn, constant_fn, eps: float = 0.3) -> bool:
    """True iff ``bounds_fn`` / ``constant_fn`` reproduce the numpy closed form on every stack."""
    ok = True
    for J in _pinning_stacks():
        ref = _reference_bounds(J.numpy(), eps)
        b = bounds_fn(J, eps)
        for name in ("typical", "entropy_bound", "rank_bound", "worst_case", "K"):
            ok &= bool(np.allclose(getattr(b, name).numpy(), ref[name], rtol=1e-10, atol=0))
        K = constant_fn(J)
        ok &= math.isclose(float(K), float(ref["dataset_K"]), rel_tol=1e-10)
        rhs = K * eps**2 * sl.effective_rank(J).mean()  # the data-set form of the entropy bound
        ok &= math.isclose(float(rhs), float(ref["dataset_rhs"]), rel_tol=1e-10)
    return ok


def test_entropy_bound_pinned_to_closed_form():
    # the known spectrum by hand: p = s^2/sum s^2, SE = -sum p log p, bound = (s1^2/d) eps^2 e^SE
    s = np.array([3.0, 1.0, 0.5, 0.2, 0.05])
    p = s**2 / (s**2).sum()
    hand = 9.0 / 12 * 0.3**2 * math.exp(-(p * np.log(p)).sum())
    J = _pinning_stacks()[1]
    assert math.isclose(float(sl.sensitivity_bounds(J, 0.3).entropy_bound[0]), hand, rel_tol=1e-12)
    assert _bounds_match_reference(sl.sensitivity_bounds, sl.sensitivity.entropy_bound_constant)


def _mutant(fn, old: str, new: str):
    """``fn`` recompiled in its own module with the source text ``old`` replaced by ``new``."""
    src = inspect.getsource(fn)
    assert old in src, f"mutation site {old!r} not found in {fn.__name__}"
    ns: dict = {}
    exec(
        compile(src.replace(old, new), f"<mutant of {fn.__name__}>", "exec"),
        vars(sl.sensitivity),
        ns,
    )
    return ns[fn.__name__]


BOUNDS_MUTANTS = {
    "amplitude entropy (M3)": (
        'spectral_entropy(s, kind="singular")',
        'spectral_entropy(s, "amplitude", kind="singular")',
    ),
    "entropy in bits": (
        'spectral_entropy(s, kind="singular")',
        'spectral_entropy(s, base=2, kind="singular")',
    ),
    "K = sigma_1 / d": ("K = s1sq / d", "K = s[..., 0] / d"),
    "K = sigma_1^2 (no /d)": ("K = s1sq / d", "K = s1sq"),
    "typical without /d": ("(s**2).sum(-1) / d", "(s**2).sum(-1)"),
}
CONSTANT_MUTANTS = {
    "K from the mean sigma_1": ("[..., 0] ** 2).max()", "[..., 0] ** 2).mean()"),
    "K without /d": (").max() / J.shape[-1]", ").max()"),
}


@pytest.mark.parametrize("name", sorted(BOUNDS_MUTANTS))
def test_pinned_check_catches_wrong_entropy_bound(name, monkeypatch):
    mutant = _mutant(sl.sensitivity.sensitivity_bounds, *BOUNDS_MUTANTS[name])
    monkeypatch.setattr(sl.sensitivity, "sensitivity_bounds", mutant)
    assert not _bounds_match_reference(mutant, sl.sensitivity.entropy_bound_constant), name


@pytest.mark.parametrize("name", sorted(CONSTANT_MUTANTS))
def test_pinned_check_catches_wrong_dataset_constant(name, monkeypatch):
    mutant = _mutant(sl.sensitivity.entropy_bound_constant, *CONSTANT_MUTANTS[name])
    monkeypatch.setattr(sl.sensitivity, "entropy_bound_constant", mutant)
    assert not _bounds_match_reference(sl.sensitivity_bounds, mutant), name


def test_amplitude_mutant_survives_the_one_sided_checks():
    # why the pin is needed: the amplitude entropy (M3) still satisfies every inequality of the chain
    mutant = _mutant(sl.sensitivity.sensitivity_bounds, *BOUNDS_MUTANTS["amplitude entropy (M3)"])
    for J in _pinning_stacks():
        b = mutant(J, 0.3)
        assert bool(b.holds().all())
        assert not torch.allclose(b.entropy_bound, sl.sensitivity_bounds(J, 0.3).entropy_bound)


def test_isotropic_perturbations_have_isotropic_covariance():
    g = torch.Generator().manual_seed(3)
    for dist in ("gaussian", "sphere"):
        d = sl.sensitivity.isotropic_perturbations(
            (2, 3), 0.5, 200000, dist, generator=g, dtype=D64
        )
        flat = d.reshape(len(d), -1)
        cov = flat.T @ flat / len(flat)
        assert torch.allclose(cov, torch.eye(6, dtype=D64) * 0.25 / 6, atol=2e-3)
    sphere = sl.sensitivity.isotropic_perturbations((5,), 0.5, 10, "sphere", generator=g, dtype=D64)
    assert torch.allclose(sphere.norm(dim=1), torch.full((10,), 0.5, dtype=D64))


def test_schur_concavity_helpers():
    s = torch.tensor([5.0, 2.0, 1.0, 0.5], dtype=D64)
    e = lambda v: v**2 / (v**2).sum()  # noqa: E731
    prev_h, prev_k = -1.0, math.inf
    for t in torch.linspace(0, 1, 11).tolist():
        st = sl.sensitivity.mix_toward_uniform(s, t)
        assert math.isclose(float((st**2).sum()), float((s**2).sum()), rel_tol=1e-12)
        h, k = (
            float(sl.spectral_entropy(st, kind="singular")),
            float(sl.condition_number(st, kind="singular")),
        )
        assert h >= prev_h - 1e-12 and k <= prev_k + 1e-12
        assert sl.sensitivity.majorizes(e(s), e(st))
        prev_h, prev_k = h, k
    assert math.isclose(prev_h, math.log(4), rel_tol=1e-12) and math.isclose(prev_k, 1.0)
    r = sl.sensitivity.robin_hood_transfer(s, 0, 3, 0.5)
    assert sl.sensitivity.majorizes(e(s), e(r)) and not sl.sensitivity.majorizes(e(r), e(s))
    assert sl.spectral_entropy(r, kind="singular") > sl.spectral_entropy(s, kind="singular")
    assert sl.condition_number(r, kind="singular") <= sl.condition_number(s, kind="singular")


def test_entropy_lower_bound_from_condition_number():
    g = torch.Generator().manual_seed(4)
    for _ in range(100):
        m = torch.randn(6, 9, dtype=D64, generator=g) * torch.rand(9, dtype=D64, generator=g)
        kappa = sl.condition_number(m)
        assert (
            float(sl.spectral_entropy(m))
            >= float(sl.sensitivity.entropy_lower_bound(kappa, 6)) - 1e-12
        )
    assert math.isclose(float(sl.sensitivity.entropy_lower_bound(1.0, 5)), math.log(5))


def test_errors():
    with pytest.raises(ValueError, match="eps"):
        sl.sensitivity_bounds(torch.eye(3), eps=0)
    with pytest.raises(ValueError, match="distribution"):
        sl.sensitivity.isotropic_perturbations((3,), 0.1, 5, "cauchy")
    with pytest.raises(ValueError, match="fraction"):
        sl.sensitivity.robin_hood_transfer(torch.ones(3), 0, 1, 2.0)
    with pytest.raises(ValueError, match="same length"):
        sl.sensitivity.majorizes(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="num_draws"):
        sl.sensitivity.isotropic_perturbations((3,), 0.1, 0)
