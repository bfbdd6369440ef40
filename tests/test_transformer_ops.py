"""Transformer layers as operators, against dense autograd and closed forms (float64, tiny sizes).

References are independent of the library: ``torch.autograd.functional.jacobian`` of the real
modules (``nn.LayerNorm``, ``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``, the ViT),
explicit Kronecker products built here, and NumPy SVDs. Three mutation tests swap in plausible
wrong formulas and assert that the checks then fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab import transformer_ops as tops
from spectral_lab.transformer_models import SelfAttention, VisionTransformer

D64 = torch.float64


def jac(fn, x):
    j = torch.autograd.functional.jacobian(fn, x)
    return j.reshape(-1, x.numel())


def rel(a, b):
    return float((a - b).norm() / b.norm())


def mha_fn(m):
    return lambda z: m(z[None], z[None], z[None], need_weights=False)[0][0]


def model_fn(m):
    return lambda z: m(z[None])[0]


def all_factors(factors):
    """Every factor, recursing into residual branches and the two attention paths."""
    for f in factors:
        yield f
        if isinstance(f, sl.operators.ResidualFactor):
            yield from all_factors(f.branch.factors)
        if isinstance(f, tops.AttentionFactor):
            yield f.value
            yield f.pattern


def model_matches_autograd(model, x) -> bool:
    """The check the mutation tests attack: ``operator_product(...).dense()`` vs autograd, with
    every layer walked into its structured factors. A walk whose own forward formula no longer
    reproduces ``model(x)`` is replaced by a generic factor (exact, but not the walker's): that is
    a failed check too."""
    op = sl.operator_product(model, x)
    if op.generic_factors():
        return False
    return rel(op.dense(), jac(model_fn(model), x)) < 1e-10


class Wrap(nn.Module):
    """A Sequential around one encoder layer with a read-out, so operator_product can walk it."""

    def __init__(self, layer, n, e, c=3):
        super().__init__()
        self.layers = nn.Sequential(layer, nn.Flatten(), nn.Linear(n * e, c))

    def forward(self, x):
        return self.layers(x)


# ----------------------------------------------------------------------------- LayerNorm
@pytest.mark.parametrize("eps", [0.0, 1e-5, 0.3])
def test_layernorm_factor_equals_autograd(eps):
    g = torch.Generator().manual_seed(0)
    ln = nn.LayerNorm(6, eps=eps).double()
    with torch.no_grad():
        ln.weight.copy_(torch.randn(6, generator=g, dtype=D64))
        ln.bias.copy_(torch.randn(6, generator=g, dtype=D64))
    x = torch.randn(4, 6, generator=g, dtype=D64)
    f = tops.layernorm_factor(ln, x)
    ref = jac(ln, x)
    assert rel(f.dense(), ref) < 1e-12  # the closed-form block diagonal
    v = torch.randn(3, 24, generator=g, dtype=D64)
    assert torch.allclose(f.matvec(v), v @ ref.T, atol=1e-12)
    assert torch.allclose(f.rmatvec(v), v @ ref, atol=1e-12)


def layernorm_closed_form_ok(d=7, seed=0) -> bool:
    """eps = 0, gamma = 1: null space span(1, x̂) and every other singular value 1/sigma."""
    g = torch.Generator().manual_seed(seed)
    ln = nn.LayerNorm(d, eps=0.0).double()
    x = 2.0 + 3.0 * torch.randn(d, generator=g, dtype=D64)
    f = tops.layernorm_factor(ln, x)
    m = f.matvec(torch.eye(d, dtype=D64)).T  # through the matrix-free product
    xn = x.numpy()
    sigma = float(np.std(xn))  # population std (NumPy), independent of the library
    xhat = torch.tensor((xn - xn.mean()) / sigma)
    null_ok = bool(
        (m @ torch.ones(d, dtype=D64)).abs().max() < 1e-12 and (m @ xhat).abs().max() < 1e-12
    )
    sv = np.linalg.svd(m.numpy(), compute_uv=False)
    sv_ok = bool(np.allclose(sv[: d - 2], 1 / sigma, rtol=1e-12) and np.all(sv[d - 2 :] < 1e-12))
    return null_ok and sv_ok


def test_layernorm_null_space_and_singular_values():
    assert all(layernorm_closed_form_ok(d, s) for d in (3, 7, 16) for s in range(3))


def test_mutation_layernorm_without_xhat_term_is_caught(monkeypatch):
    """Dropping the x̂ x̂^T / d term (a centring-only Jacobian) fails both checks."""
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=4, patch_size=2, dim=4, depth=1, heads=1).double().eval()
    x = torch.randn(1, 4, 4, dtype=D64)
    assert layernorm_closed_form_ok() and model_matches_autograd(vit, x)

    def centring_only(self, v):
        return v - v.mean(-1, keepdim=True)

    monkeypatch.setattr(tops.LayerNormFactor, "_project", centring_only)
    assert not layernorm_closed_form_ok()
    assert not model_matches_autograd(vit, x)


# ----------------------------------------------------------------------------- attention
@pytest.mark.parametrize("heads", [1, 2])
def test_multihead_attention_equals_autograd(heads):
    torch.manual_seed(heads)
    mha = nn.MultiheadAttention(8, heads, batch_first=True).double().eval()
    x = torch.randn(5, 8, dtype=D64)
    f, out = tops.attention_factor(mha, x)
    ref = jac(mha_fn(mha), x)
    assert torch.allclose(out, mha_fn(mha)(x), atol=1e-13)
    assert rel(f.dense(), ref) < 1e-10
    # the value path alone is sum_h A_h ⊗ W_O^h W_V^h, built here from the module's own weights
    _, a = mha(x[None], x[None], x[None], need_weights=True, average_attn_weights=False)
    wv = mha.in_proj_weight[16:].detach()
    wo = mha.out_proj.weight.detach()
    dh = 8 // heads
    kron = sum(
        torch.kron(a[0, h].detach(), wo[:, h * dh : (h + 1) * dh] @ wv[h * dh : (h + 1) * dh])
        for h in range(heads)
    )
    assert rel(f.value.dense(), kron) < 1e-12
    assert rel(f.pattern.dense(), ref - kron) < 1e-10


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_self_attention_with_temperature_equals_autograd(tau):
    torch.manual_seed(0)
    att = SelfAttention(6, heads=2, temperature=tau).double()
    x = torch.randn(4, 6, dtype=D64)
    f, out = tops.attention_factor(att, x)
    assert torch.allclose(out, att(x[None])[0], atol=1e-13)
    assert rel(f.dense(), jac(model_fn(att), x)) < 1e-10


def test_uniform_weights_are_pure_value_averaging():
    """Q = K = 0: A = 11^T/n, J = (11^T/n) ⊗ W_O W_V and the pattern path vanishes."""
    torch.manual_seed(0)
    n, e = 5, 6
    att = SelfAttention(e, heads=2).double()
    with torch.no_grad():
        att.in_proj.weight[: 2 * e].zero_()
        att.in_proj.bias[: 2 * e].zero_()
    x = torch.randn(n, e, dtype=D64)
    f, _ = tops.attention_factor(att, x)
    wv, wo = att.in_proj.weight[2 * e :].detach(), att.out_proj.weight.detach()
    expected = torch.kron(torch.full((n, n), 1.0 / n, dtype=D64), wo @ wv)
    assert torch.allclose(f.weights, torch.full_like(f.weights, 1.0 / n), atol=1e-15)
    assert rel(f.value.dense(), expected) < 1e-12
    assert f.pattern.dense().abs().max() < 1e-15
    assert rel(jac(model_fn(att), x), expected) < 1e-12  # the module itself agrees


def test_one_hot_weights_are_a_selection():
    """q_i · k_j = [j = pi(i)] and a tiny temperature: A = the permutation Pi, J = Pi ⊗ W_O W_V."""
    n, e = 4, 4
    perm = [2, 0, 3, 1]  # token i attends to token perm[i]
    torch.manual_seed(0)
    att = SelfAttention(e, heads=1, temperature=1e-3).double()
    wk = torch.zeros(e, e, dtype=D64)
    for i, j in enumerate(perm):
        wk[i, j] = 1.0  # k_j = e_{pi^{-1}(j)}, so q_i · k_j = [i = pi^{-1}(j)] = [j = pi(i)]
    with torch.no_grad():
        att.in_proj.weight[:e] = torch.eye(e, dtype=D64)
        att.in_proj.weight[e : 2 * e] = wk
        att.in_proj.bias[: 2 * e].zero_()
    x = torch.eye(n, e, dtype=D64)  # token i is e_i
    f, _ = tops.attention_factor(att, x)
    pi = torch.zeros(n, n, dtype=D64)
    pi[torch.arange(n), perm] = 1.0
    assert torch.allclose(f.weights[0], pi, atol=1e-12)
    wv, wo = att.in_proj.weight[2 * e :].detach(), att.out_proj.weight.detach()
    expected = torch.kron(pi, wo @ wv)
    assert rel(f.value.dense(), expected) < 1e-10
    assert f.pattern.dense().abs().max() < 1e-10  # a saturated softmax does not move
    assert rel(jac(model_fn(att), x), expected) < 1e-10


def first_order_pattern(att: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The pattern path to first order in the logits (A ≈ 11^T/n), written out block by block:
    block (i, m) = sum_h s_h W_O^h [ δ_im (1/n) sum_j U_j k_j^T W_Q^h + (1/n) U_m q_i^T W_K^h ],
    U_j = v_j - mean(v), s_h = 1/(tau sqrt(d_h))."""
    n, e = x.shape
    dh = e // att.heads
    s = 1.0 / (att.temperature * math.sqrt(dh))
    w, b = att.in_proj.weight.detach(), att.in_proj.bias.detach()
    wo = att.out_proj.weight.detach()
    out = torch.zeros(n * e, n * e, dtype=D64)
    for h in range(att.heads):
        sl_h = slice(h * dh, (h + 1) * dh)
        wq, wk, wv = w[:e][sl_h], w[e : 2 * e][sl_h], w[2 * e :][sl_h]
        q, k = x @ wq.T + b[:e][sl_h], x @ wk.T + b[e : 2 * e][sl_h]
        v = x @ wv.T + b[2 * e :][sl_h]
        u = v - v.mean(0)
        diag = (u.T @ k) @ wq / n
        for i in range(n):
            for m in range(n):
                blk = torch.outer(u[m], q[i]) @ wk / n + (diag if i == m else 0)
                out[i * e : (i + 1) * e, m * e : (m + 1) * e] += s * wo[:, sl_h] @ blk
    return out


def small_logit_attention(heads, tau, seed=0):
    torch.manual_seed(seed)
    att = SelfAttention(8, heads=heads, temperature=tau).double()
    with torch.no_grad():
        att.in_proj.weight[:16] *= 1e-4  # tiny Q, K: logits ~ 1e-8
        att.in_proj.bias[:16] *= 1e-4
    return att


def pattern_scaling_ok(heads=2) -> bool:
    """The pattern path equals its first-order closed form (scale 1/(tau sqrt(d_h))) at small
    logits, and halves when the temperature doubles."""
    x = torch.randn(4, 8, dtype=D64, generator=torch.Generator().manual_seed(1))
    ok = True
    for tau in (1.0, 2.0):
        att = small_logit_attention(heads, tau)
        f, _ = tops.attention_factor(att, x)
        ok &= rel(f.pattern.dense(), first_order_pattern(att, x)) < 1e-4
    p1 = tops.attention_factor(small_logit_attention(heads, 1.0), x)[0].pattern.dense()
    p2 = tops.attention_factor(small_logit_attention(heads, 2.0), x)[0].pattern.dense()
    ratio = float(torch.linalg.matrix_norm(p1, 2) / torch.linalg.matrix_norm(p2, 2))
    return bool(ok and abs(ratio - 2.0) < 1e-4)


@pytest.mark.parametrize("heads", [1, 2])
def test_pattern_path_scales_with_inverse_sqrt_d_and_temperature(heads):
    assert pattern_scaling_ok(heads)


def test_mutation_inverse_d_scale_is_caught(monkeypatch):
    """1/(tau d_h) in place of 1/(tau sqrt(d_h)) fails the closed form and the autograd check."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 8, dropout=0.0, batch_first=True).double().eval()
    model = Wrap(layer, 3, 8).double().eval()
    x = torch.randn(3, 8, dtype=D64)
    assert pattern_scaling_ok() and model_matches_autograd(model, x)
    monkeypatch.setattr(tops, "_attention_scale", lambda d, t=1.0: 1.0 / (t * d))
    assert not pattern_scaling_ok()
    assert not model_matches_autograd(model, x)


def test_mutation_dropped_pattern_path_is_caught(monkeypatch):
    """Attention as a fixed mixing A ⊗ W_O W_V (no pattern term) fails the autograd check; the
    uniform/one-hot checks cannot see it (their pattern term is zero), which is why both exist."""
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=4, patch_size=2, dim=4, depth=1, heads=2).double().eval()
    x = torch.randn(1, 4, 4, dtype=D64)
    assert model_matches_autograd(vit, x)
    zero = lambda self, v: v.new_zeros(len(v), self.n_out)  # noqa: E731
    monkeypatch.setattr(tops.AttentionPatternFactor, "matvec", zero)
    monkeypatch.setattr(tops.AttentionPatternFactor, "rmatvec", lambda self, u: 0 * u)
    assert not model_matches_autograd(vit, x)
    test_uniform_weights_are_pure_value_averaging()  # still passes under the mutant


# ----------------------------------------------------------------------------- whole layers
@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer_equals_autograd(norm_first, activation):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        8, 2, 12, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
    )
    model = Wrap(layer, 4, 8).double().eval()
    x = torch.randn(4, 8, dtype=D64)
    op = sl.operator_product(model, x)
    expect = ["B1.attn", "B1.mlp", "W1"] if norm_first else ["B1.attn", "B1.attn.LN"]
    assert op.names[: len(expect)] == expect and not op.generic_factors()
    assert rel(op.dense(), jac(model_fn(model), x)) < 1e-10


@pytest.mark.parametrize("final_norm", [True, False])
def test_transformer_encoder_stack_equals_autograd(final_norm):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True, norm_first=True)
    norm = nn.LayerNorm(8) if final_norm else None
    stack = nn.TransformerEncoder(layer, 2, norm=norm, enable_nested_tensor=False)
    model = Wrap(stack, 4, 8).double().eval()
    x = torch.randn(4, 8, dtype=D64)
    op = sl.operator_product(model, x)
    assert rel(op.dense(), jac(model_fn(model), x)) < 1e-10


def test_training_mode_dropout_is_analysed_in_eval_mode():
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.1, batch_first=True).double()
    model, x = Wrap(layer, 4, 8).double(), torch.randn(4, 8, dtype=D64)
    op = sl.operator_product(model.train(), x)
    assert model.training and layer.dropout.training
    assert rel(op.dense(), jac(model_fn(model.eval()), x)) < 1e-10


VITS = [
    dict(norm_first=True, pool="mean", activation="gelu"),
    dict(norm_first=False, pool="mean", activation="silu"),
    dict(norm_first=True, pool="cls", activation="relu", temperature=0.5),
    dict(norm_first=False, pool="cls", activation="gelu", temperature=2.0),
]


@pytest.mark.parametrize("kw", VITS, ids=lambda k: f"{k['norm_first']}-{k['pool']}")
def test_vision_transformer_equals_autograd_and_factors_are_adjoint(kw):
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=4, dim=8, depth=2, heads=2, **kw)
    vit = vit.double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 8, dtype=D64, generator=g)
    op = sl.operator_product(vit, x)
    assert not op.generic_factors()  # every layer walked into its structured factors
    ref = jac(model_fn(vit), x)
    assert rel(op.dense(), ref) < 1e-10
    assert rel(op.partial_products()[-1], ref) < 1e-10
    v = torch.randn(3, op.d, dtype=D64, generator=g)
    assert torch.allclose(op.matvec(v), v @ ref.T, atol=1e-12)
    for f in all_factors(op.factors):
        u = torch.randn(2, f.n_out, dtype=D64, generator=g)
        w = torch.randn(2, f.n_in, dtype=D64, generator=g)
        lhs, rhs = (u * f.matvec(w)).sum(1), (f.rmatvec(u) * w).sum(1)
        assert torch.allclose(lhs, rhs, rtol=1e-10, atol=1e-12), f.name  # <u, M w> = <M^T u, w>
        assert torch.allclose(f.matvec(w), w @ f.dense().T, atol=1e-12), f.name


def test_transformer_operator_product_is_operator_product():
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=4, dim=4, depth=1).double().eval()
    x = torch.randn(1, 8, 8, dtype=D64)
    a, b = tops.transformer_operator_product(vit, x), sl.operator_product(vit, x)
    assert a.names == b.names and torch.equal(a.dense(), b.dense())


def test_layernorm_in_an_mlp_and_errors():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.Tanh(), nn.Linear(6, 2)).double()
    x = torch.randn(5, dtype=D64)
    assert rel(sl.operator_product(m, x).dense(), jac(model_fn(m), x)) < 1e-10
    with pytest.raises(TypeError, match="last dimension"):
        tops.layernorm_factor(nn.LayerNorm((2, 3)), torch.randn(2, 3))
    with pytest.raises(ValueError, match="batch dimension"):
        tops.attention_factor(SelfAttention(4), torch.randn(1, 3, 4))


def test_data_free_bounds_hold_at_this_input():
    """``spectral_norm() <= sup_norm()`` for LayerNorm (max|gamma|/sqrt(eps)) and the value path
    (sqrt(n) sum_h ||W_O^h|| ||W_V^h||); attention as a whole has no finite data-free bound."""
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=8, patch_size=2, dim=8, depth=1, heads=2, pool="cls")
    vit = vit.double().eval()
    with torch.no_grad():
        for b in vit.blocks:
            b.norm1.weight.mul_(3.0)
    op = sl.operator_product(vit, 10 * torch.randn(1, 8, 8, dtype=D64))
    att = tops.attention_factors(op)
    assert [f.name for f in att] == ["B1.attn.A1"]
    assert att[0].value.spectral_norm() <= att[0].value.sup_norm()
    assert math.isinf(att[0].sup_norm()) and math.isinf(op.sup_norm_bound())
    lns = [f for f in all_factors(op.factors) if isinstance(f, tops.LayerNormFactor)]
    assert len(lns) == 3
    for f in lns:
        assert f.spectral_norm() <= f.sup_norm()
    # the gain sits on the tokens: every token's block has norm max|gamma| / sigma_t (eps = 0
    # aside) at most, and the LN factor's spectral norm is the largest of them
    f = lns[0]
    blocks = [f.dense()[i * 8 : (i + 1) * 8, i * 8 : (i + 1) * 8] for i in range(f.xhat.shape[0])]
    top = max(float(torch.linalg.matrix_norm(b, 2)) for b in blocks)
    assert abs(f.spectral_norm() - top) < 1e-12
