"""The loss Hessian ``H = grad^2_theta L`` as a matrix-free operator: products, eigenvalues, trace,
spectral density, and its Gauss--Newton part (spec 3.4, 6.7).

``data`` is an ``(x, y)`` pair of tensors or any iterable of ``(x, y)`` batches (a DataLoader).
``loss_fn(outputs, y)`` must return the **mean** loss over a batch (a 0-dim tensor); over several
batches the operator is the Hessian of the mean loss over all samples,
``H = sum_b (n_b / N) H_b``. Strings ``"mse"`` (:func:`half_mse`, ``1/2 ||f - y||^2`` per sample)
and ``"cross_entropy"`` are accepted. Inputs are moved to the parameters' device (and dtype, when
floating point).

Mode: the model is always evaluated in **eval mode** (dropout off, batch-norm using its running
statistics, which are not updated), so the Hessian is that of a fixed deterministic function of
the parameters; the model's previous mode is restored afterwards.

Gauss--Newton split (spec 3.4): ``H = G + R`` with
``G = (1/N) sum_i J_i^T Lambda_i J_i`` (``Lambda_i = grad^2_f loss``) and the residual term ``R``.
``which="gn"`` selects ``G`` everywhere; ``"full"`` (default) is ``H``.

Example:
    >>> from spectral_lab import MLP
    >>> m = MLP(3, 1, width=8, depth=2).double()
    >>> x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    >>> hessian_eigs(m, "mse", (x, y), k=2).eigenvalues.shape
    torch.Size([2])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from . import _func
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

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_WHICH = ("full", "gn")


def half_mse(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``: the loss of spec 6.6/6.7 (mean over samples, sum
    over outputs), whose output-space Hessian is the identity (per sample, divided by ``n``)."""
    return 0.5 * ((outputs - y) ** 2).reshape(len(outputs), -1).sum(1).mean()


_LOSSES: dict[str, Loss] = {"mse": half_mse, "cross_entropy": F.cross_entropy}


def _loss(loss_fn: Loss | str) -> Loss:
    if isinstance(loss_fn, str):
        try:
            return _LOSSES[loss_fn]
        except KeyError:
            raise ValueError(
                f"unknown loss {loss_fn!r}; use one of {sorted(_LOSSES)} or a callable"
            ) from None
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable (outputs, y) -> scalar, got {type(loss_fn).__name__}"
        )
    return loss_fn


def _scalar(value: torch.Tensor) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"loss_fn must return a scalar (0-dim) tensor, got {shape}; use reduction='mean'"
        )
    return value


def _prepare(model: nn.Module, data) -> tuple[dict, list | Iterable]:
    params = _func.trainable(model)
    p0 = next(iter(params.values()))

    def cast(batch):
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise TypeError(
                "data must be an (x, y) pair of tensors or an iterable of (x, y) batches"
            )
        x, y = batch
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("data batches must be (x, y) pairs of torch.Tensors")
        if x.numel() == 0 or len(x) == 0:
            raise ValueError("data contains an empty batch; pass at least one sample")
        if len(x) != len(y):
            raise ValueError(f"x and y have different numbers of samples ({len(x)} vs {len(y)})")
        if torch.is_floating_point(x):
            x = x.to(p0)
            if not torch.isfinite(x).all():
                raise ValueError("x contains NaN/Inf values; clean those samples first")
        else:
            raise TypeError(f"x has dtype {x.dtype}; convert it to floating point first")
        y = y.to(p0) if torch.is_floating_point(y) else y.to(p0.device)
        return x, y

    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        batches = [cast(data)]
    elif isinstance(data, Iterable):

        class _Batches:
            def __iter__(self):
                n = 0
                for b in data:
                    n += 1
                    yield cast(b)
                if n == 0:
                    raise ValueError(
                        "data yielded no batches (an empty DataLoader?); pass some data"
                    )

        batches = _Batches()
    else:
        raise TypeError("data must be an (x, y) pair of tensors or an iterable of (x, y) batches")
    return params, batches


