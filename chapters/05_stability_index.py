# ---
# jupyter:
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
# > number, the **Global Matrix Stability Index** $\Gamma$, and puts the five consequences it is said
# > to control — forward sensitivity, parameter sensitivity, attribution change, NTK conditioning
# > and the stable learning rate — against measurements on a small sweep of networks (the sweep's
# > cell prints how many). Two of the five hold by construction, for every model; the chapter says
# > which, and checks instead two consequences that could be false. Then it shows what one number
# > hides.
#
# **Learning objectives.** After this chapter you can
#
# 1. define the stability profile of a model on data, and the index $\Gamma_q$ built from it, with
#    the supremum ($q = 1$) or a high quantile ($q = 0.95$) over the samples;
# 2. state the five consequences of the index (Theorem 4.2), say why each holds, and say which
#    of them hold by construction (and so are no evidence about a model);
# 3. check the consequences that can fail — the curvature form of the attribution bound and the
#    certified step size — against measurements, and show that a wrong formula is caught;
# 4. explain why the supremum is fragile to outliers and the quantile is not;
# 5. spot where a single index hides what the separate operators show;
# 6. run `diagnose` (or `spectral-lab diagnose`) on your own model and read the report.
#
# **Prerequisites.** Chapters 01–04: the input Jacobian (01–02), the parameter Jacobian and the
# NTK (03), the loss Hessian (04).
#
# **Approximate time:** 90 minutes (the cells run in about a minute on a laptop CPU).
#
# > **Sources and choices.** Katende, *A Unified Matrix-Spectral Framework for Stability and Interpretability in Deep Learning* (arXiv 2602.01136), defines the
# > index from the spectral norms of the four operators with a *supremum over the data*, names high
# > quantiles as the robust alternative (Definition 4.1) and states the five consequences of
# > Theorem 4.2. The way the four norms are combined here — put every operator on a common "gain"
# > scale and take the maximum — is this course's choice, made so that all five consequences hold with
# > one constant; `stability_index(..., agg=...)` lets you swap it out.

# %% tags=["nbval-ignore-output"]
import copy
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
# **Which NTK.** $K$ here is the *scalar* NTK ($n \times n$, the trace over the $C$ outputs), the
# one the index uses. With $C > 1$ outputs, what governs the training dynamics of chapter 03 is the
# *block* NTK $\tilde K$ ($nC \times nC$, $\tilde K_{(ic),(jc')} = [J_\theta(x_i) J_\theta(x_j)^\top]_{cc'}$):
# its $\lambda_{\max}/n$ is at most $\max_i \sigma_1(J_\theta(x_i))^2$, while the scalar one can
# exceed that by up to a factor $C$. Wherever this chapter says "NTK conditioning" it means
# $\kappa(K)$ of the scalar $K$; `stability_profile(..., ntk_kind="block")` gives $\tilde K$ instead.
#
# We use a tanh network trained on the bundled digits (always digits in this chapter, with or
# without MNIST on disk).

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

# %%
# the scalar NTK (what the index uses) next to the block NTK that drives multi-output dynamics
blk = sl.stability_profile(model, (x_test, y_test), ntk_kind="block",
                           operators=("input_jacobian", "parameter_jacobian", "ntk"))  # fmt: skip
print(f"scalar K  ({profile.n_ntk} x {profile.n_ntk}): lambda_max/n = {profile.ntk_top:.4g}, "
      f"kappa = {profile.ntk_condition:.4g}")  # fmt: skip
print(f"block  K~ ({blk.n_ntk * blk.num_classes} x {blk.n_ntk * blk.num_classes}): "
      f"lambda_max/n = {blk.ntk_top:.4g}, kappa = {blk.ntk_condition:.4g}")  # fmt: skip
print(f"max_i sigma_1(J_theta(x_i))^2 = {profile.param_top**2:.4g}: bounds the block one "
      f"({blk.ntk_top <= profile.param_top**2 * (1 + 1e-9)}), not necessarily the scalar one")  # fmt: skip

