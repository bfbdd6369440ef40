# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 (continued) — A vision transformer as a product of factors
#
# > The previous chapter wrote LayerNorm and self-attention as linear maps at one input. With them
# > a whole transformer is again a product of factors, and everything the course built (spectra,
# > entropy, NTK, Hessian, exponent profiles) applies: this chapter walks a small vision
# > transformer into factors, compares it with the chapter 02 CNN over seeds, and follows the
# > spectra along its residual stream.
#
# **Learning objectives.** After this chapter you can
#
# 1. walk a small vision transformer into factors with `operator_product` and check the product
#    against autograd;
# 2. measure a transformer's input-Jacobian spectra, spectral entropy, attribution condition
#    number, NTK and Hessian conditioning against a CNN of comparable accuracy, with the spread
#    over seeds;
# 3. follow the spectra along the residual stream through depth and fit their power laws.
#
# **Prerequisites.** Chapter 10 (`10_transformer_operators`: LayerNorm's Jacobian, attention's
# value and pattern paths); chapters 02 (spectral entropy), 03 (NTK), 04 (Hessian), 06 (the
# attribution condition number) and 08–09 (power-law fits and exponent profiles).
#
# **Approximate time:** about 45 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 241 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 5; the last cell prints your run's time.
#
# > **Sources and choices.** The factorisation of attention is this course's (previous chapter).
# > The power-law fits of §3 are those of chapters 08–09, after *Geometric and Spectral Alignment
# > for Deep Neural Network I* (arXiv 2605.02108). The architecture is the vision transformer of
# > *An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale*, with the
# > attention of *Attention Is All You Need*; the tiny sizes, the mean pooling over tokens and the
# > temperature $\tau$ are choices made to run on a laptop. The chapter trains on MNIST when its
# > files are present and on the bundled 8×8 digits otherwise; its first output says which.

# %% tags=["nbval-ignore-output"]
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import spectral_lab as sl
from spectral_lab import exercises as ex
from spectral_lab import residual_stream, transformer_models, transformer_ops

_chapter_start = time.perf_counter()  # the last cell prints the run time

sl.plots.use_style()
torch.manual_seed(0)
D64 = torch.float64
t_start = time.perf_counter()

# Parameters (the header states how long the defaults took, measured).
N_TRAIN = 4000  # MNIST training subset (ignored for the digits, which have 1437)
SEEDS = (0, 1, 2)  # independent trainings of each model for the comparison
N_EVAL = 64  # test points for the Jacobian summaries
N_NTK = 32  # test points for the NTK Gram
N_HESS = 128  # training points for the Hessian

try:
    train_set = sl.load_dataset("mnist", "train").subset(N_TRAIN, seed=0)
    test_set = sl.load_dataset("mnist", "test").subset(2000, seed=0)
    DATA, note = "mnist", f"real MNIST files, a {N_TRAIN}-image training subset, 2000 test images"
except sl.DatasetNotFoundError as err:
    train_set, test_set = sl.load_dataset("digits", "train"), sl.load_dataset("digits", "test")
    DATA, note = (
        "digits",
        f"the bundled 8x8 digits, because MNIST was not found ({str(err)[:90]}...)",
    )
print(f"DATA: this chapter ran on {DATA} ({note}); every number below is for it.")
print(f"torch {torch.__version__}, spectral_lab {sl.__version__}")
IMAGE = train_set.input_shape[-1]
PATCH = IMAGE // 4  # 4 x 4 = 16 tokens on both data sets (patch 2 on 8x8, patch 7 on 28x28)
x_eval, y_eval = test_set.subset(N_EVAL, seed=1).tensors()
x_eval = x_eval.double()


