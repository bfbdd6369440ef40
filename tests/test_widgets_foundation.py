"""Widget and plotting logic, exercised without a kernel."""

from __future__ import annotations

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import spectral_lab as sl  # noqa: E402


def test_jacobian_spectrum_explorer_draws_each_sample():
    torch.manual_seed(0)
    model = sl.MLP(64, 10, width=16).eval()
    x = torch.rand(5, 1, 8, 8)
    ui = sl.widgets.jacobian_spectrum_explorer(model, x, torch.arange(5))
    assert ui.children[0].max == 4
    for i in (0, 4):
        fig = ui.draw(index=i)
        blue = fig.axes[1].lines[-1].get_ydata()
        expected = sl.singular_values(sl.input_jacobian(model, x[i : i + 1]))[0].detach().numpy()
        assert abs(blue - expected).max() < 1e-5
        assert f"sample {i}" in fig.axes[0].get_title()
        plt.close(fig)


def test_plot_helpers_return_figures():
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
