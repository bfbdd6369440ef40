# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 11 — Watching training
#
# > Every chapter so far measured a trained (or freshly drawn) network: a snapshot. The phenomena
# > that made the loss Hessian and the NTK famous happen *during* training: the sharpness climbs
# > until it meets $2/\eta$ and then hovers there; a narrow network's tangent kernel moves far from
# > where it started while a wide one's barely moves; a spectral penalty reshapes the input
# > Jacobian step by step. This chapter attaches one object, `SpectralMonitor`, to a training
# > loop, records these quantities every few steps, and measures each phenomenon over several
# > seeds, with intervals.
#
# **Learning objectives.** After this chapter you can
#
# 1. attach `sl.monitor.SpectralMonitor` to any training loop and read its history: the
#    sharpness beside $2/\eta$, the NTK's drift, the input Jacobian's $\sigma_1$ and spectral
#    entropy;
# 2. predict the largest stable step of a quadratic loss, $2/\lambda_{\max}(H)$, and see the
#    monitor flag the run that crosses it;
# 3. measure progressive sharpening and the edge of stability over seeds and report them as
#    intervals rather than as a yes/no;
# 4. measure how the NTK's relative drift falls with width (lazy versus rich training) and
#    compute that drift by hand;
# 5. watch chapter 07's spectral regulariser act on the input Jacobian during training.
#
# **Prerequisites.** Chapters 03 (the NTK), 04 and 04 continued (the loss Hessian, the rule
# $\eta < 2/\lambda_{\max}$ and a first look at the edge of stability) and 07 (the regulariser
# R1); Student-$t$ intervals.
#
# **Approximate time:** about 55 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 108 s on real MNIST, one chapter at a time, on this
# project's 2-core Linux test server while seven other jobs shared it; the last cell prints your
# run's time.
#
# > **Sources and choices.** The edge of stability is from Cohen, Kaur, Li, Kolter and Talwalkar,
# > *Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability* (2021); lazy
# > versus rich training from Chizat, Oyallon and Bach, *On Lazy Training in Differentiable
# > Programming* (2019) and Jacot, Gabriel and Hongler, *Neural Tangent Kernel: Convergence and
# > Generalization in Neural Networks* (2018). The models, data sizes, step sizes, widths and
# > strengths below are this course's choices, small enough for about two minutes on two CPU
# > cores; the papers' claims are measured on them, never asserted.

# %% tags=["nbval-ignore-output"]
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

import spectral_lab as sl
from spectral_lab import exercises as ex
from spectral_lab.experiments import RunSpec, late_ratio, loglog_slope, seed_interval, seed_runs
from spectral_lab.monitor import DivergenceWarning, SpectralMonitor

_chapter_start = time.perf_counter()  # the last cell prints the run time

sl.plots.use_style()
DT = torch.float64
# the monitor warns once when a run starts to diverge; this chapter reads its "diverging" flag
warnings.simplefilter("ignore", DivergenceWarning)

# ---- Parameters -------------------------------------------------------------------------------
N_TRAIN = 256  # full-batch gradient descent on this many training images
SEEDS = (0, 1, 2)  # every measured claim is an interval over these seeds
LRS = (0.05, 0.1, 0.15)  # the step sizes of §2
STEPS, EVERY = 500, 50  # gradient-descent steps per run, steps between two measurements
# -------------------------------------------------------------------------------------------------


def images(split, n):
    """(x, one-hot y) in float64: MNIST average-pooled to 14x14 when its files are found, else
    the bundled 8x8 digits."""
    try:
        ds, name = sl.load_dataset("mnist", split, n=n), "MNIST (pooled to 14x14)"
    except sl.DatasetNotFoundError:
        ds, name = sl.load_dataset("digits", split, n=n), "the bundled 8x8 digits"
    xi, yi = ds.tensors()
    xi = xi.to(DT)
    if xi.shape[-1] == 28:
        xi = F.avg_pool2d(xi, 2)
    return xi.flatten(1), F.one_hot(yi, 10).to(DT), name


x, Y, DATA = images("train", N_TRAIN)
print(f"DATA: this chapter ran on {DATA}: {tuple(x.shape)} inputs, one-hot targets; ½-MSE loss")


def fmt(s, digits=3):
    """A seed_interval as 'mean [lo, hi]'."""
    return f"{s['mean']:.{digits}f} [{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]"


