# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 — Attribution robustness
#
# > A saliency map is one row of the input Jacobian. When a small, invisible change of the input
# > redraws the map, the explanation is fragile. This chapter measures how fragile, and why the
# > Jacobian's spectrum (and, for ReLU networks, the activation margins) governs it. Its sequel,
# > `06_attribution_entropy`, asks how much the spectrum tells us per sample.
#
# **Learning objectives.** After this chapter you can
#
# 1. compute saliency, gradient × input, SmoothGrad and integrated-gradient maps of a batch in one
#    call, and check them against finite differences and a linear model;
# 2. measure how a map moves under input noise: relative change $\Delta_{grad}$, cosine distance,
#    top-$k$ overlap, and the Fréchet distance between clouds of clean and perturbed maps;
# 3. explain why the Jacobian's extreme singular directions, and for ReLU networks the activation
#    margins, govern that movement; compute the attribution condition number
#    $\kappa_{attr} = \sigma_1 / \operatorname{median}_k \sigma_k$.
#
# **Prerequisites.** Chapters 01 and 02 (input Jacobians, singular values, spectral entropy).
#
# **Approximate time:** about 50 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 38 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 8; the last cell prints your run's time.
#
# > **Sources and choices.** The claim tested in the sequel — per-sample spectral entropy and
# > attribution instability are weakly, seed-dependently correlated, with entropy bounding the
# > unstable regime — is from Katende, *A Unified Matrix-Spectral Framework for Stability and
# > Interpretability in Deep Learning* (arXiv 2602.01136). The paper does not give its metric
# > definitions, so every metric below ($\Delta_{grad}$, the Fréchet distance of attribution
# > clouds) is this course's choice, defined where it is used. The chapter trains on MNIST when
# > its files are present and on the bundled 8×8 digits otherwise; its first output says which.

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
t_start = time.perf_counter()

# Parameters (the header states how long the defaults took, measured).
N_TRAIN = 6000  # MNIST training subset (60000 for the full set)
EPOCHS = 4
N_EVAL = 400  # test points for the per-sample study
SEEDS = (0, 1, 2)  # independent trainings for the seed-dependence test
SCALES = (0.01, 0.03, 0.1)  # noise scales s, delta ~ N(0, s^2 I) in [0, 1] pixel units
N_DRAWS = 8  # noise draws per point

try:
    train_set = sl.load_dataset("mnist", "train").subset(N_TRAIN, seed=0)
    test_set = sl.load_dataset("mnist", "test")
    DATA, note = "mnist", f"real MNIST files, a {N_TRAIN}-image training subset"
except sl.DatasetNotFoundError as err:
    train_set, test_set = sl.load_dataset("digits", "train"), sl.load_dataset("digits", "test")
    DATA, note = (
        "digits",
        f"the bundled 8x8 digits, because MNIST was not found ({str(err)[:90]}...)",
    )
print(f"DATA: this chapter ran on {DATA} ({note}); every number below is for it.")
print(train_set, test_set, sep="\n")
x_eval, y_eval = test_set.subset(N_EVAL, seed=1).tensors()
D = int(np.prod(train_set.input_shape))

# %% [markdown]
# ## 1. What a saliency map is
#
# For a classifier $f:\mathbb{R}^d\to\mathbb{R}^C$ and the class $c(x)=\arg\max_k f_k(x)$ it
# predicts, the **saliency map** is the gradient of that logit,
#
# $$ a(x) = \nabla_x f_{c}(x) = J_f(x)^\top e_{c} \in \mathbb{R}^d , $$
#
# one row of the input Jacobian $J_f(x)$. Pixels with large $|a_i(x)|$ are those whose change
# moves the logit most. Three common variants: **gradient × input** $x \odot a(x)$;
# **SmoothGrad** $\frac1m\sum_j a(x+\epsilon_j)$, $\epsilon_j\sim\mathcal N(0,\sigma^2 I)$ (with
# the class fixed); **integrated gradients**
# $(x-x_0)\odot\int_0^1 \nabla f_c(x_0+t(x-x_0))\,dt$, whose entries add up to
# $f_c(x)-f_c(x_0)$ ("completeness").
#
# `sl.saliency` computes the map of a whole batch with one forward and one backward pass of
# $\sum_n f_{c_n}(x_n)$: in eval mode samples do not interact, so that single backward pass returns
# every sample's gradient.
#
# We train a ReLU MLP (the usual case) on MNIST.


