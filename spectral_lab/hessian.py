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
* Sharded data: under ``torch.distributed`` each rank passes its own shard and every call takes
  ``process_group=`` (default: the default group when ``torch.distributed`` is initialised, else
  one process; ``False``: this rank's data alone). The operator is then that of the mean loss over
  the concatenated data, ``H v = sum_r (n_r / N) H_r v`` (one all-reduce of ``p`` numbers per
  product), and every rank returns the same result (see :mod:`spectral_lab.distributed`).

Mode: the model is always evaluated in **eval mode** (dropout off, batch-norm using its running
statistics, which are not updated), so the Hessian is that of a fixed deterministic function of
the parameters; the model's previous mode is restored afterwards.

Gauss--Newton split: ``H = G + R`` with ``G = (1/N) sum_i J_i^T Lambda_i J_i``
(``Lambda_i = grad^2_f loss``) and the residual term ``R``.
``which="gn"`` selects ``G`` everywhere; ``"full"`` (default) is ``H``.

Example:
    >>> from spectral_lab import MLP
    >>> m = MLP(3, 1, width=8, depth=2).double()
    >>> x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    >>> hessian_eigs(m, (x, y), loss="mse", k=2).eigenvalues.shape
    torch.Size([2])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import _func, _kept, distributed
from ._data import Batches
from ._losses import Loss, half_mse, scalar_loss
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
from .prepared import Prepared, Stream, prepare
from .sharpness import SharpnessTrace, gd_losses, gd_quadratic, gd_with_sharpness

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


def hessian_operator(
    model: nn.Module | Prepared,
    data,
    *,
    loss: Loss | str = "cross_entropy",
    which: str = "full",
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
    process_group: Any = None,
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

    ``process_group``: with ``torch.distributed`` initialised (``None``: the default group;
    ``False``: this rank alone), ``data`` is this rank's shard and the operator is that of the
    whole data: this rank's product on its shard, weighted by its share ``n_r / N``, summed over
    the ranks by one all-reduce of ``p`` numbers per product (unequal shards and partial batches
    exact; a ``DistributedSampler``'s padding repeats are cut). ``op.memory["shards"]`` lists the
    ranks' sample counts. A rank that fails makes every rank raise (:mod:`spectral_lab.distributed`).

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
    group = distributed.resolve_group(process_group)
    if group is not None:
        return _sharded_operator(
            model, data, group, loss=loss, which=which, batch_size=batch_size, route=route,
            memory_budget=memory_budget,
        )  # fmt: skip
    prep = prepare(model, data, loss=loss)
    loss_fn, model = prep.loss_fn, prep.model
    params = _func.trainable(model)
    batches = Stream(prep, data, batch_size, labelled=True)
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
            x, y = next(iter(batches))
            batch_product(
                x[:1], y[:1], {k: torch.ones_like(t) for k, t in params.items()}, r.reverse
            )

    key = ("hessian", route, which, prep.loss_name)
    ad = prep.routes.get(key) or _func.choose_route(route, probe, "hessian")
    prep.routes[key] = ad
    kept = _kept.hessian_products(
        model, f, params, lambda: iter(batches), batches.num_samples(), loss_fn, which,
        route, budget, memory, ad,
    )  # fmt: skip
    if kept is not None:
        op = LinearOperator(
            lambda v: kept(v, False), _func.num_params(params), p0.dtype, p0.device,
            matmat=lambda V: kept(V, True), name=name,
        )  # fmt: skip
        op.route, op.memory = kept.route, memory
        prep.routes["hessian"] = op.route
        return op

    def product(v: torch.Tensor, batched: bool) -> torch.Tensor:
        with _func.eval_mode(model), ad.context():
            n_total = batches.num_samples()
            acc = None
            for x, y in batches:
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
    prep.routes["hessian"] = ad.name
    return op


def _sharded_operator(model, data, group, *, loss, batch_size, **kw) -> LinearOperator:
    """:func:`hessian_operator` over the data of every rank of ``group``: this rank's operator on
    its shard (the mean loss over it) weighted by its share ``n_r / N``, summed by one
    all-reduce per product (:func:`~spectral_lab.distributed.sharded_sum`)."""
    data = distributed.unpadded(data)

    def setup():
        params = _func.trainable(prepare(model).model)
        n = distributed.local_count(data)
        if n == 0:  # an empty shard adds zeros
            return None, 0, params
        if n is None:
            n = sum(len(x) for x, _ in Stream(prepare(model, data, loss=loss), data, batch_size))
        op = hessian_operator(model, data, loss=loss, batch_size=batch_size, process_group=False,
                              **kw)  # fmt: skip
        return op, n, params

    local, n, params = distributed.guarded(group, "hessian_operator (setup)", setup)
    counts, routes = distributed.shard_info(
        group, n, "hessian_operator (shard sizes)", None if local is None else local.route
    )
    p0 = next(iter(params.values()))
    name = "Hessian" if kw.get("which", "full") == "full" else "Gauss-Newton"
    op = distributed.sharded_sum(
        None if local is None else local.mv, _func.num_params(params), p0.dtype, p0.device,
        n / sum(counts), group, f"{name} (sharded over {len(counts)} ranks)",
        None if local is None else local.mm,
    )  # fmt: skip
    op.route = next(r for r in routes if r is not None)
    op.memory = dict(local.memory if local is not None else {}, shards=counts)
    return op


def _generator(generator, seed, op: LinearOperator, process_group) -> torch.Generator:
    """The solver's random source: ``seed`` (default 0) or ``generator``, the same on every rank
    of a process group (checked)."""
    group = distributed.resolve_group(process_group)
    return distributed.replicated_generator(generator, seed, op.device, group, op.name)


def hvp(
    model: nn.Module | Prepared,
    data,
    v: torch.Tensor,
    *,
    loss: Loss | str = "cross_entropy",
    which: str = "full",
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
    process_group: Any = None,
) -> torch.Tensor:
    """Hessian-vector product ``H v`` (or ``G v`` with ``which="gn"``) for a flat ``v`` of length
    ``p``. Cost: one gradient graph built and one backward through it (kept graph, when it fits
    ``memory_budget``), else ~ 2-4 gradient evaluations (streaming); no ``p x p`` matrix. For
    many products build :func:`hessian_operator` once, so the graph is reused. ``loss`` as in
    :func:`hessian_operator` (``"mse"``: sum over outputs, mean over samples; ``process_group``
    too). Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=4, depth=2).double()
        >>> data = (torch.randn(5, 3).double(), torch.randn(5, 1).double())
        >>> hvp(m, data, torch.ones(21), loss="mse").shape
        torch.Size([21])
    """
    op = hessian_operator(
        model, data, loss=loss, which=which, batch_size=batch_size, route=route,
        memory_budget=memory_budget, process_group=process_group,
    )  # fmt: skip
    return op.mv(_func.check_vector(v, op.dim, torch.empty((), dtype=op.dtype, device=op.device)))


def gnvp(
    model: nn.Module | Prepared,
    data,
    v: torch.Tensor,
    *,
    loss: Loss | str = "cross_entropy",
    batch_size: int | None = None,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
    process_group: Any = None,
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
        memory_budget=memory_budget, process_group=process_group,
    )  # fmt: skip


def loss_value(
    model: nn.Module | Prepared,
    data,
    *,
    loss: Loss | str = "cross_entropy",
    batch_size: int | None = None,
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
    prep = prepare(model, data, loss=loss)
    loss_fn = prep.loss_fn
    tot, n = 0.0, 0
    with torch.no_grad():
        for x, y in Stream(prep, data, batch_size, labelled=True):
            tot += float(scalar_loss(loss_fn(prep.model(x), y))) * len(x)
            n += len(x)
    return tot / n


_ORDERS = {"largest": "LA", "smallest": "SA", "magnitude": "LM"}


def hessian_eigs(
    model: nn.Module | Prepared,
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
    process_group: Any = None,
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
    ``max_iter`` is. ``route``, ``memory_budget`` and ``process_group`` as in
    :func:`hessian_operator`; the route used is ``result.route``. On a process group every rank
    draws the same start vector (``seed``, or a ``generator`` checked to agree) and returns the
    same result.

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
        memory_budget=memory_budget, process_group=process_group,
    )  # fmt: skip
    g = _generator(generator, seed, op, process_group)
    if method == "power":
        return power_iteration(op, k, tol=tol, max_iter=max_iter or 1000, generator=g)
    return lanczos(op, k, which=_ORDERS[order], tol=tol, max_iter=max_iter, generator=g, stop=stop)


def hessian_trace(
    model: nn.Module | Prepared,
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
    process_group: Any = None,
) -> TraceResult:
    """Trace of the loss Hessian (or GN part) by Hutch++ (default) or Hutchinson with
    ``num_matvecs`` Hessian-vector products (Rademacher probes, batched by vmap).

    ``tr H = sum_i lambda_i``; for ``loss="mse"`` (``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``) at an
    interpolating solution ``tr G = tr(K~)/N = (1/N) sum_i ||J_i||_F^2``. See
    :func:`~spectral_lab.linalg.hutchpp` for the error rates. Runs on the device and dtype of the
    model's parameters; inputs are cast to them. Cost: ``num_matvecs`` HVPs over ``data``.
    ``process_group`` as in :func:`hessian_operator`: the probes are drawn from the same seed on
    every rank, so every rank returns the same estimate.

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
        memory_budget=memory_budget, process_group=process_group,
    )  # fmt: skip
    g = _generator(generator, seed, op, process_group)
    if method == "hutch++":
        return hutchpp(op, num_matvecs, generator=g)
    return hutchinson(op, num_matvecs, generator=g)


def hessian_density(
    model: nn.Module | Prepared,
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
    process_group: Any = None,
) -> SpectralDensity:
    """Spectral density of the loss Hessian by stochastic Lanczos quadrature
    (:func:`~spectral_lab.linalg.spectral_density`): ``num_probes * num_steps`` HVPs. ``loss`` as
    in :func:`hessian_operator` (``"mse"``: sum over outputs, mean over samples). Runs on the
    device and dtype of the model's parameters; inputs are cast to them. Cost: ``num_probes *
    num_steps`` HVPs plus ``O(num_probes num_steps^2)`` for the tridiagonal eigenproblems.
    ``process_group`` as in :func:`hessian_operator` (the same probes on every rank).

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=4, depth=2).double()
        >>> data = (torch.randn(5, 3).double(), torch.randn(5, 1).double())
        >>> hessian_density(m, data, loss="mse", num_probes=2, num_steps=10).nodes.shape
        torch.Size([2, 10])
    """
    op = hessian_operator(
        model, data, loss=loss, which=which, batch_size=batch_size, route=route,
        memory_budget=memory_budget, process_group=process_group,
    )  # fmt: skip
    g = _generator(generator, seed, op, process_group)
    return spectral_density(
        op, num_probes, num_steps, sigma=sigma, num_points=num_points, generator=g
    )


def dense_hessian(
    model: nn.Module | Prepared,
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
