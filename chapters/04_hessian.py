# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 — The loss Hessian: products, eigenvalues, trace and density
#
# > How large a step can gradient descent take? The answer is one number: the largest eigenvalue
# > of the loss Hessian, the *sharpness*. This chapter computes it — and the trace and the whole
# > spectral density — for a network with thousands of parameters without ever writing the
# > Hessian down. Its sequel, `04_hessian_step_size`, uses the sharpness to decide between
# > convergence and divergence.
#
# **Learning objectives.** After this chapter you can
#
# 1. compute Hessian-vector products $Hv$ at the cost of a few gradients and check them;
# 2. explain why Lanczos needs far fewer products than power iteration for the top eigenvalues,
#    and see it on a convergence plot;
# 3. estimate $\operatorname{tr} H$ (Hutchinson, Hutch++) and the spectral density (stochastic
#    Lanczos quadrature).
#
# **Prerequisites.** Chapters 01–03; eigenvalues of a symmetric matrix; gradient descent.
#
# **Approximate time:** about 40 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 157 s, one chapter at a time
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
DT = torch.float64
print(f"torch {torch.__version__}, spectral_lab {sl.__version__}")

# %% [markdown]
# ## 1. Hessian-vector products
#
# For the mean loss $L(\theta) = \frac1n \sum_i \ell(f_\theta(x_i), y_i)$ the Hessian
# $H = \nabla^2_\theta L \in \mathbb{R}^{p\times p}$ has $p^2$ entries — the cell below prints
# how many for the small network of this chapter; $10^{12}$ for a network with a million parameters. We never need them: everything in this
# chapter uses only products $v \mapsto Hv = \frac{d}{dt}\nabla L(\theta + t v)\big|_{t=0}$, which
# forward-mode differentiation of the gradient gives at the cost of a few gradient evaluations
# (`sl.hvp`; over a `DataLoader` the products are accumulated batch by batch). Models are always
# evaluated in eval mode, so dropout and batch-norm do not make $H$ random.
#
# Our patient: an MLP $64 \to 16 \to 16 \to 10$ (tanh) trained for a few epochs on the
# bundled digits, with the cross-entropy loss on 256 training images.

# %%
digits = sl.load_dataset("digits", split="train")
model = sl.MLP(64, 10, width=16, depth=3, activation="tanh")
sl.train(model, digits, epochs=5, lr=3e-3, batch_size=64, seed=0, progress=False)
model = model.to(DT)
x, y = digits.tensors(256)
x = x.to(DT)
data = (x, y)
p = sum(q.numel() for q in model.parameters())
print(
    f"p = {p} parameters (H has p^2 = {p**2:,} entries), "
    f"loss {sl.hessian.loss_value(model, data, loss='cross_entropy'):.3f}"
)

# %% [markdown]
# **Check.** Against two references independent of the library's Hessian-vector products: a
# central finite difference of gradients, $\big(\nabla L(\theta + hv) - \nabla L(\theta -
# hv)\big)/2h$, and the dense Hessian formed by PyTorch's own `torch.autograd.functional.hessian`
# (fine for a toy) contracted with $v$. That dense $H$ is the reference for the rest of the chapter.

# %%
# the two independent references: central differences of gradients, and the dense Hessian
theta = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
v = torch.randn(p, dtype=DT)


def grad_at(t):
    net = sl.MLP(64, 10, width=16, depth=3, activation="tanh").to(DT)
    torch.nn.utils.vector_to_parameters(t, net.parameters())
    loss = torch.nn.functional.cross_entropy(net(x), y)
    return torch.nn.utils.parameters_to_vector(torch.autograd.grad(loss, list(net.parameters())))


h = 1e-5
fd = (grad_at(theta + h * v) - grad_at(theta - h * v)) / (2 * h)
names, shapes = zip(*[(k, q.shape) for k, q in model.named_parameters()])


def as_params(t):
    return {k: u.reshape(s) for k, u, s in zip(names, t.split([s.numel() for s in shapes]), shapes)}


def loss_of(t):
    return torch.nn.functional.cross_entropy(
        torch.func.functional_call(model, as_params(t), (x,)), y
    )


H = torch.autograd.functional.hessian(loss_of, theta, vectorize=True)  # p x p, toy sizes only

# %% tags=["nbval-check-output"]
# check: the library's Hessian-vector product against both references
Hv = sl.hvp(model, data, v, loss="cross_entropy")
fd_ok = ((Hv - fd).norm() / Hv.norm()).item() < 1e-6
dense_ok = torch.allclose(H @ v, Hv, rtol=1e-10, atol=1e-12)
print("Hv agrees with finite differences of gradients:", fd_ok)
print("Hv agrees with the dense Hessian:", dense_ok)
assert fd_ok and dense_ok

