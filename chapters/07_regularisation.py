# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 — Spectral regularisation: penalties that plug into any training loop
#
# > The paper's experimental claim: a *modest* spectral regulariser makes saliency maps
# > substantially more stable while global spectral summaries barely move. Before testing it
# > (in the sequel, `07_regularisation_study`), this chapter builds the regularisers: differentiable
# > penalties on the input Jacobian or the weights, what each costs per step, and the two Jacobian
# > estimators behind them, checked against exact SVDs.
#
# **Learning objectives.** After this chapter you can
#
# 1. add a spectral penalty to any training loop (`sl.make_regularizer` → `extra_loss`) and know
#    what each one costs per step;
# 2. estimate $\|J_f\|_F^2$ by random projections and $\sigma_1(J_f)$ by power iteration with
#    Jacobian-vector and vector-Jacobian products, and check both.
#
# **Prerequisites.** Chapter 02 (spectral entropy, singular values of the input Jacobian);
# chapter 03's JVP/VJP view of a Jacobian.
#
# **Approximate time:** about 30 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 24 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 9; the last cell prints your run's time.
#
# > **Sources and choices.** The claim and the CIFAR-10 numbers are from Katende, *A Unified
# > Matrix-Spectral Framework for Stability and Interpretability in Deep Learning* (arXiv
# > 2602.01136). The paper does not give its model, regulariser, strength or metric definitions,
# > so the regularisers, the protocol and the metrics below are this course's choices, and nothing
# > below "reproduces" its numbers: we measure our own, next to its, and say where they agree.

# %% tags=["nbval-ignore-output"]
import time

import numpy as np
import torch

import spectral_lab as sl
from spectral_lab import exercises as ex

_chapter_start = time.perf_counter()  # the last cell prints the run time
sl.plots.use_style()
print(f"torch {torch.__version__}, spectral_lab {sl.__version__}")

# %% [markdown]
# ## 1. Penalties that plug into any training loop
#
# Each regulariser is a differentiable function of the parameters, added to the loss through
# `sl.train(..., extra_loss=reg)` (or any loop: `loss = ce + reg(model, x, y, logits)`):
#
# | id | penalty | estimator | cost per step (penalty on $b$ samples) |
# | --- | --- | --- | --- |
# | R1 `jacobian_frobenius` (default) | $\lambda\,\mathbb E_x\|J_f(x)\|_F^2$ | $C\,\|v^\top J\|^2$, $v$ uniform on the sphere (Hoffman et al. 2019) | 1 double-backward |
# | R2 `jacobian_spectral` | $\lambda\,\mathbb E_x\sigma_1(J_f(x))^2$ | power iteration with JVP/VJP, stop-gradient on the iterate | $n_{iter}$ JVP+VJP + 1 double-backward |
# | R3 `weight_spectral` | $\lambda\sum_l\sigma_1(W_l)^2$ | one power iteration per step (Miyato et al.) | 2 mat-vecs per layer |
# | R4 `input_gradient` | $\lambda\,\mathbb E_x\|\nabla_x\ell\|^2$ | double back-prop | 1 double-backward |
# | R5 `spectral_entropy` | $\lambda(\log r - \mathrm{SE}(J_f))$ | full Jacobian + SVD | $C$ double-backwards |
#
# plus hard layer-weight spectral normalisation, `sl.regularizers.apply_spectral_norm(model)`. The last column
# counts passes; the time each costs on your machine, as a multiple of a plain step (MLP
# 784-256-256-10, batch 128, penalty on 32 samples), is measured by
# `python benchmarks/bench_regularizers.py` (it prints one ratio per route; we do not type them
# here because they depend on the machine and its load). We use **R1**, the cheapest
# Jacobian-level penalty; the choice is ours, not the paper's.
#
# First, check the two Jacobian estimators against exact SVDs on a small network.

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
small = sl.MLP(20, 10, width=32, activation="tanh").double()
xs = torch.randn(8, 20, dtype=torch.float64)
J_small = sl.input_jacobian(small.eval(), xs)
s_exact = torch.linalg.svdvals(J_small)
s_power = sl.regularizers.jacobian_spectral_norm(small, xs, max_iter=50).detach()
fro_mc = sl.regularizers.jacobian_frobenius_norm(small, xs, num_draws=3000).detach()
power_ok = torch.allclose(s_power, s_exact[:, 0], rtol=1e-6)
hutch_ok = torch.allclose(fro_mc, (J_small**2).sum((1, 2)), rtol=0.1)
print("power iteration (JVP/VJP) = sigma_1 from the SVD:", power_ok)
print("random projections estimate ||J||_F^2 without bias:", hutch_ok)
assert power_ok and hutch_ok

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** The R1 estimator. For $v$ uniform on the unit sphere of $\mathbb{R}^C$,
# $\mathbb{E}\,\|v^\top J\|^2 = \|J\|_F^2/C$. Complete `my_frobenius_sq(model, x, num_draws, gen)`: draw
# `num_draws` such $v$ per sample, compute $v^\top J$ with one vector-Jacobian product each
# (`torch.autograd.grad` of $\langle v, f(x)\rangle$ with respect to $x$), and return the per-sample
# mean of $C\,\|v^\top J\|^2$.


