# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 — Singular spectra, spectral entropy, typical versus worst case
#
# > The largest singular value of $J_f(x)$ says how much the *worst* input perturbation is
# > amplified. Random noise is not the worst case: how much it is amplified on average is fixed by
# > the whole spectrum (through $\|J\|_F^2$), and the spectral entropy gives an upper bound on it.
#
# **Learning objectives.** After this chapter you can
#
# 1. read $\sigma_1(J_f(x))$ as the worst-case sensitivity and prove $\|J v\| \le \sigma_1 \|v\|$;
# 2. compute the spectral entropy (energy and amplitude normalisations, nats or bits), the stable
#    rank, the participation ratio and the effective rank, and order them;
# 3. explain with Schur-concavity why a flatter spectrum has higher entropy and a smaller condition
#    number — and where that intuition fails;
# 4. state and check by Monte Carlo the typical-sensitivity theorem
#    $\mathbb{E}\|J\delta\|^2 = \frac{\epsilon^2}{d}\|J\|_F^2 \le K\epsilon^2 e^{SE}$, compared with the
#    worst case $\epsilon^2\sigma_1^2$;
# 5. compare the spectra of trained and untrained networks on the digits.
#
# **Prerequisites.** Chapters 00 and 01; the SVD; Shannon entropy $-\sum_k p_k \log p_k$; expectation
# and variance of a random vector.
#
# **Approximate time:** 75 minutes (the cells ran in 28 s, one chapter at a time, on this project's
# 2-core Linux test server shared with other jobs, load average 7; the last cell prints your run's
# time).
#
# **Conventions.** The spectral entropy is the energy (E2) normalisation in nats unless a figure
# says otherwise ($p_k = \sigma_k^2/\sum_j \sigma_j^2$, the normalisation under which the
# typical-sensitivity theorem of §4 holds with the constant used here). `base=2` gives bits.
#
# > **Sources and choices.** The spectral entropy of the input Jacobian, its role as a bound on the
# > typical sensitivity, and the monotonicity of §3 come from Katende, *A Unified Matrix-Spectral Framework for Stability and Interpretability in Deep Learning* (arXiv 2602.01136).
# > The energy normalisation $p_k = \sigma_k^2/\sum_j\sigma_j^2$ and the explicit constant
# > $K = \sigma_1^2/d$ in §4 are this course's choices: under them the theorem is an identity plus the
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
# ## 0. Four models and their Jacobians
#
# Two architectures (an MLP and a small CNN with max pooling), each at initialisation and after a
# short training run on the bundled $8\times 8$ digits ($d = 64$ inputs, $C = 10$ classes). We work
# in float64 so that every check below is about mathematics, not rounding.

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
        else:  # small random biases: see the note below
            with torch.no_grad():
                for p in m.parameters():
                    if p.dim() == 1:
                        p.normal_(0.0, 0.1)
        models[f"{state} {arch}"] = m.double().eval()

J = {name: sl.input_jacobian(m, x_eval) for name, m in models.items()}  # (120, 10, 64) each
for name, m in models.items():
    print(f"{name:12s} test accuracy {sl.evaluate(m, test_set)[1]:.2f}, J {tuple(J[name].shape)}")

# %% [markdown]
# **A pitfall worth knowing.** The library initialises biases to zero. A digit has many pixels
# that are exactly 0, so a bias-free convolution gives pre-activations *exactly* 0 over the
# background: the ReLU units sit on their kink, where $J_f$ is not defined (autograd silently uses
# $\phi'(0) = 0$), and the first-order statements below fail for that model. The product formula
# holds only almost everywhere (chapter 01). We give the random models small random biases
# $\mathcal{N}(0, 0.1^2)$, which moves every unit off its kink.
#
# ## 1. The spectral norm is the worst case
#
# Write the SVD $J = \sum_k \sigma_k u_k v_k^\top$. For any $\delta = \sum_k c_k v_k + \delta_\perp$,
# $\|J\delta\|^2 = \sum_k \sigma_k^2 c_k^2 \le \sigma_1^2 \sum_k c_k^2 \le \sigma_1^2 \|\delta\|^2$, with
# equality for $\delta \parallel v_1$. So
# $\sup_{\|\delta\| = \epsilon} \|J\delta\|^2 = \epsilon^2\sigma_1^2$: the **worst-case** squared
# sensitivity of the linearised network.

