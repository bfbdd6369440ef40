"""The walkers of every layer :func:`~spectral_lab.operators.operator_product` supports, registered
with :func:`spectral_lab.operators.register_walker` when :mod:`spectral_lab.operators` is imported
(it imports this module; this module imports only the factor types and the registry):

* ``nn.Sequential`` (recursion), ``Flatten``/``Unflatten``/``Identity``/dropout in eval mode (the
  identity), ``Linear`` (weights ``W``: dense on vectors, ``I_n ⊗ W`` on ``n`` positions) and
  ``Conv2d``, the gates ``D`` of ReLU, LeakyReLU, Tanh,
  Sigmoid, GELU, SiLU, ``MaxPool2d``/``AvgPool2d`` (``P``) and the library's ``ResidualBlock``;
* ``BatchNorm1d``/``BatchNorm2d`` in eval mode: the per-channel diagonal ``gamma/sqrt(var + eps)``
  (a :class:`DiagonalFactor` named ``B``);
* ``AdaptiveAvgPool2d`` (a fixed linear map) and ``AdaptiveMaxPool2d`` (a 0/1 selection at ``x``);
* torchvision's ``BasicBlock`` and ``Bottleneck``: one :class:`~spectral_lab.operators.ResidualFactor`
  ``D (J_shortcut + J_branch)`` with the branch ``conv-bn-relu-conv-bn[-relu-conv-bn]``, the
  shortcut the identity or ``downsample``, and ``D`` the ReLU after the sum;
* torchvision's ``ResNet``, in the order of its ``forward``;
* peft's LoRA ``Linear``: one weight ``W + sum_a s_a B_a A_a`` (its active adapters).

torchvision's and peft's classes are registered by their dotted names, so neither is imported here.
A layer configuration a walker does not handle (``TypeError``) goes to the capture or a generic
factor; a model state without a per-input Jacobian (train-mode BatchNorm, active dropout) is
refused (``ModelStateError``).

Example:
    >>> from torch import nn
    >>> from spectral_lab.operators import operator_product
    >>> operator_product(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(3)).names
    ['W1', 'D1', 'W2']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._factors import (
    _GATES,
    _SKIP,
    DenseFactor,
    DiagonalFactor,
    GateFactor,
    MapFactor,
    ModelStateError,
    ResidualFactor,
    SelectionFactor,
    TokenLinearFactor,
    activation_derivative,
)
from ._product import OperatorProduct
from ._walk import WalkContext, register_walker
from .models import ResidualBlock

__all__: list[str] = []


def _pool_params(m: nn.Module) -> tuple[int, int, int]:
    def one(v):
        if isinstance(v, (tuple, list)):
            if len(set(v)) != 1:
                raise TypeError(f"{type(m).__name__} with non-square {v} is not supported")
            return int(v[0])
        return int(v)

    k = one(m.kernel_size)
    s = one(m.stride if m.stride is not None else m.kernel_size)
    p = one(m.padding)
    return k, s, p


@register_walker(nn.Sequential)
def _walk_sequential(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    return ctx.walk(list(m), h)


@register_walker(*_SKIP)
def _walk_skip(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
        raise ModelStateError(
            f"{ctx.prefix}{type(m).__name__} is in train mode (random); call model.eval() first"
        )
    return m(h)


@register_walker(nn.Linear)
def _walk_linear(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    in_shape = tuple(h.shape[1:])
    out = m(h)
    kind = DenseFactor if h.dim() == 2 else TokenLinearFactor  # I_n ⊗ W on n positions
    ctx.add(kind(ctx.name("W"), "weight", in_shape, tuple(out.shape[1:]), m, m.weight.detach()))
    return out


@register_walker(nn.Conv2d)
def _walk_conv2d(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    in_shape = tuple(h.shape[1:])
    w, stride, pad, dil, groups = m.weight.detach(), m.stride, m.padding, m.dilation, m.groups
    if m.padding_mode != "zeros":
        raise TypeError(f"Conv2d with padding_mode={m.padding_mode!r} is not supported")

    def conv(v, w=w, stride=stride, pad=pad, dil=dil, groups=groups):
        return F.conv2d(v, w, None, stride, pad, dil, groups)

    def conv_t(u, w=w, stride=stride, pad=pad, dil=dil, groups=groups):
        size = (len(u), *in_shape)
        return torch.nn.grad.conv2d_input(size, w, u, stride, pad, dil, groups)

    h = m(h)
    out_shape = tuple(h.shape[1:])
    rfn = None if isinstance(pad, str) else conv_t  # padding="same": the VJP route
    ctx.add(MapFactor(ctx.name("W"), "weight", in_shape, out_shape, m, conv, w, None, rfn))
    return h


@register_walker(*_GATES)
def _walk_gate(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    in_shape = tuple(h.shape[1:])
    diag = activation_derivative(m, h).reshape(-1)
    h = m(h.clone()) if getattr(m, "inplace", False) else m(h)  # never overwrite a kept tensor
    ctx.add(GateFactor(ctx.name("D"), "gate", in_shape, in_shape, m, diag))
    return h


@register_walker(nn.MaxPool2d)
def _walk_maxpool2d(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    in_shape = tuple(h.shape[1:])
    k, s, p = _pool_params(m)
    if m.dilation not in (1, (1, 1)) or m.ceil_mode:
        raise TypeError("MaxPool2d with dilation or ceil_mode is not supported")
    out, idx = F.max_pool2d(h, k, s, p, return_indices=True)
    c, hh, ww = in_shape
    # idx indexes the flattened (H, W) plane of each channel; make it a flat index
    offs = torch.arange(c, device=h.device).view(1, c, 1, 1) * (hh * ww)
    index = (idx + offs).reshape(-1)
    overlap = math.ceil(k / s)
    ctx.add(
        SelectionFactor(
            ctx.name("P"), "pool", in_shape, tuple(out.shape[1:]), m, index, out, overlap
        )
    )
    return out


@register_walker(nn.AvgPool2d)
def _walk_avgpool2d(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    in_shape = tuple(h.shape[1:])
    k, s, p = _pool_params(m)

    def avg(v, k=k, s=s, p=p, m=m):
        return F.avg_pool2d(v, k, s, p, m.ceil_mode, m.count_include_pad, m.divisor_override)

    h = m(h)
    bound = math.ceil(k / s) / k if p == 0 and not m.ceil_mode else None
    ctx.add(MapFactor(ctx.name("P"), "pool", in_shape, tuple(h.shape[1:]), m, avg, h, bound))
    return h


@register_walker(ResidualBlock)
def _walk_residual_block(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    in_shape = tuple(h.shape[1:])
    sub = ctx.sub(f"{ctx.name('R')}.")
    b_out = sub.walk(_as_seq(m.branch), h)
    if b_out.shape != h.shape:
        raise ValueError(
            f"residual branch changes the shape {tuple(h.shape)} -> {tuple(b_out.shape)}"
        )
    branch = OperatorProduct(sub.factors, in_shape, h)
    ctx.add(
        ResidualFactor(sub.prefix[:-1], "residual", in_shape, in_shape, m, float(m.scale), branch)
    )
    return h + float(m.scale) * b_out


def _as_seq(m: nn.Module) -> Sequence[nn.Module]:
    return list(m) if isinstance(m, nn.Sequential) else [m]


def _bn_scale(m: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """``gamma / sqrt(running_var + eps)`` per channel (``gamma = 1`` when ``affine=False``)."""
    s = torch.rsqrt(m.running_var.detach() + m.eps)
    return s if m.weight is None else m.weight.detach() * s


@register_walker(nn.BatchNorm1d, nn.BatchNorm2d)
def _walk_batchnorm(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    where = f"{ctx.prefix}{type(m).__name__}"
    if m.training:
        raise ModelStateError(
            f"{where} is in train mode: it normalises with the batch's statistics, so its output "
            "depends on the batch and has no per-input Jacobian; call model.eval() first"
        )
    if m.running_var is None:
        raise ModelStateError(
            f"{where} has no running statistics (track_running_stats=False), so even in eval mode "
            "it normalises with the batch's statistics and has no per-input Jacobian; "
            "model.eval() does not change that: build it with track_running_stats=True and "
            "estimate the statistics on training data"
        )
    shape = tuple(h.shape[1:])
    c = shape[0]
    diag = _bn_scale(m).reshape(c, *([1] * (len(shape) - 1))).expand(shape).reshape(-1)
    out = m(h)
    ctx.add(DiagonalFactor(ctx.name("B"), "norm", shape, shape, m, diag.to(h.dtype)))
    return out


@register_walker(nn.AdaptiveAvgPool2d)
def _walk_adaptive_avg(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    size = m.output_size

    def avg(v, size=size):
        return F.adaptive_avg_pool2d(v, size)

    in_shape = tuple(h.shape[1:])
    out = m(h)
    ctx.add(MapFactor(ctx.name("P"), "pool", in_shape, tuple(out.shape[1:]), m, avg, out))
    return out


def _adaptive_overlap(n: int, o: int) -> int:
    """The most bins of an adaptive pool ``n -> o`` that contain one input position."""
    count = [0] * n
    for i in range(o):
        for j in range((i * n) // o, -((-(i + 1) * n) // o)):
            count[j] += 1
    return max(count)


@register_walker(nn.AdaptiveMaxPool2d)
def _walk_adaptive_max(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    in_shape = tuple(h.shape[1:])
    c, hh, ww = in_shape[-3:]
    size = m.output_size if isinstance(m.output_size, (tuple, list)) else (m.output_size,) * 2
    oh, ow = (hh if size[0] is None else size[0]), (ww if size[1] is None else size[1])
    out, idx = F.adaptive_max_pool2d(h, (oh, ow), return_indices=True)
    offs = torch.arange(c, device=h.device).view(1, c, 1, 1) * (hh * ww)
    index = (idx + offs).reshape(-1)
    # ||S||_2 = sqrt(max picks of one input) <= sqrt(overlap_h * overlap_w) at every input
    overlap = math.sqrt(_adaptive_overlap(hh, oh) * _adaptive_overlap(ww, ow))
    ctx.add(
        SelectionFactor(
            ctx.name("P"), "pool", in_shape, tuple(out.shape[1:]), m, index, out, overlap
        )
    )
    return out


@register_walker("torchvision.models.resnet.BasicBlock", "torchvision.models.resnet.Bottleneck")
def _walk_torchvision_block(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    """``relu(branch(h) + shortcut(h))``, as torchvision's ``BasicBlock``/``Bottleneck.forward``."""
    branch = [m.conv1, m.bn1, m.relu, m.conv2, m.bn2]
    if hasattr(m, "conv3"):  # Bottleneck
        branch += [m.relu, m.conv3, m.bn3]
    in_shape = tuple(h.shape[1:])
    name = ctx.name("R")
    sub = ctx.sub(f"{name}.")
    b_out = sub.walk(branch, h)
    shortcut, s_out = None, h
    if m.downsample is not None:
        sc = ctx.sub(f"{name}.S.")
        s_out = sc.walk(_as_seq(m.downsample), h)
        shortcut = OperatorProduct(sc.factors, in_shape, h)
    if s_out.shape != b_out.shape:
        raise ValueError(
            f"{name}: the shortcut gives shape {tuple(s_out.shape)} but the branch "
            f"{tuple(b_out.shape)}; a block that changes shape needs a downsample"
        )
    z = b_out + s_out
    gate = activation_derivative(m.relu, z).reshape(-1)
    out = F.relu(z)  # the dispatch compares it with m(h): a custom forward is captured instead
    ctx.add(
        ResidualFactor(
            name,
            "residual",
            in_shape,
            tuple(out.shape[1:]),
            m,
            1.0,
            OperatorProduct(sub.factors, in_shape, h),
            shortcut,
            gate,
            m.relu,
        )
    )
    return out


