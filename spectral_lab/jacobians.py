"""Batched input Jacobians ``J_f(x) = df/dx`` of a classifier, shape ``(N, C, d)``.

Example:
    >>> from spectral_lab import MLP
    >>> J = input_jacobian(MLP(4, 3, width=8), torch.randn(5, 4))
    >>> J.shape
    torch.Size([5, 3, 4])
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ._checks import check_logits
from .prepared import Prepared, prepare

INPUT_JACOBIAN_ROUTES = ("auto", "backward", "vmap", "forward")
PARAMETER_JACOBIAN_ROUTES = ("auto", "vmap", "batched")
_CHUNK_BYTES = 2**30  # default memory budget of one chunk's Jacobian block
_BATCHED_CHUNK = 8  # samples per forward pass on the batched (non-vmap) parameter-Jacobian route


def _jac_backward(model: nn.Module, xc: torch.Tensor) -> torch.Tensor:
    """``C`` backward passes of ``sum_n f_c(x_n)`` over the chunk: row ``c`` of every Jacobian."""
    xc = xc.detach().requires_grad_(True)
    with torch.enable_grad():
        f = check_logits(model(xc))
        if f.shape[0] != xc.shape[0]:
            raise ValueError(
                f"model returned {f.shape[0]} rows for {xc.shape[0]} inputs; it must map a batch "
                "of N inputs to N rows of logits"
            )
        c = f.shape[1]
        out = xc.new_empty(len(xc), c, xc[0].numel())
        for k in range(c):
            (g,) = torch.autograd.grad(f[:, k].sum(), xc, retain_graph=k < c - 1)
            out[:, k] = g.reshape(len(xc), -1)
    return out


def _single(model: nn.Module):
    def f(xi: torch.Tensor) -> torch.Tensor:
        return model(xi.unsqueeze(0)).squeeze(0)

    return f


def _jac_vmap(model: nn.Module, xc: torch.Tensor) -> torch.Tensor:
    j = torch.func.vmap(torch.func.jacrev(_single(model)))(xc.detach())
    return j.reshape(len(xc), j.shape[1], -1).detach()


def _jac_forward(model: nn.Module, xc: torch.Tensor) -> torch.Tensor:
    j = torch.func.vmap(torch.func.jacfwd(_single(model)))(xc.detach())
    return j.reshape(len(xc), j.shape[1], -1).detach()


def input_jacobian(
    model: nn.Module | Prepared,
    x: torch.Tensor,
    chunk_size: int | None = None,
    *,
    route: str = "auto",
) -> torch.Tensor:
    """Input Jacobians ``J_f(x_n) = df/dx (x_n)`` of ``model`` at every row of ``x``: ``(N, C, d)``
    with ``d = prod(x.shape[1:])``, detached from the graph. Runs on the device and dtype of the
    model's parameters; inputs are cast to them. The model goes through
    :func:`~spectral_lab.prepare` (any output structure, eval mode, random or interacting models
    refused). Token ids ``(N, T)`` give the Jacobian with respect to the output ``e`` of the input
    embedding, ``(N, C, T * E)`` (the model cut there: :func:`~spectral_lab.models.split_at_embedding`).

    Routes (no Python loop over samples in any of them):

    * ``"backward"``: one forward pass over a chunk, then ``C`` backward passes of
      ``sum_n f_c(x_n)``; since samples do not interact (eval mode), pass ``c`` gives row ``c`` of
      every sample's Jacobian. Cost ``C`` backward passes per chunk. This is the fastest route on
      CPU for both MLPs and CNNs (see ``benchmarks/bench_input_jacobian.py``; ``vmap(jacrev)`` is
      ~equal on MLPs and several times slower on CNNs with pooling).
    * ``"vmap"``: ``torch.func.vmap(torch.func.jacrev(f))`` (reverse mode per sample, vectorised);
      on a model that cannot be vmapped (GRU, LSTM off mkldnn) it warns and uses ``"backward"``.
    * ``"forward"``: ``vmap(jacfwd(f))``, ``d`` forward-mode passes: only wins when ``d < C``.
      Where it cannot run (no vmap, or an op without forward-mode AD) it warns and uses
      ``"backward"`` (silently under ``"auto"``). The route used is recorded in
      ``Prepared.routes["input_jacobian"]`` (pass a :class:`~spectral_lab.Prepared` to read it).
    * ``"auto"`` (default): ``"forward"`` if ``d < C`` else ``"backward"``.

    ``chunk_size`` bounds memory: at most that many samples per pass (default: as many as fit a
    1 GiB Jacobian block, i.e. usually the whole batch).

    >>> from spectral_lab import MLP
    >>> input_jacobian(MLP(6, 2, width=4), torch.randn(3, 6), chunk_size=2).shape
    torch.Size([3, 2, 6])
    """
    if route not in INPUT_JACOBIAN_ROUTES:
        raise ValueError(f"route must be one of {INPUT_JACOBIAN_ROUTES}, got {route!r}")
    prep = prepare(model, x)
    model, x = prep.input_space(x)
    if prep.tokens:  # the split model is bound to this batch: one chunk, reverse mode
        route, chunk_size = "backward", len(x)
    n, d = x.shape[0], math.prod(x.shape[1:])
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
        chunk = chunk_size
    else:
        chunk = n
    # probe the output size on the first sample (cheap) to choose the route and default chunk
    c = prep.num_outputs
    if chunk_size is None:
        chunk = max(1, min(n, _CHUNK_BYTES // max(1, c * d * x.element_size())))
    asked = route
    if route == "auto":
        route = "forward" if d < c else "backward"
    if route in ("vmap", "forward"):
        try:
            (_jac_vmap if route == "vmap" else _jac_forward)(model, x[:2])
        except (RuntimeError, NotImplementedError) as err:
            if asked != "auto":
                warnings.warn(
                    f"input_jacobian: route {route!r} does not run on this model "
                    f"({str(err).splitlines()[0][:120]}); using the batched 'backward' route",
                    stacklevel=2,
                )
            route = "backward"
    prep.routes["input_jacobian"] = route
    fn = {"backward": _jac_backward, "vmap": _jac_vmap, "forward": _jac_forward}[route]
    if chunk >= n:
        return fn(model, x)
    return torch.cat([fn(model, x[i : i + chunk]) for i in range(0, n, chunk)])


# --- parameter Jacobians (issue 4) -------------------------------------------------------------
# Parameter-space vectors are flat, of length p = number of trainable parameters, in the order of
# ``model.named_parameters()``. Every function runs the model in eval mode (dropout off,
# batch-norm on its running statistics) and restores the previous mode afterwards.


def _param_setup(model: nn.Module | Prepared, x: torch.Tensor):
    """The prepared model, its trainable parameters and ``x`` made ready for it."""
    from . import _func

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