# %% [markdown]
# ## 2. The top eigenvalues: power iteration versus Lanczos
#
# *Power iteration* repeats $v \leftarrow Hv/\|Hv\|$; the error shrinks by $|\lambda_2/\lambda_1|$ per
# product, which is slow when the top eigenvalues are close (PyHessian's method). *Lanczos* keeps
# every vector it has seen: after $m$ products it knows the Krylov space
# $\mathcal K_m = \operatorname{span}\{v, Hv, \dots, H^{m-1}v\}$ and picks the best approximations
# in all of it (the eigenvalues of a small tridiagonal matrix $T_m$). Its error shrinks roughly
# like $\exp(-2m\sqrt{(\lambda_1-\lambda_2)/(\lambda_1 - \lambda_p)})$ — a square root better than
# power iteration's rate. `sl.linalg.lanczos` re-orthogonalises every new vector against all previous ones
# (memory $m \cdot p$), which removes the "ghost" copies of eigenvalues that plain Lanczos produces
# in floating point. Both stop when the residual $\|Hu - \theta u\| \le \mathrm{tol}\,|\theta|$,
# which bounds the eigenvalue error by the same relative tolerance.

# %%
exact = torch.linalg.eigvalsh(H)
lanczos = sl.hessian_eigs(model, data, loss="cross_entropy", k=1, method="lanczos", tol=1e-10)
power = sl.hessian_eigs(
    model, data, loss="cross_entropy", k=1, method="power", tol=1e-10, max_iter=2000
)
print(lanczos)
print(power)
sl.plots.plot_convergence(
    {"Lanczos": lanczos, "power iteration": power},
    exact[-1],
    title=r"top Hessian eigenvalue: error vs products",
)
plt.axhline(1e-4, color="0.5", ls=":", lw=1)
plt.gcf().set_size_inches(6, 3.4)
plt.show()

# %% [markdown]
# In practice the true eigenvalue is unknown, so what counts is the number of products until the
# stopping rule *certifies* the accuracy. At `tol=1e-4`:

# %% tags=["nbval-ignore-output"]
cert_l = sl.hessian_eigs(model, data, loss="cross_entropy", k=1, method="lanczos", tol=1e-4)
cert_p = sl.hessian_eigs(
    model, data, loss="cross_entropy", k=1, method="power", tol=1e-4, max_iter=2000
)
print(
    f"products to certify 1e-4: Lanczos {cert_l.matvecs}, power iteration {cert_p.matvecs} "
    f"({cert_p.matvecs / cert_l.matvecs:.1f}x as many)"
)

# %% tags=["nbval-check-output"]
matches = abs(lanczos.eigenvalues[0].item() - exact[-1].item()) <= 1e-6 * exact[-1].item()
certified = all(
    abs(r.eigenvalues[0].item() - exact[-1].item()) <= 1e-4 * exact[-1].item()
    for r in (cert_l, cert_p)
)
print("Lanczos lambda_max equals the dense one to 1e-6:", matches)
print("both certified estimates are within 1e-4 of the truth:", certified)
assert matches and certified

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** Compute the top 5 Hessian eigenvalues of the digits MLP of §1 with
# `method="power"` (`max_iter=3000`) and with `method="lanczos"`, both at `tol=1e-4`, and compare
# `result.matvecs`. Why does deflated power iteration get slower for the 4th and 5th eigenvalues?

# %% tags=["exercise"]
top5_power = ...  # the EigResult of method="power"
top5_lanczos = ...  # the EigResult of method="lanczos"


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
# Lanczos builds one Krylov space for all five; power iteration starts over for each pair and
# converges at rate |lambda_{j+1} / lambda_j|, which is close to 1 inside the top cluster.
def _solution_1():
    power = sl.hessian_eigs(
        model, data, loss="cross_entropy", k=5, method="power", tol=1e-4, max_iter=3000
    )
    lanczos = sl.hessian_eigs(model, data, loss="cross_entropy", k=5, method="lanczos", tol=1e-4)
    return power, lanczos


# %% tags=["nbval-check-output"]
# check exercise 1 against the exact eigenvalues of the dense Hessian (checked against finite
# differences in section 1); the power-iteration result is compared by magnitude, as it is defined
top5_exact = exact.flip(0)[:5]
top5_mag = exact[exact.abs().argsort(descending=True)][:5]
judge_eigs = ex.close(
    (top5_mag.abs(), top5_exact), rtol=1e-3, names=("|top5_power|", "top5_lanczos")
)


