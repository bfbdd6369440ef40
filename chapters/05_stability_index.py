# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 — One index, four kinds of stability
#
# > Chapters 01–04 met four operators one at a time: the input Jacobian $J_f(x)$, the parameter
# > Jacobian $J_\theta(x)$, the Neural Tangent Kernel $K$ and the loss Hessian $H$. This chapter
# > collects their spectral norms into a **Matrix Stability Profile**, folds the profile into one
# > number, the **Global Matrix Stability Index** $\Gamma$, and checks — on dozens of models — that
# > this single number really bounds forward sensitivity, parameter sensitivity, attribution change,
# > NTK conditioning and the stable learning rate. Then it shows what one number hides.
#
# **Learning objectives.** After this chapter you can
#
# 1. define the stability profile of a model on data, and the index $\Gamma_q$ built from it, with
#    the supremum ($q = 1$) or a high quantile ($q = 0.95$) over the samples;
# 2. state the five consequences of the index (Theorem 4.2) and say why each holds;
# 3. measure each consequence on a network and plot it against its bound, and say how tight the
#    bound is;
# 4. explain why the supremum is fragile to outliers and the quantile is not;
# 5. spot where a single index hides what the separate operators show;
# 6. run `diagnose` (or `spectral-lab diagnose`) on your own model and read the report.
#
# **What is from the paper, and what is a choice.** The paper (Katende 2026) defines the index
# from the spectral norms of the four operators with a *supremum over the data*, and names high
# quantiles as the robust alternative (its Definition 4.1 and Theorem 4.2, as carried by the
# course's summary). Its exact formula could not be read. The construction below — put every
# operator on a common "gain" scale and take the maximum — is the course's **choice, not from the
# paper**; `stability_index(..., agg=...)` lets you swap it out.

# %% tags=["nbval-ignore-output"]
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import spectral_lab as sl

sl.plots.use_style()
torch.manual_seed(0)
print(f"torch {torch.__version__}, spectral_lab {sl.__version__}")

# %% [markdown]
# ## 1. The Matrix Stability Profile
#
# Take a network $f_\theta:\mathbb{R}^d\to\mathbb{R}^C$ and evaluation points $x_1,\dots,x_n$. For
# every sample we record the spectral norm of the two *per-sample* operators,
#
# $$ \sigma_1\big(J_f(x_i)\big) \quad (C\times d), \qquad \sigma_1\big(J_\theta(x_i)\big) \quad (C\times p), $$
#
# plus the spectral entropy $\mathrm{SE}(J_f(x_i))$ of chapter 02; and for the two *data-set*
# operators, the NTK Gram $K_{ij} = \operatorname{tr} J_\theta(x_i) J_\theta(x_j)^\top$ and the loss
# Hessian $H = \frac1n\sum_i \nabla^2_\theta \ell(f(x_i), y_i)$,
#
# $$ \lambda_{\max}(K)/n,\quad \lambda_{\min}(K)/n,\quad \lambda_{\max}(H). $$
#
# Per-sample values are aggregated with the empirical quantile $Q_q$ over the samples: $q=1$ is the
# supremum (the worst sample), $q = 0.95$ ignores the worst 5 %. `stability_profile` computes all
# of it in one pass over the data (tensors or a `DataLoader`), keeping every per-sample value for
# plots; the Hessian eigenvalue comes from Lanczos on Hessian-vector products (chapter 04), nothing
# of size $p \times p$ is formed.
#
# We use a tanh network trained on the bundled digits.

# %%
train_set, test_set = sl.load_dataset("digits"), sl.load_dataset("digits", split="test")
torch.manual_seed(0)
model = sl.MLP(64, 10, width=32, depth=3, activation="tanh", gain=1.4)
history = sl.train(model, train_set, epochs=10, lr=3e-3, seed=0, progress=False)
model = model.double()  # trained in float32, analysed in float64: bounds are checked to many digits
x_test, y_test = test_set.tensors(48)
profile = sl.stability_profile(model, (x_test, y_test), q=1.0)
print(profile)

fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
sl.plots.plot_profile_samples(profile, "jac_top", q=0.95, ax=ax[0])
sl.plots.plot_profile_samples(profile, "param_top", q=0.95, ax=ax[1])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The Global Matrix Stability Index
#
# The four statistics live on different scales: $\sigma_1$ is a gain (output change per unit of
# input or parameter change), while $\lambda_{\max}(K)$ and $\lambda_{\max}(H)$ are squared gains.
# Taking square roots puts all four on the gain scale, and the maximum gives one number:
#
# $$ \Gamma_q = \max\Big\{ Q_q\,\sigma_1(J_f(x_i)),\;\; Q_q\,\sigma_1(J_\theta(x_i)),\;\;
#    \sqrt{\lambda_{\max}(K)/n},\;\; \sqrt{\max(\lambda_{\max}(H),0)} \Big\}. $$
#
# Optional weights $w_{op}$ multiply the terms, and a weighted geometric mean is offered as a
# "typical scale" alternative (`agg="geomean"`). Only the maximum with weights $\ge 1$ *dominates*
# every term, which is what the bounds below need.

# %%
index = sl.stability_index(profile)
robust = sl.stability_index(profile.with_q(0.95))
geo = sl.stability_index(profile, agg="geomean")
print(index)
print(robust)
print(geo)
sl.plots.plot_index_terms(index, robust)
plt.show()

# %% tags=["nbval-check-output"]
# check: Gamma dominates every operator term; the quantile index never exceeds the supremum one;
# the geometric mean does not dominate (so it cannot carry the bounds)
dominates = all(index.dominates(k) for k in index.terms)
monotone = all(robust.terms[k] <= index.terms[k] for k in index.terms) and robust.value <= index.value
print("Gamma >= every term:", dominates)
print("Gamma_0.95 <= Gamma_1 term by term:", monotone)
print("geomean index dominates its largest term:", geo.dominates(geo.dominant))
assert dominates and monotone and not geo.dominates(geo.dominant)

# %% [markdown]
# ## 3. Five consequences (Theorem 4.2)
#
# With $q = 1$, on the sample and to first order, the single constant $\Gamma$ gives:
#
# | consequence | statement | why |
# | --- | --- | --- |
# | forward sensitivity | $\|f(x+\delta)-f(x)\| \le \Gamma\,\|\delta\| + O(\|\delta\|^2)$ | $f(x+\delta)-f(x) = J_f(x)\delta + O(\|\delta\|^2)$ and $\|J_f(x)\delta\| \le \sigma_1(J_f(x))\|\delta\|$ |
# | parameter sensitivity | $\|f_{\theta+\Delta}(x)-f_\theta(x)\| \le \Gamma\,\|\Delta\| + O(\|\Delta\|^2)$ | the same with $J_\theta(x)$ (spec 6.3) |
# | attribution change | $\|a(x')-a(x)\| \le 2\Gamma$ | the saliency $a(x) = J_f(x)^\top e_c$ is a row of $J_f$, so $\|a\| \le \sigma_1(J_f)$; both points must be in the data |
# | NTK conditioning | $\kappa(K) = \lambda_{\max}/\lambda_{\min} \le \Gamma^2 n / \lambda_{\min}(K)$ | $\lambda_{\max}(K)/n \le \Gamma^2$ |
# | stable step size | gradient descent is stable for $\eta < 2/\Gamma^2 \le 2/\lambda_{\max}(H)$ | on the quadratic model with Hessian $H$, GD is stable iff $\eta < 2/\lambda_{\max}(H)$ (chapter 04) |
#
# The library exposes each right-hand side as a function (`forward_sensitivity_bound`,
# `parameter_sensitivity_bound`, `attribution_change_bound`, `ntk_condition_bound`,
# `stable_step_size`) and each left-hand side as a measurement (`measure_forward_sensitivity`,
# ...). `verify_consequences(model, (x, y))` does all five at once:
#
# * forward and parameter sensitivity are measured along each sample's *worst* direction (the top
#   right singular vector of $J_f(x_i)$ or $J_\theta(x_i)$) with $\|\delta\| = 10^{-4}$, where the
#   first-order bound is tight for the operator's own term;
# * saliency change with isotropic noise of norm $0.5$ (the perturbed points join the support);
# * the largest stable learning rate by bisection: the largest full-batch GD step that does not
#   blow up within 20 steps. This is an *empirical* quantity of the nonlinear network; the theorem
#   is about the quadratic model, so this is the honest test of whether the certified step is safe.

