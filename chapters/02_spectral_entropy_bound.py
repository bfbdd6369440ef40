# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 (continued) — Typical versus worst case: the entropy bound
#
# > Random noise is not the worst case: how much it is amplified on average is fixed by the whole
# > spectrum (through $\|J\|_F^2$), and the spectral entropy of the previous chapter gives an
# > upper bound on it. This chapter states and checks that bound, finds where it is tight and where
# > it is loose, and compares the spectra of trained and untrained networks.
#
# **Learning objectives.** After this chapter you can
#
# 1. state and check by Monte Carlo the typical-sensitivity theorem
#    $\mathbb{E}\|J\delta\|^2 = \frac{\epsilon^2}{d}\|J\|_F^2 \le K\epsilon^2 e^{SE}$, compared with the
#    worst case $\epsilon^2\sigma_1^2$;
# 2. say when the entropy bound is tight and when it is loose;
# 3. compare the spectra of trained and untrained networks on the digits.
#
# **Prerequisites.** Chapter 02 (`02_spectral_entropy`: spectral entropy, stable and effective
# rank, the Rényi chain $\mathrm{srank} \le \mathrm{PR} \le e^{SE} \le \mathrm{rank}$); expectation
# and variance of a random vector.
#
# **Approximate time:** about 40 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 42 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 9; the last cell prints your run's time.
#
# > **Sources and choices.** The spectral entropy of the input Jacobian as a bound on the typical
# > sensitivity comes from Katende, *A Unified Matrix-Spectral Framework for Stability and Interpretability in Deep Learning* (arXiv 2602.01136).
# > The energy normalisation $p_k = \sigma_k^2/\sum_j\sigma_j^2$ and the explicit constant
# > $K = \sigma_1^2/d$ in §1 are this course's choices: under them the theorem is an identity plus the
# > Rényi chain, derived below, so every step can be checked.

# %% tags=["nbval-ignore-output"]
import math
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
# The four models of the previous chapter, rebuilt with the same seeds: an MLP and a small CNN with
# max pooling, each at initialisation (with small random biases, which move every ReLU unit off its
# kink) and after a short training run on the bundled $8\times 8$ digits, in float64.

# %%
train_set = sl.load_dataset("digits", split="train")
test_set = sl.load_dataset("digits", split="test")
x_test, y_test = test_set.tensors()
x_eval = x_test[:120].double()
d = x_eval[0].numel()

models = {}
for arch in ("MLP", "CNN"):
    for state in ("random", "trained"):
        torch.manual_seed(0)
        m = (
            sl.MLP(64, 10, width=64, depth=3, gain=2**0.5)
            if arch == "MLP"
            else sl.SmallCNN(1, 10, image_size=8, channels=(8, 16), pool="max")
        )
        if state == "trained":
            sl.train(m, train_set, epochs=6, lr=3e-3, batch_size=64, seed=0, progress=False)
        else:  # small random biases (see above)
            with torch.no_grad():
                for p in m.parameters():
                    if p.dim() == 1:
                        p.normal_(0.0, 0.1)
        models[f"{state} {arch}"] = m.double().eval()

J = {name: sl.input_jacobian(m, x_eval) for name, m in models.items()}  # (120, 10, 64) each
for name, m in models.items():
    print(f"{name:12s} test accuracy {sl.evaluate(m, test_set)[1]:.2f}, J {tuple(J[name].shape)}")

# %%
tail_spectrum = torch.tensor([1.0] + [0.3] * 9, dtype=D64)  # one big value plus a flat tail

# %% [markdown]
# ## 1. Typical versus worst case: the entropy bound
#
# Let $\delta$ be **isotropic**: $\mathbb{E}\delta = 0$, $\mathbb{E}\,\delta\delta^\top = (\epsilon^2/d) I_d$ —
# for example $\delta \sim \mathcal{N}(0, (\epsilon^2/d) I)$ or uniform on the sphere of radius
# $\epsilon$. Then, for any $J \in \mathbb{R}^{C\times d}$,
#
# $$\mathbb{E}\|J\delta\|^2 = \operatorname{tr}\big(J\, \mathbb{E}[\delta\delta^\top] J^\top\big)
# = \frac{\epsilon^2}{d}\|J\|_F^2 = \frac{\epsilon^2}{d}\sigma_1^2\, \mathrm{srank}(J)
# \;\le\; \underbrace{\frac{\sigma_1^2}{d}}_{K}\,\epsilon^2\, e^{SE(J)}
# \;\le\; \frac{\epsilon^2}{d}\sigma_1^2\, \mathrm{rank}(J) \;\ll\; \epsilon^2\sigma_1^2 .$$
#
# The first equality is exact; the inequalities are the Rényi chain of the previous chapter. So the typical-to-worst
# ratio is $\mathrm{srank}/d \le e^{SE}/d$: **a low-entropy (concentrated) spectrum certifies that
# random perturbations are amplified far less than the worst one**. This is Theorem 5.1 of the Unified
# Matrix-Spectral Framework paper,
# $\mathbb{E}_\delta\|f(x+\delta) - f(x)\|^2 \le K\epsilon^2 e^{H_S(J_f(x))}$, with the explicit constant
# $K = \sigma_1^2/d$ derived in the display above; for a smooth network it holds
# up to an $O(\epsilon^3)$ remainder, and exactly for the linearisation.
#
# `sl.sensitivity_bounds(J, eps)` computes all four numbers;
# `sl.sensitivity.monte_carlo_sensitivity(model, x, eps, n_draws)` estimates the left side by sampling.