# %% [markdown]
# ## 1. A monitor in a training loop, and the edge on a quadratic
#
# `SpectralMonitor(probe, loss=..., every=k, quantities=...)` keeps a fixed probe batch and, every
# $k$ calls of `mon.step(model, optimizer)`, measures on it what `quantities` asks for:
#
# | quantity | record keys | what it is |
# | --- | --- | --- |
# | `"sharpness"` | `sharpness`, `two_over_lr` | $\lambda_{\max}(H)$ of the loss Hessian on the probe (Lanczos, warm-started from the previous top eigenvector), beside $2/\eta$ |
# | `"ntk"` | `ntk_top`, `ntk_cond`, `ntk_drift` | the NTK Gram $K_t$ on probe samples, its top eigenvalue and condition number, and $\|K_t - K_0\|_F / \|K_0\|_F$ |
# | `"input_jacobian"` | `jac_top`, `jac_entropy` | $\sigma_1$ and the spectral entropy of $J_f(x)$, averaged over probe samples |
# | `"layers"` | `stable_rank/<layer>`, `alpha/<layer>` | each weight matrix's stable rank and power-law exponent |
#
# and always `step`, `probe_loss`, `products` (operator products spent), `seconds` and
# `diverging`. `mon.history` is the list of records; `mon.to_dataframe()` and `mon.figure()` read
# it. In this chapter every run is full-batch gradient descent,
# $\theta \leftarrow \theta - \eta \nabla L(\theta)$ with
# $L = \frac1n \sum_i \tfrac12 \|f(x_i) - y_i\|^2$, and the probe is the whole training set
# (`probe_size=None`, the default; `probe_size=64` would keep a seeded subset), so the
# monitor's sharpness is that of the loss being descended. Its Lanczos tolerance `tol` bounds the
# residual $\|Hu - \theta u\| \le \mathrm{tol}\,|\theta|$; we tighten it where a check needs it.
# `sl.experiments.seed_runs(configure, data, settings, seeds, steps=...)` runs it for every
# setting and seed (`configure(setting)` returns a `RunSpec(model, lr, monitor=...)`), records the
# initial model as step 0 and then every `every` updates.
#
# First the case where everything is known in closed form. A linear model $f(x) = Wx + b$ with
# this loss has a *constant* Hessian: with $\tilde X$ the inputs with a column of ones appended,
# $H = (\tilde X^\top \tilde X / n) \otimes I_{10}$ (one copy per output). Gradient descent on a
# quadratic multiplies the error along the top eigenvector by $1 - \eta\lambda_{\max}$ each step:
# it decays if $\eta < 2/\lambda_{\max}$ and grows if $\eta > 2/\lambda_{\max}$.
#
# **Exercise 1.** Complete `edge_lr(x)`: the largest stable step $2/\lambda_{\max}(H)$ of that
# linear model on inputs `x` (shape `(n, d)`): append the column of ones, form
# $\tilde X^\top \tilde X / n$ and take its largest eigenvalue (`torch.linalg.eigvalsh`).


# %% tags=["exercise"]
def edge_lr(x):
    raise NotImplementedError("complete edge_lr: 2 / the largest eigenvalue of X~^T X~ / n")


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_1(x):
    xt = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    return 2 / float(torch.linalg.eigvalsh(xt.T @ xt / len(x))[-1])


# %% tags=["nbval-check-output"]
# check exercise 1 against the monitor: Lanczos on autograd Hessian-vector products of the linear
# model's loss, no closed form involved
torch.manual_seed(0)
linear = torch.nn.Linear(x.shape[1], 10).to(DT)
probe_mon = SpectralMonitor(
    (x, Y), loss="mse", quantities=("sharpness",), tol=1e-8, probe_size=None
)
lam_monitor = probe_mon.measure(linear)["sharpness"]
judge_1 = lambda fn: ex.close(2 / lam_monitor, rtol=1e-6, names="edge_lr(x)")(fn(x))  # noqa: E731
ex.check(1, edge_lr, judge_1, solution=_solution_1)

# %% [markdown]
# Now train the linear model just below and just above the edge, at $\eta\lambda_{\max} = 1.9$ and
# $2.1$, with a monitor measuring every 10 steps. Below, the sharpness the monitor records should
# be flat (the Hessian is constant) and the loss should fall at every step; above, the loss
# should grow geometrically and the monitor's `diverging` flag (the probe loss rising at
# consecutive measurements while the sharpness is above $2/\eta$) should come on.

