# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 (continued) — Singular values through depth, and the product of norms
#
# > The previous chapter wrote $J_f(x)$ as a product of weights and gates. This one watches the
# > singular values of the partial products spread through depth, and turns the product into the
# > simplest bound on the worst-case amplification: the product of the factors' norms.
#
# **Learning objectives.** After this chapter you can
#
# 1. watch singular values spread through depth, and explain the role of the initialisation gain,
#    the width, the depth and the activation;
# 2. bound the worst-case amplification $\|J_f(x)\|_2$ by the product of factor norms, and measure
#    how loose that bound is.
#
# **Prerequisites.** Chapter 01 (`01_operator_products`: `sl.operator_product`, its factors and
# gates); the operator norm $\|A\|_2 = \sigma_1(A)$.
#
# **Approximate time:** about 35 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 50 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 10; the last cell prints your run's time.

# %% tags=["nbval-ignore-output"]
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab import exercises as ex

_chapter_start = time.perf_counter()  # the last cell prints the run time

sl.plots.use_style()
torch.manual_seed(0)
D64 = torch.float64
print(f"torch {torch.__version__}, spectral_lab {sl.__version__}")

# %% [markdown]
# The digits and the random model zoo of the previous chapter (every model family of the course,
# in float64), rebuilt with the same seeds.

# %%
train_set = sl.load_dataset("digits", split="train")
test_set = sl.load_dataset("digits", split="test")
x_test, y_test = test_set.tensors()
x64 = x_test[:8].double()
torch.manual_seed(1)
zoo = {
    f"MLP {a}": sl.MLP(64, 10, width=32, depth=4, activation=a)
    for a in ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu"]
}
zoo["SmallCNN max pool"] = sl.SmallCNN(1, 10, 8, (4, 8), pool="max")
zoo["SmallCNN avg pool"] = sl.SmallCNN(1, 10, 8, (4, 8), pool="avg", activation="silu")
zoo["ResidualMLP"] = sl.ResidualMLP(64, 10, width=32, depth=4, hidden=16)
zoo["ConvResNet"] = sl.ConvResNet(1, 10, 8, channels=4, depth=3, pool=4)
zoo = {name: m.double().eval() for name, m in zoo.items()}
print(f"{len(zoo)} random models, {len(x64)} test digits")

# %% [markdown]
# ## 1. Singular values through depth
#
# The *partial products* $P_k = F_k \cdots F_1$ show how the map builds up layer by layer.
# `op.partial_spectra()` returns the singular values of each. For a linear network with Gaussian
# weights $W_l \sim \mathcal{N}(0, g^2/n_{l-1})$, every layer multiplies the expected squared norm of
# a vector by $g^2 n_l / n_{l-1}$, so
#
# $$\mathbb{E}\, \|P_l\|_F^2 = n_l\, g^{2l} \qquad(\text{widths after the first layer equal}),$$
#
# which **grows or decays geometrically** with depth unless $g = 1$. But even at $g = 1$ the
# *shape* of the spectrum changes: products of random matrices get more and more ill-conditioned,
# $\sigma_1/\sigma_r$ grows with depth. Nonlinear gates change both effects: ReLU switches half the
# units off, so the critical gain becomes $\sqrt 2$ (He initialisation); tanh saturates for large
# gains.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
for ax, gain in zip(axes, [0.5, 1.0, 2.0]):
    torch.manual_seed(0)
    m = sl.MLP(64, 10, width=64, depth=6, activation="identity", gain=gain).double()
    sl.plots.plot_depth_spectra(
        sl.operator_product(m, x64[0]).partial_spectra(), ax=ax, title=f"linear MLP, gain {gain}"
    )
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
# check: E||P_l||_F^2 = n_l g^(2l) for linear Gaussian networks (Monte Carlo over 40 networks)
ratios = {}
for gain in (0.7, 1.0, 1.5):
    acc = torch.zeros(5, dtype=D64)
    for seed in range(40):
        torch.manual_seed(seed)
        m = sl.MLP(64, 10, width=48, depth=5, activation="identity", gain=gain).double()
        parts = sl.operator_product(m, x64[0]).partial_products()
        widths = [48, 48, 48, 48, 10]
        acc += torch.tensor(
            [
                float((p**2).sum()) / (n * gain ** (2 * (i + 1)))
                for i, (p, n) in enumerate(zip(parts, widths))
            ],
            dtype=D64,
        )
    ratios[gain] = acc / 40
ok = all(bool(((r - 1).abs() < 0.15).all()) for r in ratios.values())
print("E||P_l||_F^2 / (n_l g^(2l)) within 15% of 1 at every depth and gain:", ok)
assert ok