@register_walker("torchvision.models.resnet.ResNet")
def _walk_torchvision_resnet(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    """torchvision's ``ResNet.forward``: stem, ``layer1..4``, average pool, flatten, ``fc``."""
    stem = [m.conv1, m.bn1, m.relu, m.maxpool]
    return ctx.walk(
        [*stem, m.layer1, m.layer2, m.layer3, m.layer4, m.avgpool, nn.Flatten(), m.fc], h
    )


@register_walker("peft.tuners.lora.layer.Linear")
def _walk_lora_linear(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    """peft's LoRA ``Linear``: ``W_eff = W + sum_a s_a B_a A_a`` over the active adapters (eval
    dropout), one weight factor ``W`` (merged or disabled adapters: ``W`` alone). A variant (DoRA),
    ``fan_in_fan_out`` or a non-Linear base layer is left to the capture / generic factor."""
    base = m.base_layer
    if not isinstance(base, nn.Linear) or getattr(m, "fan_in_fan_out", False):
        raise TypeError("LoRA walker: a plain nn.Linear base layer only")
    w = base.weight.detach()
    if not (m.disable_adapters or m.merged):
        for a in m.active_adapters:
            if a not in m.lora_A.keys():
                continue
            if a in getattr(m, "lora_variant", {}):
                raise TypeError(f"LoRA walker: adapter {a!r} is a variant (DoRA...)")
            lora_b, lora_a = m.lora_B[a].weight.detach(), m.lora_A[a].weight.detach()
            w = w + m.scaling[a] * (lora_b @ lora_a)
    out = F.linear(h, w, None if base.bias is None else base.bias.detach())
    kind = DenseFactor if h.dim() == 2 else TokenLinearFactor
    ctx.add(kind(ctx.name("W"), "weight", tuple(h.shape[1:]), tuple(out.shape[1:]), m, w))
    return out  # compared with m(h) by the dispatch: a wrong W_eff is dropped for a generic factor
