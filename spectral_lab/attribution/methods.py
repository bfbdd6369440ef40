"""Attribution (saliency) maps, their stability under input noise, and distances between them.

The attribution of a classifier ``f: R^d -> R^C`` at ``x`` for class ``c`` is the vanilla gradient
(saliency)

    a(x) = grad_x f_c(x) = J_f(x)^T e_c,      c = c(x) = argmax_k f_k(x) unless given,

i.e. one row of the input Jacobian. Variants: gradient x input ``x * a(x)``, SmoothGrad
``E_eps a(x + eps)`` (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise"),
integrated gradients ``(x - x0) * int_0^1 a(x0 + t (x - x0)) dt`` (Sundararajan, Taly & Yan 2017,
"Axiomatic Attribution for Deep Networks").

Every attribution here is *batched autograd*: one forward pass over the whole batch and one backward
pass of ``sum_n f_{c_n}(x_n)``. Samples do not interact in eval mode, so that single backward pass
returns every sample's gradient at once (no Python loop over samples).

Instability metrics. "A Unified Matrix-Spectral Framework for Stability and Interpretability in
Deep Learning" (Katende 2026) names Delta_grad, the Fréchet distance and the attribution condition
number; the exact definitions below are this library's choices:

* relative change ``Delta_grad(x, delta) = ||a(x+delta) - a(x)|| / (||a(x)|| + 1e-12)``,
* cosine distance ``1 - cos(a(x+delta), a(x))``,
* top-k overlap ``|top_k|a(x)| ∩ top_k|a(x+delta)|| / k`` (1 = same most important features),
* the attribution condition number ``kappa_attr(x) = sigma_1(J_f(x)) / median_k sigma_k(J_f(x))``,
* the Fréchet distance between the Gaussians fitted to the clean and perturbed attribution clouds.

Example:
    >>> from spectral_lab import MLP
    >>> model = MLP(4, 3, width=8).eval()
    >>> saliency(model, torch.randn(5, 4)).shape
    torch.Size([5, 4])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ._checks import check_logits, check_model, check_tensor, model_dtype_device
from ._deprecate import renamed_kwargs
from ._random import resolve_generator
from ._results import Result

METHODS = ("saliency", "grad_x_input", "smoothgrad", "integrated_gradients")


# --------------------------------------------------------------------------- attributions
def _targets(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """Class index per sample: the model's prediction at ``x`` when ``target`` is None."""
    if target is None:
        with torch.no_grad():
            return check_logits(model(x)).argmax(1)
    if isinstance(target, int):
        return torch.full((len(x),), target, dtype=torch.long, device=x.device)
    if not isinstance(target, torch.Tensor) or target.dtype not in (torch.int32, torch.int64):
        raise TypeError("target must be None, an int or an integer tensor of shape (N,)")
    if target.shape != (len(x),):
        raise ValueError(
            f"target must have shape ({len(x)},) to match x, got {tuple(target.shape)}"
        )
    return target.to(x.device).long()


def _check_inputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    check_model(model)
    dtype, device = model_dtype_device(model)
    return check_tensor(x, "x", min_dim=2).to(device=device, dtype=dtype)


def _grad_of_class(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, create_graph: bool = False
) -> torch.Tensor:
    """``grad_x f_{target_n}(x_n)`` for every row: one forward + one backward pass."""
    xg = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = check_logits(model(xg))
        c = out.shape[1]
        if int(target.max()) >= c or int(target.min()) < 0:
            raise ValueError(f"target holds a class outside 0..{c - 1}")
        sel = out.gather(1, target[:, None]).sum()
        (g,) = torch.autograd.grad(sel, xg, create_graph=create_graph)
    return g


