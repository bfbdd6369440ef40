"""Private torch.func plumbing shared by the parameter-space modules (jacobians, ntk, hessian).

Parameter-space vectors are flat 1-D tensors of length ``p`` laid out in the order of
``model.named_parameters()`` (trainable ones only), in the parameters' dtype and device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the trainable parameters (detached), raising if there are none."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(
            "model has no trainable parameters; parameter Jacobians, the NTK and the loss "
            "Hessian need at least one parameter with requires_grad=True"
        )
    return params


def buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: b.detach() for k, b in model.named_buffers()}


def num_params(params: dict[str, torch.Tensor]) -> int:
    return sum(p.numel() for p in params.values())


def flatten(tree: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tree.values()])


def flatten_batched(tree: dict[str, torch.Tensor], lead: int) -> torch.Tensor:
    """Flatten a dict whose leaves carry ``lead`` leading batch dimensions."""
    return torch.cat([t.reshape(*t.shape[:lead], -1) for t in tree.values()], dim=-1)


def unflatten(v: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for k, p in like.items():
        out[k] = v[i : i + p.numel()].view_as(p)
        i += p.numel()
    return out


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (dropout off, batch-norm on running statistics); restore after."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def functional(model: nn.Module):
    """``f(params, x) -> model(x)`` with the model's buffers fixed (torch.func.functional_call)."""
    bufs = buffers(model)

    def f(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, (params, bufs), (x,))

    return f


def check_vector(v: object, dim: int, like: torch.Tensor, name: str = "v") -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of length {dim}, got {type(v).__name__}")
    if v.dim() != 1 or v.shape[0] != dim:
        raise ValueError(
            f"{name} must be a flat vector of length {dim} (the number of trainable parameters), "
            f"got shape {tuple(v.shape)}"
        )
    return v.to(dtype=like.dtype, device=like.device)
