# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 — Normalisation and attention as operators
#
# > Chapters 01–09 read MLPs, CNNs and residual networks as data-dependent products of linear
# > maps and diagonal gates. A transformer adds two layers that are neither: LayerNorm, whose
# > Jacobian is a projection times a gain, and self-attention, whose Jacobian is a data-dependent
# > mixing of tokens *plus* a term that moves the mixing itself. This chapter derives both and
# > checks them against closed forms. Its sequel, `10_transformer_operators_vit`, multiplies them
# > into a whole vision transformer and measures its spectra.
#
# **Learning objectives.** After this chapter you can
#
# 1. derive LayerNorm's Jacobian $(\gamma/\sigma)(I - \mathbf 1\mathbf 1^\top/d - \hat x\hat x^\top/d)$,
#    name its null space and its other singular values, and say what it does to a spectrum;
# 2. split self-attention's Jacobian into a value path (the current attention weights mixing
#    tokens) and a pattern path (the weights moving), and say when the pattern path dominates.
#
# **Prerequisites.** Chapters 01 (operator products) and 02 (spectral entropy, condition numbers).
# The softmax and its derivative; Kronecker products.
#
# **Approximate time:** about 40 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 14 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 9; the last cell prints your run's time.
#
# > **Sources and choices.** The operator view (a network at one input as a product of linear
# > maps, and the spectral quantities it exposes) is that of *A Unified Matrix-Spectral Framework
# > for Stability and Interpretability in Deep Learning* (arXiv 2602.01136), whose keywords name
# > transformers and self-attention; how far the view carries to attention is left open there, and
# > the factorisation below is this course's. The attention is that of *Attention Is All You Need*;
# > the temperature $\tau$ is a choice made to show the two paths' limits.

# %% tags=["nbval-ignore-output"]
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab import exercises as ex
from spectral_lab import transformer_models, transformer_ops

_chapter_start = time.perf_counter()  # the last cell prints the run time

sl.plots.use_style()
torch.manual_seed(0)
D64 = torch.float64
print(f"torch {torch.__version__}, spectral_lab {sl.__version__}")

# %% [markdown]
# ## 1. LayerNorm as an operator
#
# LayerNorm acts on each token $x\in\mathbb R^d$ separately:
# $\mathrm{LN}(x) = \gamma\odot\hat x + \beta$ with $\mu = \frac1d\mathbf 1^\top x$,
# $\sigma^2 = \frac1d\|x-\mu\mathbf 1\|^2 + \varepsilon$ and $\hat x = (x - \mu\mathbf 1)/\sigma$.
# Differentiating, $d\mu = \mathbf 1^\top dx/d$ and $d\sigma = \hat x^\top dx/d$ (for the biased
# variance), so
#
# $$ \frac{\partial\,\mathrm{LN}}{\partial x} = \frac{\operatorname{diag}(\gamma)}{\sigma}
# \Big(I - \frac{\mathbf 1\mathbf 1^\top}{d} - \frac{\hat x\hat x^\top}{d}\Big). $$
#
# It is **not** diagonal, unlike the gates of chapter 01. With $\varepsilon = 0$, $\|\hat x\|^2 = d$
# and $\hat x\perp\mathbf 1$, so the bracket is the orthogonal projection $P$ that removes two
# directions: the all-ones direction (shifting a token changes nothing) and the token's own
# direction $\hat x$ (scaling a token changes nothing). Hence, for $\gamma = \mathbf 1$, the
# Jacobian has **two zero singular values and $d-2$ equal to $1/\sigma$**: a rank-$(d-2)$ projection
# times a gain that is large for tokens of small spread. With $\varepsilon > 0$ the direction
# $\hat x$ is not quite removed: its singular value is $\varepsilon/\sigma^3$ (exercise 1 derives
# it). `transformer_ops.layernorm_factor` builds this factor; its `dense()` is the block-diagonal
# closed form over tokens.

# %%
d_tok = 32
ln0 = nn.LayerNorm(d_tok, eps=0.0, elementwise_affine=False).double()
tok = 0.5 + 2.0 * torch.randn(3, d_tok, dtype=D64)  # three tokens, off-centre and spread out
f_ln = transformer_ops.layernorm_factor(ln0, tok)
sv_ln = torch.linalg.svdvals(f_ln.dense()[:d_tok, :d_tok])  # the first token's block
sigma0 = float(tok[0].std(unbiased=False))
print(f"first token: sigma = {sigma0:.4f}, 1/sigma = {1 / sigma0:.4f}")
print("its LayerNorm factor's singular values, largest and smallest three:")
print(sv_ln[:3].numpy().round(6), "...", sv_ln[-3:].numpy())

