"""Residual-stream spectra against autograd Jacobians of sublayer functions written out here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectral_lab.residual_stream import block_groups, residual_stream_spectra
from spectral_lab.transformer_models import EncoderBlock, VisionTransformer

D64 = torch.float64


def sublayer_functions(block: EncoderBlock):
    """The two sublayers of an encoder block as plain functions of the stream (no library code)."""
    if block.norm_first:
        return (
            lambda z: z + block.attn(block.norm1(z)),
            lambda z: z + block.mlp(block.norm2(z)),
        )
    return (
        lambda z: block.norm1(z + block.attn(z)),
        lambda z: block.norm2(z + block.mlp(z)),
    )


def reference(vit: VisionTransformer, x: torch.Tensor):
    """Autograd Jacobians of every sublayer at its own input, and the stream's input."""
    layers = list(vit.layers)
    first = next(i for i, m in enumerate(layers) if isinstance(m, EncoderBlock))
    with torch.no_grad():
        z = torch.nn.Sequential(*layers[:first])(x[None])
    jacs = []
    for b in vit.blocks:
        for f in sublayer_functions(b):
            j = torch.autograd.functional.jacobian(lambda v, f=f: f(v[None])[0], z[0])
            jacs.append(j.reshape(z[0].numel(), z[0].numel()))
            with torch.no_grad():
                z = f(z)
    return jacs


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_blocks_and_partial_products_equal_autograd(norm_first, pool):
    torch.manual_seed(0)
    vit = VisionTransformer(
        image_size=8, patch_size=4, dim=6, depth=2, heads=2, norm_first=norm_first, pool=pool
    )
    vit = vit.double().eval()
    x = torch.randn(1, 8, 8, dtype=D64)
    rs = residual_stream_spectra(vit, x)
    ref = reference(vit, x)
    assert rs.names == ("B1.attn", "B1.mlp", "B2.attn", "B2.mlp")
    prod = torch.eye(ref[0].shape[0], dtype=D64)
    for k, j in enumerate(ref):
        prod = j @ prod
        assert torch.allclose(rs.blocks[k], j, atol=1e-12)
        assert torch.allclose(rs.partial[k], prod, atol=1e-11)
    # summaries against NumPy, from the autograd matrices
    for k, j in enumerate(ref):
        s = np.linalg.svd(j.numpy(), compute_uv=False)
        p = s**2 / (s**2).sum()
        se = -(p[p > 0] * np.log(p[p > 0])).sum()
        assert np.allclose(rs.block_sv[k].numpy(), s, atol=1e-12)
        assert abs(float(rs.block_entropy[k]) - se) < 1e-10
        assert abs(float(rs.block_erank[k]) - np.exp(se)) < 1e-8
        assert abs(float(rs.deviation[k]) - np.linalg.norm(j.numpy() - np.eye(len(j)), 2)) < 1e-10
    # per encoder layer: the product of its two sublayers
    rl = residual_stream_spectra(vit, x, per="layer", profile=False)
    assert rl.names == ("B1", "B2") and rl.profile is None
    assert torch.allclose(rl.blocks[1], ref[3] @ ref[2], atol=1e-12)
    assert rs.profile.alpha.shape == (4,)


def test_post_ln_blocks_lose_two_directions_per_token():
    """With eps = 0 a post-LN sublayer ends in LN' whose null space is span(1, x̂) per token:
    rank n (d - 2) exactly; a pre-LN sublayer I + J_F LN' keeps (generically) full rank."""
    torch.manual_seed(0)
    x = torch.randn(1, 8, 8, dtype=D64)
    for norm_first, expected in ((False, 4 * (6 - 2)), (True, 4 * 6)):
        vit = VisionTransformer(
            image_size=8, patch_size=4, dim=6, depth=1, heads=2, norm_first=norm_first, eps=0
        )
        rs = residual_stream_spectra(vit.double().eval(), x, profile=False)
        for s in rs.block_sv:
            assert int((s > 1e-10 * s[0]).sum()) == expected


def test_block_groups_and_errors():
    assert block_groups(["E1", "B1.attn", "B1.attn.LN", "B1.mlp", "B1.mlp.LN", "B2.attn"]) == [
        ("B1.attn", [1, 2]),
        ("B1.mlp", [3, 4]),
        ("B2.attn", [5]),
    ]
    with pytest.raises(ValueError, match="per"):
        block_groups(["B1.attn"], per="token")
    from spectral_lab import MLP

    with pytest.raises(ValueError, match="no encoder blocks"):
        residual_stream_spectra(MLP(4, 2, width=4, depth=1).double(), torch.zeros(4, dtype=D64))
