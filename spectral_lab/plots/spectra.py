"""Singular-value spectra: of Jacobians, through the depth of an operator product, and the
sensitivity bounds they give."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ._style import COLORS, to_numpy


def plot_spectra(
    spectra,
    ax=None,
    labels: Sequence[str] | None = None,
    normalize: bool = False,
    title: str = "singular values",
) -> Figure:
    """Rank-ordered singular values, one line per row of ``spectra`` (log scale).

    Example:
        >>> fig = plot_spectra(torch.tensor([[4.0, 2.0, 1.0]]), normalize=True)
        >>> np.asarray(fig.axes[0].lines[0].get_ydata()).tolist()  # sigma_k / sigma_1
        [1.0, 0.5, 0.25]
        >>> plt.close(fig)
    """
    s = np.atleast_2d(to_numpy(spectra))
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.4))
    if normalize:
        s = s / s[:, :1]
    ranks = np.arange(1, s.shape[1] + 1)
    for i, row in enumerate(s):
        ax.plot(ranks, row, "o-", ms=3, label=None if labels is None else labels[i])
    ax.set(
        xlabel="rank k",
        ylabel=r"$\sigma_k / \sigma_1$" if normalize else r"$\sigma_k$",
        yscale="log",
        title=title,
    )
    if labels is not None:
        ax.legend()
    return ax.figure


def plot_depth_spectra(
    partial_spectra, ax=None, normalize: bool = False, title: str = ""
) -> Figure:
    """Singular values of the partial products ``F_k ... F_1`` through depth.

    ``partial_spectra`` is ``[(name, s), ...]`` from ``OperatorProduct.partial_spectra``; one line
    per partial product, coloured from dark (shallow) to light (deep), log scale. Singular values
    below ``1e-12 sigma_1`` (numerical zeros of a rank-deficient product) are left out.

    Example:
        >>> fig = plot_depth_spectra([("W1", torch.tensor([2.0, 1.0])), ("W2", torch.tensor([3.0, 1.0, 0.0]))])
        >>> [np.asarray(line.get_ydata()).tolist() for line in fig.axes[0].lines]  # the zero is left out
        [[2.0, 1.0], [3.0, 1.0]]
        >>> plt.close(fig)
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
    n = len(partial_spectra)
    cmap = plt.get_cmap("viridis")
    for i, (name, s) in enumerate(partial_spectra):
        s = np.asarray(s.detach().cpu() if hasattr(s, "detach") else s, dtype=float)
        s = s[s > s[0] * 1e-12]  # numerical zeros (rank-deficient products) are not drawn
        if normalize:
            s = s / s[0]
        ax.plot(np.arange(1, len(s) + 1), s, color=cmap(i / max(1, n - 1)), lw=1.4, label=name)
    ax.set(
        xlabel="rank k",
        ylabel=r"$\sigma_k / \sigma_1$" if normalize else r"$\sigma_k$",
        yscale="log",
        xscale="log",
        title=title or "singular values of the partial products",
    )
    if n <= 10:
        ax.legend(ncol=2, fontsize=8)
    return ax.figure


