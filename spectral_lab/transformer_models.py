"""A small vision transformer whose computation reads as a product of operators.

Like the models of :mod:`spectral_lab.models`, :class:`VisionTransformer` keeps its computation in
``model.layers`` (an ``nn.Sequential``)::

    PatchEmbedding -> [ClassToken] -> PositionalEmbedding -> EncoderBlock x depth
        -> LayerNorm -> TokenPool -> Linear

so :func:`spectral_lab.transformer_ops.transformer_operator_product` can walk it into factors. An
:class:`EncoderBlock` is pre-LN (``x + F(LN(x))`` per sublayer) or post-LN (``LN(x + F(x))``);
its :class:`SelfAttention` computes ``softmax(Q K^T / (tau sqrt(d_h))) V`` per head with a
temperature ``tau`` (``tau = 1`` is the usual scaling). Sizes: the 8x8 digits with ``patch_size``
2 or 4 (16 or 4 tokens), MNIST 28x28 with ``patch_size`` 7 or 4 (16 or 49 tokens).

Example:
    >>> _ = torch.manual_seed(0)
    >>> vit = VisionTransformer(image_size=8, patch_size=4, dim=16, depth=2, heads=2)
    >>> vit(torch.zeros(3, 1, 8, 8)).shape, vit.n_tokens
    (torch.Size([3, 10]), 4)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .models import activation as _activation

__all__ = [
    "ClassToken",
    "EncoderBlock",
    "PatchEmbedding",
    "PositionalEmbedding",
    "SelfAttention",
    "TokenPool",
    "VisionTransformer",
]


class PatchEmbedding(nn.Module):
    """Non-overlapping patches, each mapped linearly to ``dim``: a ``Conv2d`` with stride = kernel =
    ``patch_size``. ``(B, C, H, W) -> (B, n, dim)`` with ``n = (H / p)(W / p)`` tokens in row-major
    patch order. Flat inputs ``(B, C H W)`` are reshaped first. Its Jacobian is the (fixed) linear
    map of the convolution.

    Example:
        >>> PatchEmbedding(1, 8, patch_size=4, image_size=8)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 4, 8])
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int, image_size: int) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size={image_size} is not a multiple of patch_size={patch_size}; "
                "choose a patch size that divides the image (digits: 2 or 4; MNIST: 4 or 7)"
            )
        self.in_channels, self.image_size, self.patch_size = in_channels, image_size, patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    @property
    def n_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.reshape(len(x), self.in_channels, self.image_size, self.image_size)
        return self.proj(x).flatten(2).transpose(1, 2)