# %%
eps = 1e-2
n_show = 12
gen = torch.Generator().manual_seed(0)
b = sl.sensitivity_bounds(J["trained MLP"][:n_show], eps)
mc = sl.sensitivity.monte_carlo_sensitivity(
    models["trained MLP"], x_eval[:n_show], eps, 4000, generator=gen
)
print(b)
sl.plots.plot_sensitivity_bounds(b, mc, title=f"trained MLP, eps={eps} (SE in nats, E2)")
plt.show()


# %%
# independent numpy references for the checks below (numpy's SVD, the formulas written out)
def numpy_sigma1_sq_and_se(Jn):
    """sigma_1^2 and the energy-normalised SE (nats) of each matrix, by numpy's SVD."""
    sv = np.linalg.svd(Jn.numpy(), compute_uv=False)
    p = sv**2 / (sv**2).sum(-1, keepdims=True)
    return sv[:, 0] ** 2, -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1)


def entropy_bound_numpy(Jn, eps):
    """Theorem 5.1's right side (s_1^2/d) eps^2 exp(SE), SE in the energy normalisation (numpy)."""
    s1sq, se = numpy_sigma1_sq_and_se(Jn)
    return s1sq / Jn.shape[-1] * eps**2 * np.exp(se)


# %% tags=["nbval-check-output"]
# check (Theorem 5.1 of the Unified Matrix-Spectral Framework paper): on every model, Monte Carlo E||f(x+delta)-f(x)||^2 (M = 4000
# Gaussian draws) matches (eps^2/d)||J||_F^2 within 5 standard errors; the library's entropy bound
# equals an independent numpy value (p_k = s_k^2 / sum s^2, SE = -sum p log p, (s_1^2/d) eps^2 e^SE),
# so a wrong normalisation or constant fails here; and typical <= entropy bound <= rank bound <= worst
# case. For Gaussian delta the relative standard error of the mean of ||J delta||^2 is
# sqrt(2 / (PR * M)), PR the participation ratio.
mc_ok, pin_ok, chain_ok = {}, {}, {}
M = 4000
for name, m in models.items():
    g = torch.Generator().manual_seed(1)
    b_n = sl.sensitivity_bounds(J[name][:10], eps)
    mc_n = sl.sensitivity.monte_carlo_sensitivity(m, x_eval[:10], eps, M, generator=g)
    tol = 5 * torch.sqrt(2 / (sl.spectra.participation_ratio(J[name][:10]) * M))
    mc_ok[name] = bool(((mc_n / b_n.typical - 1).abs() < tol).all())
    pin_ok[name] = bool(
        np.allclose(
            b_n.entropy_bound.numpy(), entropy_bound_numpy(J[name][:10], eps), rtol=1e-10, atol=0
        )
    )
    chain_ok[name] = bool(b_n.holds().all())
    print(
        f"{name:12s} MC matches (eps^2/d)||J||_F^2: {mc_ok[name]} | entropy bound = numpy value: "
        f"{pin_ok[name]} | chain holds: {chain_ok[name]}"
    )
assert all(mc_ok.values()) and all(pin_ok.values()) and all(chain_ok.values())

# %% [markdown]
# The statement is about the *linearisation*. For the network itself the difference is a
# higher-order remainder, so the relative gap between Monte Carlo (with the same draws) and the
# linear prediction shrinks as $\epsilon \to 0$:

