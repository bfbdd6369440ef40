"""Layer factors of models (dense, convolutional, residual blocks) and their exponent profiles: the
diagnostics that "Geometric and Spectral Alignment for Deep Neural Network I" proposes, computed
on the models of :mod:`spectral_lab.models`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._checks import check_model, check_tensor
from .chain import ChainSlack, DepthBudget, _factor_stack, chain_slack, depth_budget
from .fit import power_law_fit
from .rank import _check_tau, energy_quantile_rank


def _residual_blocks(model: nn.Module):
    from ..models import ResidualBlock

    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    if not blocks:
        raise ValueError(
            "model has no ResidualBlock; exponent profiles need a residual chain "
            "(ResidualMLP, ConvResNet or your own model built from ResidualBlock); for other "
            "residual models (torchvision ResNets) use geometry.residual_block_jacobians(model, x) "
            "and pass its .chain() to chain_profile"
        )
    return blocks


def conv_operator_matrix(
    conv: nn.Conv2d, image_size: int, padding: str = "circular"
) -> torch.Tensor:
    """Dense ``(c_out n², c_in n²)`` matrix of a stride-1 'same' conv on ``n × n`` images (no bias).

    ``padding="circular"`` wraps around (its singular values are exactly those of the per-frequency
    FFT blocks, see :func:`circular_conv_singular_values`); ``"zero"`` is the model's own operator.
    Built by applying the conv to the identity basis; cost ``O(c² n⁴ k²)``, memory ``O(c² n⁴)``.
    Runs on the device and dtype of the conv's weight.

    Example:
        >>> conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
        >>> conv_operator_matrix(conv, 4).shape
        torch.Size([48, 32])
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if padding not in ("circular", "zero"):
        raise ValueError(f"padding must be 'circular' or 'zero', got {padding!r}")
    if conv.stride != (1, 1) or conv.groups != 1 or conv.dilation != (1, 1):
        raise ValueError("only stride-1, dilation-1, groups-1 convolutions are supported")
    w = conv.weight
    c_in, n = w.shape[1], int(image_size)
    kh, kw = w.shape[-2:]
    eye = torch.eye(c_in * n * n, dtype=w.dtype, device=w.device).reshape(-1, c_in, n, n)
    ph, pw = kh // 2, kw // 2
    if padding == "circular":
        x = torch.nn.functional.pad(eye, (pw, pw, ph, ph), mode="circular")
        out = torch.nn.functional.conv2d(x, w)
    else:
        out = torch.nn.functional.conv2d(eye, w, padding=(ph, pw))
    return out.reshape(c_in * n * n, -1).T