def saliency(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor | None = None,
    *,
    create_graph: bool = False,
) -> torch.Tensor:
    """Vanilla gradient ``a(x) = grad_x f_c(x) = J_f(x)^T e_c``, same shape as ``x``.

    ``target``: None (the predicted class at ``x``), an int, or a class per sample ``(N,)``.
    ``create_graph=True`` keeps the graph (for double back-prop / input-gradient penalties).
    Cost: one forward and one backward pass over the batch. Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: for a linear model ``f(x) = W x + b`` the saliency of class ``c`` is ``W[c]``.
        >>> lin = torch.nn.Linear(4, 3)
        >>> a = saliency(lin, torch.randn(5, 4), target=2)
        >>> torch.allclose(a, lin.weight[2].expand(5, 4))
        True
    """
    x = _check_inputs(model, x)
    return _grad_of_class(model, x, _targets(model, x, target), create_graph)


def gradient_x_input(
    model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Gradient x input ``x ⊙ grad_x f_c(x)``, same shape as ``x``.

    Cost: one forward and one backward pass, as :func:`saliency`. Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: for a linear model the attributions of class ``c`` sum to ``f_c(x) - b_c``.
        >>> lin, x = torch.nn.Linear(4, 3), torch.randn(5, 4)
        >>> a = gradient_x_input(lin, x, target=1)
        >>> torch.allclose(a.sum(1), lin(x)[:, 1] - lin.bias[1], atol=1e-6)
        True
    """
    x = _check_inputs(model, x)
    return x * _grad_of_class(model, x, _targets(model, x, target))


@renamed_kwargs(n_samples="num_draws")
def smoothgrad(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor | None = None,
    *,
    sigma: float = 0.1,
    num_draws: int = 16,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """SmoothGrad ``(1/m) sum_j grad_x f_c(x + eps_j)``, ``eps_j ~ N(0, sigma^2 I)``, ``m = num_draws``.

    The class ``c`` is fixed at the clean prediction (or ``target``). All ``m`` noisy copies of the
    batch go through one backward pass (chunked over copies by ``chunk_size`` to bound memory).
    Noise comes from ``generator`` or ``seed`` (default 0). Cost: ``m`` forward/backward passes'
    worth of work on ``N`` samples. Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: a linear model has the same gradient everywhere, so SmoothGrad equals saliency.
        >>> lin = torch.nn.Linear(4, 3)
        >>> x = torch.randn(5, 4)
        >>> torch.allclose(smoothgrad(lin, x, target=0, num_draws=4), saliency(lin, x, target=0))
        True
    """
    x = _check_inputs(model, x)
    if num_draws < 1 or sigma < 0:
        raise ValueError(f"need num_draws >= 1 and sigma >= 0, got {num_draws}, {sigma}")
    t = _targets(model, x, target)
    g = resolve_generator(generator, seed, x.device)
    noise = torch.randn((num_draws, *x.shape), generator=g, device=x.device, dtype=x.dtype)
    return _mean_grad_over_copies(model, x[None] + sigma * noise, t, chunk_size)


def _mean_grad_over_copies(model, xs: torch.Tensor, t: torch.Tensor, chunk_size) -> torch.Tensor:
    """Mean over the leading axis of gradients at ``xs`` (m, N, ...), chunked over copies."""
    m, n = xs.shape[:2]
    step = m if chunk_size is None else max(1, int(chunk_size) // max(n, 1))
    total = torch.zeros_like(xs[0])
    for i in range(0, m, step):  # loop over chunks of copies, not over samples
        block = xs[i : i + step]
        k = len(block)
        grads = _grad_of_class(model, block.reshape(k * n, *xs.shape[2:]), t.repeat(k))
        total += grads.reshape(k, n, *xs.shape[2:]).sum(0)
    return total / m


@renamed_kwargs(steps="num_steps")
def integrated_gradients(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor | None = None,
    *,
    baseline: torch.Tensor | float = 0.0,
    num_steps: int = 32,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Integrated gradients ``(x - x0) ⊙ (1/S) sum_s grad f_c(x0 + t_s (x - x0))``, ``S = num_steps``.

    Midpoint rule ``t_s = (s + 1/2)/S``; completeness ``sum_i IG_i ≈ f_c(x) - f_c(x0)`` holds
    in the limit ``S -> inf`` and exactly for linear models at any ``S``.
    ``baseline`` is a tensor broadcastable to ``x`` or a constant (default black image, 0).
    Cost: ``S`` forward/backward passes' worth of work on ``N`` samples. Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: completeness on a small network, to the accuracy of the midpoint rule.
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> model = MLP(4, 3, width=8).eval().double()
        >>> x = torch.randn(2, 4, dtype=torch.float64)
        >>> ig = integrated_gradients(model, x, target=1, num_steps=256)
        >>> gap = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
        >>> bool((ig.sum(1) - gap).abs().max() < 1e-3)
        True
    """
    x = _check_inputs(model, x)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    x0 = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    t = _targets(model, x, target)
    alphas = (torch.arange(num_steps, dtype=x.dtype, device=x.device) + 0.5) / num_steps
    path = x0[None] + alphas.view(-1, *([1] * x.dim())) * (x - x0)[None]
    return (x - x0) * _mean_grad_over_copies(model, path, t, chunk_size)


def attribution(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "saliency",
    target: int | torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """Dispatch to one of ``METHODS`` (``saliency``, ``grad_x_input``, ``smoothgrad``,
    ``integrated_gradients``); extra keyword arguments go to that method.

    Cost: that of the method. Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> lin = torch.nn.Linear(4, 3)
        >>> x = torch.randn(2, 4)
        >>> torch.equal(attribution(lin, x, "saliency", 0), saliency(lin, x, 0))
        True
    """
    fns = {
        "saliency": saliency,
        "grad_x_input": gradient_x_input,
        "smoothgrad": smoothgrad,
        "integrated_gradients": integrated_gradients,
    }
    if method not in fns:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return fns[method](model, x, target, **kwargs)


# --------------------------------------------------------------------------- per-sample metrics
def _flat_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = check_tensor(a, "a", min_dim=1)
    b = check_tensor(b, "b", min_dim=1)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dim() == 1:
        a, b = a[None], b[None]
    return a.flatten(1), b.flatten(1)


def relative_change(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``Delta_grad = ||b - a|| / (||a|| + eps)`` per sample (rows; ``a`` = clean attribution).

    Cost: ``O(N d)``. Runs on the device and dtype of its inputs.

    Example:
        >>> relative_change(torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 5.0]]))
        tensor([0.2000])
    """
    a, b = _flat_pair(a, b)
    return (b - a).norm(dim=1) / (a.norm(dim=1) + eps)


def cosine_distance(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``1 - cos(a, b)`` per sample, in ``[0, 2]``.

    Cost: ``O(N d)``. Runs on the device and dtype of its inputs.

    Example:
        >>> cosine_distance(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 2.0], [-1.0, 0.0]]))
        tensor([1., 2.])
    """
    a, b = _flat_pair(a, b)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)
    return 1.0 - cos


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int | float = 0.1) -> torch.Tensor:
    """Fraction of the ``k`` largest-``|a|`` features that are also among the ``k`` largest ``|b|``.

    ``k`` is a count (int) or a fraction of the features (float in (0, 1]). 1 means the same top
    features. Cost: two ``topk`` calls. Runs on the device and dtype of its inputs.

    Example: the top two of ``a`` are features 0 and 1, those of ``b`` are 1 and 2.
        >>> topk_overlap(torch.tensor([[5.0, 4.0, 1.0]]), torch.tensor([[1.0, 4.0, 5.0]]), k=2)
        tensor([0.5000])
    """
    a, b = _flat_pair(a, b)
    d = a.shape[1]
    kk = int(math.ceil(k * d)) if isinstance(k, float) else int(k)
    if not 1 <= kk <= d:
        raise ValueError(f"k must select between 1 and {d} features, got {k}")
    ia = a.abs().topk(kk, dim=1).indices
    ib = b.abs().topk(kk, dim=1).indices
    ma = torch.zeros_like(a, dtype=torch.bool).scatter_(1, ia, True)
    mb = torch.zeros_like(b, dtype=torch.bool).scatter_(1, ib, True)
    return (ma & mb).sum(1).to(a.dtype) / kk