# %% tags=["nbval-check-output"]
# check: the network's mean squared change approaches the linear one as eps -> 0
m_tanh = sl.MLP(64, 10, width=64, depth=3, activation="tanh", gain=2.0).double()
J_tanh = sl.input_jacobian(m_tanh, x_eval[:5])
gaps = []
for e in (1.0, 0.1, 0.01):
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    net = sl.sensitivity.monte_carlo_sensitivity(m_tanh, x_eval[:5], e, 2000, generator=g1)
    lin = sl.sensitivity.monte_carlo_sensitivity(J_tanh, None, e, 2000, generator=g2)
    gaps.append(float(((net - lin).abs() / lin).max()))
print(
    "relative gap decreases as eps shrinks:",
    gaps[0] > gaps[1] > gaps[2],
    "| below 1e-2 at eps=0.01:",
    gaps[2] < 1e-2,
)
assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-2

# %% [markdown]
# **Over a data set.** Averaging over inputs, with the single constant $K = \max_x\sigma_1(x)^2/d$
# (`sl.sensitivity.entropy_bound_constant`):
# $\mathbb{E}_x\mathbb{E}_\delta\|J_f(x)\delta\|^2 \le K\epsilon^2\, \mathbb{E}_x e^{SE(J_f(x))}$.

# %% tags=["nbval-check-output"]
# check: the data-set form of Theorem 5.1 with K = max_x sigma_1(x)^2 / d, on all the evaluation digits;
# the library's K and right side equal independent numpy values
# (the values themselves, which move in the last digit with the trained weights, are printed in
# the next cell; this one prints only the verdicts)
ds_ok, ds_values = {}, {}
for name, Jn in J.items():
    lhs = float((eps**2 / d * (Jn**2).sum((1, 2))).mean())
    rhs = float(sl.sensitivity.entropy_bound_constant(Jn) * eps**2 * sl.effective_rank(Jn).mean())
    s1sq, se = numpy_sigma1_sq_and_se(Jn)
    rhs_np = float(s1sq.max() / d * eps**2 * np.exp(se).mean())
    ds_ok[name] = lhs <= rhs and math.isclose(rhs, rhs_np, rel_tol=1e-10)
    ds_values[name] = (lhs, rhs, rhs_np)
    print(f"{name:12s} E_x typical <= K eps^2 E_x exp(SE), library = numpy:", ds_ok[name])
assert all(ds_ok.values())

# %% tags=["nbval-ignore-output"]
for name, (lhs, rhs, rhs_np) in ds_values.items():
    print(f"{name:12s} E_x typical {lhs:.3e} <= K eps^2 E_x exp(SE) {rhs:.3e} (numpy {rhs_np:.3e})")

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** Use perturbations uniform on the sphere of radius $\epsilon$
# (`distribution="sphere"`) in `sl.sensitivity.monte_carlo_sensitivity`, on the *linearisation* (pass the Jacobian
# stack `J["trained MLP"][:10]` and `None` for `x`), with 4000 draws and `eps`. Does the identity
# $\mathbb{E}\|J\delta\|^2 = (\epsilon^2/d)\|J\|_F^2$ still hold? Why?

# %% tags=["exercise"]
gen_ex = torch.Generator().manual_seed(5)
mc_sphere = ...  # (10,) Monte Carlo means of ||J delta||^2 for sphere noise


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
# Yes: uniform noise on the sphere of radius eps also has E[delta delta^T] = (eps^2/d) I (by symmetry,
# and its trace is eps^2), and the identity uses only this second moment.
def _solution_1():
    return sl.sensitivity.monte_carlo_sensitivity(
        J["trained MLP"][:10],
        None,
        eps,
        4000,
        distribution="sphere",
        generator=torch.Generator().manual_seed(5),
    )


# %% tags=["nbval-check-output"]
# check exercise 1: against (eps^2/d)||J||_F^2 from numpy, within 5 Gaussian standard errors
# (sphere noise has a smaller variance than Gaussian noise, so this tolerance is generous)
J_np = J["trained MLP"][:10].numpy()
exact = eps**2 / d * (J_np**2).sum((1, 2))
sv10 = np.linalg.svd(J_np, compute_uv=False)
pr = (sv10**2).sum(1) ** 2 / (sv10**4).sum(1)
tol_1 = 5 * np.sqrt(2 / (pr * 4000))


def judge_1(answer):
    got = np.asarray(answer, dtype=float)
    if got.shape != exact.shape:
        return f"mc_sphere has shape {got.shape}, expected {exact.shape}"
    bad = np.abs(got / exact - 1) >= tol_1
    if bad.any():
        return f"mc_sphere is off (eps^2/d)||J||_F^2 by more than 5 standard errors at {bad.sum()} of 10"
    return None


