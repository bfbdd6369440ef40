# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 (continued) — The step-size rule, the edge of stability and Gauss–Newton
#
# > The previous chapter computed the sharpness $\lambda_{\max}(H)$, the trace and the spectral
# > density of a loss Hessian from products alone. This one watches the rule
# > $\eta < 2/\lambda_{\max}$ decide between convergence and divergence, watches training push the
# > sharpness up to exactly $2/\eta$, and splits $H$ into its Gauss–Newton part and the rest.
#
# **Learning objectives.** After this chapter you can
#
# 1. state and check the step-size rule $\eta < 2/\lambda_{\max}(H)$ on a quadratic and on a network;
# 2. recognise the *edge of stability*: sharpness rising to $2/\eta$ during training;
# 3. split $H$ into its Gauss–Newton part and a residual part, and relate the Gauss–Newton part to
#    the NTK of chapter 03: $\lambda_{\max}(H) = \lambda_{\max}(\tilde K)/n$ at an interpolating
#    solution.
#
# **Prerequisites.** Chapter 04 (`04_hessian`: Hessian-vector products, `hessian_eigs`,
# `hessian_density`); chapter 03's NTK (used in §1 and §3); gradient descent.
#
# **Approximate time:** about 40 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 24 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 2; the last cell prints your run's time.

# %% tags=["nbval-ignore-output"]
import time

import matplotlib.pyplot as plt
import torch

import spectral_lab as sl
from spectral_lab import exercises as ex

_chapter_start = time.perf_counter()  # the last cell prints the run time

sl.plots.use_style()
torch.manual_seed(0)
DT = torch.float64
print(f"torch {torch.__version__}, spectral_lab {sl.__version__}")

# %% [markdown]
# The patient of the previous chapter, rebuilt with the same seed: an MLP $64 \to 16 \to 16 \to 10$
# (tanh) trained for a few epochs on the bundled digits, with the cross-entropy loss on 256
# training images; its dense Hessian from PyTorch's own `torch.autograd.functional.hessian` (fine
# for a toy, and independent of the library's products) is the reference, and a stochastic Lanczos
# quadrature gives its spectral density.

# %%
digits = sl.load_dataset("digits", split="train")
model = sl.MLP(64, 10, width=16, depth=3, activation="tanh")
sl.train(model, digits, epochs=5, lr=3e-3, batch_size=64, seed=0, progress=False)
model = model.to(DT)
x, y = digits.tensors(256)
x = x.to(DT)
data = (x, y)
theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
v = torch.randn(theta.numel(), dtype=DT)
names, shapes = zip(*[(k, q.shape) for k, q in model.named_parameters()])


def as_params(t):
    return {k: u.reshape(s) for k, u, s in zip(names, t.split([s.numel() for s in shapes]), shapes)}


def loss_of(t):
    return torch.nn.functional.cross_entropy(
        torch.func.functional_call(model, as_params(t), (x,)), y
    )


H = torch.autograd.functional.hessian(loss_of, theta, vectorize=True)  # p x p, toy sizes only
exact = torch.linalg.eigvalsh(H)
density = sl.hessian_density(model, data, loss="cross_entropy", num_probes=4, num_steps=40)
print(f"p = {theta.numel()} parameters, lambda_max(H) = {exact[-1].item():.4g}")

# %% [markdown]
# ## 1. The step-size rule: $\eta < 2/\lambda_{\max}$
#
# Near a minimum the loss is a quadratic $\tfrac12 (\theta - \theta^*)^\top H (\theta - \theta^*)$ and a
# gradient step multiplies the error by $I - \eta H$. Along the eigenvector of $\lambda_i$ the factor
# is $1 - \eta\lambda_i$; all of them are smaller than 1 in magnitude exactly when
# $\eta < 2/\lambda_{\max}$. Below, a quadratic with $\lambda_{\max} = 4$, at
# $\eta = 0.95 \cdot 2/\lambda_{\max}$ and $1.05 \cdot 2/\lambda_{\max}$.

