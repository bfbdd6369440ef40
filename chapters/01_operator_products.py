# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — A network is a product of linear operators
#
# > At any input $x$, a ReLU, tanh or GELU network is *locally* a matrix: the product of its
# > weight matrices and of diagonal "gates" that record which units are on. Everything later in the
# > course — spectra, entropy, stability, attribution — is a statement about this product. Its
# > sequel, `01_operator_products_depth`, follows the product's singular values through depth.
#
# **Learning objectives.** After this chapter you can
#
# 1. derive $J_f(x) = W_L D_{L-1}(x) W_{L-1} \cdots D_1(x) W_1$ from the chain rule, and say why
#    biases do not appear;
# 2. read a gate $D_l(x) = \operatorname{diag}(\phi'(z_l(x)))$ as "which units are on, and how much";
# 3. build the product for MLPs, CNNs (convolutions and pooling as linear maps) and residual
#    networks with `sl.operator_product`, and check it against autograd to $10^{-10}$.
#
# **Prerequisites.** Chapter 00; the chain rule for vector functions; matrix products.
#
# **Approximate time:** about 40 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 27 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 10; the last cell prints your run's time.

# %% tags=["nbval-ignore-output"]
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import spectral_lab as sl
from spectral_lab import exercises as ex

_chapter_start = time.perf_counter()  # the last cell prints the run time

sl.plots.use_style()
torch.manual_seed(0)
D64 = torch.float64
print(f"torch {torch.__version__}, spectral_lab {sl.__version__}")

# %% [markdown]
# ## 1. From the chain rule to a product
#
# Take a multilayer perceptron with pre-activations $z_l = W_l h_{l-1} + b_l$, activations
# $h_l = \phi(z_l)$, input $h_0 = x$ and logits $f = z_L$ (no nonlinearity at the output). A small
# change $\delta$ of the input propagates layer by layer:
#
# $$\delta z_1 = W_1 \delta, \qquad \delta h_l = \phi'(z_l) \odot \delta z_l = D_l(x)\, \delta z_l,
# \qquad \delta z_{l+1} = W_{l+1}\, \delta h_l .$$
#
# The bias $b_l$ shifts $z_l$ but does not multiply $\delta$: it enters only through the *point*
# $z_l(x)$ at which $\phi'$ is evaluated. Chaining the steps,
#
# $$J_f(x) = \frac{\partial f}{\partial x} = W_L\, D_{L-1}(x)\, W_{L-1}\, D_{L-2}(x) \cdots D_1(x)\, W_1
# \in \mathbb{R}^{C \times d}, \qquad D_l(x) = \operatorname{diag}\big(\phi'(z_l(x))\big).$$
#
# For smooth $\phi$ (tanh, sigmoid, GELU, SiLU) this holds at every $x$; for ReLU and leaky ReLU it
# holds *almost everywhere* — except on the kinks $z_{l,i}(x) = 0$, which random inputs avoid with
# probability one. The network is "a product of linear operators", but the gates depend on $x$:
# the product is different at every input.
#
# `sl.operator_product(model, x)` walks `model.layers` at one input and returns these factors in the
# order they act.

# %%
train_set = sl.load_dataset("digits", split="train")
test_set = sl.load_dataset("digits", split="test")
x_test, y_test = test_set.tensors()
x64 = x_test[:8].double()

mlp = sl.MLP(64, 10, width=32, depth=3, activation="relu", gain=2**0.5).double()
op = sl.operator_product(mlp, x64[0])
print(op)
for f in op.factors:
    print(f"  {f.name:3s} {f.kind:7s} {f.n_out:3d} x {f.n_in:3d}")

# %% [markdown]
# ## 2. Gates: which units are on
#
# For ReLU, $\phi'(z) \in \{0, 1\}$: $D_l(x)$ is a 0/1 diagonal that *switches units off*. The
# product keeps only the rows and columns of the weights that pass through active units, so each
# input sees its own sub-network. For tanh the gates are soft, $\phi'(z) = 1 - \tanh^2 z \in (0, 1]$:
# a unit is never fully off, only attenuated when saturated. The picture shows $D_1(x)$ for eight
# test digits (rows) and the 32 hidden units (columns).

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
for ax, act in zip(axes, ["relu", "tanh"]):
    torch.manual_seed(0)
    m = sl.MLP(64, 10, width=32, depth=3, activation=act).double()
    gates = torch.stack([sl.operator_product(m, xi).factors[1].diag for xi in x64])
    sl.plots.plot_gates(gates, ax=ax, title=f"{act}: $D_1(x)$ for 8 digits")