def _total(batches) -> int:
    return sum(len(x) for x, _ in batches)


def hessian_operator(
    model: nn.Module, loss_fn: Loss | str, data, which: str = "full"
) -> LinearOperator:
    """The loss Hessian (``which="full"``) or its Gauss--Newton part (``"gn"``) as a
    :class:`~spectral_lab.linalg.LinearOperator` on flat parameter vectors (length ``p``).

    Full: forward-over-reverse ``jvp(grad L)(v)`` per batch (~ 2-4 gradient costs); GN:
    ``J^T (grad^2_f loss) (J v)`` with one JVP, an output-space HVP and one VJP. Blocks of vectors
    are vmapped. Products over a DataLoader accumulate batch by batch (memory of one batch).

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=4, depth=2).double()
        >>> op = hessian_operator(m, "mse", (torch.randn(5, 3).double(), torch.randn(5, 1).double()))
        >>> op.dim
        21
    """
    if which not in _WHICH:
        raise ValueError(
            f"which must be 'full' (the Hessian) or 'gn' (Gauss-Newton), got {which!r}"
        )
    loss = _loss(loss_fn)
    params, batches = _prepare(model, data)
    p0 = next(iter(params.values()))
    f = _func.functional(model)
    n_total = [None]

    def batch_product(x, y, V):  # V: dict of tangents (with a leading batch dim if vmapped)
        if which == "full":

            def lp(p):
                return _scalar(loss(f(p, x), y))

            return torch.func.jvp(torch.func.grad(lp), (params,), (V,))[1]
        out, jv = torch.func.jvp(lambda p: f(p, x), (params,), (V,))
        _, hu = torch.func.jvp(torch.func.grad(lambda o: _scalar(loss(o, y))), (out,), (jv,))
        _, vjp_fn = torch.func.vjp(lambda p: f(p, x), params)
        return vjp_fn(hu)[0]

    def product(v: torch.Tensor, batched: bool) -> torch.Tensor:
        with _func.eval_mode(model):
            if n_total[0] is None:
                n_total[0] = _total(batches)
            acc = None
            for x, y in batches:
                w = len(x) / n_total[0]
                if batched:
                    res = torch.func.vmap(
                        lambda col, x=x, y=y: _func.flatten(
                            batch_product(x, y, _func.unflatten(col, params))
                        )
                    )(v.T).T
                else:
                    res = _func.flatten(batch_product(x, y, _func.unflatten(v, params)))
                acc = w * res if acc is None else acc + w * res
            return acc.detach()

    return LinearOperator(
        lambda v: product(v, False),
        _func.num_params(params),
        p0.dtype,
        p0.device,
        matmat=lambda V: product(V, True),
        name="Hessian" if which == "full" else "Gauss-Newton",
    )


def hvp(
    model: nn.Module, loss_fn: Loss | str, data, v: torch.Tensor, which: str = "full"
) -> torch.Tensor:
    """Hessian-vector product ``H v`` (or ``G v`` with ``which="gn"``) for a flat ``v`` of length
    ``p``, over a batch or a DataLoader. Cost ~ 2-4 gradient evaluations; no ``p x p`` matrix.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=4, depth=2).double()
        >>> hvp(m, "mse", (torch.randn(5, 3).double(), torch.randn(5, 1).double()), torch.ones(21)).shape
        torch.Size([21])
    """
    op = hessian_operator(model, loss_fn, data, which)
    p0 = next(iter(_func.trainable(model).values()))
    return op.mv(_func.check_vector(v, op.dim, p0))


def gnvp(model: nn.Module, loss_fn: Loss | str, data, v: torch.Tensor) -> torch.Tensor:
    """Gauss--Newton-vector product ``G v = (1/N) sum_i J_i^T Lambda_i J_i v`` (spec 3.4); the
    same as ``hvp(..., which="gn")``. ``G`` is PSD for convex losses (MSE, cross-entropy)."""
    return hvp(model, loss_fn, data, v, which="gn")


