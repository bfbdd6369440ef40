"""NTK spectra and training residuals (linearised prediction vs gradient descent)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ._style import _axis


def plot_eigenvalues(
    eigenvalues,
    ax=None,
    labels: Sequence[str] | None = None,
    normalize: bool = False,
    title: str = "eigenvalues",
    ylabel: str = r"$\lambda_k$",
) -> Figure:
    """Rank-ordered eigenvalues (descending), one line per entry of ``eigenvalues`` (log scale).

    Example:
        >>> fig = plot_eigenvalues([[1.0, 4.0, 2.0], [3.0, 1.0]], labels=["a", "b"])
        >>> [np.asarray(line.get_ydata()).tolist() for line in fig.axes[0].lines]
        [[4.0, 2.0, 1.0], [3.0, 1.0]]
        >>> plt.close(fig)
    """
    ax = _axis(ax)
    for i, ev in enumerate(eigenvalues):
        e = np.sort(np.asarray(ev, dtype=float).ravel())[::-1]
        if normalize:
            e = e / e[0]
        ax.plot(
            np.arange(1, len(e) + 1), e, "o-", ms=2.5, label=None if labels is None else labels[i]
        )
    ax.set(xlabel="rank k", ylabel=ylabel + (r" / $\lambda_1$" if normalize else ""), title=title)
    ax.set_yscale("log")
    if labels is not None:
        ax.legend()
    return ax.figure


def plot_residuals(
    predicted, actual=None, ax=None, title: str = "training residual", labels=None
) -> Figure:
    """``||r_k||`` against step ``k``: predicted (line) and, optionally, actual (dots).

    Example:
        >>> fig = plot_residuals(np.array([[3.0, 4.0], [0.6, 0.8]]))
        >>> np.asarray(fig.axes[0].lines[0].get_ydata()).tolist()  # ||r_k||
        [5.0, 1.0]
        >>> plt.close(fig)
    """
    ax = _axis(ax)
    lp, la = labels or ("predicted $(I-\\eta\\tilde K)^k r_0$", "actual gradient descent")
    ax.plot(np.linalg.norm(np.asarray(predicted, dtype=float), axis=1), label=lp)
    if actual is not None:
        a = np.linalg.norm(np.asarray(actual, dtype=float), axis=1)
        step = max(1, len(a) // 25)
        ax.plot(np.arange(len(a))[::step], a[::step], "o", ms=4, label=la)
    ax.set(xlabel="step k", ylabel=r"$\|r_k\|$", yscale="log", title=title)
    ax.legend()
    return ax.figure


def ntk_draw(
    x, y, steps: int = 200, lr_factor: float = 0.5, seed: int = 0
) -> Callable[..., Figure]:
    """The drawing function of :func:`spectral_lab.widgets.ntk_explorer` (testable without a kernel).

    Width, depth and activation of an MLP -> its block-NTK spectrum, and the training residual
    predicted by ``(I - eta K~)^k r_0`` against actual gradient descent (``eta = lr_factor /
    lambda_max``). ``x`` (N, d) and ``y`` (N, C) float64; keep ``N`` small (tens).

    Cost per ``draw``: one ``NC x NC`` block NTK, its eigendecomposition and ``steps`` full-batch
    gradient steps. Runs on the device and dtype of ``x`` (the model is built there).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
        >>> fig = ntk_draw(x, y, steps=10)(width=16, depth=1)
        >>> len(fig.axes[0].lines[0].get_ydata())  # N C = 12 eigenvalues
        12
        >>> plt.close(fig)
    """

    from ..models import MLP
    from ..ntk import block_to_matrix, gd_residuals, linearized_residuals, ntk_gram

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

    return draw
