"""spectral_lab: the matrix-spectral view of deep networks, as a course and a PyTorch library."""

from __future__ import annotations

__version__ = "0.1.0"

from . import plots, widgets
from .attribution import (
    AttributionInstability,
    attribution,
    attribution_condition_number,
    attribution_instability,
    cosine_distance,
    frechet_distance,
    gaussian_frechet_distance,
    gradient_x_input,
    integrated_gradients,
    relative_change,
    saliency,
    smoothgrad,
    topk_overlap,
    upper_envelope,
)
from .data import ArrayDataset, DatasetNotFoundError, load_dataset, resolve_root
from .experiments import (
    PAPER_REPORTED,
    StudyConfig,
    StudyResult,
    assess_claims,
    run_study,
    strength_sweep,
    study_preset,
)
from .jacobians import input_jacobian
from .models import MLP, ConvResNet, ResidualBlock, ResidualMLP, SmallCNN, build_model
from .regularizers import (
    apply_spectral_norm,
    jacobian_frobenius_norm,
    jacobian_spectral_norm,
    make_regularizer,
)
from .spectra import singular_values
from .training import History, evaluate, load_checkpoint, save_checkpoint, train

__all__ = [
    "plots",
    "widgets",
    "AttributionInstability",
    "PAPER_REPORTED",
    "StudyConfig",
    "StudyResult",
    "apply_spectral_norm",
    "assess_claims",
    "attribution",
    "attribution_condition_number",
    "attribution_instability",
    "cosine_distance",
    "frechet_distance",
    "gaussian_frechet_distance",
    "gradient_x_input",
    "integrated_gradients",
    "jacobian_frobenius_norm",
    "jacobian_spectral_norm",
    "make_regularizer",
    "relative_change",
    "run_study",
    "saliency",
    "smoothgrad",
    "strength_sweep",
    "study_preset",
    "topk_overlap",
    "upper_envelope",
    "ArrayDataset",
    "ConvResNet",
    "DatasetNotFoundError",
    "History",
    "MLP",
    "ResidualBlock",
    "ResidualMLP",
    "SmallCNN",
    "build_model",
    "evaluate",
    "input_jacobian",
    "load_checkpoint",
    "load_dataset",
    "resolve_root",
    "save_checkpoint",
    "singular_values",
    "train",
]
