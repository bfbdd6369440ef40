"""Attribution (saliency) maps, their stability under input noise, and distances between them.

The attribution of a classifier ``f: R^d -> R^C`` at ``x`` for class ``c`` is the vanilla gradient
(saliency)

    a(x) = grad_x f_c(x) = J_f(x)^T e_c,      c = c(x) = argmax_k f_k(x) unless given,

i.e. one row of the input Jacobian. Variants: gradient x input ``x * a(x)``, SmoothGrad
``E_eps a(x + eps)`` (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise"),
integrated gradients ``(x - x0) * int_0^1 a(x0 + t (x - x0)) dt`` (Sundararajan, Taly & Yan 2017,
"Axiomatic Attribution for Deep Networks").

Every attribution here is *batched autograd*: one forward pass over the whole batch and one backward
pass of ``sum_n f_{c_n}(x_n)``. Samples do not interact in eval mode, so that single backward pass
returns every sample's gradient at once (no Python loop over samples).

Instability metrics. "A Unified Matrix-Spectral Framework for Stability and Interpretability in
Deep Learning" (Katende 2026) names Delta_grad, the Fréchet distance and the attribution condition
number; the exact definitions below are this library's choices:

* relative change ``Delta_grad(x, delta) = ||a(x+delta) - a(x)|| / (||a(x)|| + 1e-12)``,
* cosine distance ``1 - cos(a(x+delta), a(x))``,
* top-k overlap ``|top_k|a(x)| ∩ top_k|a(x+delta)|| / k`` (1 = same most important features),
* the attribution condition number ``kappa_attr(x) = sigma_1(J_f(x)) / median_k sigma_k(J_f(x))``,
* the Fréchet distance between the Gaussians fitted to the clean and perturbed attribution clouds.

Layout: :mod:`.methods` (the maps), :mod:`.metrics` (per-sample distances between maps, the
attribution condition number), :mod:`.frechet` (the Fréchet distance between clouds of maps),
:mod:`.instability` (the noise study that puts them together) and :mod:`.stats` (Spearman, the
upper envelope). Every public name is re-exported here.

Example:
    >>> import torch
    >>> from spectral_lab import MLP
    >>> model = MLP(4, 3, width=8).eval()
    >>> saliency(model, torch.randn(5, 4)).shape
    torch.Size([5, 4])
"""

from __future__ import annotations

from ._common import _check_inputs as _check_inputs
from ._common import _targets as _targets
from .frechet import _sqrt_psd as _sqrt_psd
from .frechet import frechet_distance, frechet_distance_bootstrap, gaussian_frechet_distance
from .instability import AttributionInstability, attribution_instability
from .methods import (
    METHODS,
    attribution,
    gradient_x_input,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from .methods import _grad_of_class as _grad_of_class
from .methods import _mean_grad_over_copies as _mean_grad_over_copies
from .metrics import _flat_pair as _flat_pair
from .metrics import (
    attribution_condition_number,
    cosine_distance,
    finite_difference_sensitivity,
    relative_change,
    topk_overlap,
)
from .stats import Envelope, spearman, upper_envelope

__all__ = [
    "METHODS",
    "AttributionInstability",
    "Envelope",
    "attribution",
    "attribution_condition_number",
    "attribution_instability",
    "cosine_distance",
    "finite_difference_sensitivity",
    "frechet_distance",
    "frechet_distance_bootstrap",
    "gaussian_frechet_distance",
    "gradient_x_input",
    "integrated_gradients",
    "relative_change",
    "saliency",
    "smoothgrad",
    "spearman",
    "topk_overlap",
    "upper_envelope",
]