# %% [markdown]
# Compare the two condition numbers the cell above prints: the block NTK, which governs how the
# ten outputs train together, can be conditioned very differently from the scalar one. The index
# (and every "NTK conditioning" below) uses the scalar one.

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
monotone = (
    all(robust.terms[k] <= index.terms[k] for k in index.terms) and robust.value <= index.value
)
print("Gamma >= every term:", dominates)
print("Gamma_0.95 <= Gamma_1 term by term:", monotone)
print("geomean index dominates its largest term:", geo.dominates(geo.dominant))
assert dominates and monotone and not geo.dominates(geo.dominant)

# %% [markdown]
# ## 3. Five consequences (Theorem 4.2), and which of them can fail
#
# With $q = 1$, on the sample and to first order, the single constant $\Gamma$ gives the five
# statements below. Not all of them say something about the model: two are true for *every*
# model by construction, and two more, measured the way a check can afford to, only re-test
# $\sigma_1$.
#
# | consequence | statement | why | can the check fail? |
# | --- | --- | --- | --- |
# | forward sensitivity | $\|f(x+\delta)-f(x)\| \le \Gamma\,\|\delta\| + O(\|\delta\|^2)$ | $f(x+\delta)-f(x) = J_f(x)\delta + O(\|\delta\|^2)$ and $\|J_f(x)\delta\| \le \sigma_1(J_f(x))\|\delta\|$ | barely: at a tiny $\delta$ along the worst direction the change *is* $\sigma_1\|\delta\| \le \Gamma\|\delta\|$; it only fails if $\sigma_1$ is under-estimated |
# | parameter sensitivity | $\|f_{\theta+\Delta}(x)-f_\theta(x)\| \le \Gamma\,\|\Delta\| + O(\|\Delta\|^2)$ | the same with $J_\theta(x)$ | barely, as above |
# | attribution change | $\|a(x')-a(x)\| \le 2\Gamma$ | the saliency $a(x) = J_f(x)^\top e_c$ is a row of $J_f$, so $\|a\| \le \sigma_1(J_f) \le \Gamma$ at both points | **no — by construction** (the triangle inequality) |
# | NTK conditioning | $\kappa(K) = \lambda_{\max}/\lambda_{\min} \le \Gamma^2 n / \lambda_{\min}(K)$ | $\lambda_{\max}(K)/n \le \Gamma^2$ | **no — by construction**: an identity whenever the NTK term sets $\Gamma$ |
# | stable step size | gradient descent is stable for $\eta < 2/\Gamma^2 \le 2/\lambda_{\max}(H)$ | on the quadratic model with Hessian $H$, GD is stable iff $\eta < 2/\lambda_{\max}(H)$ (chapter 04) | **yes**: against the measured divergence threshold of the nonlinear network |
#
# So the attribution and NTK rows are shown below, but they are no evidence. In their place we
# check a sharper form of the attribution bound that *can* fail. For smooth activations the
# mean-value theorem gives
#
# $$ \|a(x+\delta)-a(x)\| \;\le\; \min\Big(2\Gamma,\; M\,\|\delta\|\Big), \qquad
#    M = \sup_{t\in[0,1]} \big\|\nabla_x^2 f_c(x+t\delta)\big\|_2 , $$
#
# the largest singular value of the input Hessian of the logit $f_c$ along the segment. $M$ is
# **measured, not derived**: `check_attribution_curvature` forms the dense $d\times d$ Hessian of
# $f_c$ by autograd (forward-over-reverse, i.e. Hessian-vector products with every basis vector) at
# 9 equally spaced points of the segment and takes the largest $|\lambda|$ — a sup over sampled
# points, so a 2 % tolerance covers the grid. $\delta$ points along the top eigenvector of the
# Hessian at $x$ (both signs), where the bound is tight to first order: a curvature that is too
# small by any factor is caught at small $\|\delta\|$.
#
# The library exposes each right-hand side as a function (`forward_sensitivity_bound`,
# `parameter_sensitivity_bound`, `attribution_change_bound`, `ntk_condition_bound`,
# `stable_step_size`) and each left-hand side as a measurement (`measure_forward_sensitivity`,
# ...). `verify_consequences(model, (x, y))` does all of it at once:
#
# * forward and parameter sensitivity along each sample's *worst* direction (the top right singular
#   vector of $J_f(x_i)$ or $J_\theta(x_i)$) with $\|\delta\| = 10^{-4}$;
# * saliency change with isotropic noise of norm $0.5$ against $2\Gamma$ (the perturbed points join
#   the support), and the curvature form at $\|\delta\| \in \{10^{-3}, 10^{-2}, 0.1, 0.5\}$;
# * the largest stable learning rate by bisection: the largest full-batch GD step that does not
#   blow up within 20 steps. This is an *empirical* quantity of the nonlinear network; the theorem
#   is about the quadratic model, so this is the honest test of whether the certified step is safe.

