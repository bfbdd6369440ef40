"""Per-phase progress, time / product / memory budgets and the budgeted phases of the profile.

:mod:`.core` holds :class:`Budget` (what a run may spend, what each phase did, the peak-memory
figure, gradient-equivalents), :mod:`.per_sample` the input-Jacobian rows and the parameter
Jacobian's top singular value, :mod:`.ntk` and :mod:`.hessian` the curvature phases. A *matvec*
is one product with an operator: one Hessian-vector product, or one NTK-vector product (a dense
Gram on ``n`` samples counts ``n``).
"""

from .core import Budget, OutOfBudget, Phase, Rate, counted, memo_first
from .hessian import hessian_phase
from .ntk import _predict_rest, ntk_phase  # noqa: F401  (_predict_rest: tests)
from .per_sample import input_jacobian_rows, param_top

__all__ = [
    "Budget",
    "OutOfBudget",
    "Phase",
    "Rate",
    "counted",
    "hessian_phase",
    "input_jacobian_rows",
    "memo_first",
    "ntk_phase",
    "param_top",
]