# %% tags=["nbval-check-output"]
# check: (a) the library's LayerNorm factor equals autograd's Jacobian of F.layer_norm;
# (b) the closed form written out in numpy, (1/sigma)(I - 11^T/d - xh xh^T/d), equals autograd too
# (a wrong constant, the unbiased variance or a dropped term fails here);
# (c) eps = 0, gamma = 1: the null space is span(1, xhat) and the other d-2 singular values are 1/sigma
J_ln = torch.autograd.functional.jacobian(lambda z: ln0(z), tok).reshape(3 * d_tok, 3 * d_tok)
lib_ok = torch.allclose(f_ln.dense(), J_ln, atol=1e-12)
t0 = tok[0].numpy()
s_np = t0.std()  # numpy's default std is the biased one
xh = (t0 - t0.mean()) / s_np
closed = (np.eye(d_tok) - 1 / d_tok - np.outer(xh, xh) / d_tok) / s_np
closed_ok = np.allclose(closed, J_ln[:d_tok, :d_tok].numpy(), atol=1e-12)
ones = torch.ones(1, 3 * d_tok, dtype=D64)
xhat_all = ((tok - tok.mean(1, keepdim=True)) / tok.std(1, unbiased=False, keepdim=True)).reshape(
    1, -1
)
null_ok = bool(f_ln.matvec(ones).abs().max() < 1e-12 and f_ln.matvec(xhat_all).abs().max() < 1e-12)
spec_ok = bool(
    sv_ln[-2:].max() < 1e-12
    and torch.allclose(sv_ln[:-2], torch.full((d_tok - 2,), 1 / sigma0, dtype=D64))
)
print(
    "library = autograd:", lib_ok, "| numpy closed form = autograd:", closed_ok,
    "| null space {1, xhat}:", null_ok, "| other singular values 1/sigma:", spec_ok,
)  # fmt: skip
assert lib_ok and closed_ok and null_ok and spec_ok

# %% [markdown]
# **What the projection does to a spectrum.** In a product $F_K\cdots F_1$, a LayerNorm factor
# multiplies by $1/\sigma_t$ on $d-2$ directions of each token $t$ and annihilates two. So each
# LayerNorm can lower the rank of the partial product by up to $2n$ ($n$ tokens), and its gain
# equalises the tokens' scales: a token with a small spread $\sigma_t$ is *amplified*. The gain is
# data-dependent, so it appears in no weight matrix: a static (weights-only) analysis misses it.

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** With $\varepsilon > 0$, show that $\hat x$ is a singular vector of the LayerNorm
# Jacobian ($\gamma = \mathbf 1$) with singular value $\varepsilon/\sigma^3$, where
# $\sigma^2 = \operatorname{var}(x) + \varepsilon$. Compute that value for the first token `tok[0]`
# with $\varepsilon = 0.5$, from the formula, and the Jacobian's smallest nonzero singular value
# from the library's factor.

# %% tags=["exercise"]
ln_eps = nn.LayerNorm(d_tok, eps=0.5, elementwise_affine=False).double()
sv_formula = ...  # float: eps / sigma^3
sv_factor = ...  # float: the second smallest singular value of the library's factor at tok[0]


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
# With c = x - mu (so |c|^2 = d var) and sigma^2 = var + eps, the Jacobian is
# (1/sigma)(I - 11^T/d) - c c^T / (d sigma^3). On u = c/|c|: J u = u (1/sigma - var/sigma^3)
# = u eps/sigma^3. The all-ones direction is still in the null space.
def _solution_1():
    sigma_eps = math.sqrt(float(tok[0].var(unbiased=False)) + 0.5)
    factor = transformer_ops.layernorm_factor(ln_eps, tok[:1]).dense()
    return 0.5 / sigma_eps**3, float(torch.linalg.svdvals(factor)[-2])


# %% tags=["nbval-check-output"]
# check exercise 1 with numpy's SVD of autograd's Jacobian of F.layer_norm
J_eps = torch.autograd.functional.jacobian(lambda z: ln_eps(z), tok[0]).numpy()
sv_np = np.linalg.svd(J_eps, compute_uv=False)
c0 = (tok[0] - tok[0].mean()).numpy()
sv_closed = 0.5 / (c0 @ c0 / d_tok + 0.5) ** 1.5
assert math.isclose(sv_np[-2], sv_closed, rel_tol=1e-8)  # the formula is the SVD's value
judge_1 = ex.close((sv_closed, sv_np[-2]), rtol=1e-8, atol=0, names=("sv_formula", "sv_factor"))
ex.check(1, (sv_formula, sv_factor), judge_1, solution=_solution_1())