solution_1 = _solution_1()
ex.check(1, mc_sphere, judge_1, solution=solution_1)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
rel = np.abs(np.asarray(solution_1) / exact - 1)
print(f"largest relative gap to (eps^2/d)||J||_F^2: {rel.max():.3%}")

# %% [markdown]
# **Exercise 2.** The typical-to-worst ratio is $\mathbb{E}\|J\delta\|^2 / (\epsilon^2\sigma_1^2) =
# \mathrm{srank}(J)/d$. Compute it for the trained CNN at all 360 test digits (in float64) and find
# the class whose median ratio is the largest: the most "worst-case-like" digit.

# %% tags=["exercise"]
x_all64 = x_test.double()
ratio_cnn = ...  # (360,) typical / worst case
most_worst_case_like = ...  # int: the class with the largest median ratio


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_2():
    b_cnn = sl.sensitivity_bounds(sl.input_jacobian(models["trained CNN"], x_all64), eps)
    ratio = b_cnn.typical / b_cnn.worst_case
    return ratio, max(range(10), key=lambda c: ratio[y_test == c].median().item())


# %% tags=["nbval-check-output"]
# check exercise 2: ||J||_F^2 / (d sigma_1^2) from numpy's SVD of autograd Jacobians
J_cnn = torch.stack(
    [
        torch.autograd.functional.jacobian(lambda v: models["trained CNN"](v[None])[0], xi).reshape(
            10, -1
        )
        for xi in x_all64
    ]
).numpy()
sv_cnn = np.linalg.svd(J_cnn, compute_uv=False)
ratio_ref = (sv_cnn**2).sum(1) / (d * sv_cnn[:, 0] ** 2)
med = [np.median(ratio_ref[y_test.numpy() == c]) for c in range(10)]
judge_2 = ex.close(
    (ratio_ref, int(np.argmax(med))), rtol=1e-8, names=("ratio_cnn", "most_worst_case_like")
)
solution_2 = _solution_2()
ex.check(2, (ratio_cnn, most_worst_case_like), judge_2, solution=solution_2)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print(
    f"most worst-case-like class: {solution_2[1]} (median ratio {max(med):.3f}; "
    f"the smallest class median is {min(med):.3f})"
)

# %% [markdown]
# **Exercise 3 (think).** Non-isotropic noise: let $\delta \sim \mathcal{N}(0, \Sigma)$. Show that
# $\mathbb{E}\|J\delta\|^2 = \operatorname{tr}(J\Sigma J^\top)$, and find noise for which the typical
# case equals the worst case.

# %% [markdown] tags=["solution"]
# <details><summary>Answer (click to show)</summary>
#
# $\mathbb{E}\|J\delta\|^2 = \mathbb{E}\operatorname{tr}(J\delta\delta^\top J^\top) =
# \operatorname{tr}(J\Sigma J^\top)$. With $\Sigma = \epsilon^2 v_1 v_1^\top$ (noise only along the top
# right singular vector) this is $\epsilon^2\sigma_1^2$, the worst case. Isotropy is what makes the
# typical case small.
#
# </details>

# %% [markdown]
# ## 2. Where the entropy bound is tight, and where it is loose
#
# The only slack in $\|J\|_F^2 \le \sigma_1^2 e^{SE}$ is $\mathrm{srank} \le e^{SE}$. It is an
# equality for a **flat** spectrum over its rank (both equal $r$), and it is loose when one
# direction dominates while the rest form a flat tail: then $\mathrm{srank} \approx 1 + $ (tail
# energy) is small, but the tail's many small $p_k$ carry a lot of entropy. The ratio is at most
# $\mathrm{rank}$. Across real Jacobians it is modest (the cell prints the median and the largest
# ratio per model, next to the rank):

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for name, Jn in J.items():
    s = sl.spectra.spectral_summary(Jn)
    ratio = (s.effective_rank / s.stable_rank).numpy()
    print(
        f"{name:12s} exp(SE)/srank: median {np.median(ratio):.2f}, max {ratio.max():.2f} "
        f"(rank {min(Jn.shape[-2:])})"
    )
    axes[0].hist(ratio, bins=25, alpha=0.6, label=name)