plt.show()

# %% [markdown]
# The closed-form derivatives behind the gates are in `sl.operators.activation_derivative`. For the six
# supported activations they agree with a central finite difference:

# %% tags=["nbval-check-output"]
# check: phi'(z) in closed form equals a central finite difference, for every activation
z = torch.linspace(-4, 4, 201, dtype=D64) + 1e-3  # stay off the ReLU kink at 0
deriv_ok = {}
for act in ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu"]:
    phi = sl.models.activation(act)
    fd = (phi(z + 1e-6) - phi(z - 1e-6)) / 2e-6
    deriv_ok[act] = bool(torch.allclose(sl.operators.activation_derivative(phi, z), fd, atol=1e-8))
print("closed-form phi' matches finite differences:", all(deriv_ok.values()))
assert all(deriv_ok.values()), deriv_ok

# %% [markdown]
# ## 3. Convolutions, pooling and residual blocks are factors too
#
# * A **convolution** is linear in its input, so it is a (huge, sparse, structured) matrix — the
#   "unrolled" convolution. `operator_product` keeps it *matrix-free*: `matvec` runs the
#   convolution without bias, `rmatvec` its transpose, and `.dense()` builds the explicit matrix for
#   small inputs.
# * **Max pooling** picks one entry per window: at $x$ it is a 0/1 *selection matrix* (one 1 per
#   row), chosen by where the maxima are — a gate of another kind. **Average pooling** is a fixed
#   averaging matrix. **Flatten** is the identity on flattened vectors.
# * A **residual block** $h \mapsto h + s\, g(h)$ has Jacobian $I + s\, J_g(h)$: one factor that is
#   itself "identity plus a product".

# %%
cnn = sl.SmallCNN(1, 10, image_size=8, channels=(4, 8), pool="max").double()
res = sl.ResidualMLP(64, 10, width=32, depth=3, residual_scale=0.5, activation="gelu").double()
for m in (cnn, res):
    print(sl.operator_product(m, x64[0]))
pool = sl.operator_product(cnn, x64[0]).factors[2]
print(
    f"{pool.name}: {pool.n_out} x {pool.n_in} selection matrix, row sums",
    pool.dense().sum(1).unique().tolist(),
)

# %% [markdown]
# **The main check.** For every model family of the course and every supported activation, in
# float64, the multiplied-out product equals the Jacobian that autograd computes independently
# (`torch.autograd.functional.jacobian`), to a relative error below $10^{-10}$ at several random
# inputs and several digits.


# %% tags=["nbval-check-output"]
# check: dense(product of factors) == autograd Jacobian, relative error < 1e-10
def autograd_jacobian(model, x):
    j = torch.autograd.functional.jacobian(lambda v: model(v[None])[0], x)
    return j.reshape(j.shape[0], -1)


torch.manual_seed(1)
zoo = {
    f"MLP {a}": sl.MLP(64, 10, width=32, depth=4, activation=a)
    for a in ["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu"]
}
zoo["SmallCNN max pool"] = sl.SmallCNN(1, 10, 8, (4, 8), pool="max")
zoo["SmallCNN avg pool"] = sl.SmallCNN(1, 10, 8, (4, 8), pool="avg", activation="silu")
zoo["ResidualMLP"] = sl.ResidualMLP(64, 10, width=32, depth=4, hidden=16)
zoo["ConvResNet"] = sl.ConvResNet(1, 10, 8, channels=4, depth=3, pool=4)
inputs = torch.cat([x64[:2], torch.randn(2, 1, 8, 8, dtype=D64)])


def rel_err(m, xi):
    ref = autograd_jacobian(m, xi)
    return float((sl.operator_product(m, xi).dense() - ref).norm() / ref.norm())


worst = {}
for name, m in zoo.items():
    m = m.double().eval()
    worst[name] = max(rel_err(m, xi) for xi in inputs)
for name, err in worst.items():
    print(f"{name:18s} product == autograd Jacobian:", err < 1e-10)
assert max(worst.values()) < 1e-10

