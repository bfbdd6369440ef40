"""Attributions and their stability metrics against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab.attribution import (
    finite_difference_sensitivity,
    spearman,
    topk_overlap,
    upper_envelope,
)

torch.set_default_dtype(torch.float32)


def _tanh_mlp(d=6, c=4, seed=0):
    torch.manual_seed(seed)
    return sl.MLP(d, c, width=12, depth=3, activation="tanh").double().eval()


def _linear(d=5, c=3, seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(d, c)).double().eval()
    return m


# --------------------------------------------------------------------------- attributions
def test_saliency_matches_finite_differences_for_predicted_and_given_class():
    m = _tanh_mlp()
    x = torch.randn(7, 6, dtype=torch.float64)
    pred = m(x).argmax(1)
    h = 1e-6
    eye = torch.eye(6, dtype=torch.float64)

    # central differences of f_c along every coordinate: (N, d)
    def f_c(z):  # z: (N, d, d) -> f_pred(z) as (N, d)
        out = m(z.reshape(-1, 6)).reshape(7, 6, -1)
        return out.gather(2, pred[:, None, None].expand(-1, 6, 1))[..., 0]

    fd = (f_c(x[:, None, :] + h * eye) - f_c(x[:, None, :] - h * eye)) / (2 * h)
    assert torch.allclose(sl.saliency(m, x), fd, atol=1e-8)
    J = sl.input_jacobian(m, x)
    assert torch.allclose(sl.saliency(m, x, target=2), J[:, 2], atol=1e-12)
    t = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    assert torch.allclose(sl.saliency(m, x, target=t), J[torch.arange(7), t], atol=1e-12)


def test_saliency_keeps_image_shape_and_is_batched():
    torch.manual_seed(0)
    cnn = sl.SmallCNN(1, 10, image_size=8, channels=(4,)).double().eval()
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    a = sl.saliency(cnn, x)
    assert a.shape == x.shape
    # batching does not mix samples: each row equals the single-sample computation
    a2 = sl.saliency(cnn, x[2:3])
    assert torch.allclose(a[2:3], a2, atol=1e-12)


def test_linear_model_attributions_are_constant_and_exact():
    m = _linear()
    W = m[0].weight.detach()
    x = torch.randn(9, 5, dtype=torch.float64)
    c = 1
    for method in ("saliency", "smoothgrad"):
        a = sl.attribution.attribution(m, x, method, target=c)
        assert torch.allclose(a, W[c].expand_as(a), atol=1e-12), method
    assert torch.allclose(sl.attribution.gradient_x_input(m, x, target=c), x * W[c], atol=1e-12)
    ig = sl.integrated_gradients(m, x, target=c, num_steps=3)
    assert torch.allclose(ig, x * W[c], atol=1e-12)
    # constant attributions are perfectly stable under any noise
    inst = sl.attribution_instability(m, x, scales=(0.1, 1.0), num_draws=3, target=c)
    assert float(inst.delta_grad.abs().max()) < 1e-12
    assert float(inst.cosine_distance.abs().max()) < 1e-12
    assert float(inst.topk_overlap.min()) == 1.0


def test_integrated_gradients_completeness_on_a_smooth_network():
    m = _tanh_mlp()
    x = torch.randn(4, 6, dtype=torch.float64)
    base = torch.randn(1, 6, dtype=torch.float64) * 0.1
    c = m(x).argmax(1)
    ig = sl.integrated_gradients(m, x, baseline=base, num_steps=256)
    gap = (m(x) - m(base.expand_as(x))).gather(1, c[:, None])[:, 0]
    assert torch.allclose(ig.sum(1), gap, rtol=1e-4, atol=1e-6)
    # a deliberately coarse rule is detectably less accurate
    coarse = sl.integrated_gradients(m, x, baseline=base, num_steps=1)
    assert (coarse.sum(1) - gap).abs().max() > (ig.sum(1) - gap).abs().max()


def test_smoothgrad_is_the_mean_of_noisy_gradients_and_seeded():
    m = _tanh_mlp()
    x = torch.randn(3, 6, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    noise = torch.randn((4, 3, 6), generator=g, dtype=torch.float64)
    c = m(x).argmax(1)
    ref = torch.stack([sl.saliency(m, x + 0.2 * noise[j], target=c) for j in range(4)]).mean(0)
    sg = sl.smoothgrad(m, x, sigma=0.2, num_draws=4, seed=5)
    assert torch.allclose(sg, ref, atol=1e-12)
    sg_chunked = sl.smoothgrad(m, x, sigma=0.2, num_draws=4, seed=5, chunk_size=3)
    assert torch.allclose(sg_chunked, ref, atol=1e-12)


# --------------------------------------------------------------------------- metrics
def test_per_sample_metrics_against_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 20))
    b = a + 0.3 * rng.normal(size=(6, 20))
    ta, tb = torch.tensor(a), torch.tensor(b)
    rel = np.linalg.norm(b - a, axis=1) / np.linalg.norm(a, axis=1)
    cos = 1 - (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert np.allclose(sl.attribution.relative_change(ta, tb).numpy(), rel)
    assert np.allclose(sl.attribution.cosine_distance(ta, tb).numpy(), cos)
    k = 5
    ref = [
        len(set(np.argsort(-np.abs(a[i]))[:k]) & set(np.argsort(-np.abs(b[i]))[:k])) / k
        for i in range(6)
    ]
    assert np.allclose(topk_overlap(ta, tb, k).numpy(), ref)
    assert np.allclose(topk_overlap(ta, tb, 0.25).numpy(), ref)  # 25% of 20 features = 5
    assert torch.allclose(topk_overlap(ta, ta, 3), torch.ones(6, dtype=torch.float64))


def test_attribution_condition_number_median_and_classical():
    torch.manual_seed(0)
    J = torch.randn(5, 4, 30, dtype=torch.float64)
    s = np.linalg.svd(J.numpy(), compute_uv=False)
    ref = s[:, 0] / np.median(s, axis=1)
    assert np.allclose(sl.attribution.attribution_condition_number(J).numpy(), ref)
    assert np.allclose(
        sl.attribution.attribution_condition_number(J, kind="classical").numpy(), s[:, 0] / s[:, -1]
    )
    m = _tanh_mlp()
    x = torch.randn(5, 6, dtype=torch.float64)
    via_model = sl.attribution.attribution_condition_number(m, x)
    assert torch.allclose(
        via_model, sl.attribution.attribution_condition_number(sl.input_jacobian(m, x))
    )
    assert (via_model >= 1).all()
    # a flat spectrum has kappa = 1
    Q = torch.linalg.qr(torch.randn(30, 4, dtype=torch.float64)).Q.T
    assert torch.allclose(
        sl.attribution.attribution_condition_number(3 * Q), torch.tensor(1.0, dtype=torch.float64)
    )


def test_finite_difference_sensitivity_of_a_linear_map():
    m = _linear()
    W = m[0].weight.detach()
    x = torch.randn(4, 5, dtype=torch.float64)
    d = torch.randn(4, 5, dtype=torch.float64)
    ref = (d @ W.T).norm(dim=1) / d.norm(dim=1)
    assert torch.allclose(finite_difference_sensitivity(m, x, d), ref)


# --------------------------------------------------------------------------- Fréchet distance
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


def test_attribution_instability_shapes_fd_and_monotone_in_noise():
    m = _tanh_mlp()
    x = torch.randn(40, 6, dtype=torch.float64)
    inst = sl.attribution_instability(m, x, scales=(0.01, 0.3), num_draws=4, fd_pca_dim=4)
    assert inst.delta_grad.shape == (2, 40) and inst.fd.shape == (2,)
    assert inst.perturbed.shape == (2, 40, 6) and inst.clean.shape == (40, 6)
    assert (inst.delta_grad[1].mean() > inst.delta_grad[0].mean()).item()
    assert (inst.fd[1] > inst.fd[0]).item()
    # Delta_grad for small noise ~ ||H delta|| / ||a||: scales linearly with s for a smooth net
    i2 = sl.attribution_instability(m, x, scales=(1e-4, 2e-4), num_draws=4)
    ratio = float(i2.delta_grad[1].mean() / i2.delta_grad[0].mean())
    assert abs(ratio - 2.0) < 0.05
    assert "Δgrad" in repr(inst) and len(inst.summary()) == 2


def test_spearman_and_upper_envelope():
    x = np.arange(40.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    # y uniform under a falling cap: the envelope falls although rank correlation is weak-ish
    xs = rng.uniform(0, 1, 4000)
    ys = rng.uniform(0, 1, 4000) * (1 - xs)
    env = upper_envelope(xs, ys, bins=8, q=0.95)
    assert env.trend == pytest.approx(-1.0)
    assert np.all(np.diff(env.upper) < 0) and env.counts.sum() == 4000
    flat = upper_envelope(xs, rng.uniform(0, 1, 4000), bins=8)
    assert abs(flat.trend) < 1.0


# --------------------------------------------------------------------------- errors
def test_errors_are_clear():
    m = _tanh_mlp()
    x = torch.randn(3, 6, dtype=torch.float64)
    with pytest.raises(TypeError, match="integer"):
        sl.saliency(m, torch.ones(3, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        sl.saliency(m, x.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="target must have shape"):
        sl.saliency(m, x, target=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        sl.saliency(m, x, target=9)
    with pytest.raises(ValueError, match="method must be one of"):
        sl.attribution.attribution(m, x, "lime")
    with pytest.raises(ValueError, match="same number of features"):
        sl.frechet_distance(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        sl.frechet_distance(torch.randn(1, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="pca_dim"):
        sl.frechet_distance(torch.randn(5, 3), torch.randn(5, 3), pca_dim=4)
    with pytest.raises(ValueError, match="k must select"):
        topk_overlap(torch.randn(2, 3), torch.randn(2, 3), 4)
    with pytest.raises(ValueError, match="same shape"):
        sl.attribution.relative_change(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="kind"):
        sl.attribution.attribution_condition_number(torch.randn(2, 3, 4), kind="max")
    with pytest.raises(ValueError, match="scales"):
        sl.attribution_instability(m, x, scales=())
    with pytest.raises(ValueError, match="steps"):
        sl.integrated_gradients(m, x, num_steps=0)
    with pytest.raises(ValueError, match="has no parameters"):
        sl.saliency(nn.Identity(), x)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_attributions_follow_the_device():
    m = _tanh_mlp().cuda()
    x = torch.randn(8, 6, dtype=torch.float64, device="cuda")
    inst = sl.attribution_instability(m, x, scales=(0.1,), num_draws=2)
    assert inst.delta_grad.device.type == "cuda"
    assert sl.smoothgrad(m, x, num_draws=2).device.type == "cuda"
