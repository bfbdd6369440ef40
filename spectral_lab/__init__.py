"""spectral_lab: the matrix-spectral view of deep networks, as a course and a PyTorch library."""

from __future__ import annotations

__version__ = "0.1.0"

from . import plots, widgets
from .bounds import (
    NormBounds,
    SensitivityBounds,
    entropy_bound_constant,
    entropy_lower_bound,
    isotropic_perturbations,
    majorizes,
    mix_toward_uniform,
    monte_carlo_sensitivity,
    norm_bounds,
    robin_hood_transfer,
    sensitivity_bounds,
)
from .data import ArrayDataset, DatasetNotFoundError, load_dataset, resolve_root
from .jacobians import input_jacobian
from .models import MLP, ConvResNet, ResidualBlock, ResidualMLP, SmallCNN, build_model
from .operators import OperatorProduct, activation_derivative, operator_product
from .spectra import (
    SpectralSummary,
    condition_number,
    effective_rank,
    numerical_rank,
    participation_ratio,
    singular_values,
    spectral_distribution,
    spectral_entropy,
    spectral_summary,
    stable_rank,
)
from .training import History, evaluate, load_checkpoint, save_checkpoint, train

__all__ = [
    "plots",
    "widgets",
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
    # chapters 01-02: operators, spectra, bounds
    "NormBounds",
    "OperatorProduct",
    "SensitivityBounds",
    "SpectralSummary",
    "activation_derivative",
    "condition_number",
    "effective_rank",
    "entropy_bound_constant",
    "entropy_lower_bound",
    "isotropic_perturbations",
    "majorizes",
    "mix_toward_uniform",
    "monte_carlo_sensitivity",
    "norm_bounds",
    "numerical_rank",
    "operator_product",
    "participation_ratio",
    "robin_hood_transfer",
    "sensitivity_bounds",
    "spectral_distribution",
    "spectral_entropy",
    "spectral_summary",
    "stable_rank",
]