# %% [markdown]
# A closed form to keep us honest: with the identity "activation", every gate is $I$ and the
# network is linear, so its Jacobian must be the plain weight product $W_3 W_2 W_1$ at every input.

# %% tags=["nbval-check-output"]
lin = sl.MLP(64, 10, width=32, depth=3, activation="identity").double()
W = [p.detach() for name, p in lin.named_parameters() if name.endswith("weight")]
lin_ok = all(
    torch.allclose(sl.operator_product(lin, xi).dense(), W[2] @ W[1] @ W[0], atol=1e-12)
    for xi in x64
)
print("linear network: Jacobian == W3 W2 W1 at every input:", lin_ok)
assert lin_ok

# %% [markdown]
# **A network written elsewhere.** Nothing above is special to the course's models. torchvision's
# ResNet-18 (random weights, no download) at one $3\times 32\times 32$ image walks into the same
# vocabulary: a stem `W1 B1 D1 P1` (convolution, BatchNorm in eval mode, ReLU gate, max pool), eight
# residual factors `R` $= D\,(J_{\text{shortcut}} + J_{\text{branch}})$, a pool and the read-out.
# A layer the library was never taught, or a custom `forward`, does not stop the walk:
# `operator_product` captures the forward's graph with `torch.fx` (known layers keep their factors,
# a concatenation of two paths becomes a merge factor `M`), and whatever is left becomes a generic
# factor `G` — that module's own Jacobian at its input, applied through autograd. SqueezeNet shows
# both: its "Fire" modules concatenate two convolution paths (`M`), and its max pools with
# `ceil_mode=True` have no walker (`G`). Both products equal autograd's Jacobian.

# %% tags=["nbval-check-output"]
# check: real torchvision models, random init; dense product == autograd Jacobian (float64)
from torchvision.models import resnet18, squeezenet1_1

torch.manual_seed(0)
x_img = torch.randn(3, 32, 32, dtype=D64)
real_nets = {"resnet18": resnet18(num_classes=10), "squeezenet1_1": squeezenet1_1(num_classes=10)}
real_ok = {}
for name, net in real_nets.items():
    net = net.double().eval()
    op_net = sl.operator_product(net, x_img)
    generic = sorted({f.what for f in op_net.generic_factors() if not f.name.startswith("M")})
    print(f"{name}: {len(op_net)} factors, {op_net.names[:6]} ...; generic: {generic}")
    J_net = autograd_jacobian(net, x_img)
    real_ok[name] = bool((op_net.dense() - J_net).abs().max() <= 1e-10 * J_net.abs().max())
r1 = sl.operator_product(real_nets["resnet18"], x_img).factors[4]
print(f"{r1.name} = D (I + branch), branch: {r1.branch.names}")
print("product == autograd Jacobian:", real_ok)
assert all(real_ok.values())

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** With zero biases (`bias=False`) a ReLU network is positively homogeneous:
# $f(\lambda x) = \lambda f(x)$ for $\lambda > 0$, and hence $J_f(\lambda x) = J_f(x)$. Show why on
# paper, then compute the dense products at $x$ and at $3x$ with `sl.operator_product`.

# %% tags=["exercise"]
torch.manual_seed(2)
mlp_nobias = sl.MLP(64, 10, width=32, depth=3, bias=False).double()
x_one = x64[0]
J_at_x = ...  # dense Jacobian (10 x 64) at x_one, from sl.operator_product
J_at_3x = ...  # the same at 3 * x_one


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
# ReLU(lambda z) = lambda ReLU(z) for lambda > 0, and without biases every layer commutes with the
# scaling; the gates depend only on signs, which do not change, so J(lambda x) = J(x).
def _solution_1():
    J_at_x = sl.operator_product(mlp_nobias, x_one).dense()
    J_at_3x = sl.operator_product(mlp_nobias, 3 * x_one).dense()
    return J_at_x, J_at_3x


# %% tags=["nbval-check-output"]
# check exercise 1 with autograd and the forward pass
ref_x = autograd_jacobian(mlp_nobias, x_one)
with torch.no_grad():
    homog = torch.allclose(mlp_nobias(3 * x_one[None]), 3 * mlp_nobias(x_one[None]))
print("f(3x) = 3 f(x):", homog)
assert homog
judge_1 = ex.close((ref_x, ref_x), rtol=0, atol=1e-12, names=("J_at_x", "J_at_3x"))
ex.check(1, (J_at_x, J_at_3x), judge_1, solution=_solution_1())