def loss_value(model: nn.Module, loss_fn: Loss | str, data) -> float:
    """The mean loss over ``data`` (batches weighted by size), in eval mode."""
    loss = _loss(loss_fn)
    _, batches = _prepare(model, data)
    tot, n = 0.0, 0
    with torch.no_grad(), _func.eval_mode(model):
        for x, y in batches:
            tot += float(_scalar(loss(model(x), y))) * len(x)
            n += len(x)
    return tot / n


_ORDERS = {"largest": "LA", "smallest": "SA", "magnitude": "LM"}


def hessian_eigs(
    model: nn.Module,
    loss_fn: Loss | str,
    data,
    k: int = 1,
    method: str = "lanczos",
    which: str = "full",
    order: str = "largest",
    tol: float = 1e-6,
    max_iter: int | None = None,
    seed: int = 0,
) -> EigResult:
    """Top-``k`` eigenpairs of the loss Hessian (or Gauss--Newton part) from products only.

    ``method="lanczos"`` (default; full reorthogonalisation, ``order`` = ``"largest"`` /
    ``"smallest"`` algebraic or ``"magnitude"``) or ``"power"`` (deflated power iteration, the
    PyHessian route; always largest magnitude). Stops when every Ritz residual is at most
    ``tol |lambda|``, so each eigenvalue is within that relative error. ``lambda_max`` is the
    sharpness: gradient descent on the local quadratic model is stable iff ``eta < 2/lambda_max``
    (spec 6.7). Eigenvectors are flat parameter vectors ``(p, k)``. Cost: ``result.matvecs``
    Hessian-vector products (typically ``~2k + 20`` for Lanczos).

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=8, depth=2).double()
        >>> r = hessian_eigs(m, "mse", (torch.randn(9, 3).double(), torch.randn(9, 1).double()))
        >>> r.converged
        True
    """
    if method not in ("lanczos", "power"):
        raise ValueError(f"method must be 'lanczos' or 'power', got {method!r}")
    if order not in _ORDERS:
        raise ValueError(f"order must be one of {sorted(_ORDERS)}, got {order!r}")
    op = hessian_operator(model, loss_fn, data, which)
    if method == "power":
        return power_iteration(op, k, tol=tol, max_iter=max_iter or 1000, seed=seed)
    return lanczos(op, k, which=_ORDERS[order], tol=tol, max_iter=max_iter, seed=seed)


def hessian_trace(
    model: nn.Module,
    loss_fn: Loss | str,
    data,
    method: str = "hutch++",
    num_matvecs: int = 60,
    which: str = "full",
    seed: int = 0,
) -> TraceResult:
    """Trace of the loss Hessian (or GN part) by Hutch++ (default) or Hutchinson with
    ``num_matvecs`` Hessian-vector products (Rademacher probes, batched by vmap).

    ``tr H = sum_i lambda_i``; for ½-MSE at an interpolating solution ``tr G = tr(K~)/N =
    (1/N) sum_i ||J_i||_F^2``. See :func:`~spectral_lab.linalg.hutchpp` for the error rates.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=4, depth=2).double()
        >>> hessian_trace(m, "mse", (torch.randn(5, 3).double(), torch.randn(5, 1).double())).method
        'hutch++'
    """
    op = hessian_operator(model, loss_fn, data, which)
    if method == "hutch++":
        return hutchpp(op, num_matvecs, seed=seed)
    if method == "hutchinson":
        return hutchinson(op, num_matvecs, seed=seed)
    raise ValueError(f"method must be 'hutch++' or 'hutchinson', got {method!r}")


