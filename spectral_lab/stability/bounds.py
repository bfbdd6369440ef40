"""The right-hand sides of the consequences of the index, as functions of it.

By the only summary of it the course could read, Theorem 4.2 of "A Unified Matrix-Spectral
Framework for Stability and Interpretability in Deep Learning" derives four stability consequences
from the index (forward sensitivity, attribution robustness, NTK conditioning, optimisation
curvature); its statement was not available. The forms below are **this course's
reconstruction** of those four on the gain scale of
:func:`~spectral_lab.stability.stability_index`, plus parameter sensitivity, the course's own. ``index`` is a :class:`StabilityIndex` or a plain
number ``Gamma >= 0``; every function is ``O(1)`` and returns Python floats (or a tensor when
given one)."""

from __future__ import annotations

import math

import torch

from .index import StabilityIndex


def _scale(index: StabilityIndex | float, operator: str, scale: str) -> float:
    if isinstance(index, (int, float)):
        if not (math.isfinite(index) and index >= 0):
            raise ValueError(f"index must be a finite number >= 0, got {index!r}")
        return float(index)
    if not isinstance(index, StabilityIndex):
        raise TypeError(f"index must be a StabilityIndex or a number, got {type(index).__name__}")
    if scale == "operator":
        if operator not in index.terms:
            raise ValueError(f"the profile behind this index has no {operator!r} term")
        return index.terms[operator]
    if scale != "index":
        raise ValueError(f"scale must be 'index' or 'operator', got {scale!r}")
    if operator in index.terms and not index.dominates(operator):
        raise ValueError(
            f"this index (agg={index.agg!r}) is smaller than its {operator!r} term, so the bound "
            "would not hold; use agg='max' with weights >= 1, or scale='operator'"
        )
    return index.value


def forward_sensitivity_bound(
    index: StabilityIndex | float, eps: float | torch.Tensor, scale: str = "index"
):
    """``||f(x + delta) - f(x)|| <= Gamma * eps`` for ``||delta|| <= eps`` at sample points, to
    first order (the course's reconstruction of the forward-sensitivity consequence the paper's
    Theorem 4.2 is summarised as deriving; the first-order term is ``||J_f(x) delta|| <= sigma_1(J_f(x)) ||delta|| <= Gamma ||delta||`` when the index
    dominates the input term). Exact for linear networks; for ReLU networks
    exact while no unit flips on the segment. ``scale="operator"`` uses ``Q_q sigma_1(J_f)``
    itself (the tightest the profile allows). With ``q < 1`` it holds on a fraction ``q`` of samples.
    Measured at a tiny ``eps`` along the worst direction the change realises ``sigma_1(J_f) eps``,
    which is ``<= Gamma eps`` by the max: near-tautological, it only re-tests that ``sigma_1`` is
    not under-estimated. Cost ``O(1)``.

    Example:
        >>> forward_sensitivity_bound(2.0, 1e-3)
        0.002
    """
    return _scale(index, "input_jacobian", scale) * eps


def parameter_sensitivity_bound(
    index: StabilityIndex | float, delta_norm: float | torch.Tensor, scale: str = "index"
):
    """``||f_{theta+Delta}(x) - f_theta(x)|| <= Gamma ||Delta|| + O(||Delta||^2)`` at sample points
    (the course's own addition to the paper's four consequences): the first-order term is
    ``||J_theta(x) Delta|| <= sigma_1(J_theta(x)) ||Delta||``. Cost ``O(1)``.

    Example:
        >>> parameter_sensitivity_bound(3.0, 0.5)
        1.5
    """
    return _scale(index, "parameter_jacobian", scale) * delta_norm


def attribution_change_bound(
    index: StabilityIndex | float,
    eps: float | None = None,
    curvature: float | None = None,
    scale: str = "index",
) -> float:
    """Bound on the saliency change ``||a(x') - a(x)||`` between two points of the support.

    The saliency ``a(x) = J_f(x)^T e_c`` is a row of the input Jacobian, so ``||a(x)|| <=
    sigma_1(J_f(x)) <= Gamma`` and ``||a(x') - a(x)|| <= 2 Gamma`` (the perturbed points must be
    part of the data the index was taken over). That part is the triangle inequality: it holds for
    every model by construction and is no evidence about one. With a curvature bound
    ``M >= sup_t ||grad_x^2 f_c(x + t (x' - x))||_2`` on the segment (mean-value theorem, smooth
    activations) and ``||x' - x|| <= eps`` it is ``min(2 Gamma, M eps)``: that form can fail, and
    :func:`check_attribution_curvature` checks it with ``M`` measured along the segment.
    A worst-case statement; chapter 06 shows attribution change is governed by margins and
    curvature, not by ``sigma_1`` alone. (Choice of the attribution map: vanilla gradient.)
    Cost ``O(1)``.

    Example:
        >>> attribution_change_bound(1.5), attribution_change_bound(1.5, eps=0.1, curvature=4.0)
        (3.0, 0.4)
    """
    bound = 2.0 * _scale(index, "input_jacobian", scale)
    if curvature is not None:
        if eps is None:
            raise ValueError("curvature needs eps (the perturbation size)")
        bound = min(bound, float(curvature) * float(eps))
    return bound


def ntk_condition_bound(
    index: StabilityIndex | float, ntk_min: float, scale: str = "index"
) -> float:
    """``kappa(K) = lambda_max(K) / lambda_min(K) <= Gamma^2 / (lambda_min(K) / n)``.

    ``ntk_min`` is ``lambda_min(K)/n`` (``profile.ntk_min``). Holds by construction: ``Gamma^2 >=
    lambda_max(K)/n`` by the max, with equality (so the bound *is* ``kappa(K)``) whenever the NTK
    term sets ``Gamma``. No evidence about a model. ``K`` is the scalar NTK the index uses; the
    block NTK ``K~`` governs multi-output dynamics. ``inf`` for a singular Gram. Cost ``O(1)``.

    Example:
        >>> ntk_condition_bound(2.0, 0.5)  # 2^2 / 0.5
        8.0
    """
    g = _scale(index, "ntk", scale)
    if ntk_min < 0 or not math.isfinite(ntk_min):
        raise ValueError(f"ntk_min must be lambda_min(K)/n >= 0, got {ntk_min!r}")
    return math.inf if ntk_min == 0 else g * g / ntk_min


def stable_step_size(index: StabilityIndex | float, scale: str = "index") -> float:
    """Largest step size the index certifies: gradient descent on the loss's quadratic model is
    stable for ``eta < 2 / Gamma^2 <= 2 / lambda_max(H)`` (the course's reconstruction of the
    optimisation-curvature consequence of the paper's Theorem 4.2, whose statement was not
    available; the Hessian term is ``sqrt(lambda_max(H))``). With ``q = 1``
    it also certifies gradient descent on the linearised model under 1/2-MSE, because
    ``lambda_max(J^T J / n) <= max_i sigma_1(J_theta(x_i))^2 <= Gamma^2``.
    ``scale="operator"`` returns ``2 / lambda_max(H)`` itself. Unlike the attribution and NTK
    bounds this can fail on a network: compare it with :func:`measure_max_stable_lr`. Cost ``O(1)``.

    Example:
        >>> stable_step_size(2.0)  # 2 / 2^2
        0.5
    """
    g = _scale(index, "hessian", scale)
    return math.inf if g == 0 else 2.0 / (g * g)