# %%
def make_model(seed):
    torch.manual_seed(seed)
    return sl.MLP(D, 10, width=256, depth=3, activation="relu", gain=2**0.5)


model = make_model(0)
hist = sl.train(
    model, train_set, epochs=EPOCHS, lr=1e-3, test_data=test_set, seed=0, progress=False
)
print(hist)

# %% tags=["nbval-check-output"]
# check: saliency = the predicted class's row of the input Jacobian, and = finite differences
x6 = x_eval[:6]
a6 = sl.saliency(model, x6)
J6 = sl.input_jacobian(model, x6)
pred6 = model(x6).argmax(1)
row_ok = torch.allclose(a6.flatten(1), J6[torch.arange(6), pred6], atol=1e-6)
m64 = make_model(0).double()
m64.load_state_dict(model.state_dict())
x64 = x6.double()
v = torch.randn_like(x64)
h = 1e-6
fd = (m64(x64 + h * v) - m64(x64 - h * v)).gather(1, pred6[:, None])[:, 0] / (2 * h)
dir_deriv = (sl.saliency(m64, x64) * v).flatten(1).sum(1)
fd_ok = torch.allclose(fd, dir_deriv, rtol=1e-5, atol=1e-8)
print("saliency = row c(x) of J_f(x):", row_ok, "| matches finite differences:", fd_ok)
assert row_ok and fd_ok

# %% [markdown]
# The four methods side by side on a few test digits (magnitudes $|a|$; brighter = more
# important). Saliency of a ReLU network is noisy-looking; SmoothGrad averages that noise away;
# gradient × input and integrated gradients vanish on the black background, where $x=x_0=0$.

# %%
methods = ["saliency", "grad_x_input", "smoothgrad", "integrated_gradients"]
maps = {m: sl.attribution.attribution(model, x6, m) for m in methods}
fig, axes = plt.subplots(5, 6, figsize=(8, 7))
for j in range(6):
    axes[0, j].imshow(x6[j, 0], cmap="gray_r")
    axes[0, j].set_title(f"label {int(y_eval[j])}", fontsize=8)
    for i, m in enumerate(methods, start=1):
        axes[i, j].imshow(
            maps[m][j].detach().abs().sum(0), cmap="magma"
        )  # |a| summed over channels
for i, name in enumerate(["input"] + methods):
    axes[i, 0].set_ylabel(name.replace("_", " "), fontsize=8)
for ax in axes.ravel():
    ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
fig.tight_layout()
plt.show()

# %% [markdown]
# Two independent checks. A **linear** model $f(x)=Wx+b$ has the same saliency $W_c$ at every
# input — constant, hence perfectly stable; and integrated gradients are *complete*: their sum is
# the logit gap to the baseline.

# %% tags=["nbval-check-output"]
lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(D, 10)).double().eval()
xl = x_eval[:20].double()
W = lin[1].weight.detach()
const_ok = torch.allclose(sl.saliency(lin, xl, target=3).flatten(1), W[3].expand(20, -1))
inst_lin = sl.attribution_instability(lin, xl, scales=(0.1,), num_draws=2, target=3)
stable_ok = float(inst_lin.delta_grad.max()) < 1e-12
ig = sl.integrated_gradients(m64, x64, num_steps=128)
gap = (m64(x64) - m64(torch.zeros_like(x64))).gather(1, pred6[:, None])[:, 0]
complete_ok = torch.allclose(ig.flatten(1).sum(1), gap, rtol=2e-2, atol=1e-2)
print("linear model: constant saliency:", const_ok, "| zero instability:", stable_ok)
print("integrated gradients are complete:", complete_ok)
assert const_ok and stable_ok and complete_ok