def hessian_density(
    model: nn.Module,
    loss_fn: Loss | str,
    data,
    num_probes: int = 4,
    num_steps: int = 40,
    which: str = "full",
    sigma: float | None = None,
    num_points: int = 512,
    seed: int = 0,
) -> SpectralDensity:
    """Spectral density of the loss Hessian by stochastic Lanczos quadrature
    (:func:`~spectral_lab.linalg.spectral_density`): ``num_probes * num_steps`` HVPs.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=4, depth=2).double()
        >>> d = hessian_density(m, "mse", (torch.randn(5, 3).double(), torch.randn(5, 1).double()), 2, 10)
        >>> d.nodes.shape
        torch.Size([2, 10])
    """
    op = hessian_operator(model, loss_fn, data, which)
    return spectral_density(
        op, num_probes, num_steps, sigma=sigma, num_points=num_points, seed=seed
    )


def dense_hessian(
    model: nn.Module, loss_fn: Loss | str, data, which: str = "full", max_params: int = 5000
) -> torch.Tensor:
    """The full ``p x p`` Hessian (or GN matrix) from ``p`` batched products; toy nets only
    (refuses ``p > max_params``). Cost ``p`` HVPs, memory ``p^2``."""
    op = hessian_operator(model, loss_fn, data, which)
    if op.dim > max_params:
        raise ValueError(
            f"the model has p={op.dim} parameters > max_params={max_params}; a dense Hessian "
            "would be too large: use hessian_eigs / hessian_trace, or raise max_params"
        )
    H = op.dense()
    return 0.5 * (H + H.T)


@dataclass(frozen=True)
class SharpnessTrace:
    """Full-batch gradient descent with the sharpness ``lambda_max(H)`` measured along the way."""

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


def gd_with_sharpness(
    model: nn.Module,
    loss_fn: Loss | str,
    data: tuple[torch.Tensor, torch.Tensor],
    lr: float,
    steps: int,
    every: int = 10,
    tol: float = 1e-3,
    seed: int = 0,
    measure: bool = True,
) -> SharpnessTrace:
    """Train ``model`` **in place** by full-batch gradient descent with step ``lr`` on ``data`` and
    record the loss each step and the sharpness ``lambda_max(H)`` (Lanczos, relative accuracy
    ``tol``) every ``every`` steps. With ½-MSE the sharpness typically rises until it hovers near
    ``2/lr`` -- the edge of stability (Cohen et al. 2021). Cost per step: one gradient, plus a
    Lanczos run (~20-40 HVPs) every ``every`` steps.
    """
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be positive and finite, got {lr!r}")
    if not isinstance(steps, int) or steps < 1 or not isinstance(every, int) or every < 1:
        raise ValueError("steps and every must be positive ints")
    loss = _loss(loss_fn)
    params, batches = _prepare(model, data)
    ((x, y),) = list(batches)
    names = list(params)
    ps = dict(model.named_parameters())
    losses, sh_steps, sh = [], [], []
    v0 = None
    for t in range(steps + 1):
        if measure and (t % every == 0 or t == steps):
            g = torch.Generator(device=x.device).manual_seed(seed)
            r = lanczos(hessian_operator(model, loss, (x, y)), 1, tol=tol, v0=v0, generator=g)
            v0 = r.eigenvectors[:, 0]
            sh_steps.append(t)
            sh.append(float(r.eigenvalues[0]))
        with _func.eval_mode(model):
            value = _scalar(loss(model(x), y))
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
    ``max_i |1 - eta lambda_i|^{2k}``.

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


def gd_losses(
    model: nn.Module,
    loss_fn: Loss | str,
    data: tuple[torch.Tensor, torch.Tensor],
    lr: float,
    steps: int,
) -> torch.Tensor:
    """Losses of ``steps`` full-batch gradient-descent steps with step ``lr`` on a **copy** of
    ``model`` (the model is not changed): shape ``(steps+1,)``, stopping (``inf``) on overflow."""
    import copy

    m = copy.deepcopy(model)
    tr = gd_with_sharpness(m, loss_fn, data, lr, steps, every=steps + 1, measure=False)
    out = torch.full((steps + 1,), math.inf, dtype=torch.float64)
    out[: len(tr.loss)] = tr.loss
    return out
