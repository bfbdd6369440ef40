"""Residual chains and the geometry of power-law spectra, from "Geometric and Spectral Alignment for
Deep Neural Network I".

A deep residual network is read as a product of near-identity layer factors ``A_l = I + B_l``. Each
factor is Frobenius-normalised, ``Ā = sqrt(d) A / ||A||_F`` (so ``tr(ĀᵀĀ) = d``), and summarised by
its ordered spectrum ``λ_1 ≥ … ≥ λ_d`` of ``ĀᵀĀ`` (Cartan coordinate ``a_k = ½ log λ_k``). Exact
power laws ``λ_k(α) = d k^{-α} / H_d(α)`` form a one-parameter orbit which is a Gibbs family on
ranks, a Fisher line and a Bures–Wasserstein curve with ``ds² = (d/4) I(α) dα²``.

This package gives every quantity of that paper as a function, one module per topic
(:mod:`.normalize`, :mod:`.orbit`, :mod:`.fit`, :mod:`.rank`, :mod:`.chain`, :mod:`.factors`,
:mod:`.blocks`):

* factors: :func:`frobenius_normalize`, :func:`cartan_coordinates`, :func:`spectral_energy`,
  :func:`top_radial`;
* the orbit: :func:`harmonic_number`, :func:`log_partition`, :func:`gibbs_distribution`,
  :func:`power_law_spectrum`, :func:`mean_log_rank`, :func:`fisher_information`, :func:`orbit_kl`,
  :func:`orbit_hellinger`, :func:`orbit_bures_distance`, :func:`bures_line_element`,
  :func:`bures_wasserstein_distance`, :func:`orbit_top_radial`, :func:`orbit_top_radial_inverse`,
  :func:`inverse_chart_lipschitz`, :func:`fisher_rao_length`, :func:`orbit_actions`;
* fits: :func:`power_law_fit` -> :class:`PowerLawFit`;
* effective rank: :func:`energy_quantile_rank`, :func:`orbit_energy_quantile_rank`, :func:`tail_mass_bound`,
  :func:`energy_quantile_rank_bound`, :func:`rank_summary`, :func:`total_variation`;
* chains: :func:`chain_slack` -> :class:`ChainSlack`, :func:`near_identity_cartan`,
  :func:`near_identity_slack`, :func:`depth_budget` -> :class:`DepthBudget`;
* models: :func:`layer_factors`, :func:`conv_operator_matrix`,
  :func:`circular_conv_singular_values`, :func:`chain_profile`, :func:`exponent_profile` ->
  :class:`ExponentProfile`; any walkable residual model (torchvision ResNets):
  :func:`residual_block_jacobians` -> :class:`BlockJacobians`.

Tags in the docstrings: [P] stated in the paper's abstract; [D] derived here from those statements
with elementary mathematics (checked numerically in the tests); [C] a choice of this library (the
paper's own choice is not stated in its abstract). Orbit quantities and fits are scalar
problems solved in float64 NumPy/SciPy on the CPU (``O(d)`` per evaluation); factor matrices are
built in torch on the model's device and dtype.

Example:
    >>> round(fisher_information(1.0, 32), 4) > 0
    True
    >>> fit = power_law_fit(power_law_spectrum(1.3, 64), kind="eigen")
    >>> round(fit.alpha, 6), fit.is_power_law
    (1.3, True)
"""

from __future__ import annotations

from ._common import (
    ALPHA_MAX as ALPHA_MAX,
)
from ._common import (
    TRACES as TRACES,
)
from ._common import (
    _as_spectrum as _as_spectrum,
)
from ._common import (
    _check_alpha as _check_alpha,
)
from ._common import (
    _check_d as _check_d,
)
from ._common import (
    _check_trace as _check_trace,
)
from .blocks import BlockJacobians, residual_block_jacobians
from .chain import (
    ChainSlack,
    DepthBudget,
    chain_slack,
    depth_budget,
    near_identity_cartan,
    near_identity_slack,
)
from .chain import (
    _factor_stack as _factor_stack,
)
from .chain import (
    _top_sv as _top_sv,
)
from .factors import (
    ExponentProfile,
    chain_profile,
    circular_conv_singular_values,
    conv_operator_matrix,
    exponent_profile,
    layer_factors,
)
from .factors import (
    _block_inputs as _block_inputs,
)
from .factors import (
    _residual_blocks as _residual_blocks,
)
from .factors import (
    _static_factor as _static_factor,
)
from .fit import (
    PowerLawFit,
    power_law_fit,
)
from .fit import (
    _hel2 as _hel2,
)
from .fit import (
    _mle_alpha as _mle_alpha,
)
from .normalize import (
    cartan_coordinates,
    frobenius_normalize,
    spectral_energy,
    top_radial,
)
from .orbit import (
    OrbitActions,
    bures_line_element,
    bures_wasserstein_distance,
    fisher_information,
    fisher_rao_length,
    gibbs_distribution,
    harmonic_number,
    inverse_chart_lipschitz,
    log_partition,
    mean_log_rank,
    orbit_actions,
    orbit_bures_distance,
    orbit_hellinger,
    orbit_kl,
    orbit_top_radial,
    orbit_top_radial_inverse,
    power_law_spectrum,
)
from .orbit import (
    _gibbs as _gibbs,
)
from .orbit import (
    _log_ranks as _log_ranks,
)
from .orbit import (
    _psd_sqrt as _psd_sqrt,
)
from .rank import (
    RankSummary,
    energy_quantile_rank,
    energy_quantile_rank_bound,
    orbit_energy_quantile_rank,
    rank_summary,
    tail_mass_bound,
    total_variation,
)
from .rank import (
    _check_tau as _check_tau,
)
from .rank import (
    _quantile as _quantile,
)

__all__ = [
    "ALPHA_MAX",
    "BlockJacobians",
    "ChainSlack",
    "DepthBudget",
    "ExponentProfile",
    "OrbitActions",
    "PowerLawFit",
    "RankSummary",
    "TRACES",
    "bures_line_element",
    "bures_wasserstein_distance",
    "cartan_coordinates",
    "chain_profile",
    "chain_slack",
    "circular_conv_singular_values",
    "conv_operator_matrix",
    "depth_budget",
    "energy_quantile_rank",
    "energy_quantile_rank_bound",
    "exponent_profile",
    "fisher_information",
    "fisher_rao_length",
    "frobenius_normalize",
    "gibbs_distribution",
    "harmonic_number",
    "inverse_chart_lipschitz",
    "layer_factors",
    "log_partition",
    "mean_log_rank",
    "near_identity_cartan",
    "near_identity_slack",
    "orbit_actions",
    "orbit_bures_distance",
    "orbit_energy_quantile_rank",
    "orbit_hellinger",
    "orbit_kl",
    "orbit_top_radial",
    "orbit_top_radial_inverse",
    "power_law_fit",
    "power_law_spectrum",
    "rank_summary",
    "residual_block_jacobians",
    "spectral_energy",
    "tail_mass_bound",
    "top_radial",
    "total_variation",
]
