"""The Matrix Stability Profile, the Global Matrix Stability Index and its consequences as bounds.

From "A Unified Matrix-Spectral Framework for Stability and Interpretability in Deep Learning"
(Definition 4.1, as summarised): the index takes the spectral norms of four operators -- the input
Jacobian ``J_f(x)``, the parameter Jacobian ``J_theta(x)``, the NTK Gram ``K`` and the loss Hessian
``H`` -- with a *supremum over the data*; high quantiles (e.g. the 95th percentile) are the robust
alternative for empirical diagnostics.

How the four terms are pooled into one number is a construction made here, a **choice, not taken
from the paper**, kept behind :func:`stability_index` (``agg=`` and ``weights=`` swap it out; any
callable works)::

    Gamma_q = max{ Q_q sigma_1(J_f(x_i)),  Q_q sigma_1(J_theta(x_i)),
                   sqrt(lambda_max(K) / n),  sqrt(max(lambda_max(H), 0)) }

Every term is on the same "Lipschitz" scale (a gain per unit of perturbation), so with ``q = 1`` the
single number ``Gamma`` gives, on the sample and to first order, the five bounds below. The paper's
Theorem 4.2 derives, by the only summary of it the course could read, *four* stability consequences
from the index (forward sensitivity, attribution robustness, NTK conditioning, optimisation
curvature); its statement, forms and constants were not available. The bounds below are **this
course's reconstruction** of those four on the gain scale of ``Gamma``, plus a fifth of its own
(parameter sensitivity):

* forward sensitivity      ``||f(x + delta) - f(x)||       <~ Gamma ||delta||``
* parameter sensitivity    ``||f_{theta+Delta}(x) - f(x)|| <~ Gamma ||Delta||``
* attribution change       ``||a(x') - a(x)||              <= 2 Gamma``  (``||a(x)|| <= sigma_1(J_f(x))``)
* NTK conditioning         ``kappa(K) <= Gamma^2 / (lambda_min(K) / n)``
* stable step size         ``eta < 2 / Gamma^2 <= 2 / lambda_max(H)``

Two of these hold **by construction** and are no evidence about a model: the attribution bound
``2 Gamma`` is the triangle inequality (``||a|| <= sigma_1(J_f) <= Gamma`` at both points), and the
NTK bound is an identity whenever the NTK term sets ``Gamma`` (otherwise ``Gamma^2 >= lambda_max(K)/n``
by the max). The forward and parameter bounds measured at a tiny perturbation along the worst
direction only re-test that ``sigma_1`` is not under-estimated. The consequences that *can* fail are
checked separately: the curvature form ``min(2 Gamma, M eps)`` of the attribution bound, with ``M``
the largest singular value of the logit's input Hessian measured along the segment
(:func:`check_attribution_curvature`), and the certified step ``2 / Gamma^2`` against the measured
divergence threshold of full-batch gradient descent (:func:`measure_max_stable_lr`).
``BY_CONSTRUCTION`` names the keys of :class:`ConsequenceCheck` that cannot fail.

The index uses the **scalar** NTK ``K_ij = tr J_theta(x_i) J_theta(x_j)^T`` (``n x n``); the block
NTK ``K~`` (``nC x nC``) is what governs multi-output training dynamics (``ntk_kind="block"``).

Layout: :mod:`.profile` (the profile), :mod:`.index` (``Gamma_q``), :mod:`.bounds` (the
right-hand sides above), :mod:`.measure` (the left-hand sides, measured on a model),
:mod:`.curvature` (the curvature form of the attribution bound) and :mod:`.verify` (every
consequence next to its bound). Every public name is re-exported here.

Example:
    >>> import torch
    >>> from spectral_lab import MLP
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> prof = stability_profile(MLP(4, 3, width=16), (x, y))
    >>> idx = stability_index(prof)
    >>> idx.value >= idx.terms["input_jacobian"]
    True
"""

from __future__ import annotations

from .._data import iter_batches
from ..sensitivity import isotropic_perturbations as isotropic_perturbations
from ._common import AGGREGATIONS, BY_CONSTRUCTION, OPERATORS, quantile
from ._common import LOSSES as LOSSES  # the loss names the profile accepts by string
from ._common import LossFn as LossFn
from .bounds import (
    attribution_change_bound,
    forward_sensitivity_bound,
    ntk_condition_bound,
    parameter_sensitivity_bound,
    stable_step_size,
)
from .curvature import (
    CurvatureCheck,
    check_attribution_curvature,
    logit_hessian_norm,
    segment_curvature,
)
from .index import StabilityIndex, index_terms, stability_index
from .measure import (
    gd_diverges,
    measure_attribution_change,
    measure_forward_sensitivity,
    measure_max_stable_lr,
    measure_parameter_sensitivity,
)
from .profile import StabilityProfile, stability_profile
from .verify import ConsequenceCheck, verify_consequences

__all__ = [
    "AGGREGATIONS",
    "BY_CONSTRUCTION",
    "ConsequenceCheck",
    "CurvatureCheck",
    "OPERATORS",
    "StabilityIndex",
    "StabilityProfile",
    "attribution_change_bound",
    "check_attribution_curvature",
    "forward_sensitivity_bound",
    "gd_diverges",
    "index_terms",
    "iter_batches",
    "logit_hessian_norm",
    "measure_attribution_change",
    "measure_forward_sensitivity",
    "measure_max_stable_lr",
    "measure_parameter_sensitivity",
    "ntk_condition_bound",
    "parameter_sensitivity_bound",
    "quantile",
    "segment_curvature",
    "stability_index",
    "stability_profile",
    "stable_step_size",
    "verify_consequences",
]