# %%
check = sl.verify_consequences(model, (x_test[:32], y_test[:32]))
print(check)
cc = check.curvature
print(
    f"\ncurvature form on {cc.change.shape[1]} segments (32 samples x 2 signs), 2 Gamma = {2 * cc.gamma:.3g}:"
)
print(
    f"{'|delta|':>8} {'max change':>11} {'median M|delta|':>16} {'max change/bound':>17}  M|delta| < 2 Gamma"
)
for e, ch, m, r, f in zip(cc.eps, cc.change, cc.curvature, cc.ratio, cc.curvature_branch):
    print(f"{e:>8g} {ch.max():>11.3g} {(m * e).median():>16.3g} {r:>17.3f}  on {f:.0%}")
print(f"certified step 2/Gamma^2 = {check.bound['stable_lr']:.3g}, measured largest stable step = "
      f"{check.measured['stable_lr']:.3g}: ratio measured/certified = {check.step_ratio:.3g}")  # fmt: skip

fig, ax = plt.subplots(figsize=(5, 3.6))
for e, ch, b in zip(cc.eps, cc.change, cc.bound):
    ax.scatter(b, ch, s=10, label=f"|delta| = {e:g}")
lo, hi = float(cc.bound.min()) / 2, float(cc.bound.max()) * 2
ax.plot([lo, hi], [lo, hi], "k--", lw=1)
ax.set(xscale="log", yscale="log", xlabel=r"$\min(2\Gamma, M\|\delta\|)$",
       ylabel=r"$\|a(x+\delta)-a(x)\|$", title="curvature form of the attribution bound")  # fmt: skip
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# The cell above prints, per perturbation size, the largest saliency change, the typical
# $M\|\delta\|$ and the largest ratio change/bound: at the smallest sizes the ratio is close to 1
# (the bound is attained along the worst direction), so the check would catch a curvature measure
# that is too small; at larger sizes the Hessian varies along the segment and the bound loosens.

# %% [markdown]
# Now a small sweep: synthetic teacher data ($d = 16$, $C = 4$) and digits ($d = 64$, $C = 10$),
# a few widths, depths and initialisation gains, and the digits model at 0, 2 and 10 epochs of
# training (the configurations are listed in the cell). Each configuration gives one point per
# panel.

# %%
teacher = sl.load_dataset("teacher", num_samples=256)
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
print(f"{len(checks)} models in the sweep")

sl.plots.plot_consequences(checks, labels=None, operator=True)
plt.show()

# %% [markdown]
# Filled points use $\Gamma$; hollow points use the operator's own term alone (for the step size:
# $2/\lambda_{\max}(H)$, which is *not* a guarantee for the nonlinear network). The check below
# asserts only the consequences that can fail; the two that hold by construction are printed, and
# labelled as such.

# %% tags=["nbval-check-output"]
# check: every consequence that can fail holds on every model of the sweep
for key in checks[0].evidence:
    ok = all(c.evidence[key] for c in checks)
    print(f"{key} holds on all {len(checks)} models:", ok)
    assert ok
for key, why in sl.stability.BY_CONSTRUCTION.items():
    print(f"{key} holds on all {len(checks)} models: {all(c.holds[key] for c in checks)} "
          f"(by construction, no evidence: {why})")  # fmt: skip

# %% [markdown]
# How tight? The table gives the ratio measured/bound (for the step size: certified/measured); 1
# is tight. `curv` is the largest change/$\min(2\Gamma, M\|\delta\|)$ over all perturbation sizes.

