"""Transformer layers as operators: LayerNorm, self-attention, token maps, residual sublayers.

The operator view of :mod:`spectral_lab.operators` (a network at one input as a product of linear
factors) carries to transformers once each layer's Jacobian is written as a linear map on the
whole token sequence ``X`` (``n`` tokens of width ``d``, flattened row-major, token by token):

* **LayerNorm** acts per token as ``(gamma / sigma) (I - 11^T/d - x̂ x̂^T/d)`` with
  ``sigma = sqrt(var + eps)`` and ``x̂ = (x - mean) / sigma`` the normalised centred token. The
  bracket is not diagonal: for ``eps = 0`` it is the orthogonal projection that removes the mean
  direction ``1`` and the token's own direction ``x̂`` (:class:`LayerNormFactor`).
* **Self-attention** ``O = softmax(Q K^T s) V W_O^T`` (per head, ``s = 1 / (tau sqrt(d_h))``)
  has the Jacobian ``J = J_value + J_pattern``. The **value path**
  ``J_value = sum_h A_h ⊗ W_O^h W_V^h`` moves perturbations along the current attention weights
  ``A_h`` (a data-dependent but fixed mixing of tokens); the **pattern path** perturbs the
  weights themselves, ``dA = A ⊙ (dS - rowsum(A ⊙ dS))`` with ``dS = s (dQ K^T + Q dK^T)``, and
  carries ``dA V W_O^T``. :class:`AttentionFactor` is their sum and keeps both
  (:class:`AttentionValueFactor`, :class:`AttentionPatternFactor`) so their norms can be compared.
* Token-wise Linear layers are ``I_n ⊗ W`` (:class:`TokenLinearFactor`), GELU/SiLU/ReLU gates are
  the usual diagonal ``GateFactor`` on every token's coordinates, mean pooling is
  ``(1^T/n) ⊗ I`` (:class:`TokenMeanFactor`), the class token inserts a zero row
  (:class:`TokenPadFactor`), the positional embedding is an additive constant (no factor), and a
  patch embedding is the fixed linear map of its strided convolution.
* Residual sublayers: pre-LN ``x + F(LN(x))`` is ``I + J_F LN'``; post-LN ``LN(x + F(x))`` is
  ``LN' (I + J_F)``. Both use :class:`~spectral_lab.operators.ResidualFactor`.

:func:`transformer_operator_product` walks :class:`~spectral_lab.transformer_models.VisionTransformer`,
``nn.TransformerEncoderLayer`` (``batch_first=True``, eval mode) and everything
:func:`~spectral_lab.operators.operator_product` walks. Factor names: block ``i``'s sublayers are
``Bi.attn`` and ``Bi.mlp`` (their branches ``Bi.attn.LN1``, ``Bi.attn.A1``, ...); a post-LN
sublayer's norm is ``Bi.attn.LN`` / ``Bi.mlp.LN``.

Example:
    >>> from spectral_lab.transformer_models import VisionTransformer
    >>> _ = torch.manual_seed(0)
    >>> vit = VisionTransformer(image_size=8, patch_size=4, dim=8, depth=1, heads=2).double().eval()
    >>> x = torch.randn(1, 8, 8, dtype=torch.float64)
    >>> op = transformer_operator_product(vit, x)
    >>> op.names
    ['E1', 'B1.attn', 'B1.mlp', 'LN1', 'P1', 'W1']
    >>> J = torch.autograd.functional.jacobian(lambda v: vit(v[None])[0], x).reshape(10, -1)
    >>> bool(torch.allclose(op.dense(), J, atol=1e-12))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._factors import Factor, ModelStateError, TokenLinearFactor
from ._product import OperatorProduct
from .transformer_models import SelfAttention

__all__ = [
    "AttentionFactor",
    "AttentionPatternFactor",
    "AttentionValueFactor",
    "LayerNormFactor",
    "TokenLinearFactor",
    "TokenMeanFactor",
    "TokenPadFactor",
    "attention_factor",
    "attention_factors",
    "layernorm_factor",
    "transformer_operator_product",
]


def _rows(v: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return v.reshape(len(v), *shape)


# ----------------------------------------------------------------------------------- LayerNorm
@dataclass(eq=False, repr=False)
class LayerNormFactor(Factor):
    """LayerNorm's Jacobian at ``x``, per token ``t``: ``diag(gamma) (1/sigma_t) P_t`` with
    ``P_t = I - 11^T/d - x̂_t x̂_t^T/d``.

    ``xhat`` is ``(n, d)`` (the normalised centred tokens), ``sigma`` ``(n, 1)``, ``gamma`` ``(d,)``
    or ``None`` (no affine weight). For ``eps = 0``, ``|x̂_t|^2 = d`` and ``P_t`` is the orthogonal
    projection onto the complement of ``span(1, x̂_t)``: null space ``{1, x̂_t}``, every other
    singular value ``|gamma| / sigma_t`` when ``gamma`` is constant. Matrix-free cost ``O(n d)``
    per vector; :meth:`dense` is the block-diagonal closed form.
    """

    xhat: torch.Tensor = None  # type: ignore[assignment]
    sigma: torch.Tensor = None  # type: ignore[assignment]
    gamma: torch.Tensor | None = None
    eps: float = 0.0

    def _project(self, v: torch.Tensor) -> torch.Tensor:
        d = self.xhat.shape[-1]
        proj = (v * self.xhat).sum(-1, keepdim=True) / d
        return v - v.mean(-1, keepdim=True) - self.xhat * proj

    def matvec(self, v):
        y = self._project(_rows(v, self.xhat.shape)) / self.sigma
        if self.gamma is not None:
            y = y * self.gamma
        return y.reshape(len(v), -1)

    def rmatvec(self, u):
        w = _rows(u, self.xhat.shape)
        if self.gamma is not None:
            w = w * self.gamma
        return (self._project(w) / self.sigma).reshape(len(u), -1)

    def dense(self, max_entries: int = 50_000_000):
        n, d = self.xhat.shape
        eye = torch.eye(d, dtype=self.xhat.dtype, device=self.xhat.device)
        g = torch.ones_like(self.xhat[0]) if self.gamma is None else self.gamma
        blocks = [
            g[:, None] * (eye - 1.0 / d - torch.outer(xt, xt) / d) / s
            for xt, s in zip(self.xhat, self.sigma[:, 0])
        ]
        return torch.block_diag(*blocks)

    def sup_norm(self):
        # ||P_t|| <= 1 (|x̂_t|^2 <= d) and sigma_t >= sqrt(eps): max|gamma| / sqrt(eps) at every x
        g = 1.0 if self.gamma is None else float(self.gamma.abs().max())
        return g / math.sqrt(self.eps) if self.eps > 0 else math.inf

    def _param(self):
        return self.xhat


def layernorm_factor(module: nn.LayerNorm, h: torch.Tensor, name: str = "LN") -> LayerNormFactor:
    """The :class:`LayerNormFactor` of ``module`` at ONE input ``h`` (no batch dimension): ``(n, d)``
    tokens or a ``(d,)`` vector, normalised over the last dimension.

    Formula: ``sigma = sqrt(var + eps)`` (biased variance), ``x̂ = (h - mean) / sigma``,
    ``J_t = (gamma / sigma_t)(I - 11^T/d - x̂_t x̂_t^T/d)``. Cost ``O(n d)``.

    Example: with ``eps = 0`` the all-ones direction is in the null space.
        >>> ln = nn.LayerNorm(4, eps=0.0).double()
        >>> f = layernorm_factor(ln, torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64))
        >>> f.matvec(torch.ones(1, 4, dtype=torch.float64)).abs().max().item() < 1e-15
        True
    """
    if len(module.normalized_shape) != 1:
        raise TypeError(
            f"LayerNorm over {tuple(module.normalized_shape)} is not supported; normalise over the "
            "last dimension only (nn.LayerNorm(d))"
        )
    if h.dim() not in (1, 2):
        raise ValueError(
            f"h must be (d,) or (n, d) without a batch dimension, got {tuple(h.shape)}"
        )
    shape = tuple(h.shape)
    t = h.reshape(-1, h.shape[-1]).detach()
    mu = t.mean(-1, keepdim=True)
    sigma = torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + module.eps)
    xhat = (t - mu) / sigma
    gamma = module.weight.detach() if module.weight is not None else None
    return LayerNormFactor(
        name, "norm", shape, shape, module, xhat, sigma, gamma, float(module.eps)
    )


# ----------------------------------------------------------------------------------- token maps
@dataclass(eq=False, repr=False)
class TokenMeanFactor(Factor):
    """The mean over ``n`` tokens, ``(n, d) -> (d,)``: ``(1^T / n) ⊗ I_d``, norm ``1/sqrt(n)``."""

    ref: torch.Tensor = None  # type: ignore[assignment]

    def matvec(self, v):
        return _rows(v, self.in_shape).mean(1)

    def rmatvec(self, u):
        n = self.in_shape[0]
        return (u[:, None, :] / n).expand(len(u), n, u.shape[1]).reshape(len(u), -1)

    def spectral_norm(self):
        return 1.0 / math.sqrt(self.in_shape[0])

    def _param(self):
        return self.ref


@dataclass(eq=False, repr=False)
class TokenPadFactor(Factor):
    """Prepending a constant (class) token, ``(n, d) -> (n + 1, d)``: a zero row on top of ``I``."""

    ref: torch.Tensor = None  # type: ignore[assignment]

    def matvec(self, v):
        return torch.cat([v.new_zeros(len(v), self.out_shape[-1]), v], 1)

    def rmatvec(self, u):
        return u[:, self.out_shape[-1] :]

    def spectral_norm(self):
        return 1.0

    def _param(self):
        return self.ref


# ----------------------------------------------------------------------------------- attention
def _split(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(..., n, E) -> (..., heads, n, E / heads)``."""
    *lead, n, e = t.shape
    return t.reshape(*lead, n, heads, e // heads).transpose(-3, -2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    """``(..., heads, n, d_h) -> (..., n, heads * d_h)``."""
    *lead, h, n, dh = t.shape
    return t.transpose(-3, -2).reshape(*lead, n, h * dh)


@dataclass(eq=False, repr=False)
class AttentionValueFactor(Factor):
    """The value path of self-attention: ``dX -> sum_h A_h dX W_V^{hT} W_O^{hT}``, i.e. the matrix
    ``sum_h A_h ⊗ (W_O^h W_V^h)`` on the flattened sequence (``A_h`` the ``n x n`` weights of head
    ``h``; ``W_V^h`` its rows of ``W_V``, ``W_O^h`` its columns of ``W_O``). Cost ``O(h n^2 d_h +
    n E^2)`` per vector; :meth:`dense` is the Kronecker closed form."""

    weights: torch.Tensor = None  # type: ignore[assignment]  # (heads, n, n)
    w_v: torch.Tensor = None  # type: ignore[assignment]
    w_o: torch.Tensor = None  # type: ignore[assignment]

    def matvec(self, v):
        x = _rows(v, self.in_shape)
        o = _merge(self.weights @ _split(x @ self.w_v.T, len(self.weights)))
        return (o @ self.w_o.T).reshape(len(v), -1)

    def rmatvec(self, u):
        g = _split(_rows(u, self.out_shape) @ self.w_o, len(self.weights))
        return (_merge(self.weights.transpose(-1, -2) @ g) @ self.w_v).reshape(len(u), -1)

    def dense(self, max_entries: int = 50_000_000):
        heads = len(self.weights)
        dh = self.w_v.shape[0] // heads
        return sum(
            torch.kron(
                self.weights[i],
                self.w_o[:, i * dh : (i + 1) * dh] @ self.w_v[i * dh : (i + 1) * dh],
            )
            for i in range(heads)
        )

    def sup_norm(self):
        # ||A_h||_2 <= sqrt(n) for a row-stochastic n x n matrix (||A||_inf = 1, ||A||_1 <= n)
        n = self.in_shape[0]
        heads = len(self.weights)
        dh = self.w_v.shape[0] // heads
        return math.sqrt(n) * sum(
            float(torch.linalg.matrix_norm(self.w_o[:, i * dh : (i + 1) * dh], 2))
            * float(torch.linalg.matrix_norm(self.w_v[i * dh : (i + 1) * dh], 2))
            for i in range(heads)
        )

    def _param(self):
        return self.weights


@dataclass(eq=False, repr=False)
class AttentionPatternFactor(Factor):
    """The pattern path of self-attention: how a perturbation moves the attention weights, times
    the values. ``dS_h = s (dQ_h K_h^T + Q_h dK_h^T)``, ``dA_h = A_h ⊙ (dS_h - rowsum(A_h ⊙
    dS_h))`` (the softmax Jacobian ``diag(a) - a a^T`` per row), output ``sum_h dA_h V_h W_O^{hT}``;
    ``s = 1/(tau sqrt(d_h))``. Linear in ``dX`` and proportional to ``s``: zero for uniform
    weights' logits independent of ``X`` (``Q = K = 0``). Cost ``O(h n^2 d_h + n E^2)`` per vector.
    """

    weights: torch.Tensor = None  # type: ignore[assignment]  # (heads, n, n)
    q: torch.Tensor = None  # type: ignore[assignment]  # (heads, n, d_h), biases included
    k: torch.Tensor = None  # type: ignore[assignment]
    v: torch.Tensor = None  # type: ignore[assignment]
    w_q: torch.Tensor = None  # type: ignore[assignment]
    w_k: torch.Tensor = None  # type: ignore[assignment]
    w_o: torch.Tensor = None  # type: ignore[assignment]
    scale: float = 1.0

    def matvec(self, v):
        x = _rows(v, self.in_shape)
        heads = len(self.weights)
        dq, dk = _split(x @ self.w_q.T, heads), _split(x @ self.w_k.T, heads)
        ds = self.scale * (dq @ self.k.transpose(-1, -2) + self.q @ dk.transpose(-1, -2))
        a = self.weights
        da = a * (ds - (a * ds).sum(-1, keepdim=True))
        return (_merge(da @ self.v) @ self.w_o.T).reshape(len(v), -1)

    def rmatvec(self, u):
        heads = len(self.weights)
        g = _split(_rows(u, self.out_shape) @ self.w_o, heads)
        ga = g @ self.v.transpose(-1, -2)
        a = self.weights
        gs = a * (ga - (a * ga).sum(-1, keepdim=True))
        gq = self.scale * gs @ self.k
        gk = self.scale * gs.transpose(-1, -2) @ self.q
        return (_merge(gq) @ self.w_q + _merge(gk) @ self.w_k).reshape(len(u), -1)

    def sup_norm(self):
        return math.inf  # grows with |Q|, |K|, |V|: no bound valid at every input

    def _param(self):
        return self.weights


@dataclass(eq=False, repr=False)
class AttentionFactor(Factor):
    """Self-attention's Jacobian at ``X``: ``value + pattern`` (see :class:`AttentionValueFactor`,
    :class:`AttentionPatternFactor`); both are kept as attributes so their norms can be compared.
    """

    value: AttentionValueFactor = None  # type: ignore[assignment]
    pattern: AttentionPatternFactor = None  # type: ignore[assignment]

    @property
    def weights(self) -> torch.Tensor:
        """The attention weights ``A`` at ``X``: ``(heads, n, n)``."""
        return self.value.weights

    def matvec(self, v):
        return self.value.matvec(v) + self.pattern.matvec(v)

    def rmatvec(self, u):
        return self.value.rmatvec(u) + self.pattern.rmatvec(u)

    def dense(self, max_entries: int = 50_000_000):
        return self.value.dense(max_entries) + self.pattern.dense(max_entries)

    def sup_norm(self):
        return math.inf

    def _param(self):
        return self.value.weights


def _attention_scale(d_head: int, temperature: float = 1.0) -> float:
    """The logit scale ``s = 1 / (tau sqrt(d_h))`` of scaled dot-product attention."""
    return 1.0 / (temperature * math.sqrt(d_head))


def _attention_params(m: nn.Module):
    """``(w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o, heads, scale)`` of a SelfAttention or MHA."""
    if isinstance(m, SelfAttention):
        w, b = m.in_proj.weight.detach(), m.in_proj.bias
        out, heads = m.out_proj, m.heads
        scale = _attention_scale(m.dim // heads, m.temperature)
    elif isinstance(m, nn.MultiheadAttention):
        if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
            raise TypeError(
                "nn.MultiheadAttention is supported as plain self-attention only: kdim = vdim = "
                "embed_dim, add_bias_kv=False, add_zero_attn=False"
            )
        if m.training and m.dropout > 0:
            raise ModelStateError("attention dropout is active: call model.eval() first")
        w, b = m.in_proj_weight.detach(), m.in_proj_bias
        out, heads = m.out_proj, m.num_heads
        scale = _attention_scale(m.embed_dim // heads)
    else:
        raise TypeError(f"not an attention module: {type(m).__name__}")
    wq, wk, wv = w.chunk(3, 0)
    bq, bk, bv = (None, None, None) if b is None else b.detach().chunk(3, 0)
    bo = None if out.bias is None else out.bias.detach()
    return wq, bq, wk, bk, wv, bv, out.weight.detach(), bo, heads, scale


def attention_factor(
    module: nn.Module, h: torch.Tensor, name: str = "A"
) -> tuple[AttentionFactor, torch.Tensor]:
    """Self-attention ``module`` (a :class:`~spectral_lab.transformer_models.SelfAttention` or an
    ``nn.MultiheadAttention`` used as ``mha(x, x, x)``) at ONE sequence of tokens ``h`` (``(n, E)``,
    no batch dimension): its :class:`AttentionFactor` and its output ``(n, E)``.

    Formula: per head ``A_h = softmax(Q_h K_h^T s)`` with ``s = 1/(tau sqrt(d_h))`` (``tau = 1``
    for ``nn.MultiheadAttention``); ``J = sum_h A_h ⊗ W_O^h W_V^h`` (value path) ``+`` the
    pattern path (see :class:`AttentionPatternFactor`). Cost: one forward pass, ``O(h n^2 d_h)``.
    No masks (full self-attention).

    Example: the two paths add up to autograd's Jacobian.
        >>> _ = torch.manual_seed(0)
        >>> att = SelfAttention(4, heads=2).double()
        >>> x = torch.randn(3, 4, dtype=torch.float64)
        >>> f, out = attention_factor(att, x)
        >>> J = torch.autograd.functional.jacobian(lambda z: att(z[None])[0], x).reshape(12, 12)
        >>> bool(torch.allclose(f.value.dense() + f.pattern.dense(), J, atol=1e-12))
        True
    """
    wq, bq, wk, bk, wv, bv, wo, bo, heads, scale = _attention_params(module)
    if h.dim() != 2:
        raise ValueError(f"h must be (n, E) tokens without a batch dimension, got {tuple(h.shape)}")
    x = h.detach()
    shape = tuple(h.shape)
    q, k, v = F.linear(x, wq, bq), F.linear(x, wk, bk), F.linear(x, wv, bv)
    q, k, v = _split(q, heads), _split(k, heads), _split(v, heads)
    a = torch.softmax(q @ k.transpose(-1, -2) * scale, -1)
    out = F.linear(_merge(a @ v), wo, bo).reshape(h.shape)
    value = AttentionValueFactor(f"{name}.value", "attention", shape, shape, module, a, wv, wo)
    pattern = AttentionPatternFactor(
        f"{name}.pattern", "attention", shape, shape, module, a, q, k, v, wq, wk, wo, scale
    )
    return AttentionFactor(name, "attention", shape, shape, module, value, pattern), out


def attention_factors(op: OperatorProduct) -> list[AttentionFactor]:
    """Every :class:`AttentionFactor` of ``op``, in order, including those inside residual
    branches (a transformer's attention sublayers). Cost: a walk over the factors.

    Example: compare the two paths of each attention layer (spectral norms at this input).
        >>> from spectral_lab.transformer_models import VisionTransformer
        >>> _ = torch.manual_seed(0)
        >>> vit = VisionTransformer(image_size=8, patch_size=4, dim=8, depth=2).double().eval()
        >>> op = transformer_operator_product(vit, torch.randn(1, 8, 8, dtype=torch.float64))
        >>> [f.name for f in attention_factors(op)]
        ['B1.attn.A1', 'B2.attn.A1']
        >>> norms = [(f.value.spectral_norm(), f.pattern.spectral_norm()) for f in attention_factors(op)]
    """
    out: list[AttentionFactor] = []
    for f in op.factors:
        if isinstance(f, AttentionFactor):
            out.append(f)
        for sub in (getattr(f, "branch", None), getattr(f, "shortcut", None)):
            if isinstance(sub, OperatorProduct):
                out += attention_factors(sub)
    return out


def transformer_operator_product(model: nn.Module, x: torch.Tensor) -> OperatorProduct:
    """:func:`~spectral_lab.operators.operator_product` with the transformer walkers of this
    module registered (importing ``spectral_lab`` registers them, so the two are the same call).

    Walks ``model.layers`` with LayerNorm, self-attention
    (:class:`~spectral_lab.transformer_models.SelfAttention`, ``nn.MultiheadAttention``),
    :class:`~spectral_lab.transformer_models.EncoderBlock`, ``nn.TransformerEncoderLayer``
    (``batch_first=True``, eval mode, relu/gelu; Linear layers inside act on every token),
    patch/class-token/positional embeddings and token pooling, plus every layer
    :func:`~spectral_lab.operators.operator_product` walks. Cost: one forward pass plus
    ``O(h n^2)`` bookkeeping per attention layer; ``dense()`` costs ``C`` transposed sweeps. Runs
    on the device and dtype of the model's parameters; ``x`` (ONE input, no batch dimension) must
    already have them (a ``TypeError`` says how to cast).

    Example: see the module docstring.
    """
    from .operators import (
        operator_product,
    )  # operators imports the walkers of this module's factors

    return operator_product(model, x)