# %% tags=["nbval-check-output"]
# check: ||J v|| <= sigma_1 ||v|| for 1000 random v, with equality at the top right singular vector
Jm = J["trained MLP"]
U, S, Vh = torch.linalg.svd(Jm, full_matrices=False)
v = torch.randn(len(Jm), 1000, d, dtype=D64)
stretch = torch.einsum("ncd,nmd->nmc", Jm, v).norm(dim=-1) / v.norm(dim=-1)
never_above = bool((stretch <= S[:, :1] * (1 + 1e-12)).all())
attained = torch.allclose(torch.einsum("ncd,nd->nc", Jm, Vh[:, 0]).norm(dim=1), S[:, 0])
print("||Jv|| <= sigma_1 ||v||:", never_above, "| equality at v_1:", attained)
assert never_above and attained

# %% [markdown]
# ## 2. Spectral entropy and effective rank
#
# Turn the spectrum into a probability vector and take its Shannon entropy:
#
# $$p_k = \frac{\sigma_k^2}{\sum_j \sigma_j^2}\ \ \text{(E2, energy; default)}, \qquad
# p_k = \frac{\sigma_k}{\sum_j \sigma_j}\ \ \text{(E1, amplitude)}, \qquad
# SE(J) = -\sum_k p_k \log p_k .$$
#
# $SE = 0$ for a rank-one matrix (all energy in one direction) and $SE = \log r$ for a flat spectrum
# over rank $r$. Zero singular values (below the rank tolerance $\max(m,n)\,\varepsilon\,\sigma_1$)
# contribute $0\log 0 = 0$. Related summaries:
#
# * stable rank $\mathrm{srank} = \|J\|_F^2 / \|J\|_2^2 = 1/\max_k p_k$,
# * participation ratio $\mathrm{PR} = (\sum\sigma^2)^2/\sum\sigma^4 = 1/\sum_k p_k^2$,
# * effective rank $\mathrm{erank} = e^{SE}$.
#
# They are Rényi entropies of orders $\infty$, 2 and 1 of the same $p$, hence ordered:
# $1 \le \mathrm{srank} \le \mathrm{PR} \le e^{SE} \le \mathrm{rank}$.

# %%
examples = {
    "flat (identity)": torch.ones(10, dtype=D64),
    "rank one": torch.tensor([1.0] + [0.0] * 9, dtype=D64),
    "geometric 0.5^k": 0.5 ** torch.arange(10, dtype=D64),
    "one big + flat tail": torch.tensor([1.0] + [0.3] * 9, dtype=D64),
}
print(
    f"{'spectrum':22s} {'SE nats':>8s} {'SE bits':>8s} {'SE E1':>7s} {'srank':>6s} {'PR':>6s} "
    f"{'erank':>6s} {'normalized':>10s}"
)
for name, s in examples.items():
    kw = {"kind": "singular"}
    print(
        f"{name:22s} {float(sl.spectral_entropy(s, **kw)):8.3f} "
        f"{float(sl.spectral_entropy(s, base=2, **kw)):8.3f} "
        f"{float(sl.spectral_entropy(s, 'amplitude', **kw)):7.3f} "
        f"{float(sl.stable_rank(s, **kw)):6.2f} {float(sl.spectra.participation_ratio(s, **kw)):6.2f} "
        f"{float(sl.effective_rank(s, **kw)):6.2f} "
        f"{float(sl.spectral_entropy(s, normalized=True, **kw)):10.3f}"
    )

