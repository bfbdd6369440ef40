"""The input Jacobian ``J_f(x) = df/dx``: batched, ``(N, C, d)``, and as an operator."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

from .._checks import check_logits
from ..prepared import Prepared, prepare
from ._operator import _jacobian_operator

if TYPE_CHECKING:
    from ..linalg import LinearOperator

INPUT_JACOBIAN_ROUTES = ("auto", "backward", "vmap", "forward")
_CHUNK_BYTES = 2**30  # default memory budget of one chunk's Jacobian block


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


def input_jacobian_operator(
    model: nn.Module | Prepared, x: torch.Tensor, *, route: str = "auto"
) -> LinearOperator:
    """The input Jacobian of the batch ``x`` as one matrix-free operator, ``(N C) x (N d)``.

    ``J = blockdiag(J_f(x_1), ..., J_f(x_N))`` (samples do not interact: :func:`~spectral_lab.prepare`
    refuses a model whose do), rows and columns flattened sample by sample. ``op @ v`` is one
    forward-mode pass over the batch (``torch.func.jvp``; reverse-over-reverse where an operation
    lacks forward mode), ``op.rmv(u)`` one backward pass; ``op.dense()`` equals
    :func:`input_jacobian` laid out block-diagonally, ``op.gram()`` is ``J^T J``. Token ids: with
    respect to the embedding's output. Runs on the device and dtype of the model's parameters;
    inputs are cast to them. Cost: one JVP or VJP over the batch per product; memory of one pass.

    Example:
        >>> from spectral_lab import MLP
        >>> m, x = MLP(4, 3, width=8).double(), torch.randn(2, 4, dtype=torch.float64)
        >>> op = input_jacobian_operator(m, x)
        >>> op.shape, torch.allclose(op.dense()[:3, :4], input_jacobian(m, x)[0])
        ((6, 8), True)
    """
    prep = prepare(model, x)
    f, xin = prep.input_space(x)
    n = len(xin)
    op = _jacobian_operator(lambda p: f(p["x"]), {"x": xin.detach()}, n * prep.num_outputs, xin,
                            f"J_x(N={n})", route)  # fmt: skip
    prep.routes["input_jacobian (operator)"] = op.route
    return op