# %% [markdown]
# ## 2. How a map moves under small input noise
#
# Add isotropic noise $\delta\sim\mathcal N(0,s^2 I)$ (in pixel units; $s=0.1$ is a faint grain)
# and keep the class fixed at the clean prediction, so that both maps explain the same output.
# Per sample (choices, not from the paper):
#
# * relative change $\Delta_{grad}(x,\delta) = \|a(x+\delta)-a(x)\| / \|a(x)\|$,
# * cosine distance $1-\cos(a(x+\delta), a(x))$,
# * top-10 % overlap: the share of the most important pixels that stay most important,
#
# each averaged over $m$ draws. And one number for the whole cloud of maps: the **Fréchet
# distance** between the Gaussians fitted to the clean maps $\{a(x_i)\}$ and the perturbed ones
# $\{a(x_i+\delta_i)\}$,
#
# $$ \mathrm{FD} = \|\mu_1-\mu_2\|^2 + \operatorname{tr}\!\big(\Sigma_1+\Sigma_2
#    - 2(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2}\big), $$
#
# reported **squared** (as FID is), on the top-32 principal components of the clean maps (with
# $n<d$ the full covariance is singular). The matrix square roots use symmetric
# eigendecompositions with negative round-off eigenvalues clipped to 0.

# %%
inst = sl.attribution_instability(model, x_eval, SCALES, num_draws=N_DRAWS, fd_pca_dim=32)
print(inst)
idx = torch.arange(8)
sl.plots.plot_saliency_maps(
    x_eval[idx],
    inst.clean[idx],
    inst.perturbed[-1, idx],
    titles=[f"Δ={float(inst.delta_grad[-1, i]):.2f}" for i in idx],
    row_labels=("input", "clean |a(x)|", f"|a(x+δ)|, s={SCALES[-1]}"),
)
plt.show()

# %% [markdown]
# Check the Fréchet distance against an independent computation: the closed form between two
# Gaussians with `scipy.linalg.sqrtm`, and the 1-D formula $(m_1-m_2)^2+(s_1-s_2)^2$.

# %% tags=["nbval-check-output"]
import scipy.linalg

rng = np.random.default_rng(0)
A_, B_ = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
c1, c2 = A_ @ A_.T + np.eye(5), B_ @ B_.T + np.eye(5)
mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
ref = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * np.real(scipy.linalg.sqrtm(c1 @ c2)))
ours = float(sl.attribution.gaussian_frechet_distance(*map(torch.tensor, (mu1, c1, mu2, c2))))
one_d = float(
    sl.attribution.gaussian_frechet_distance(
        torch.tensor([0.0]), torch.tensor([[1.0]]), torch.tensor([2.0]), torch.tensor([[9.0]])
    )
)
# and the scale law of squared FD: maps t times smaller give t^2 times the FD (on this run's maps)
t = 0.5
fd_t = float(sl.frechet_distance(t * inst.clean, t * inst.perturbed[-1], pca_dim=32))
fd_1 = float(sl.frechet_distance(inst.clean, inst.perturbed[-1], pca_dim=32))
scale_ok = fd_1 > 0 and abs(fd_t - t**2 * fd_1) <= 1e-9 * fd_1
print("FD matches scipy sqrtm:", abs(ours - ref) < 1e-8 * ref, "| 1-D closed form:", one_d == 8.0)
print(f"FD(tA, tB) = t^2 FD(A, B) at t = {t}:", scale_ok)
assert abs(ours - ref) < 1e-8 * ref and one_d == 8.0 and scale_ok

# %% tags=["nbval-ignore-output"]
# measured, not asserted: does instability grow with the noise scale on this run?
grows = bool((inst.delta_grad.mean(1).diff() > 0).all() and (inst.fd.diff() > 0).all())
print("(measured) mean Δgrad and FD grow with the noise scale:", grows)

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** Compute the Fréchet distance of §2 at the largest noise scale with unit-norm maps
# (`normalize=True`, `pca_dim=32`) and compare it with the raw one. What part of the raw FD measures
# the *size* of the maps rather than their shape?

# %% tags=["exercise"]
fd_unit = ...  # 0-d tensor or float: squared FD of unit-norm maps at SCALES[-1]


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
# The raw FD scales with ||a||^2 (section 2's check), so a model whose maps are merely smaller has a
# smaller FD; unit-norm maps remove that and compare shapes only (chapter 07 shows why it matters).
def _solution_1():
    return sl.frechet_distance(inst.clean, inst.perturbed[-1], normalize=True, pca_dim=32)