# %%
eta_edge = _solution_1(x)  # 2 / lambda_max
lam_q = 2 / eta_edge


def linear_run(c):  # c = eta * lambda_max
    lin = torch.nn.Linear(x.shape[1], 10).to(DT)
    mon = SpectralMonitor((x, Y), loss="mse", every=10, quantities=("sharpness",), lr=c / lam_q,
                          tol=1e-8, probe_size=None)  # fmt: skip
    return RunSpec(lin, c / lam_q, monitor=mon)


quad = seed_runs(linear_run, (x, Y), (1.9, 2.1), (0,), steps=100)
fig, ax = plt.subplots(1, 2, figsize=(10, 3.4))
for c in quad.settings:
    r = quad.get(c, 0)
    ax[0].semilogy(r.loss, label=rf"$\eta\lambda_{{\max}}$ = {c}")
    ax[1].plot(*r.series("sharpness"), "o-", label=rf"$\eta\lambda_{{\max}}$ = {c}")
ax[1].axhline(lam_q, color="0.4", ls=":", label=r"$\lambda_{\max}$ (closed form)")
ax[0].set(xlabel="step", ylabel="loss", title="linear model: the loss")
ax[1].set(xlabel="step", ylabel="sharpness", title="what the monitor recorded")
ax[0].legend(), ax[1].legend()
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
# check (a theorem): on a quadratic the monitor's sharpness is the closed-form lambda_max at every
# measurement; below 2/lambda_max the loss falls at every step; above, it grows and the monitor
# says so
below, above = quad.get(1.9, 0), quad.get(2.1, 0)
flat = all(abs(h["sharpness"] / lam_q - 1) < 1e-6 for r in (below, above) for h in r.history)
decays = bool(np.all(np.diff(below.loss) <= 0)) and not any(h["diverging"] for h in below.history)
grows = above.loss[-1] > 1e3 * above.loss[0] and above.history[-1]["diverging"]
print("recorded sharpness = closed-form lambda_max, every measurement:", flat)
print("eta = 1.9 / lambda_max: the loss falls at every step, never flagged:", decays)
print("eta = 2.1 / lambda_max: the loss grows 1000-fold and the monitor flags it:", grows)
assert flat and decays and grows

# %% [markdown]
# ## 2. Progressive sharpening and the edge of stability
#
# A network's Hessian is not constant, and Cohen et al. observed what full-batch gradient descent
# does to it: the sharpness first **rises** (*progressive sharpening*) until it reaches $2/\eta$,
# then **hovers** there while the loss keeps falling, not monotonically — the *edge of
# stability*. A run that starts sharper than $2/\eta$ is thrown, within a few unstable steps, to
# a flatter region (a *catapult*) and then does the same. Chapter 04 showed one run; here we run
# a tanh MLP ($d \to 32 \to 32 \to 10$) at three step sizes and three seeds, each with a monitor.


# %%
def eos_run(lr):
    net = sl.MLP(x.shape[1], 10, width=32, depth=3, activation="tanh").to(DT)
    mon = SpectralMonitor((x, Y), loss="mse", every=EVERY, quantities=("sharpness",), lr=lr,
                          tol=1e-4, probe_size=None)  # fmt: skip
    return RunSpec(net, lr, monitor=mon)


t0 = time.perf_counter()
eos = seed_runs(eos_run, (x, Y), LRS, SEEDS, steps=STEPS)
eos_seconds = time.perf_counter() - t0

fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
for i, lr in enumerate(LRS):
    for s in SEEDS:
        r = eos.get(lr, s)
        lab = rf"$\eta$ = {lr}" if s == SEEDS[0] else None
        ax[0].plot(*r.series("sharpness"), "-", color=f"C{i}", lw=1.2, alpha=0.8, label=lab)
        ax[1].semilogy(r.loss, color=f"C{i}", lw=0.8, alpha=0.8, label=lab)
    ax[0].axhline(2 / lr, color=f"C{i}", ls="--", lw=1)