# %% tags=["nbval-ignore-output"]
keys = list(checks[0].measured) + ["attribution_curvature"]
short = {"ntk_condition": "ntk_cond", "attribution_curvature": "curv"}
print(f"{'model':<16}" + "".join(f"{short.get(k, k):>12}" for k in keys) + "   dominant term")
for lab, c in zip(labels, checks):
    t = c.tightness
    print(f"{lab:<16}" + "".join(f"{t[k]:>12.2g}" for k in keys) + f"   {c.index.dominant}")


def span(values):
    return f"{min(values):.3g}–{max(values):.3g}"


fw_slack = [1 / c.tightness["forward"] for c in checks]
attr_slack = [1 / c.tightness["attribution"] for c in checks]
step = [c.step_ratio for c in checks]
ntk_identity = sum(c.index.dominant == "ntk" for c in checks)
print(f"\nforward bound with Gamma loose by {span(fw_slack)}x; "
      f"dominant term: {sorted({c.index.dominant for c in checks})}")  # fmt: skip
print(f"2 Gamma loose by {span(attr_slack)}x on the saliency change")
print(f"NTK term sets Gamma on {ntk_identity} of {len(checks)} models, where the NTK 'bound' equals "
      f"kappa(K): ratios {[round(c.tightness['ntk_condition'], 12) for c in checks if c.index.dominant == 'ntk']}")  # fmt: skip
print(f"measured largest stable step / certified 2/Gamma^2: {span(step)}x")
curv0 = [c.curvature.ratio[0] for c in checks]
print(f"curvature form at the smallest |delta|: change/bound {min(curv0):.4f}–{max(curv0):.4f}")

# %% [markdown]
# What the table says (the cell above prints the ranges):
#
# * **Forward and parameter sensitivity** are tight *for their own operator* (hollow points sit on
#   the diagonal: the worst direction attains $\sigma_1$ to first order) but with $\Gamma$ they are
#   loose by whatever factor separates that operator's term from the largest one.
# * **Saliency change** against $2\Gamma$: loose, and true by construction anyway. The curvature
#   form $\min(2\Gamma, M\|\delta\|)$ is nearly attained at small $\|\delta\|$ along the worst
#   direction on every model; it is what says something about the network. Chapter 06 shows that
#   attribution change is governed by margins and curvature, not by $\sigma_1$ alone.
# * **NTK conditioning**: an identity when the NTK term sets $\Gamma$ (ratio exactly 1), otherwise
#   loose by $\Gamma^2 n/\lambda_{\max}(K)$. Either way it tells us nothing the profile did not.
# * **Step size**: $2/\Gamma^2$ was safe on every model, but far below the largest step that works;
#   even $2/\lambda_{\max}(H)$ (hollow) is conservative for cross-entropy networks, which tolerate
#   larger steps than their local quadratic model suggests.
#
# Before trusting the check cells, convince yourself they have teeth. Three of them do, and the
# cells below show each one catching a wrong formula; the other two cannot be given any.
#
# **Forward bound.** A bound 1 % too small fails on a network whose Jacobian is constant (a linear
# network), where the worst direction attains $\sigma_1$ exactly.

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
linear = sl.MLP(16, 4, width=16, depth=3, activation="identity").double()
x_lin = teacher.tensors(32)[0]
lin_prof = sl.stability_profile(linear, x_lin, operators=("input_jacobian",))
lin_idx = sl.stability_index(lin_prof)
worst = sl.stability.measure_forward_sensitivity(linear, x_lin, 0.1).max().item()
exact = math.isclose(worst, sl.stability.forward_sensitivity_bound(lin_idx, 0.1), rel_tol=1e-9)
print("linear network attains the forward bound exactly:", exact)
print(
    "a bound 1% too small would be violated:",
    worst > 0.99 * sl.stability.forward_sensitivity_bound(lin_idx, 0.1),
)
assert exact and worst > 0.99 * sl.stability.forward_sensitivity_bound(lin_idx, 0.1)

# %% [markdown]
# **Curvature form.** Swap in three plausible wrong curvature measures — half the Hessian norm (a
# dropped factor), the Hessian of another logit than the one whose saliency is compared, and the
# Hessian at $x$ only instead of the sup along the segment — and run the same check on the trained
# digits model. Then a genuine failure with no mutant: for a ReLU network the input Hessian is zero
# almost everywhere while the gradient jumps at kinks, so the curvature form (smooth activations
# only) does not apply, and the check says so.