# %% tags=["nbval-check-output"]
# check: closed forms and invariances of the spectral entropy
flat_ok = math.isclose(float(sl.spectral_entropy(torch.eye(10, 64, dtype=D64))), math.log(10))
bits_ok = math.isclose(float(sl.spectral_entropy(torch.eye(8, dtype=D64), base=2)), 3.0)
rank1_ok = abs(float(sl.spectral_entropy(torch.ones(10, 64, dtype=D64)))) < 1e-12
q1, _ = torch.linalg.qr(torch.randn(10, 10, dtype=D64))
q2, _ = torch.linalg.qr(torch.randn(64, 64, dtype=D64))
se = sl.spectral_entropy(Jm)
invariant = bool(
    torch.allclose(sl.spectral_entropy(3.7 * Jm), se)
    and torch.allclose(sl.spectral_entropy(q1 @ Jm @ q2), se)
)
print(
    "flat: log r:",
    flat_ok,
    "| 8 flat in bits: 3:",
    bits_ok,
    "| rank one: 0:",
    rank1_ok,
    "| unchanged by scaling and rotations:",
    invariant,
)
assert flat_ok and bits_ok and rank1_ok and invariant

# %% tags=["nbval-check-output"]
# check: 1 <= srank <= PR <= exp(SE) <= rank for every Jacobian of every model
chain_ok = {}
for name, Jn in J.items():
    s = sl.spectra.spectral_summary(Jn)
    t = 1 + 1e-10
    chain_ok[name] = bool(
        (
            (1 <= s.stable_rank * t)
            & (s.stable_rank <= s.participation_ratio * t)
            & (s.participation_ratio <= s.effective_rank * t)
            & (s.effective_rank <= s.rank * t)
        ).all()
    )
    print(f"{name:12s} 1 <= srank <= PR <= erank <= rank on all {len(Jn)} digits:", chain_ok[name])
assert all(chain_ok.values())

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong.
#
# **Exercise 1.** Show that the amplitude (E1) entropy, with $a_k = \sigma_k/\sum_j\sigma_j$, is always
# at least the energy (E2) entropy. Then compute both for the trained MLP's Jacobians.

# %% tags=["exercise"]
Jn_ex = J["trained MLP"]
se_amplitude = ...  # (120,) E1 entropies in nats
se_energy = ...  # (120,) E2 entropies in nats


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
# The energy distribution p_k = a_k^2 / sum a^2 majorises a (squaring and renormalising
# concentrates), so by Schur-concavity H(p) <= H(a).
def _solution_1():
    return sl.spectral_entropy(Jn_ex, "amplitude"), sl.spectral_entropy(Jn_ex, "energy")


# %% tags=["nbval-check-output"]
# check exercise 1 with numpy's SVD and the entropy formula written out
sv_np = np.linalg.svd(Jn_ex.numpy(), compute_uv=False)
a_np = sv_np / sv_np.sum(1, keepdims=True)
p_np = sv_np**2 / (sv_np**2).sum(1, keepdims=True)
ent = lambda q: -(q * np.log(np.where(q > 0, q, 1))).sum(1)  # noqa: E731
assert (ent(a_np) >= ent(p_np) - 1e-12).all()  # E1 >= E2 at every input
judge_1 = ex.close((ent(a_np), ent(p_np)), rtol=0, atol=1e-10, names=("se_amplitude", "se_energy"))
ex.check(1, (se_amplitude, se_energy), judge_1, solution=_solution_1())

# %% tags=["nbval-ignore-output"]
# what this run measured
print(
    f"E1 - E2 ranges over [{(ent(a_np) - ent(p_np)).min():.3f}, {(ent(a_np) - ent(p_np)).max():.3f}] nats"
)