ax[0].set(xlabel="step", ylabel=r"$\lambda_{\max}(H)$", title=r"sharpness (dashed: $2/\eta$)")
ax[1].set(xlabel="step", ylabel="training loss", title="loss (three seeds per step size)")
ax[0].legend(), ax[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# What to read off, per step size, as intervals over the seeds (mean and 95 % Student-$t$
# interval): where the run starts, $\lambda_{\max}(H_0)\,\eta/2$ (above 1: it starts beyond the
# edge); where it spends the second half of training, the median of $\lambda_{\max}\,\eta/2$ over
# the measurements of the second half of the run (`late_ratio`; the edge-of-stability picture
# predicts about 1, progressive sharpening that has not arrived yet gives less); and how far the
# loss fell. The
# cell prints them; they are measurements of this run, not claims the chapter asserts.


# %% tags=["nbval-ignore-output"]
def trained(fn):  # a run whose loss ended above its start did not train: left out, counted
    return lambda r: fn(r) if r.loss[-1] < r.loss[0] else float("nan")


start = eos.summary(trained(lambda r: r.history[0]["sharpness"] * r.lr / 2))
late = eos.summary(trained(late_ratio))
fell = eos.summary(trained(lambda r: r.loss[-1] / r.loss[0]))
flagged = {lr: sum(h["diverging"] for s in SEEDS for h in eos.get(lr, s).history) for lr in LRS}
print(
    f"{len(LRS) * len(SEEDS)} runs of {STEPS} steps in {eos_seconds:.0f} s; 95% intervals over {len(SEEDS)} seeds"
)
print(
    f"{'eta':>5} {'2/eta':>6} | {'start: lam0 eta/2':>24} | {'late: lam eta/2':>24} | {'final/initial loss':>24} | flagged | not trained"
)
for lr in LRS:
    print(f"{lr:>5} {2 / lr:>6.1f} | {fmt(start[lr]):>24} | {fmt(late[lr]):>24} | {fmt(fell[lr]):>24} | {flagged[lr]:>7} | {late[lr]['dropped']}")  # fmt: skip
products = sum(h["products"] for r in eos.runs for h in r.history)
print(f"Hessian-vector products spent by all monitors: {products} "
      f"({products / sum(len(r.history) for r in eos.runs):.1f} per measurement, warm-started)")  # fmt: skip

# %% [markdown]
# Read the table against the figure. A late ratio whose interval contains 1 is a run sitting at
# the edge; an interval below 1 is sharpening still under way (or a sharpness that settled
# below the edge): with a small step, $2/\eta$ is large and may be out of reach within the run. A
# start ratio above 1 marks the catapult: the first measured drop. The `flagged` column counts
# measurements at which the monitor's divergence rule fired; at the edge it can fire on a short
# burst of rising loss that the run then recovers from, so read it beside the loss curve. A run
# whose loss ended above where it started would be counted under `not trained` and left out of
# the intervals.
#
# The sharpness the monitor records is `hessian_eigs` of the loss at that checkpoint. The next
# cell checks it at the final checkpoint of one run: the value logged *during training*
# (warm-started from the previous measurement, `tol=1e-4`) and a fresh monitor's (`tol=1e-8`)
# against `sl.hessian_eigs`, and the eigenpair against a Hessian-vector product written with plain
# `torch.autograd` (double backward), not the library.

# %% tags=["nbval-check-output"]
# check (an identity): monitor sharpness = hessian_eigs at the final checkpoint (logged during
# training, and measured afresh), and that value is an eigenvalue of the Hessian formed by plain
# double-backward autograd
lr_c, seed_c = LRS[1], SEEDS[0]
net_c = sl.MLP(x.shape[1], 10, width=32, depth=3, activation="tanh").to(DT)
net_c.load_state_dict(eos.get(lr_c, seed_c).state)
fresh = SpectralMonitor((x, Y), loss="mse", quantities=("sharpness",), tol=1e-8, probe_size=None)
lam_mon = fresh.measure(net_c)["sharpness"]
logged = eos.get(lr_c, seed_c).history[-1]  # step STEPS: the final parameters
eig = sl.hessian_eigs(net_c, (x, Y), loss="mse", k=1, tol=1e-10)
lam_ref, u = float(eig.eigenvalues[0]), eig.eigenvectors[:, 0]
params = list(net_c.parameters())
grads = torch.autograd.grad(0.5 * ((net_c(x) - Y) ** 2).sum(1).mean(), params, create_graph=True)
g_flat = torch.cat([g.flatten() for g in grads])
Hu = torch.cat([h.flatten() for h in torch.autograd.grad((g_flat * u).sum(), params)])
same = abs(lam_mon / lam_ref - 1) < 1e-6
same_logged = logged["step"] == STEPS and abs(logged["sharpness"] / lam_ref - 1) < 1e-6
eigenpair = float((Hu - lam_ref * u).norm()) < 1e-6 * lam_ref
print("logged during training = hessian_eigs (relative 1e-6):", same_logged)
print("fresh monitor = hessian_eigs (relative 1e-6):", same)
print("||H u - lambda u|| < 1e-6 lambda with autograd's H u:", eigenpair)
assert same_logged and same and eigenpair

# %% tags=["nbval-ignore-output"]
# the measured differences behind the check
print(f"fresh monitor: relative difference {abs(lam_mon / lam_ref - 1):.1e}")
print(f"logged at step {logged['step']}: {logged['sharpness']:.6f}; hessian_eigs: {lam_ref:.6f} "
      f"(relative difference {abs(logged['sharpness'] / lam_ref - 1):.1e})")  # fmt: skip

# %% [markdown]
# ## 3. Scrubbing through a history
#
# A history is a list of dicts, one per measurement. The explorer below draws one run per step
# size (the first seed): move the slider to a step and each curve is marked at its value there;
# dashed lines are $2/\eta$. (In a static page you see the last step only.)

# %% tags=["nbval-ignore-output"]
sl.widgets.monitor_history_explorer(
    {rf"η = {lr}": eos.get(lr, SEEDS[0]).history for lr in LRS}, keys=("sharpness", "probe_loss")
)

# %% [markdown]
# ## 4. Lazy versus rich: how far the NTK moves
#
# The NTK $K_\theta(x, x') = \nabla_\theta f(x)^\top \nabla_\theta f(x')$ of chapter 03 describes
# training exactly only while it stays where it started. Jacot et al. showed that in the
# infinite-width limit it does (*lazy* training: the network trains like its linearisation);
# Chizat et al. showed that laziness is a matter of scale, not of depth or data, and that narrow
# networks leave it (*rich*, or feature-learning, training). The monitor's `ntk_drift` is
# $\|K_t - K_0\|_F / \|K_0\|_F$ on probe samples.
#
# We train one-hidden-layer tanh MLPs of four widths on a teacher regression task (16 inputs, one
# output, 128 samples), each at the same *relative* step, $\eta = 1/\lambda_{\max}(H_0)$ (half
# the largest stable step at initialisation), for 200 steps, and record the drift at the end.
# With the default initialisation $\lambda_{\max}(H_0)$ grows with the width (roughly in proportion
# to it for wide networks), so this step shrinks roughly like $1/\text{width}$.

# %%
reg_data = sl.load_dataset("teacher_regression", n=128)
xr, yr = (t.to(DT) for t in reg_data.tensors())
WIDTHS, NTK_STEPS = (32, 128, 512, 2048), 200
ntk_probe = (xr[:32], yr[:32])


def width_run(width):
    net = sl.MLP(xr.shape[1], 1, width=width, depth=2, activation="tanh").to(DT)
    lr = 1 / float(sl.hessian_eigs(net, (xr, yr), loss="mse", k=1))
    mon = SpectralMonitor(ntk_probe, loss="mse", every=NTK_STEPS, quantities=("ntk",), lr=lr,
                          num_ntk_samples=32, probe_size=None)  # fmt: skip
    return RunSpec(net, lr, monitor=mon)


lazy = seed_runs(width_run, (xr, yr), WIDTHS, SEEDS, steps=NTK_STEPS)
drift = lazy.summary(lambda r: r.history[-1]["ntk_drift"], level=0.95)
slopes = [loglog_slope(WIDTHS, [lazy.get(w, s).history[-1]["ntk_drift"] for w in WIDTHS]) for s in SEEDS]  # fmt: skip
slope = seed_interval(slopes)
fell_w = lazy.summary(lambda r: r.loss[-1] / r.loss[0])

fig, ax = plt.subplots(figsize=(5.5, 3.8))
for s in SEEDS:
    ax.loglog(WIDTHS, [lazy.get(w, s).history[-1]["ntk_drift"] for w in WIDTHS], "o-", lw=1,
              alpha=0.8, label=f"seed {s}")  # fmt: skip
ax.set(xlabel="width", ylabel=r"$\|K_T - K_0\|_F / \|K_0\|_F$", title=f"NTK drift after {NTK_STEPS} steps")  # fmt: skip
ax.legend()
plt.show()

# %% tags=["nbval-ignore-output"]
print("width | NTK drift after training (95% interval) | final/initial loss")
for w in WIDTHS:
    print(f"{w:>5} | {fmt(drift[w], 4):>40} | {fmt(fell_w[w]):>24}")
print(f"log-log slope of drift against width: {fmt(slope, 2)} (one fit per seed)")

# %% [markdown]
# Every width fits the data (last column: the loss falls to a small fraction of its start), yet
# the kernel that fitted it moved by very different amounts: the narrowest network's kernel changed by a visible fraction of its
# size, the widest one's hardly at all, and the fitted slope says how fast the drift falls.
# The infinite-width theory is stated for the NTK parametrisation, where the drift falls like
# $\text{width}^{-1/2}$ at a fixed step; our networks use the standard parametrisation with a
# step shrinking roughly like $1/\text{width}$, which is lazier still, so a steeper slope than $-1/2$ is
# no contradiction. Compare with yours: the slope is a measurement of this setting only.
#
# **Exercise 2.** Compute the drift by hand. Complete `my_ntk(model, x)`: the $n \times n$ NTK Gram
# $K_{ij} = \nabla_\theta f(x_i)^\top \nabla_\theta f(x_j)$ of a one-output model, from the
# per-sample parameter gradients (`torch.func.jacrev` of `torch.func.functional_call(model,
# params, (x,))` with respect to `params = dict(model.named_parameters())`, flattened and
# concatenated into a matrix $J$, then $K = J J^\top$). The check uses it on the width-32 network
# of the first seed, before and after training, and compares
# $\|K_T - K_0\|_F/\|K_0\|_F$ with what the monitor recorded.


# %% tags=["exercise"]
def my_ntk(model, x):
    raise NotImplementedError("complete my_ntk: per-sample parameter gradients J, then J J^T")


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_2(model, x):
    params = {k: v.detach() for k, v in model.named_parameters()}
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(model, p, (x,))[:, 0])(params)
    J = torch.cat([j.flatten(1) for j in jac.values()], 1)
    return J @ J.T


