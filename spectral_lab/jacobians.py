"""Batched input Jacobians ``J_f(x) = df/dx`` of a classifier, shape ``(N, C, d)``.

Example:
    >>> from spectral_lab import MLP
    >>> J = input_jacobian(MLP(4, 3, width=8), torch.randn(5, 4))
    >>> J.shape
    torch.Size([5, 3, 4])
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_logits, check_model, check_tensor


def input_jacobian(
    model: nn.Module, x: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """Input Jacobians of ``model`` at every row of ``x``: ``(N, C, d)``, ``d = prod(x.shape[1:])``.

    Route: one forward pass over a chunk, then ``C`` backward passes of ``sum_n f_c(x_n)``; since
    samples do not interact (eval mode), each gives row ``c`` of every sample's Jacobian at once.
    Cost: ``C`` backward passes per chunk; memory ``O(chunk * C * d)``.
    """
    check_model(model)
    x = check_tensor(x, "x", min_dim=2)
    n = x.shape[0]
    chunk = n if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    out = []
    for i in range(0, n, chunk):
        xc = x[i : i + chunk].detach().requires_grad_(True)
        with torch.enable_grad():
            f = check_logits(model(xc))
            c = f.shape[1]
            rows = [
                torch.autograd.grad(f[:, k].sum(), xc, retain_graph=k < c - 1)[0].reshape(
                    len(xc), -1
                )
                for k in range(c)
            ]
        out.append(torch.stack(rows, 1))
    return torch.cat(out)


# --- parameter Jacobians (issue 4) -------------------------------------------------------------
# Parameter-space vectors are flat, of length p = number of trainable parameters, in the order of
# ``model.named_parameters()``. Every function runs the model in eval mode (dropout off,
# batch-norm on its running statistics) and restores the previous mode afterwards.


def _param_setup(model: nn.Module, x: torch.Tensor):
    from . import _func

    params = _func.trainable(model)
    x = check_tensor(x, "x", min_dim=2)
    p0 = next(iter(params.values()))
    if x.dtype != p0.dtype or x.device != p0.device:
        raise TypeError(
            f"x has dtype {x.dtype} on {x.device} but the model's parameters are {p0.dtype} on "
            f"{p0.device}; move one of them, e.g. x.to(next(model.parameters()))"
        )
    return _func, params


def parameter_jacobian(
    model: nn.Module, x: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """Per-sample parameter Jacobians ``J_theta(x_n) = d f(x_n) / d theta``: shape ``(N, C, p)``.

    Route: ``vmap(jacrev(f(theta, x_n)))`` over samples (torch.func), ``chunk_size`` samples at a
    time to bound memory. Columns follow ``model.named_parameters()``; for a bias-free MLP the block
    of layer ``l`` is ``h_{l-1}(x)^T (x) G_l(x)`` (spec 3.2). Cost: ``N C`` reverse passes, memory
    ``O(chunk C p)`` plus the ``N C p`` result. Model evaluated in eval mode.

    Example:
        >>> from spectral_lab import MLP
        >>> parameter_jacobian(MLP(4, 3, width=8, depth=2), torch.randn(5, 4)).shape
        torch.Size([5, 3, 67])
    """
    _func, params = _param_setup(model, x)
    chunk = len(x) if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    with _func.eval_mode(model):
        f = _func.functional(model)

        def single(p, xi):
            return check_logits(f(p, xi[None]))[0]

        jac = torch.func.vmap(torch.func.jacrev(single), in_dims=(None, 0))
        out = [
            _func.flatten_batched(jac(params, x[i : i + chunk]), 2) for i in range(0, len(x), chunk)
        ]
    return torch.cat(out).detach()


def parameter_jvp(model: nn.Module, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``J_theta(x_n) v`` for every sample, without forming ``J``: shape ``(N, C)``.

    One forward-mode pass (``torch.func.jvp``) at cost ~ one forward pass; ``v`` is a flat
    parameter-space vector of length ``p``. It is the first-order change of the outputs when the
    parameters move by ``v``: ``f_{theta + t v}(x) = f_theta(x) + t J v + O(t^2)`` (spec 6.3).

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(4, 3, width=8, depth=2)
        >>> parameter_jvp(m, torch.randn(5, 4), torch.zeros(67)).shape
        torch.Size([5, 3])
    """
    _func, params = _param_setup(model, x)
    p0 = next(iter(params.values()))
    v = _func.check_vector(v, _func.num_params(params), p0)
    with _func.eval_mode(model):
        f = _func.functional(model)
        _, out = torch.func.jvp(
            lambda p: check_logits(f(p, x)), (params,), (_func.unflatten(v, params),)
        )
    return out.detach()


def parameter_vjp(model: nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``J^T u = sum_n J_theta(x_n)^T u_n`` for cotangents ``u`` of shape ``(N, C)``: flat ``(p,)``.

    One reverse pass (``torch.func.vjp``) at cost ~ one backward pass; with ``u = f - y`` it is the
    gradient of the loss ``1/2 sum_n ||f(x_n) - y_n||^2``.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(4, 3, width=8, depth=2)
        >>> parameter_vjp(m, torch.randn(5, 4), torch.ones(5, 3)).shape
        torch.Size([67])
    """
    _func, params = _param_setup(model, x)
    with _func.eval_mode(model):
        f = _func.functional(model)
        out, vjp_fn = torch.func.vjp(lambda p: check_logits(f(p, x)), params)
        if not isinstance(u, torch.Tensor) or u.shape != out.shape:
            raise ValueError(
                f"u must be a tensor shaped like the model output {tuple(out.shape)}, got "
                f"{tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__}"
            )
        (g,) = vjp_fn(u.to(out))
    return _func.flatten(g).detach()
