"""spectral_lab: the matrix-spectral view of deep networks, as a course and a PyTorch library."""

from __future__ import annotations

__version__ = "0.1.0"

from . import plots, widgets
from .data import ArrayDataset, DatasetNotFoundError, load_dataset, resolve_root
from .jacobians import input_jacobian
from .models import MLP, ConvResNet, ResidualBlock, ResidualMLP, SmallCNN, build_model
from .spectra import singular_values
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
]