# %%
check = sl.verify_consequences(model, (x_test[:32], y_test[:32]))
print(check)

# %% [markdown]
# Now sweep: synthetic teacher data ($d = 16$, $C = 4$) and digits ($d = 64$, $C = 10$), widths
# 16–64, depths 2–4, initialisation gains 0.5–2, and the digits model at 0, 2 and 10 epochs of
# training. Each configuration gives one point per panel.

# %%
teacher = sl.load_dataset("teacher", n_samples=256)
configs = [
    ("teacher", 16, 2, 0.5, 0),
    ("teacher", 64, 2, 2.0, 0),
    ("teacher", 16, 4, 2.0, 0),
    ("digits", 32, 3, 1.4, 0),
    ("digits", 32, 3, 1.4, 2),
]
checks, labels = [], []
for name, width, depth, gain, epochs in configs:
    ds = teacher if name == "teacher" else train_set
    torch.manual_seed(1)
    m = sl.MLP(math.prod(ds.input_shape), ds.num_classes, width=width, depth=depth,
               activation="tanh", gain=gain)  # fmt: skip
    if epochs:
        sl.train(m, ds, epochs=epochs, lr=3e-3, seed=0, progress=False)
    m = m.double()
    xs, ys = (test_set if name == "digits" else ds).tensors(32)
    checks.append(sl.verify_consequences(m, (xs, ys)))
    labels.append(f"{name[0]}{width}/{depth}/g{gain}/e{epochs}")
checks.append(check)  # the 10-epoch digits model from above
labels.append("d32/3/g1.4/e10")

sl.plots.plot_consequences(checks, labels=None, operator=True)
plt.show()

# %% [markdown]
# Filled points use $\Gamma$; hollow points use the operator's own term alone (for the step size:
# $2/\lambda_{\max}(H)$, which is *not* a guarantee for the nonlinear network). Every filled point
# is on the safe side of the diagonal:

# %% tags=["nbval-check-output"]
# check: every bound holds on every configuration
for key in checks[0].measured:
    ok = all(c.holds[key] for c in checks)
    print(f"{key} bound holds on all {len(checks)} models:", ok)
    assert ok

# %% [markdown]
# How tight? The table gives the ratio measured/bound (for the step size: certified/measured); 1
# is tight.

# %% tags=["nbval-ignore-output"]
keys = list(checks[0].measured)
print(f"{'model':<16}" + "".join(f"{k:>15}" for k in keys) + "   dominant term")
for lab, c in zip(labels, checks):
    t = c.tightness
    print(f"{lab:<16}" + "".join(f"{t[k]:>15.2g}" for k in keys) + f"   {c.index.dominant}")

