"""Attribution maps by batched autograd: saliency, gradient x input, SmoothGrad, integrated
gradients, and the :func:`attribution` dispatcher."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_logits
from .._random import resolve_generator
from ._common import _check_inputs, _targets

METHODS = ("saliency", "grad_x_input", "smoothgrad", "integrated_gradients")


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
    model, x = _check_inputs(model, x)
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
    model, x = _check_inputs(model, x)
    return x * _grad_of_class(model, x, _targets(model, x, target))


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
    model, x = _check_inputs(model, x)
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
    model, x = _check_inputs(model, x)
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