# %% tags=["nbval-ignore-output"]
from unittest import mock

st = sl.stability
x16 = x_test[:16]
mutants = {
    "M / 2": ("logit_hessian_norm", lambda m, z, c, f=st.logit_hessian_norm, **k: 0.5 * f(m, z, c)),
    "another logit": ("logit_hessian_norm",
                      lambda m, z, c, f=st.logit_hessian_norm, **k: f(m, z, (c + 1) % 10)),
    "Hessian at x only": ("segment_curvature",
                          lambda m, z, d, c, points=9, f=st.logit_hessian_norm: f(m, z, c)),
}  # fmt: skip
right = st.check_attribution_curvature(model, x16)
print(f"correct M: holds = {right.holds}, max change/bound = {max(right.ratio):.3f}")
caught = {}
for name, (attr, fn) in mutants.items():
    with mock.patch.object(st, attr, fn):
        wrong = st.check_attribution_curvature(model, x16)
    caught[name] = not wrong.holds
    print(f"mutant '{name}': holds = {wrong.holds}, max change/bound = {max(wrong.ratio):.3f}")
torch.manual_seed(0)
relu_net = sl.MLP(16, 4, width=32, depth=3, activation="relu", gain=2**0.5).double()
relu_chk = st.check_attribution_curvature(relu_net, teacher.tensors(32)[0].double(), eps=(0.5, 1.0),
                                          direction="random")  # fmt: skip
print(f"ReLU network (M = {float(relu_chk.curvature.max()):g}): holds = {relu_chk.holds}")

# %% tags=["nbval-check-output"]
# check: the correct curvature passes, every wrong one is caught, and ReLU fails where it should
print("correct curvature holds:", right.holds)
for name, hit in caught.items():
    print(f"mutant '{name}' caught:", hit)
print("ReLU network reported as violating the curvature form:", not relu_chk.holds)
assert right.holds and all(caught.values()) and not relu_chk.holds

# %% [markdown]
# **Certified step.** Take a linear model under $50\times$ the half squared error: the loss is
# exactly quadratic, its Hessian is $50\,[X\;1]^\top[X\;1]/n$, and the Jacobian terms of $\Gamma$
# cannot see the factor 50 — only the Hessian term can. With it, $2/\Gamma^2$ sits just below the
# measured divergence threshold; a $\Gamma$ that omits the Hessian term certifies a step several
# times too large, and the check reports it.

# %% tags=["nbval-ignore-output"]
from spectral_lab.hessian import half_mse

torch.manual_seed(0)
lin2 = sl.MLP(4, 2, depth=1).double()
g = torch.Generator().manual_seed(0)
x_q, y_q = (
    torch.randn(20, 4, generator=g, dtype=torch.float64),
    torch.randn(20, 2, generator=g, dtype=torch.float64),
)


def stiff(out, target):
    return 50.0 * half_mse(out, target)


def step_check(**kw):
    return sl.verify_consequences(lin2, (x_q, y_q), loss=stiff, lr_range=(1e-4, 1.0), lr_steps=50,
                                  lr_iters=12, curvature_eps=None, **kw)  # fmt: skip


good = step_check()
no_hess = lambda p, f=st.index_terms: {k: v for k, v in f(p).items() if k != "hessian"}  # noqa: E731
with mock.patch.object(st, "index_terms", no_hess):
    bad = step_check()
print(f"measured divergence threshold {good.measured['stable_lr']:.4g}; "
      f"2/lambda_max(H) = {2 / good.profile.hess_top:.4g}")  # fmt: skip
print(f"Gamma with the Hessian term:    certified {good.bound['stable_lr']:.4g}, "
      f"measured/certified = {good.step_ratio:.3g}, holds = {good.holds['stable_lr']}")  # fmt: skip
print(f"Gamma without the Hessian term: certified {bad.bound['stable_lr']:.4g}, "
      f"measured/certified = {bad.step_ratio:.3g}, holds = {bad.holds['stable_lr']}")  # fmt: skip