# %% [markdown]
# ## 3. Schur-concavity: flatter spectrum, higher entropy, smaller condition number
#
# A vector $p$ **majorises** $q$ ($p \succ q$) when, sorted decreasingly, every partial sum of $p$
# is at least that of $q$ (same total): $p$ is more concentrated. Shannon entropy is
# *Schur-concave*: $p \succ q \Rightarrow H(p) \le H(q)$. Two ways to move down the majorisation
# order, i.e. to flatten a spectrum while keeping $\|J\|_F$:
#
# * a *Robin-Hood transfer* moves energy from a larger $\sigma_i^2$ to a smaller $\sigma_j^2$
#   without crossing (`sl.sensitivity.robin_hood_transfer`);
# * *mixing toward uniform*, $p_t = (1-t)\,p + t/k$ (`sl.sensitivity.mix_toward_uniform`).
#
# Both can only lower the largest and raise the smallest energy, so the classical condition number
# $\kappa = \sigma_1/\sigma_r$ cannot grow while $SE$ rises: this is the course's statement of the monotonicity result
# (Proposition 5.7) of *A Unified Matrix-Spectral Framework for Stability and Interpretability in Deep Learning*.
# Conversely, a small $\kappa$ forces a high entropy:
# $SE \ge -\log \max_k p_k \ge \log\big(1 + (r-1)/\kappa^2\big)$.

# %%
s0 = sl.singular_values(Jm[0])
ts = np.linspace(0, 1, 21)
path = [sl.sensitivity.mix_toward_uniform(s0, float(t)) for t in ts]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
for t, s in zip(ts[::5], path[::5]):
    axes[0].semilogy(range(1, 11), s.numpy(), "o-", ms=3, label=f"t={t:.2f}")
axes[0].set(xlabel="rank k", ylabel=r"$\sigma_k$", title="flattening toward uniform")
axes[0].legend()
axes[1].plot(ts, [float(sl.spectral_entropy(s, kind="singular")) for s in path], "o-")
axes[1].axhline(math.log(10), color="0.5", ls="--", label="log 10")
axes[1].set(xlabel="t", ylabel="SE (nats, E2)", title="entropy rises")
axes[1].legend()
axes[2].semilogy(
    ts, [float(sl.condition_number(s, kind="singular")) for s in path], "o-", label="classical"
)
axes[2].semilogy(
    ts,
    [float(sl.condition_number(s, "median", kind="singular")) for s in path],
    "s-",
    label="median (attribution)",
)
axes[2].set(xlabel="t", ylabel="condition number", title="condition number falls")
axes[2].legend()
fig.tight_layout()
plt.show()


# %% tags=["nbval-check-output"]
# check (Prop. 5.7 as stated above): along mixing paths and Robin-Hood transfers of real Jacobian
# spectra, p majorises the flattened p, SE never decreases and sigma_1/sigma_r never increases;
# and SE >= log(1 + (r-1)/kappa^2) on every Jacobian
def energies(s):
    return s**2 / (s**2).sum()


schur_ok = True
for Jn in J.values():
    for s in sl.singular_values(Jn[:10]):
        prev = s
        for t in np.linspace(0.05, 1, 20):
            cur = sl.sensitivity.mix_toward_uniform(s, float(t))
            schur_ok &= sl.sensitivity.majorizes(energies(prev), energies(cur), atol=1e-10)
            schur_ok &= bool(
                sl.spectral_entropy(cur, kind="singular")
                >= sl.spectral_entropy(prev, kind="singular") - 1e-12
            )
            schur_ok &= bool(
                sl.condition_number(cur, kind="singular")
                <= sl.condition_number(prev, kind="singular") * (1 + 1e-12)
            )
            prev = cur
        rh = sl.sensitivity.robin_hood_transfer(s, 0, 9, 0.3)
        schur_ok &= sl.sensitivity.majorizes(energies(s), energies(rh), atol=1e-10)
        schur_ok &= bool(
            sl.spectral_entropy(rh, kind="singular") >= sl.spectral_entropy(s, kind="singular")
        )
lower_ok = all(
    bool(
        (
            sl.spectral_entropy(Jn)
            >= sl.sensitivity.entropy_lower_bound(sl.condition_number(Jn), 10) - 1e-12
        ).all()
    )
    for Jn in J.values()
)
print("flattening raises SE and lowers the condition number:", schur_ok)
print("SE >= log(1 + (r-1)/kappa^2) on every Jacobian:", lower_ok)
assert schur_ok and lower_ok

