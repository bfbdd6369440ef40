"""ipywidgets explorers used by the chapters.

Each explorer is a plain function ``draw(**values) -> Figure`` wrapped by :func:`explorer`, so
tests can call the drawing logic directly without a kernel or a browser.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np


def explorer(draw: Callable[..., object], **controls):
    """``ipywidgets.interactive(draw, **controls)`` with figures closed after display.

    ``controls`` are ipywidgets (sliders, dropdowns) keyed by ``draw``'s argument names.
    The returned object has ``.draw`` (the raw function) for tests.
    """
    import ipywidgets as w
    from IPython.display import display

    def show(**values):
        fig = draw(**values)
        if fig is not None:
            display(fig)
            plt.close(fig)

    ui = w.interactive(show, **controls)
    ui.draw = draw
    return ui


def jacobian_spectrum_explorer(model, x, y=None):
    """Pick a sample with a slider; see the input and its Jacobian's singular values."""
    import ipywidgets as w

    from .jacobians import input_jacobian
    from .spectra import singular_values

    s = singular_values(input_jacobian(model, x)).detach().cpu()
    pred = model(x).argmax(1).cpu()

    def draw(index: int = 0):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(7.5, 3), gridspec_kw={"width_ratios": [1, 2]})
        img = x[index].detach().cpu()
        if img.dim() == 3 and img.shape[0] in (1, 3):
            a0.imshow(img.permute(1, 2, 0).squeeze(-1), cmap="gray")
        else:
            a0.plot(img.flatten())
        a0.set_axis_off()
        label = "" if y is None else f", label {int(y[index])}"
        a0.set_title(f"sample {index}: predicted {int(pred[index])}{label}")
        a1.semilogy(range(1, s.shape[1] + 1), s.numpy().T, color="0.85", lw=0.8)
        a1.semilogy(range(1, s.shape[1] + 1), s[index].numpy(), "o-", color="C0", lw=2)
        a1.set(
            xlabel="rank k", ylabel=r"$\sigma_k(J_f(x))$", title="this sample (blue) vs the others"
        )
        fig.tight_layout()
        return fig

    return explorer(draw, index=w.IntSlider(0, 0, len(x) - 1, 1, description="sample"))


def residual_profile_explorer(in_features: int = 64, num_classes: int = 10, seed: int = 0, x=None):
    """Depth, residual scale and width -> the exponent profile of a (random-init) ``ResidualMLP``
    and its adjacent-layer drift against the depth budget ``(log M)/L``.

    Static-weight factors by default; choose "jacobian" to use the data-dependent factors at the
    rows of ``x`` (random inputs when ``x`` is None; slower).
    """
    import ipywidgets as w
    import torch

    from . import geometry as geo
    from .models import ResidualMLP
    from .plots import plot_depth_budget

    def draw(
        depth: int = 12, residual_scale: float = 0.1, width: int = 32, factors: str = "static"
    ):
        torch.manual_seed(seed)
        model = ResidualMLP(
            in_features, num_classes, width=width, depth=depth, residual_scale=residual_scale
        ).double()
        if factors == "static":
            prof = geo.exponent_profile(model)
            budget, slack = prof.budget, prof.slack
        else:
            xs = (
                x
                if x is not None
                else torch.randn(4, in_features, generator=torch.Generator().manual_seed(seed))
            )
            prof = geo.exponent_profile(model, xs.double(), kind="jacobian")
            budget, slack = prof.per_sample[0].budget, prof.per_sample[0].slack
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.4))
        layers = range(1, prof.L + 1)
        a0.plot(layers, prof.alpha, "o-", ms=3, label=r"$\hat\alpha_l$ (ML)")
        a0.plot(layers, prof.alpha_ls, "s--", ms=3, label=r"$\hat\alpha_l$ (log-log LS)")
        a0.set(
            xlabel="layer l",
            ylabel="exponent",
            title=f"{factors} factors: power law in {prof.power_law.mean():.0%} of layers",
        )
        a0.legend()
        plot_depth_budget(
            budget,
            ax=a1,
            title=f"S = {slack.total_slack:.3f}, (log M)/L = {budget.budget:.4f}",
        )
        fig.tight_layout()
        return fig

    return explorer(
        draw,
        depth=w.IntSlider(12, 2, 32, 1, description="depth L"),
        residual_scale=w.FloatLogSlider(0.1, base=10, min=-2.5, max=0.3, description="scale"),
        width=w.IntSlider(32, 8, 96, 8, description="width d"),
        factors=w.Dropdown(options=["static", "jacobian"], value="static", description="factors"),
    )


def power_law_fit_explorer(d: int = 64, seed: int = 0):
    """Pick a spectrum shape (power law, two-level, exponential), its exponent and noise; see the
    four fitted charts and the verdict of :func:`spectral_lab.geometry.power_law_fit`."""
    import ipywidgets as w

    from . import geometry as geo
    from .plots import plot_power_law_fit

    def draw(shape: str = "power law", alpha: float = 1.0, noise: float = 0.05):
        rng = np.random.default_rng(seed)
        k = np.arange(1, d + 1)
        if shape == "power law":
            lam = geo.power_law_spectrum(alpha, d)
        elif shape == "two-level":
            lam = np.where(k <= d // 4, 1.0 + 4 * alpha, 1.0)
        else:
            lam = np.exp(-alpha * 4 * (k - 1) / d)
        lam = lam * np.exp(noise * rng.standard_normal(d))
        fit = geo.power_law_fit(lam, kind="eigen")
        fig, ax = plt.subplots(figsize=(6, 3.6))
        plot_power_law_fit(lam, fit, kind="eigen", ax=ax)
        fig.tight_layout()
        return fig

    return explorer(
        draw,
        shape=w.Dropdown(options=["power law", "two-level", "exponential"], description="shape"),
        alpha=w.FloatSlider(1.0, min=0.0, max=3.0, step=0.05, description="alpha / steepness"),
        noise=w.FloatSlider(0.05, min=0.0, max=0.5, step=0.01, description="log-noise"),
    )
