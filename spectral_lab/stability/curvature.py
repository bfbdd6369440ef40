"""The curvature form of the attribution bound: ``||a(x + delta) - a(x)|| <= min(2 Gamma, M eps)``,
with ``M`` the input Hessian of the logit measured along the segment.

Each function runs on the device and dtype of the model's parameters; the Hessians are returned
in float64."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_tensor
from ..prepared import prepare
from ._common import (
    _ELEMENTS,
    _check_chunk,
    _directions,
    _positive_eps,
    _predict,
    _swappable,
)


def logit_hessian_norm(
    model: nn.Module,
    x: torch.Tensor,
    c: torch.Tensor,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``sigma_1(grad_x^2 f_c(x_i))`` per sample, shape ``(N,)``: the spectral norm of the input
    Hessian of logit ``c[i]`` at ``x[i]``.

    Dense and exact: the ``d x d`` Hessian is formed with ``torch.func.hessian`` (forward-over-reverse
    autograd, i.e. a Hessian-vector product with every basis vector), vectorised over samples, and
    its norm is ``max |eigenvalue|`` (``eigvalsh``). Cost: ``d`` Hessian-vector products per sample,
    ``chunk_size * d^2`` memory (``chunk_size`` samples at once; by default as many as fit in
    ``2**24`` elements).

    Example: ``f(x) = (x_1^2 + 3 x_2^2, 0)`` has the constant input Hessian ``diag(2, 6)``.
        >>> class Quad(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.w = torch.nn.Parameter(torch.tensor([1.0, 3.0]))
        ...     def forward(self, x):
        ...         return torch.stack([(self.w * x**2).sum(1), 0 * x[:, 0]], 1)
        >>> logit_hessian_norm(Quad(), torch.randn(2, 2), torch.tensor([0, 0])).tolist()
        [6.0, 6.0]
    """
    model = prepare(model, x).model  # the one entrance: eval mode, checked behaviour
    x = check_tensor(x, "x", min_dim=2)
    d = math.prod(x.shape[1:])
    c = torch.as_tensor(c, device=x.device).long()
    _check_chunk(chunk_size)
    chunk = chunk_size or max(1, _ELEMENTS // max(1, d * d))
    out = []
    for i in range(0, len(x), chunk):
        ev = torch.linalg.eigvalsh(_logit_hessians(model, x[i : i + chunk], c[i : i + chunk]))
        out.append(ev.abs().amax(1))
    return torch.cat(out).to(x.dtype)


def _logit_hessians(model: nn.Module, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Dense symmetric input Hessians ``grad_x^2 f_{c_i}(x_i)``, ``(N, d, d)`` float64, by
    ``torch.func.hessian`` (forward-over-reverse autograd) vectorised over samples."""
    from torch.func import functional_call, hessian, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    d = math.prod(x.shape[1:])
    onehot = F.one_hot(c, _predict(model, x[:1]).shape[1]).to(x)

    def fc(xi, oi):
        out = functional_call(model, (params, buffers), (xi.unsqueeze(0),)).squeeze(0)
        return (out * oi).sum()

    h = vmap(hessian(fc))(x, onehot).reshape(-1, d, d).double()
    return 0.5 * (h + h.transpose(1, 2))


def segment_curvature(
    model: nn.Module, x: torch.Tensor, delta: torch.Tensor, c: torch.Tensor, points: int = 9
) -> torch.Tensor:
    """``M_i = max_t sigma_1(grad_x^2 f_c(x_i + t delta_i))`` over ``points`` equally spaced
    ``t in [0, 1]`` (both ends included), shape ``(N,)``: a sup over sampled points of the segment,
    with :func:`logit_hessian_norm` at each. A grid sup can under-estimate the true sup, which is
    why :class:`CurvatureCheck` allows a small relative tolerance. Cost: ``points`` calls of
    :func:`logit_hessian_norm` (``points * d`` Hessian-vector products per sample).

    Example: a linear model has no curvature.
        >>> lin = torch.nn.Linear(3, 2)
        >>> x = torch.randn(2, 3)
        >>> segment_curvature(lin, x, 0.1 * torch.randn(2, 3), torch.tensor([0, 1]), points=3).tolist()
        [0.0, 0.0]
    """
    if points < 2:
        raise ValueError(f"points must be >= 2 (both ends of the segment), got {points}")
    ts = torch.linspace(0.0, 1.0, points).tolist()
    measure = _swappable("logit_hessian_norm")
    return torch.stack([measure(model, x + t * delta, c) for t in ts]).amax(0)


@dataclass(frozen=True, repr=False)
class CurvatureCheck:
    """The curvature form of the attribution bound, measured (see
    :func:`check_attribution_curvature`). For every perturbation size ``eps[e]`` and sample ``i``:
    ``change[e, i] = ||a(x_i + delta) - a(x_i)||`` (worst of the two signs) against
    ``bound[e, i] = min(2 gamma, curvature[e, i] * eps[e])``, where ``curvature[e, i]`` is the
    segment sup :func:`segment_curvature`. Unlike ``2 Gamma`` alone this can fail: a curvature
    measure that is too small (a dropped factor, the Hessian of another logit, a missing segment
    sup) is caught where ``M eps < 2 gamma``. Built by :func:`check_attribution_curvature`.

    Example:
        >>> c = CurvatureCheck(eps=(0.1,), change=torch.tensor([[0.05]]), curvature=torch.tensor([[1.0]]),
        ...                    gamma=1.0, points=3, direction="worst")
        >>> c.bound.tolist(), c.holds  # min(2 * 1, 1 * 0.1)
        ([[0.1]], True)
    """

    eps: tuple[float, ...]
    change: torch.Tensor
    curvature: torch.Tensor
    gamma: float
    points: int
    direction: str
    rtol: float = 0.02

    @property
    def bound(self) -> torch.Tensor:
        e = torch.tensor(self.eps, dtype=self.curvature.dtype).unsqueeze(1)
        return torch.minimum(self.curvature * e, torch.full_like(self.curvature, 2 * self.gamma))

    @property
    def holds(self) -> bool:
        """Whether every measured change is at most its bound (to ``rtol``: the grid sup)."""
        return bool((self.change <= self.bound * (1 + self.rtol)).all())

    @property
    def ratio(self) -> list[float]:
        """``max_i change/bound`` per ``eps`` (1 = tight, > 1 + rtol = violated)."""
        b = self.bound
        r = torch.where(b > 0, self.change / b.clamp_min(1e-300), torch.where(
            self.change > 0, torch.full_like(b, math.inf), torch.zeros_like(b)))  # fmt: skip
        return [float(v) for v in r.amax(1)]

    @property
    def curvature_branch(self) -> list[float]:
        """Per ``eps``, the fraction of samples where ``M eps < 2 gamma`` (the falsifiable branch)."""
        e = torch.tensor(self.eps, dtype=self.curvature.dtype).unsqueeze(1)
        return [float(v) for v in (self.curvature * e < 2 * self.gamma).double().mean(1)]

    def __repr__(self) -> str:
        rows = "; ".join(
            f"eps={e:g}: max change/bound={r:.3g} (M eps < 2 Gamma on {f:.0%})"
            for e, r, f in zip(self.eps, self.ratio, self.curvature_branch)
        )
        return f"CurvatureCheck(2 Gamma={2 * self.gamma:.4g}; {rows}; holds={self.holds})"


def check_attribution_curvature(
    model: nn.Module,
    x: torch.Tensor,
    eps: Sequence[float] = (1e-3, 1e-2, 1e-1, 0.5),
    *,
    gamma: float | None = None,
    points: int = 9,
    direction: str = "worst",
    seed: int = 0,
    rtol: float = 0.02,
) -> CurvatureCheck:
    """Check ``||a(x + delta) - a(x)|| <= min(2 Gamma, M ||delta||)`` on ``model`` at every row of
    ``x`` and every size in ``eps`` (by the mean-value theorem along the segment; smooth
    activations: for ReLU the Hessian is zero
    almost everywhere and the gradient jumps at kinks, so the curvature form does not apply).

    ``a(x) = grad_x f_c(x)`` (vanilla saliency, a row of :func:`~spectral_lab.input_jacobian`) with
    ``c`` the clean prediction. ``M_i`` is measured, not derived: the largest
    ``sigma_1(grad_x^2 f_c)`` at ``points`` equally spaced points of the segment
    ``x_i + t delta_i`` (dense autograd Hessians, :func:`segment_curvature`). ``direction="worst"``
    takes ``delta = +-eps v``, ``v`` the top eigenvector (in magnitude) of the Hessian at ``x_i``,
    where the bound is tight to first order, so a curvature that is too small by any factor is
    caught at small ``eps``; ``"random"`` uses isotropic directions (looser). ``gamma`` (for the
    ``2 Gamma`` cap) defaults to ``max sigma_1(J_f)`` over the clean and perturbed points, the
    smallest value for which the cap holds; a larger one (e.g. the index) may be passed.

    Cost per ``eps``: ``2 points`` batched dense input Hessians and three input Jacobians. Runs on
    the device and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> chk = check_attribution_curvature(MLP(4, 3, width=8, activation="tanh"), torch.randn(4, 4),
        ...                                   eps=(1e-2, 0.1), points=3)
        >>> chk.holds, len(chk.ratio)
        (True, 2)
    """
    from ..jacobians import input_jacobian
    from ..spectra import singular_values

    prep = prepare(model, x)
    model, x = prep.model, prep.inputs(x)
    eps = tuple(float(e) for e in eps)
    for e in eps:
        _positive_eps(e)
    if direction not in ("worst", "random"):
        raise ValueError(f"direction must be 'worst' or 'random', got {direction!r}")
    with torch.no_grad():
        c = model(x).argmax(1)
    idx = torch.arange(len(x), device=x.device)
    J0 = input_jacobian(model, x).detach()
    a0 = J0[idx, c]
    sig = float(singular_values(J0)[:, 0].max())
    if direction == "worst":
        ev, vec = torch.linalg.eigh(_logit_hessians(model, x, c))
        top = ev.abs().argmax(1)
        unit = vec[idx, :, top].to(x).reshape(x.shape)
        # both signs, each checked as its own segment
        x, unit, c, a0 = (
            torch.cat([x, x]),
            torch.cat([unit, -unit]),
            torch.cat([c, c]),
            torch.cat([a0, a0]),
        )
        idx = torch.arange(len(x), device=x.device)
    else:
        g = torch.Generator().manual_seed(seed)
        unit = _directions(x.shape, 1.0, g, x)
    changes, curvs = [], []
    for e in eps:
        delta = e * unit
        J1 = input_jacobian(model, x + delta).detach()
        sig = max(sig, float(singular_values(J1)[:, 0].max()))
        changes.append((J1[idx, c] - a0).norm(dim=1).double().cpu())
        curvs.append(_swappable("segment_curvature")(model, x, delta, c, points).double().cpu())
    g_used = sig if gamma is None else max(float(gamma), sig)
    return CurvatureCheck(eps, torch.stack(changes), torch.stack(curvs), g_used, points,
                          direction, rtol)  # fmt: skip
