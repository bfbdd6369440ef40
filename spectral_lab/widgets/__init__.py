"""ipywidgets explorers used by the chapters, one module per topic.

Each explorer holds only its controls: it wraps a drawing function ``draw(**values) -> Figure``
from :mod:`spectral_lab.plots` with :func:`explorer`, so tests can call the drawing logic directly
without a kernel or a browser (``ui.draw`` or ``sl.plots.<name>_draw``).
"""

from __future__ import annotations

# the drawing functions are re-exported for the spellings ``sl.widgets.<name>_draw``
from ..plots import (
    attribution_draw,
    depth_spectra_draw,
    entropy_draw,
    study_draw,
    transformer_draw,
)
from ._core import explorer
from .attribution import attribution_explorer
from .experiments import study_explorer
from .geometry import power_law_fit_explorer, residual_profile_explorer
from .hessian import step_size_explorer
from .monitor_history import monitor_history_explorer
from .ntk import ntk_explorer
from .spectra import depth_spectra_explorer, entropy_explorer, jacobian_spectrum_explorer
from .stability import stability_explorer
from .transformers import transformer_explorer

__all__ = [
    "attribution_draw",
    "attribution_explorer",
    "depth_spectra_draw",
    "depth_spectra_explorer",
    "entropy_draw",
    "entropy_explorer",
    "explorer",
    "jacobian_spectrum_explorer",
    "monitor_history_explorer",
    "ntk_explorer",
    "power_law_fit_explorer",
    "residual_profile_explorer",
    "stability_explorer",
    "step_size_explorer",
    "study_draw",
    "study_explorer",
    "transformer_draw",
    "transformer_explorer",
]