# %%
Hq = torch.diag(torch.tensor([4.0, 1.0, 0.25], dtype=DT))
x0 = torch.ones(3, dtype=DT)
fig, ax = plt.subplots(figsize=(6, 3.2))
for f in (0.5, 0.95, 1.05):
    ax.semilogy(
        sl.hessian.gd_quadratic(Hq, x0, f * 2 / 4.0, 100).numpy(),
        label=rf"$\eta = {f}\cdot 2/\lambda_{{\max}}$",
    )
ax.set(xlabel="step", ylabel="loss", title="gradient descent on a quadratic")
ax.legend()
plt.show()

# %% [markdown]
# Now a real network at a real minimum. A wide MLP ($16 \to 256 \to 1$) trained with
# $\tfrac12$-MSE on 40 points interpolates them (loss $\approx 0$). There the residual term of the
# Hessian vanishes and $H$ equals its Gauss–Newton part (§3 below) — and therefore its
# top eigenvalue is the NTK's top eigenvalue divided by $n$: the Hessian of this
# chapter and the kernel of chapter 03 are one object.

# %%
reg = sl.load_dataset("teacher_regression", n=200)
xr, yr = (t[:40].to(DT) for t in reg.tensors())
torch.manual_seed(0)
net = sl.MLP(16, 1, width=256, depth=2, activation="tanh").to(DT)
sl.train(net, (xr, yr), epochs=400, lr=1e-2, batch_size=40, loss="mse", seed=0, progress=False)
data_r = (xr, yr)
lam_H = sl.hessian_eigs(net, data_r, loss="mse", tol=1e-10).eigenvalues[0].item()
K_block = sl.ntk.block_to_matrix(sl.ntk_gram(net, xr, kind="block"))
lam_K = torch.linalg.eigvalsh(K_block)[-1].item()
print(f"training loss {sl.hessian.loss_value(net, data_r, loss='mse'):.1e}")

# %% tags=["nbval-check-output"]
interpolates = sl.hessian.loss_value(net, data_r, loss="mse") < 1e-10
identity = abs(lam_H - lam_K / 40) < 1e-6 * lam_H
print("the network interpolates its 40 points:", interpolates)
print("lambda_max(H) = lambda_max(K~)/n at the interpolating solution (1e-6):", identity)
assert interpolates and identity

# %%
fig, ax = plt.subplots(figsize=(6, 3.2))
runs = {}
for f in (0.5, 0.9, 1.1):
    runs[f] = sl.hessian.gd_losses(net, data_r, f * 2 / lam_H, 100, loss="mse")
    ax.semilogy(runs[f].numpy(), label=rf"$\eta = {f}\cdot 2/\lambda_{{\max}}$")
ax.set(xlabel="step", ylabel="loss", title="gradient descent from the minimum of a network")
ax.legend()
plt.show()

# %% tags=["nbval-check-output"]
quad_ok = bool(
    sl.hessian.gd_quadratic(Hq, x0, 0.95 * 0.5, 400)[-1] < 1e-6
    and sl.hessian.gd_quadratic(Hq, x0, 1.05 * 0.5, 400)[-1] > 1e6
)
stays = bool(runs[0.9].max() <= runs[0.9][0] * (1 + 1e-6))
# the largest loss of the run, not the last one: a catapult can bring the loss back down
leaves = bool(runs[1.1].max() > 1e6 * runs[1.1][0])
print("quadratic: converges below 2/lambda_max, diverges above:", quad_ok)
print("network: stays at the minimum below 2/lambda_max:", stays, "| is pushed away above:", leaves)
assert quad_ok and stays and leaves

# %% [markdown]
# ## 2. The edge of stability
#
# Far from a minimum, training changes $H$. Cohen et al. (2021) observed that with full-batch gradient
# descent the sharpness $\lambda_{\max}(H)$ first *rises* ("progressive sharpening") until it reaches
# $2/\eta$, and then hovers there while the loss keeps decreasing, non-monotonically: training
# runs at the *edge of stability*. If it starts sharper than $2/\eta$, the first steps are
# unstable and throw the parameters into a flatter region with $\lambda_{\max} \approx 2/\eta$.
# `sl.hessian.gd_with_sharpness` trains by full-batch GD and measures the sharpness by Lanczos every few
# steps. We train a $64\to64\to64\to10$ tanh MLP with $\tfrac12$-MSE on one-hot digit labels
# at two step sizes (the cell prints the initial sharpness, to compare with $2/\eta$).

