"""Spectral penalties that plug into any training loop.

"A Unified Matrix-Spectral Framework for Stability and Interpretability in Deep Learning" trains
"stable" models with a spectral regulariser whose exact form and strength it does not state in a
form we could use; every penalty, estimator and default below is this library's choice.

Each penalty is a differentiable function of the model's parameters. :func:`make_regularizer`
wraps one as ``extra_loss(model, x, y, logits) -> scalar`` for :func:`spectral_lab.train`.

The one exception to the library's mode policy (:func:`spectral_lab.prepare` analyses every model in
eval mode): a penalty is part of the training loss, so it is taken on the model **as it trains**,
in whatever mode the training loop set (dropout on, BatchNorm on the batch), on the training batch.
Analyse the trained model with the other calls.

| name | penalty | estimator | cost per step (on the ``b`` penalised samples) |
| --- | --- | --- | --- |
| ``jacobian_frobenius`` (R1, default) | ``lam * E_x ||J_f(x)||_F^2`` | ``C ||v^T J||^2``, ``v`` uniform on the sphere of ``R^C`` (Hoffman, Roberts & Yaida 2019) | 1 forward + 1 double-backward per projection |
| ``jacobian_spectral`` (R2) | ``lam * E_x sigma_1(J_f(x))^2`` | power iteration with JVP/VJP, stop-gradient on the iterate | ``max_iter`` JVP+VJP pairs without graph, then 1 double-backward |
| ``weight_spectral`` (R3) | ``lam * sum_l sigma_1(W_l)^2`` | one power iteration per step on a persistent vector (Miyato et al. 2018; conv kernels reshaped to ``out x in*k*k``) | two mat-vecs per layer, data free |
| ``input_gradient`` (R4) | ``lam * E_x ||grad_x loss||^2`` | double back-prop (Drucker & LeCun 1992) | 1 forward + 1 double-backward |
| ``spectral_entropy`` (R5) | ``lam * (log r - SE(J_f(x)))`` (``direction="increase"``) or ``lam * SE`` | full Jacobian (``C`` double-backwards) and its SVD | ``C`` double-backwards |

Hard layer-weight spectral normalisation (Miyato et al. 2018) is :func:`apply_spectral_norm`.
``benchmarks/bench_regularizers.py`` measures the cost of each against a plain training step.

Example:
    >>> from spectral_lab import MLP, load_dataset, train
    >>> reg = make_regularizer("jacobian_frobenius", strength=0.01)
    >>> hist = train(MLP(64, 10), load_dataset("digits"), epochs=1, extra_loss=reg, progress=False)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, jvp

from ._checks import check_logits, check_tensor
from ._losses import Loss, resolve_loss
from ._random import resolve_generator
from .spectra import spectral_entropy

REGULARIZERS = (
    "none",
    "jacobian_frobenius",
    "jacobian_spectral",
    "weight_spectral",
    "input_gradient",
    "spectral_entropy",
)


def _to_model(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = check_tensor(x, "x", min_dim=2)
    p = next(model.parameters(), None)
    return x if p is None else x.to(device=p.device, dtype=p.dtype)


def _forward_with_input_grad(model: nn.Module, x: torch.Tensor):
    x = _to_model(model, x)
    xg = x.detach().requires_grad_(True)
    return xg, check_logits(model(xg))


def jacobian_frobenius_norm(
    model: nn.Module,
    x: torch.Tensor,
    *,
    num_draws: int = 1,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Unbiased estimate of ``||J_f(x)||_F^2`` per sample ``(N,)``, differentiable in the parameters.

    ``||J||_F^2 = C E_v ||v^T J||^2`` for ``v`` uniform on the unit sphere of ``R^C`` (since
    ``E v v^T = I / C``); averaged over ``num_draws`` random projections (Hoffman, Roberts & Yaida
    2019), drawn from ``generator`` or ``seed`` (default 0). Runs on the device and dtype of the
    model's parameters; inputs are cast to them.
    Cost: one forward and ``num_draws`` backward passes with ``create_graph=True``.

    Example: for a linear map every sample has ``||J||_F^2 = ||W||_F^2``; the estimate is unbiased.
        >>> lin = torch.nn.Linear(5, 3)
        >>> est = jacobian_frobenius_norm(lin, torch.randn(2000, 5)).mean()
        >>> bool(abs(est / lin.weight.pow(2).sum() - 1) < 0.1)
        True
    """
    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws}")
    xg, out = _forward_with_input_grad(model, x)
    n, c = out.shape
    g = resolve_generator(generator, seed, out.device)
    total = out.new_zeros(n)
    for _ in range(num_draws):  # a few projections, each batched over all samples
        v = torch.randn((n, c), generator=g, device=out.device, dtype=out.dtype)
        v = v / v.norm(dim=1, keepdim=True)
        (vj,) = torch.autograd.grad((out * v).sum(), xg, create_graph=True, retain_graph=True)
        total = total + c * vj.flatten(1).pow(2).sum(1)
    return total / num_draws


