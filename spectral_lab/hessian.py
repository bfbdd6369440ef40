"""The loss Hessian ``H = grad^2_theta L`` as a matrix-free operator: products, eigenvalues, trace,
spectral density, and its Gauss--Newton part.

Every function has the signature ``f(model, data, *, loss="cross_entropy", ...)``.

* ``data``: an ``(x, y)`` pair of tensors, an :class:`~spectral_lab.data.ArrayDataset`, any
  ``Dataset``, a ``DataLoader`` or an iterable of ``(x, y)`` batches (all streamed by
  ``spectral_lab._data.iter_batches``; ``batch_size=None`` keeps in-memory data in one batch).
  Over several batches the operator is the Hessian of the mean loss over all samples,
  ``H = sum_b (n_b / N) H_b``.
* ``loss``: ``"mse"`` -- ``L = (1/n) sum_i 1/2 ||f(x_i) - y_i||^2`` (sum over outputs, mean over
  samples; output-space Hessian ``I/n`` per sample), the same loss ``train(loss="mse")``
  minimises -- or ``"cross_entropy"`` (mean over samples), or a callable ``loss(outputs, y)``
  returning the **mean** loss over a batch (a 0-dim tensor).
* Runs on the device and dtype of the model's parameters; inputs are cast to them.
* Randomness: ``generator=`` or ``seed=`` (default seed 0, reproducible).

Mode: the model is always evaluated in **eval mode** (dropout off, batch-norm using its running
statistics, which are not updated), so the Hessian is that of a fixed deterministic function of
the parameters; the model's previous mode is restored afterwards.

Gauss--Newton split: ``H = G + R`` with ``G = (1/N) sum_i J_i^T Lambda_i J_i``
(``Lambda_i = grad^2_f loss``) and the residual term ``R``.
``which="gn"`` selects ``G`` everywhere; ``"full"`` (default) is ``H``.

The old spelling ``f(model, loss_fn, data, ...)`` (loss second, positional, or ``loss_fn=``) still
works for one release and emits a ``DeprecationWarning``.

Example:
    >>> from spectral_lab import MLP
    >>> m = MLP(3, 1, width=8, depth=2).double()
    >>> x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    >>> hessian_eigs(m, (x, y), loss="mse", k=2).eigenvalues.shape
    torch.Size([2])
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import torch
from torch import nn

from . import _func, _kept
from ._data import Batches
from ._deprecate import rename_kwargs, warn_deprecated
from ._losses import Loss, half_mse, resolve_loss, scalar_loss
from ._random import resolve_generator
from ._results import Result
from .linalg import (
    EigResult,
    LinearOperator,
    SpectralDensity,
    TraceResult,
    hutchinson,
    hutchpp,
    lanczos,
    power_iteration,
    spectral_density,
)

__all__ = [
    "SharpnessTrace",
    "dense_hessian",
    "gd_losses",
    "gd_quadratic",
    "gd_with_sharpness",
    "gnvp",
    "half_mse",
    "hessian_density",
    "hessian_eigs",
    "hessian_operator",
    "hessian_trace",
    "hvp",
    "loss_value",
]

_WHICH = ("full", "gn")


def _legacy_loss_first(*old_after_data: str):
    """Accept the old ``f(model, loss_fn, data, *old_after_data)`` order and ``loss_fn=`` for one
    release, with a ``DeprecationWarning`` pointing at the caller."""

    def deco(func):
        @functools.wraps(func)
        def wrapper(model, *args, **kwargs):
            name = func.__name__
            rename_kwargs(kwargs, {"loss_fn": "loss"}, name)
            if args and (isinstance(args[0], str) or callable(args[0])):
                if "loss" in kwargs:
                    raise TypeError(f"{name}() got the loss both positionally and as loss=")
                warn_deprecated(
                    f"{name}(model, loss_fn, data, ...) is deprecated and will be removed in the "
                    f"next release; call {name}(model, data, loss=...) with keywords after data"
                )
                kwargs["loss"], rest = args[0], args[1:]
                if rest:
                    if "data" in kwargs:
                        raise TypeError(f"{name}() got data both positionally and as data=")
                    kwargs["data"], rest = rest[0], rest[1:]
                if len(rest) > len(old_after_data):
                    raise TypeError(f"{name}() got too many positional arguments")
                for key, value in zip(old_after_data, rest):
                    if key in kwargs:
                        raise TypeError(f"{name}() got multiple values for {key!r}")
                    kwargs[key] = value
                args = ()
            return func(model, *args, **kwargs)

        return wrapper

    return deco


def _prepare(model: nn.Module, data, batch_size: int | None = None) -> tuple[dict, Batches]:
    params = _func.trainable(model)
    p0 = next(iter(params.values()))
    return params, Batches(data, batch_size, device=p0.device, dtype=p0.dtype, model=model)


def _labelled(batches: Batches):
    for x, y in batches:
        if y is None:
            raise ValueError("the loss needs labels: pass data as (x, y), not inputs alone")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN/Inf values; clean those samples first")
        yield x, y


@_legacy_loss_first("which")
def hessian_operator(
    model: nn.Module,
    data,
    *,
    loss: Loss | str = "cross_entropy",
    which: str = "full",
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
) -> LinearOperator:
    """The loss Hessian (``which="full"``) or its Gauss--Newton part (``"gn"``) as a
    :class:`~spectral_lab.linalg.LinearOperator` on flat parameter vectors (length ``p``).

    ``H v = sum_b (n_b / N) grad_theta <grad_theta L_b, v>`` over the chunks ``b`` of ``data``;
    ``G v = (1/N) sum_i J_i^T Lambda_i J_i v``. ``loss="mse"`` is
    ``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2`` (the loss ``train`` minimises), or
    ``"cross_entropy"``, or a callable returning the batch mean. Runs on the device and dtype of
    the model's parameters; inputs are cast to them.

    **Kept graph** (when it fits ``memory_budget`` bytes, default 1 GiB), built once per chunk,
    its size measured on the first chunk:

    - *linearized* (where every operation has forward-mode AD): forward-over-reverse
      ``jvp(grad L_b)`` is run once and its tangent operations recorded; each product ``H v``
      **replays only those** (about 1.2 gradients; building the operator, probe and
      recording, took 0.23 s against 0.04 s per product on the course CNN with 512 images). For the
      GGN ``J v`` is replayed the same way and ``J^T`` is a backward pass through the kept graph of
      the outputs. Memory: the recording's constants beyond the parameters and the data (primal
      values of the forward and backward passes; about the autograd graph's size: 55 MB for both
      on the course CNN with 512 MNIST images, 66 against 99 MB on ResNet-18 with 64 inputs of
      32x32); when it does not fit but the graph does, the graph below is kept.
    - *reverse-over-reverse*: the graph of ``grad L_b`` (built with ``create_graph=True``) and one
      **backward pass through it** per product (as PyHessian does; about 1.5 gradients); for the
      GGN the graphs of the outputs and of ``J^T u`` (``J v`` as the derivative of
      ``<J^T u, v>`` in ``u``).

    A block ``op @ V`` of ``b`` columns is one vmapped replay or batched backward
    (``is_grads_batched``), or a loop over columns where that fails or is slower (timed on the
    first block). An in-place change of the parameters rebuilds the kept state at the next
    product. The operator holds it while it lives.

    **Streaming** (when they do not fit, ``memory_budget=0``, or ``route="forward"``): every
    product recomputes each chunk: forward-over-reverse ``jvp(grad L)(v)`` (~ 2-4 gradient costs);
    GN: ``J^T (grad^2_f loss) (J v)`` with one JVP, an output-space HVP and one VJP. Blocks are
    vmapped (column by column if the model cannot be vmapped). Memory: one chunk.

    ``route``: ``"auto"`` (default) tries the kept graph (linearized, then reverse-over-reverse;
    plain, or with composite kernels where streaming needs them) and, when it does not fit or cannot run, streams with forward-over-reverse
    and, if some operation lacks forward-mode AD (or a higher derivative), reverse-over-reverse
    (double backward: ``H v`` as the VJP of the gradient, ``J v`` as ``d/du <J^T u, v>``), then
    either with composite kernels (hardsigmoid as a clamp, attention on PyTorch's MATH backend:
    the same function, differentiable to any order); each is chosen on a one-sample probe.
    ``"forward"`` / ``"reverse"`` force a mode (``"forward"`` always streams; ``"reverse"``
    keeps the autograd graph, never a recording). The choice is
    kept for the operator's life and recorded in ``op.route`` (``"... (kept graph)"`` or the
    streaming route), ``op.memory`` (budget, measured estimate, storage, how blocks ran) and the
    results of :func:`hessian_eigs`, :func:`hessian_trace` and :func:`hessian_density`.

    Example: the kept graph and streaming give the same product.
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=4, depth=2).double()
        >>> data = (torch.randn(5, 3).double(), torch.randn(5, 1).double())
        >>> kept, streamed = (hessian_operator(m, data, loss="mse", memory_budget=b) for b in (2**30, 0))
        >>> kept.dim, kept.route, streamed.memory["storage"]
        (21, 'forward-over-reverse (linearized, kept graph)', 'streaming')
        >>> v = torch.randn(21, dtype=torch.float64)
        >>> bool(torch.allclose(kept @ v, streamed @ v, atol=1e-12))
        True
    """
    if which not in _WHICH:
        raise ValueError(
            f"which must be 'full' (the Hessian) or 'gn' (Gauss-Newton), got {which!r}"
        )
    budget = _kept.check_budget(memory_budget)
    loss_fn = resolve_loss(loss)
    params, batches = _prepare(model, data, batch_size)
    p0 = next(iter(params.values()))
    f = _func.functional(model)
    memory = {"budget_bytes": budget, "estimate_bytes": None, "storage": "streaming"}
    state = memory  # how blocks ran ("matmat") is recorded beside the storage
    name = "Hessian" if which == "full" else "Gauss-Newton"

    def batch_product(x, y, V, rev):  # V: dict of tangents (with a leading batch dim if vmapped)
        if which == "full":

            def lp(p):
                return scalar_loss(loss_fn(f(p, x), y))

            return _func.hvp_of(lp, params, V, rev)
        out, jv = _func.jvp(lambda p: f(p, x), params, V, rev)
        hu = _func.hvp_of(lambda o: scalar_loss(loss_fn(o, y)), out, jv, rev)
        _, vjp_fn = torch.func.vjp(lambda p: f(p, x), params)
        return vjp_fn(hu)[0]

    def probe(r: _func.ADRoute) -> None:
        with _func.eval_mode(model):
            x, y = next(iter(_labelled(batches)))
            batch_product(
                x[:1], y[:1], {k: torch.ones_like(t) for k, t in params.items()}, r.reverse
            )

    ad = _func.choose_route(route, probe, "hessian")
    kept = _kept.hessian_products(
        model, f, params, lambda: _labelled(batches), batches.num_samples(), loss_fn, which,
        route, budget, memory, ad,
    )  # fmt: skip
    if kept is not None:
        op = LinearOperator(
            lambda v: kept(v, False), _func.num_params(params), p0.dtype, p0.device,
            matmat=lambda V: kept(V, True), name=name,
        )  # fmt: skip
        op.route, op.memory = kept.route, memory
        _func.LAST_ROUTES["hessian"] = op.route
        return op

    def product(v: torch.Tensor, batched: bool) -> torch.Tensor:
        with _func.eval_mode(model), ad.context():
            n_total = batches.num_samples()
            acc = None
            for x, y in _labelled(batches):
                w = len(x) / n_total

                def one(col, x=x, y=y):
                    return _func.flatten(
                        batch_product(x, y, _func.unflatten(col, params), ad.reverse)
                    )

                res = _func.vmap_or_loop(one, v, state) if batched else one(v)
                acc = w * res if acc is None else acc + w * res
            return acc.detach()

    op = LinearOperator(
        lambda v: product(v, False),
        _func.num_params(params),
        p0.dtype,
        p0.device,
        matmat=lambda V: product(V, True),
        name=name,
    )
    op.route, op.memory = ad.name, memory
    _func.LAST_ROUTES["hessian"] = ad.name
    return op


@_legacy_loss_first("v", "which")
def hvp(
    model: nn.Module,
    data,
    v: torch.Tensor,
    *,
    loss: Loss | str = "cross_entropy",
    which: str = "full",
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
) -> torch.Tensor:
    """Hessian-vector product ``H v`` (or ``G v`` with ``which="gn"``) for a flat ``v`` of length
    ``p``. Cost: one gradient graph built and one backward through it (kept graph, when it fits
    ``memory_budget``), else ~ 2-4 gradient evaluations (streaming); no ``p x p`` matrix. For
    many products build :func:`hessian_operator` once, so the graph is reused. ``loss`` as in
    :func:`hessian_operator` (``"mse"``: sum over outputs, mean over samples). Runs on the device
    and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=4, depth=2).double()
        >>> data = (torch.randn(5, 3).double(), torch.randn(5, 1).double())
        >>> hvp(m, data, torch.ones(21), loss="mse").shape
        torch.Size([21])
    """
    op = hessian_operator(
        model, data, loss=loss, which=which, batch_size=batch_size, route=route,
        memory_budget=memory_budget,
    )  # fmt: skip
    p0 = next(iter(_func.trainable(model).values()))
    return op.mv(_func.check_vector(v, op.dim, p0))


@_legacy_loss_first("v")
def gnvp(
    model: nn.Module,
    data,
    v: torch.Tensor,
    *,
    loss: Loss | str = "cross_entropy",
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
) -> torch.Tensor:
    """Gauss--Newton-vector product ``G v = (1/N) sum_i J_i^T Lambda_i J_i v``; the same as
    ``hvp(..., which="gn")``. ``G`` is PSD for convex losses (MSE, cross-entropy). ``loss`` as in
    :func:`hessian_operator`. Runs on the device and dtype of the model's parameters; inputs are
    cast to them. Cost: one JVP and one VJP pass over ``data`` (streaming), or the kept graphs'
    build plus two backward passes (see :func:`hessian_operator`, ``memory_budget``).

    Example: for a linear model with ``"mse"`` the Gauss--Newton matrix is the Hessian ``X^T X / n``.
        >>> lin = torch.nn.Linear(3, 1, bias=False).double()
        >>> x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
        >>> v = torch.randn(3, dtype=torch.float64)
        >>> torch.allclose(gnvp(lin, (x, y), v, loss="mse"), x.T @ x @ v / 6)
        True
    """
    return hvp(
        model, data, v, loss=loss, which="gn", batch_size=batch_size, route=route,
        memory_budget=memory_budget,
    )  # fmt: skip


@_legacy_loss_first()
def loss_value(
    model: nn.Module, data, *, loss: Loss | str = "cross_entropy", batch_size: int | None = None
) -> float:
    """The mean loss over ``data`` (batches weighted by size), in eval mode. ``loss="mse"`` is
    ``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``. Runs on the device and dtype of the model's
    parameters; inputs are cast to them. Cost: one forward pass over ``data``.

    Example:
        >>> lin = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.zero_()
        >>> loss_value(lin, (torch.randn(4, 2), torch.ones(4, 2)), loss="mse")  # 1/2 * (1 + 1)
        1.0
    """
    loss_fn = resolve_loss(loss)
    _, batches = _prepare(model, data, batch_size)
    tot, n = 0.0, 0
    with torch.no_grad(), _func.eval_mode(model):
        for x, y in _labelled(batches):
            tot += float(scalar_loss(loss_fn(model(x), y))) * len(x)
            n += len(x)
    return tot / n


_ORDERS = {"largest": "LA", "smallest": "SA", "magnitude": "LM"}


@_legacy_loss_first("k", "method", "which", "order", "tol", "max_iter", "seed")
def hessian_eigs(
    model: nn.Module,
    data,
    *,
    loss: Loss | str = "cross_entropy",
    k: int = 1,
    method: str = "lanczos",
    which: str = "full",
    order: str = "largest",
    tol: float = 1e-6,
    max_iter: int | None = None,
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    stop: str = "residual",
) -> EigResult:
    """Top-``k`` eigenpairs of the loss Hessian (or Gauss--Newton part) from products only.

    ``loss="mse"`` is ``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2`` -- exactly the loss
    ``train(loss="mse")`` minimises, so ``2/lambda_max`` compares directly with its learning rate.
    ``method="lanczos"`` (default; full reorthogonalisation, ``order`` = ``"largest"`` /
    ``"smallest"`` algebraic or ``"magnitude"``) or ``"power"`` (deflated power iteration, the
    PyHessian route; always largest magnitude). Stops when every Ritz residual is at most
    ``tol |lambda|``, so each eigenvalue is within that relative error (``stop="eigenvalue"``:
    Lanczos stops earlier, on an estimate of the eigenvalue error from the Ritz gap instead of
    this certificate; see :func:`~spectral_lab.linalg.lanczos`). ``lambda_max`` is the
    sharpness: gradient descent on the local quadratic model is stable iff ``eta < 2/lambda_max``.
    Eigenvectors are flat parameter vectors ``(p, k)``. Runs on the device and dtype of the
    model's parameters; inputs are cast to them. Cost: ``result.matvecs`` Hessian-vector products
    (typically ``~2k + 20`` for Lanczos), each one backward through the kept graph when it fits
    ``memory_budget``. Memory: at most ``result.basis_cap`` Krylov vectors of length ``p``
    (:func:`~spectral_lab.linalg.default_basis_cap`; thick restarts beyond it), whatever
    ``max_iter`` is. ``route`` and ``memory_budget`` as in :func:`hessian_operator`; the route
    used is ``result.route``.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=8, depth=2).double()
        >>> r = hessian_eigs(m, (torch.randn(9, 3).double(), torch.randn(9, 1).double()), loss="mse")
        >>> r.converged
        True
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {sorted(_ORDERS)}, got {order!r}")
    if method == "power" and stop != "residual":
        raise ValueError(
            f"stop={stop!r} needs method='lanczos' (power iteration stops on residuals)"
        )
    op = hessian_operator(
        model, data, loss=loss, which=which, batch_size=batch_size, route=route,
        memory_budget=memory_budget,
    )  # fmt: skip
    g = resolve_generator(generator, seed, op.device)
    if method == "power":
        return power_iteration(op, k, tol=tol, max_iter=max_iter or 1000, generator=g)
    return lanczos(op, k, which=_ORDERS[order], tol=tol, max_iter=max_iter, generator=g, stop=stop)