# %% [markdown]
# ## 1. A vision transformer as a product of factors
#
# `transformer_models.VisionTransformer` cuts the image into $4\times 4 = 16$ patches, maps each
# linearly to a token of width 32, adds learned positions, applies encoder blocks (attention and
# MLP sublayers with GELU, each with a residual connection, pre-LN $x + F(\mathrm{LN}(x))$ or post-LN
# $\mathrm{LN}(x + F(x))$), a final LayerNorm, the mean over tokens and a linear read-out.
# `sl.operator_product` walks it (the transformer layers' factors live in `transformer_ops`): the
# patch embedding is one fixed linear factor, a pre-LN sublayer is the residual factor
# $I + J_F\,\mathrm{LN}'$, a post-LN one is $\mathrm{LN}'(I+J_F)$, pooling is
# $(\mathbf 1^\top/n)\otimes I$.


# %%
def make_vit(seed, norm_first=True, depth=2, temperature=1.0):
    """The chapter's vision transformer: 16 tokens of width 32, two heads."""
    torch.manual_seed(seed)
    return transformer_models.VisionTransformer(
        image_size=IMAGE, patch_size=PATCH, dim=32, depth=depth, heads=2,
        norm_first=norm_first, temperature=temperature,
    )  # fmt: skip


vits = {nf: make_vit(0, norm_first=nf).double().eval() for nf in (True, False)}
x0 = x_eval[0]
op = sl.operator_product(vits[True], x0)
print("factors (pre-LN):", op.names)
print("factors (post-LN):", sl.operator_product(vits[False], x0).names)

# %% tags=["nbval-check-output"]
# check: the product of the factors equals autograd's input Jacobian to 1e-10 (float64), for pre-LN
# and post-LN blocks, at three test inputs each
walk_ok = {}
for nf, vit in vits.items():
    walk_ok[nf] = all(
        torch.allclose(
            sl.operator_product(vit, xi).dense(),
            torch.autograd.functional.jacobian(lambda v, vit=vit: vit(v[None])[0], xi).reshape(
                10, -1
            ),
            atol=1e-10,
        )
        for xi in x_eval[:3]
    )
print("product = autograd, pre-LN:", walk_ok[True], "| post-LN:", walk_ok[False])
assert all(walk_ok.values())

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** Multiply out the factors: from the pre-LN product `op` at `x0` (`op.dense()`),
# compute the singular values `sv_vit` of the ViT's input Jacobian (descending) and its spectral
# entropy `se_vit` (energy normalisation, nats) with `sl.singular_values` and `sl.spectral_entropy`.

# %% tags=["exercise"]
sv_vit = ...  # (10,) singular values of the product, descending
se_vit = ...  # float: its spectral entropy (nats, energy normalisation)


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_1():
    J_op = op.dense()
    return sl.singular_values(J_op), float(sl.spectral_entropy(J_op))


# %% tags=["nbval-check-output"]
# check exercise 1 against numpy's SVD of autograd's Jacobian and the entropy formula written out
J_ag = torch.autograd.functional.jacobian(lambda v: vits[True](v[None])[0], x0).reshape(10, -1)
sv_ref = np.linalg.svd(J_ag.numpy(), compute_uv=False)
p_ref = sv_ref**2 / (sv_ref**2).sum()
se_ref = float(-(p_ref * np.log(p_ref)).sum())
judge_1 = ex.close((sv_ref, se_ref), rtol=1e-8, names=("sv_vit", "se_vit"))
ex.check(1, (sv_vit, se_vit), judge_1, solution=_solution_1())

# %% [markdown]
# **A transformer written elsewhere.** The walk is not tied to `transformer_models`. torchvision's
# `VisionTransformer` (random weights, no download; here 2 blocks of width 32 on a
# $3\times 32\times 32$ image) writes its encoder blocks with its own `forward` around
# `nn.MultiheadAttention`. `operator_product` captures that forward with `torch.fx`: the
# LayerNorms, the attention layers (value path + pattern path) and the MLP weights keep their
# factors, the two sums $x + F(\mathrm{LN}(x))$ become residual factors `R`, and only the
# reshapes it has no name for — the patch `permute`, the class token's `cat`, the `getitem` that
# reads the class token — become generic factors `G` (their own Jacobians, through autograd). The
# same call works on timm's and Hugging Face's transformers (at the embedding); where their
# attention is a fused kernel it is a generic factor too.