axes[0].set(
    xlabel=r"$e^{SE}/\mathrm{srank}$ (entropy bound / typical)",
    ylabel="digits",
    title="slack of the entropy bound (SE in nats)",
)
axes[0].legend()
b_all = sl.sensitivity_bounds(J["trained MLP"], eps)
axes[1].hist((b_all.typical / b_all.worst_case).numpy(), bins=25, alpha=0.7, label="typical/worst")
axes[1].hist(
    (b_all.entropy_bound / b_all.worst_case).numpy(),
    bins=25,
    alpha=0.7,
    label=r"$e^{SE}/d$ (entropy certificate)",
)
axes[1].set(
    xlabel="ratio to the worst case", ylabel="digits", title="trained MLP: typical << worst"
)
axes[1].legend()
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
# check: tight for a flat spectrum, loose (ratio > 2) for one big + flat tail, never above rank
flat_b = sl.sensitivity_bounds(torch.eye(10, 64, dtype=D64), eps)
tail = torch.cat([torch.diag(tail_spectrum), torch.zeros(10, 54, dtype=D64)], 1)
tail_b = sl.sensitivity_bounds(tail, eps)
tight = math.isclose(float(flat_b.entropy_bound), float(flat_b.typical), rel_tol=1e-12)
loose = float(tail_b.entropy_bound / tail_b.typical) > 2
bounded = all(
    bool((sl.effective_rank(Jn) / sl.stable_rank(Jn) <= 10 + 1e-9).all()) for Jn in J.values()
)
print(
    "tight when flat:",
    tight,
    "| loose for big + flat tail:",
    loose,
    "| exp(SE)/srank <= rank:",
    bounded,
)
assert tight and loose and bounded

# %% [markdown]
# ## 3. Trained versus untrained spectra
#
# How does training reshape the Jacobian spectrum? Left: median normalised spectra
# $\sigma_k/\sigma_1$ over the 120 test digits; right: the distribution of the spectral entropy
# (in **bits** here, base 2, so the flat maximum is $\log_2 10 \approx 3.32$).

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
for name, Jn in J.items():
    s = sl.singular_values(Jn)
    axes[0].semilogy(range(1, 11), (s / s[:, :1]).median(0).values.numpy(), "o-", ms=3, label=name)
    axes[1].hist(sl.spectral_entropy(Jn, base=2).numpy(), bins=20, alpha=0.6, label=name)
axes[0].set(xlabel="rank k", ylabel=r"median $\sigma_k/\sigma_1$", title="normalised spectra")
axes[0].legend()
axes[1].axvline(math.log2(10), color="0.4", ls="--")
axes[1].set(xlabel="SE (bits, E2)", ylabel="digits", title="spectral entropy")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% tags=["nbval-ignore-output"]
for name, Jn in J.items():
    s = sl.spectra.spectral_summary(Jn)
    print(
        f"{name:12s} median sigma_1 {s.sigma_1.median():7.3f}  mean SE {s.entropy.mean():.3f} nats"
        f"  median cond {s.condition.median():8.1f}  median cond_median "
        f"{s.condition_median.median():6.2f}"
    )

# %% [markdown]
# Typically training raises $\sigma_1$ (the network becomes more sensitive along the directions it
# uses to separate classes) and changes the shape of the spectrum; the numbers above are for this
# seed and these short runs — rerun with other seeds before generalising.
#
# **Computing singular values fast.** A Jacobian is wide ($C = 10 \ll d$). `sl.singular_values`
# then uses the $C\times C$ Gram matrix $JJ^\top$ (one product and a small eigendecomposition
# instead of an SVD of $J$), and falls back to
# a full SVD for any matrix whose smallest singular value is below $10\sqrt{\varepsilon}\,\sigma_1$,
# where squaring would lose it (`method="svd"` or `"gram"` forces a route).

# %% [markdown]
# ## 4. Play: shape a spectrum
#
# Pick a test digit (trained MLP) and flatten its Jacobian spectrum toward uniform with `t`
# (same $\|J\|_F$). Watch $SE$ (choose nats or bits), the stable and effective ranks, both condition
# numbers and the three sensitivities ($\epsilon = 0.1$) move.

# %% tags=["nbval-ignore-output"]
sl.widgets.entropy_explorer(J["trained MLP"], eps=0.1)

# %% [markdown]
# ## Summary
#
# * For isotropic noise, $\mathbb{E}\|J\delta\|^2 = (\epsilon^2/d)\|J\|_F^2 \le K\epsilon^2 e^{SE}$: a
#   concentrated spectrum certifies that typical noise is amplified far less than the worst case
#   $\epsilon^2\sigma_1^2$; for the network itself the gap to the linearisation shrinks with $\epsilon$.
# * The entropy bound is tight for flat spectra and loose for one large value plus a flat tail.
# * Training reshapes the Jacobian spectrum; the cells print by how much for this seed.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 02 (continued) ran in {time.perf_counter() - _chapter_start:.0f} s")
