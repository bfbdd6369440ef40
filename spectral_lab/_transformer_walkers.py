"""The walkers that teach :func:`~spectral_lab.operators.operator_product` transformer layers.

Registered (``@register_walker``) when :mod:`spectral_lab.operators` is imported (it imports this
module; this module imports only the factors of :mod:`spectral_lab.transformer_ops` and the
registry, so there is no import cycle). Each walker appends the factors of
:mod:`spectral_lab.transformer_ops` whose product is the layer's Jacobian at ``h`` and returns the
layer's output. Names: block ``i`` gives ``Bi.attn`` and ``Bi.mlp`` (residual sublayers; their
branches ``Bi.attn.LN1``, ``Bi.attn.A1``, ``Bi.mlp.W1``, ...) and, post-LN, ``Bi.attn.LN`` /
``Bi.mlp.LN``; embeddings ``E1`` (patches) and ``C1`` (class token); pooling ``P1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._factors import MapFactor, ModelStateError, ResidualFactor, SelectionFactor
from ._product import OperatorProduct
from ._walk import WalkContext, register_walker
from .transformer_models import (
    ClassToken,
    EncoderBlock,
    PatchEmbedding,
    PositionalEmbedding,
    SelfAttention,
    TokenPool,
)
from .transformer_ops import (
    TokenMeanFactor,
    TokenPadFactor,
    attention_factor,
    layernorm_factor,
)


def _shape(h: torch.Tensor) -> tuple[int, ...]:
    return tuple(h.shape[1:])


def _residual(ctx: WalkContext, label: str, h: torch.Tensor, branch_steps) -> torch.Tensor:
    """``h + branch(h)`` as ``I + J_branch``; ``branch_steps(sub_ctx, h)`` walks the branch."""
    sub = ctx.sub(label + ".")
    out = branch_steps(sub, h)
    branch = OperatorProduct(sub.factors, _shape(h), h)
    ctx.add(ResidualFactor(label, "residual", _shape(h), _shape(h), None, 1.0, branch))
    return h + out


def _norm(ctx: WalkContext, m: nn.LayerNorm, h: torch.Tensor, name: str) -> torch.Tensor:
    ctx.add(layernorm_factor(m, h[0], name))
    return m(h)


def _attend(ctx: WalkContext, m: nn.Module, h: torch.Tensor) -> torch.Tensor:
    if h.dim() != 3:
        raise ValueError(f"attention needs tokens (n, d); got one input of shape {_shape(h)}")
    f, out = attention_factor(m, h[0], ctx.name("A"))
    ctx.add(f)
    return out[None]


def _encoder(ctx, h, norm_first, norm1, attn, norm2, mlp_layers) -> torch.Tensor:
    label = ctx.name("B")

    def attn_branch(sub, h):
        if norm_first:
            h = _norm(sub, norm1, h, sub.name("LN"))
        return _attend(sub, attn, h)

    def mlp_branch(sub, h):
        if norm_first:
            h = _norm(sub, norm2, h, sub.name("LN"))
        return sub.walk(mlp_layers, h)  # a Linear on tokens is I_n ⊗ W

    h = _residual(ctx, f"{label}.attn", h, attn_branch)
    if not norm_first:
        h = _norm(ctx, norm1, h, f"{label}.attn.LN")
    h = _residual(ctx, f"{label}.mlp", h, mlp_branch)
    if not norm_first:
        h = _norm(ctx, norm2, h, f"{label}.mlp.LN")
    return h


_FUNCTIONAL_GATES = {F.relu: nn.ReLU, F.gelu: nn.GELU, F.silu: nn.SiLU}


@register_walker(EncoderBlock)
def _walk_encoder_block(m: EncoderBlock, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    return _encoder(ctx, h, m.norm_first, m.norm1, m.attn, m.norm2, list(m.mlp))


@register_walker(nn.TransformerEncoder)
def _walk_encoder_stack(
    m: nn.TransformerEncoder, h: torch.Tensor, ctx: WalkContext
) -> torch.Tensor:
    """torch's encoder stack without a mask: its layers in order, then its final norm (if any)."""
    return ctx.walk(list(m.layers) + ([m.norm] if m.norm is not None else []), h)


@register_walker(nn.TransformerEncoderLayer)
def _walk_encoder_layer(
    m: nn.TransformerEncoderLayer, h: torch.Tensor, ctx: WalkContext
) -> torch.Tensor:
    if not m.self_attn.batch_first:
        raise TypeError("nn.TransformerEncoderLayer must be built with batch_first=True")
    if m.training and any(d.p > 0 for d in (m.dropout, m.dropout1, m.dropout2)):
        raise ModelStateError("the encoder layer's dropout is active: call model.eval() first")
    act = m.activation
    if not isinstance(act, nn.Module):
        if act not in _FUNCTIONAL_GATES:
            raise TypeError(f"unsupported activation {act!r}; use 'relu' or 'gelu' or a module")
        act = _FUNCTIONAL_GATES[act]()
    mlp = [m.linear1, act, m.linear2]
    return _encoder(ctx, h, m.norm_first, m.norm1, m.self_attn, m.norm2, mlp)


@register_walker(nn.LayerNorm)
def _walk_layernorm(m: nn.LayerNorm, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    return _norm(ctx, m, h, ctx.name("LN"))


@register_walker(SelfAttention, nn.MultiheadAttention)
def _walk_attention(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    return _attend(ctx, m, h)


@register_walker(PatchEmbedding)
def _walk_patch_embedding(m: PatchEmbedding, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    c, s, w = m.in_channels, m.image_size, m.proj.weight.detach()

    def embed(v, w=w, p=m.patch_size, c=c, s=s):
        return F.conv2d(v.reshape(len(v), c, s, s), w, None, p).flatten(2).transpose(1, 2)

    out = m(h)
    ctx.add(MapFactor(ctx.name("E"), "weight", _shape(h), _shape(out), m, embed, w))
    return out


@register_walker(PositionalEmbedding)
def _walk_positions(m: PositionalEmbedding, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    return m(h)  # an additive constant: identity Jacobian, no factor


@register_walker(ClassToken)
def _walk_class_token(m: ClassToken, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    out = m(h)
    ctx.add(TokenPadFactor(ctx.name("C"), "embed", _shape(h), _shape(out), m, h))
    return out


@register_walker(TokenPool)
def _walk_token_pool(m: TokenPool, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
    out = m(h)
    if m.mode == "mean":
        ctx.add(TokenMeanFactor(ctx.name("P"), "pool", _shape(h), _shape(out), m, h))
    else:
        index = torch.arange(h.shape[-1], device=h.device)
        ctx.add(SelectionFactor(ctx.name("P"), "pool", _shape(h), _shape(out), m, index, h))
    return out
