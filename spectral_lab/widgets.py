"""ipywidgets explorers used by the chapters.

Each explorer is a plain function ``draw(**values) -> Figure`` wrapped by :func:`explorer`, so
tests can call the drawing logic directly without a kernel or a browser.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch


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


# --- chapters 01-02 -----------------------------------------------------------------------------


def depth_spectra_draw(x, num_classes: int = 10, seed: int = 0):
    """The drawing function of :func:`depth_spectra_explorer` (testable without a kernel).

    ``draw(gain, width, depth, activation, normalize)`` builds a random float64 MLP with those
    knobs, takes the operator product at ``x[0]`` and plots the singular values of every partial
    product after each weight, plus ``sigma_1`` and ``sigma_1/sigma_r`` against depth.
    """
    from .models import MLP
    from .operators import operator_product
    from .plots import plot_depth_spectra, plot_depth_summary

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


def depth_spectra_explorer(x, num_classes: int = 10, seed: int = 0):
    """Sliders for initialisation gain, width, depth and activation; redraws the spectra of the
    partial products ``W_l D_{l-1} ... W_1`` at the first input of ``x`` (chapter 01)."""
    import ipywidgets as w

    draw = depth_spectra_draw(x, num_classes, seed)
    return explorer(
        draw,
        gain=w.FloatLogSlider(value=1.0, base=2, min=-2, max=2, step=0.25, description="gain"),
        width=w.IntSlider(64, 8, 256, 8, description="width"),
        depth=w.IntSlider(4, 1, 12, 1, description="depth"),
        activation=w.Dropdown(
            options=["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu", "identity"],
            value="tanh",
            description="activation",
        ),
        normalize=w.Checkbox(False, description=r"divide by sigma_1"),
    )


def entropy_draw(J, eps: float = 0.1):
    """The drawing function of :func:`entropy_explorer` (testable without a kernel).

    ``draw(index, t, base)``: the spectrum of ``J[index]`` flattened toward uniform by ``t``
    (energy mix ``(1 - t) p + t/k``, same Frobenius norm, :func:`spectral_lab.mix_toward_uniform`);
    left: the singular values; right: the energy distribution ``p`` with SE (in the chosen base),
    srank, erank, both condition numbers and the typical / entropy / worst-case sensitivities.
    """
    from .bounds import mix_toward_uniform
    from .spectra import (
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


def entropy_explorer(J, eps: float = 0.1):
    """Pick a Jacobian, flatten its spectrum with a slider, watch SE, ranks, condition numbers and
    the sensitivity bounds move (chapter 02)."""
    import ipywidgets as w

    draw = entropy_draw(J, eps)
    return explorer(
        draw,
        index=w.IntSlider(0, 0, len(J) - 1, 1, description="sample"),
        t=w.FloatSlider(0.0, min=0.0, max=1.0, step=0.05, description="flatten t"),
        base=w.Dropdown(options=["e", "2"], value="e", description="log base"),
    )


# --------------------------------------------------------------------------- chapters 06-07
def attribution_draw(model, x, y=None):
    """``draw(index, noise, method, seed)`` for :func:`attribution_explorer` (testable directly)."""
    import numpy as np

    from .attribution import attribution, cosine_distance, relative_change, topk_overlap
    from .plots import _as_heat, _as_image

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


def attribution_explorer(model, x, y=None):
    """Pick a sample, a noise scale and an attribution method; see the clean and perturbed maps."""
    import ipywidgets as w

    from .attribution import METHODS

    return explorer(
        attribution_draw(model, x, y),
        index=w.IntSlider(0, 0, len(x) - 1, 1, description="sample"),
        noise=w.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.1, description="noise s"),
        method=w.Dropdown(options=list(METHODS), value="saliency", description="method"),
        seed=w.IntSlider(0, 0, 9, 1, description="noise seed"),
    )


def study_draw(sweep: dict):
    """``draw(strength, scale)`` for :func:`study_explorer`: spectra tails and the metric ratios of
    the study at one regularisation strength (``sweep``: strength -> ``StudyResult``)."""
    from .plots import plot_spectrum_tails, plot_study_comparison

    def draw(strength: float, scale: float | None = None):
        res = sweep[strength]
        sc = res.config.scales[len(res.config.scales) // 2] if scale is None else scale
        fig, (a0, a1) = plt.subplots(
            1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1.5]}
        )
        seed = res.config.seeds[0]
        plot_spectrum_tails(
            res.record("standard", seed)["sigma"].numpy(),
            res.record("stable", seed)["sigma"].numpy(),
            ax=a0,
            title=f"λ={strength:g}: σ_k/σ_1 (seed {seed})",
        )
        plot_study_comparison(
            res,
            [
                ("accuracy", None),
                ("SE", None),
                ("ACN", None),
                ("sigma1", None),
                ("FD", sc),
                ("FD_shape", sc),
                ("delta_grad", sc),
            ],
            ax=a1,
            title=f"stable / standard at λ={strength:g}, s={sc:g}",
        )
        fig.tight_layout()
        return fig

    return draw


def study_explorer(sweep: dict):
    """A slider over the regularisation strengths of a sweep (see :func:`study_draw`)."""
    import ipywidgets as w

    strengths = sorted(sweep)
    scales = list(next(iter(sweep.values())).config.scales)
    return explorer(
        study_draw(sweep),
        strength=w.SelectionSlider(
            options=strengths, value=strengths[len(strengths) // 2], description="strength λ"
        ),
        scale=w.Dropdown(options=scales, value=scales[len(scales) // 2], description="noise s"),
    )


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
        a1.plot(gd_losses(model, data, eta, steps, loss=loss_fn).numpy())
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