# %% tags=["nbval-check-output"]
# check: the certified step is safe with the Hessian term and caught as unsafe without it
print("2/Gamma^2 below the measured threshold:", good.holds["stable_lr"])
print("Gamma without the Hessian term caught:", not bad.holds["stable_lr"])
assert good.holds["stable_lr"] and not bad.holds["stable_lr"]

# %% [markdown]
# **No teeth to show.** $\|a(x')-a(x)\| \le 2\Gamma$ and $\kappa(K) \le \Gamma^2 n/\lambda_{\min}(K)$
# cannot fail for any model, any data and any correct $\sigma_1$: the first is the triangle
# inequality, the second an identity when the NTK term sets $\Gamma$ (the ratios of exactly 1
# printed above). They are consequences of how $\Gamma$ is built, not findings about networks.

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
g_clean = [
    sl.stability_index(prof_clean.with_q(q), weights={"parameter_jacobian": 0}).value for q in qs
]
g_odd = [
    sl.stability_index(prof_odd.with_q(q), weights={"parameter_jacobian": 0}).value for q in qs
]

fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
ax[0].plot(qs, g_clean, label="200 clean digits")
ax[0].plot(qs, g_odd, "--", label="+ 4 bad scans")
ax[0].set(
    xlabel="quantile level q", ylabel=r"$Q_q\,\sigma_1(J_f)$", title="input term of $\\Gamma_q$"
)
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


def rescaled_relu(a: float):
    """The same function as `relu`: first linear layer times a, second divided by a."""
    m = sl.MLP(16, 4, width=32, depth=3, activation="relu").double()
    m.load_state_dict(relu.state_dict())
    first, second = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][:2]
    with torch.no_grad():
        first.weight.mul_(a)
        first.bias.mul_(a)
        second.weight.div_(a)
    return m


rows = []
for a in alphas:
    rows.append((rescaled_relu(a), None))
rows = [(m, sl.stability_index(sl.stability_profile(m, (x_r, y_r)))) for m, _ in rows]
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
assert (
    same_function and max(jac_terms) / min(jac_terms) - 1 < 1e-9 and max(gammas) / min(gammas) > 2
)

# %% [markdown]
# So $\Gamma$ is not a property of the *function* alone; it mixes input-space and parameter-space
# gains measured in different units. It is a sound single scale for *all five* statements at once,
# but for any one question the operator that question is about gives a sharper answer. Read the
# profile, not only the index.
#
# ## 6. `diagnose`: the report you run on your own model
#
# `sl.diagnose(model, data)` streams the data (tensors, a `Dataset` or a `DataLoader`) with a
# progress bar, caps the cost (`max_samples`, `num_ntk_samples`, `num_hessian_samples`,
# `max_iter`), and returns a `StabilityReport`: it renders as a table in a notebook, prints
# as text, serialises with `to_dict()`/`to_json()` and draws a summary with `plot()`.

# %% tags=["nbval-ignore-output"]
report = sl.diagnose(model, test_set, max_samples=96, num_ntk_samples=48, num_hessian_samples=96,
                     progress=False, name="MLP 64-32-32-10 tanh (10 epochs)")  # fmt: skip
report

# %% tags=["nbval-ignore-output"]
report.plot()
plt.show()
print(report.to_json()[:300], "...")

# %% tags=["nbval-ignore-output"]
# the report's operator terms against independent dense references on the same samples --
# input Jacobians and parameter Jacobians by torch.func, singular values and NTK eigenvalues by numpy
from torch.func import functional_call, jacrev, vmap

x_rep = test_set.tensors(96)[0].double()
params = {k: v.detach() for k, v in model.named_parameters()}
one = lambda z: model(z[None])[0]  # noqa: E731
jf = vmap(jacrev(one))(x_rep).reshape(96, 10, -1).detach().numpy()
jt = vmap(jacrev(lambda p, z: functional_call(model, p, (z[None],))[0]), in_dims=(None, 0))(
    params, x_rep[:48]
)
jt = np.concatenate([v.reshape(48, 10, -1).detach().numpy() for v in jt.values()], axis=2)
lam = np.linalg.eigvalsh(np.einsum("icp,jcp->ij", jt, jt)) / 48
ref = {"input_jacobian": np.linalg.svd(jf, compute_uv=False)[:, 0].max(), "ntk": np.sqrt(lam[-1])}
for k, v in ref.items():
    print(f"{k}: report {report.index.terms[k]:.10g}, dense reference {v:.10g}")
