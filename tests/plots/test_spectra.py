"""Spectra figures (through depth, gates, sensitivity bounds) and the style/training helpers,
against numpy and autograd references."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import spectral_lab as sl  # noqa: E402

matplotlib.use("agg")


def test_spectra_plots_against_references(digits):
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


def test_history_and_spectra_plots_return_figures():
    m = sl.MLP(5, 2, width=4)
    h = sl.train(
        m,
        (torch.randn(16, 5), torch.randint(0, 2, (16,))),
        epochs=2,
        progress=False,
        test_data=(torch.randn(8, 5), torch.randint(0, 2, (8,))),
    )
    fig = sl.plots.plot_history(h)
    assert len(fig.axes) == 2 and len(fig.axes[1].lines) == 2
    fig2 = sl.plots.plot_spectra(torch.rand(3, 4) + 0.1, labels=["a", "b", "c"], normalize=True)
    assert len(fig2.axes[0].lines) == 3
    plt.close("all")
