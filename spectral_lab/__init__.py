"""spectral_lab: the matrix-spectral view of deep networks, as a course and a PyTorch library."""

from __future__ import annotations

__version__ = "0.1.0"

from . import plots, widgets
from .data import ArrayDataset, DatasetNotFoundError, load_dataset, resolve_root
from .hessian import (
    SharpnessTrace,
    dense_hessian,
    gd_quadratic,
    gd_with_sharpness,
    gnvp,
    half_mse,
    hessian_density,
    hessian_eigs,
    hessian_operator,
    hessian_trace,
    hvp,
)
from .jacobians import input_jacobian, parameter_jacobian, parameter_jvp, parameter_vjp
from .linalg import (
    EigResult,
    LinearOperator,
    SpectralDensity,
    TraceResult,
    hutchinson,
    hutchpp,
    lanczos,
    power_iteration,
    spectral_density,
)
from .models import MLP, ConvResNet, ResidualBlock, ResidualMLP, SmallCNN, build_model
from .ntk import (
    block_to_matrix,
    gd_residuals,
    label_noise_filter,
    label_noise_response,
    linearized_residuals,
    ntk_eigs,
    ntk_gram,
    ntk_operator,
)
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
    # issue 4: linalg, parameter Jacobians, NTK, Hessian
    "SharpnessTrace",
    "dense_hessian",
    "gd_quadratic",
    "gd_with_sharpness",
    "gnvp",
    "half_mse",
    "hessian_density",
    "hessian_eigs",
    "hessian_operator",
    "hessian_trace",
    "hvp",
    "parameter_jacobian",
    "parameter_jvp",
    "parameter_vjp",
    "EigResult",
    "LinearOperator",
    "SpectralDensity",
    "TraceResult",
    "hutchinson",
    "hutchpp",
    "lanczos",
    "power_iteration",
    "spectral_density",
    "block_to_matrix",
    "gd_residuals",
    "label_noise_filter",
    "label_noise_response",
    "linearized_residuals",
    "ntk_eigs",
    "ntk_gram",
    "ntk_operator",
]
