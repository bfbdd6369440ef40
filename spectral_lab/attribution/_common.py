"""Shared pieces of the attribution package: input checks and the class each map explains."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_logits, check_model, check_tensor, model_dtype_device


def _targets(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """Class index per sample: the model's prediction at ``x`` when ``target`` is None."""
    if target is None:
        with torch.no_grad():
            return check_logits(model(x)).argmax(1)
    if isinstance(target, int):
        return torch.full((len(x),), target, dtype=torch.long, device=x.device)
    if not isinstance(target, torch.Tensor) or target.dtype not in (torch.int32, torch.int64):
        raise TypeError("target must be None, an int or an integer tensor of shape (N,)")
    if target.shape != (len(x),):
        raise ValueError(
            f"target must have shape ({len(x)},) to match x, got {tuple(target.shape)}"
        )
    return target.to(x.device).long()


def _check_inputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    check_model(model)
    dtype, device = model_dtype_device(model)
    return check_tensor(x, "x", min_dim=2).to(device=device, dtype=dtype)