# %% [markdown]
# What the table says:
#
# * **Forward and parameter sensitivity** are tight *for their own operator* (hollow points sit on
#   the diagonal: the worst direction attains $\sigma_1$ to first order) but with $\Gamma$ they are
#   loose by whatever factor separates that operator's term from the largest one — here $2$–$12\times$
#   for the input Jacobian, because $\Gamma$ is set by a parameter-space operator on every model.
# * **Saliency change** is a worst-case bound: for small noise on a smooth network the saliency
#   barely moves, so $2\Gamma$ is loose by a factor of $10$–$300$ here. Chapter 06 shows that
#   attribution change is governed by margins and curvature, not by $\sigma_1$ alone.
# * **NTK conditioning**: tight when the NTK term sets $\Gamma$, otherwise loose by
#   $\Gamma^2 n/\lambda_{\max}(K)$.
# * **Step size**: $2/\Gamma^2$ is always safe, but roughly $100$–$1000\times$ smaller than the
#   largest step that works; even $2/\lambda_{\max}(H)$ (hollow) is conservative for cross-entropy
#   networks, which tolerate larger steps than their local quadratic model suggests.
#
# Before trusting the check cells, convince yourself they have teeth: a bound that is 1 % too small
# fails on a network whose Jacobian is constant (a linear network), where the worst direction
# attains $\sigma_1$ exactly.

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
linear = sl.MLP(16, 4, width=16, depth=3, activation="identity").double()
x_lin = teacher.tensors(32)[0]
lin_prof = sl.stability_profile(linear, x_lin, operators=("input_jacobian",))
lin_idx = sl.stability_index(lin_prof)
worst = sl.measure_forward_sensitivity(linear, x_lin, 0.1).max().item()
exact = math.isclose(worst, sl.forward_sensitivity_bound(lin_idx, 0.1), rel_tol=1e-9)
print("linear network attains the forward bound exactly:", exact)
print("a bound 1% too small would be violated:", worst > 0.99 * sl.forward_sensitivity_bound(lin_idx, 0.1))
assert exact

# %% [markdown]
# ## 4. Supremum or quantile? Outliers
#
# The supremum is what the theorems need, and exactly why it is fragile: one odd sample sets it.
# Add four "bad scans" — two blank images and two faint (30 % contrast) digits — to 200 clean test
# digits and compare $\Gamma_q$ for $q$ from 0.5 to 1.

# %%
x_clean, y_clean = test_set.tensors(200)
x_odd = torch.cat([torch.zeros(2, 1, 8, 8), 0.3 * x_clean[:2]])
ops = ("input_jacobian", "parameter_jacobian")
prof_clean = sl.stability_profile(model, x_clean, operators=ops)
prof_odd = sl.stability_profile(model, torch.cat([x_clean, x_odd]), operators=ops)
qs = np.linspace(0.5, 1.0, 51)
g_clean = [sl.stability_index(prof_clean.with_q(q), weights={"parameter_jacobian": 0}).value for q in qs]
g_odd = [sl.stability_index(prof_odd.with_q(q), weights={"parameter_jacobian": 0}).value for q in qs]

fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
ax[0].plot(qs, g_clean, label="200 clean digits")
ax[0].plot(qs, g_odd, "--", label="+ 4 bad scans")
ax[0].set(xlabel="quantile level q", ylabel=r"$Q_q\,\sigma_1(J_f)$", title="input term of $\\Gamma_q$")
ax[0].legend()
sl.plots.plot_profile_samples(prof_odd, "jac_top", q=0.95, ax=ax[1])
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
# check: four outliers (2 %) move the supremum a lot and the 95 % quantile hardly at all
sup_jump = prof_odd.jac_top / prof_clean.jac_top - 1
q95_jump = prof_odd.with_q(0.95).jac_top / prof_clean.with_q(0.95).jac_top - 1
print("sup moved by more than 20%:", sup_jump > 0.20)
print("q=0.95 moved by less than 5%:", abs(q95_jump) < 0.05)
print("sup moved over 5x more than q=0.95:", sup_jump > 5 * abs(q95_jump))
assert sup_jump > 0.20 and abs(q95_jump) < 0.05 and sup_jump > 5 * abs(q95_jump)

