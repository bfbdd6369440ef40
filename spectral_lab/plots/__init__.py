"""The course's figures, one module per topic; every figure a chapter reuses is here.

Topics: :mod:`._style` (colours, rc settings, :func:`use_style`), :mod:`.training`, :mod:`.spectra`,
:mod:`.geometry`, :mod:`.ntk`, :mod:`.hessian`, :mod:`.stability`, :mod:`.attribution`,
:mod:`.experiments` and :mod:`.transformers`. The ``*_draw`` functions are the drawing halves of the explorers in
:mod:`spectral_lab.widgets` (``draw(**values) -> Figure``), testable without a kernel.
Every name is re-exported here, so ``sl.plots.<name>`` reaches it.

Every ``plot_*`` function draws the numbers it is given (no model is evaluated; the cost is the
drawing) and returns the :class:`matplotlib.figure.Figure`; pass ``ax=`` (or ``axes=``) to draw
into existing axes. A ``*_draw(...)`` factory does its one-off work when called and returns
``draw(**values) -> Figure``; each states its cost per call.
"""

from __future__ import annotations

from ._style import (
    COLORS,
    STYLE,
    style,
    to_numpy,
    use_style,
)
from ._style import (
    _axis as _axis,
)
from .attribution import (
    _as_heat as _as_heat,
)
from .attribution import (
    _as_image as _as_image,
)
from .attribution import (
    attribution_draw,
    plot_entropy_instability,
    plot_saliency_maps,
)
from .experiments import (
    plot_spectrum_tails,
    plot_strength_sweep,
    plot_study_comparison,
    study_draw,
)
from .geometry import (
    plot_depth_budget,
    plot_exponent_profile,
    plot_orbit_geometry,
    plot_power_law_fit,
    power_law_fit_draw,
    residual_profile_draw,
)
from .hessian import (
    plot_convergence,
    plot_density,
    plot_sharpness,
    step_size_draw,
)
from .monitor_history import monitor_history_draw, monitor_steps
from .ntk import (
    ntk_draw,
    plot_eigenvalues,
    plot_residuals,
)
from .spectra import (
    depth_spectra_draw,
    entropy_draw,
    jacobian_spectrum_draw,
    plot_depth_spectra,
    plot_depth_summary,
    plot_gates,
    plot_sensitivity_bounds,
    plot_spectra,
)
from .stability import (
    _CONSEQUENCES as _CONSEQUENCES,
)
from .stability import (
    _OPERATOR_NAMES as _OPERATOR_NAMES,
)
from .stability import (
    plot_bound_check,
    plot_consequences,
    plot_index_terms,
    plot_profile_samples,
    plot_stability_report,
    stability_draw,
)
from .training import (
    plot_history,
)
from .transformers import (
    transformer_draw,
)

__all__ = [
    "COLORS",
    "STYLE",
    "attribution_draw",
    "depth_spectra_draw",
    "entropy_draw",
    "jacobian_spectrum_draw",
    "monitor_history_draw",
    "monitor_steps",
    "ntk_draw",
    "plot_bound_check",
    "plot_consequences",
    "plot_convergence",
    "plot_density",
    "plot_depth_budget",
    "plot_depth_spectra",
    "plot_depth_summary",
    "plot_eigenvalues",
    "plot_entropy_instability",
    "plot_exponent_profile",
    "plot_gates",
    "plot_history",
    "plot_index_terms",
    "plot_orbit_geometry",
    "plot_power_law_fit",
    "plot_profile_samples",
    "plot_residuals",
    "plot_saliency_maps",
    "plot_sensitivity_bounds",
    "plot_sharpness",
    "plot_spectra",
    "plot_spectrum_tails",
    "plot_stability_report",
    "plot_strength_sweep",
    "plot_study_comparison",
    "power_law_fit_draw",
    "residual_profile_draw",
    "stability_draw",
    "step_size_draw",
    "study_draw",
    "style",
    "to_numpy",
    "transformer_draw",
    "use_style",
]
