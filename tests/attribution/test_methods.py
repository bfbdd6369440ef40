"""Attribution maps (saliency, gradient x input, SmoothGrad, integrated gradients) against finite
differences and closed forms."""

from __future__ import annotations

import torch

import spectral_lab as sl

from ._helpers import _linear, _tanh_mlp


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