# %% tags=["nbval-check-output"]
# check exercise 2 against the monitor's recorded drift (its NTK comes from sl.ntk_gram)
w0, s0 = WIDTHS[0], SEEDS[0]
torch.manual_seed(s0)  # the seed rebuilds the initial network of that run
net_init = sl.MLP(xr.shape[1], 1, width=w0, depth=2, activation="tanh").to(DT)
net_final = sl.MLP(xr.shape[1], 1, width=w0, depth=2, activation="tanh").to(DT)
net_final.load_state_dict(lazy.get(w0, s0).state)
recorded = lazy.get(w0, s0).history[-1]["ntk_drift"]


def drift_by(fn):
    K0, K1 = fn(net_init, ntk_probe[0]), fn(net_final, ntk_probe[0])
    return float(torch.linalg.norm(K1 - K0) / torch.linalg.norm(K0))


judge_2 = lambda fn: ex.close(recorded, rtol=1e-6, names="the drift from my_ntk")(drift_by(fn))  # noqa: E731
ex.check(2, my_ntk, judge_2, solution=_solution_2)

# %% [markdown]
# ## 5. A spectral regulariser, seen through training
#
# Chapter 07 added the penalty R1, $\lambda\,\mathbb{E}_x \|J_f(x)\|_F^2$ (random projections, on
# 32 samples of each batch), to the loss and compared the *trained* models. With a monitor we see
# it act: the MLP of §2 at $\eta = 0.1$ for 300 steps, without and with R1 at $\lambda = 0.03$,
# three seeds each. The monitor watches the input Jacobian on 32 **held-out** test images: its
# largest singular value $\sigma_1$ (the worst-case sensitivity) and its spectral entropy (in
# nats: the shape of the spectrum, blind to its scale), averaged over the images.