# %% [markdown]
# ## 2. Self-attention: a data-dependent linear map plus a pattern term
#
# For one head, with tokens as the rows of $X\in\mathbb R^{n\times d}$, $Q = XW_Q^\top$,
# $K = XW_K^\top$, $V = XW_V^\top$, the logits $S = s\,QK^\top$ with $s = 1/(\tau\sqrt{d_h})$
# ($d_h$ the head width, $\tau$ a temperature, $\tau = 1$ the usual scaling), the weights
# $A = \mathrm{softmax}_{\text{rows}}(S)$ and the output $O = A V W_O^\top$. Perturbing $X$:
#
# $$ dO = \underbrace{A\,dX\,W_V^\top W_O^\top}_{\text{value path}}
#  + \underbrace{dA\,V W_O^\top}_{\text{pattern path}}, \qquad
#  dA_{i\cdot} = (\operatorname{diag}(a_i) - a_ia_i^\top)\,dS_{i\cdot}^\top,\quad
#  dS = s\,(dQ\,K^\top + Q\,dK^\top). $$
#
# On the flattened sequence the value path is the matrix $A\otimes W_OW_V$: the current weights,
# frozen, mixing tokens — a linear map exactly like a convolution, but chosen by the input. The
# pattern path is the change of the weights themselves. Two limits:
#
# * **uniform attention** ($S$ independent of the keys, e.g. $W_Q = 0$): $A = \mathbf 1\mathbf
#   1^\top/n$, the pattern path vanishes and the layer *averages* the tokens,
#   $J = (\mathbf 1\mathbf 1^\top/n)\otimes W_OW_V$;
# * **one-hot attention** (large logit gaps, $\tau\to 0$): $A$ is a 0/1 selection, the softmax
#   Jacobian $\operatorname{diag}(a)-aa^\top$ vanishes, and so does the pattern path: the layer
#   *copies* the selected token, $J = A\otimes W_OW_V$.
#
# In between, the pattern path carries the factor $s$ and the softmax Jacobian (norm at most
# $\tfrac12$ per row): for a large temperature it shrinks like $1/\tau$ (next to a value path that
# tends to averaging), for a small one it dies with the saturating softmax. It dominates at
# intermediate, input-dependent logit gaps, and it is larger where $\|Q\|\,\|K\|\,\|V\|$ is large.
# `transformer_ops.attention_factor` returns the factor with both paths kept (`.value`,
# `.pattern`).

# %%
torch.manual_seed(0)
att = transformer_models.SelfAttention(16, heads=2).double()
X = torch.randn(6, 16, dtype=D64)  # 6 tokens of width 16


def path_norms(module, tokens, temperature):
    """Spectral norms of the value and pattern paths at one temperature."""
    module.temperature = temperature
    f, _ = transformer_ops.attention_factor(module, tokens)
    return (
        float(torch.linalg.matrix_norm(f.value.dense(), 2)),
        float(torch.linalg.matrix_norm(f.pattern.dense(), 2)),
    )


taus = np.logspace(-2, 3, 26)
norms = np.array([path_norms(att, X, t) for t in taus])
att.temperature = 1.0
ratio = norms[:, 1] / norms[:, 0]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
axes[0].loglog(taus, norms[:, 0], "o-", ms=3, label="value path")
axes[0].loglog(taus, norms[:, 1], "s-", ms=3, label="pattern path")
axes[0].set(xlabel=r"temperature $\tau$", ylabel=r"$\|\cdot\|_2$", title="the two paths")
axes[0].legend()
axes[1].semilogx(taus, ratio, "o-", ms=3)
axes[1].set(
    xlabel=r"temperature $\tau$", ylabel="pattern / value", title="when the pattern dominates"
)
fig.tight_layout()
plt.show()
print(
    f"pattern/value is largest ({ratio.max():.2f}) at tau = {taus[ratio.argmax()]:.3g}; "
    f"it is {ratio[0]:.1e} at tau = {taus[0]:g} and {ratio[-1]:.1e} at tau = {taus[-1]:g}"
)

# %% tags=["nbval-check-output"]
# check: (a) value + pattern = autograd's Jacobian of the layer;
# (b) uniform attention (W_Q = 0): A = 11^T/n, the pattern path is 0 and J = (11^T/n) kron W_O W_V
# (numpy)
n_tok = len(X)
f_att, _ = transformer_ops.attention_factor(att, X)
J_att = torch.autograd.functional.jacobian(lambda z: att(z[None])[0], X).reshape(96, 96)
sum_ok = torch.allclose(f_att.value.dense() + f_att.pattern.dense(), J_att, atol=1e-12)
WoWv = lambda m: [  # noqa: E731  per head: W_O^h W_V^h, in numpy
    (m.out_proj.weight[:, h * 8 : (h + 1) * 8] @ m.in_proj.weight[32 + h * 8 : 32 + (h + 1) * 8]).detach().numpy()
    for h in range(2)
]  # fmt: skip
uni = transformer_models.SelfAttention(16, heads=2).double()
with torch.no_grad():
    uni.in_proj.weight[:16] = 0.0  # W_Q = 0
    uni.in_proj.bias[:16] = 0.0
