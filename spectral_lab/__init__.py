"""spectral_lab: the matrix-spectral view of deep networks, as a course and a PyTorch library.

One call::

    import spectral_lab as sl
    report = sl.diagnose(model, data)          # -> sl.StabilityReport

The calls a reader makes first sit at the top level (``sl.input_jacobian``,
``sl.spectral_entropy``, ``sl.hessian_eigs``, ``sl.train``, ...). Everything else is reached
through a topic namespace:

    building blocks  sl.jacobians  sl.operators  sl.spectra  sl.sensitivity  sl.linalg  sl.ntk
                     sl.hessian  sl.stability  sl.attribution  sl.regularizers  sl.geometry
                     sl.experiments
    course helpers   sl.data  sl.models  sl.training  sl.plots  sl.widgets
    watching training  sl.monitor (SpectralMonitor and its Lightning/HF/TensorBoard adapters)

``sl.geometry``, ``sl.plots`` and ``sl.widgets`` (SciPy, Matplotlib, ipywidgets) are imported on
first use, so ``import spectral_lab`` stays light on a headless server.
"""

from __future__ import annotations

import importlib
import warnings

__version__ = "0.1.0"

from . import (
    attribution,
    data,
    experiments,
    hessian,
    jacobians,
    linalg,
    models,
    ntk,
    operators,
    regularizers,
    sensitivity,
    spectra,
    stability,
    training,
)
from . import transformer_ops as _transformer_ops  # noqa: F401 (registers the transformer walkers)
from .attribution import (
    attribution_instability,
    frechet_distance,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from .data import ArrayDataset, DatasetNotFoundError, load_dataset
from .diagnose import StabilityReport, diagnose
from .experiments import run_study
from .hessian import hessian_density, hessian_eigs, hessian_trace, hvp
from .jacobians import input_jacobian, parameter_jacobian
from .models import MLP, ConvResNet, ResidualMLP, SmallCNN, build_model
from .ntk import ntk_eigs, ntk_gram
from .operators import operator_product
from .prepared import Prepared, prepare
from .regularizers import make_regularizer
from .sensitivity import sensitivity_bounds
from .spectra import (
    condition_number,
    effective_rank,
    singular_values,
    spectral_entropy,
    stable_rank,
)
from .stability import stability_index, stability_profile, verify_consequences
from .training import evaluate, load_checkpoint, save_checkpoint, train

__all__ = [
    # topic namespaces
    "attribution",
    "data",
    "experiments",
    "geometry",
    "hessian",
    "jacobians",
    "linalg",
    "models",
    "monitor",
    "ntk",
    "operators",
    "plots",
    "regularizers",
    "sensitivity",
    "spectra",
    "stability",
    "training",
    "widgets",
    # one call: the stability report
    "StabilityReport",
    "diagnose",
    # the one entrance every call goes through
    "Prepared",
    "prepare",
    # Jacobians and the network as a product of operators
    "input_jacobian",
    "operator_product",
    "parameter_jacobian",
    # singular spectra and what they bound
    "condition_number",
    "effective_rank",
    "sensitivity_bounds",
    "singular_values",
    "spectral_entropy",
    "stable_rank",
    # the neural tangent kernel
    "ntk_eigs",
    "ntk_gram",
    # the loss Hessian
    "hessian_density",
    "hessian_eigs",
    "hessian_trace",
    "hvp",
    # the stability profile and index
    "stability_index",
    "stability_profile",
    "verify_consequences",
    # attribution and its robustness
    "attribution_instability",
    "frechet_distance",
    "integrated_gradients",
    "saliency",
    "smoothgrad",
    # regularisation and the reproducible study
    "make_regularizer",
    "run_study",
    # data, models, training
    "ArrayDataset",
    "ConvResNet",
    "DatasetNotFoundError",
    "MLP",
    "ResidualMLP",
    "SmallCNN",
    "build_model",
    "evaluate",
    "load_checkpoint",
    "load_dataset",
    "save_checkpoint",
    "train",
]

# Namespaces whose dependencies are heavy (SciPy, Matplotlib, ipywidgets): imported on first use.
_LAZY_MODULES = frozenset({"geometry", "monitor", "plots", "widgets"})


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'spectral_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# torch.func's first jvp lazily scripts a helper and torch 2.14 warns that torch.jit.script is
# deprecated: internal to torch, nothing a user of this library can act on.
warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning
)