# %%
xe, ye = digits.tensors(100)
xe, ye = xe.flatten(1).to(DT), torch.nn.functional.one_hot(ye, 10).to(DT)
traces = {}
for lr in (0.08, 0.12):
    torch.manual_seed(0)
    mlp = sl.MLP(64, 10, width=64, depth=3, activation="tanh").to(DT)
    traces[lr] = sl.hessian.gd_with_sharpness(
        mlp, (xe, ye), loss="mse", lr=lr, steps=200, every=20, tol=1e-3
    )
    print(
        f"eta = {lr}: initial sharpness {float(traces[lr].sharpness[0]):.1f}, 2/eta = {2 / lr:.1f}"
    )
sl.plots.plot_sharpness(
    {rf"$\eta$ = {lr}": tr for lr, tr in traces.items()}, title=r"sharpness (dashed: $2/\eta$)"
)
plt.show()

# %%
# Cohen et al.'s observation is empirical: we measure it on this run rather than assert it.
# Reported per step size: the sharpness over the second half of training in units of 2/eta
# (median and range; the observation predicts about 1), and the final loss relative to the first.
for lr, tr in traces.items():
    late = tr.sharpness[len(tr.sharpness) // 2 :] * lr / 2
    print(
        f"eta = {lr}: late sharpness / (2/eta) median {float(late.median()):.3f} "
        f"(range {float(late.min()):.3f}-{float(late.max()):.3f}); "
        f"final/initial loss {float(tr.loss[-1] / tr.loss[0]):.3f}"
    )

# %% [markdown]
# **Exercise 1 (think).** Repeat §2 with a *smaller* step, e.g. $\eta = 0.04$, for 1,000 steps. Before
# you run it: should the sharpness reach $2/\eta$, and what decides it?

# %% [markdown] tags=["solution"]
# <details><summary>Answer (click to show)</summary>
#
# Not necessarily. The sharpness reaches $2/\eta$ only if progressive sharpening carries
# it that far within the run; with a small step, $2/\eta$ is large and may be out of reach, so the
# sharpness wanders below it. Print `tr.sharpness` next to $2/\eta$ to see which happens in your run.
#
# </details>

# %% [markdown]
# ## 3. Gauss–Newton versus the full Hessian
#
# The chain rule splits the Hessian of $L = \frac1n\sum_i \ell(f(x_i), y_i)$ into two parts:
#
# $$ H = \underbrace{\frac1n \sum_i J_\theta(x_i)^\top \Lambda_i J_\theta(x_i)}_{G:\ \text{Gauss–Newton}}
#      + \underbrace{\frac1n \sum_i \sum_c \frac{\partial \ell}{\partial f_c}\, \nabla^2_\theta f_c(x_i)}_{\text{residual term}}, $$
#
# with $\Lambda_i = \nabla_f^2 \ell$ ($= I$ for $\tfrac12$-MSE, $\operatorname{diag}(s) - ss^\top$ for
# softmax cross-entropy). $G$ is positive semi-definite whenever the loss is convex in the outputs;
# all negative curvature lives in the residual term, which is weighted by the loss gradient and so
# fades as the fit improves. For $\tfrac12$-MSE, $G = \frac1n J^\top J$ shares its nonzero
# eigenvalues with $\tilde K / n$ — the identity used in §1. `which="gn"` selects $G$ in every
# Hessian function. The dense $G$ below is built from that definition with PyTorch alone
# (per-sample $J_\theta$ by `torch.func`), independently of the library's products.

# %%
Jt = torch.func.vmap(
    torch.func.jacrev(lambda t, z: torch.func.functional_call(model, as_params(t), (z[None],))[0]),
    (None, 0),
)(theta, x).detach()  # (n, C, p)
s_x = torch.softmax(model(x), 1).detach()
Lam = torch.diag_embed(s_x) - s_x[:, :, None] * s_x[:, None, :]  # Hessian of CE in the logits
G = torch.einsum("ncp,ncq->pq", Lam @ Jt, Jt) / len(x)
ev_G = torch.linalg.eigvalsh(G)
dens_G = sl.hessian_density(
    model, data, loss="cross_entropy", num_probes=4, num_steps=40, which="gn"
)
fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.3))
sl.plots.plot_density(density, ax=axes[0], label="full Hessian H", title="spectral densities")
axes[0].plot(dens_G.grid.numpy(), dens_G.density.numpy(), label="Gauss–Newton G")
axes[0].legend()
top = 20
axes[1].plot(exact.flip(0)[:top].numpy(), "o-", ms=3, label="H")
axes[1].plot(ev_G.flip(0)[:top].numpy(), "s-", ms=3, label="G")
axes[1].plot(exact[:5].numpy(), "v", color="C3", label="H, 5 most negative")
axes[1].set(xlabel="rank", ylabel="eigenvalue", title="top eigenvalues")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
G_psd = ev_G[0].item() > -1e-10 * ev_G[-1].item()
H_neg = exact[0].item() < 0
gn_match = torch.allclose(
    sl.hessian.gnvp(model, data, v, loss="cross_entropy"), G @ v, rtol=1e-10, atol=1e-12
)
print("Gauss-Newton part is positive semi-definite:", G_psd)
print("the full Hessian has negative eigenvalues (from the residual term):", H_neg)
print("gnvp agrees with the Gauss-Newton matrix built from its definition:", gn_match)
assert G_psd and H_neg and gn_match

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 2.** Use `order="smallest"` to find the most negative eigenvalue of $H$, and the
# smallest eigenvalue of the Gauss–Newton matrix (`which="gn"`). Is the latter negative?