# %% tags=["exercise"]
def my_frobenius_sq(model, x, num_draws, gen):
    raise NotImplementedError("complete my_frobenius_sq: random unit v, one VJP per draw, average")


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_1(model, x, num_draws, gen):
    x = x.clone().requires_grad_(True)
    out = model(x)
    C = out.shape[1]
    total = torch.zeros(len(x), dtype=out.dtype)
    for _ in range(num_draws):
        v = torch.randn(out.shape, generator=gen, dtype=out.dtype)
        v = v / v.norm(dim=1, keepdim=True)
        (vj,) = torch.autograd.grad((v * out).sum(), x, retain_graph=True)
        total += C * vj.flatten(1).pow(2).sum(1)
    return total / num_draws


# %% tags=["nbval-check-output"]
# check exercise 1 against the exact ||J||_F^2 of the dense autograd Jacobian of section 1's network:
# unbiased, so with 2000 draws each estimate is within 10% (the relative standard deviation of one
# draw is below 1 for C = 10)
exact_fro = torch.stack(
    [torch.autograd.functional.jacobian(lambda z: small(z[None])[0], xi).pow(2).sum() for xi in xs]
)


def estimate_1(fn):
    return fn(small.eval(), xs, 2000, torch.Generator().manual_seed(0)).detach()


judge_1 = lambda fn: ex.close(exact_fro, rtol=0.1, atol=0, names="my_frobenius_sq")(estimate_1(fn))  # noqa: E731
ex.check(1, my_frobenius_sq, judge_1, solution=_solution_1)
est = estimate_1(_solution_1)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print("estimate / exact per sample:", np.round((est / exact_fro).numpy(), 3).tolist())

# %% [markdown]
# **Exercise 2.** The R2 estimator. Complete `my_sigma1(model, x, iters)`: power iteration on
# $J^\top J$ per sample, with a Jacobian-vector product $u = Jv$ (`torch.func.jvp`) and a
# vector-Jacobian product $v \leftarrow J^\top u$ (`torch.func.vjp`), normalising $v$ each step; return
# $\|Jv\|$ at the end. Use one sample at a time (a loop over `xs` is fine).


# %% tags=["exercise"]
def my_sigma1(model, x, iters=50):
    raise NotImplementedError(
        "complete my_sigma1: alternate J v and J^T u, normalise, return ||J v||"
    )


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_2(model, x, iters=50):
    out = []
    for xi in x:
        f = lambda z: model(z[None])[0]  # noqa: E731
        v = torch.ones_like(xi) / xi.numel() ** 0.5
        for _ in range(iters):
            _, u = torch.func.jvp(f, (xi,), (v,))
            _, pullback = torch.func.vjp(f, xi)
            (v,) = pullback(u)
            v = v / v.norm()
        out.append(torch.func.jvp(f, (xi,), (v,))[1].norm())
    return torch.stack(out).detach()


# %% tags=["nbval-check-output"]
# check exercise 2 against numpy's SVD of the dense Jacobians
sig_np = np.linalg.svd(J_small.detach().numpy(), compute_uv=False)[:, 0]
judge_2 = lambda fn: ex.close(sig_np, rtol=1e-6, atol=0, names="my_sigma1")(fn(small.eval(), xs))  # noqa: E731
ex.check(2, my_sigma1, judge_2, solution=_solution_2)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
sig_mine = _solution_2(small.eval(), xs)
print("largest relative error:", f"{np.abs(sig_mine.numpy() / sig_np - 1).max():.1e}")

# %% [markdown]
# ## Summary
#
# * A spectral penalty is an `extra_loss(model, x, y, logits)` added to any training loop; R1
#   ($\|J_f\|_F^2$ by random projections) is the cheapest Jacobian-level one.
# * Both Jacobian estimators use products only: random projections are unbiased for
#   $\|J_f\|_F^2$, and power iteration with JVP/VJP converges to $\sigma_1$.
# * Next, `07_regularisation_study`: whether such a penalty makes explanations more stable.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 07 ran in {time.perf_counter() - _chapter_start:.0f} s")
