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


# --- chapters 03-04 (issue 4) ------------------------------------------------------------------


def ntk_explorer(x, y, steps: int = 200, lr_factor: float = 0.5, seed: int = 0):
    """Width, depth and activation of an MLP -> its block-NTK spectrum, and the training residual
    predicted by ``(I - eta K~)^k r_0`` against actual gradient descent (``eta = lr_factor /
    lambda_max``). ``x`` (N, d) and ``y`` (N, C) float64; keep ``N`` small (tens)."""
    import ipywidgets as w
    import torch

    from .models import MLP
    from .ntk import block_to_matrix, gd_residuals, linearized_residuals, ntk_gram
    from .plots import plot_eigenvalues, plot_residuals

    def draw(width: int = 256, depth: int = 2, activation: str = "tanh"):
        torch.manual_seed(seed)
        model = MLP(x.shape[1], y.shape[1], width=width, depth=depth, activation=activation)
        model = model.to(x)
        K = block_to_matrix(ntk_gram(model, x, kind="block"))
        lam = torch.linalg.eigvalsh(K)
        eta = lr_factor / float(lam[-1])
        actual = gd_residuals(model, x, y, eta, steps)
        pred = linearized_residuals(K, actual[0], eta, steps)
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.3))
        plot_eigenvalues([lam.clamp_min(1e-12).cpu()], ax=a0, title=f"NTK spectrum, width {width}")
        plot_residuals(pred.cpu(), actual.cpu(), ax=a1, title="linearised prediction vs GD")
        fig.tight_layout()
        return fig

    return explorer(
        draw,
        width=w.SelectionSlider(
            options=[8, 16, 32, 64, 128, 256, 512, 1024], value=256, description="width"
        ),
        depth=w.IntSlider(2, 2, 5, 1, description="depth"),
        activation=w.Dropdown(
            options=["tanh", "relu", "gelu", "identity"], value="tanh", description="activation"
        ),
    )


def step_size_explorer(model, loss_fn, data, lam_max: float, steps: int = 60):
    """A learning-rate slider (in units of ``2 / lambda_max``): gradient descent on the network
    (a copy; ``model`` is not changed) and on a quadratic with the same ``lambda_max``."""
    import ipywidgets as w
    import torch

    from .hessian import gd_losses, gd_quadratic

    H = torch.diag(torch.tensor([lam_max, 0.3 * lam_max, 0.05 * lam_max], dtype=torch.float64))
    x0 = torch.ones(3, dtype=torch.float64)

    def draw(lr_over_critical: float = 0.9):
        eta = lr_over_critical * 2 / lam_max
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.2))
        a0.plot(gd_quadratic(H, x0, eta, steps).numpy())
        a0.set(
            yscale="log", xlabel="step", ylabel="loss", title="quadratic, same $\\lambda_{\\max}$"
        )
        a1.plot(gd_losses(model, loss_fn, data, eta, steps).numpy())
        a1.set(yscale="log", xlabel="step", ylabel="loss", title="network")
        stable = "stable" if lr_over_critical < 1 else "unstable"
        fig.suptitle(
            f"$\\eta$ = {lr_over_critical:.2f} x 2/$\\lambda_{{\\max}}$ ({stable} on the quadratic)"
        )
        fig.tight_layout()
        return fig

    return explorer(
        draw,
        lr_over_critical=w.FloatSlider(
            value=0.9, min=0.1, max=1.5, step=0.05, description="η·λmax/2"
        ),
    )