# %% [markdown]
# The price of robustness: $\Gamma_{0.95}$ bounds the first-order sensitivity of at least 95 % of
# the samples, not all of them. Use $q = 1$ for guarantees on the data you have, $q = 0.95$ to
# compare models without letting a few odd inputs decide.
#
# ## 5. What a single index hides
#
# **Different operators, same number.** In the sweep above the dominant term changes from model to
# model (last column of the table): the same $\Gamma$ can mean "inputs are dangerous" or
# "parameters are dangerous". The bars of `plot_index_terms` are more informative than their max.
#
# **Units that do not match.** A ReLU network is positively homogeneous: multiplying the first
# layer by $\alpha > 0$ and dividing the second by $\alpha$ gives *exactly the same function*, so
# the input Jacobian — and every forward-sensitivity and saliency property — is unchanged. The
# parameter-space operators are not invariant: $J_\theta$, $K$ and $H$ change with $\alpha$, and
# so does $\Gamma$.

# %%
torch.manual_seed(0)
relu = sl.MLP(16, 4, width=32, depth=3, activation="relu", gain=2**0.5).double()
x_r, y_r = teacher.tensors(48)
x_r = x_r.double()
alphas = [0.25, 1.0, 4.0]
rows = []
for a in alphas:
    m = sl.MLP(16, 4, width=32, depth=3, activation="relu").double()
    m.load_state_dict(relu.state_dict())
    with torch.no_grad():
        m.layers[1].weight.mul_(a)
        m.layers[1].bias.mul_(a)
        m.layers[3].weight.div_(a)
    rows.append((m, sl.stability_index(sl.stability_profile(m, (x_r, y_r)))))
same_function = all(torch.allclose(m(x_r), relu(x_r), atol=1e-10) for m, _ in rows)

fig, ax = plt.subplots(figsize=(5.5, 3.4))
for k in rows[0][1].terms:
    ax.plot(alphas, [idx.terms[k] for _, idx in rows], "o-", label=k)
ax.plot(alphas, [idx.value for _, idx in rows], "k--", label=r"$\Gamma$")
ax.set(xscale="log", yscale="log", xlabel=r"rescaling $\alpha$ (same function)", ylabel="term",
       title="a reparametrisation moves $\\Gamma$")  # fmt: skip
ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
ax.xaxis.set_minor_formatter(plt.NullFormatter())
ax.yaxis.set_minor_formatter(plt.NullFormatter())
ax.legend(fontsize=7)
plt.show()

# %% tags=["nbval-check-output"]
# check: the function and its input Jacobian term are invariant; Gamma is not
jac_terms = [idx.terms["input_jacobian"] for _, idx in rows]
gammas = [idx.value for _, idx in rows]
print("same function for every alpha:", same_function)
print("input-Jacobian term invariant:", max(jac_terms) / min(jac_terms) - 1 < 1e-9)
print("Gamma changes by more than 2x:", max(gammas) / min(gammas) > 2)
assert same_function and max(jac_terms) / min(jac_terms) - 1 < 1e-9 and max(gammas) / min(gammas) > 2

# %% [markdown]
# So $\Gamma$ is not a property of the *function* alone; it mixes input-space and parameter-space
# gains measured in different units. It is a sound single scale for *all five* statements at once,
# but for any one question the operator that question is about gives a sharper answer. Read the
# profile, not only the index.
#
# ## 6. `diagnose`: the report you run on your own model
#
# `sl.diagnose(model, data)` streams the data (tensors, a `Dataset` or a `DataLoader`) with a
# progress bar, caps the cost (`max_samples`, `ntk_samples`, `hessian_samples`,
# `lanczos_steps`), and returns a `StabilityReport`: it renders as a table in a notebook, prints
# as text, serialises with `to_dict()`/`to_json()` and draws a summary with `plot()`.

# %% tags=["nbval-ignore-output"]
report = sl.diagnose(model, test_set, max_samples=96, ntk_samples=48, hessian_samples=96,
                     progress=False, name="MLP 64-32-32-10 tanh (10 epochs)")  # fmt: skip
report

# %% tags=["nbval-ignore-output"]
report.plot()
plt.show()
print(report.to_json()[:300], "...")