def attribution_condition_number(
    model_or_jacobian: nn.Module | torch.Tensor,
    x: torch.Tensor | None = None,
    *,
    kind: str = "median",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Attribution condition number per sample from the input Jacobian's singular values.

    ``kind="median"`` (default): ``kappa_attr(x) = sigma_1 / median_k sigma_k`` over the
    ``min(C, d)`` singular values (median as numpy's: the mean of the two middle values for an even
    count). ``kind="classical"``: ``sigma_1 / sigma_r`` (choice, not from the paper; unbounded when
    the Jacobian is rank deficient).
    Pass a model and ``x`` (the Jacobian is computed, cost ``C`` backward passes) or a Jacobian
    ``(..., C, d)`` directly. Cost of the SVDs: ``O(N C^2 d)``. Runs on the device and dtype of the model's parameters; inputs are cast to them.
    A Jacobian passed directly stays on its own device and dtype.

    Example: singular values 4, 2, 1 give ``4 / 2 = 2`` (median) and ``4 / 1 = 4`` (classical).
        >>> J = torch.diag(torch.tensor([4.0, 2.0, 1.0]))
        >>> attribution_condition_number(J), attribution_condition_number(J, kind="classical")
        (tensor(2.), tensor(4.))
    """
    if isinstance(model_or_jacobian, nn.Module):
        if x is None:
            raise ValueError("pass the inputs x together with a model")
        from .jacobians import input_jacobian

        J = input_jacobian(model_or_jacobian, x, chunk_size)
    else:
        J = check_tensor(model_or_jacobian, "jacobian", min_dim=2)
    if kind not in ("median", "classical"):
        raise ValueError(f"kind must be 'median' or 'classical', got {kind!r}")
    s = torch.linalg.svdvals(J.detach())
    denom = s.quantile(0.5, dim=-1) if kind == "median" else s[..., -1]
    return s[..., 0] / denom.clamp_min(torch.finfo(s.dtype).tiny)


def finite_difference_sensitivity(
    model: nn.Module, x: torch.Tensor, delta: torch.Tensor
) -> torch.Tensor:
    """``||f(x + delta) - f(x)|| / ||delta||`` per sample: the *other* reading of "FD" (a finite
    difference rather than a Fréchet distance), kept under its own name.

    Cost: two forward passes. Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: for a linear map the ratio is ``||W delta|| / ||delta||``.
        >>> lin = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.diag(torch.tensor([3.0, 1.0])))
        >>> finite_difference_sensitivity(lin, torch.zeros(1, 2), torch.tensor([[0.1, 0.0]]))
        tensor([3.])
    """
    x = _check_inputs(model, x)
    delta = check_tensor(delta, "delta", min_dim=2)
    if delta.shape != x.shape:
        raise ValueError(
            f"delta must have the shape of x {tuple(x.shape)}, got {tuple(delta.shape)}"
        )
    with torch.no_grad():
        df = model(x + delta) - model(x)
    return df.flatten(1).norm(dim=1) / delta.flatten(1).norm(dim=1).clamp_min(1e-30)


# --------------------------------------------------------------------------- Fréchet distance
def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root by eigendecomposition, negative eigenvalues clipped to 0."""
    m = 0.5 * (m + m.T)
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def gaussian_frechet_distance(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor
) -> torch.Tensor:
    """Squared Fréchet (2-Wasserstein) distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)``:

        ||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1^{1/2} cov2 cov1^{1/2})^{1/2}).

    Computed in float64 with two symmetric eigendecompositions (negative eigenvalues from round-off
    clipped to 0), which is stable where ``scipy.linalg.sqrtm`` of the non-symmetric ``cov1 cov2``
    can return complex noise. Cost ``O(k^3)`` for dimension ``k``. Returns a 0-d float64 tensor
    on the device of its inputs.

    Example: for equal covariances only the means count.
        >>> I = torch.eye(2)
        >>> float(gaussian_frechet_distance(torch.zeros(2), I, torch.tensor([3.0, 4.0]), I))
        25.0
    """
    mu1, mu2 = mu1.double(), mu2.double()
    cov1, cov2 = cov1.double(), cov2.double()
    s1 = _sqrt_psd(cov1)
    inner = s1 @ cov2 @ s1
    inner = 0.5 * (inner + inner.T)
    tr_sqrt = torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * tr_sqrt
    return fd.clamp_min(0)