# %% tags=["nbval-check-output"]
# check: torchvision's ViT, random init: structured attention factors, product == autograd
from torchvision.models import VisionTransformer as TorchvisionViT

torch.manual_seed(0)
tv_vit = TorchvisionViT(
    image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
    num_classes=10,
).double().eval()  # fmt: skip
x_rgb = torch.randn(3, 32, 32, dtype=D64)
op_tv = sl.operator_product(tv_vit, x_rgb)
print(op_tv)
print(
    "residual sublayers:", [(f.name, f.branch.names) for f in op_tv.factors if f.kind == "residual"]
)
print("generic factors:", [f.what for f in op_tv.generic_factors()])
for f in transformer_ops.attention_factors(op_tv):
    print(
        f"{f.name}: ||value|| = {f.value.spectral_norm():.3g}, ||pattern|| = {f.pattern.spectral_norm():.3g}"
    )
J_tv = torch.autograd.functional.jacobian(lambda v: tv_vit(v[None])[0], x_rgb).reshape(10, -1)
tv_ok = bool((op_tv.dense() - J_tv).abs().max() <= 1e-10 * J_tv.abs().max())
print("torchvision ViT: product == autograd Jacobian:", tv_ok)
assert tv_ok and len(transformer_ops.attention_factors(op_tv)) == 2

# %% [markdown]
# ## 2. A transformer against the chapter 02 CNN
#
# We train the vision transformer (pre-LN, two blocks) and the small CNN of chapter 02
# (`SmallCNN(1, 10, channels=(8, 16), pool="max")`, Adam, learning rate $3\cdot 10^{-3}$, batch 64,
# 6 epochs, as there) for each of three seeds, then measure in float64, on the same points:
#
# * accuracy on the test set;
# * the spectral entropy $SE$ of the input Jacobian $J_f(x)\in\mathbb R^{10\times d}$ (energy
#   normalisation, nats; mean over test points), as in chapter 02;
# * the attribution condition number $\kappa_{attr}(x) = \sigma_1/\operatorname{median}_k\sigma_k$
#   of the same Jacobian (median over test points), as in chapter 06;
# * $\lambda_{\max}(H)$, the top eigenvalue of the cross-entropy loss Hessian on training points
#   (Lanczos), as in chapter 04;
# * the condition number $\lambda_{\max}(K)/\lambda_{\min}(K)$ of the scalar empirical NTK Gram
#   $K_{ij} = \operatorname{tr} J_\theta(x_i) J_\theta(x_j)^\top$ on test points, as in chapter 03.
#
# The transformer gets more epochs (it learns more slowly from scratch). The CNN keeps chapter 02's
# recipe on the digits; on the MNIST subset it reaches a higher accuracy than this small ViT after
# six epochs, so there it is trained for one epoch, which brings the two to comparable accuracy.
# The accuracies are printed next to each other so that "comparable" is a measured statement.

# %% tags=["nbval-ignore-output"]
VIT_EPOCHS = 20 if DATA == "digits" else 10
CNN_EPOCHS = 6 if DATA == "digits" else 1
x_hess, y_hess = train_set.subset(N_HESS, seed=2).tensors()


def make_cnn(seed):
    """The chapter 02 CNN."""
    torch.manual_seed(seed)
    return sl.SmallCNN(1, 10, image_size=IMAGE, channels=(8, 16), pool="max")


def measure(model):
    """Accuracy and the four spectral summaries of a trained model (float64)."""
    acc = sl.evaluate(model, test_set)[1]
    m = model.double().eval()
    J = sl.input_jacobian(m, x_eval)
    jacobians.setdefault(type(model).__name__, J)  # the first seed's, for the figure below
    K = sl.ntk_gram(m, x_eval[:N_NTK])
    ev = torch.linalg.eigvalsh(K)
    lam = sl.hessian_eigs(m, (x_hess.double(), y_hess), loss="cross_entropy", k=1, tol=1e-4)
    return {
        "accuracy": acc,
        "SE (nats)": float(sl.spectral_entropy(J).mean()),
        "kappa_attr": float(sl.attribution.attribution_condition_number(J).median()),
        "lambda_max(H)": float(lam.eigenvalues[0]),
        "kappa(NTK)": float(ev[-1] / ev[0]),
    }


