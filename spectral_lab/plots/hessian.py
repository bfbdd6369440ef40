"""Hessian eigen-solvers, spectral densities and sharpness during training."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ._style import _axis


def plot_convergence(results: dict, reference, ax=None, title: str = "convergence") -> Figure:
    """Relative error of the top eigenvalue estimate against the number of matrix-vector products,
    for each ``EigResult`` in ``results`` (``{label: result}``).

    Example:
        >>> from spectral_lab.linalg import lanczos
        >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
        >>> fig = plot_convergence({"Lanczos": lanczos(A, max_iter=6, seed=0)}, reference=10.0)
        >>> len(fig.axes[0].lines), bool((fig.axes[0].lines[0].get_ydata() < 1).all())
        (1, True)
        >>> plt.close(fig)
    """
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


def plot_density(
    density, exact=None, ax=None, title: str = "spectral density", label: str = "SLQ"
) -> Figure:
    """A :class:`~spectral_lab.linalg.SpectralDensity`, with an optional histogram of exact
    eigenvalues for comparison.

    Example:
        >>> from spectral_lab.linalg import spectral_density
        >>> A = torch.diag(torch.linspace(0.0, 1.0, 50, dtype=torch.float64))
        >>> fig = plot_density(spectral_density(A, num_probes=2, num_steps=10, seed=0), exact=A.diag())
        >>> len(fig.axes[0].lines), len(fig.axes[0].patches)  # the SLQ curve, 80 histogram bars
        (1, 80)
        >>> plt.close(fig)
    """
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


def plot_sharpness(trace, ax=None, title: str = "sharpness during gradient descent") -> Figure:
    """Loss (left) and sharpness ``lambda_max(H)`` with its ``2/eta`` line (right) of one
    :class:`~spectral_lab.hessian.SharpnessTrace`, or of several (a mapping ``label -> trace``,
    one colour each, dashed ``2/eta`` in the same colour).

    Cost: plotting only. Example:
        >>> from spectral_lab.hessian import SharpnessTrace
        >>> t = SharpnessTrace(lr=0.5, steps=torch.arange(3), loss=torch.tensor([1.0, 0.5, 0.3]),
        ...                    sharpness_steps=torch.tensor([0, 2]), sharpness=torch.tensor([3.0, 3.9]))
        >>> fig = plot_sharpness(t)
        >>> float(fig.axes[1].lines[-1].get_ydata()[0])  # the 2 / eta line
        4.0
        >>> plt.close(fig)
        >>> u = SharpnessTrace(lr=0.25, steps=t.steps, loss=t.loss, sharpness_steps=t.sharpness_steps,
        ...                    sharpness=t.sharpness)
        >>> fig = plot_sharpness({"a": t, "b": u})
        >>> [float(line.get_ydata()[0]) for line in fig.axes[1].lines[1::2]]  # one 2/eta per trace
        [4.0, 8.0]
        >>> plt.close(fig)
    """
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax = np.atleast_1d(ax)
    traces = trace if isinstance(trace, Mapping) else {None: trace}
    for i, (label, tr) in enumerate(traces.items()):
        color = "C0" if label is None else f"C{i}"
        eta = rf"$\eta$ = {tr.lr:g}" if label is None else f"{label}"
        ax[0].plot(np.asarray(tr.steps), np.asarray(tr.loss), color=color, label=eta)
        ax[1].plot(
            np.asarray(tr.sharpness_steps),
            np.asarray(tr.sharpness),
            "o-",
            ms=3,
            color=color,
            label=r"$\lambda_{\max}(H)$" if label is None else eta,
        )
        ax[1].axhline(2 / tr.lr, color="C3" if label is None else color, ls="--", lw=1,
                      label=r"$2/\eta$" if label is None else None)  # fmt: skip
    ax[0].set(xlabel="step", ylabel="loss", yscale="log", title="training loss")
    ax[0].legend()
    ax[1].set(xlabel="step", ylabel="sharpness", title=title)
    ax[1].legend()
    ax[0].figure.tight_layout()
    return ax[0].figure


def step_size_draw(model, loss_fn, data, lam_max: float, steps: int = 60) -> Callable[..., Figure]:
    """The drawing function of :func:`spectral_lab.widgets.step_size_explorer` (testable without a kernel).

    A learning-rate slider (in units of ``2 / lambda_max``): gradient descent on the network
    (a copy; ``model`` is not changed) and on a quadratic with the same ``lambda_max``.

    ``loss_fn`` is any ``loss=`` of :func:`~spectral_lab.hessian.gd_losses` (``"mse"``: the one
    ``train`` minimises). Cost per ``draw``: ``steps`` full-batch gradient steps on ``data``. Runs
    on the device and dtype of the model's parameters; inputs are cast to them.

    Example: a linear model with ``lambda_max(H) = 2`` under ``"mse"``; below ``2 / lambda_max`` the
    loss falls.

        >>> lin = torch.nn.Linear(2, 1, bias=False).double()
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        >>> fig = step_size_draw(lin, "mse", (x, torch.zeros(2, 1, dtype=torch.float64)), lam_max=2.0, steps=5)(0.9)
        >>> losses = fig.axes[1].lines[0].get_ydata()
        >>> len(fig.axes), bool(losses[-1] < losses[0])
        (2, True)
        >>> plt.close(fig)
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