# %% tags=["nbval-check-output"]
# check exercise 1 with numpy and scipy: normalise rows, project on the clean cloud's top 32
# principal directions, fit Gaussians (n - 1 covariance), and take the Gaussian Frechet distance
def fd_numpy(A, B, k=32):
    A = A.reshape(len(A), -1).astype(float)
    B = B.reshape(len(B), -1).astype(float)
    A, B = (
        A / np.linalg.norm(A, axis=1, keepdims=True),
        B / np.linalg.norm(B, axis=1, keepdims=True),
    )
    mu = A.mean(0)
    P = np.linalg.svd(A - mu, full_matrices=False)[2][:k].T
    A, B = (A - mu) @ P, (B - mu) @ P
    cA, cB = np.cov(A.T), np.cov(B.T)
    cross = np.real(scipy.linalg.sqrtm(cA @ cB))
    return ((A.mean(0) - B.mean(0)) ** 2).sum() + np.trace(cA + cB - 2 * cross)


fd_ref = fd_numpy(inst.clean.numpy(), inst.perturbed[-1].numpy())
solution_1 = _solution_1()
judge_1 = ex.close(fd_ref, rtol=1e-6, atol=1e-12, names="fd_unit")
ex.check(1, fd_unit, judge_1, solution=solution_1)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print(f"s = {SCALES[-1]}: raw FD {float(inst.fd[-1]):.4g}, unit-norm FD {float(solution_1):.4g}")

# %% [markdown]
# ## 3. Why the Jacobian's extreme directions govern it
#
# The map lives in the row space of $J_f(x)=\sum_k\sigma_k u_k v_k^\top$:
# $a(x)=\sum_k \sigma_k\,(u_k)_c\, v_k$. When $\sigma_1$ dominates the rest, the map is essentially
# one input direction $v_1$, and whatever perturbs the top singular pair redraws the whole map. The
# **attribution condition number**
#
# $$ \kappa_{attr}(x) = \frac{\sigma_1(J_f(x))}{\operatorname{median}_k \sigma_k(J_f(x))} $$
#
# measures that dominance robustly (the smallest of the $\min(C,d)$ singular values can be near 0;
# the median is not). `kind="classical"` gives $\sigma_1/\sigma_r$ instead.
#
# For a **ReLU** network, however, the gradient is *piecewise constant*: $a(x+\delta)=a(x)$ exactly
# as long as no unit changes sign on the segment. The instability is then governed by
# how close pre-activations are to 0 — the activation margins — not by $\|J\|_2$ alone. That is why
# the spectrum can only *bound regimes* rather than order samples, which the sequel tests.

# %%
J = sl.input_jacobian(model, x_eval)
sig = sl.singular_values(J)
kappa = sl.attribution.attribution_condition_number(J)
se_bits = sl.spectral_entropy(J, base=2)
top_share = ((sig[:, 0] ** 2) / (sig**2).sum(1)).numpy()
print(
    f"median kappa_attr = {kappa.median():.2f}, median share of ||J||_F^2 in sigma_1^2 = "
    f"{np.median(top_share):.2f}"
)
tiny = sl.attribution_instability(model, x_eval, (1e-4,), num_draws=4)
print(
    f"share of samples whose saliency does not move at all for s=1e-4: "
    f"{float((tiny.delta_grad[0] == 0).float().mean()):.2f}"
)

fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
ax[0].hist(kappa.numpy(), bins=40, color=sl.plots.COLORS[0])
ax[0].set(xlabel=r"$\kappa_{attr}$", ylabel="samples", title="attribution condition number")
rho_k = sl.attribution.spearman(kappa, inst.delta_grad[1])
ax[1].scatter(kappa, inst.delta_grad[1], s=8, alpha=0.5)
ax[1].set(
    xlabel=r"$\kappa_{attr}$",
    ylabel=r"$\Delta_{grad}$ at s=0.03",
    xscale="log",
    title=f"Spearman ρ = {rho_k:+.2f}",
)
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
# check: kappa_attr against numpy's median of singular values; a flat spectrum gives kappa = 1
s_np = np.linalg.svd(J.double().numpy(), compute_uv=False)
kappa_ok = np.allclose(kappa.double().numpy(), s_np[:, 0] / np.median(s_np, axis=1), rtol=1e-4)
Q = torch.linalg.qr(torch.randn(D, 10, dtype=torch.float64)).Q.T
flat_ok = abs(float(sl.attribution.attribution_condition_number(Q[None])[0]) - 1.0) < 1e-12
print("kappa_attr matches numpy:", kappa_ok, "| flat spectrum -> 1:", flat_ok)
assert kappa_ok and flat_ok