class ClassToken(nn.Module):
    """Prepends a learned token: ``(B, n, dim) -> (B, n + 1, dim)``. Its Jacobian inserts a zero
    row of tokens (the constant does not depend on the input).

    Example:
        >>> ClassToken(8)(torch.zeros(2, 4, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(0.02 * torch.randn(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.expand(len(x), -1, -1), x], 1)


class PositionalEmbedding(nn.Module):
    """Adds a learned ``(n, dim)`` table: ``x + P``. An additive constant: identity Jacobian.

    Example:
        >>> PositionalEmbedding(4, 8)(torch.zeros(2, 4, 8)).shape
        torch.Size([2, 4, 8])
    """

    def __init__(self, n_tokens: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Parameter(0.02 * torch.randn(1, n_tokens, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table


class SelfAttention(nn.Module):
    """Multi-head self-attention with a temperature.

    ``Q, K, V = x W_q^T + b_q, x W_k^T + b_k, x W_v^T + b_v`` (one ``in_proj`` Linear, as in
    ``nn.MultiheadAttention``); per head ``h`` (width ``d_h = dim / heads``)
    ``A_h = softmax(Q_h K_h^T / (tau sqrt(d_h)))`` row-wise and ``O_h = A_h V_h``; the output is
    ``concat_h(O_h) W_O^T + b_O``. ``(B, n, dim) -> (B, n, dim)``.

    Example:
        >>> att = SelfAttention(8, heads=2, temperature=0.5)
        >>> att(torch.zeros(2, 3, 8)).shape, att.weights(torch.zeros(2, 3, 8)).shape
        (torch.Size([2, 3, 8]), torch.Size([2, 2, 3, 3]))
    """

    def __init__(self, dim: int, heads: int = 1, temperature: float = 1.0, bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be a multiple of heads={heads}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.dim, self.heads, self.temperature = dim, heads, float(temperature)
        self.in_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    @property
    def scale(self) -> float:
        """The logit scale ``1 / (tau sqrt(d_h))``."""
        return 1.0 / (self.temperature * math.sqrt(self.dim // self.heads))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, -1).transpose(1, 2)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights ``A``: ``(B, heads, n, n)``, rows summing to one."""
        q, k, _ = self.in_proj(x).chunk(3, -1)
        return torch.softmax(self._heads(q) @ self._heads(k).transpose(-1, -2) * self.scale, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.in_proj(x).chunk(3, -1)
        a = torch.softmax(self._heads(q) @ self._heads(k).transpose(-1, -2) * self.scale, -1)
        o = (a @ self._heads(v)).transpose(1, 2).reshape(x.shape)
        return self.out_proj(o)


class EncoderBlock(nn.Module):
    """One transformer encoder layer: attention and MLP sublayers, each with a residual connection.

    ``norm_first=True`` (pre-LN): ``x + Attn(LN_1(x))`` then ``x + MLP(LN_2(x))``; its Jacobian is
    ``(I + J_MLP LN_2')(I + J_Attn LN_1')``. ``norm_first=False`` (post-LN):
    ``LN_1(x + Attn(x))`` then ``LN_2(x + MLP(x))``. ``MLP = Linear(dim, mlp_dim) -> act ->
    Linear(mlp_dim, dim)`` applied to each token.

    Example:
        >>> EncoderBlock(8, heads=2, mlp_dim=16, norm_first=False)(torch.zeros(2, 3, 8)).shape
        torch.Size([2, 3, 8])
    """

    def __init__(
        self,
        dim: int,
        heads: int = 1,
        mlp_dim: int | None = None,
        norm_first: bool = True,
        temperature: float = 1.0,
        activation: str = "gelu",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        mlp_dim = 2 * dim if mlp_dim is None else mlp_dim
        self.norm_first = bool(norm_first)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = SelfAttention(dim, heads, temperature)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), _activation(activation), nn.Linear(mlp_dim, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class TokenPool(nn.Module):
    """``(B, n, dim) -> (B, dim)``: the mean over tokens (``mode="mean"``, Jacobian
    ``(1^T / n) ⊗ I``) or the first (class) token (``mode="cls"``, a selection).

    Example:
        >>> TokenPool("cls")(torch.arange(6.0).reshape(1, 3, 2)).tolist()
        [[0.0, 1.0]]
    """

    def __init__(self, mode: str = "mean") -> None:
        super().__init__()
        if mode not in ("mean", "cls"):
            raise ValueError(f"mode must be 'mean' or 'cls', got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1) if self.mode == "mean" else x[:, 0]


class VisionTransformer(nn.Module):
    """A small ViT: patches -> [class token] -> positions -> ``depth`` encoder blocks -> LayerNorm
    -> pool -> linear read-out, all in ``model.layers``.

    Args:
        in_channels, num_classes, image_size: the images (``(B, C, H, W)`` or flat ``(B, C H W)``).
        patch_size: side of a patch (must divide ``image_size``).
        dim, depth, heads: width of the residual stream, number of blocks, heads per block.
        mlp_ratio: the MLP's hidden width is ``round(mlp_ratio * dim)``.
        norm_first: pre-LN (``True``) or post-LN (``False``) blocks.
        pool: ``"mean"`` over tokens or ``"cls"`` (adds a class token).
        temperature: ``tau`` in ``softmax(Q K^T / (tau sqrt(d_h)))`` for every block
            (change it later with :meth:`set_temperature`).
        activation: the MLP's activation (a name from ``spectral_lab.models.ACTIVATIONS``).
        eps: the LayerNorms' epsilon.

    Created on the CPU in torch's default dtype (draws from torch's global generator); move it with
    ``.to(device, dtype)``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> vit = VisionTransformer(image_size=28, patch_size=7, dim=16, pool="cls")
        >>> vit(torch.zeros(2, 784)).shape, vit.n_tokens
        (torch.Size([2, 10]), 17)
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 8,
        patch_size: int = 4,
        dim: int = 32,
        depth: int = 2,
        heads: int = 2,
        mlp_ratio: float = 2.0,
        norm_first: bool = True,
        pool: str = "mean",
        temperature: float = 1.0,
        activation: str = "gelu",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        embed = PatchEmbedding(in_channels, dim, patch_size, image_size)
        layers: list[nn.Module] = [embed]
        n = embed.n_tokens
        if pool == "cls":
            layers.append(ClassToken(dim))
            n += 1
        layers.append(PositionalEmbedding(n, dim))
        mlp_dim = max(1, round(mlp_ratio * dim))
        layers += [
            EncoderBlock(dim, heads, mlp_dim, norm_first, temperature, activation, eps)
            for _ in range(depth)
        ]
        layers += [nn.LayerNorm(dim, eps=eps), TokenPool(pool), nn.Linear(dim, num_classes)]
        self.layers = nn.Sequential(*layers)
        self.n_tokens, self.dim, self.norm_first = n, dim, bool(norm_first)

    @property
    def blocks(self) -> list[EncoderBlock]:
        """The encoder blocks, in order."""
        return [m for m in self.layers if isinstance(m, EncoderBlock)]

    def set_temperature(self, temperature: float) -> VisionTransformer:
        """Set ``tau`` in every block's attention; returns the model."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        for b in self.blocks:
            b.attn.temperature = float(temperature)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