def jacobian_spectral_norm(
    model: nn.Module,
    x: torch.Tensor,
    *,
    max_iter: int = 3,
    generator: torch.Generator | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Power-iteration estimate of ``sigma_1(J_f(x))`` per sample ``(N,)``, differentiable.

    Iterate ``u <- J v / ||J v||`` (JVP, ``torch.func.jvp``) and ``v <- J^T u / ||J^T u||`` (VJP) with
    the parameters detached, starting from a random ``v``; then return ``||J^T u||`` computed with
    ``create_graph=True`` so its gradient is the gradient of ``sigma_1`` at the converged singular
    pair (stop-gradient on the iterate, as in the spectral normalisation of Miyato et al. 2018).
    The estimate is a lower bound that increases
    with ``max_iter`` (exactly ``max_iter`` iterations are run; there is no tolerance). The start
    vector is drawn from ``generator`` or ``seed`` (default 0). Runs on the device and dtype of
    the model's parameters; inputs are cast to them.
    Cost: ``max_iter`` JVP+VJP pairs (no graph) plus one double-backward.

    Example: a linear map's Jacobian is its weight; 20 iterations find ``sigma_1(W)``.
        >>> lin = torch.nn.Linear(5, 3)
        >>> s = jacobian_spectral_norm(lin, torch.randn(2, 5), max_iter=20)
        >>> torch.allclose(s, torch.linalg.matrix_norm(lin.weight, 2).expand(2), rtol=1e-3)
        True
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    x = _to_model(model, x)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())

    def f(z):
        return functional_call(model, (params, buffers), (z,))

    g = resolve_generator(generator, seed, x.device)
    v = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    v = v / v.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    xd = x.detach()
    for _ in range(max_iter):
        _, ju = jvp(f, (xd,), (v,))
        u = ju / ju.norm(dim=1, keepdim=True).clamp_min(1e-30)
        with torch.enable_grad():
            xr = xd.clone().requires_grad_(True)
            (jt,) = torch.autograd.grad((f(xr) * u).sum(), xr)
        v = jt / jt.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1))).clamp_min(1e-30)
    _, ju = jvp(f, (xd,), (v,))
    u = (ju / ju.norm(dim=1, keepdim=True).clamp_min(1e-30)).detach()
    xg, out = _forward_with_input_grad(model, x)
    (jt,) = torch.autograd.grad((out * u).sum(), xg, create_graph=True)
    return jt.flatten(1).norm(dim=1)


