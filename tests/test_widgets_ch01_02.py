"""Chapter 01-02 widgets and plots: the draw functions run headless and draw what they claim."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import spectral_lab as sl  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    x, y = sl.load_dataset("digits", split="test").tensors(6)
    return x, y


@pytest.mark.parametrize("activation", ["relu", "tanh", "identity"])
def test_depth_spectra_draw(digits, activation):
    draw = sl.widgets.depth_spectra_draw(digits[0])
    fig = draw(gain=2.0, width=16, depth=3, activation=activation, normalize=True)
    a0, a1 = fig.axes[:2]
    assert len(a0.lines) == 3  # one line per weight factor W1..W3
    # the last partial product is the C x d Jacobian: 10 singular values (ReLU gates may switch
    # off so many units that some are numerical zeros, which are not drawn)
    n_last = len(a0.lines[-1].get_xdata())
    assert n_last == 10 if activation != "relu" else 1 <= n_last <= 10
    assert activation in a0.get_title()
    # normalized: every curve starts at 1
    assert all(abs(line.get_ydata()[0] - 1) < 1e-12 for line in a0.lines)
    plt.close(fig)


def test_depth_spectra_draw_matches_library(digits):
    draw = sl.widgets.depth_spectra_draw(digits[0], seed=3)
    fig = draw(gain=1.0, width=12, depth=2, activation="tanh", normalize=False)
    torch.manual_seed(3)
    model = sl.MLP(64, 10, width=12, depth=2, activation="tanh", gain=1.0).double()
    s = sl.singular_values(sl.input_jacobian(model, digits[0][:1].double()))[0]
    assert torch.allclose(torch.tensor(fig.axes[0].lines[-1].get_ydata()), s, rtol=1e-8)
    # sigma_1 through depth on the right panel equals the first point of each curve
    top = fig.axes[1].lines[0].get_ydata()
    assert abs(top[-1] - float(s[0])) < 1e-8 * float(s[0])
    plt.close(fig)


def test_entropy_draw(digits):
    model = sl.MLP(64, 10, width=16).eval()
    J = sl.input_jacobian(model, digits[0])
    draw = sl.widgets.entropy_draw(J, eps=0.1)
    fig = draw(index=2, t=0.0, base="e")
    se = float(sl.spectral_entropy(J[2]))
    assert f"SE={se:.3f} nats" in fig.axes[1].get_title()
    plt.close(fig)
    fig = draw(index=2, t=1.0, base="2")
    # fully flattened: p uniform, SE = log2(10) bits
    import math

    assert f"SE={math.log2(10):.3f} bits" in fig.axes[1].get_title()
    heights = [p.get_height() for p in fig.axes[1].patches]
    assert max(heights) - min(heights) < 1e-9
    plt.close(fig)


def test_explorers_build(digits):
    pytest.importorskip("ipywidgets")
    ui = sl.widgets.depth_spectra_explorer(digits[0])
    assert callable(ui.draw)
    J = sl.input_jacobian(sl.MLP(64, 10, width=8), digits[0])
    ui = sl.widgets.entropy_explorer(J)
    assert callable(ui.draw)
    plt.close("all")


def test_plots(digits):
    x = digits[0].double()
    model = sl.SmallCNN(1, 10, image_size=8, channels=(4,)).double()
    op = sl.operator_product(model, x[0])
    fig = sl.plots.plot_depth_spectra(op.partial_spectra())
    assert len(fig.axes[0].lines) == len(op.factors)
    for line, P in zip(fig.axes[0].lines, op.partial_products()):  # numpy SVD of each product
        s = np.linalg.svd(P.numpy(), compute_uv=False)
        np.testing.assert_allclose(line.get_ydata(), s[s > 1e-12 * s[0]], rtol=1e-9)
    # the deepest line is the spectrum of the network's Jacobian (independent autograd reference)
    J_ref = torch.autograd.functional.jacobian(lambda z: model(z[None])[0], x[0]).reshape(10, -1)
    s_ref = np.linalg.svd(J_ref.numpy(), compute_uv=False)
    np.testing.assert_allclose(
        fig.axes[0].lines[-1].get_ydata(), s_ref[s_ref > 1e-12 * s_ref[0]], rtol=1e-9
    )
    plt.close(fig)
    gates = torch.rand(5, 7)
    fig = sl.plots.plot_gates(gates)
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), gates.numpy())
    plt.close(fig)
    J = sl.input_jacobian(model, x)
    b = sl.sensitivity_bounds(J, 0.1)
    fig = sl.plots.plot_sensitivity_bounds(
        b, sl.sensitivity.monte_carlo_sensitivity(J, None, 0.1, 100)
    )
    assert len(fig.axes[0].lines) == 5
    # worst, rank, entropy, typical: against a numpy closed form (E2 entropy, K = sigma_1^2 / d)
    sv = np.linalg.svd(J.numpy(), compute_uv=False)
    p = sv**2 / (sv**2).sum(1, keepdims=True)
    se = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(1)
    rank = (sv > 64 * np.finfo(float).eps * sv[:, :1]).sum(1)
    K = sv[:, 0] ** 2 / 64
    ref = [0.01 * sv[:, 0] ** 2, K * 0.01 * rank, K * 0.01 * np.exp(se), 0.01 * (sv**2).sum(1) / 64]
    for line, r in zip(fig.axes[0].lines[:4], ref):
        np.testing.assert_allclose(line.get_ydata(), r, rtol=1e-10)
    plt.close(fig)
    fig = sl.plots.plot_depth_summary(["a", "b"], [1.0, 2.0], ylabel="y")
    assert len(fig.axes[0].lines) == 1
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), [1.0, 2.0])
    plt.close(fig)
