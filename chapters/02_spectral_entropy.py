# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 — Singular spectra and spectral entropy
#
# > The largest singular value of $J_f(x)$ says how much the *worst* input perturbation is
# > amplified. The rest of the spectrum says how that amplification is spread over directions:
# > this chapter turns a spectrum into a few numbers (spectral entropy, stable, participation and
# > effective rank), orders them, and shows why a flatter spectrum has a higher entropy. Its sequel,
# > `02_spectral_entropy_bound`, uses them to bound the *typical* effect of random noise.
#
# **Learning objectives.** After this chapter you can
#
# 1. read $\sigma_1(J_f(x))$ as the worst-case sensitivity and prove $\|J v\| \le \sigma_1 \|v\|$;
# 2. compute the spectral entropy (energy and amplitude normalisations, nats or bits), the stable
#    rank, the participation ratio and the effective rank, and order them;
# 3. explain with Schur-concavity why a flatter spectrum has higher entropy and a smaller condition
#    number — and where that intuition fails.
#
# **Prerequisites.** Chapters 00 and 01; the SVD; Shannon entropy $-\sum_k p_k \log p_k$.
#
# **Approximate time:** about 40 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 34 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 8; the last cell prints your run's time.
#
# **Conventions.** The spectral entropy is the energy (E2) normalisation in nats unless a figure
# says otherwise ($p_k = \sigma_k^2/\sum_j \sigma_j^2$, the normalisation under which the
# typical-sensitivity theorem of the sequel holds with the constant used there). `base=2` gives bits.
#
# > **Sources and choices.** The spectral entropy of the input Jacobian and the monotonicity of §3
# > come from Katende, *A Unified Matrix-Spectral Framework for Stability and Interpretability in Deep Learning* (arXiv 2602.01136).
# > The energy normalisation $p_k = \sigma_k^2/\sum_j\sigma_j^2$ is this course's choice.

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
# spectra, p majorises the flattened p, SE never decreases and sigma_1/sigma_r never increases
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
print("flattening raises SE and lowers the condition number:", schur_ok)
assert schur_ok

# %% tags=["nbval-check-output"]
# check: SE >= log(1 + (r-1)/kappa^2) on every Jacobian (a small condition number forces a high
# entropy)
lower_ok = all(
    bool(
        (
            sl.spectral_entropy(Jn)
            >= sl.sensitivity.entropy_lower_bound(sl.condition_number(Jn), 10) - 1e-12
        ).all()
    )
    for Jn in J.values()
)
print("SE >= log(1 + (r-1)/kappa^2) on every Jacobian:", lower_ok)
assert lower_ok

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
# ## Summary
#
# * $\sigma_1(J)$ is the worst-case amplification and is attained by the top right singular vector.
# * The spectral entropy $SE$ measures how evenly the energy $\sigma_k^2$ is spread; $e^{SE}$ (the
#   effective rank) sits between the stable rank and the rank.
# * Schur-concavity: flattening a spectrum raises $SE$ and cannot raise the condition number.
# * Next, `02_spectral_entropy_bound`: what the entropy says about random noise, where that bound
#   is tight, and how training reshapes the spectrum.

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 02 ran in {time.perf_counter() - _chapter_start:.0f} s")