rows, trained, jacobians = {"ViT": [], "CNN": []}, {}, {}
for seed in SEEDS:
    for arch, make, epochs in (("ViT", make_vit, VIT_EPOCHS), ("CNN", make_cnn, CNN_EPOCHS)):
        model = make(seed)
        sl.train(model, train_set, epochs=epochs, lr=3e-3, batch_size=64, seed=seed, progress=False)
        rows[arch].append(measure(model))
        trained[arch, seed] = model
print(f"trained {2 * len(SEEDS)} models in {time.perf_counter() - t_start:.0f} s")

# %%
keys = list(rows["ViT"][0])
stats = {
    arch: {k: (np.mean([r[k] for r in rs]), np.std([r[k] for r in rs], ddof=1)) for k in keys}
    for arch, rs in rows.items()
}
print(
    f"{DATA}: mean ± sd over seeds {SEEDS}  (ViT {VIT_EPOCHS} epochs, CNN {CNN_EPOCHS} epoch{'s' if CNN_EPOCHS > 1 else ''})"
)
print(f"{'':16s}" + "".join(f"{k:>20s}" for k in keys))
for arch in rows:
    print(
        f"{arch:16s}"
        + "".join(f"{stats[arch][k][0]:>12.4g} ± {stats[arch][k][1]:<5.2g}" for k in keys)
    )
