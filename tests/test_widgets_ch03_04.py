"""Chapter 03-04 widgets and plot helpers: the drawing logic runs without a kernel."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import spectral_lab as sl  # noqa: E402

D = torch.float64


@pytest.fixture
def regression():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=g, dtype=D)
    y = torch.randn(8, 1, generator=g, dtype=D)
    return x, y


def test_ntk_explorer_draws(regression):
    ui = sl.widgets.ntk_explorer(*regression, steps=10)
    fig = ui.draw(width=16, depth=2, activation="relu")
    assert len(fig.axes) == 2
    assert fig.axes[1].get_yscale() == "log"
    plt.close("all")


def test_step_size_explorer_draws(regression):
    x, y = regression
    torch.manual_seed(0)
    net = sl.MLP(3, 1, width=8, depth=2).to(D)
    lam = sl.hessian_eigs(net, "mse", (x, y)).eigenvalues[0].item()
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
    losses = sl.hessian.gd_losses(net, "mse", (x, y), 1e-3, 5)
    assert losses.shape == (6,) and losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_plot_helpers(regression):
    A = torch.diag(torch.linspace(0.1, 3.0, 40, dtype=D))
    la, pw = sl.lanczos(A, 1, tol=1e-10), sl.power_iteration(A, 1, tol=1e-8)
    fig = sl.plots.plot_convergence({"Lanczos": la, "power": pw}, 3.0)
    assert len(fig.axes[0].lines) == 2
    fig = sl.plots.plot_density(sl.spectral_density(A, 2, 10), exact=torch.diag(A))
    assert fig.axes[0].get_yscale() == "log"
    fig = sl.plots.plot_eigenvalues([torch.linspace(1, 2, 5)], labels=["a"], normalize=True)
    assert fig.axes[0].get_legend() is not None
    r = torch.ones(4, 3)
    fig = sl.plots.plot_residuals(r, r)
    assert len(fig.axes[0].lines) == 2
    x, y = regression
    torch.manual_seed(0)
    tr = sl.gd_with_sharpness(sl.MLP(3, 1, width=4, depth=2).to(D), "mse", (x, y), 0.01, 4, every=2)
    fig = sl.plots.plot_sharpness(tr)
    assert len(fig.axes) == 2
    plt.close("all")
