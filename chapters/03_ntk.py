# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 — Parameter Jacobians and the Neural Tangent Kernel
#
# > Chapters 01–02 asked how the output moves when the *input* moves. Training moves the
# > *parameters*. The matrix that answers "how does $f$ move when $\theta$ moves" is the parameter
# > Jacobian, and its Gram matrix over the training set is the Neural Tangent Kernel. This chapter
# > computes both and reads the kernel's spectrum; its sequel, `03_ntk_dynamics`, uses the kernel
# > to predict gradient descent and the fate of label noise.
#
# **Learning objectives.** After this chapter you can
#
# 1. compute per-sample parameter Jacobians $J_\theta(x) = \partial f_\theta(x)/\partial\theta \in
#    \mathbb{R}^{C\times p}$ and products $J v$, $J^\top u$ without forming $J$;
# 2. build the empirical NTK $K_\theta(x_i, x_j) = \operatorname{tr}\big(J_\theta(x_i) J_\theta(x_j)^\top\big)$
#    and its block version $\tilde K$, by two different algorithms, and check that they agree;
# 3. read the NTK spectrum and see how it concentrates as the network gets wider.
#
# **Prerequisites.** Chapters 01 and 02; eigenvalues of a symmetric positive semi-definite matrix.
#
# **Approximate time:** about 35 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 18 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 9; the last cell prints your run's time.

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
DT = torch.float64  # float64 so that the checks below can use tight tolerances
print(f"torch {torch.__version__}, spectral_lab {sl.__version__}")

# %% [markdown]
# ## 1. The parameter Jacobian
#
# Stack all weights and biases of a network into one vector $\theta \in \mathbb{R}^p$. At an input
# $x$ the network is, to first order in a parameter change $\Delta$,
#
# $$ f_{\theta + \Delta}(x) = f_\theta(x) + J_\theta(x)\,\Delta + O(\|\Delta\|^2), \qquad
#    J_\theta(x) = \frac{\partial f_\theta(x)}{\partial \theta} \in \mathbb{R}^{C \times p}. $$
#
# For a layer $z_l = W_l h_{l-1}$ the block of $J_\theta$ belonging to $W_l$ is the Kronecker
# product $h_{l-1}(x)^\top \otimes G_l(x)$, with $G_l = \partial f / \partial z_l$ the product of the
# factors *above* layer $l$: the input Jacobian of chapter 01 reappears, cut at layer
# $l$. `sl.parameter_jacobian` computes all $N$ per-sample Jacobians with one vectorised call
# (`torch.func.vmap(jacrev(...))`); `sl.jacobians.parameter_jvp` and `sl.jacobians.parameter_vjp` compute $J v$
# (one forward-mode pass) and $J^\top u$ (one backward pass) without ever forming $J$.

# %%
data = sl.load_dataset("teacher_regression", n=200)
x_all, y_all = data.tensors()
x, y = x_all[:40].to(DT), y_all[:40].to(DT)  # 40 training points, d = 16 inputs, C = 1 output
model = sl.MLP(16, 1, width=256, depth=2, activation="tanh").to(DT)
J = sl.parameter_jacobian(model, x)
p = J.shape[2]
print(
    f"J has shape {tuple(J.shape)}: N = {J.shape[0]} samples, C = {J.shape[1]}, p = {p} parameters"
)

# %% [markdown]
# **Check.** Move the parameters by $\varepsilon\, v$ for a random unit $v$. The error of
# the linear prediction, $\|f_{\theta+\varepsilon v} - f_\theta - \varepsilon J v\|$, must shrink like
# $\varepsilon^2$: dividing by $\varepsilon^2$ should give roughly the same number for every
# $\varepsilon$. And the first-order change is bounded by the top singular value of the stacked
# Jacobian: $\|J v\| \le \sigma_1(J)$.

# %% tags=["nbval-check-output"]
theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
v = torch.randn(p, dtype=DT)
v /= v.norm()
f0 = model(x).detach()
Jv = sl.jacobians.parameter_jvp(model, x, v)
ratios = []
for eps in (1e-2, 1e-3, 1e-4):
    moved = sl.MLP(16, 1, width=256, depth=2, activation="tanh").to(DT)
    torch.nn.utils.vector_to_parameters(theta + eps * v, moved.parameters())
    ratios.append(((moved(x) - f0 - eps * Jv).norm() / eps**2).item())
second_order = max(ratios) / min(ratios) < 1.5
jv_matches = torch.allclose(Jv, J @ v, rtol=1e-10, atol=1e-12)
sigma1 = torch.linalg.matrix_norm(J.reshape(-1, p), ord=2)
bounded = bool(Jv.norm() <= sigma1 * (1 + 1e-12))
print("remainder scales like eps^2:", second_order)
print("J v (forward mode) equals the explicit product:", jv_matches)
print("||J v|| <= sigma_1(J) ||v||:", bounded)
assert second_order and jv_matches and bounded