def frechet_distance(
    A: torch.Tensor,
    B: torch.Tensor,
    *,
    normalize: bool = False,
    pca_dim: int | None = None,
    squared: bool = True,
) -> torch.Tensor:
    """Fréchet distance between the Gaussians fitted to two clouds of attributions.

    ``A`` (clean) and ``B`` (perturbed) are ``(n, ...)`` samples, flattened to ``(n, d)``. Steps:

    1. ``normalize=True``: divide every sample by its L2 norm (compares *shapes* of maps, not scale);
    2. ``pca_dim=k``: project both clouds on the top-``k`` principal directions of the *clean* cloud
       ``A`` (recommended when ``n < d``: the sample covariance is then rank deficient);
    3. fit ``mu, Sigma`` (unbiased covariance, ``n - 1``) to each and return
       :func:`gaussian_frechet_distance`.

    **What is returned.** By default the *squared* distance
    ``FD = ||mu_A - mu_B||^2 + tr(Sigma_A + Sigma_B - 2 (Sigma_A^{1/2} Sigma_B Sigma_A^{1/2})^{1/2})``
    (the quantity FID reports), in squared attribution units; ``squared=False`` returns its square
    root. Defaults (no normalisation, no projection) are choices, not from the paper.
    Cost: ``O(n d^2 + d^3)`` (``d`` -> ``k`` after projection). Returns a 0-d float64 tensor on the
    device of its inputs.

    Example: two samples of ``N(0, I_2)`` and ``N(m, I_2)`` give ``FD ≈ ||m||^2 = 25``.
        >>> g = torch.Generator().manual_seed(0)
        >>> A = torch.randn(4000, 2, generator=g)
        >>> B = torch.randn(4000, 2, generator=g) + torch.tensor([3.0, 4.0])
        >>> round(float(frechet_distance(A, B)))
        25
    """
    A = check_tensor(A, "A", min_dim=2).flatten(1).double()
    B = check_tensor(B, "B", min_dim=2).flatten(1).double()
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"A and B must have the same number of features, got {A.shape[1]} and {B.shape[1]}"
        )
    if len(A) < 2 or len(B) < 2:
        raise ValueError("A and B need at least 2 samples each to estimate a covariance")
    if normalize:
        A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
        B = B / B.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if pca_dim is not None:
        if not 1 <= int(pca_dim) <= A.shape[1]:
            raise ValueError(f"pca_dim must be between 1 and {A.shape[1]}, got {pca_dim}")
        mean = A.mean(0)
        _, _, vh = torch.linalg.svd(A - mean, full_matrices=False)
        k = min(int(pca_dim), vh.shape[0])
        P = vh[:k].T
        A, B = (A - mean) @ P, (B - mean) @ P
    fd = gaussian_frechet_distance(
        A.mean(0),
        torch.cov(A.T).reshape(A.shape[1], -1),
        B.mean(0),
        torch.cov(B.T).reshape(B.shape[1], -1),
    )
    return fd if squared else fd.sqrt()