# %% [markdown]
# Now nonlinear networks. Each curve below is a partial product after a weight factor
# (dark = shallow, light = deep), at one digit. Compare how fast the top singular value moves and how
# quickly the spectrum steepens.

# %%
fig, axes = plt.subplots(2, 3, figsize=(13, 6.4))
for row, act in zip(axes, ["relu", "tanh"]):
    for ax, gain in zip(row, [0.5, 2**0.5, 3.0]):
        torch.manual_seed(0)
        m = sl.MLP(64, 10, width=64, depth=8, activation=act, gain=gain).double()
        op_m = sl.operator_product(m, x64[0])
        sp = op_m.partial_spectra(kinds=("weight",))
        sl.plots.plot_depth_spectra(sp, ax=ax, title=f"{act}, gain {gain:.2g}")
        if act == "relu":
            on = np.mean([float(f.diag.mean()) for f in op_m.factors if f.kind == "gate"])
            print(f"relu, gain {gain:.2g}: fraction of units on, mean over the gates: {on:.2f}")
fig.tight_layout()
plt.show()

# %% [markdown]
# What to read off: the ReLU curves end early because each gate switches off a large fraction of
# the units (the cell prints the fraction that stays on), so the partial products are
# rank-deficient (numerical zeros are not drawn). With ReLU the top singular value is roughly
# stable through depth at the He gain
# $\sqrt 2$ and decays (explodes) below (above) it. With tanh, large gains saturate many units
# (gates near 0), which cuts off directions: the bottom of the spectrum falls away — the product
# becomes effectively low rank.
#
# Widths matter too: the condition number of a product of $L$ random $n \times n$ Gaussian matrices
# grows with $L$ but more slowly for larger $n$. The figure shows $\sigma_1 / \sigma_r$ of the
# partial products (linear networks, averaged over 10 seeds).

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
for width in (16, 64, 256):
    conds = []
    for seed in range(10):
        torch.manual_seed(seed)
        m = sl.MLP(64, 10, width=width, depth=8, activation="identity").double()
        sp = sl.operator_product(m, x64[0]).partial_spectra()
        conds.append([float(sl.condition_number(s, kind="singular")) for _, s in sp[:-1]])
    ax.plot(range(1, 8), np.exp(np.log(conds).mean(0)), "o-", label=f"width {width}")
ax.set(
    xlabel="depth l",
    ylabel=r"$\sigma_1/\sigma_r$ of $P_l$",
    yscale="log",
    title="products of random matrices grow ill-conditioned",
)
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Play: the depth explorer
#
# Sliders: initialisation gain, width, depth and activation of a random MLP (float64) taking the
# first test digit. Left: spectra of the partial products after each weight; right: $\sigma_1$
# and $\sigma_1/\sigma_r$ through depth. Try: ReLU at gain 1 vs $\sqrt 2$; tanh at gain 4; depth 12
# with width 8 vs 256.

# %% tags=["nbval-ignore-output"]
sl.widgets.depth_spectra_explorer(x64)

# %% [markdown]
# ## 3. The worst-case bound as a product of norms
#
# Submultiplicativity of the operator norm turns the product into a bound:
#
# $$\|J_f(x)\|_2 \;\le\; \prod_k \|F_k(x)\|_2 \;\le\; \prod_k \sup_x \|F_k(x)\|_2
# = (\sup|\phi'|)^{L-1} \prod_l \|W_l\|_2 \quad\text{(MLP)},$$
#
# and, integrating along the segment from $x$ to $x + \delta$,
# $\|f(x+\delta) - f(x)\| \le \sup_{t\in[0,1]} \|J_f(x + t\delta)\|_2\, \|\delta\|$. For ReLU and tanh
# $\sup|\phi'| = 1$, for sigmoid $1/4$; max pooling has norm 1 (non-overlapping windows), a $k\times k$
# average pool $1/k$, a residual block at most $1 + s\,\|J_g\|$. `sl.sensitivity.norm_bounds(op)` returns all three
# numbers. How loose is the chain? We check it on random *and trained* models.

# %%
trained = {}
for name, make in {
    "MLP relu": lambda: sl.MLP(64, 10, width=64, depth=3, gain=2**0.5),
    "SmallCNN": lambda: sl.SmallCNN(1, 10, 8, (8, 16), pool="max"),
    "ResidualMLP": lambda: sl.ResidualMLP(64, 10, width=32, depth=4, residual_scale=0.5),
}.items():
    torch.manual_seed(0)
    m = make()
    sl.train(m, train_set, epochs=4, lr=3e-3, batch_size=64, seed=0, progress=False)
    trained[name] = m.double().eval()
    print(f"{name:12s} test accuracy {sl.evaluate(trained[name], test_set.subset(360))[1]:.2f}")

