"""Transformer Jacobians: residual-stream spectra and attention paths (:mod:`spectral_lab.residual_stream`)."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure


def transformer_draw(
    x: torch.Tensor | None = None,
    image_size: int = 8,
    patch_size: int = 2,
    dim: int = 16,
    heads: int = 2,
    seed: int = 0,
) -> Callable[..., Figure]:
    """The drawing function of :func:`spectral_lab.widgets.transformer_explorer` (testable without a kernel).

    ``draw(temperature, depth, norm)`` builds a random-initialised
    :class:`~spectral_lab.transformer_models.VisionTransformer` (seed ``seed``, float64, attention
    temperature ``temperature`` in every block, ``norm="pre"`` or ``"post"`` LayerNorm placement)
    and draws, at the one image ``x`` (a random image when ``None``): left, the effective rank
    ``exp(SE)`` of the residual-stream partial products ``J_k ... J_1`` through depth
    (:func:`~spectral_lab.residual_stream.residual_stream_spectra`, per sublayer); right, the
    spectral norms of each attention layer's value and pattern paths
    (:func:`~spectral_lab.transformer_ops.attention_factor`).

    Cost per ``draw``: one operator walk, ``D = n dim`` matrix-free products and two ``D x D``
    SVDs per sublayer (``n`` tokens), and two dense ``D x D`` spectral norms per attention layer.
    Runs in float64 on the CPU.

    Example:
        >>> fig = transformer_draw(image_size=8, patch_size=4, dim=8)(temperature=1.0, depth=2)
        >>> len(fig.axes), len(fig.axes[0].lines[0].get_ydata())  # 2 blocks = 4 sublayers
        (2, 4)
        >>> plt.close(fig)
    """
    from ..residual_stream import residual_stream_spectra
    from ..transformer_models import VisionTransformer
    from ..transformer_ops import attention_factors, transformer_operator_product

    if x is None:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(1, image_size, image_size, generator=g, dtype=torch.float64)
    x = x.to(torch.float64).reshape(1, image_size, image_size)

    def draw(temperature: float = 1.0, depth: int = 2, norm: str = "pre") -> Figure:
        if norm not in ("pre", "post"):
            raise ValueError(f"norm must be 'pre' or 'post', got {norm!r}")
        torch.manual_seed(seed)
        model = VisionTransformer(
            image_size=image_size,
            patch_size=patch_size,
            dim=dim,
            depth=depth,
            heads=heads,
            norm_first=norm == "pre",
            temperature=temperature,
        )
        model = model.double().eval()
        rs = residual_stream_spectra(model, x, profile=False)
        att = attention_factors(transformer_operator_product(model, x))
        value = [float(torch.linalg.matrix_norm(f.value.dense(), 2)) for f in att]
        pattern = [float(torch.linalg.matrix_norm(f.pattern.dense(), 2)) for f in att]
        fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.4))
        k = np.arange(1, rs.L + 1)
        a0.plot(k, rs.partial_erank.numpy(), "o-", ms=4, label=r"$J_k\cdots J_1$")
        a0.plot(k, rs.block_erank.numpy(), "s--", ms=3, label=r"$J_k$ alone")
        a0.set(
            xlabel="sublayer k",
            ylabel=r"effective rank $e^{SE}$",
            title=f"{norm}-LN, tau = {temperature:.3g}: residual stream (D = {rs.blocks.shape[-1]})",
        )
        a0.set_xticks(k)
        a0.legend()
        layers = np.arange(1, len(att) + 1)
        a1.semilogy(layers, value, "o-", ms=4, label="value path")
        a1.semilogy(layers, pattern, "s-", ms=4, label="pattern path")
        a1.set(
            xlabel="attention layer", ylabel=r"$\|\cdot\|_2$", title="attention: value vs pattern"
        )
        a1.set_xticks(layers)
        a1.legend()
        fig.tight_layout()
        return fig

    return draw