@_legacy_loss_first("method", "num_matvecs", "which", "seed")
def hessian_trace(
    model: nn.Module,
    data,
    *,
    loss: Loss | str = "cross_entropy",
    method: str = "hutch++",
    num_matvecs: int = 60,
    which: str = "full",
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> TraceResult:
    """Trace of the loss Hessian (or GN part) by Hutch++ (default) or Hutchinson with
    ``num_matvecs`` Hessian-vector products (Rademacher probes, batched by vmap).

    ``tr H = sum_i lambda_i``; for ``loss="mse"`` (``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``) at an
    interpolating solution ``tr G = tr(K~)/N = (1/N) sum_i ||J_i||_F^2``. See
    :func:`~spectral_lab.linalg.hutchpp` for the error rates. Runs on the device and dtype of the
    model's parameters; inputs are cast to them. Cost: ``num_matvecs`` HVPs over ``data``.

    Example: a linear model with ``"mse"`` has ``H = X^T X / n``; with ``p = 3`` parameters and 60
    products Hutch++ recovers the trace exactly (its sketch spans the whole space).

        >>> lin = torch.nn.Linear(3, 1, bias=False).double()
        >>> x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
        >>> r = hessian_trace(lin, (x, y), loss="mse")
        >>> r.method, abs(float(r) - float((x ** 2).sum() / 6)) < 1e-8
        ('hutch++', True)
    """
    if method not in ("hutch++", "hutchinson"):
        raise ValueError(f"method must be 'hutch++' or 'hutchinson', got {method!r}")
    op = hessian_operator(
        model, data, loss=loss, which=which, batch_size=batch_size, route=route,
        memory_budget=memory_budget,
    )  # fmt: skip
    g = resolve_generator(generator, seed, op.device)
    if method == "hutch++":
        return hutchpp(op, num_matvecs, generator=g)
    return hutchinson(op, num_matvecs, generator=g)


@_legacy_loss_first("num_probes", "num_steps", "which", "sigma", "num_points", "seed")
def hessian_density(
    model: nn.Module,
    data,
    *,
    loss: Loss | str = "cross_entropy",
    num_probes: int = 4,
    num_steps: int = 40,
    which: str = "full",
    sigma: float | None = None,
    num_points: int = 512,
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> SpectralDensity:
    """Spectral density of the loss Hessian by stochastic Lanczos quadrature
    (:func:`~spectral_lab.linalg.spectral_density`): ``num_probes * num_steps`` HVPs. ``loss`` as
    in :func:`hessian_operator` (``"mse"``: sum over outputs, mean over samples). Runs on the
    device and dtype of the model's parameters; inputs are cast to them. Cost: ``num_probes *
    num_steps`` HVPs plus ``O(num_probes num_steps^2)`` for the tridiagonal eigenproblems.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=4, depth=2).double()
        >>> data = (torch.randn(5, 3).double(), torch.randn(5, 1).double())
        >>> hessian_density(m, data, loss="mse", num_probes=2, num_steps=10).nodes.shape
        torch.Size([2, 10])
    """
    op = hessian_operator(
        model, data, loss=loss, which=which, batch_size=batch_size, route=route,
        memory_budget=memory_budget,
    )  # fmt: skip
    g = resolve_generator(generator, seed, op.device)
    return spectral_density(
        op, num_probes, num_steps, sigma=sigma, num_points=num_points, generator=g
    )


@_legacy_loss_first("which", "max_params")
def dense_hessian(
    model: nn.Module,
    data,
    *,
    loss: Loss | str = "cross_entropy",
    which: str = "full",
    max_params: int = 5000,
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
) -> torch.Tensor:
    """The full ``p x p`` Hessian (or GN matrix) from ``p`` batched products; toy nets only
    (refuses ``p > max_params``). ``loss`` as in :func:`hessian_operator`. Runs on the device and
    dtype of the model's parameters; inputs are cast to them. Cost ``p`` HVPs, memory ``p^2``.

    Example: a linear model with ``"mse"`` has ``H = X^T X / n`` exactly.
        >>> lin = torch.nn.Linear(3, 1, bias=False).double()
        >>> x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
        >>> torch.allclose(dense_hessian(lin, (x, y), loss="mse"), x.T @ x / 6)
        True
    """
    op = hessian_operator(
        model, data, loss=loss, which=which, batch_size=batch_size, route=route,
        memory_budget=memory_budget,
    )  # fmt: skip
    if op.dim > max_params:
        raise ValueError(
            f"the model has p={op.dim} parameters > max_params={max_params}; a dense Hessian "
            "would be too large: use hessian_eigs / hessian_trace, or raise max_params"
        )
    H = op.dense()
    return 0.5 * (H + H.T)


@dataclass(frozen=True)
class SharpnessTrace(Result):
    """Full-batch gradient descent with the sharpness ``lambda_max(H)`` measured along the way.
    Returned by :func:`gd_with_sharpness`; ``to_dict()`` gives plain Python."""

    lr: float
    steps: torch.Tensor
    loss: torch.Tensor
    sharpness_steps: torch.Tensor
    sharpness: torch.Tensor

    def __repr__(self) -> str:
        return (
            f"SharpnessTrace(lr={self.lr}, steps={len(self.loss)}, final loss={float(self.loss[-1]):.4g}, "
            f"final sharpness={float(self.sharpness[-1]):.4g}, 2/lr={2 / self.lr:.4g})"
        )


@_legacy_loss_first("lr", "steps", "every", "tol", "seed", "measure")
def gd_with_sharpness(
    model: nn.Module,
    data,
    lr: float,
    steps: int,
    *,
    loss: Loss | str = "cross_entropy",
    every: int = 10,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    measure: bool = True,
) -> SharpnessTrace:
    """Train ``model`` **in place** by full-batch gradient descent with step ``lr`` on ``data`` and
    record the loss each step and the sharpness ``lambda_max(H)`` (Lanczos, relative accuracy
    ``tol``) every ``every`` steps. With ½-MSE the sharpness typically rises until it hovers near
    ``2/lr`` -- the edge of stability (Cohen et al. 2021). Cost per step: one gradient, plus a
    Lanczos run (~20-40 HVPs) every ``every`` steps. ``loss="mse"`` is
    ``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``. ``data`` is used as one full batch. Runs on the device
    and dtype of the model's parameters; inputs are cast to them. Each sharpness measurement starts
    Lanczos from ``seed`` (default 0) or draws from ``generator``.

    Example: a linear least-squares model has constant sharpness ``lambda_max(X^T X / n)``.
        >>> lin = torch.nn.Linear(3, 1, bias=False).double()
        >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
        >>> tr = gd_with_sharpness(lin, (x, y), 0.1, 5, loss="mse", every=5, tol=1e-10)
        >>> lam = float(torch.linalg.eigvalsh(x.T @ x / 8)[-1])
        >>> [round(s / lam, 6) for s in tr.sharpness.tolist()], bool(tr.loss[-1] < tr.loss[0])
        ([1.0, 1.0], True)
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be positive and finite, got {lr!r}")
    if not isinstance(steps, int) or steps < 1 or not isinstance(every, int) or every < 1:
        raise ValueError("steps and every must be positive ints")
    loss_fn = resolve_loss(loss)
    params, batches = _prepare(model, data)
    ((x, y),) = list(_labelled(batches))
    names = list(params)
    ps = dict(model.named_parameters())
    losses, sh_steps, sh = [], [], []
    v0 = None
    for t in range(steps + 1):
        if measure and (t % every == 0 or t == steps):
            g = resolve_generator(generator, seed, x.device)
            op = hessian_operator(model, (x, y), loss=loss_fn)
            r = lanczos(op, 1, tol=tol, v0=v0, generator=g)
            v0 = r.eigenvectors[:, 0]
            sh_steps.append(t)
            sh.append(float(r.eigenvalues[0]))
        with _func.eval_mode(model):
            value = scalar_loss(loss_fn(model(x), y))
            if t < steps:
                grads = torch.autograd.grad(value, [ps[k] for k in names])
        losses.append(float(value.detach()))
        if not math.isfinite(losses[-1]):
            break
        if t < steps:
            with torch.no_grad():
                for k, gk in zip(names, grads):
                    ps[k].sub_(lr * gk)
    return SharpnessTrace(
        float(lr),
        torch.arange(len(losses)),
        torch.tensor(losses, dtype=torch.float64),
        torch.tensor(sh_steps),
        torch.tensor(sh, dtype=torch.float64),
    )


def gd_quadratic(H: torch.Tensor, x0: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """Losses ``1/2 x_k^T H x_k`` of gradient descent ``x_{k+1} = (I - eta H) x_k`` on a quadratic:
    shape ``(steps+1,)``. It converges iff ``eta < 2/lambda_max(H)`` (for PSD ``H`` and ``x_0``
    not orthogonal to the top eigenvector); the slowest mode decays like
    ``max_i |1 - eta lambda_i|^{2k}``. Cost: ``steps`` mat-vecs. Runs on the device and dtype of
    ``H``.

    Example:
        >>> gd_quadratic(torch.eye(2), torch.ones(2), 0.5, 2)
        tensor([1.0000, 0.2500, 0.0625])
    """
    if H.dim() != 2 or H.shape[0] != H.shape[1] or x0.shape != (H.shape[0],):
        raise ValueError("H must be (d, d) and x0 (d,)")
    out = []
    x = x0.clone()
    for _ in range(steps + 1):
        out.append(0.5 * x @ H @ x)
        x = x - lr * (H @ x)
    return torch.stack(out)


@_legacy_loss_first("lr", "steps")
def gd_losses(
    model: nn.Module,
    data,
    lr: float,
    steps: int,
    *,
    loss: Loss | str = "cross_entropy",
) -> torch.Tensor:
    """Losses of ``steps`` full-batch gradient-descent steps with step ``lr`` on a **copy** of
    ``model`` (the model is not changed): shape ``(steps+1,)``, stopping (``inf``) on overflow.
    ``loss="mse"`` is ``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``. Runs on the device and dtype of the
    model's parameters; inputs are cast to them. Cost: ``steps`` gradients on the full batch.

    Example: above ``2 / lambda_max`` the losses blow up.
        >>> lin = torch.nn.Linear(3, 1, bias=False).double()
        >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
        >>> lam = float(torch.linalg.eigvalsh(x.T @ x / 8)[-1])
        >>> slow, fast = (gd_losses(lin, (x, y), c / lam, 60, loss="mse") for c in (1.0, 2.5))
        >>> bool(slow[-1] < slow[0]), bool(fast[-1] > 1e6 * fast[0])
        (True, True)
    """
    m = copy.deepcopy(model)
    tr = gd_with_sharpness(m, data, lr, steps, loss=loss, every=steps + 1, measure=False)
    out = torch.full((steps + 1,), math.inf, dtype=torch.float64)
    out[: len(tr.loss)] = tr.loss
    return out
