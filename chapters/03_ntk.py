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
# > Jacobian, and its Gram matrix over the training set — the Neural Tangent Kernel — decides which
# > parts of the targets a network learns first, and which parts of the label noise it swallows.
#
# **Learning objectives.** After this chapter you can
#
# 1. compute per-sample parameter Jacobians $J_\theta(x) = \partial f_\theta(x)/\partial\theta \in
#    \mathbb{R}^{C\times p}$ and products $J v$, $J^\top u$ without forming $J$;
# 2. build the empirical NTK $K_\theta(x_i, x_j) = \operatorname{tr}\big(J_\theta(x_i) J_\theta(x_j)^\top\big)$
#    and its block version $\tilde K$, by two different algorithms, and check that they agree;
# 3. read the NTK spectrum and see how it concentrates as the network gets wider;
# 4. predict the training residual of gradient descent from $\tilde K$ alone,
#    $r_k = (I - \eta \tilde K)^k r_0$, and compare with real training;
# 5. explain which eigen-directions of label noise are fitted first, with a bound you can check.
#
# **Prerequisites.** Chapters 01 and 02; eigenvalues of a symmetric positive semi-definite matrix;
# gradient descent on a least-squares loss.
#
# **Approximate time:** 60 minutes (the cells ran in 16 s, one chapter at a time, on this project's
# 2-core Linux test server shared with other jobs, load average 8; the last cell prints your run's
# time).

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

# %% tags=["nbval-check-output"]
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
# an independent Jacobian: torch.autograd.functional.jacobian of theta -> f_theta(xs), flattened
names = [k for k, _ in clf.named_parameters()]
shapes = [q.shape for _, q in clf.named_parameters()]
theta_c = torch.nn.utils.parameters_to_vector(clf.parameters()).detach()


def f_of_theta(t):
    ps = dict(
        zip(names, [c.reshape(sh) for c, sh in zip(t.split([sh.numel() for sh in shapes]), shapes)])
    )
    return torch.func.functional_call(clf, ps, (xs,)).reshape(-1)


J_ref = torch.autograd.functional.jacobian(f_of_theta, theta_c)  # (12 * 3, p)
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
# ## 4. Linearised training: predicting gradient descent from the kernel
#
# Train with the loss $\tfrac12 \sum_i \|f(x_i) - y_i\|^2$ and write $r = f(X) - Y \in \mathbb{R}^{NC}$
# for the residual. For the *linearised* model
# $f_{\text{lin}}(x;\theta) = f(x;\theta_0) + J_\theta(x)(\theta - \theta_0)$ a gradient step
# $\theta \leftarrow \theta - \eta J^\top r$ changes the residual by $-\eta J J^\top r$, so
#
# $$ r_{k+1} = (I - \eta \tilde K)\, r_k, \qquad r_k = (I - \eta\tilde K)^k r_0
#    = \sum_i (1 - \eta\lambda_i)^k \langle u_i, r_0\rangle\, u_i . $$
#
# Each eigen-direction $u_i$ of $\tilde K$ decays at its own rate $|1-\eta\lambda_i|$: fast for large
# $\lambda_i$, slowly for small ones, and not at all — it *grows* — if $\eta > 2/\lambda_{\max}$.
# A wide network stays close to its linearisation during training, so the same formula predicts
# its real training curve. `sl.ntk.linearized_residuals` evaluates the formula;
# `sl.ntk.gd_residuals` runs real gradient descent (on a copy of the model), on the network or on its
# linearisation.

# %%
torch.manual_seed(0)
wide = sl.MLP(16, 1, width=512, depth=2, activation="tanh").to(DT)
K = sl.ntk.block_to_matrix(sl.ntk_gram(wide, x, kind="block"))  # C = 1: block = scalar
lam, U = torch.linalg.eigh(K)
lam_max = lam[-1].item()
eta = 1.0 / lam_max
steps = 200
actual = sl.ntk.gd_residuals(wide, x, y, eta, steps)
predicted = sl.ntk.linearized_residuals(K, actual[0], eta, steps)
linear = sl.ntk.gd_residuals(wide, x, y, eta, steps, linearized=True)

fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
sl.plots.plot_residuals(predicted, actual, ax=axes[0], title="width 512: predicted vs trained")
coeff_a = (actual @ U).abs()  # residual in the eigenbasis of K, per step
for i, c in zip([39, 30, 20, 10, 0], range(5)):
    axes[1].semilogy(
        coeff_a[:, i].numpy(), color=f"C{c}", label=rf"$\lambda_{{{40 - i}}}$ = {lam[i]:.2g}"
    )
axes[1].set(
    xlabel="step k", ylabel=r"$|\langle u_i, r_k\rangle|$", title="residual per eigen-direction"
)
axes[1].legend(fontsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# **Check.** Gradient descent on the linearised model reproduces
# $(I-\eta\tilde K)^k r_0$ to rounding error; the wide network follows it closely; and the threshold
# $\eta = 2/\lambda_{\max}$ is sharp: at $1.95/\lambda_{\max}$ the residual shrinks, at
# $2.05/\lambda_{\max}$ it blows up along $u_{\max}$.

# %% tags=["nbval-check-output"]
exact = (linear - predicted).abs().max().item() < 1e-10
close = ((actual - predicted).norm(dim=1) / actual[0].norm()).max().item() < 0.05
below = sl.ntk.gd_residuals(wide, x, y, 1.95 / lam_max, 200, linearized=True)
above = sl.ntk.gd_residuals(wide, x, y, 2.05 / lam_max, 200, linearized=True)
stable = bool(below[-1].norm() < below[0].norm())
diverges = bool(above[-1].norm() > 100 * above[0].norm())
print("linearised GD == (I - eta K)^k r0 to 1e-10:", exact)
print("wide network within 5% of the prediction:", close)
print("eta = 1.95/lambda_max converges:", stable, "| eta = 2.05/lambda_max diverges:", diverges)
assert exact and close and stable and diverges

# %% [markdown]
# **Exercise 2.** Predict from the spectrum of $\tilde K$ alone how many gradient-descent steps the
# width-512 network of §4 needs, at $\eta = 1.5/\lambda_{\max}$, until $\|r_k\| < 10^{-2}\|r_0\|$.
# Complete `predicted_steps`: in the eigenbasis, $\|r_k\|^2 = \sum_i (1 - \eta\lambda_i)^{2k} c_i^2$ with
# $c = U^\top r_0$. Then compare with real training.


# %% tags=["exercise"]
def predicted_steps(K, r0, eta, tol=1e-2, max_steps=5000):
    """First k with ||(I - eta K)^k r0|| < tol ||r0||, or None within max_steps."""
    raise NotImplementedError("complete predicted_steps: eigendecompose K, then scan k")


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_2(K, r0, eta, tol=1e-2, max_steps=5000):
    """First k with ||(I - eta K)^k r0|| < tol ||r0||, or None within max_steps."""
    lam_k, U_k = torch.linalg.eigh(K)
    c = U_k.T @ r0
    for k in range(max_steps + 1):
        if ((1 - eta * lam_k) ** (2 * k) * c**2).sum().sqrt() < tol * r0.norm():
            return k
    return None


# %% tags=["nbval-check-output"]
# check exercise 2: iterate r <- r - eta K r in numpy, then compare with real gradient descent
eta15 = 1.5 / lam_max
r0 = actual[0]
K_np, r_np, k_ref = K.numpy(), r0.numpy().copy(), 0
while np.linalg.norm(r_np) >= 1e-2 * np.linalg.norm(r0.numpy()):
    r_np, k_ref = r_np - eta15 * K_np @ r_np, k_ref + 1
real = sl.ntk.gd_residuals(wide, x, y, eta15, k_ref + 20).norm(dim=1) / r0.norm()
k_real = int(torch.nonzero(real < 1e-2)[0]) if bool((real < 1e-2).any()) else None
judge_2 = lambda f: ex.equal(k_ref, names="predicted_steps(K, r0, eta15)")(f(K, r0, eta15))  # noqa: E731
ex.check(2, predicted_steps, judge_2, solution=_solution_2)
k_pred = _solution_2(K, r0, eta15)

# %% tags=["nbval-ignore-output"]
# what this run measured
print(f"predicted {k_pred} steps; real gradient descent needs {k_real}")

# %% [markdown]
# ## 5. Label noise: which directions are learned first
#
# Perturb the labels by $\Delta y$. Because the dynamics are linear in $Y$, the fit on the training
# set after $k$ steps moves by
#
# $$ \Delta f_k = \big(I - (I - \eta\tilde K)^k\big)\,\Delta y, \qquad
#    \langle u_i, \Delta f_k\rangle = \underbrace{\big(1 - (1-\eta\lambda_i)^k\big)}_{\text{filter } \phi_k(\lambda_i)}
#    \langle u_i, \Delta y\rangle . $$
#
# Noise along the top eigen-directions is fitted almost at once; noise along small-eigenvalue
# directions is fitted only after $\sim 1/(\eta\lambda_i)$ steps. Early stopping is a spectral
# filter. In norm, $\|\Delta f_k\| \le \min(1, k\eta\lambda_{\max})\,\|\Delta y\|$ for
# $\eta \le 1/\lambda_{\max}$. We check the filter on the real wide network: train on $y$ and on
# $y + \Delta y$ and compare the two fits.

# %%
gen = torch.Generator().manual_seed(1)
dy = 0.3 * torch.randn(40, 1, generator=gen, dtype=DT)
k_stop = 20
fit_clean = sl.ntk.gd_residuals(wide, x, y, eta, k_stop)[-1] + y.reshape(-1)
fit_noisy = sl.ntk.gd_residuals(wide, x, y + dy, eta, k_stop)[-1] + (y + dy).reshape(-1)
df_actual = fit_noisy - fit_clean
df_pred = sl.ntk.label_noise_response(K, dy.reshape(-1), eta, k_stop)

fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
ranks = np.arange(40, 0, -1)
for kk in (1, 10, 100, 1000):
    axes[0].semilogx(
        lam.clamp_min(1e-12).numpy(),
        sl.ntk.label_noise_filter(lam, eta, kk).numpy(),
        "o-",
        ms=3,
        label=f"k = {kk}",
    )
axes[0].set(
    xlabel=r"eigenvalue $\lambda_i$ of $\tilde K$",
    ylabel=r"fraction fitted $\phi_k(\lambda_i)$",
    title="label noise fitted after k steps",
)
axes[0].legend()
axes[1].plot((U.T @ df_pred).abs().numpy()[::-1], "o-", ms=3, label="predicted")
axes[1].plot((U.T @ df_actual).abs().numpy()[::-1], "x", ms=5, label="trained network")
axes[1].plot(
    (U.T @ dy.reshape(-1)).abs().numpy()[::-1],
    color="0.7",
    lw=1,
    label=r"$|\langle u_i, \Delta y\rangle|$",
)
axes[1].set(
    xlabel="eigen-direction (largest first)",
    ylabel=r"$|\langle u_i, \Delta f_k\rangle|$",
    yscale="log",
    title=f"effect of label noise after {k_stop} steps",
)
axes[1].legend()
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
ok_pred = ((df_actual - df_pred).norm() / df_pred.norm()).item() < 0.05
bounds = [
    sl.ntk.label_noise_response(K, dy.reshape(-1), eta, kk).norm().item()
    <= min(1.0, kk * eta * lam_max) * dy.norm().item() + 1e-12
    for kk in (1, 3, 10, 100)
]
filt = sl.ntk.label_noise_filter(lam, eta, k_stop)
top_first = bool(filt[-1] > 0.99 and filt[0] < 0.1 and (filt.diff() >= 0).all())
print("trained network's response to label noise matches the NTK prediction (5%):", ok_pred)
print("||df_k|| <= min(1, k eta lambda_max) ||dy|| at k = 1, 3, 10, 100:", all(bounds))
print("top direction fitted (>99%), bottom one not yet (<10%), monotone in lambda:", top_first)
assert ok_pred and all(bounds) and top_first

# %% [markdown]
# **Exercise 3.** Using `sl.ntk.label_noise_filter`, find the first step $k$ at which at least half of
# the noise along the 30th-largest eigen-direction of $\tilde K$ (§5, step `eta`) has been fitted,
# and compare it with the small-step estimate $\ln 2/(\eta\lambda_{30})$.

# %% tags=["exercise"]
k_half = ...  # int


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_3():
    return next(k for k in range(1, 100_000) if sl.ntk.label_noise_filter(lam, eta, k)[-30] >= 0.5)


# %% tags=["nbval-check-output"]
# check exercise 3 with the closed form: 1 - (1 - eta lam)^k >= 1/2  <=>  k >= ln 2 / -ln(1 - eta lam)
lam30 = np.linalg.eigvalsh(K.numpy())[-30]
k_closed = int(np.ceil(np.log(2) / -np.log1p(-eta * lam30)))
solution_3 = _solution_3()
ex.check(3, k_half, ex.equal(k_closed, names="k_half"), solution=solution_3)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print(
    f"k_half = {solution_3}; closed form {k_closed}; small-step estimate ln2/(eta lam_30) = "
    f"{np.log(2) / (eta * lam30):.1f}"
)

# %% [markdown]
# **Exercise 4 (think).** Repeat §4 with width 32 and compare the predicted and real residuals. Why
# does the gap grow? (Hint: compute the NTK again *after* training and compare.)

# %% [markdown] tags=["solution"]
# <details><summary>Answer (click to show)</summary>
#
# The prediction assumes the kernel stays fixed. The kernel moves during training by a
# relative amount that shrinks with width (roughly like $1/\sqrt{\text{width}}$); at width 32 the NTK
# after training differs visibly from the initial one, so the linear prediction drifts from the truth.
#
# </details>

# %% [markdown]
# ## 6. Play: width, depth, activation
#
# The explorer builds an MLP on 20 of the training points, shows its NTK spectrum (left) and compares
# the predicted residual $(I - \eta\tilde K)^k r_0$ with real gradient descent at
# $\eta = 0.5/\lambda_{\max}$ (right). Narrow the network: the prediction drifts from the truth,
# because the kernel itself moves during training. Try `relu` and `identity` (a deep linear
# network): how does the spectrum's decay change?

# %% tags=["nbval-ignore-output"]
sl.widgets.ntk_explorer(x[:20], y[:20], steps=150)

# %% [markdown]
# ## Summary
#
# * The parameter Jacobian $J_\theta(x)$ says how the output moves when the weights move; `sl`
#   computes it, and the products $Jv$, $J^\top u$ without forming it.
# * The NTK is its Gram matrix over the data, $\tilde K = J_\theta J_\theta^\top$ (block) or its trace over
#   outputs (scalar); two algorithms and autograd agree.
# * Wider networks have NTK spectra that concentrate around their mean.
# * Linearised gradient descent is $r_k = (I - \eta\tilde K)^k r_0$: stable for $\eta < 2/\lambda_{\max}$,
#   and a wide network trains almost exactly so.
# * Label noise along eigen-direction $i$ is fitted as $1 - (1 - \eta\lambda_i)^k$: large-eigenvalue
#   directions first, which is why early stopping filters noise.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 03 ran in {time.perf_counter() - _chapter_start:.0f} s")
