"""Jacobian spectra along a transformer's residual stream, block by block and through depth.

The residual stream is the token sequence ``X`` (``n`` tokens of width ``d``, ``D = n d``
numbers) that every encoder block reads and writes. Block ``k`` maps it by ``X -> B_k(X)``; its
Jacobian ``J_k`` is ``D x D``:

* pre-LN sublayer ``x + F(LN(x))``: ``J_k = I + J_F LN'`` (the identity plus a branch);
* post-LN sublayer ``LN(x + F(x))``: ``J_k = LN' (I + J_F)`` (the whole sublayer map: the
  normalisation's projection removes two directions per token).

:func:`residual_stream_spectra` takes each ``J_k`` (per sublayer, or per encoder layer with
``per="layer"``) from :func:`~spectral_lab.transformer_ops.transformer_operator_product`, the
partial products ``J_k ... J_1`` through depth, and summarises both with the course's spectra
(singular values, spectral entropy, effective rank ``exp(SE)``, from :mod:`spectral_lab.spectra`)
and the power-law geometry of chapter 08 (:func:`spectral_lab.geometry.chain_profile` of the
chain ``J_1, ..., J_L``: per-block exponent, fit quality, energy-quantile rank, chain slack).

Example:
    >>> from spectral_lab.transformer_models import VisionTransformer
    >>> _ = torch.manual_seed(0)
    >>> vit = VisionTransformer(image_size=8, patch_size=4, dim=8, depth=2).double().eval()
    >>> rs = residual_stream_spectra(vit, torch.randn(1, 8, 8, dtype=torch.float64))
    >>> rs.names, tuple(rs.blocks.shape)
    (('B1.attn', 'B1.mlp', 'B2.attn', 'B2.mlp'), (4, 32, 32))
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ._results import Result
from .geometry import ExponentProfile, chain_profile
from .spectra import effective_rank, spectral_entropy
from .transformer_ops import transformer_operator_product

__all__ = ["ResidualStreamSpectra", "block_groups", "residual_stream_spectra"]

_BLOCK = re.compile(r"^(B\d+)\.(attn|mlp)")


def block_groups(names, per: str = "sublayer") -> list[tuple[str, list[int]]]:
    """Group factor ``names`` of a transformer walk into residual-stream blocks.

    ``per="sublayer"``: ``Bi.attn`` and ``Bi.mlp`` (with a post-LN sublayer's ``Bi.attn.LN``);
    ``per="layer"``: ``Bi`` (both sublayers). Returns ``[(label, factor indices)]`` in order;
    factors outside blocks (embedding, final norm, pool, read-out) are left out.

    Example:
        >>> block_groups(["E1", "B1.attn", "B1.attn.LN", "B1.mlp", "LN1"])
        [('B1.attn', [1, 2]), ('B1.mlp', [3])]
        >>> block_groups(["E1", "B1.attn", "B1.mlp", "LN1"], per="layer")
        [('B1', [1, 2])]
    """
    if per not in ("sublayer", "layer"):
        raise ValueError(f"per must be 'sublayer' or 'layer', got {per!r}")
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        m = _BLOCK.match(name)
        if m:
            key = f"{m.group(1)}.{m.group(2)}" if per == "sublayer" else m.group(1)
            groups.setdefault(key, []).append(i)
    return list(groups.items())


@dataclass(frozen=True)
class ResidualStreamSpectra(Result):
    """Per-block Jacobians of the residual stream at one input and their spectra through depth.

    Tensors have a leading block axis ``L``; matrices are ``D x D`` (``D`` = tokens x width).
    ``blocks[k]`` is ``J_{k+1}``, ``partial[k]`` is ``J_{k+1} ... J_1``; ``*_sv`` are their
    singular values (descending), ``*_entropy`` the spectral entropy (energy normalisation, nats),
    ``*_erank`` ``exp(entropy)``; ``deviation[k] = ||J_{k+1} - I||_2`` (the branch's norm for a
    pre-LN sublayer); ``profile`` the chain's :class:`~spectral_lab.geometry.ExponentProfile`.
    Built by :func:`residual_stream_spectra`.
    """

    names: tuple[str, ...]
    per: str
    blocks: torch.Tensor = field(repr=False)
    partial: torch.Tensor = field(repr=False)
    block_sv: torch.Tensor = field(repr=False)
    partial_sv: torch.Tensor = field(repr=False)
    block_entropy: torch.Tensor
    partial_entropy: torch.Tensor
    block_erank: torch.Tensor
    partial_erank: torch.Tensor
    deviation: torch.Tensor
    profile: ExponentProfile | None = field(default=None, repr=False)

    @property
    def L(self) -> int:
        return len(self.names)


def residual_stream_spectra(
    model: nn.Module,
    x: torch.Tensor,
    *,
    per: str = "sublayer",
    tau: float = 0.9,
    profile: bool = True,
) -> ResidualStreamSpectra:
    """Each residual-stream block's Jacobian at ONE input ``x`` and the partial products.

    ``model`` is walked by :func:`~spectral_lab.transformer_ops.transformer_operator_product`
    (a :class:`~spectral_lab.transformer_models.VisionTransformer` or any ``model.layers`` of
    encoder layers); ``per`` is ``"sublayer"`` (attention and MLP sublayers separately) or
    ``"layer"`` (one encoder layer, ``J_mlp J_attn``). Summaries: singular values, spectral
    entropy and effective rank of every ``J_k`` and of ``J_k ... J_1``, ``||J_k - I||_2``, and
    (``profile=True``) :func:`spectral_lab.geometry.chain_profile` of ``J_1, ..., J_L`` with
    energy-quantile level ``tau``.

    Cost: ``D`` matrix-free products per block (``D = n d``), one ``D x D`` product and two SVDs
    per block, plus ``O(L D^3)`` for the profile. Runs on the device and dtype of the model.

    Raises:
        ValueError: when the model has no encoder blocks.

    Example: a pre-LN block is ``I +`` a branch, so the deviation is the branch's norm.
        >>> from spectral_lab.transformer_models import VisionTransformer
        >>> _ = torch.manual_seed(0)
        >>> vit = VisionTransformer(image_size=8, patch_size=4, dim=8, depth=1).double().eval()
        >>> rs = residual_stream_spectra(vit, torch.randn(1, 8, 8, dtype=torch.float64))
        >>> bool(torch.allclose(rs.partial[-1], rs.blocks[1] @ rs.blocks[0]))
        True
    """
    op = transformer_operator_product(model, x)
    groups = block_groups(op.names, per)
    if not groups:
        raise ValueError(
            f"{type(model).__name__} has no encoder blocks to walk (factor names: {op.names}); "
            "use a model whose layers include EncoderBlock or nn.TransformerEncoderLayer"
        )
    ref = op._ref
    blocks = []
    for _, idx in groups:
        first = op.factors[idx[0]]
        if any(op.factors[i].n_in != first.n_in or op.factors[i].n_out != first.n_in for i in idx):
            raise ValueError("residual-stream blocks must map the stream to itself (square)")
        p = torch.eye(first.n_in, dtype=ref.dtype, device=ref.device)
        for i in idx:
            p = op.factors[i].matvec(p)
        blocks.append(p.T)
    blocks_t = torch.stack(blocks)
    partial, acc = [], None
    for b in blocks:
        acc = b if acc is None else b @ acc
        partial.append(acc)
    partial_t = torch.stack(partial)
    bsv, psv = torch.linalg.svdvals(blocks_t), torch.linalg.svdvals(partial_t)
    eye = torch.eye(blocks_t.shape[-1], dtype=ref.dtype, device=ref.device)
    prof = chain_profile(blocks_t, kind="jacobian", tau=tau) if profile else None
    return ResidualStreamSpectra(
        names=tuple(name for name, _ in groups),
        per=per,
        blocks=blocks_t,
        partial=partial_t,
        block_sv=bsv,
        partial_sv=psv,
        block_entropy=spectral_entropy(bsv, kind="singular"),
        partial_entropy=spectral_entropy(psv, kind="singular"),
        block_erank=effective_rank(bsv, kind="singular"),
        partial_erank=effective_rank(psv, kind="singular"),
        deviation=torch.linalg.matrix_norm(blocks_t - eye, ord=2),
        profile=prof,
    )
