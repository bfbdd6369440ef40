"""Shared pieces of the attribution package: input checks and the class each map explains."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_logits


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


def _check_inputs(model, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """The function an attribution explains and the point, through the one entrance
    (:func:`~spectral_lab.prepare`): the analysed model at ``x``, or, for token ids, the model cut
    at its input embedding and the embedding's output (attributions per token and embedding
    coordinate)."""
    from ..prepared import prepare

    return prepare(model, x).input_space(x)
