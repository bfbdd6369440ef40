"""Every consequence of the index measured on one model next to its bound: the course's
reconstruction of the four consequences that Theorem 4.2 of "A Unified Matrix-Spectral Framework
for Stability and Interpretability in Deep Learning" is summarised as deriving (its statement was
not available), plus parameter sensitivity, the course's own."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._data import DataLike, iter_batches
from ._common import (
    BY_CONSTRUCTION,
    LossFn,
    _directions,
)
from .bounds import (
    attribution_change_bound,
    forward_sensitivity_bound,
    ntk_condition_bound,
    parameter_sensitivity_bound,
    stable_step_size,
)
from .curvature import CurvatureCheck, check_attribution_curvature
from .index import StabilityIndex, stability_index
from .measure import (
    measure_attribution_change,
    measure_forward_sensitivity,
    measure_max_stable_lr,
    measure_parameter_sensitivity,
)
from .profile import StabilityProfile, stability_profile


@dataclass(frozen=True, repr=False)
class ConsequenceCheck:
    """Each consequence of the index (the course's reconstruction; see :mod:`.bounds`) measured
    on a model next to its bound (see
    :func:`verify_consequences`). ``measured[k]`` and ``bound[k]`` are floats; for ``"stable_lr"``
    the bound is a *lower* bound (the certified step must not exceed the measured largest stable
    one), for the others an upper bound. ``operator_bound[k]`` uses the single operator's own term
    instead of ``Gamma``. ``tightness[k]`` is ``measured/bound`` (upper) or ``bound/measured``
    (lower): 1 means tight, small means loose.

    Not every key is evidence. ``"attribution"`` (``2 Gamma``) and ``"ntk_condition"`` hold for
    every model by construction (:data:`BY_CONSTRUCTION`); ``"forward"``/``"parameter"`` at a tiny
    perturbation along the worst direction only re-test that ``sigma_1`` is not under-estimated.
    The checks that can fail are ``"stable_lr"`` (certified ``2/Gamma^2`` against the measured
    divergence threshold; :attr:`step_ratio`) and ``"attribution_curvature"`` (the curvature form
    ``min(2 Gamma, M eps)``, in ``curvature``); :attr:`evidence` lists only the keys that are not
    true by construction.

    Example: see :func:`verify_consequences`.
        >>> sorted(BY_CONSTRUCTION)
        ['attribution', 'ntk_condition']
    """

    measured: Mapping[str, float]
    bound: Mapping[str, float]
    operator_bound: Mapping[str, float]
    index: StabilityIndex
    profile: StabilityProfile
    curvature: CurvatureCheck | None = None

    first_order_rtol: float = 1e-2

    @property
    def holds(self) -> dict[str, bool]:
        """Whether each bound holds. ``forward`` and ``parameter`` are first-order statements:
        where ``Gamma`` is set by that very operator the measured change is ``Gamma eps (1 +
        O(eps))``, so they are checked to ``first_order_rtol`` (1 %, a safety factor of 1.01 chosen
        by this library); the others exactly (to 1e-9)."""
        out = {}
        for k, m in self.measured.items():
            b = self.bound[k]
            tol = self.first_order_rtol if k in ("forward", "parameter") else 1e-9
            out[k] = b <= m * (1 + tol) if k == "stable_lr" else m <= b * (1 + tol)
        if self.curvature is not None:
            out["attribution_curvature"] = self.curvature.holds
        return out

    @property
    def evidence(self) -> dict[str, bool]:
        """:attr:`holds` without the consequences that hold by construction."""
        return {k: v for k, v in self.holds.items() if k not in BY_CONSTRUCTION}

    @property
    def step_ratio(self) -> float:
        """Measured largest stable step over the certified ``2 / Gamma^2`` (``>= 1`` when safe)."""
        b = self.bound["stable_lr"]
        return math.inf if b == 0 else self.measured["stable_lr"] / b

    @property
    def tightness(self) -> dict[str, float]:
        out = {}
        for k, m in self.measured.items():
            b = self.bound[k]
            out[k] = (
                (b / m if m > 0 else math.inf) if k == "stable_lr" else (m / b if b > 0 else 0.0)
            )
        if self.curvature is not None:
            out["attribution_curvature"] = max(self.curvature.ratio)
        return out

    def __repr__(self) -> str:
        rows = ", ".join(
            f"{k}: {self.measured[k]:.3g} {'>=' if k == 'stable_lr' else '<='} {self.bound[k]:.3g}"
            + (" (by construction)" if k in BY_CONSTRUCTION else "")
            for k in self.measured
        )
        if self.curvature is not None:
            rows += f", attribution_curvature: max change/min(2 Gamma, M eps) = {max(self.curvature.ratio):.3g}"
        return (
            f"ConsequenceCheck(Gamma={self.index.value:.4g}; {rows}; "
            f"all checks that can fail hold={all(self.evidence.values())})"
        )


def verify_consequences(
    model: nn.Module,
    data: DataLike,
    *,
    eps: float = 1e-4,
    delta_norm: float = 1e-4,
    attribution_eps: float = 0.5,
    num_attribution_draws: int = 2,
    loss: str | LossFn = "cross_entropy",
    lr_steps: int = 20,
    lr_iters: int = 6,
    lr_range: tuple[float, float] = (1e-2, 1e3),
    max_iter: int = 100,
    curvature_eps: Sequence[float] | None = (1e-3, 1e-2, 1e-1, 0.5),
    curvature_points: int = 9,
    seed: int = 0,
) -> ConsequenceCheck:
    """Measure every consequence of the index (the course's reconstruction of Theorem 4.2) on
    ``data = (x, y)`` and pair it with its bound from the supremum index ``Gamma`` of the same data (``q = 1``, ``agg="max"``: then ``Gamma``
    dominates every operator term, which is what each bound needs).

    * ``forward``: ``max_i ||f(x_i + delta) - f(x_i)||`` along each sample's worst direction,
      ``||delta|| = eps``, against ``Gamma eps`` (first order: use a small ``eps``).
    * ``parameter``: the same for parameters along each sample's worst direction, against
      ``Gamma ||Delta||``.
    * ``attribution``: ``max ||a(x + delta) - a(x)||`` for ``num_attribution_draws`` isotropic
      ``||delta|| = attribution_eps``, against ``2 Gamma`` with the input term taken over the clean
      *and* perturbed points (the bound needs both in the support). **By construction** (triangle
      inequality): shown, never evidence.
    * ``ntk_condition``: ``kappa(K)`` against ``Gamma^2 / (lambda_min(K)/n)``. **By construction**
      (an identity when the NTK term sets ``Gamma``). Scalar NTK, as in the index.
    * ``stable_lr``: the largest full-batch GD step that does not blow up in ``lr_steps`` steps
      (log-bisection, ``lr_iters`` halvings) against the certified ``2 / Gamma^2`` (a lower bound);
      ``lambda_max(H)`` for the index takes at most ``max_iter`` Lanczos steps.
      Can fail: a ``Gamma`` without the Hessian term certifies too large a step when the loss's
      curvature exceeds what the Jacobian terms see.
    * ``attribution_curvature`` (``curvature``, unless ``curvature_eps=None``): the curvature form
      ``min(2 Gamma, M eps)`` at every size in ``curvature_eps`` along each sample's worst
      direction, ``M`` measured along the segment (:func:`check_attribution_curvature`). Can fail.

    Cost: one full profile, two worst-direction measurements, ``num_attribution_draws + 1`` input
    Jacobians, ``lr_iters + 2`` short GD runs, and for the curvature form
    ``2 * curvature_points * len(curvature_eps)`` dense ``d x d`` input Hessians per sample
    (``d`` Hessian-vector products each: seconds for ``d = 64``, minutes for ``d = 784``; pass
    ``curvature_eps=None`` to skip it). Runs on the device and dtype of the model's parameters;
    inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> data = (torch.randn(16, 4), torch.randint(0, 3, (16,)))
        >>> chk = verify_consequences(MLP(4, 3, width=8, activation="tanh"), data, curvature_eps=None,
        ...                           lr_steps=10, lr_iters=4, max_iter=20)
        >>> all(chk.holds.values()), chk.step_ratio >= 1
        (True, True)
    """
    from ..jacobians import input_jacobian
    from ..spectra import singular_values

    x, y = next(iter_batches(data, batch_size=10**9))
    if y is None:
        raise ValueError("verify_consequences needs labels: pass (x, y)")
    p0 = next(model.parameters())
    x = x.to(p0)
    prof = stability_profile(
        model, (x, y), loss=loss, num_ntk_samples=len(x), num_hessian_samples=len(x),
        max_iter=max_iter, seed=seed,
    )  # fmt: skip
    idx = stability_index(prof)
    g = torch.Generator().manual_seed(seed)
    xp = torch.cat(
        [x + _directions(x.shape, attribution_eps, g, x) for _ in range(num_attribution_draws)]
    )
    sig_p = float(singular_values(input_jacobian(model, xp))[:, 0].max())
    attr = measure_attribution_change(
        model, x, attribution_eps, num_draws=num_attribution_draws, seed=seed
    )
    lr = measure_max_stable_lr(
        model, (x, y), loss=loss, lo=lr_range[0], hi=lr_range[1], steps=lr_steps, iters=lr_iters
    )
    fw = float(measure_forward_sensitivity(model, x, eps).max())
    pw = float(measure_parameter_sensitivity(model, x, delta_norm, direction="worst").max())
    measured = {
        "forward": fw,
        "parameter": pw,
        "attribution": float(attr.max()),
        "ntk_condition": prof.ntk_condition,
        "stable_lr": lr,
    }
    gamma_attr = max(idx.value, sig_p)
    bound = {
        "forward": forward_sensitivity_bound(idx, eps),
        "parameter": parameter_sensitivity_bound(idx, delta_norm),
        "attribution": attribution_change_bound(gamma_attr),
        "ntk_condition": ntk_condition_bound(idx, prof.ntk_min),
        "stable_lr": stable_step_size(idx),
    }
    operator_bound = {
        "forward": forward_sensitivity_bound(idx, eps, scale="operator"),
        "parameter": parameter_sensitivity_bound(idx, delta_norm, scale="operator"),
        "attribution": attribution_change_bound(max(prof.jac_top, sig_p)),
        "ntk_condition": ntk_condition_bound(idx, prof.ntk_min, scale="operator"),
        "stable_lr": math.inf if not prof.hess_top or prof.hess_top <= 0 else 2.0 / prof.hess_top,
    }
    curv = None
    if curvature_eps is not None:
        curv = check_attribution_curvature(
            model, x, curvature_eps, gamma=idx.value, points=curvature_points, seed=seed
        )
    return ConsequenceCheck(measured, bound, operator_bound, idx, prof, curv)