# %%
x_test, Y_test, _ = images("test", 32)
STRENGTHS, REG_STEPS = (0.0, 0.03), 300


def reg_run(strength):
    net = sl.MLP(x.shape[1], 10, width=32, depth=3, activation="tanh").to(DT)
    mon = SpectralMonitor((x_test, Y_test), loss="mse", every=50, quantities=("input_jacobian",),
                          lr=0.1, num_jacobian_samples=32, probe_size=None)  # fmt: skip
    penalty = sl.make_regularizer("jacobian_frobenius", strength) if strength else None
    return RunSpec(net, 0.1, monitor=mon, extra_loss=penalty)


regd = seed_runs(reg_run, (x, Y), STRENGTHS, SEEDS, steps=REG_STEPS)
fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
for i, lam in enumerate(STRENGTHS):
    for s in SEEDS:
        r = regd.get(lam, s)
        lab = f"λ = {lam:g}" if s == SEEDS[0] else None
        ax[0].plot(*r.series("jac_top"), "o-", color=f"C{i}", ms=3, lw=1, label=lab)
        ax[1].plot(*r.series("jac_entropy"), "o-", color=f"C{i}", ms=3, lw=1, label=lab)
ax[0].set(xlabel="step", ylabel=r"$\sigma_1(J_f)$", title=r"$\sigma_1$ of the input Jacobian")
ax[1].set(xlabel="step", ylabel="nats", title="its spectral entropy")
ax[0].legend()
fig.tight_layout()
plt.show()


