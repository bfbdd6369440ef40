"""The residual blocks of any walkable model (torchvision ResNets, the library's residual models)
as data-dependent layer factors, read from the operator walk of :func:`~spectral_lab.operators.
operator_product`: each block's Jacobian at its actual input, grouped into the chains of
shape-preserving blocks that :func:`chain_slack` and :func:`chain_profile` take."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_model, check_tensor
from .._results import Result

_PARTS = ("sum", "block")


@dataclass(frozen=True)
class BlockJacobians(Result):
    """Per-block Jacobians of a residual model at ``N`` inputs (see :func:`residual_block_jacobians`).

    ``names[l]`` is the block's module name (``"layer1.0"``), ``factors[l]`` its Jacobians
    ``(N, n_out, n_in)`` at each input, ``in_shapes``/``out_shapes`` its feature-map shapes.
    ``chains`` lists the maximal runs of consecutive square blocks of one size (block indices):
    only those form the ``(L, d, d)`` chains of the geometry functions; the other blocks (a
    torchvision ``downsample`` block changes channels and resolution, ``n_out != n_in``) are
    listed in :attr:`skipped` and enter no chain.
    """

    names: tuple[str, ...]
    factors: tuple[torch.Tensor, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shapes: tuple[tuple[int, ...], ...]
    chains: tuple[tuple[int, ...], ...]
    part: str

    @property
    def square(self) -> tuple[bool, ...]:
        return tuple(f.shape[-1] == f.shape[-2] for f in self.factors)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Names of the blocks that change shape (no chain takes them)."""
        return tuple(n for n, sq in zip(self.names, self.square) if not sq)

    def chain(self, i: int = 0) -> torch.Tensor:
        """The ``i``-th chain as ``(N, L, d, d)`` (``A_1`` first), e.g. ``chain_profile(bj.chain()[n])``."""
        if not self.chains:
            raise ValueError(
                f"no shape-preserving residual block (blocks {list(self.names)} all change shape)"
            )
        return torch.stack([self.factors[j] for j in self.chains[i]], 1)

    def chain_names(self, i: int = 0) -> tuple[str, ...]:
        """The block names of the ``i``-th chain."""
        return tuple(self.names[j] for j in self.chains[i])

    def __repr__(self) -> str:
        runs = ", ".join("[" + ", ".join(self.names[j] for j in c) + "]" for c in self.chains)
        return (
            f"BlockJacobians(N={self.factors[0].shape[0] if self.factors else 0}, "
            f"blocks={len(self.names)}, part={self.part!r}, chains={runs or 'none'}, "
            f"skipped={list(self.skipped)})"
        )


def residual_block_jacobians(
    model: nn.Module, x: torch.Tensor, part: str = "sum", max_entries: int = 50_000_000
) -> BlockJacobians:
    """The Jacobian of every residual block of ``model`` at its actual input ``h_l(x)``, per sample.

    A residual block is any factor that :func:`~spectral_lab.operators.operator_product` walks as
    a residual ``g(S h + s F(h))``: the library's ``ResidualBlock`` (``S = I``, no ``g``) and
    torchvision's ``BasicBlock``/``Bottleneck`` (``S`` = identity or ``downsample``, ``g`` = ReLU).

    * ``part="sum"`` (default): ``A_l = J_S + s ∂F/∂h`` — ``I + s ∂F/∂h`` for an identity
      shortcut, the near-identity factor of "Geometric and Spectral Alignment for Deep Neural
      Network I" (for the library's blocks, :func:`layer_factors` ``kind="jacobian"``);
    * ``part="block"``: ``D_g A_l``, the Jacobian of the block's whole ``forward``, activation
      after the sum included; the product of a chain of these is the Jacobian of that stretch of
      the network.

    Blocks that change shape (``n_out != n_in``: a torchvision ``downsample`` block) are returned
    but enter no chain (:attr:`BlockJacobians.skipped`); :attr:`BlockJacobians.chains` are the
    runs of consecutive square blocks of one size with no other layer between them, which
    :meth:`BlockJacobians.chain` stacks as ``(N, L, d, d)`` for :func:`chain_slack`,
    :func:`chain_profile` and the other chain functions.

    Cost: ``N`` operator walks (two forward passes each) and, per block, ``n_out`` transposed
    products through it (batched); memory ``N Σ_l n_out n_in`` (refused above ``max_entries`` per
    block). Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: a torchvision ResNet at 3×8×8 inputs; ``layer1``'s two blocks form the one chain
    of length 2.

        >>> from torchvision.models.resnet import BasicBlock, ResNet
        >>> _ = torch.manual_seed(0)
        >>> net = ResNet(BasicBlock, [2, 1, 1, 1], num_classes=3).double().eval()
        >>> bj = residual_block_jacobians(net, torch.randn(1, 3, 8, 8))
        >>> bj.chain_names(), bj.chain().shape, bj.skipped
        (('layer1.0', 'layer1.1'), torch.Size([1, 2, 256, 256]), ('layer2.0', 'layer3.0', 'layer4.0'))
    """
    from ..operators import ResidualFactor, operator_product

    check_model(model)
    if part not in _PARTS:
        raise ValueError(f"part must be one of {_PARTS}, got {part!r}")
    p = next(model.parameters())
    x = check_tensor(x, "x", min_dim=2).to(p)
    names = {id(m): n for n, m in model.named_modules()}
    per_sample, positions = [], None
    for xi in x:
        op = operator_product(model, xi)
        idx = [k for k, f in enumerate(op.factors) if isinstance(f, ResidualFactor)]
        if not idx:
            raise ValueError(
                f"{type(model).__name__} has no residual block that operator_product walks "
                "(ResidualBlock, torchvision's BasicBlock/Bottleneck); see "
                "spectral_lab.operators.register_walker to add yours"
            )
        blocks = [op.factors[k] for k in idx]
        for f in blocks:
            if f.n_out * f.n_in > max_entries:
                raise ValueError(
                    f"block {names.get(id(f.module), f.name)} is {f.n_out} x {f.n_in} "
                    f"(> max_entries={max_entries}); use a smaller input or a larger max_entries"
                )
        mats = [f.paths() if part == "sum" else f.dense() for f in blocks]
        per_sample.append((blocks, mats))
        positions = idx
    blocks = per_sample[0][0]
    factors = tuple(torch.stack([m[j] for _, m in per_sample]) for j in range(len(blocks)))
    return BlockJacobians(
        names=tuple(names.get(id(f.module), f.name) for f in blocks),
        factors=factors,
        in_shapes=tuple(f.in_shape for f in blocks),
        out_shapes=tuple(f.out_shape for f in blocks),
        chains=_square_runs(blocks, positions),
        part=part,
    )


def _square_runs(blocks, positions) -> tuple[tuple[int, ...], ...]:
    """Maximal runs of square blocks of one size, adjacent in the walk (nothing in between)."""
    runs: list[list[int]] = []
    for j, f in enumerate(blocks):
        if f.n_in != f.n_out:
            continue
        prev = runs[-1][-1] if runs else None
        if prev is not None and positions[prev] == positions[j] - 1 and blocks[prev].n_in == f.n_in:
            runs[-1].append(j)
        else:
            runs.append([j])
    return tuple(tuple(r) for r in runs)