def plot_depth_summary(
    names, values, ax=None, ylabel: str = "", title: str = "", label=None
) -> Figure:
    """One number per partial product (e.g. sigma_1, condition number) against depth.

    Example:
        >>> fig = plot_depth_summary(["W1", "W2"], [1.0, 3.0], ylabel="sigma_1")
        >>> np.asarray(fig.axes[0].lines[0].get_ydata()).tolist()
        [1.0, 3.0]
        >>> plt.close(fig)
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(range(len(names)), values, "o-", ms=4, label=label)
    ax.set_xticks(range(len(names)), names, rotation=90 if len(names) > 12 else 0, fontsize=8)
    ax.set(xlabel="partial product up to factor", ylabel=ylabel, yscale="log", title=title)
    if label is not None:
        ax.legend()
    return ax.figure


def plot_gates(gates, ax=None, title: str = "gates D_l(x): which units are on") -> Figure:
    """Gate diagonals ``phi'(z_l(x))`` as an image: rows = inputs, columns = units.

    Example:
        >>> fig = plot_gates(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
        >>> len(fig.axes), float(fig.axes[0].images[0].get_array().sum())  # the image and its colour bar
        (2, 3.0)
        >>> plt.close(fig)
    """
    g = np.asarray(gates.detach().cpu() if hasattr(gates, "detach") else gates, dtype=float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 2.6))
    im = ax.imshow(g, aspect="auto", cmap="magma", vmin=0, interpolation="nearest")
    ax.set(xlabel="hidden unit", ylabel="input", title=title)
    ax.grid(False)
    ax.figure.colorbar(im, ax=ax, label=r"$\phi'(z)$")
    return ax.figure


def plot_sensitivity_bounds(bounds, monte_carlo=None, ax=None, title: str = "") -> Figure:
    """Per sample: Monte-Carlo mean squared change, typical ``eps^2||J||_F^2/d``, entropy bound
    ``K eps^2 exp(SE)``, rank bound and worst case ``eps^2 sigma_1^2`` (log scale).

    ``bounds`` is a :class:`~spectral_lab.sensitivity.SensitivityBounds`; ``monte_carlo`` the
    measured mean squared change per sample (optional).

    Example:
        >>> from spectral_lab.sensitivity import sensitivity_bounds
        >>> b = sensitivity_bounds(torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0)), eps=0.1)
        >>> fig = plot_sensitivity_bounds(b)
        >>> len(fig.axes[0].lines)  # worst case, rank bound, entropy bound, typical
        4
        >>> plt.close(fig)
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.4))
    n = len(bounds.typical)
    idx = np.arange(n)
    rows = [
        ("worst case $\\epsilon^2\\sigma_1^2$", bounds.worst_case, "v", COLORS[3]),
        ("rank bound", bounds.rank_bound, "s", COLORS[5]),
        ("entropy bound $K\\epsilon^2 e^{SE}$", bounds.entropy_bound, "^", COLORS[1]),
        ("typical $\\epsilon^2\\|J\\|_F^2/d$", bounds.typical, "o", COLORS[0]),
    ]
    for label, v, marker, color in rows:
        ax.plot(idx, np.asarray(v.detach().cpu(), float), marker, color=color, ms=5, label=label)
    if monte_carlo is not None:
        mc = np.asarray(monte_carlo.detach().cpu(), float)
        ax.plot(idx, mc, "x", color="k", ms=6, label="Monte Carlo")
    ax.set(xlabel="sample", ylabel=r"$\|\Delta f\|^2$", yscale="log", title=title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return ax.figure


def jacobian_spectrum_draw(model, x, y=None) -> Callable[..., Figure]:
    """The drawing function of :func:`spectral_lab.widgets.jacobian_spectrum_explorer` (testable without a kernel).

    Pick a sample with a slider; see the input and its Jacobian's singular values.

    Cost: one input Jacobian per sample of ``x``, once (``draw`` only plots). Runs on the device and
    dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> fig = jacobian_spectrum_draw(MLP(6, 3, width=8), torch.randn(4, 6))(index=1)
        >>> len(fig.axes[1].lines)  # 4 samples in grey, then the chosen one in blue
        5
        >>> plt.close(fig)
    """
    from ..jacobians import input_jacobian
    from ..spectra import singular_values

    s = singular_values(input_jacobian(model, x)).detach().cpu()
    pred = model(x).argmax(1).cpu()

    def draw(index: int = 0):
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(7.5, 3), gridspec_kw={"width_ratios": [1, 2]})
        img = x[index].detach().cpu()
        if img.dim() == 3 and img.shape[0] in (1, 3):
            a0.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
        else:
            a0.plot(img.flatten().numpy())
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

    return draw