def circular_conv_singular_values(weight: torch.Tensor, image_size: int) -> torch.Tensor:
    """Exact singular values of a circular 'same' conv on ``n × n`` images via per-frequency FFT.

    The operator is block-diagonalised by the 2-D DFT: for each frequency ``(u, v)`` the
    ``c_out × c_in`` block ``K̂(u,v) = Σ_{i,j} K[:, :, i, j] e^{−2πi(u i + v j)/n}`` (Sedghi, Gupta &
    Long 2019). Returns all ``n² min(c_out, c_in)`` values, descending. Cost ``O(n² c³)``. Runs on
    the device and dtype of ``weight``.

    Example: the FFT values are those of the dense circular operator.
        >>> conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False).double()
        >>> dense = torch.linalg.svdvals(conv_operator_matrix(conv, 4))
        >>> torch.allclose(circular_conv_singular_values(conv.weight, 4), dense)
        True
    """
    w = check_tensor(weight, "weight", min_dim=4)
    n = int(image_size)
    kh, kw = w.shape[-2:]
    if n < max(kh, kw):
        raise ValueError(f"image_size {n} is smaller than the kernel {kh}x{kw}")
    pad = torch.zeros(*w.shape[:2], n, n, dtype=w.dtype, device=w.device)
    # place tap (i, j) at offset (i - kh//2, j - kw//2) modulo n (cross-correlation convention)
    for i in range(kh):
        for j in range(kw):
            pad[:, :, (kh // 2 - i) % n, (kw // 2 - j) % n] = w[:, :, i, j]
    blocks = torch.fft.fft2(pad).permute(2, 3, 0, 1)  # (n, n, c_out, c_in)
    return torch.linalg.svdvals(blocks).flatten().sort(descending=True).values


def _static_factor(block, image_size: int | None, conv_padding: str) -> torch.Tensor:
    lin = [m for m in block.branch.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not lin:
        raise ValueError("a residual branch has no Linear/Conv2d layer; no static factor to build")
    if isinstance(lin[0], nn.Conv2d):
        if image_size is None:
            raise ValueError(
                "conv blocks need image_size (the feature-map side) for static factors"
            )
        mats = [conv_operator_matrix(c, image_size, conv_padding) for c in lin]
    else:
        mats = [m.weight for m in lin]
    w = mats[0]
    for m in mats[1:]:
        w = m @ w
    if w.shape[0] != w.shape[1]:
        raise ValueError(
            f"the branch maps width {w.shape[1]} to {w.shape[0]}; residual factors must be square"
        )
    return torch.eye(w.shape[0], dtype=w.dtype, device=w.device) + block.scale * w


def _block_inputs(model: nn.Module, x: torch.Tensor, blocks) -> list[torch.Tensor]:
    hs: list[torch.Tensor] = []
    hooks = [b.register_forward_pre_hook(lambda m, inp: hs.append(inp[0].detach())) for b in blocks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return hs


def layer_factors(
    model: nn.Module,
    x: torch.Tensor | None = None,
    kind: str = "static",
    conv_padding: str = "circular",
) -> torch.Tensor:
    """Layer factors ``A_l`` of every ``ResidualBlock`` ``h ↦ h + scale · branch(h)`` of ``model``.

    * ``kind="static"`` (weights only, ``(L, d, d)``) [C]: ``I + scale · W`` for a one-matrix
      branch, the surrogate ``I + scale · W_2 W_1`` for a two-matrix branch; for conv branches
      ``W`` is the dense operator matrix of the conv on the block's feature map, with
      ``conv_padding="circular"`` (default; its singular values are exactly the per-frequency FFT
      ones of :func:`circular_conv_singular_values`) or ``"zero"`` (the model's own padding).
      Biases and activations are ignored: diagnostics only, as the paper says.
    * ``kind="jacobian"`` (data-dependent, ``(N, L, d, d)``) [P]: ``A_l(x) = I + scale ·
      ∂branch/∂h (h_l(x))`` at the block's actual input ``h_l(x)`` — the true factors of the
      end-to-end Jacobian chain. Computed with ``torch.func.jacrev`` + ``vmap`` (no sample loop).

    ``d`` is the residual width (MLP) or ``channels · n²`` (conv). Cost: static ``O(L d²)`` (plus
    the conv matrices), Jacobian ``O(N L d)`` backward passes, memory ``O(N L d²)``. Runs on the
    device and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab.models import ResidualMLP
        >>> _ = torch.manual_seed(0)
        >>> m = ResidualMLP(4, 3, width=6, depth=3).double()  # float32 inputs are cast
        >>> f = layer_factors(m, torch.randn(2, 4), kind="jacobian")
        >>> layer_factors(m).shape, f.shape, f.dtype
        (torch.Size([3, 6, 6]), torch.Size([2, 3, 6, 6]), torch.float64)
    """
    check_model(model)
    if kind not in ("static", "jacobian"):
        raise ValueError(f"kind must be 'static' or 'jacobian', got {kind!r}")
    blocks = _residual_blocks(model)
    if kind == "static":
        image_size = None
        if any(isinstance(m, nn.Conv2d) for b in blocks for m in b.branch.modules()):
            if x is None:
                raise ValueError(
                    "conv blocks need the feature-map size: pass an input x (one sample is enough)"
                )
            else:
                x1 = check_tensor(x[:1], "x", min_dim=2).to(next(model.parameters()))
                image_size = _block_inputs(model, x1, blocks)[0].shape[-1]
        with torch.no_grad():
            return torch.stack([_static_factor(b, image_size, conv_padding) for b in blocks])
    if x is None:
        raise ValueError("kind='jacobian' needs inputs x at which to evaluate the factors")
    x = check_tensor(x, "x", min_dim=2).to(next(model.parameters()))
    hs = _block_inputs(model, x, blocks)
    from torch.func import functional_call, jacrev, vmap

    out = []
    for b, h in zip(blocks, hs):
        params = {k: v.detach() for k, v in b.branch.named_parameters()}
        shape = h.shape[1:]

        def f(v, b=b, params=params, shape=shape):
            return functional_call(b.branch, params, (v.reshape(1, *shape),)).reshape(-1)

        j = vmap(jacrev(f))(h.reshape(len(h), -1))
        eye = torch.eye(j.shape[-1], dtype=j.dtype, device=j.device)
        out.append(eye + b.scale * j)
    return torch.stack(out, 1)


@dataclass(frozen=True)
class ExponentProfile:
    """Per-layer exponent, fit quality and effective rank along depth, plus the chain's budget.

    For Jacobian factors the per-layer arrays are means over the samples and ``per_sample`` holds
    one profile per input (each with its own chain, slack and budget). Built by
    :func:`chain_profile` and :func:`exponent_profile` (see there for an example).
    """

    kind: str
    alpha: np.ndarray  # chart exponent per layer (ML by default)
    alpha_ls: np.ndarray
    r: np.ndarray  # top radial r_l
    rho: np.ndarray  # signed top-radial residual
    res_hel: np.ndarray
    ls_r2: np.ndarray
    k_tau: np.ndarray
    power_law: np.ndarray  # verdict per layer (fraction of samples for Jacobian factors)
    d: int
    tau: float
    slack: ChainSlack | None
    budget: DepthBudget | None
    fits: tuple = field(default=(), repr=False)
    per_sample: tuple = field(default=(), repr=False)

    @property
    def L(self) -> int:
        return int(self.alpha.size)

    @property
    def holds(self) -> bool:
        """:attr:`DepthBudget.holds` for the chain (every sample's chain).

        True by construction for any data when the code is right (see :class:`DepthBudget`): a
        check of the implementation, not a finding about the model.
        """
        if self.per_sample:
            return all(p.holds for p in self.per_sample)
        return self.budget is None or self.budget.holds

    def __repr__(self) -> str:
        s = f", S={self.slack.total_slack:.3g}" if self.slack is not None else ""
        b = (
            f", max drift={np.max(self.budget.drift):.3g}, (log M)/L={self.budget.budget:.3g}"
            if self.budget
            else ""
        )
        n = f", samples={len(self.per_sample)}" if self.per_sample else ""
        return (
            f"ExponentProfile({self.kind}, L={self.L}, d={self.d}, alpha in "
            f"[{self.alpha.min():.3g}, {self.alpha.max():.3g}], mean res_hel={self.res_hel.mean():.3g}, "
            f"k_{self.tau:g} mean={self.k_tau.mean():.3g}{s}{b}{n}, holds={self.holds})"
        )


def chain_profile(
    factors,
    kind: str = "static",
    trace: str = "d",
    tau: float = 0.9,
    chart: str = "mle",
    window=None,
) -> ExponentProfile:
    """Exponent profile of one chain of square factors ``(L, d, d)`` (``A_1`` first).

    Per layer: eigenvalues of ``A_lᵀA_l`` (symmetric eigensolve), :func:`power_law_fit` (exponent by ``chart``, ML by
    default), ``k_τ``; per chain: :func:`chain_slack` and :func:`depth_budget` (which always uses
    the ML exponents, the chart for which ``ρ`` is defined). The budget is ``None`` when a factor is
    numerically rank-deficient: its fit then lives on the orbit of its rank while ``r_l`` (from
    the whole factor) uses the ambient ``d``, and the two cannot be combined. Cost ``O(L d³)``.
    Factors are taken to float64 (on their device).

    Example: three copies of an exact orbit point have exponent ``α`` and zero drift.
        >>> from spectral_lab.geometry import power_law_spectrum
        >>> a = torch.diag(torch.tensor(power_law_spectrum(1.0, 8)).sqrt())
        >>> prof = chain_profile(torch.stack([a, a, a]))
        >>> prof.alpha.round(6).tolist(), prof.holds
        ([1.0, 1.0, 1.0], True)
    """
    f = _factor_stack(factors)
    if f.dim() != 3:
        raise ValueError(f"factors must have shape (L, d, d), got {tuple(f.shape)}")
    tau = _check_tau(tau)
    f64 = f.detach().to(torch.float64)
    # eigenvalues of AᵀA (= σ², unnormalised): a symmetric eigensolve is much cheaper than an SVD
    sv = torch.linalg.eigvalsh(f64.transpose(-1, -2) @ f64).flip(-1).clamp_min(0).cpu().numpy()
    fits = tuple(power_law_fit(s, "eigen", window=window, chart=chart) for s in sv)
    sl = chain_slack(f.detach(), trace)
    d = f.shape[-1]
    a_mle = np.array([ft.alpha_mle for ft in fits])
    dims = {ft.d for ft in fits}
    budget = (
        depth_budget(a_mle, sl.r, d, sl.log_sigma_chain, sl.total_slack)
        if len(fits) >= 2 and dims == {d}
        else None
    )
    return ExponentProfile(
        kind=kind,
        alpha=np.array([ft.alpha for ft in fits]),
        alpha_ls=np.array([ft.alpha_ls for ft in fits]),
        r=sl.r,
        rho=np.array([ft.rho for ft in fits]),
        res_hel=np.array([ft.res_hel for ft in fits]),
        ls_r2=np.array([ft.ls_r2 for ft in fits]),
        k_tau=np.array([energy_quantile_rank(s, tau, kind="eigen") for s in sv]),
        power_law=np.array([ft.is_power_law for ft in fits], dtype=float),
        d=d,
        tau=tau,
        slack=sl,
        budget=budget,
        fits=fits,
    )


def exponent_profile(
    model: nn.Module,
    x: torch.Tensor | None = None,
    kind: str = "static",
    trace: str = "d",
    tau: float = 0.9,
    chart: str = "mle",
    window=None,
    conv_padding: str = "circular",
) -> ExponentProfile:
    """Exponent profile along depth of a residual model (``ResidualMLP``, ``ConvResNet``, ...).

    ``kind="static"``: weights-only factors (diagnostics only [P]); ``kind="jacobian"``: the
    data-dependent factors ``I + scale · ∂branch/∂h`` at each row of ``x`` (one chain per sample,
    per-layer means reported). See :func:`layer_factors` and :func:`chain_profile`. Cost: that of
    :func:`layer_factors` plus ``O(L d³)`` per chain. Runs on the device and dtype of the model's
    parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab.models import ResidualMLP
        >>> prof = exponent_profile(ResidualMLP(8, 3, width=16, depth=4))
        >>> prof.alpha.shape
        (4,)
    """
    f = layer_factors(model, x, kind, conv_padding)
    if kind == "static":
        return chain_profile(f, "static", trace, tau, chart, window)
    profs = tuple(chain_profile(fi, "jacobian", trace, tau, chart, window) for fi in f)
    mean = lambda name: np.mean([getattr(p, name) for p in profs], axis=0)  # noqa: E731
    return ExponentProfile(
        kind="jacobian",
        alpha=mean("alpha"),
        alpha_ls=mean("alpha_ls"),
        r=mean("r"),
        rho=mean("rho"),
        res_hel=mean("res_hel"),
        ls_r2=mean("ls_r2"),
        k_tau=mean("k_tau"),
        power_law=mean("power_law"),
        d=profs[0].d,
        tau=float(tau),
        slack=None,
        budget=None,
        per_sample=profs,
    )
