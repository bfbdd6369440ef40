"""The parameter Jacobian ``J_theta(x) = df/dtheta``: per sample ``(N, C, p)``, its JVP/VJP, and as an
operator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from .._checks import check_logits
from ..prepared import Prepared, prepare
from ._operator import _jacobian_operator

if TYPE_CHECKING:
    from ..linalg import LinearOperator

PARAMETER_JACOBIAN_ROUTES = ("auto", "vmap", "batched")
_BATCHED_CHUNK = 8  # samples per forward pass on the batched (non-vmap) parameter-Jacobian route


# --- parameter Jacobians (issue 4) -------------------------------------------------------------
# Parameter-space vectors are flat, of length p = number of trainable parameters, in the order of
# ``model.named_parameters()``. Every function runs the model in eval mode (dropout off,
# batch-norm on its running statistics) and restores the previous mode afterwards.


def _param_setup(model: nn.Module | Prepared, x: torch.Tensor):
    """The prepared model, its trainable parameters and ``x`` made ready for it."""
    from .. import _func

    prep = prepare(model, x)
    return _func, prep, _func.trainable(prep.model), prep.inputs(x)


def parameter_jacobian(
    model: nn.Module | Prepared,
    x: torch.Tensor,
    chunk_size: int | None = None,
    *,
    route: str = "auto",
) -> torch.Tensor:
    """Per-sample parameter Jacobians ``J_theta(x_n) = d f(x_n) / d theta``: shape ``(N, C, p)``.

    Routes: ``"vmap"``, ``vmap(jacrev(f(theta, x_n)))`` over samples (torch.func), ``chunk_size``
    samples at a time to bound memory; ``"batched"``, for models that cannot be vmapped (GRUs,
    LSTMs off mkldnn: their hidden state is built from the batch size): one forward pass per chunk
    of at most 8 samples and reverse mode vmapped over the chunk's ``chunk * C`` one-hot output
    cotangents (no Python loop over samples; cost ``chunk`` times the vmap route's);
    ``"auto"`` (default) tries vmap on the first chunk and falls back to ``"batched"``. The route
    used is recorded in ``Prepared.routes["parameter_jacobian"]``. Columns follow ``model.named_parameters()``; for a bias-free MLP the block
    of layer ``l`` is ``h_{l-1}(x)^T (x) G_l(x)`` (input to the layer times the backpropagated
    output gradient ``G_l = d f / d z_l``). Cost: ``N C`` reverse passes, memory
    ``O(chunk C p)`` plus the ``N C p`` result. Model evaluated in eval mode. Runs on the device
    and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> parameter_jacobian(MLP(4, 3, width=8, depth=2), torch.randn(5, 4)).shape
        torch.Size([5, 3, 67])
    """
    if route not in PARAMETER_JACOBIAN_ROUTES:
        raise ValueError(f"route must be one of {PARAMETER_JACOBIAN_ROUTES}, got {route!r}")
    _func, prep, params, x = _param_setup(model, x)
    model = prep.model
    if route not in PARAMETER_JACOBIAN_ROUTES:
        raise ValueError(f"route must be one of {PARAMETER_JACOBIAN_ROUTES}, got {route!r}")
    chunk = len(x) if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    with _func.eval_mode(model):
        f = _func.functional(model)

        def single(p, xi):
            return check_logits(f(p, xi[None]))[0]

        vm = torch.func.vmap(torch.func.jacrev(single), in_dims=(None, 0))

        def jac_vmap(xc):
            return _func.flatten_batched(vm(params, xc), 2)

        def jac_batched(xc):
            # one forward pass over the chunk; reverse mode vmapped over the one-hot cotangents
            # e_{n,c} only (the model itself is never vmapped): row (n, c) is J_theta(x_n)_c
            out, vjp_fn = torch.func.vjp(lambda p: check_logits(f(p, xc)), params)
            m, c = out.shape
            eye = torch.eye(m * c, dtype=out.dtype, device=out.device).reshape(m * c, m, c)
            rows = torch.func.vmap(lambda e: _func.flatten(vjp_fn(e)[0]))(eye)
            return rows.reshape(m, c, -1)

        out = []
        if route == "auto":
            # try vmap on the first chunk itself (no separate probe: a probe's Jacobian would be
            # as large as C p per sample); a model that cannot be vmapped fails in its forward
            try:
                out.append(jac_vmap(x[:chunk]))
                route = "vmap"
            except (RuntimeError, NotImplementedError):
                route = "batched"
        if route == "batched":
            chunk = min(chunk, _BATCHED_CHUNK) if chunk_size is None else chunk
        fn = jac_vmap if route == "vmap" else jac_batched
        prep.routes["parameter_jacobian"] = route
        start = chunk if out else 0  # the first chunk is done when vmap ran on it
        out += [fn(x[i : i + chunk]) for i in range(start, len(x), chunk)]
    return torch.cat(out).detach()


def parameter_jvp(model: nn.Module | Prepared, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``J_theta(x_n) v`` for every sample, without forming ``J``: shape ``(N, C)``.

    One forward-mode pass (``torch.func.jvp``) at cost ~ one forward pass; ``v`` is a flat
    parameter-space vector of length ``p``. It is the first-order change of the outputs when the
    parameters move by ``v``: ``f_{theta + t v}(x) = f_theta(x) + t J v + O(t^2)``. Runs on the
    device and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(4, 3, width=8, depth=2)
        >>> parameter_jvp(m, torch.randn(5, 4), torch.zeros(67)).shape
        torch.Size([5, 3])
    """
    _func, prep, params, x = _param_setup(model, x)
    model = prep.model
    p0 = next(iter(params.values()))
    v = _func.check_vector(v, _func.num_params(params), p0)
    with _func.eval_mode(model):
        f = _func.functional(model)
        _, out = torch.func.jvp(
            lambda p: check_logits(f(p, x)), (params,), (_func.unflatten(v, params),)
        )
    return out.detach()


def parameter_vjp(model: nn.Module | Prepared, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``J^T u = sum_n J_theta(x_n)^T u_n`` for cotangents ``u`` of shape ``(N, C)``: flat ``(p,)``.

    One reverse pass (``torch.func.vjp``) at cost ~ one backward pass; with ``u = f - y`` it is the
    gradient of the loss ``1/2 sum_n ||f(x_n) - y_n||^2`` (``N`` times ``loss="mse"``). Runs on the
    device and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(4, 3, width=8, depth=2)
        >>> parameter_vjp(m, torch.randn(5, 4), torch.ones(5, 3)).shape
        torch.Size([67])
    """
    _func, prep, params, x = _param_setup(model, x)
    model = prep.model
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


def parameter_jacobian_operator(
    model: nn.Module | Prepared, x: torch.Tensor, *, route: str = "auto"
) -> LinearOperator:
    """The parameter Jacobian of the batch ``x`` as one matrix-free operator, ``(N C) x p``.

    Rows ``(n, c)`` are ``J_theta(x_n)_c``, columns follow ``model.named_parameters()`` (trainable
    ones). ``op @ v`` is :func:`parameter_jvp` (one forward-mode pass), ``op.rmv(u)``
    :func:`parameter_vjp` (one backward pass); ``op.gram("right")`` is the block NTK
    ``J J^T`` on ``x`` and ``op.gram()`` the uncentred ``J^T J`` (``N`` times the Gauss--Newton
    matrix of ``"mse"``). Runs on the device and dtype of the model's parameters; inputs are cast
    to them. Cost: one JVP or VJP over the batch per product; no ``C x p`` Jacobian is formed.

    Example:
        >>> from spectral_lab import MLP
        >>> m, x = MLP(4, 3, width=8).double(), torch.randn(2, 4, dtype=torch.float64)
        >>> op = parameter_jacobian_operator(m, x)
        >>> op.shape, torch.allclose(op.dense(), parameter_jacobian(m, x).reshape(6, -1))
        ((6, 139), True)
    """
    from .. import _func

    _, prep, params, xin = _param_setup(model, x)
    f = _func.functional(prep.model)
    op = _jacobian_operator(lambda p: f(p, xin), params, len(xin) * prep.num_outputs,
                            next(iter(params.values())), f"J_theta(N={len(xin)})", route)  # fmt: skip
    prep.routes["parameter_jacobian (operator)"] = op.route
    return op
