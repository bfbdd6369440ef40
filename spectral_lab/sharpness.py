"""Gradient descent on the loss with its sharpness ``lambda_max(H)`` measured along the way, and
gradient descent on a quadratic: the step-size side of the loss Hessian (chapter 04).

:func:`gd_with_sharpness` trains a model by full-batch gradient descent and records the loss every
step and the sharpness (Lanczos on :func:`~spectral_lab.hessian.hessian_operator`) every ``every``
steps; :func:`gd_losses` runs the same descent on a copy and returns only the losses;
:func:`gd_quadratic` is the closed-form toy ``x_{k+1} = (I - eta H) x_k``. All three are
re-exported by :mod:`spectral_lab.hessian` (``sl.hessian.gd_with_sharpness``), which this module
imports inside :func:`gd_with_sharpness` only, so the two modules import each other in one direction. ``loss="mse"`` is
``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``, the loss :func:`~spectral_lab.training.train` minimises.

Example: a step below ``2 / lambda_max = 2/3`` shrinks the loss ``1/2 x^T H x``.
    >>> gd_quadratic(torch.diag(torch.tensor([1.0, 3.0])), torch.ones(2), 0.5, 1).tolist()
    [2.0, 0.5]
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from . import _func
from ._losses import Loss, resolve_loss, scalar_loss
from ._random import resolve_generator
from ._results import Result
from .linalg import lanczos

__all__ = ["SharpnessTrace", "gd_losses", "gd_quadratic", "gd_with_sharpness"]


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
    from .hessian import _labelled, _prepare, hessian_operator  # hessian re-exports this module

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
