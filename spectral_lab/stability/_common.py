"""Shared pieces of the stability package: operator names, the quantile, small validators."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch

from .._losses import resolve_loss
from ..quantiles import higher_quantile
from ..sensitivity import isotropic_perturbations

OPERATORS = ("input_jacobian", "parameter_jacobian", "ntk", "hessian")
"""The four operators of the index: ``J_f(x)``, ``J_theta(x)``, the NTK Gram ``K`` and the loss
Hessian ``H``."""
BY_CONSTRUCTION = {
    "attribution": "triangle inequality: ||a(x)|| <= sigma_1(J_f(x)) <= Gamma at both points",
    "ntk_condition": "identity when the NTK term sets Gamma; otherwise Gamma^2 >= lambda_max(K)/n "
    "by the max",
}
"""Consequences of :class:`ConsequenceCheck` that hold for every model by construction (no evidence)."""
AGGREGATIONS = ("max", "geomean")
"""The named ways :func:`stability_index` pools the terms (``agg=``); any callable also works."""
LOSSES = ("cross_entropy", "mse")
_SAMPLE_KEYS = ("jac_top", "jac_fro", "jac_entropy", "param_top")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def quantile(values: torch.Tensor, q: float) -> float:
    """Empirical ``q``-quantile ``Q_q`` of a 1-D tensor; ``q = 1`` is the maximum (supremum).

    Uses the "higher" rule (an actual sample value, so at least a fraction ``q`` of the samples lie
    at or below it: position ``ceil(q (n - 1))`` of the sorted values); a choice of this library,
    implemented once in :func:`spectral_lab.quantiles.higher_quantile` (which the streaming
    :class:`~spectral_lab.quantiles.QuantileSketch` uses while exact). Cost ``O(n)``; computed in
    float64 on the input's device.

    Example:
        >>> v = torch.arange(1.0, 11.0)
        >>> quantile(v, 1.0), quantile(v, 0.95), quantile(v, 0.5)
        (10.0, 10.0, 6.0)
    """
    _check_q(q)
    return higher_quantile(values, q)


def _check_q(q: float) -> float:
    if not isinstance(q, (int, float)) or not 0.0 < float(q) <= 1.0:
        raise ValueError(f"q must be a quantile level in (0, 1] (1 = supremum), got {q!r}")
    return float(q)


def _loss_fn(loss: str | LossFn) -> LossFn:
    return resolve_loss(loss)


def _directions(shape, eps, generator, like) -> torch.Tensor:
    """One perturbation per sample, uniform on the sphere of radius ``eps``."""
    d = isotropic_perturbations(shape[1:], eps, shape[0], "sphere", generator=generator,
                                dtype=torch.float64)  # fmt: skip
    return d.to(like).reshape(shape)


def _positive_eps(eps) -> None:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"the perturbation size must be a finite number > 0, got {eps!r}")


def _predict(model, x):
    return model(x)


_ELEMENTS = 2**24
"""Default number of tensor elements held at once when no ``chunk_size`` is given."""


def _check_chunk(chunk_size: int | None) -> None:
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _swappable(name: str) -> Callable:
    """The function ``name`` as bound on the package :mod:`spectral_lab.stability`, looked up at
    call time.

    The formulas a check relies on (``index_terms``, ``logit_hessian_norm``, ``segment_curvature``)
    are reached this way, so a mutation test or a chapter can swap one with
    ``mock.patch.object(sl.stability, name, wrong)`` and watch the check fail.
    """
    return getattr(sys.modules[__package__], name)