# %% [markdown]
# **Where the intuition fails.** High entropy does *not* imply a small classical condition number:
# nine equal singular values and one tiny one give $SE \approx \log 9$ — nearly maximal — but
# $\kappa = \sigma_1/\sigma_{10}$ is as large as we like. The median-based *attribution condition
# number* $\sigma_1 / \operatorname{median}_k \sigma_k$ ignores such stragglers.

# %%
s_odd = torch.tensor([1.0] * 9 + [1e-6], dtype=D64)
print(
    f"SE = {float(sl.spectral_entropy(s_odd, kind='singular')):.3f} nats "
    f"(log 9 = {math.log(9):.3f}), classical kappa = "
    f"{float(sl.condition_number(s_odd, kind='singular')):.0e}, "
    f"median kappa = {float(sl.condition_number(s_odd, 'median', kind='singular')):.1f}"
)

# %% [markdown]
# ## 4. Typical versus worst case: the entropy bound
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
# The first equality is exact; the inequalities are the Rényi chain of §2. So the typical-to-worst
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

# %% tags=["nbval-check-output"]
# check (Theorem 5.1 of the Unified Matrix-Spectral Framework paper): on every model, Monte Carlo E||f(x+delta)-f(x)||^2 (M = 4000
# Gaussian draws) matches (eps^2/d)||J||_F^2 within 5 standard errors; the library's entropy bound
# equals an independent numpy value (p_k = s_k^2 / sum s^2, SE = -sum p log p, (s_1^2/d) eps^2 e^SE),
# so a wrong normalisation or constant fails here; and typical <= entropy bound <= rank bound <= worst
# case. For Gaussian delta the relative standard error of the mean of ||J delta||^2 is
# sqrt(2 / (PR * M)), PR the participation ratio.


def numpy_sigma1_sq_and_se(Jn):
    """sigma_1^2 and the energy-normalised SE (nats) of each matrix, by numpy's SVD."""
    sv = np.linalg.svd(Jn.numpy(), compute_uv=False)
    p = sv**2 / (sv**2).sum(-1, keepdims=True)
    return sv[:, 0] ** 2, -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1)


def entropy_bound_numpy(Jn, eps):
    """Theorem 5.1's right side (s_1^2/d) eps^2 exp(SE), SE in the energy normalisation (numpy)."""
    s1sq, se = numpy_sigma1_sq_and_se(Jn)
    return s1sq / Jn.shape[-1] * eps**2 * np.exp(se)


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
ds_ok = {}
for name, Jn in J.items():
    lhs = float((eps**2 / d * (Jn**2).sum((1, 2))).mean())
    rhs = float(sl.sensitivity.entropy_bound_constant(Jn) * eps**2 * sl.effective_rank(Jn).mean())
    s1sq, se = numpy_sigma1_sq_and_se(Jn)
    rhs_np = float(s1sq.max() / d * eps**2 * np.exp(se).mean())
    ds_ok[name] = lhs <= rhs and math.isclose(rhs, rhs_np, rel_tol=1e-10)
    print(
        f"{name:12s} E_x typical {lhs:.3e} <= K eps^2 E_x exp(SE) {rhs:.3e} (numpy {rhs_np:.3e}):",
        ds_ok[name],
    )
assert all(ds_ok.values())

# %% [markdown]
# **Exercise 2.** Use perturbations uniform on the sphere of radius $\epsilon$
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
def _solution_2():
    return sl.sensitivity.monte_carlo_sensitivity(
        J["trained MLP"][:10],
        None,
        eps,
        4000,
        distribution="sphere",
        generator=torch.Generator().manual_seed(5),
    )


# %% tags=["nbval-check-output"]
# check exercise 2: against (eps^2/d)||J||_F^2 from numpy, within 5 Gaussian standard errors
# (sphere noise has a smaller variance than Gaussian noise, so this tolerance is generous)
J_np = J["trained MLP"][:10].numpy()
exact = eps**2 / d * (J_np**2).sum((1, 2))
sv10 = np.linalg.svd(J_np, compute_uv=False)
pr = (sv10**2).sum(1) ** 2 / (sv10**4).sum(1)
tol_2 = 5 * np.sqrt(2 / (pr * 4000))