print(
    f"{'ratio ViT / CNN':16s}"
    + "".join(f"{stats['ViT'][k][0] / stats['CNN'][k][0]:>20.3g}" for k in keys)
)
print("per seed:")
for arch in rows:
    for seed, r in zip(SEEDS, rows[arch]):
        print(f"  {arch} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in r.items()))

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
for lab, Jn in jacobians.items():
    s_n = sl.singular_values(Jn)
    axes[0].semilogy(
        range(1, 11), (s_n / s_n[:, :1]).median(0).values.numpy(), "o-", ms=3, label=lab
    )
    axes[1].hist(sl.spectral_entropy(Jn).numpy(), bins=20, alpha=0.6, label=lab)
axes[0].set(
    xlabel="rank k", ylabel=r"median $\sigma_k/\sigma_1$", title="input-Jacobian spectra (seed 0)"
)
axes[1].axvline(math.log(10), color="0.4", ls="--")
axes[1].set(xlabel="SE (nats, E2)", ylabel="test points", title="spectral entropy (seed 0)")
axes[0].legend(), axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# The table and the figure above are measurements on this data, these sizes and three seeds (the
# figure shows the first seed); the spread in the table is the standard deviation over seeds. Read
# each row against that spread before reading anything into a difference: a ratio far from 1 with
# non-overlapping seeds is a difference of these two trained models, not a law about transformers.
# The cell below prints, for each quantity, whether the ranges over seeds overlap.

# %% tags=["nbval-ignore-output"]
for k in keys:
    lo = {a: min(r[k] for r in rows[a]) for a in rows}
    hi = {a: max(r[k] for r in rows[a]) for a in rows}
    sep = lo["ViT"] > hi["CNN"] or lo["CNN"] > hi["ViT"]
    print(
        f"{k:14s} ViT [{lo['ViT']:.4g}, {hi['ViT']:.4g}]  CNN [{lo['CNN']:.4g}, {hi['CNN']:.4g}]  "
        f"{'separated' if sep else 'overlapping'} over the seeds"
    )

# %% [markdown]
# **Where the Jacobian of the trained transformer comes from.** The trained ViT's factors at one
# test input: the LayerNorm gains $1/\sigma_t$ across tokens, and for each attention layer the
# norms of its value and pattern paths.

# %%
vit0 = trained["ViT", 0]


def all_factors(product):
    """Every factor of a product, the factors inside residual branches included, in order."""
    for f in product.factors:
        yield f
        if isinstance(f, sl.operators.ResidualFactor):
            yield from all_factors(f.branch)


for f in all_factors(transformer_ops.transformer_operator_product(vit0, x0)):
    if isinstance(f, transformer_ops.LayerNormFactor):
        gain = (1 / f.sigma).flatten()
        print(
            f"{f.name:12s} LayerNorm gain 1/sigma_t over tokens: {gain.min():.3g} .. {gain.max():.3g}"
        )
    if isinstance(f, transformer_ops.AttentionFactor):
        nv = float(torch.linalg.matrix_norm(f.value.dense(), 2))
        npat = float(torch.linalg.matrix_norm(f.pattern.dense(), 2))
        print(
            f"{f.name:12s} attention ||value||_2 = {nv:.3g}, ||pattern||_2 = {npat:.3g} (ratio {npat / nv:.2f})"
        )

# %% [markdown]
# ## 3. The residual stream through depth
#
# The residual stream is the token sequence every block reads and writes: $D = n\,d$ numbers
# ($16\times 32 = 512$ here). Block $k$ maps it by $X\mapsto B_k(X)$ with Jacobian $J_k$, a
# $D\times D$ matrix: $I + J_F\,\mathrm{LN}'$ for a pre-LN sublayer, $\mathrm{LN}'(I + J_F)$ for a
# post-LN one. `residual_stream.residual_stream_spectra` returns each $J_k$, the partial products
# $J_k\cdots J_1$, their singular values, spectral entropies and effective ranks, and the
# chapter 08 exponent profile of the chain $J_1,\dots,J_L$ (the ML power-law exponent of each
# normalised $J_k^\top J_k$, with its fit quality). We take a deeper, four-block ViT, trained
# briefly, pre-LN and post-LN.

# %% tags=["nbval-ignore-output"]
deep = {}
for nf in (True, False):
    m = make_vit(0, norm_first=nf, depth=4)
    sl.train(m, train_set, epochs=VIT_EPOCHS // 2, lr=3e-3, batch_size=64, seed=0, progress=False)
    deep[nf] = m.double().eval()
    print(
        f"{'pre' if nf else 'post'}-LN, depth 4: test accuracy {sl.evaluate(deep[nf], test_set)[1]:.3f}"
    )

# %%
rs = {nf: residual_stream.residual_stream_spectra(deep[nf], x0) for nf in deep}
fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
for nf, r in rs.items():
    lab = "pre-LN" if nf else "post-LN"
    axes[0].plot(range(1, r.L + 1), r.partial_erank.numpy(), "o-", ms=4, label=lab)
    axes[1].plot(range(1, r.L + 1), r.profile.alpha, "o-", ms=4, label=lab)
    axes[2].semilogy((r.partial_sv[-1] / r.partial_sv[-1][0]).numpy(), label=lab)
axes[0].set(
    xlabel="block k (sublayers)",
    ylabel=r"$e^{SE}$ of $J_k\cdots J_1$",
    title="effective rank through depth",
)
axes[1].set(
    xlabel="block k", ylabel=r"$\hat\alpha_k$ (ML)", title="power-law exponent of each $J_k$"
)
axes[2].set(xlabel="rank", ylabel=r"$\sigma_i/\sigma_1$", title="spectrum of the whole stream map")
for a in axes:
    a.legend()
fig.tight_layout()
plt.show()
for nf, r in rs.items():
    lab = "pre-LN " if nf else "post-LN"
    print(
        f"{lab} ||J_k - I||_2 = {np.round(r.deviation.numpy(), 2)}, exponents {np.round(r.profile.alpha, 3)}, "
        f"judged power laws: {r.profile.power_law.mean():.0%}, relative residuals "
        f"{np.round([f.relative_residual for f in r.profile.fits], 2)}"
    )

# %% tags=["nbval-check-output"]
# check: (a) each block J_k equals autograd's Jacobian of that block on the stream, and the partial
# products multiply out to autograd's Jacobian from the first block's input to the last block's
# output; (b) a post-LN block has (at least) 2 n numerically zero singular values, one pair per
# token (the LayerNorm null space; eps > 0 leaves them at ~eps / sigma^3, not exactly 0), and hence
# ||J_k - I||_2 >= 1 - (that small singular value): a post-LN block is never near the identity
stream_ok = {}
for nf, m in deep.items():
    layers = list(m.layers)
    first = next(
        i for i, m_ in enumerate(layers) if isinstance(m_, transformer_models.EncoderBlock)
    )
    with torch.no_grad():
        h0 = m.layers[:first](x0[None])[0]
    enc = torch.nn.Sequential(*layers[first : first + len(m.blocks)])
    J_all = torch.autograd.functional.jacobian(lambda h, enc=enc: enc(h[None])[0], h0).reshape(
        h0.numel(), h0.numel()
    )
    stream_ok[nf] = torch.allclose(rs[nf].partial[-1], J_all, atol=1e-9)
n_tokens = deep[True].n_tokens
post_sv = rs[False].block_sv
nullity = [int((s < 1e-3 * s[0]).sum()) for s in post_sv]
post_ok = all(k >= 2 * n_tokens for k in nullity) and bool((rs[False].deviation >= 1 - 1e-3).all())
print("stream product = autograd, pre-LN:", stream_ok[True], "| post-LN:", stream_ok[False])
print("every post-LN block has >= 2 n tiny singular values and ||J_k - I|| >= 1:", post_ok)
assert all(stream_ok.values()) and post_ok

# %% [markdown]
# **Reading the profile.** The cell before the check prints, per block, $\|J_k - I\|_2$, the ML
# exponent, the share of blocks that chapter 08's verdict accepts as power laws and their relative
# residuals. Compare $\|J_k - I\|_2$ with 1: a pre-LN block is $I$ plus a branch, and only a branch
# of norm well below 1 makes it a near-identity factor in the sense of chapters 08–09; a post-LN
# block is never one (the check above). Where the verdict rejects a power law, the exponent is a
# chart coordinate of the spectrum, not a fitted law — exactly as for the residual networks of
# chapter 09.

# %% [markdown]
# **Exercise 2 (think).** In §3, why can a post-LN block never be close to the identity on the
# residual stream, whatever its weights, while a pre-LN block with a small branch is? What does
# that mean for the exponent profile of chapter 09?

# %% [markdown] tags=["solution"]
# <details><summary>Answer (click to show)</summary>
#
# A post-LN block ends with a LayerNorm, whose Jacobian kills two directions per token
# (up to $\varepsilon/\sigma^3$) and rescales the rest by $\gamma/\sigma_t$: its Jacobian has
# $2n$ (near-)zero singular values, so $\|J_k - I\|_2 \ge 1$ (apply it to a null vector). A pre-LN
# block is $I + J_F\,\mathrm{LN}'$, which tends to $I$ as the branch shrinks: the near-identity
# factors of chapters 08–09, with small exponents. Post-LN factors are far from the orbit's
# near-identity regime; their exponents measure the LayerNorm projection as much as the learned
# weights (compare the two profiles printed in §3).
#
# </details>

# %% [markdown]
# ## 4. Play: temperature, depth, pre- or post-LN
#
# A random-initialised ViT on the first test image: move the temperature $\tau$ of every attention
# layer, the depth and the normalisation placement, and watch the effective rank of the partial
# products through depth, and each attention layer's value and pattern norms.

# %% tags=["nbval-ignore-output"]
sl.widgets.transformer_explorer(x0, image_size=IMAGE, patch_size=PATCH)

# %% [markdown]
# ## Summary
#
# * With LayerNorm and attention factors a transformer is again a product of linear maps at each
#   input, and its product equals autograd's Jacobian, pre-LN and post-LN (and for torchvision's
#   ViT, through `torch.fx`).
# * The comparison with the chapter 02 CNN is a measurement: the table in §2 prints it with the
#   spread over seeds.
# * Along the residual stream, pre-LN blocks are $I$ plus a branch; post-LN blocks carry the
#   LayerNorm's null space into every block.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 10 (continued) ran in {time.perf_counter() - _chapter_start:.0f} s")