# %% [markdown]
# ## 2. The Neural Tangent Kernel
#
# The Gram matrix of the per-sample Jacobians is the empirical NTK:
#
# $$ \tilde K_{ij} = J_\theta(x_i)\, J_\theta(x_j)^\top \in \mathbb{R}^{C\times C}, \qquad
#    K_{ij} = \operatorname{tr} \tilde K_{ij} = \langle J_\theta(x_i), J_\theta(x_j)\rangle_F . $$
#
# $K$ ($N\times N$) is the *scalar* NTK the paper reports; $\tilde K$ ($NC \times NC$ once flattened)
# is the *block* NTK that drives training. For $C = 1$ they coincide. `sl.ntk_gram` offers two
# algorithms (after the torch.func NTK recipes):
#
# * `method="jacobian"`: form the per-sample Jacobians and contract them — $(N_1+N_2)C$ backward
#   passes plus an $N_1 N_2 C p$ contraction, memory $(N_1+N_2) C p$;
# * `method="ntvp"`: NTK-vector products — one VJP gives a row of $J(x_j)$, one JVP over all
#   $x_i$ turns it into a column of the Gram; the Jacobians are never held.
#
# `method="auto"` picks the Jacobian route when its Jacobians fit in a memory budget. We check both
# on a small classifier with $C = 3$ outputs, where scalar and block kernels differ.

# %%
clf = sl.MLP(16, 3, width=32, depth=3, activation="tanh").to(DT)
xs = x[:12]
K_block_j = sl.ntk_gram(clf, xs, method="jacobian", kind="block")  # (12, 12, 3, 3)
K_block_v = sl.ntk_gram(clf, xs, method="ntvp", kind="block")
K_scalar = sl.ntk_gram(clf, xs)  # (12, 12)
Kt = sl.ntk.block_to_matrix(K_block_j)  # (36, 36)
same = torch.allclose(K_block_j, K_block_v, rtol=1e-10, atol=1e-10)
symmetric = torch.allclose(Kt, Kt.T) and torch.allclose(K_scalar, K_scalar.T)
psd = bool(torch.linalg.eigvalsh(Kt)[0] > -1e-10 * torch.linalg.eigvalsh(Kt)[-1])
trace_rel = torch.allclose(K_scalar, torch.diagonal(K_block_j, dim1=2, dim2=3).sum(-1))


# %%
# an independent Jacobian for the check below: torch.autograd.functional.jacobian of
# theta -> f_theta(xs), flattened
names = [k for k, _ in clf.named_parameters()]
shapes = [q.shape for _, q in clf.named_parameters()]
theta_c = torch.nn.utils.parameters_to_vector(clf.parameters()).detach()


def f_of_theta(t):
    ps = dict(
        zip(names, [c.reshape(sh) for c, sh in zip(t.split([sh.numel() for sh in shapes]), shapes)])
    )
    return torch.func.functional_call(clf, ps, (xs,)).reshape(-1)


J_ref = torch.autograd.functional.jacobian(f_of_theta, theta_c)  # (12 * 3, p)

# %% tags=["nbval-check-output"]
# check: the two algorithms agree; K is symmetric PSD; K_ij = tr K~_ij; and against the independent
# autograd Jacobian, tr K = ||J||_F^2 and K~ = J J^T
fro = torch.isclose(K_scalar.trace(), (J_ref**2).sum(), rtol=1e-10)
gram_ok = torch.allclose(Kt, J_ref @ J_ref.T, rtol=1e-10, atol=1e-10)
print("Jacobian contraction == NTK-vector products:", same)
print("symmetric:", symmetric, "| positive semi-definite:", psd)
print(
    "K_ij = tr K~_ij:",
    trace_rel,
    "| tr K = ||J||_F^2 with an independent autograd J:",
    bool(fro),
    "| K~ = J J^T (same J):",
    gram_ok,
)
assert same and symmetric and psd and trace_rel and fro and gram_ok

# %% [markdown]
# When the Gram would not fit in memory, `sl.ntk_eigs` finds its top eigenvalues by Lanczos on the
# operator $v \mapsto J(J^\top v)$ (one VJP and one JVP per product; see chapter 04 for Lanczos
# itself) — the same numbers as a dense eigendecomposition:

# %% tags=["nbval-check-output"]
dense = sl.ntk_eigs(clf, xs, k=5, kind="block", method="dense")
free = sl.ntk_eigs(clf, xs, k=5, kind="block", method="lanczos", tol=1e-10)
agree = torch.allclose(dense.eigenvalues, free.eigenvalues, rtol=1e-6)
print("matrix-free Lanczos == dense eigh (top 5):", agree)
assert agree

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** Compute the NTK of a fresh `sl.MLP(16, 3, width=64)` (float64, seed 4) on 30 inputs
# as a $30\times 30$ scalar kernel and as a $90\times 90$ block matrix. How many nonzero eigenvalues
# can each have? Compare their $\lambda_{\max}$.

