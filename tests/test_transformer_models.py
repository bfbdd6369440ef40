"""The small vision transformer: shapes, the attention module against torch's, temperature."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spectral_lab.transformer_models import (
    EncoderBlock,
    SelfAttention,
    TokenPool,
    VisionTransformer,
)

D64 = torch.float64


@pytest.mark.parametrize(
    "size,patch,pool,tokens",
    [(8, 4, "mean", 4), (8, 2, "cls", 17), (28, 7, "mean", 16), (28, 4, "cls", 50)],
)
def test_shapes_on_digits_and_mnist(size, patch, pool, tokens):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=size, patch_size=patch, dim=8, depth=1, pool=pool)
    assert vit.n_tokens == tokens
    x = torch.randn(3, 1, size, size)
    assert vit(x).shape == (3, 10)
    assert torch.allclose(vit(x.reshape(3, -1)), vit(x))  # flat inputs are reshaped


def test_self_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).double()
    att = SelfAttention(8, heads=2).double()
    with torch.no_grad():
        att.in_proj.weight.copy_(mha.in_proj_weight)
        att.in_proj.bias.copy_(mha.in_proj_bias)
        att.out_proj.load_state_dict(mha.out_proj.state_dict())
    x = torch.randn(2, 5, 8, dtype=D64)
    out, w = mha(x, x, x, average_attn_weights=False)
    assert torch.allclose(att(x), out, atol=1e-12)
    assert torch.allclose(att.weights(x), w, atol=1e-12)


def test_encoder_block_equals_torch_encoder_layer():
    torch.manual_seed(0)
    for norm_first in (True, False):
        ref = nn.TransformerEncoderLayer(
            8, 2, 12, 0.0, "gelu", batch_first=True, norm_first=norm_first
        ).double()
        blk = EncoderBlock(8, 2, 12, norm_first=norm_first).double()
        with torch.no_grad():
            blk.attn.in_proj.weight.copy_(ref.self_attn.in_proj_weight)
            blk.attn.in_proj.bias.copy_(ref.self_attn.in_proj_bias)
            blk.attn.out_proj.load_state_dict(ref.self_attn.out_proj.state_dict())
            blk.norm1.load_state_dict(ref.norm1.state_dict())
            blk.norm2.load_state_dict(ref.norm2.state_dict())
            blk.mlp[0].load_state_dict(ref.linear1.state_dict())
            blk.mlp[2].load_state_dict(ref.linear2.state_dict())
        x = torch.randn(2, 4, 8, dtype=D64)
        assert torch.allclose(blk(x), ref(x), atol=1e-12)


def test_temperature_flattens_the_attention():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=2, dim=8, depth=2, heads=2).double()
    x = torch.randn(1, 16, 8, dtype=D64)
    att = vit.blocks[0].attn
    gaps = []
    for tau in (0.1, 1.0, 10.0, 1e6):
        vit.set_temperature(tau)
        assert all(b.attn.temperature == tau for b in vit.blocks)
        with torch.no_grad():
            gaps.append(float((att.weights(x) - 1 / 16).abs().max()))
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-5


def test_errors():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        VisionTransformer(image_size=8, patch_size=3)
    with pytest.raises(ValueError, match="pool"):
        VisionTransformer(pool="max")
    with pytest.raises(ValueError, match="temperature"):
        SelfAttention(4, temperature=0)
    with pytest.raises(ValueError, match="mode"):
        TokenPool("sum")