# %% tags=["nbval-check-output"]
# check: ||J(x)||_2 <= prod ||F_k(x)||_2 <= prod sup ||F_k|| on random and trained models,
# and ||f(x+delta) - f(x)|| <= 1.01 sup_t ||J(x + t delta)||_2 ||delta|| (256-point grid of t)
models_to_check = {
    **{f"random {k}": v for k, v in zoo.items()},
    **{f"trained {k}": v for k, v in trained.items()},
}
slack, chain_ok, path_ok = {}, {}, {}
for name, m in models_to_check.items():
    bounds = [sl.sensitivity.norm_bounds(sl.operator_product(m, xi)) for xi in x64[:4]]
    chain_ok[name] = all(b.holds() for b in bounds)
    slack[name] = float(np.mean([b.product_at_x / b.jacobian_norm for b in bounds]))
    if "random MLP" in name and "relu" not in name and "tanh" not in name:
        continue  # the path check below is the slower part: keep it to a representative subset
    delta = 0.5 * torch.randn(2, 1, 8, 8, dtype=D64)
    ts = torch.linspace(0, 1, 256, dtype=D64)
    ok = []
    for xi, di in zip(x64[:2], delta):
        path = xi[None] + ts[:, None, None, None] * di
        sup = float(torch.linalg.matrix_norm(sl.input_jacobian(m, path), ord=2).max())
        with torch.no_grad():
            change = float((m((xi + di)[None]) - m(xi[None])).norm())
        ok.append(change <= 1.01 * sup * float(di.norm()))
    path_ok[name] = all(ok)
print(
    f"norm chain holds on {sum(chain_ok.values())} of {len(chain_ok)} models; "
    f"path bound holds on {sum(path_ok.values())} of the {len(path_ok)} models path-checked"
)
assert all(chain_ok.values()), [k for k, v in chain_ok.items() if not v]
assert all(path_ok.values()), [k for k, v in path_ok.items() if not v]

# %%
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.barh(list(slack), list(slack.values()))
ax.set(
    xscale="log",
    xlabel=r"$\prod_k\|F_k(x)\|_2 \,/\, \|J_f(x)\|_2$ (mean over 4 digits)",
    title="how loose the product-of-norms bound is",
)
plt.show()
for group in ("random", "trained"):
    v = [x for k, x in slack.items() if k.startswith(group)]
    print(
        f"{group:8s} models: product of norms / ||J||_2 from {min(v):.3g} to {max(v):.3g} "
        f"(median {np.median(v):.3g})"
    )

# %% [markdown]
# The product of norms is loose (the cell above prints by how much, for the random and the trained
# models): the top singular directions of consecutive factors do not line up. This is the
# motivation for chapter 02: look at the *whole spectrum* of the product, not only at a bound on its
# largest singular value.

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** For the trained ReLU MLP (`trained["MLP relu"]`), what fraction of the hidden units
# is on, on average over the first 100 test digits, in each hidden layer? Read it from the gates of
# `sl.operator_product` (factors of kind `"gate"`, whose `diag` holds $\phi'(z)$).

# %% tags=["exercise"]
x_hundred = x_test[:100].double()
frac_on = ...  # list of floats, one per hidden layer, in order


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_1():
    gates = [
        [f.diag for f in sl.operator_product(trained["MLP relu"], xi).factors if f.kind == "gate"]
        for xi in x_hundred
    ]
    return [
        torch.stack([g[layer] for g in gates]).gt(0).double().mean().item()
        for layer in range(len(gates[0]))
    ]


# %% tags=["nbval-check-output"]
# check exercise 1 independently: record the ReLU outputs with forward hooks and count positives
acts = []
hooks = [
    mod.register_forward_hook(lambda mod, inp, out: acts.append(out.detach()))
    for mod in trained["MLP relu"].modules()
    if isinstance(mod, nn.ReLU)
]
with torch.no_grad():
    trained["MLP relu"](x_hundred)
for hk in hooks:
    hk.remove()
ref_frac = [a.gt(0).double().mean().item() for a in acts]
solution_1 = _solution_1()
ex.check(1, frac_on, ex.close(ref_frac, rtol=0, atol=1e-12, names="frac_on"), solution=solution_1)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print("fraction of units on per hidden layer:", [round(f, 3) for f in solution_1])

# %% [markdown]
# ## Summary
#
# * Singular values spread through depth at a rate set by the gain, the width and the activation.
# * $\|J_f(x)\|_2 \le \prod_k \|F_k(x)\|_2$ always holds and is loose, because the top directions of
#   consecutive factors do not line up: look at the whole spectrum (chapter 02).

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 01 (continued) ran in {time.perf_counter() - _chapter_start:.0f} s")