def judge_1(answer):
    power, lanczos = answer
    for name, res in (("top5_power", power), ("top5_lanczos", lanczos)):
        if res is not ... and not hasattr(res, "eigenvalues"):
            return f"{name} should be the EigResult of sl.hessian_eigs, got {type(res).__name__}"
    mags = ... if power is ... else power.eigenvalues.abs().sort(descending=True).values
    return judge_eigs((mags, ... if lanczos is ... else lanczos.eigenvalues))


solution_1 = _solution_1()
ex.check(1, (top5_power, top5_lanczos), judge_1, solution=solution_1)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print(f"products used: power {solution_1[0].matvecs}, Lanczos {solution_1[1].matvecs}")

# %% [markdown]
# ## 3. Trace and spectral density
#
# The trace $\operatorname{tr} H = \sum_i \lambda_i$ (average curvature) needs no eigenvalues: for
# random signs $z$, $\mathbb E[z^\top H z] = \operatorname{tr} H$ (Hutchinson), with an error
# $O(1/\sqrt m)$ after $m$ products. *Hutch++* spends a third of the budget on a sketch $Q$ of the
# top of the spectrum, takes $\operatorname{tr}(Q^\top H Q)$ exactly, and uses Hutchinson only on what
# is left — an error $O(1/m)$ when a few eigenvalues dominate, as they do for Hessians. Below: 20
# independent runs of each at the same budget of 30 products.

# %%
budget = 30
hutch = [
    sl.hessian_trace(
        model, data, loss="cross_entropy", method="hutchinson", num_matvecs=budget, seed=s
    ).estimate
    for s in range(20)
]
hpp = [
    sl.hessian_trace(
        model, data, loss="cross_entropy", method="hutch++", num_matvecs=budget, seed=s
    ).estimate
    for s in range(20)
]
tr_exact = H.trace().item()
fig, ax = plt.subplots(figsize=(6, 3))
ax.hist(hutch, bins=12, alpha=0.6, label="Hutchinson")
ax.hist(hpp, bins=12, alpha=0.6, label="Hutch++")
ax.axvline(tr_exact, color="k", ls="--", label="exact trace")
ax.set(xlabel=r"estimate of tr $H$", ylabel="runs", title=f"20 runs, {budget} products each")
ax.legend()
plt.show()

# %% tags=["nbval-check-output"]
err_h = np.mean(np.abs(np.array(hutch) - tr_exact))
err_pp = np.mean(np.abs(np.array(hpp) - tr_exact))
unbiased = abs(np.mean(hpp) - tr_exact) < 4 * np.std(hpp) / np.sqrt(20) + 1e-9
print("Hutch++ mean is within 4 standard errors of tr H (it is unbiased):", bool(unbiased))
assert unbiased
# a measurement, not a theorem: how much Hutch++'s sketch helps depends on how fast the spectrum decays
print(
    f"mean |error| at {budget} products: Hutchinson {err_h:.3g}, Hutch++ {err_pp:.3g} "
    f"(ratio {err_pp / err_h:.2f})"
)

# %% [markdown]
# The whole spectrum: *stochastic Lanczos quadrature* runs $m$ Lanczos steps from a few random
# vectors; the eigenvalues $\theta_j$ of each $T_m$, weighted by the squared first components of
# its eigenvectors, form a Gauss quadrature rule for the spectral measure — exact for polynomials
# of degree $< 2m$. Smoothing each node by a Gaussian gives a density. With 4 probes and 40 steps
# (160 products) it already shows the shape found by the full eigendecomposition: a bulk near zero
# — most directions of parameter space barely change the loss — and a tail of larger eigenvalues.
# For well-trained classifiers Papyan (2019, "Measurements of three-level hierarchical structure in
# the outliers in the spectrum of deepnet Hessians") reports about as many separated outliers as
# classes; the cell below prints the top of the exact spectrum and its largest relative gap, so you
# can see whether this briefly trained network shows such a group.

# %%
density = sl.hessian_density(model, data, loss="cross_entropy", num_probes=4, num_steps=40)
print(density)
top_ev = exact.flip(0)[:16]
gaps = (top_ev[:-1] / top_ev[1:]).numpy()
n_out = int(np.argmax(gaps)) + 1
print("top 16 eigenvalues of H:", np.array2string(top_ev.numpy(), precision=2))
print(
    f"largest ratio between consecutive top eigenvalues: {gaps.max():.2f}, after the first "
    f"{n_out} (classes: {len(torch.unique(y))}); median ratio {np.median(gaps):.2f}"
)
sl.plots.plot_density(density, exact=exact, title="Hessian spectral density")
plt.gcf().set_size_inches(6.5, 3.4)
plt.show()

