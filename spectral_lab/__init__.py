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

``sl.geometry``, ``sl.plots`` and ``sl.widgets`` (SciPy, Matplotlib, ipywidgets) are imported on
first use, so ``import spectral_lab`` stays light on a headless server.
"""

from __future__ import annotations

import importlib
import sys
import types
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
_LAZY_MODULES = frozenset({"geometry", "plots", "widgets"})

# Names that were top-level in 0.1 and now live only in their topic namespace. They keep working for
# one release (module ``__getattr__`` below) with a DeprecationWarning naming the new spelling.
_MOVED: dict[str, str] = {
    # attribution
    "AttributionInstability": "attribution",
    "attribution_condition_number": "attribution",
    "cosine_distance": "attribution",
    "frechet_distance_bootstrap": "attribution",
    "gaussian_frechet_distance": "attribution",
    "gradient_x_input": "attribution",
    "relative_change": "attribution",
    "spearman": "attribution",
    "topk_overlap": "attribution",
    "upper_envelope": "attribution",
    # sensitivity (was spectral_lab.bounds)
    "NormBounds": "sensitivity",
    "SensitivityBounds": "sensitivity",
    "entropy_bound_constant": "sensitivity",
    "entropy_lower_bound": "sensitivity",
    "isotropic_perturbations": "sensitivity",
    "majorizes": "sensitivity",
    "mix_toward_uniform": "sensitivity",
    "monte_carlo_sensitivity": "sensitivity",
    "norm_bounds": "sensitivity",
    "robin_hood_transfer": "sensitivity",
    # data
    "resolve_root": "data",
    # experiments
    "PAPER_REPORTED": "experiments",
    "StudyConfig": "experiments",
    "StudyResult": "experiments",
    "assess_claims": "experiments",
    "strength_sweep": "experiments",
    "study_preset": "experiments",
    # geometry
    "ChainSlack": "geometry",
    "DepthBudget": "geometry",
    "ExponentProfile": "geometry",
    "PowerLawFit": "geometry",
    "bures_line_element": "geometry",
    "cartan_coordinates": "geometry",
    "chain_slack": "geometry",
    "depth_budget": "geometry",
    "exponent_profile": "geometry",
    "fisher_information": "geometry",
    "frobenius_normalize": "geometry",
    "layer_factors": "geometry",
    "power_law_fit": "geometry",
    "power_law_spectrum": "geometry",
    "top_radial": "geometry",
    # hessian
    "SharpnessTrace": "hessian",
    "dense_hessian": "hessian",
    "gd_quadratic": "hessian",
    "gd_with_sharpness": "hessian",
    "gnvp": "hessian",
    "half_mse": "hessian",
    "hessian_operator": "hessian",
    # jacobians
    "parameter_jvp": "jacobians",
    "parameter_vjp": "jacobians",
    # linalg
    "EigResult": "linalg",
    "LinearOperator": "linalg",
    "SpectralDensity": "linalg",
    "TraceResult": "linalg",
    "hutchinson": "linalg",
    "hutchpp": "linalg",
    "lanczos": "linalg",
    "power_iteration": "linalg",
    "spectral_density": "linalg",
    # models
    "ResidualBlock": "models",
    # ntk
    "block_to_matrix": "ntk",
    "gd_residuals": "ntk",
    "label_noise_filter": "ntk",
    "label_noise_response": "ntk",
    "linearized_residuals": "ntk",
    "ntk_operator": "ntk",
    # operators
    "OperatorProduct": "operators",
    "activation_derivative": "operators",
    # regularizers
    "apply_spectral_norm": "regularizers",
    "jacobian_frobenius_norm": "regularizers",
    "jacobian_spectral_norm": "regularizers",
    # spectra
    "SpectralSummary": "spectra",
    "numerical_rank": "spectra",
    "participation_ratio": "spectra",
    "spectral_distribution": "spectra",
    "spectral_summary": "spectra",
    # stability
    "ConsequenceCheck": "stability",
    "StabilityIndex": "stability",
    "StabilityProfile": "stability",
    "attribution_change_bound": "stability",
    "forward_sensitivity_bound": "stability",
    "measure_attribution_change": "stability",
    "measure_forward_sensitivity": "stability",
    "measure_max_stable_lr": "stability",
    "measure_parameter_sensitivity": "stability",
    "ntk_condition_bound": "stability",
    "parameter_sensitivity_bound": "stability",
    "stable_step_size": "stability",
    # training
    "History": "training",
}


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    topic = _MOVED.get(name)
    if topic is not None:
        module = importlib.import_module(f".{topic}", __name__)
        if sys._getframe(1).f_globals.get("__name__") == "importlib._bootstrap":
            # ``from spectral_lab import X`` probes with hasattr first: warn once, at the import
            return getattr(module, name)
        warnings.warn(
            f"spectral_lab.{name} is deprecated and will be removed in the next release; "
            f"use spectral_lab.{topic}.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(module, name)
    raise AttributeError(f"module 'spectral_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _AttributionModule(types.ModuleType):
    """``sl.attribution`` is the namespace; in 0.1 it was also the dispatcher function, so a call
    still works for one release and warns."""

    def __call__(self, *args, **kwargs):
        warnings.warn(
            "calling spectral_lab.attribution(...) is deprecated and will be removed in the next "
            "release; use spectral_lab.attribution.attribution(...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.attribution(*args, **kwargs)


sys.modules[f"{__name__}.attribution"].__class__ = _AttributionModule

# torch.func's first jvp lazily scripts a helper and torch 2.14 warns that torch.jit.script is
# deprecated: internal to torch, nothing a user of this library can act on.
warnings.filterwarnings(
    "ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning
)