# %% tags=["exercise"]
lam_min_H = ...  # float
lam_min_G = ...  # float


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
# G = J^T (Hessian of the loss in the outputs) J is positive semi-definite, so its smallest eigenvalue
# is 0 up to rounding (it has many zero eigenvalues); H is not, and its negative eigenvalues come
# from the residual part.
def _solution_2():
    smallest = dict(loss="cross_entropy", k=1, order="smallest", tol=1e-8)
    lam_H = sl.hessian_eigs(model, data, **smallest).eigenvalues[0].item()
    lam_G = sl.hessian_eigs(model, data, which="gn", **smallest).eigenvalues[0].item()
    return lam_H, lam_G


# %% tags=["nbval-check-output"]
# check exercise 2 against the dense spectra of H and G
scale_H = exact.abs().max().item()
assert ev_G[0].item() > -1e-6 * scale_H  # G is positive semi-definite
judge_2 = ex.close(
    (exact[0].item(), ev_G[0].item()), rtol=0, atol=1e-5 * scale_H, names=("lam_min_H", "lam_min_G")
)
solution_2 = _solution_2()
ex.check(2, (lam_min_H, lam_min_G), judge_2, solution=solution_2)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print(
    f"lambda_min(H) = {solution_2[0]:.3e}, lambda_min(G) = {solution_2[1]:.1e} "
    f"(lambda_max(H) = {scale_H:.3g})"
)

# %% [markdown]
# ## 4. Play: the learning rate against $\lambda_{\max}$
#
# The slider sets $\eta$ in units of $2/\lambda_{\max}$ for the interpolating network of §1 (right)
# and for a quadratic with the same $\lambda_{\max}$ (left). Cross 1 and watch both blow up; stay just
# below and watch the slowest direction crawl.

# %% tags=["nbval-ignore-output"]
sl.widgets.step_size_explorer(net, "mse", data_r, lam_H, steps=60)

# %% [markdown]
# ## Summary
#
# * Gradient descent on a quadratic is stable iff $\eta < 2/\lambda_{\max}$; on a network the same
#   rule separates convergence from divergence near a minimum.
# * At the edge of stability, training pushes the sharpness up to about $2/\eta$ (measured, not
#   asserted: the cell prints by how much on this run).
# * $H$ = Gauss–Newton (PSD, tied to the NTK) + a residual part that carries the negative eigenvalues.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 04 (continued) ran in {time.perf_counter() - _chapter_start:.0f} s")