# %% tags=["nbval-check-output"]
# check: the report's numbers are the library's bound functions applied to its own index
b = report.bounds
consistent = (
    b["forward_gain"] == sl.forward_sensitivity_bound(report.index, 1.0)
    and b["stable_lr"] == sl.stable_step_size(report.index)
    and b["ntk_condition"] <= b["ntk_condition_bound"]
    and report.robust_index.value <= report.index.value
)
print("report consistent with the bound functions:", consistent)
assert consistent

# %% [markdown]
# From a shell, the same report for a checkpoint written by `sl.save_checkpoint` (loaded safely,
# weights only) or for a named reference model:
#
# ```bash
# spectral-lab diagnose my_model.pt --data digits          # writes my_model.stability.{json,png}
# spectral-lab diagnose --model mlp --model-arg width=64 --data mnist --samples 256
# ```
#
# A missing file, an unknown data set or a checkpoint that does not fit the data ends with a clear
# message and exit code 2.
#
# ## 7. Play: quantile and aggregation
#
# Slide $q$ and switch between `max` and `geomean`: the bars show the four terms at the supremum
# (blue) and at $q$ (orange); the histogram shows where $Q_q$ falls among the per-sample values.

# %% tags=["nbval-ignore-output"]
sl.widgets.stability_explorer(prof_odd)

# %% [markdown]
# ## Exercises
#
# 1. Recompute the sweep's forward-sensitivity panel with `eps=0.5` instead of $10^{-4}$. Does the
#    bound with $\Gamma$ still hold? With the operator's own term? Why is the first-order statement
#    not enough for large perturbations?
# 2. Train the digits model for 30 epochs and plot the four index terms after every 5 epochs.
#    Which term grows fastest, and does the dominant operator change?
# 3. Replace the index by the weighted geometric mean (`agg="geomean"`). Which of the five bounds
#    can still be evaluated with `scale="index"`? What does the library do for the others?
# 4. Use `spectral-lab diagnose` on a checkpoint of your own model and compare $\Gamma$ and
#    $\Gamma_{0.95}$. How many samples would have to be removed to bring the supremum down to the
#    95 % quantile?
# 5. Take the ReLU rescaling experiment and find the $\alpha$ that *minimises* $\Gamma$. Is the
#    minimiser the same as the one that minimises the parameter-Jacobian term?

# %% [markdown]
# ### Solutions
#
# 1. `sl.verify_consequences(m, (xs, ys), eps=0.5)`. For tanh networks saturation often bends the
#    path so that the change stays below $\sigma_1\varepsilon$, and with $\Gamma$ (set by another
#    operator) there is plenty of slack — but nothing guarantees it any more: $f(x+\delta)-f(x)$ is governed by
#    $\sup_t \|J_f(x+t\delta)\|$ along the segment (spec 6.2), and points on the segment are not in
#    the sample. For ReLU networks a kink on the segment can switch to a region with a larger
#    Jacobian.
# 2. Loop `sl.train(model, train_set, epochs=5, ...)` six times and collect
#    `sl.stability_index(sl.stability_profile(model, (x_test, y_test))).terms`. In runs of this
#    chapter the input-Jacobian term grows fastest (training sharpens the decision boundaries), while
#    the parameter-space terms grow more slowly; which term dominates depends on width and gain.
# 3. Only bounds whose operator term is at most the geometric mean; the others raise a
#    `ValueError` ("the bound would not hold") because a geometric mean never dominates the largest
#    term. Use `scale="operator"` to get each operator's own bound instead.
# 4. `spectral-lab diagnose ckpt.pt --data digits` prints both; the JSON keeps every per-sample
#    value under `profile.samples`, so `sum(v > q95 for v in samples["jac_top"])` answers it
#    (about 5 % of the samples by definition of the quantile, fewer when values tie).
# 5. Scan `alphas = np.logspace(-1, 1, 21)`. The input term is flat; $\Gamma$ is minimised where
#    the parameter-space terms balance the first and second layers' contributions — typically near,
#    but not exactly at, the minimiser of the parameter-Jacobian term, because the NTK and Hessian
#    terms weigh the layers differently.
