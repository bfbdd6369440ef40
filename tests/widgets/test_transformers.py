"""Transformer explorer: its drawn numbers against autograd and numpy references."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from spectral_lab import widgets
from spectral_lab.transformer_models import VisionTransformer

D64 = torch.float64


def _image():
    return torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=D64)


def _model(norm_first, temperature, depth=2):
    torch.manual_seed(0)
    return (
        VisionTransformer(
            image_size=8, patch_size=4, dim=8, depth=depth, heads=2,
            norm_first=norm_first, temperature=temperature,
        )
        .double()
        .eval()
    )  # fmt: skip


def _sublayers(model):
    """The residual-stream sublayer maps, written out by hand (pre-LN: x + F(LN(x)); post-LN: LN(x + F(x)))."""
    maps = []
    for b in model.blocks:
        if b.norm_first:
            maps += [lambda h, b=b: h + b.attn(b.norm1(h)), lambda h, b=b: h + b.mlp(b.norm2(h))]
        else:
            maps += [lambda h, b=b: b.norm1(h + b.attn(h)), lambda h, b=b: b.norm2(h + b.mlp(h))]
    return maps


def _erank(m: np.ndarray) -> float:
    s = np.linalg.svd(m, compute_uv=False)
    p = s**2 / (s**2).sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def _drawn_and_reference(norm):
    """The drawn effective ranks (partial products, single blocks) and numpy's, from autograd."""
    x = _image()
    fig = widgets.transformer_draw(x, image_size=8, patch_size=4, dim=8)(
        temperature=0.7, depth=2, norm=norm
    )
    drawn = (fig.axes[0].lines[0].get_ydata(), fig.axes[0].lines[1].get_ydata())
    title = fig.axes[0].get_title()
    plt.close(fig)
    model = _model(norm == "pre", 0.7)
    first = list(model.layers).index(model.blocks[0])
    with torch.no_grad():
        h = model.layers[:first](x[None])[0]
    ref_partial, ref_block, acc = [], [], None
    for f in _sublayers(model):
        j = torch.autograd.functional.jacobian(lambda v, f=f: f(v[None])[0], h)
        j = j.reshape(h.numel(), -1)
        acc = j if acc is None else j @ acc
        ref_block.append(_erank(j.numpy()))
        ref_partial.append(_erank(acc.numpy()))
        with torch.no_grad():
            h = f(h[None])[0]
    return drawn, (ref_partial, ref_block), title


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_transformer_draw_effective_ranks_match_autograd(norm):
    (partial, block), (ref_partial, ref_block), title = _drawn_and_reference(norm)
    assert np.allclose(partial, ref_partial, rtol=1e-8)
    assert np.allclose(block, ref_block, rtol=1e-8)
    assert norm in title


def test_mutation_amplitude_effective_rank_is_caught(monkeypatch):
    """exp of the amplitude (E1) entropy instead of the energy (E2) one: the reference disagrees."""
    from spectral_lab import residual_stream, spectra

    def wrong(s, normalization="energy", *, kind="matrix"):
        return torch.exp(spectra.spectral_entropy(s, "amplitude", kind=kind))

    monkeypatch.setattr(residual_stream, "effective_rank", wrong)
    (partial, block), (ref_partial, ref_block), _ = _drawn_and_reference("pre")
    assert not np.allclose(partial, ref_partial, rtol=1e-8)
    assert not np.allclose(block, ref_block, rtol=1e-8)


def test_transformer_draw_value_and_pattern_norms():
    """value path = sum_h A_h kron W_O^h W_V^h (numpy), pattern path = autograd - value."""
    x = _image()
    fig = widgets.transformer_draw(x, image_size=8, patch_size=4, dim=8)(
        temperature=2.0, depth=1, norm="pre"
    )
    value, pattern = (line.get_ydata() for line in fig.axes[1].lines[:2])
    model = _model(True, 2.0, depth=1)
    blk = model.blocks[0]
    with torch.no_grad():
        h = model.layers[:2](x[None])[0]  # after the patch and positional embeddings
        z = blk.norm1(h[None])[0]
        a = blk.attn.weights(z[None])[0].numpy()  # (heads, n, n)
    j = torch.autograd.functional.jacobian(lambda v: blk.attn(v[None])[0], z).reshape(z.numel(), -1)
    w_v = blk.attn.in_proj.weight[16:].detach().numpy()
    w_o = blk.attn.out_proj.weight.detach().numpy()
    val = sum(np.kron(a[i], w_o[:, 4 * i : 4 * i + 4] @ w_v[4 * i : 4 * i + 4]) for i in range(2))
    assert np.allclose(value, [np.linalg.norm(val, 2)], rtol=1e-8)
    assert np.allclose(pattern, [np.linalg.norm(j.numpy() - val, 2)], rtol=1e-8)
    plt.close(fig)


def test_transformer_explorer_controls_and_bad_norm():
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        ui = widgets.transformer_explorer(image_size=8, patch_size=4, dim=8)
    names = {c.description for c in ui.children[:-1]}
    assert {"temperature", "depth", "LayerNorm"} <= names
    with pytest.raises(ValueError, match="norm"):
        ui.draw(norm="middle")
