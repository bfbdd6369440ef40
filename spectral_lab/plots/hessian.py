"""Hessian eigen-solvers, spectral densities and sharpness during training."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ._style import _axis


def plot_convergence(results: dict, reference, ax=None, title: str = "convergence"):
    """Relative error of the top eigenvalue estimate against the number of matrix-vector products,
    for each ``EigResult`` in ``results`` (``{label: result}``)."""
    ax = _axis(ax)
    ref = float(np.asarray(reference).ravel()[0])
    for label, r in results.items():
        h = np.asarray(r.history, dtype=float)[:, 0]
        err = np.abs(h - ref) / abs(ref)
        ax.plot(np.asarray(r.history_matvecs), np.maximum(err, 1e-16), "-", label=label)
    ax.set(
        xlabel="matrix-vector products",
        ylabel=r"$|\hat\lambda_1 - \lambda_1| / \lambda_1$",
        yscale="log",
        title=title,
    )
    ax.legend()
    return ax.figure


def plot_density(density, exact=None, ax=None, title: str = "spectral density", label: str = "SLQ"):
    """A :class:`~spectral_lab.linalg.SpectralDensity`, with an optional histogram of exact
    eigenvalues for comparison."""
    ax = _axis(ax)
    if exact is not None:
        ax.hist(
            np.asarray(exact, dtype=float),
            bins=80,
            density=True,
            color="0.8",
            label="exact eigenvalues",
        )
    ax.plot(np.asarray(density.grid), np.asarray(density.density), label=label)
    ax.set(xlabel=r"$\lambda$", ylabel="density", yscale="log", title=title)
    ax.set_ylim(bottom=1e-4)
    ax.legend()
    return ax.figure


def plot_sharpness(trace, ax=None, title: str = "sharpness during gradient descent"):
    """Loss (left) and sharpness ``lambda_max(H)`` with the ``2/eta`` line (right) of a
    :class:`~spectral_lab.hessian.SharpnessTrace`."""
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax = np.atleast_1d(ax)
    ax[0].plot(np.asarray(trace.steps), np.asarray(trace.loss))
    ax[0].set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax[1].plot(
        np.asarray(trace.sharpness_steps),
        np.asarray(trace.sharpness),
        "o-",
        ms=3,
        label=r"$\lambda_{\max}(H)$",
    )
    ax[1].axhline(2 / trace.lr, color="C3", ls="--", label=r"$2/\eta$")
    ax[1].set(xlabel="step", ylabel="sharpness", title=title)
    ax[1].legend()
    ax[0].figure.tight_layout()
    return ax[0].figure


def step_size_draw(model, loss_fn, data, lam_max: float, steps: int = 60):
    """The drawing function of :func:`spectral_lab.widgets.step_size_explorer` (testable without a kernel).

    A learning-rate slider (in units of ``2 / lambda_max``): gradient descent on the network
    (a copy; ``model`` is not changed) and on a quadratic with the same ``lambda_max``.
    """

    from ..hessian import gd_losses, gd_quadratic

    H = torch.diag(torch.tensor([lam_max, 0.3 * lam_max, 0.05 * lam_max], dtype=torch.float64))
    x0 = torch.ones(3, dtype=torch.float64)

    def draw(lr_over_critical: float = 0.9):
        eta = lr_over_critical * 2 / lam_max
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(9, 3.2))
        a0.plot(gd_quadratic(H, x0, eta, steps).numpy())
        a0.set(
            yscale="log", xlabel="step", ylabel="loss", title="quadratic, same $\\lambda_{\\max}$"
        )
        a1.plot(gd_losses(model, data, eta, steps, loss=loss_fn).numpy())
        a1.set(yscale="log", xlabel="step", ylabel="loss", title="network")
        stable = "stable" if lr_over_critical < 1 else "unstable"
        fig.suptitle(
            f"$\\eta$ = {lr_over_critical:.2f} x 2/$\\lambda_{{\\max}}$ ({stable} on the quadratic)"
        )
        fig.tight_layout()
        return fig

    return draw
