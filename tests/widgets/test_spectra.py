"""Spectra explorers (Jacobian spectrum, spectra through depth, entropy): the draw functions run
headless and draw what they claim."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import spectral_lab as sl  # noqa: E402

matplotlib.use("agg")


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