# %% [markdown]
# **Exercise 2.** A residual factor $I + sB$ with $\|B\|_2 = b$ has all its singular values in
# $[1 - sb,\, 1 + sb]$ (triangle inequality: $\|(I + sB)v\| \ge \|v\| - s\|Bv\|$). Complete
# `residual_sandwich(factor)` for a factor of kind `"residual"`: return
# `(1 - s*b, sigma_min, sigma_max, 1 + s*b)`, with `factor.scale` for $s$, `factor.branch.dense()`
# for $B$ and `factor.dense()` for $I + sB$. What does this say about deep residual networks with
# small $s$?


# %% tags=["exercise"]
def residual_sandwich(factor):
    raise NotImplementedError(
        "complete residual_sandwich: b from the branch, sigmas from the factor"
    )


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_2(factor):
    s_res = abs(factor.scale)
    b = sl.singular_values(factor.branch.dense())[0].item()
    sig = sl.singular_values(factor.dense())
    return 1 - s_res * b, sig[-1].item(), sig[0].item(), 1 + s_res * b


# With L blocks the product's singular values lie in [(1 - sb)^L, (1 + sb)^L]: for s ~ 1/L they stay
# bounded, so deep residual networks with small scales stay well conditioned (chapter 09).

# %% tags=["nbval-check-output"]
# check exercise 2 with numpy's SVD on every residual factor of a ResidualMLP with s = 0.1
torch.manual_seed(3)
res_small = sl.ResidualMLP(64, 10, width=32, depth=4, residual_scale=0.1).double()
res_factors = [
    f for xi in x64[:3] for f in sl.operator_product(res_small, xi).factors if f.kind == "residual"
]
sandwich_ref = []
for f in res_factors:
    sv = np.linalg.svd(f.dense().numpy(), compute_uv=False)
    sb = abs(f.scale) * np.linalg.svd(f.branch.dense().numpy(), compute_uv=False)[0]
    assert 1 - sb - 1e-12 <= sv[-1] and sv[0] <= 1 + sb + 1e-12  # the sandwich holds
    sandwich_ref.append((1 - sb, sv[-1], sv[0], 1 + sb))
judge_2 = lambda fn: ex.close(np.array(sandwich_ref), rtol=1e-8, names="residual_sandwich(f)")(  # noqa: E731
    np.array([fn(f) for f in res_factors])
)
ex.check(2, residual_sandwich, judge_2, solution=_solution_2)

# %% tags=["nbval-ignore-output"]
# what this run measured
print(f"1 - sb <= sigma_min <= sigma_max <= 1 + sb on all {len(res_factors)} residual factors")

# %% [markdown]
# **Exercise 3 (think).** Build `nn.Sequential(nn.Linear(64, 32), nn.ELU(), nn.Linear(32, 10))` and call
# `sl.operator_product` on it. ELU has no walker: which factor does it become, and is the product
# still exact? What would the library need to know about ELU to make it a gate $D$ with a data-free
# bound?

# %% [markdown] tags=["solution"]
# <details><summary>Answer (click to show)</summary>
#
# It becomes a generic factor `G1` (`op.generic_factors()`): ELU's own Jacobian at its input,
# applied through autograd, so the product is still exact — but it is an opaque matrix with no
# data-free bound (`sup_norm()` is infinite). A gate needs the activation's derivative,
# $\phi'(z) = 1$ for $z > 0$ and $\alpha e^{z}$ otherwise, to fill $D(x)$ (a walker registered with
# `register_walker`); and the worst-case bound of the sequel needs $\sup|\phi'| = \max(1, \alpha)$.
#
# </details>

# %% [markdown]
# ## Summary
#
# * At every input, $J_f(x) = W_L D_{L-1}(x) \cdots D_1(x) W_1$: weights times diagonal gates; biases
#   only choose *where* the gates are evaluated.
# * Convolutions, pooling and residual blocks are factors too; `sl.operator_product` builds the
#   product for every model of the course — and for models written elsewhere (torchvision's
#   ResNet-18, SqueezeNet; unknown layers become generic factors `G`) — and agrees with autograd to
#   $10^{-10}$.
# * Next, `01_operator_products_depth`: the product's singular values through depth.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 01 ran in {time.perf_counter() - _chapter_start:.0f} s")
