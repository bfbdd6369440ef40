"""NTK and Hessian figures (convergence, density, eigenvalues, residuals, sharpness) against
the numbers they draw and dense references."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import spectral_lab as sl  # noqa: E402
from tests._references import flat_params  # noqa: E402

D = torch.float64


def test_ntk_and_hessian_plots(regression):
    A = torch.diag(torch.linspace(0.1, 3.0, 40, dtype=D))
    la, pw = sl.linalg.lanczos(A, 1, tol=1e-10), sl.linalg.power_iteration(A, 1, tol=1e-8)
    fig = sl.plots.plot_convergence({"Lanczos": la, "power": pw}, 3.0)
    assert len(fig.axes[0].lines) == 2
    for line, r in zip(fig.axes[0].lines, (la, pw)):  # relative error of the top estimate vs 3.0
        err = np.abs(np.asarray(r.history, float)[:, 0] - 3.0) / 3.0
        np.testing.assert_allclose(line.get_ydata(), np.maximum(err, 1e-16), rtol=1e-12)
        np.testing.assert_array_equal(line.get_xdata(), np.asarray(r.history_matvecs))
    assert fig.axes[0].lines[0].get_ydata()[-1] < 1e-8  # Lanczos reached the true top eigenvalue
    dens = sl.linalg.spectral_density(A, 2, 10)
    fig = sl.plots.plot_density(dens, exact=torch.diag(A))
    assert fig.axes[0].get_yscale() == "log"
    g, y_plot = fig.axes[0].lines[0].get_xdata(), fig.axes[0].lines[0].get_ydata()
    np.testing.assert_allclose(y_plot, dens.density.numpy(), rtol=1e-12)
    assert np.sum((y_plot[1:] + y_plot[:-1]) / 2 * np.diff(g)) == pytest.approx(1.0, abs=0.02)
    bars = fig.axes[0].patches  # the exact-eigenvalue histogram is a density too
    assert sum(b.get_height() * b.get_width() for b in bars) == pytest.approx(1.0, rel=1e-9)
    fig = sl.plots.plot_eigenvalues([torch.linspace(1, 2, 5)], labels=["a"], normalize=True)
    assert fig.axes[0].get_legend() is not None
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), np.linspace(2, 1, 5) / 2)
    r = torch.ones(4, 3)
    fig = sl.plots.plot_residuals(r, 2 * r)
    assert len(fig.axes[0].lines) == 2
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), np.full(4, 3**0.5))
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), np.full(4, 2 * 3**0.5))
    x, y = regression
    torch.manual_seed(0)
    net = sl.MLP(3, 1, width=4, depth=2).to(D)
    theta0, unflatten = flat_params(net)

    def loss(t):
        return 0.5 * ((torch.func.functional_call(net, unflatten(t), (x,)) - y) ** 2).sum(1).mean()

    loss0 = float(loss(theta0))
    sharp0 = float(np.linalg.eigvalsh(torch.autograd.functional.hessian(loss, theta0).numpy())[-1])
    tr = sl.hessian.gd_with_sharpness(net, (x, y), 0.01, 4, loss="mse", every=2, tol=1e-10)
    fig = sl.plots.plot_sharpness(tr)
    assert len(fig.axes) == 2
    loss_line, sharp_line, edge = fig.axes[0].lines[0], *fig.axes[1].lines[:2]
    assert loss_line.get_ydata()[0] == pytest.approx(loss0, rel=1e-12)  # dense reference at step 0
    assert sharp_line.get_ydata()[0] == pytest.approx(sharp0, rel=1e-6)
    np.testing.assert_allclose(sharp_line.get_xdata(), [0, 2, 4])
    np.testing.assert_allclose(edge.get_ydata(), [200.0, 200.0])  # the 2 / eta line
    plt.close("all")
