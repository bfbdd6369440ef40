"""Attribution maps and their instability under input noise."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ._style import COLORS


def _as_heat(a) -> np.ndarray:
    """An attribution (C, H, W) / (H, W) / (d,) as a 2-D heat map (sum of |a| over channels)."""
    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=float)
    if a.ndim == 3:
        return np.abs(a).sum(0)
    if a.ndim == 1:
        side = int(round(np.sqrt(a.size)))
        return np.abs(a).reshape(side, side) if side * side == a.size else np.abs(a)[None]
    return np.abs(a)


def _as_image(x) -> np.ndarray:
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=float)
    if x.ndim == 3:
        return x[0] if x.shape[0] == 1 else np.clip(x.transpose(1, 2, 0), 0, 1)
    if x.ndim == 1:  # a flat input (an MLP's): a square image when its length is a square
        side = int(round(np.sqrt(x.size)))
        return x.reshape(side, side) if side * side == x.size else x[None]
    return x


def plot_saliency_maps(
    images,
    clean,
    perturbed,
    titles: Sequence[str] | None = None,
    row_labels=("input", "clean |a(x)|", "perturbed |a(x+δ)|"),
) -> Figure:
    """Columns: samples; rows: the input, its clean saliency, its saliency under noise. Each
    column's two maps share one colour scale so the change is visible.

    Example:
        >>> import torch
        >>> imgs = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
        >>> fig = plot_saliency_maps(imgs, imgs, 2 * imgs)
        >>> len(fig.axes)  # 3 rows x 2 samples
        6
        >>> plt.close(fig)
    """
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.5 * n + 0.6, 4.6), squeeze=False)
    for j in range(n):
        h0, h1 = _as_heat(clean[j]), _as_heat(perturbed[j])
        vmax = max(h0.max(), h1.max(), 1e-12)
        axes[0, j].imshow(
            _as_image(images[j]), cmap="gray_r" if np.ndim(_as_image(images[j])) == 2 else None
        )
        axes[1, j].imshow(h0, cmap="magma", vmin=0, vmax=vmax)
        axes[2, j].imshow(h1, cmap="magma", vmin=0, vmax=vmax)
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    for i, lab in enumerate(row_labels):
        axes[i, 0].set_ylabel(lab, fontsize=8)
    fig.tight_layout()
    return fig


def plot_entropy_instability(
    se,
    instability,
    envelope=None,
    rho: float | None = None,
    ax=None,
    xlabel: str = "spectral entropy SE(J_f(x)) [bits]",
    ylabel: str = r"instability $\Delta_{grad}$",
    title: str = "",
) -> Figure:
    """Per-sample scatter of spectral entropy against attribution instability, with the upper
    envelope (``attribution.Envelope``) and the Spearman rho in the title.

    Example:
        >>> from spectral_lab.attribution import spearman, upper_envelope
        >>> rng = np.random.default_rng(0)
        >>> se = rng.uniform(1, 3, 50)
        >>> inst = se + rng.normal(0, 0.1, 50)
        >>> fig = plot_entropy_instability(se, inst, upper_envelope(se, inst, bins=4), rho=spearman(se, inst))
        >>> len(fig.axes[0].lines), "Spearman" in fig.axes[0].get_title()
        (1, True)
        >>> plt.close(fig)
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.scatter(
        np.asarray(se, float),
        np.asarray(instability, float),
        s=8,
        alpha=0.45,
        color=COLORS[0],
        label="samples",
    )
    if envelope is not None:
        ax.plot(
            envelope.centers,
            envelope.upper,
            "o-",
            color=COLORS[3],
            label=f"{int(100 * envelope.q)}% envelope (trend {envelope.trend:+.2f})",
        )
    t = title + (f"  Spearman ρ = {rho:+.2f}" if rho is not None else "")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=t.strip())
    ax.legend(fontsize=8)
    return ax.figure


def attribution_draw(model, x, y=None) -> Callable[..., Figure]:
    """``draw(index, noise, method, seed)`` for :func:`spectral_lab.widgets.attribution_explorer` (testable directly).

    Cost per ``draw``: two attributions of one sample (``smoothgrad`` and ``integrated_gradients``
    take several gradients each). Runs on the device and dtype of the model's parameters; ``x`` must
    already be on them.

    Example:
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> fig = attribution_draw(MLP(16, 3, width=8), torch.rand(2, 16))(index=1, noise=0.1)
        >>> len(fig.axes)  # x, x + delta and their two maps
        4
        >>> plt.close(fig)
    """

    from ..attribution import attribution, cosine_distance, relative_change, topk_overlap

    pred = model(x).argmax(1).detach()

    def draw(index: int = 0, noise: float = 0.05, method: str = "saliency", seed: int = 0):
        xi = x[index : index + 1]
        t = pred[index : index + 1]
        g = torch.Generator(device=x.device).manual_seed(int(seed))
        xp = xi + noise * torch.randn(xi.shape, generator=g, device=x.device, dtype=x.dtype)
        a0 = attribution(model, xi, method, t).detach()
        a1 = attribution(model, xp, method, t).detach()
        h0, h1 = _as_heat(a0[0]), _as_heat(a1[0])
        vmax = max(h0.max(), h1.max(), 1e-12)
        fig, axes = plt.subplots(1, 4, figsize=(9.5, 2.6))
        cmap = "gray_r" if np.ndim(_as_image(xi[0])) == 2 else None
        axes[0].imshow(_as_image(xi[0]), cmap=cmap)
        axes[1].imshow(_as_image(xp[0].clamp(0, 1)), cmap=cmap)
        axes[2].imshow(h0, cmap="magma", vmin=0, vmax=vmax)
        axes[3].imshow(h1, cmap="magma", vmin=0, vmax=vmax)
        lab = "" if y is None else f" (label {int(y[index])})"
        titles = [
            f"x: predicted {int(t)}{lab}",
            f"x + δ, s={noise:g}",
            f"{method}(x)",
            f"{method}(x + δ)",
        ]
        for ax, title in zip(axes, titles):
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
        fig.suptitle(
            f"Δgrad = {float(relative_change(a0, a1)):.3f},  cosine distance = "
            f"{float(cosine_distance(a0, a1)):.3f},  top-10% overlap = "
            f"{float(topk_overlap(a0, a1, 0.1)):.2f}",
            fontsize=9,
        )
        fig.tight_layout()
        return fig

    return draw
