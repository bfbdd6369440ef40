"""The Global Matrix Stability Index ``Gamma_q``: the profile's terms pooled into one number."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._common import (
    AGGREGATIONS,
    OPERATORS,
    _swappable,
)
from .profile import StabilityProfile


@dataclass(frozen=True, repr=False)
class StabilityIndex:
    """The Global Matrix Stability Index ``Gamma_q`` and the per-operator terms it pools.

    ``terms`` are on a common gain scale: ``input_jacobian = Q_q sigma_1(J_f)``,
    ``parameter_jacobian = Q_q sigma_1(J_theta)``, ``ntk = sqrt(lambda_max(K)/n)``,
    ``hessian = sqrt(max(lambda_max(H), 0))``. ``value = agg(weights * terms)``. Built by
    :func:`stability_index`; ``to_dict()`` gives plain Python.

    Example:
        >>> idx = StabilityIndex(value=2.0, terms={"input_jacobian": 2.0, "hessian": 0.5},
        ...                      weights={"input_jacobian": 1.0, "hessian": 1.0}, agg="max", q=1.0)
        >>> idx.dominant, idx.dominates("hessian")
        ('input_jacobian', True)
    """

    value: float
    terms: Mapping[str, float]
    weights: Mapping[str, float]
    agg: str
    q: float

    @property
    def dominant(self) -> str:
        """The operator whose weighted term is largest (the one that sets ``Gamma`` under max)."""
        return max(self.terms, key=lambda k: self.weights.get(k, 1.0) * self.terms[k])

    def dominates(self, operator: str) -> bool:
        """Whether ``Gamma >= term[operator]``, i.e. whether the single index bounds that operator."""
        return operator in self.terms and self.value >= self.terms[operator] * (1 - 1e-12)

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "terms": dict(self.terms),
            "weights": dict(self.weights),
            "agg": self.agg,
            "q": self.q,
            "dominant": self.dominant,
        }

    def __repr__(self) -> str:
        terms = ", ".join(f"{k}={v:.4g}" for k, v in self.terms.items())
        return (
            f"StabilityIndex(Gamma={self.value:.4g}, agg={self.agg!r}, q={self.q:g}, "
            f"dominant={self.dominant!r}; {terms})"
        )


def index_terms(profile: StabilityProfile) -> dict[str, float]:
    """The four operator terms of the index on a common gain scale (missing operators left out).

    ``input_jacobian = Q_q sigma_1(J_f(x_i))``, ``parameter_jacobian = Q_q sigma_1(J_theta(x_i))``,
    ``ntk = sqrt(lambda_max(K) / n)`` and ``hessian = sqrt(max(lambda_max(H), 0))``: each is a gain
    per unit of perturbation (a choice of this library). Cost ``O(1)`` (read off the profile).

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> from spectral_lab.stability import stability_profile
        >>> prof = stability_profile(MLP(4, 3, width=8), torch.randn(8, 4), operators=("input_jacobian", "ntk"))
        >>> sorted(index_terms(prof))
        ['input_jacobian', 'ntk']
    """
    terms = {"input_jacobian": profile.jac_top}
    if profile.param_top is not None:
        terms["parameter_jacobian"] = profile.param_top
    if profile.ntk_top is not None:
        terms["ntk"] = math.sqrt(max(profile.ntk_top, 0.0))
    if profile.hess_top is not None:
        terms["hessian"] = math.sqrt(max(profile.hess_top, 0.0))
    return terms


def stability_index(
    profile: StabilityProfile,
    weights: Mapping[str, float] | None = None,
    agg: str | Callable[[Mapping[str, float]], float] = "max",
) -> StabilityIndex:
    """The Global Matrix Stability Index from a profile (the pooling is a choice of this library;
    the paper's index takes the spectral norms of the same four operators).

    ``Gamma_q = agg_op( w_op * term_op )`` over the operators present in ``profile``, with the
    terms of :func:`index_terms`. ``agg="max"`` (default) is the construction for which every
    consequence in this module holds with the single constant ``Gamma`` (when all ``w_op >= 1``);
    ``agg="geomean"`` is the weighted geometric mean ``exp(sum w log t / sum w)``, a typical scale
    that does **not** dominate the largest term; any callable ``agg(weighted_terms) -> float`` can
    be swapped in (e.g. the paper's formula, once known).

    Cost: none beyond the profile (``O(1)``).

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> from spectral_lab.stability import stability_profile
        >>> _ = torch.manual_seed(0)
        >>> prof = stability_profile(MLP(4, 3, width=8), (torch.randn(16, 4), torch.randint(0, 3, (16,))))
        >>> idx = stability_index(prof)
        >>> idx.value == max(idx.terms.values()), stability_index(prof, agg="geomean").value <= idx.value
        (True, True)
    """
    if not isinstance(profile, StabilityProfile):
        raise TypeError(f"profile must be a StabilityProfile, got {type(profile).__name__}")
    terms = _swappable("index_terms")(profile)
    w = {k: 1.0 for k in terms}
    if weights is not None:
        bad = set(weights) - set(OPERATORS)
        if bad:
            raise ValueError(f"weights has unknown operator(s) {sorted(bad)}; use {OPERATORS}")
        for k, v in weights.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"weights[{k!r}] must be a finite number >= 0, got {v!r}")
            if k in terms:
                w[k] = float(v)
    if callable(agg):
        value, name = (
            float(agg({k: w[k] * t for k, t in terms.items()})),
            getattr(agg, "__name__", "custom"),
        )
    elif agg == "max":
        value, name = max(w[k] * t for k, t in terms.items()), "max"
    elif agg == "geomean":
        active = {k: t for k, t in terms.items() if w[k] > 0}
        if not active or any(t <= 0 for t in active.values()):
            raise ValueError("geomean needs positive terms with positive weights")
        ws = sum(w[k] for k in active)
        value = math.exp(sum(w[k] * math.log(t) for k, t in active.items()) / ws)
        name = "geomean"
    else:
        raise ValueError(f"agg must be one of {AGGREGATIONS} or a callable, got {agg!r}")
    return StabilityIndex(value=float(value), terms=terms, weights=w, agg=name, q=profile.q)