f_uni, _ = transformer_ops.attention_factor(uni, X)
J_uni = torch.autograd.functional.jacobian(lambda z: uni(z[None])[0], X).reshape(96, 96).numpy()
avg = np.full((n_tok, n_tok), 1 / n_tok)
uniform_ok = (
    np.allclose(J_uni, sum(np.kron(avg, w) for w in WoWv(uni)), atol=1e-12)
    and float(f_uni.pattern.dense().abs().max()) < 1e-14
)
print("value + pattern = autograd:", sum_ok, "| uniform = averaging:", uniform_ok)
assert sum_ok and uniform_ok

# %% tags=["nbval-check-output"]
# check: (c) one-hot attention (tau = 1e-3): A is a 0/1 selection, J = A kron W_O W_V (numpy) and
# the pattern path is negligible; (d) for large tau the pattern path shrinks like 1/tau:
# tau ||pattern(tau)|| changes by < 1% from tau = 1e2 to 1e3, while ||pattern|| itself drops ~10x
att.temperature = 1e-3
f_hot, _ = transformer_ops.attention_factor(att, X)
A_hot = f_hot.weights.numpy()
J_hot = torch.autograd.functional.jacobian(lambda z: att(z[None])[0], X).reshape(96, 96).numpy()
onehot_ok = np.allclose(A_hot, np.round(A_hot), atol=1e-10) and np.allclose(
    J_hot, sum(np.kron(A_hot[h], w) for h, w in enumerate(WoWv(att))), atol=1e-8
)
att.temperature = 1.0
(v2, p2), (v3, p3) = path_norms(att, X, 1e2), path_norms(att, X, 1e3)
att.temperature = 1.0
scaling_ok = abs(1e3 * p3 / (1e2 * p2) - 1) < 1e-2 and p2 / p3 > 9
print("one-hot = selection:", onehot_ok, "| pattern ~ 1/tau:", scaling_ok)
assert onehot_ok and scaling_ok

# %% [markdown]
# **Exercise 2.** Uniform attention averages. Build a `SelfAttention(16, heads=2)` with
# $W_Q = 0$ (and zero query bias), as in §2, but keep $W_K$ random. Give the rank of its
# Jacobian on 6 tokens in terms of $W_OW_V$, and check it on `X`.

# %% tags=["exercise"]
rank_uniform = ...  # int: rank of the 96 x 96 Jacobian at X
rank_formula = ...  # int: the rank the Kronecker form predicts


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
# J = (11^T/n) kron M with M = sum_h W_O^h W_V^h = W_O W_V (all heads share A = 11^T/n), and
# rank(A kron M) = rank(A) rank(M) = 1 * rank(W_O W_V) = 16 here (square, generic weights).
def _solution_2():
    f_u, _ = transformer_ops.attention_factor(uni, X)
    M_uni = (uni.out_proj.weight @ uni.in_proj.weight[32:]).detach()
    return int(torch.linalg.matrix_rank(f_u.dense())), 1 * int(torch.linalg.matrix_rank(M_uni))


# %% tags=["nbval-check-output"]
# check exercise 2 with numpy: the rank of autograd's Jacobian and of W_O W_V
rank_J = int(np.linalg.matrix_rank(J_uni))
assert rank_J == np.linalg.matrix_rank((uni.out_proj.weight @ uni.in_proj.weight[32:]).detach())
judge_2 = ex.equal((rank_J, rank_J), names=("rank_uniform", "rank_formula"))
ex.check(2, (rank_uniform, rank_formula), judge_2, solution=_solution_2())

# %% [markdown]
# ## Summary
#
# * LayerNorm's Jacobian is $(\gamma/\sigma)(I - \mathbf 1\mathbf 1^\top/d - \hat x\hat x^\top/d)$
#   per token: a projection that removes the mean and the token's own direction (two zero singular
#   values for $\varepsilon = 0$) times the data-dependent gain $1/\sigma$.
# * Self-attention's Jacobian is a value path $\sum_h A_h\otimes W_O^hW_V^h$ (the current weights,
#   a data-chosen linear mixing of tokens) plus a pattern path (the weights moving). Uniform
#   attention averages, one-hot attention selects; in both limits the pattern path vanishes, and it
#   shrinks like $1/\tau$ for large temperature.
# * Next, `10_transformer_operators_vit`: a whole vision transformer as a product of these factors.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 10 ran in {time.perf_counter() - _chapter_start:.0f} s")