@renamed_kwargs(n_boot="num_resamples")
def frechet_distance_bootstrap(
    clean: torch.Tensor,
    perturbed: torch.Tensor,
    num_resamples: int = 200,
    *,
    normalize: bool = False,
    pca_dim: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Bootstrap replicates of :func:`frechet_distance` over the *points* of a perturbation study.

    ``clean`` is ``(n, ...)``; ``perturbed`` is ``(m, n, ...)``: ``m`` noisy copies of each point
    (the cloud :func:`attribution_instability` pools). One replicate draws ``n`` point indices with
    replacement (``torch.Generator`` seeded by ``seed``, so two studies on the same ``n`` points get
    the *same* index sets: replicates are paired across models) and recomputes the squared FD of
    ``clean[idx]`` against ``perturbed[:, idx]``. The principal directions (``pca_dim``) are those of
    the full clean cloud, fixed across replicates (a bootstrap conditional on the basis; cheap,
    ``O(num_resamples (n m k^2 + k^3))``). Returns a float64 tensor of ``num_resamples`` values on the
    CPU (the index draws are made on the CPU, so the replicates do not depend on the device).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> clean = torch.randn(50, 3, generator=g)
        >>> reps = frechet_distance_bootstrap(clean, clean + 0.1 * torch.randn(4, 50, 3, generator=g), 20)
        >>> reps.shape, bool((reps >= 0).all())
        (torch.Size([20]), True)
    """
    A = check_tensor(clean, "clean", min_dim=2).flatten(1).double()
    if perturbed.dim() < 3 or perturbed.shape[1] != A.shape[0]:
        raise ValueError(
            f"perturbed must be (m, n, ...) with n = {A.shape[0]}, got {tuple(perturbed.shape)}"
        )
    B = perturbed.flatten(2).double()
    if normalize:
        A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
        B = B / B.norm(dim=2, keepdim=True).clamp_min(1e-12)
    if pca_dim is not None:
        mean = A.mean(0)
        vh = torch.linalg.svd(A - mean, full_matrices=False).Vh
        P = vh[: min(int(pca_dim), vh.shape[0])].T
        A, B = (A - mean) @ P, (B - mean) @ P
    n = A.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    out = torch.empty(int(num_resamples), dtype=torch.float64)
    for b in range(int(num_resamples)):
        idx = torch.randint(0, n, (n,), generator=g).to(A.device)
        a, p = A[idx], B[:, idx].reshape(-1, A.shape[1])
        out[b] = gaussian_frechet_distance(a.mean(0), torch.cov(a.T), p.mean(0), torch.cov(p.T))
    return out


# --------------------------------------------------------------------------- instability study
@dataclass(frozen=True)
class AttributionInstability(Result):
    """Per-sample attribution instability at several noise scales (rows of each array: scales).

    ``delta_grad``, ``cosine_distance``, ``topk_overlap``, ``agreement`` (prediction unchanged):
    ``(S, N)`` means over ``num_draws`` draws of ``delta ~ N(0, s^2 I)``; ``fd``: ``(S,)`` Fréchet
    distance (see ``fd_squared``, ``fd_pca_dim``, ``fd_normalize``) between the clean attributions
    and the perturbed attributions of all draws pooled; ``fd_shape``: the same with every map
    normalised to unit L2 norm (insensitive to an overall shrinking of the maps). ``clean``
    ``(N, ...)`` and ``perturbed`` ``(S, N, ...)`` (first draw) are kept for pictures.
    ``fd_boot`` / ``fd_shape_boot``: ``(S, B)`` bootstrap replicates over points
    (:func:`frechet_distance_bootstrap`, ``fd_bootstrap=B``), ``None`` when not asked for.
    """

    scales: tuple[float, ...]
    method: str
    delta_grad: torch.Tensor
    cosine_distance: torch.Tensor
    topk_overlap: torch.Tensor
    agreement: torch.Tensor
    fd: torch.Tensor
    fd_shape: torch.Tensor
    clean: torch.Tensor = field(repr=False)
    perturbed: torch.Tensor = field(repr=False)
    fd_squared: bool = True
    fd_pca_dim: int | None = None
    fd_normalize: bool = False
    fd_boot: torch.Tensor | None = field(default=None, repr=False)
    fd_shape_boot: torch.Tensor | None = field(default=None, repr=False)

    def summary(self) -> list[dict[str, float]]:
        """One row per scale: means over samples."""
        return [
            {
                "scale": s,
                "delta_grad": float(self.delta_grad[i].mean()),
                "cosine_distance": float(self.cosine_distance[i].mean()),
                "topk_overlap": float(self.topk_overlap[i].mean()),
                "agreement": float(self.agreement[i].mean()),
                "fd": float(self.fd[i]),
                "fd_shape": float(self.fd_shape[i]),
            }
            for i, s in enumerate(self.scales)
        ]

    def __repr__(self) -> str:
        rows = "; ".join(
            f"s={r['scale']:g}: Δgrad={r['delta_grad']:.3g}, cos-dist={r['cosine_distance']:.3g}, "
            f"top-k={r['topk_overlap']:.3g}, FD={r['fd']:.4g}"
            for r in self.summary()
        )
        return f"AttributionInstability(method={self.method!r}, n={self.clean.shape[0]}, {rows})"


@renamed_kwargs(n_draws="num_draws")
def attribution_instability(
    model: nn.Module,
    x: torch.Tensor,
    scales: Sequence[float] = (0.01, 0.03, 0.1),
    *,
    num_draws: int = 8,
    method: str = "saliency",
    target: int | torch.Tensor | None = None,
    topk: int | float = 0.1,
    fd_pca_dim: int | None = None,
    fd_normalize: bool = False,
    fd_squared: bool = True,
    fd_bootstrap: int = 0,
    bootstrap_seed: int = 0,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    **method_kwargs,
) -> AttributionInstability:
    """How attributions move under isotropic input noise ``delta ~ N(0, s^2 I)`` (pixel units).

    The class is fixed at the clean prediction (or ``target``) so that the perturbed map explains
    the same output. For every scale ``s``, all ``m = num_draws`` noisy copies of the batch are
    attributed in one batched call. Noise comes from ``generator`` or ``seed`` (default 0).
    Cost: ``1 + S * m`` attribution calls' worth of work on ``N`` samples, plus one Fréchet
    distance per scale. ``fd_bootstrap=B > 0`` adds ``B`` bootstrap replicates over points of both
    squared FDs (``bootstrap_seed`` seeds the index draws; see :func:`frechet_distance_bootstrap`).
    Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: a linear model's saliency does not move at all under noise.
        >>> lin = torch.nn.Linear(4, 3)
        >>> inst = attribution_instability(lin, torch.randn(6, 4), scales=(0.1,), num_draws=2)
        >>> float(inst.delta_grad.max()), float(inst.topk_overlap.min())
        (0.0, 1.0)
    """
    x = _check_inputs(model, x)
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) < 0:
        raise ValueError(f"scales must be a non-empty list of non-negative numbers, got {scales}")
    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws}")
    t = _targets(model, x, target)
    g = resolve_generator(generator, seed, x.device)
    clean = attribution(model, x, method, t, **method_kwargs).detach()
    with torch.no_grad():
        pred = model(x).argmax(1)
    n = len(x)
    dg, cd, tk, ag, fds, fdn, first, boot, boot_n = [], [], [], [], [], [], [], [], []
    for s in scales:  # a handful of scales; every draw and sample is batched
        noise = torch.randn((num_draws, *x.shape), generator=g, device=x.device, dtype=x.dtype)
        xs = (x[None] + s * noise).reshape(num_draws * n, *x.shape[1:])
        pert = attribution(model, xs, method, t.repeat(num_draws), **method_kwargs).detach()
        with torch.no_grad():
            agree = (model(xs).argmax(1) == pred.repeat(num_draws)).to(x.dtype)
        rep = clean.repeat(num_draws, *([1] * (clean.dim() - 1)))
        dg.append(relative_change(rep, pert).view(num_draws, n).mean(0))
        cd.append(cosine_distance(rep, pert).view(num_draws, n).mean(0))
        tk.append(topk_overlap(rep, pert, topk).view(num_draws, n).mean(0))
        ag.append(agree.view(num_draws, n).mean(0))
        fds.append(
            frechet_distance(
                clean, pert, normalize=fd_normalize, pca_dim=fd_pca_dim, squared=fd_squared
            )
        )
        fdn.append(
            frechet_distance(clean, pert, normalize=True, pca_dim=fd_pca_dim, squared=fd_squared)
        )
        first.append(pert[:n])
        if fd_bootstrap > 0:
            pv = pert.view(num_draws, *clean.shape)
            kw = {"pca_dim": fd_pca_dim, "seed": bootstrap_seed}
            for norm, acc in ((fd_normalize, boot), (True, boot_n)):
                b = frechet_distance_bootstrap(clean, pv, fd_bootstrap, normalize=norm, **kw)
                acc.append(b if fd_squared else b.sqrt())
    return AttributionInstability(
        scales=scales,
        method=method,
        delta_grad=torch.stack(dg),
        cosine_distance=torch.stack(cd),
        topk_overlap=torch.stack(tk),
        agreement=torch.stack(ag),
        fd=torch.stack(fds),
        fd_shape=torch.stack(fdn),
        clean=clean,
        perturbed=torch.stack(first),
        fd_squared=fd_squared,
        fd_pca_dim=fd_pca_dim,
        fd_normalize=fd_normalize,
        fd_boot=torch.stack(boot) if boot else None,
        fd_shape_boot=torch.stack(boot_n) if boot_n else None,
    )


# --------------------------------------------------------------------------- per-sample relations
@dataclass(frozen=True)
class Envelope(Result):
    """Upper envelope of ``y`` against ``x``: the ``q``-quantile of ``y`` in equal-count bins of
    ``x``; ``trend`` is the Spearman correlation of the bin centres with the envelope values."""

    centers: np.ndarray
    upper: np.ndarray
    counts: np.ndarray
    q: float
    trend: float

    def __repr__(self) -> str:
        return f"Envelope(bins={len(self.centers)}, q={self.q}, trend={self.trend:+.2f})"


def spearman(x, y) -> float:
    """Spearman rank correlation of two 1-D arrays (average ranks for ties).

    Cost: two sorts, ``O(n log n)``; computed by SciPy in float64.

    Example: any increasing relation has correlation 1.
        >>> spearman([1, 2, 3, 4], [1, 4, 9, 16])
        1.0
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or len(x) < 3:
        raise ValueError("x and y must be 1-D arrays of the same length >= 3")
    return float(spearmanr(x, y).statistic)


def upper_envelope(x, y, bins: int = 8, q: float = 0.95) -> Envelope:
    """The ``q``-quantile of ``y`` within ``bins`` equal-count bins of ``x``.

    This is the test of the claim that entropy bounds the unstable regime (a figure of "A Unified
    Matrix-Spectral Framework for Stability and Interpretability in Deep Learning"): a falling
    envelope means that a high ``x`` caps ``y``. Cost: one sort, ``O(n log n)``; NumPy float64.

    Example: ``y = 1/x`` has a falling envelope.
        >>> import numpy as np
        >>> x = np.arange(1.0, 33.0)
        >>> env = upper_envelope(x, 1 / x, bins=4)
        >>> env.trend, env.counts.tolist()
        (-1.0, [8, 8, 8, 8])
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or len(x) < 2 * bins:
        raise ValueError(f"need x, y of equal length >= 2*bins = {2 * bins}")
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    order = np.argsort(x, kind="stable")
    parts = np.array_split(order, bins)
    centers = np.array([np.median(x[p]) for p in parts])
    upper = np.array([np.quantile(y[p], q) for p in parts])
    counts = np.array([len(p) for p in parts])
    trend = spearman(centers, upper) if bins >= 3 else float("nan")
    return Envelope(centers, upper, counts, q, trend)
