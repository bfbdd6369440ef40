"""The input and parameter Jacobians: ``J_f(x) = df/dx``, ``(N, C, d)``, and ``J_theta(x)``.

Example:
    >>> import torch
    >>> from spectral_lab import MLP
    >>> J = input_jacobian(MLP(4, 3, width=8), torch.randn(5, 4))
    >>> J.shape
    torch.Size([5, 3, 4])

The input Jacobian lives in :mod:`spectral_lab.jacobians.input`, the parameter Jacobian in
:mod:`spectral_lab.jacobians.parameter` (one operator a file, as the NTK in ``ntk.py`` and the loss
Hessian in ``hessian.py``); each is available batched and as a rectangular
:class:`~spectral_lab.linalg.LinearOperator`.
"""

from .input import INPUT_JACOBIAN_ROUTES, input_jacobian, input_jacobian_operator
from .parameter import (
    PARAMETER_JACOBIAN_ROUTES,
    parameter_jacobian,
    parameter_jacobian_operator,
    parameter_jvp,
    parameter_vjp,
)

__all__ = [
    "INPUT_JACOBIAN_ROUTES",
    "PARAMETER_JACOBIAN_ROUTES",
    "input_jacobian",
    "input_jacobian_operator",
    "parameter_jacobian",
    "parameter_jacobian_operator",
    "parameter_jvp",
    "parameter_vjp",
]