# %% [markdown]
# **Exercise 2.** For a *smooth* network the map moves linearly with small noise: by Taylor's theorem
# $a(x + \delta) - a(x) \approx \nabla^2 f_c(x)\,\delta$, so $\Delta_{grad} \propto s$. Take a tanh network
# (an untrained `sl.MLP(D, 10, width=256, depth=3, activation="tanh")` with seed 0 will do:
# smoothness, not training, is the point) and compute the mean $\Delta_{grad}$ over the first 50
# evaluation points at $s = 10^{-4}$ and $2\cdot 10^{-4}$ (`sl.attribution_instability`, 8 draws, seed 0).
# Does it double? (ReLU networks give exactly 0 for most samples instead, §3.)

# %% tags=["exercise"]
torch.manual_seed(0)
tanh_net = sl.MLP(D, 10, width=256, depth=3, activation="tanh").double()
x50 = x_eval[:50].double()
dg_small = ...  # tensor of 2 numbers: mean Delta_grad at s = 1e-4 and 2e-4


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_2():
    return sl.attribution_instability(
        tanh_net, x50, (1e-4, 2e-4), num_draws=8, seed=0
    ).delta_grad.mean(1)


# %% tags=["nbval-check-output"]
# check exercise 2 with autograd alone: ||a(x + delta) - a(x)|| / ||a(x)|| for fresh Gaussian noise,
# the class fixed at the clean prediction; the two means must agree to sampling error, and double
def grad_of_class(net, z, c):
    z = z.clone().requires_grad_(True)
    return torch.autograd.grad(net(z).gather(1, c[:, None]).sum(), z)[0].flatten(1)


c50 = tanh_net(x50).argmax(1)
a50 = grad_of_class(tanh_net, x50, c50)
g_ref = torch.Generator().manual_seed(11)
own = []
for s_ in (1e-4, 2e-4):
    noisy = [x50 + s_ * torch.randn(x50.shape, generator=g_ref, dtype=x50.dtype) for _ in range(8)]
    rel = [(grad_of_class(tanh_net, z, c50) - a50).norm(dim=1) / a50.norm(dim=1) for z in noisy]
    own.append(torch.stack(rel).mean().item())


def judge_2(answer):
    close_2 = ex.close(np.array(own), rtol=0.2, atol=0, names="dg_small")(answer)
    if close_2 is not None:  # within 20% of autograd's own means (sampling error)
        return close_2
    got = np.asarray(torch.as_tensor(answer, dtype=torch.float64))
    if abs(got[1] / got[0] - 2) >= 0.1:
        return f"dg_small does not double from s = 1e-4 to 2e-4 (ratio {got[1] / got[0]:.3f})"
    return None


solution_2 = _solution_2()
ex.check(2, dg_small, judge_2, solution=solution_2)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print(
    f"mean Delta_grad: {solution_2[0]:.3e} at s = 1e-4, {solution_2[1]:.3e} at 2e-4 "
    f"(ratio {solution_2[1] / solution_2[0]:.3f}); own autograd: ratio {own[1] / own[0]:.3f}"
)

# %% [markdown]
# **Exercise 3 (think).** Repeat §2 with `method="smoothgrad"`. Would you expect SmoothGrad to be
# more stable than saliency by $\Delta_{grad}$? By FD? Why might the two disagree?

# %% [markdown] tags=["solution"]
# <details><summary>Answer (click to show)</summary>
#
# SmoothGrad maps are averages over noisy copies, hence smoother and usually more stable
# by $\Delta_{grad}$. FD compares whole clouds, including their spread, so it can move differently.
# Run `sl.attribution_instability(model, x_eval, SCALES, method="smoothgrad")` to see which happens.
#
# </details>

# %% [markdown]
# ## Summary
#
# * A saliency map is one row of the input Jacobian: $a(x) = J_f(x)^\top e_c$; one batched call gives
#   saliency, gradient × input, SmoothGrad and integrated gradients.
# * Instability is measured by the relative change $\Delta_{grad}$, the cosine distance, the top-$k$
#   overlap and the Fréchet distance between clouds of clean and perturbed maps.
# * The raw Fréchet distance scales with the square of the maps' size; unit-norm maps compare shape.
# * For ReLU networks small noise rarely moves the map at all (activation margins); the spectrum's
#   extreme directions govern how much it moves when it does.
# * Next, `06_attribution_entropy`: whether per-sample entropy predicts instability.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 06 ran in {time.perf_counter() - _chapter_start:.0f} s")