def differentiable_input_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``J_f(x)`` ``(N, C, d)`` with the graph kept (for penalties on its spectrum). Runs on the
    device and dtype of the model's parameters; inputs are cast to them.
    Cost: ``C`` backward passes with ``create_graph=True``.

    Example:
        >>> lin = torch.nn.Linear(5, 3)
        >>> J = differentiable_input_jacobian(lin, torch.randn(2, 5))
        >>> J.shape, torch.allclose(J[0], lin.weight), J.requires_grad
        (torch.Size([2, 3, 5]), True, True)
    """
    xg, out = _forward_with_input_grad(model, x)
    rows = [
        torch.autograd.grad(out[:, k].sum(), xg, create_graph=True, retain_graph=True)[0].flatten(1)
        for k in range(out.shape[1])
    ]
    return torch.stack(rows, 1)


def spectral_entropy_penalty(
    model: nn.Module, x: torch.Tensor, *, direction: str = "increase", base: float = math.e
) -> torch.Tensor:
    """Per-sample spectral-entropy penalty on ``J_f(x)`` (experimental; which direction helps is
    not settled): ``log r - SE(J)`` (>= 0, pushes towards a flat spectrum) for
    ``direction="increase"``, ``SE(J)`` for ``"decrease"``, with ``r = min(C, d)`` and the energy
    normalisation ``p_k = sigma_k^2 / sum_j sigma_j^2``.
    Runs on the device and dtype of the model's parameters; inputs are cast to them.
    Cost: ``C`` double-backwards plus batched SVDs of ``C x d`` matrices.

    Example: an orthogonal linear map has a flat spectrum, so the penalty is 0.
        >>> lin = torch.nn.Linear(3, 3, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.eye(3))
        >>> spectral_entropy_penalty(lin, torch.randn(2, 3)).abs().max().item() < 1e-6
        True
    """
    if direction not in ("increase", "decrease"):
        raise ValueError(f"direction must be 'increase' or 'decrease', got {direction!r}")
    J = differentiable_input_jacobian(model, x)
    se = spectral_entropy(J, base=base)
    if direction == "decrease":
        return se
    r = min(J.shape[-2:])
    return math.log(r) / math.log(base) - se


def weight_spectral_penalty(model: nn.Module, state: dict | None = None) -> torch.Tensor:
    """``sum_l sigma_1(W_l)^2`` over Linear and Conv2d weights (Yoshida & Miyato 2017, "Spectral
    Norm Regularization for Improving the Generalizability of Deep Learning");
    conv kernels are reshaped to ``(out, in*k*k)`` (a proxy, not the conv operator's norm).

    ``state=None``: exact ``sigma_1`` by SVD (one SVD per layer). With a ``state`` dict (kept by the
    caller across steps, as :func:`make_regularizer` does): one power iteration per call on a
    persistent left vector ``u`` and ``sigma_1 ≈ u^T W v`` (Miyato et al. 2018), two mat-vecs per
    layer. Data free either way. Runs on the device and dtype of the model's parameters.

    Example:
        >>> lin = torch.nn.Linear(3, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        >>> weight_spectral_penalty(lin).item()
        9.0
    """
    terms = []
    for m in model.modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        W = m.weight.flatten(1)
        if state is None:
            terms.append(torch.linalg.matrix_norm(W, ord=2) ** 2)
            continue
        key = id(m)
        with torch.no_grad():
            u = state.get(key)
            if u is None or u.shape[0] != W.shape[0]:
                g = torch.Generator(device=W.device).manual_seed(0)
                u = torch.randn(W.shape[0], generator=g, device=W.device, dtype=W.dtype)
            v = W.T @ u
            v = v / v.norm().clamp_min(1e-30)
            u = W @ v
            u = u / u.norm().clamp_min(1e-30)
            state[key] = u
        terms.append((u @ W @ v) ** 2)
    if not terms:
        raise ValueError("model has no Linear or Conv2d layers to penalise")
    return torch.stack(terms).sum()


def input_gradient_penalty(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str | Loss = "cross_entropy"
) -> torch.Tensor:
    """``||grad_x loss(f(x_n), y_n)||^2`` per sample ``(N,)`` (double back-prop, Drucker & LeCun
    1992, "Improving generalization performance using double backpropagation"), with
    the per-sample loss of :func:`~spectral_lab._losses.resolve_loss` (``"cross_entropy"``, or
    ``"mse"`` = ``1/2 ||f(x_n) - y_n||^2`` summed over outputs). Runs on the device and dtype of
    the model's parameters; inputs are cast to them.
    Cost: one forward and one backward pass with ``create_graph=True``.

    Example: for ``f(x) = W x`` and ``"mse"`` the gradient is ``W^T (W x - y)``.
        >>> lin = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(2 * torch.eye(2))
        >>> input_gradient_penalty(lin, torch.ones(1, 2), torch.zeros(1, 2), loss="mse").item()
        32.0
    """
    loss_fn = resolve_loss(loss)
    xg, out = _forward_with_input_grad(model, x)
    # the registry's losses are batch means; times N gives the sum of per-sample losses, whose
    # gradient with respect to x_n is the per-sample gradient (samples do not interact)
    total = loss_fn(out, y.to(out.device)) * len(out)
    (gx,) = torch.autograd.grad(total, xg, create_graph=True)
    return gx.flatten(1).pow(2).sum(1)


def apply_spectral_norm(model: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Hard layer-weight spectral normalisation (Miyato et al. 2018) on every Linear/Conv2d, in place:
    ``W <- W / sigma_1(W)`` via ``torch.nn.utils.parametrizations.spectral_norm`` (one power
    iteration per forward pass in train mode). Returns the model.

    Cost: two mat-vecs per layer and forward pass in train mode. Runs on the device and dtype of
    the model's parameters.

    Example:
        >>> lin = apply_spectral_norm(torch.nn.Linear(4, 3))
        >>> for _ in range(30):  # train mode: each forward pass runs one power iteration
        ...     _ = lin(torch.randn(1, 4))
        >>> round(float(torch.linalg.matrix_norm(lin.weight.detach(), 2)), 3)
        1.0
    """
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(model.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            spectral_norm(m, n_power_iterations=n_power_iterations)
    return model


def make_regularizer(
    name: str = "jacobian_frobenius",
    strength: float = 0.01,
    *,
    max_samples: int | None = 32,
    seed: int = 0,
    **kwargs,
) -> Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """``extra_loss(model, x, y, logits)`` adding ``strength * penalty`` (see module table).

    ``max_samples``: penalise only the first ``b`` samples of each batch (batches are shuffled, so
    this is an unbiased subsample; choice, not from the paper) to bound the cost. ``kwargs`` go to
    the penalty (``num_draws``, ``max_iter``, ``direction``, ``base``). Random draws come from one generator seeded with ``seed`` on the
    first call. The returned function runs on the device and dtype of the model's parameters;
    inputs are cast to them. ``name="none"`` returns None.
    Cost: that of the penalty (module table) on ``max_samples`` samples per step.

    Example:
        >>> reg = make_regularizer("weight_spectral", strength=0.5)
        >>> lin = torch.nn.Linear(3, 3, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(2 * torch.eye(3))
        >>> x, y = torch.randn(4, 3), torch.zeros(4, dtype=torch.long)
        >>> round(reg(lin, x, y, lin(x)).item(), 4)  # 0.5 * sigma_1^2
        2.0
        >>> make_regularizer("none") is None
        True
    """
    if name not in REGULARIZERS:
        raise ValueError(f"regulariser must be one of {REGULARIZERS}, got {name!r}")
    if strength < 0 or not math.isfinite(strength):
        raise ValueError(f"strength must be a finite number >= 0, got {strength}")
    if name == "none" or strength == 0:
        return None
    state: dict = {"gen": None, "weights": {}}

    def extra_loss(model, x, y, logits):
        if state["gen"] is None:
            state["gen"] = resolve_generator(seed=seed, device=x.device)
        xs, ys = (x, y) if max_samples is None else (x[:max_samples], y[:max_samples])
        if name == "jacobian_frobenius":
            pen = jacobian_frobenius_norm(model, xs, generator=state["gen"], **kwargs).mean()
        elif name == "jacobian_spectral":
            pen = jacobian_spectral_norm(model, xs, generator=state["gen"], **kwargs).pow(2).mean()
        elif name == "weight_spectral":
            pen = weight_spectral_penalty(model, state["weights"])
        elif name == "input_gradient":
            pen = input_gradient_penalty(model, xs, ys, **kwargs).mean()
        else:
            pen = spectral_entropy_penalty(model, xs, **kwargs).mean()
        return strength * pen

    extra_loss.name, extra_loss.strength = name, strength
    return extra_loss
