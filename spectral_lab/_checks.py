"""Input validation shared by every module: clear errors that name the argument and the fix."""

from __future__ import annotations

import torch
from torch import nn

_STOCHASTIC_OR_BATCH_DEPENDENT = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,  # harmless, listed so the message below can stay generic
)


def check_tensor(x: object, name: str = "x", *, min_dim: int = 1) -> torch.Tensor:
    """Return ``x`` if it is a non-empty, finite, floating-point tensor; raise otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s), got shape {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); pass at least one sample")
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{name} has integer/bool dtype {x.dtype}; convert it first, e.g. {name}.float() "
            f"(images: {name}.float() / 255)"
        )
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(
            f"{name} contains {bad} NaN/Inf value(s); clean or drop those samples first"
        )
    return x


def check_model(model: object, name: str = "model") -> nn.Module:
    """Require an ``nn.Module`` with parameters that behaves deterministically per sample.

    A model in train mode with dropout or batch-norm gives a different, batch-dependent function on
    every call, so spectra of "its" Jacobian are undefined: we refuse it and say how to fix it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    if next(model.parameters(), None) is None:
        raise ValueError(f"{name} has no parameters; spectral diagnostics need a trainable model")
    if model.training:
        culprits = [
            type(m).__name__
            for m in model.modules()
            if isinstance(m, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm))
        ]
        if culprits:
            raise ValueError(
                f"{name} is in train mode and contains {sorted(set(culprits))}, which make its output "
                f"random or batch-dependent; call {name}.eval() first"
            )
    return model


def check_logits(out: object, name: str = "model output") -> torch.Tensor:
    """Require a 2-D ``(N, C)`` logits tensor."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of logits, got {type(out).__name__}")
    if out.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-D (batch, classes) logits tensor, got shape {tuple(out.shape)}; "
            "flatten or select the logits in the model's forward"
        )
    return out


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(model.parameters())
    return p.dtype, p.device
