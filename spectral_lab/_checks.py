"""Input validation shared by every module: clear errors that name the argument and the fix."""

from __future__ import annotations

import torch
from torch import nn


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
        raise TypeError(integer_input_message(x.dtype))
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(
            f"{name} contains {bad} NaN/Inf value(s); clean or drop those samples first"
        )
    return x


TOKEN_DTYPES = (torch.int32, torch.int64)
"""Integer dtypes read as token ids (for a model with an ``nn.Embedding``); every other integer
dtype (``uint8`` images above all) is refused."""


def integer_input_message(dtype: torch.dtype) -> str:
    """The one message for integer/bool inputs, the same at every entry point."""
    return (
        f"inputs of integer/bool dtype {dtype} are refused: convert them first, e.g. x.float() "
        "(images: x.float() / 255); token ids (int64/int32) are taken as they are by diagnose and "
        "stability_profile when the model has an nn.Embedding"
    )


def check_input_dtype(x: torch.Tensor, model: nn.Module) -> bool:
    """The one dtype policy for a model's inputs: ``True`` for token ids (int32/int64 into a model
    that has an ``nn.Embedding``), ``False`` for floating-point inputs; raise for anything else
    with :func:`integer_input_message`."""
    if torch.is_floating_point(x):
        return False
    if x.dtype in TOKEN_DTYPES and any(isinstance(m, nn.Embedding) for m in model.modules()):
        return True
    raise TypeError(integer_input_message(x.dtype))


def check_labels(y: torch.Tensor, n: int, c: int, loss: str) -> torch.Tensor:
    """Labels ``y`` that fit ``n`` inputs, ``c`` model outputs and the named ``loss``; returned
    reshaped for it (``(n, c)`` float targets for ``"mse"``). Cheap: call it before any expensive
    work."""
    if len(y) != n:
        raise ValueError(f"labels: {len(y)} labels for {n} inputs")
    if loss == "cross_entropy":
        if torch.is_floating_point(y):
            raise TypeError(
                f"labels are floating point ({y.dtype}) but the loss is cross-entropy, which needs "
                "integer class ids; for regression targets pass loss='mse' (chosen automatically "
                "with loss='auto')"
            )
        if c == 1:
            raise ValueError(
                "cross-entropy on a model with one output is identically zero; a one-output model "
                "is a regression model: pass float targets and loss='mse'"
            )
        if y.dim() != 1:
            raise ValueError(f"class labels must be 1-D (N,), got shape {tuple(y.shape)}")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= c:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"labels out of range: found class id {bad} but the model has {c} outputs "
                f"(valid ids 0..{c - 1})"
            )
        return y
    if loss == "mse":
        if y.numel() != n * c:
            raise ValueError(
                f"mse targets of shape {tuple(y.shape)} do not match the outputs {(n, c)}; "
                "for class ids use loss='cross_entropy'"
            )
        return y.reshape(n, c) if torch.is_floating_point(y) else y.reshape(n, c).float()
    return y


def check_model(model: object, name: str = "model") -> nn.Module:
    """Require an ``nn.Module`` with parameters (the static part of the checks; a module's
    behaviour is judged once, by :func:`spectral_lab.prepare`, never by its modules' types)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    if next(model.parameters(), None) is None:
        raise ValueError(f"{name} has no parameters; spectral diagnostics need a trainable model")
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
