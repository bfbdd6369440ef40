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


@torch.no_grad()
def check_deterministic(model: nn.Module, x: torch.Tensor, name: str = "model") -> None:
    """Refuse a model whose output is random (two forward passes on the same batch differ:
    dropout, ``F.dropout`` in ``forward``, attention dropout, ...) or batch-dependent (a sample's
    output changes with the rest of its batch: BatchNorm in train mode or without running
    statistics). Judged by what the model does, not by its module types; buffers (BatchNorm
    running statistics) are restored afterwards."""
    x = x[: min(len(x), 8)]
    saved = {k: b.detach().clone() for k, b in model.named_buffers()}
    try:
        a = model(x)
        b = model(x)
        h = len(x) // 2
        c = model(x[:h]) if h >= 2 else None
    finally:
        for k, buf in model.named_buffers():
            buf.copy_(saved[k])

    def close(u, v):
        u, v = u.double(), v.double()
        return bool(torch.allclose(u, v, rtol=1e-4, atol=1e-5 * (1 + float(u.abs().max()))))

    if not close(a, b):
        raise ValueError(
            f"{name} is random: two forward passes on the same batch differ (dropout, F.dropout "
            f"in forward or attention dropout in train mode); call {name}.eval() first, or pass "
            "training=False to the functional dropout"
        )
    if c is not None and not close(a[:h], c):
        raise ValueError(
            f"{name} is batch-dependent: a sample's output changes with the rest of its batch "
            "(BatchNorm in train mode or with track_running_stats=False); call "
            f"{name}.eval() on a BatchNorm with running statistics (track_running_stats=True, "
            "after some training or a calibration pass), or replace it by a per-sample "
            "normalisation (GroupNorm/LayerNorm)"
        )


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
