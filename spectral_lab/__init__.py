"""spectral_lab: the matrix-spectral view of deep networks, as a course and a PyTorch library."""

from __future__ import annotations

__version__ = "0.1.0"

from . import geometry, plots, widgets
from .data import ArrayDataset, DatasetNotFoundError, load_dataset, resolve_root
from .geometry import (
    ChainSlack,
    DepthBudget,
    ExponentProfile,
    PowerLawFit,
    bures_line_element,
    cartan_coordinates,
    chain_slack,
    depth_budget,
    effective_rank,
    exponent_profile,
    fisher_information,
    frobenius_normalize,
    layer_factors,
    power_law_fit,
    power_law_spectrum,
    top_radial,
)
from .jacobians import input_jacobian
from .models import MLP, ConvResNet, ResidualBlock, ResidualMLP, SmallCNN, build_model
from .spectra import singular_values
from .training import History, evaluate, load_checkpoint, save_checkpoint, train

__all__ = [
    "geometry",
    "plots",
    "widgets",
    "ArrayDataset",
    "ChainSlack",
    "DepthBudget",
    "ExponentProfile",
    "PowerLawFit",
    "bures_line_element",
    "cartan_coordinates",
    "chain_slack",
    "depth_budget",
    "effective_rank",
    "exponent_profile",
    "fisher_information",
    "frobenius_normalize",
    "layer_factors",
    "power_law_fit",
    "power_law_spectrum",
    "top_radial",
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
