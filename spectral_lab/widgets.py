"""ipywidgets explorers used by the chapters.

Each explorer is a plain function ``draw(**values) -> Figure`` wrapped by :func:`explorer`, so
tests can call the drawing logic directly without a kernel or a browser.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt


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


def stability_explorer(profile, key: str = "jac_top"):
    """Chapter 05: slide the quantile level ``q`` and switch ``max``/``geomean`` aggregation; see
    the index terms move and where ``Q_q`` falls in the per-sample histogram (no recomputation)."""
    import ipywidgets as w

    from .plots import plot_index_terms, plot_profile_samples
    from .stability import stability_index

    sup = stability_index(profile)

    def draw(q: float = 1.0, agg: str = "max"):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(9.5, 3.2))
        idx = stability_index(profile.with_q(q), agg=agg)
        plot_index_terms(sup if agg == "max" else stability_index(profile, agg=agg), idx, ax=a0)
        plot_profile_samples(profile, key, q=q, ax=a1)
        a0.set_title(
            rf"$\Gamma$(sup) = {sup.value:.3g},  $\Gamma$(q={q:g}, {agg}) = {idx.value:.3g}"
        )
        fig.tight_layout()
        return fig

    return explorer(
        draw,
        q=w.FloatSlider(1.0, min=0.5, max=1.0, step=0.01, description="quantile q"),
        agg=w.Dropdown(options=["max", "geomean"], value="max", description="aggregate"),
    )