# %% tags=["nbval-ignore-output"]
# paired by seed (same initialisation, same data): the change that R1 makes at the end of training
def final(key):
    return lambda r: r.history[-1][key]


for key, name in [("jac_top", "sigma_1"), ("jac_entropy", "entropy (nats)"), ("probe_loss", "test loss")]:  # fmt: skip
    base = np.array(regd.values(final(key), STRENGTHS[0]))
    pen = np.array(regd.values(final(key), STRENGTHS[1]))
    print(f"{name:>15}: {fmt(seed_interval(base))} -> {fmt(seed_interval(pen))}; "
          f"paired ratio {fmt(seed_interval(pen / base))}")  # fmt: skip
train_ratio = seed_interval(
    np.array(regd.values(lambda r: r.loss[-1], STRENGTHS[1]))
    / np.array(regd.values(lambda r: r.loss[-1], STRENGTHS[0]))
)
print(f"  training loss: paired ratio {fmt(train_ratio)} (the price of the penalty)")

# %% [markdown]
# **Exercise 3 (think).** R1 penalises $\|J_f\|_F^2 = \sum_k \sigma_k^2$. Before reading the
# printed ratios: should it move $\sigma_1$ or the spectral entropy more, and in which direction
# should the entropy move, if at all?

# %% [markdown] tags=["solution"]
# <details><summary>Answer (click to show)</summary>
#
# $\sum_k \sigma_k^2$ is dominated by the largest singular values, so the penalty pulls hardest on
# $\sigma_1$: its ratio should fall well below 1. The entropy depends only on the normalised
# spectrum $p_k = \sigma_k^2 / \sum_j \sigma_j^2$, so shrinking every $\sigma_k$ by one factor leaves
# it unchanged; it moves only because the top is pulled down more than the rest, which flattens
# the spectrum, so if it moves, it rises, and by much less than $\sigma_1$ falls. Compare with the
# paired ratios printed above, and with chapter 07's trained-model comparison.
#
# </details>

# %% [markdown]
# ## Summary
#
# * `SpectralMonitor(probe, every=k, quantities=...)` measures, on a fixed probe, the sharpness
#   beside $2/\eta$, the NTK's top eigenvalue, condition number and drift, the input Jacobian's
#   $\sigma_1$ and entropy, and the layers' spectra; `mon.step(model, optimizer)` in any loop,
#   `mon.history` to read them.
# * On a quadratic the sharpness is constant and $2/\lambda_{\max}$ separates decay from
#   divergence; the monitor records the closed-form value and flags the divergent run.
# * On a network, full-batch gradient descent is expected to sharpen until
#   $\lambda_{\max} \approx 2/\eta$ and hover there (the edge of stability) when the step is large
#   enough to reach it within the run; we measure it per step size as intervals over seeds, never
#   as a yes/no.
# * The NTK's drift against width is a measured slope: in this chapter's setting, wide networks
#   trained lazily and narrow ones moved their kernel.
# * A Jacobian penalty can be watched during training: the monitor records $\sigma_1$ and the
#   entropy of the input Jacobian at every measurement, and the paired ratios say how much each
#   moved.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 11 ran in {time.perf_counter() - _chapter_start:.0f} s")
