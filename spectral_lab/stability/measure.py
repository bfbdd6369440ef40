"""The left-hand sides of the consequences, measured on a model: forward, parameter and
attribution sensitivity, and the divergence threshold of full-batch gradient descent.

Each runs on the device and dtype of the model's parameters; inputs are cast to them."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_model
from .._data import DataLike, iter_batches
from .._losses import LossLike
from ..prepared import prepare
from ._common import (
    _directions,
    _loss_fn,
    _positive_eps,
)


def measure_forward_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    *,
    num_draws: int = 8,
    direction: str = "worst",
    seed: int = 0,
) -> torch.Tensor:
    """Measured ``max_{draws} ||f(x + delta) - f(x)||`` per sample for ``||delta|| = eps``, shape ``(N,)``.

    ``direction="worst"`` uses ``delta = eps * v_1(x)``, the top right singular vector of ``J_f(x)``
    (the direction the bound is tight for, to first order), ``"random"`` ``num_draws`` isotropic ones.
    Cost: one input Jacobian per sample (worst) or ``num_draws`` forward passes (random). Runs on
    the device and dtype of the model's parameters; inputs are cast to them.

    Example: along the worst direction the change is ``sigma_1(J_f) eps`` to first order.
        >>> from spectral_lab import MLP
        >>> from spectral_lab.spectra import singular_values
        >>> from spectral_lab.jacobians import input_jacobian
        >>> m, x = MLP(4, 3, width=8).double(), torch.randn(5, 4)
        >>> s1 = singular_values(input_jacobian(m, x.double()))[:, 0]
        >>> torch.allclose(measure_forward_sensitivity(m, x, 1e-6), 1e-6 * s1, rtol=1e-3)
        True
    """
    model, x = prepare(model, x).input_space(x)
    _positive_eps(eps)
    with torch.no_grad():
        f0 = model(x)
    if direction == "worst":
        from ..jacobians import input_jacobian

        J = input_jacobian(model, x).detach()
        v = torch.linalg.svd(J, full_matrices=False).Vh[:, 0, :]
        with torch.no_grad():
            out = torch.stack(
                [(model(x + s * eps * v.reshape(x.shape)) - f0).norm(dim=1) for s in (1.0, -1.0)]
            ).amax(0)
        return out
    if direction != "random":
        raise ValueError(f"direction must be 'worst' or 'random', got {direction!r}")
    g = torch.Generator().manual_seed(seed)
    best = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        for _ in range(num_draws):
            d = _directions(x.shape, eps, g, x)
            best = torch.maximum(best, (model(x + d) - f0).norm(dim=1))
    return best


def _flat_to_dict(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split rows of ``flat`` (``(..., p)``, parameters in ``named_parameters`` order) into a dict."""
    out, i = {}, 0
    for k, v in model.named_parameters():
        if not v.requires_grad:
            continue
        out[k] = flat[..., i : i + v.numel()].reshape(*flat.shape[:-1], *v.shape)
        i += v.numel()
    return out


def measure_parameter_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    delta_norm: float,
    *,
    num_draws: int = 8,
    direction: str = "random",
    seed: int = 0,
) -> torch.Tensor:
    """Measured ``||f_{theta+Delta}(x) - f_theta(x)||`` per sample for ``||Delta|| = delta_norm``
    (all parameters jointly), shape ``(N,)``; the model is left unchanged.

    ``direction="random"``: the max over ``num_draws`` isotropic ``Delta`` (shared by all samples).
    ``direction="worst"``: per sample, ``Delta = +-delta_norm * v_1``, the top right singular vector
    of ``J_theta(x_i)`` (where the first-order bound is tight). Cost: ``num_draws`` forward passes, or
    one ``C x p`` parameter Jacobian and two forward passes per sample. Runs on the device and
    dtype of the model's parameters; inputs are cast to them.

    Example: a linear model moves by at most ``||x|| ||Delta||``.
        >>> lin = torch.nn.Linear(3, 2, bias=False)
        >>> x = torch.randn(4, 3)
        >>> bool((measure_parameter_sensitivity(lin, x, 0.1) <= 0.1 * x.norm(dim=1) + 1e-6).all())
        True
    """
    from torch.func import functional_call, vmap

    prep = prepare(model, x)
    model, x = prep.model, prep.inputs(x)
    _positive_eps(delta_norm)
    params = {k: v.detach() for k, v in model.named_parameters()}
    with torch.no_grad():
        f0 = model(x)
    if direction == "worst":
        from ..jacobians import parameter_jacobian

        Jt = parameter_jacobian(model, x).detach()
        v = torch.linalg.svd(Jt, full_matrices=False).Vh[:, 0, :]

        def one(vi, xi, sign):
            moved = {
                k: params[k] + sign * delta_norm * d for k, d in _flat_to_dict(model, vi).items()
            }
            return functional_call(model, moved, (xi.unsqueeze(0),)).squeeze(0)

        with torch.no_grad():
            outs = [vmap(one, in_dims=(0, 0, None))(v, x, s) for s in (1.0, -1.0)]
        return torch.stack([(o - f0).norm(dim=1) for o in outs]).amax(0)
    if direction != "random":
        raise ValueError(f"direction must be 'worst' or 'random', got {direction!r}")
    g = torch.Generator().manual_seed(seed)
    best = None
    with torch.no_grad():
        for _ in range(num_draws):
            noise = {
                k: torch.randn(v.shape, generator=g, dtype=torch.float64).to(v)
                for k, v in params.items()
            }
            norm = math.sqrt(sum(float(t.double().square().sum()) for t in noise.values()))
            moved = {k: params[k] + noise[k] * (delta_norm / norm) for k in params}
            diff = (functional_call(model, moved, (x,)) - f0).norm(dim=1)
            best = diff if best is None else torch.maximum(best, diff)
    return best