def depth_spectra_draw(x, num_classes: int = 10, seed: int = 0) -> Callable[..., Figure]:
    """The drawing function of :func:`spectral_lab.widgets.depth_spectra_explorer` (testable without a kernel).

    ``draw(gain, width, depth, activation, normalize)`` builds a random float64 MLP with those
    knobs, takes the operator product at ``x[0]`` and plots the singular values of every partial
    product after each weight, plus ``sigma_1`` and ``sigma_1/sigma_r`` against depth.

    Cost per ``draw``: the SVD of each partial product (``depth + 1`` matrices of at most
    ``width x d``). Runs in float64 on the CPU.

    Example:
        >>> fig = depth_spectra_draw(torch.randn(2, 5), num_classes=3)(width=8, depth=2)
        >>> len(fig.axes), len(fig.axes[0].lines)  # one line per weight (two Linear layers)
        (2, 2)
        >>> plt.close(fig)
    """
    from ..models import MLP
    from ..operators import operator_product

    x0 = x[0].detach().to(torch.float64).cpu()
    d = x0.numel()

    def draw(
        gain: float = 1.0,
        width: int = 64,
        depth: int = 4,
        activation: str = "tanh",
        normalize: bool = False,
    ):
        torch.manual_seed(seed)
        model = MLP(
            d,
            num_classes,
            width=int(width),
            depth=int(depth),
            activation=activation,
            gain=float(gain),
        ).double()
        op = operator_product(model, x0)
        sp = op.partial_spectra(kinds=("weight",))
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.6))
        plot_depth_spectra(
            sp,
            ax=a0,
            normalize=normalize,
            title=f"{activation}, gain {gain:g}, width {width}, depth {depth}",
        )
        names = [n for n, _ in sp]
        top = [float(s[0]) for _, s in sp]
        cond = [float(s[0] / s[s > s[0] * 1e-12][-1]) for _, s in sp]
        plot_depth_summary(names, top, ax=a1, label=r"$\sigma_1$")
        plot_depth_summary(
            names, cond, ax=a1, label=r"$\sigma_1/\sigma_r$", ylabel="value", title="through depth"
        )
        fig.tight_layout()
        return fig

    return draw


def entropy_draw(J, eps: float = 0.1) -> Callable[..., Figure]:
    """The drawing function of :func:`spectral_lab.widgets.entropy_explorer` (testable without a kernel).

    ``draw(index, t, base)``: the spectrum of ``J[index]`` flattened toward uniform by ``t``
    (energy mix ``(1 - t) p + t/k``, same Frobenius norm, :func:`spectral_lab.sensitivity.mix_toward_uniform`);
    left: the singular values; right: the energy distribution ``p`` with SE (in the chosen base),
    srank, erank, both condition numbers and the typical / entropy / worst-case sensitivities.

    Cost: one SVD per matrix of ``J``, once. Runs in float64 on the CPU.

    Example: at ``t = 1`` the energy distribution is uniform.
        >>> J = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0))
        >>> fig = entropy_draw(J)(index=0, t=1.0)
        >>> np.allclose([b.get_height() for b in fig.axes[1].patches], 1 / 3)
        True
        >>> plt.close(fig)
    """
    from ..sensitivity import mix_toward_uniform
    from ..spectra import (
        condition_number,
        effective_rank,
        singular_values,
        spectral_distribution,
        spectral_entropy,
        stable_rank,
    )

    S = singular_values(J.detach()).cpu().double()
    d = J.shape[-1]

    def draw(index: int = 0, t: float = 0.0, base: str = "e"):
        s0 = S[int(index)]
        s = mix_toward_uniform(s0, float(t))
        kw = {"kind": "singular"}
        p = spectral_distribution(s, **kw).numpy()
        se = float(spectral_entropy(s, base=2 if base == "2" else "e", **kw))
        sr, er = float(stable_rank(s, **kw)), float(effective_rank(s, **kw))
        k_cl, k_med = float(condition_number(s, **kw)), float(condition_number(s, "median", **kw))
        s1sq = float(s[0] ** 2)
        typ, ent, worst = eps**2 * float((s**2).sum()) / d, eps**2 * s1sq * er / d, eps**2 * s1sq
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.4))
        ks = range(1, len(s) + 1)
        a0.semilogy(ks, s0.numpy(), "o--", color="0.6", label="original")
        a0.semilogy(ks, s.numpy(), "o-", label=f"flattened, t={float(t):.2f}")
        a0.set(xlabel="rank k", ylabel=r"$\sigma_k$", title=f"sample {int(index)}")
        a0.legend()
        a1.bar(ks, p)
        unit = "bits" if base == "2" else "nats"
        a1.set(
            xlabel="rank k",
            ylabel=r"$p_k=\sigma_k^2/\sum\sigma^2$",
            title=f"SE={se:.3f} {unit}, srank={sr:.2f}, erank={er:.2f}",
        )
        a1.text(
            0.98,
            0.95,
            f"cond {k_cl:.3g}, cond_median {k_med:.3g}\n"
            f"typical {typ:.3g} <= entropy bound {ent:.3g}\n<= worst case {worst:.3g}"
            f"  (eps={eps:g})",
            transform=a1.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
        fig.tight_layout()
        return fig

    return draw