print(f"scalar-NTK condition number: report {report.bounds['ntk_condition']:.6g}, "
      f"reference {lam[-1] / lam[0]:.6g}")  # fmt: skip

# %% tags=["nbval-check-output"]
# check: the report agrees with the dense references
agree = all(math.isclose(report.index.terms[k], v, rel_tol=1e-8) for k, v in ref.items())
agree = agree and math.isclose(report.bounds["ntk_condition"], lam[-1] / lam[0], rel_tol=1e-6)
print("report agrees with the dense references:", agree)
assert agree

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
# ## Summary
#
# * The stability profile records the spectral norms of $J_f(x)$ and $J_\theta(x)$ per sample, and of
#   $K$ and $H$ on the data; the index $\Gamma_q$ puts them on one gain scale and takes the largest,
#   with a supremum ($q = 1$) or a quantile over the samples.
# * Two of the five consequences hold by construction; the curvature form of the attribution bound
#   and the certified step size can fail, and the check cells catch wrong formulas.
# * The supremum is fragile to a few odd inputs; a high quantile is not.
# * $\Gamma$ is not a property of the function alone (a ReLU rescaling moves it): read the profile,
#   not only the index. `sl.diagnose` prints both.
#
# ## Exercises
#
# Each exercise has a cell to complete (replace the `...`), a hidden solution cell (collapsed; it
# runs when you *Run All*), and a check cell that tests the answer against an independent
# computation.
#
# **Exercise 1.** Train a copy of the digits model for 30 epochs and record the index terms
# (`sl.stability_index(sl.stability_profile(...)).terms`) on `(x_test, y_test)` after every 10
# epochs. Which term grows fastest, and does the dominant operator change?

# %% tags=["exercise"]
terms_by_epoch = ...  # dict: epoch (10, 20, 30) -> dict of index terms
model30 = ...  # the model after 30 epochs (float64)

# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
torch.manual_seed(0)
net30 = sl.MLP(64, 10, width=32, depth=3, activation="tanh", gain=1.4)
terms_by_epoch = {}
for epoch in (10, 20, 30):
    sl.train(net30, train_set, epochs=10, lr=3e-3, seed=epoch, progress=False)
    model30 = copy.deepcopy(net30).double()  # analyse a float64 copy; keep training the original
    terms_by_epoch[epoch] = sl.stability_index(
        sl.stability_profile(model30, (x_test, y_test))
    ).terms

# %% tags=["nbval-check-output"]
# check exercise 1: the last input-Jacobian term is max_i sigma_1(J_f(x_i)), from torch.func + numpy
jf30 = torch.func.vmap(torch.func.jacrev(lambda z: model30(z[None])[0]))(x_test.double())
sup30 = np.linalg.svd(jf30.reshape(len(x_test), 10, -1).detach().numpy(), compute_uv=False)[
    :, 0
].max()
ex1_ok = math.isclose(terms_by_epoch[30]["input_jacobian"], sup30, rel_tol=1e-6)
print("exercise 1 passed:", ex1_ok)
assert ex1_ok

# %% tags=["nbval-ignore-output"]
# what this run measured
for epoch, t in terms_by_epoch.items():
    print(
        f"epoch {epoch}: "
        + ", ".join(f"{k} {v:.3g}" for k, v in t.items())
        + f"  (dominant: {max(t, key=t.get)})"
    )

# %% [markdown]
# **Exercise 2.** For the profile of §1 (the trained model on 48 test digits), how many samples would
# have to be removed to bring the supremum of $\sigma_1(J_f(x_i))$ down to its 95 % quantile? Use
# `profile.samples["jac_top"]` and `profile.with_q(0.95).jac_top`.

# %% tags=["exercise"]
n_to_remove = ...  # int

# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
n_to_remove = int((profile.samples["jac_top"] > profile.with_q(0.95).jac_top).sum())