def measure_attribution_change(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    *,
    num_draws: int = 4,
    seed: int = 0,
) -> torch.Tensor:
    """Measured ``max_{draws} ||a(x + delta) - a(x)||`` per sample, ``a(x) = grad_x f_c(x)`` with ``c``
    fixed to the clean prediction and isotropic ``||delta|| = eps``. Shape ``(N,)``.
    Cost: ``num_draws + 1`` input Jacobians. Runs on the device and dtype of the model's
    parameters; inputs are cast to them.

    Example: a linear model's saliency does not change.
        >>> lin = torch.nn.Linear(3, 2)
        >>> measure_attribution_change(lin, torch.randn(4, 3), 0.5).abs().max().item()
        0.0
    """
    from ..jacobians import input_jacobian

    model, x = prepare(model, x).input_space(x)
    _positive_eps(eps)
    g = torch.Generator().manual_seed(seed)
    J0 = input_jacobian(model, x).detach()
    c = J0.new_zeros(len(x), dtype=torch.long)
    with torch.no_grad():
        c = model(x).argmax(1)
    idx = torch.arange(len(x), device=x.device)
    a0 = J0[idx, c]
    best = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for _ in range(num_draws):
        xd = x + _directions(x.shape, eps, g, x)
        a1 = input_jacobian(model, xd).detach()[idx, c]
        best = torch.maximum(best, (a1 - a0).norm(dim=1))
    return best


def gd_diverges(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    *,
    loss: LossLike = "cross_entropy",
    steps: int = 100,
    blowup: float = 10.0,
) -> bool:
    """Whether full-batch gradient descent with step ``lr`` from the model's current weights blows
    up within ``steps`` steps (loss non-finite or above ``blowup`` times its start). Runs on a
    copy; the model is left unchanged. Cost: ``steps`` forward/backward passes over ``x``. Runs on
    the device and dtype of the model's parameters (``x`` and ``y`` must already be there).

    Example: for ``"mse"`` on a linear model ``lambda_max(H) = lambda_max(X^T X / n)``, and gradient
    descent diverges above ``2 / lambda_max(H)``.

        >>> lin = torch.nn.Linear(2, 1, bias=False).double()
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        >>> y = torch.zeros(2, 1, dtype=torch.float64)
        >>> gd_diverges(lin, x, y, 0.9, loss="mse"), gd_diverges(lin, x, y, 1.1, loss="mse")  # 2 / 2
        (False, True)
    """
    import copy

    loss_fn = _loss_fn(loss)
    m = copy.deepcopy(model)
    params = [p for p in m.parameters() if p.requires_grad]
    start = None
    for _ in range(steps + 1):
        value = loss_fn(m(x), y)
        v = float(value.detach())
        if start is None:
            start = v
        if not math.isfinite(v) or v > blowup * max(start, 1e-12):
            return True
        grads = torch.autograd.grad(value, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    return False


def measure_max_stable_lr(
    model: nn.Module,
    data: DataLike,
    *,
    loss: LossLike = "cross_entropy",
    lo: float = 1e-4,
    hi: float = 1e4,
    steps: int = 100,
    iters: int = 14,
    blowup: float = 10.0,
) -> float:
    """Largest full-batch gradient-descent step that does not blow up within ``steps`` steps,
    found by bisection in log space between ``lo`` and ``hi`` (``iters`` halvings). Empirical: the
    network is nonlinear, so this is compared with, not derived from, ``2 / lambda_max(H)``.
    Cost: ``(iters + 2) * steps`` full-batch gradients. Runs on the device and dtype of the model's
    parameters; inputs are cast to them.

    Example: the linear model of :func:`gd_diverges` has threshold ``2 / lambda_max(H) = 1``.
        >>> lin = torch.nn.Linear(2, 1, bias=False).double()
        >>> x = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> round(measure_max_stable_lr(lin, (x, torch.zeros(2, 1)), loss="mse", lo=0.1, hi=10.0), 1)
        1.0
    """
    check_model(model)
    p0 = next(model.parameters())
    x, y = next(iter_batches(data, batch_size=10**9, device=p0.device, dtype=p0.dtype))
    if y is None:
        raise ValueError("measure_max_stable_lr needs labels: pass (x, y)")
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got {lo}, {hi}")

    def bad(lr):
        return gd_diverges(model, x, y, lr, loss=loss, steps=steps, blowup=blowup)

    if bad(lo):
        return lo
    if not bad(hi):
        return hi
    a, b = math.log(lo), math.log(hi)
    for _ in range(iters):
        m = 0.5 * (a + b)
        if bad(math.exp(m)):
            b = m
        else:
            a = m
    return math.exp(a)