# %% tags=["nbval-check-output"]
# the first moment of each normalised Rademacher probe is v^T H v: unbiased for tr(H)/p with standard
# error sqrt(2 sum_{i != j} H_ij^2) / p / sqrt(probes), computed here from the dense H
top_node = abs(density.nodes.max().item() - exact[-1].item()) < 1e-6 * exact[-1].item()
n_probes = density.nodes.shape[0]
se_mean = ((2 * (H**2).sum() - 2 * (H.diagonal() ** 2).sum()).sqrt() / p).item() / n_probes**0.5
mean_ok = abs(density.moment(1) - tr_exact / p) < 4 * se_mean
area = torch.trapezoid(density.density, density.grid).item()
print("largest quadrature node = lambda_max:", top_node)
print(
    f"mean of the density {density.moment(1):.4g} vs tr(H)/p {tr_exact / p:.4g}: within 4 s.e. "
    f"({se_mean:.2g}):",
    mean_ok,
    "| integrates to 1:",
    abs(area - 1) < 1e-3,
)
assert top_node and mean_ok and abs(area - 1) < 1e-3

# %% [markdown]
# **Exercise 2.** Write Hutchinson's estimator yourself: with $m$ random sign vectors $z_j$
# ($\pm 1$ entries), $\operatorname{tr} H \approx \frac1m\sum_j z_j^\top H z_j$, using only `sl.hvp`. Then
# measure how its mean absolute error falls with the budget $m$ (the theory: like $m^{-1/2}$).


# %% tags=["exercise"]
def my_hutchinson(m: int, gen: torch.Generator) -> float:
    """Hutchinson's estimate of tr H from m Rademacher probes drawn with gen."""
    raise NotImplementedError(
        "complete my_hutchinson: draw signs, multiply by H with sl.hvp, average"
    )


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_2(m: int, gen: torch.Generator) -> float:
    """Hutchinson's estimate of tr H from m Rademacher probes drawn with gen."""
    total = 0.0
    for _ in range(m):
        z = torch.randint(0, 2, (p,), generator=gen, dtype=DT) * 2 - 1
        total += (z @ sl.hvp(model, data, z, loss="cross_entropy")).item()
    return total / m


# %% tags=["nbval-check-output"]
# check exercise 2: unbiased (mean of 20 runs within 4 standard errors of the exact trace) and the
# variance formula Var(z^T H z) = 2 (||H||_F^2 - sum_i H_ii^2) / m for Rademacher probes
sd_theory = {m: np.sqrt(2 * ((H**2).sum() - (H.diagonal() ** 2).sum()).item() / m) for m in (8, 32)}


runs_by_function = {}  # each function's 2 x 20 runs, computed once


def hutchinson_runs(fn):
    if fn not in runs_by_function:
        gen_h = torch.Generator().manual_seed(7)
        runs_by_function[fn] = {m: np.array([fn(m, gen_h) for _ in range(20)]) for m in (8, 32)}
    return runs_by_function[fn]


def judge_2(fn):
    for m, r in hutchinson_runs(fn).items():
        if abs(r.mean() - tr_exact) >= 4 * sd_theory[m] / np.sqrt(len(r)):
            return (
                f"at m = {m} the mean of 20 runs is {r.mean():.4g}, not near tr H = {tr_exact:.4g}"
            )
        if not 0.5 < r.std() / sd_theory[m] < 1.6:
            return f"at m = {m} the spread {r.std():.3g} is not the theory's {sd_theory[m]:.3g}"
    return None


ex.check(2, my_hutchinson, judge_2, solution=_solution_2)
err = {m: np.mean(np.abs(r - tr_exact)) for m, r in hutchinson_runs(_solution_2).items()}

# %% tags=["nbval-ignore-output"]
# what this run measured
print(
    f"mean |error|: m=8 {err[8]:.3g}, m=32 {err[32]:.3g}; "
    f"measured slope {np.log(err[32] / err[8]) / np.log(4):.2f} (theory -0.5)"
)

# %% [markdown]
# ## Summary
#
# * Hessian-vector products cost a few gradients; eigenvalues, the trace and the spectral density all
#   come from products alone, checked here against finite differences and a dense Hessian.
# * Lanczos finds the top of the spectrum in far fewer products than power iteration; Hutch++ and
#   stochastic Lanczos quadrature estimate the trace and the density.
# * Next, `04_hessian_step_size`: what the top eigenvalue decides about gradient descent.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 04 ran in {time.perf_counter() - _chapter_start:.0f} s")