# %% tags=["nbval-check-output"]
# check exercise 2: per-sample sigma_1 from numpy's SVD of autograd Jacobians; the quantile is the
# empirical one that takes the next-higher sample (numpy's method="higher")
jf48 = torch.func.vmap(torch.func.jacrev(lambda z: model(z[None])[0]))(x_test.double())
s1_48 = np.linalg.svd(jf48.reshape(len(x_test), 10, -1).detach().numpy(), compute_uv=False)[:, 0]
n_ref = int((s1_48 > np.quantile(s1_48, 0.95, method="higher") * (1 + 1e-9)).sum())
ex2_ok = n_to_remove == n_ref
print("exercise 2 passed:", ex2_ok)
assert ex2_ok

# %% tags=["nbval-ignore-output"]
# what this run measured
print(f"{n_to_remove} of {len(s1_48)} samples lie above the 95 % quantile")

# %% [markdown]
# **Exercise 3.** Take the ReLU rescaling of §5 (`rescaled_relu(alpha)`) and scan
# `alphas_scan = np.logspace(-1, 1, 9)`. Which $\alpha$ minimises $\Gamma$, and which minimises the
# parameter-Jacobian term? Are they the same?

# %% tags=["exercise"]
alphas_scan = np.logspace(-1, 1, 9)
param_terms = ...  # list of floats, one per alpha
gamma_scan = ...  # list of floats, one per alpha

# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
idx_scan = [
    sl.stability_index(sl.stability_profile(rescaled_relu(a), (x_r, y_r))) for a in alphas_scan
]
param_terms = [ix.terms["parameter_jacobian"] for ix in idx_scan]
gamma_scan = [ix.value for ix in idx_scan]
# The input term is flat; Gamma is the largest term, so its minimiser depends on which
# parameter-space term (J_theta, K or H, which weigh the layers differently) dominates.


# %% tags=["nbval-check-output"]
# check exercise 3: the parameter-Jacobian term is max_i sigma_1(J_theta(x_i)), from torch.func
def param_sup(m):
    ps = {k: v.detach() for k, v in m.named_parameters()}
    jt_ = torch.func.vmap(
        torch.func.jacrev(lambda p_, z: torch.func.functional_call(m, p_, (z[None],))[0]),
        in_dims=(None, 0),
    )(ps, x_r)
    jt_ = np.concatenate(
        [v.reshape(len(x_r), 4, -1).detach().numpy() for v in jt_.values()], axis=2
    )
    return np.linalg.svd(jt_, compute_uv=False)[:, 0].max()


ref_terms = [param_sup(rescaled_relu(a)) for a in alphas_scan]
ex3_ok = np.allclose(param_terms, ref_terms, rtol=1e-6)
print("exercise 3 passed:", ex3_ok)
assert ex3_ok

# %% tags=["nbval-ignore-output"]
# what this run measured
print(
    f"Gamma is smallest at alpha = {alphas_scan[int(np.argmin(gamma_scan))]:.3g}; "
    f"the parameter-Jacobian term at alpha = {alphas_scan[int(np.argmin(param_terms))]:.3g}"
)

# %% [markdown]
# **Exercise 4 (think).** The forward-sensitivity bound is a first-order statement. Recompute it
# with a large perturbation (`sl.verify_consequences(..., eps=0.5)`). Must the bound with $\Gamma$
# still hold? With the operator's own term?

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# *Answer.* Nothing guarantees it any more. $f(x+\delta) - f(x)$ is governed by
# $\sup_t\|J_f(x + t\delta)\|_2$ along the segment (the mean-value bound), and points on the segment are
# not in the sample. For tanh networks saturation often keeps the change below $\sigma_1\varepsilon$,
# and $\Gamma$ (set by another operator) may leave slack; for ReLU networks a kink on the segment can
# switch to a region with a larger Jacobian.

# %% [markdown]
# **Exercise 5 (think).** Replace the index by the weighted geometric mean (`agg="geomean"`). Which of
# the five bounds can still be evaluated with `scale="index"`?

# %% [markdown] jupyter={"source_hidden": true} tags=["solution"]
# *Answer.* Only those whose operator term is at most the geometric mean: a geometric mean never
# dominates the largest term, so for the others the bound would not hold, and the library refuses
# with a `ValueError` that says so. Use `scale="operator"` to get each operator's own bound instead.