def judge_2(answer):
    got = np.asarray(answer, dtype=float)
    if got.shape != exact.shape:
        return f"mc_sphere has shape {got.shape}, expected {exact.shape}"
    bad = np.abs(got / exact - 1) >= tol_2
    if bad.any():
        return f"mc_sphere is off (eps^2/d)||J||_F^2 by more than 5 standard errors at {bad.sum()} of 10"
    return None


solution_2 = _solution_2()
ex.check(2, mc_sphere, judge_2, solution=solution_2)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
rel = np.abs(np.asarray(solution_2) / exact - 1)
print(f"largest relative gap to (eps^2/d)||J||_F^2: {rel.max():.3%}")

# %% [markdown]
# **Exercise 3.** The typical-to-worst ratio is $\mathbb{E}\|J\delta\|^2 / (\epsilon^2\sigma_1^2) =
# \mathrm{srank}(J)/d$. Compute it for the trained CNN at all 360 test digits (in float64) and find
# the class whose median ratio is the largest: the most "worst-case-like" digit.

# %% tags=["exercise"]
x_all64 = x_test.double()
ratio_cnn = ...  # (360,) typical / worst case
most_worst_case_like = ...  # int: the class with the largest median ratio


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_3():
    b_cnn = sl.sensitivity_bounds(sl.input_jacobian(models["trained CNN"], x_all64), eps)
    ratio = b_cnn.typical / b_cnn.worst_case
    return ratio, max(range(10), key=lambda c: ratio[y_test == c].median().item())


# %% tags=["nbval-check-output"]
# check exercise 3: ||J||_F^2 / (d sigma_1^2) from numpy's SVD of autograd Jacobians
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
judge_3 = ex.close(
    (ratio_ref, int(np.argmax(med))), rtol=1e-8, names=("ratio_cnn", "most_worst_case_like")
)
solution_3 = _solution_3()
ex.check(3, (ratio_cnn, most_worst_case_like), judge_3, solution=solution_3)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print(
    f"most worst-case-like class: {solution_3[1]} (median ratio {max(med):.3f}; "
    f"the smallest class median is {min(med):.3f})"
)

# %% [markdown]
# **Exercise 4 (think).** Non-isotropic noise: let $\delta \sim \mathcal{N}(0, \Sigma)$. Show that
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
# ## 5. Where the entropy bound is tight, and where it is loose
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
tail = torch.cat([torch.diag(examples["one big + flat tail"]), torch.zeros(10, 54, dtype=D64)], 1)
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
# ## 6. Trained versus untrained spectra
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
# ## 7. Play: shape a spectrum
#
# Pick a test digit (trained MLP) and flatten its Jacobian spectrum toward uniform with `t`
# (same $\|J\|_F$). Watch $SE$ (choose nats or bits), the stable and effective ranks, both condition
# numbers and the three sensitivities ($\epsilon = 0.1$) move.

# %% tags=["nbval-ignore-output"]
sl.widgets.entropy_explorer(J["trained MLP"], eps=0.1)

# %% [markdown]
# ## Summary
#
# * $\sigma_1(J)$ is the worst-case amplification and is attained by the top right singular vector.
# * The spectral entropy $SE$ measures how evenly the energy $\sigma_k^2$ is spread; $e^{SE}$ (the
#   effective rank) sits between the stable rank and the rank.
# * Schur-concavity: flattening a spectrum raises $SE$ and cannot raise the condition number.
# * For isotropic noise, $\mathbb{E}\|J\delta\|^2 = (\epsilon^2/d)\|J\|_F^2 \le K\epsilon^2 e^{SE}$: a
#   concentrated spectrum certifies that typical noise is amplified far less than the worst case.
# * The entropy bound is tight for flat spectra and loose for one large value plus a flat tail.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 02 ran in {time.perf_counter() - _chapter_start:.0f} s")