# %% tags=["exercise"]
torch.manual_seed(4)
net3 = sl.MLP(16, 3, width=64).to(DT)
x30 = x_all[:30].to(DT)
K_scalar30 = ...  # (30, 30)
K_block90 = ...  # (90, 90): sl.ntk.block_to_matrix of the block kernel


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
# K is 30 x 30 (rank <= 30), K~ is 90 x 90 (rank <= min(90, p)). K_ij = tr K~_ij, so lambda_max(K)
# and lambda_max(K~) are related but not ordered in general: compare them numerically.
def _solution_1():
    return sl.ntk_gram(net3, x30), sl.ntk.block_to_matrix(sl.ntk_gram(net3, x30, kind="block"))


# %% tags=["nbval-check-output"]
# check exercise 1 against a dense parameter Jacobian from torch.func (no spectral_lab involved)
params3 = {k: q.detach() for k, q in net3.named_parameters()}
Jd = torch.func.jacrev(lambda ps: torch.func.functional_call(net3, ps, (x30,)))(params3)
Jd = torch.cat([j.reshape(30, 3, -1) for j in Jd.values()], dim=2)  # (30, 3, p)
K_block_ref = Jd.reshape(90, -1) @ Jd.reshape(90, -1).T
K_scalar_ref = torch.einsum("icp,jcp->ij", Jd, Jd)
judge_1 = ex.close(
    (K_scalar_ref, K_block_ref), rtol=1e-9, atol=1e-9, names=("K_scalar30", "K_block90")
)
ex.check(1, (K_scalar30, K_block90), judge_1, solution=_solution_1())

# %% tags=["nbval-ignore-output"]
# what this run measured
print(
    f"lambda_max: scalar {torch.linalg.eigvalsh(K_scalar_ref)[-1]:.4g}, "
    f"block {torch.linalg.eigvalsh(K_block_ref)[-1]:.4g}; p = {Jd.shape[2]} parameters"
)

# %% [markdown]
# ## 3. The spectrum, and how it changes with width
#
# With the usual initialisation $W \sim \mathcal N(0, 1/\text{fan-in})$ the last layer's
# contribution $\|h_{L-1}\|^2$ grows in proportion to the width, so we look at $K/\text{width}$.
# For each width we draw four random networks. Two things happen as the width grows: the spectrum
# settles to a fixed shape (one large eigenvalue, then a fast decay), and the four draws' kernels
# agree more and more — the law of large numbers behind the *infinite-width* NTK limit, which
# predicts a relative distance shrinking like $\text{width}^{-1/2}$ (the cell after the figure
# prints the measured slope).

# %%
widths = [32, 128, 512, 2048]
grams = {}
for w in widths:
    draws = []
    for seed in range(4):
        torch.manual_seed(seed)
        net = sl.MLP(16, 1, width=w, depth=2, activation="tanh").to(DT)
        draws.append(sl.ntk_gram(net, x) / w)
    grams[w] = torch.stack(draws)  # (4, 40, 40)

fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
for i, w in enumerate(widths):
    for j, Kd in enumerate(grams[w]):
        ev = torch.linalg.eigvalsh(Kd).flip(0).clamp_min(1e-12)
        axes[0].semilogy(ev.numpy(), color=f"C{i}", lw=1, label=f"width {w}" if j == 0 else None)
axes[0].set(
    xlabel="rank k",
    ylabel=r"$\lambda_k(K) / \mathrm{width}$",
    title="NTK spectrum, four draws per width",
)
axes[0].legend()
# relative distance of each draw's kernel from the mean kernel, averaged over the draws
spread = []
for w in widths:
    mean_K = grams[w].mean(0)
    spread.append(((grams[w] - mean_K).flatten(1).norm(dim=1) / mean_K.norm()).mean().item())
axes[1].loglog(widths, spread, "o-", label="measured")
axes[1].loglog(
    widths,
    spread[-1] * (np.array(widths) / widths[-1]) ** -0.5,
    "k--",
    lw=1,
    label=r"$\propto \mathrm{width}^{-1/2}$",
)
axes[1].set(
    xlabel="width", ylabel=r"$\|K_s - \bar K\|_F / \|\bar K\|_F$", title="draw-to-draw spread"
)
axes[1].legend()
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
concentrates = spread[-1] < 0.5 * spread[0] and all(a > b for a, b in zip(spread, spread[1:]))
slope = np.polyfit(np.log(widths), np.log(spread), 1)[0]
print("the NTK concentrates as width grows (spread decreases with width):", concentrates)
print(
    f"measured slope of log spread against log width: {slope:.2f} (law of large numbers: -0.5; "
    f"{len(widths)} widths, {len(grams[widths[0]])} draws each)"
)
assert concentrates

# %% [markdown]
# ## Summary
#
# * The parameter Jacobian $J_\theta(x)$ says how the output moves when the weights move; `sl`
#   computes it, and the products $Jv$, $J^\top u$ without forming it.
# * The NTK is its Gram matrix over the data, $\tilde K = J_\theta J_\theta^\top$ (block) or its trace over
#   outputs (scalar); two algorithms and autograd agree.
# * Wider networks have NTK spectra that concentrate around their mean.
# * Next, `03_ntk_dynamics`: what the kernel predicts about training.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 03 ran in {time.perf_counter() - _chapter_start:.0f} s")
