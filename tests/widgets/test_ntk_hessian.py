"""NTK and step-size explorers: the draw functions against dense references."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import spectral_lab as sl  # noqa: E402
from tests._references import dense_block_ntk  # noqa: E402

D = torch.float64


def test_ntk_explorer_draws(regression):
    x, y = regression
    ui = sl.widgets.ntk_explorer(x, y, steps=10)
    fig = ui.draw(width=16, depth=2, activation="relu")
    assert len(fig.axes) == 2
    assert fig.axes[1].get_yscale() == "log"
    # the plotted spectrum and predicted residuals against a dense numpy reference
    torch.manual_seed(0)
    model = sl.MLP(3, 1, width=16, depth=2, activation="relu").to(D)
    K = dense_block_ntk(model, x)
    lam = np.linalg.eigvalsh(K)
    np.testing.assert_allclose(
        fig.axes[0].lines[0].get_ydata(), np.maximum(lam, 1e-12)[::-1], rtol=1e-8
    )
    eta = 0.5 / lam[-1]
    r0 = (model(x) - y).detach().numpy().ravel()
    A = np.eye(len(r0)) - eta * K
    pred = [np.linalg.norm(np.linalg.matrix_power(A, k) @ r0) for k in range(11)]
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), pred, rtol=1e-8)
    assert fig.axes[1].lines[1].get_ydata()[0] == pytest.approx(np.linalg.norm(r0), rel=1e-12)
    plt.close("all")


def test_step_size_explorer_draws(regression):
    x, y = regression
    torch.manual_seed(0)
    net = sl.MLP(3, 1, width=8, depth=2).to(D)
    lam = sl.hessian_eigs(net, (x, y), loss="mse").eigenvalues[0].item()
    before = [q.clone() for q in net.parameters()]
    ui = sl.widgets.step_size_explorer(net, "mse", (x, y), lam, steps=5)
    for f in (0.5, 1.3):
        fig = ui.draw(lr_over_critical=f)
        assert "2/" in fig._suptitle.get_text()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # model untouched
    plt.close("all")


def test_gd_losses_leaves_model_unchanged_and_matches_quadratic_rule(regression):
    x, y = regression
    torch.manual_seed(1)
    net = sl.MLP(3, 1, width=8, depth=2).to(D)
    before = [q.clone() for q in net.parameters()]
    losses = sl.hessian.gd_losses(net, (x, y), 1e-3, 5, loss="mse")
    assert losses.shape == (6,) and losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
