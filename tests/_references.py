"""Independent references shared by tests: dense parameter Jacobians and NTKs from
``torch.autograd.functional.jacobian`` on a flat-parameter ``functional_call`` (no library code)."""

from __future__ import annotations

import torch


def flat_params(model):
    """``(theta0, unflatten)``: the trainable parameters as one vector and its inverse."""
    params = dict(model.named_parameters())
    names = list(params)
    theta0 = torch.cat([params[k].detach().reshape(-1) for k in names])

    def unflatten(theta):
        sizes = [params[k].numel() for k in names]
        return {k: t.reshape(params[k].shape) for k, t in zip(names, theta.split(sizes))}

    return theta0, unflatten


def dense_block_ntk(model, x):
    """Block NTK ``K = J J^T`` of shape ``(n C, n C)`` with ``J_theta`` from autograd, as numpy."""
    theta0, unflatten = flat_params(model)
    J = torch.autograd.functional.jacobian(
        lambda t: torch.func.functional_call(model, unflatten(t), (x,)).reshape(-1), theta0
    )
    return (J @ J.T).numpy()
