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
# # 07 — Spectral regularisation experiments
#
# > The paper's experimental claim: a *modest* spectral regulariser makes saliency maps
# > substantially more stable while global spectral summaries barely move (CIFAR-10: spectral
# > entropy 3.101 → 3.102, Fréchet distance 220.445 → 51.165). We rerun that experiment on real
# > MNIST, sweep the strength, and look at what actually changes in the spectrum.
#
# **Learning objectives.** After this chapter you can
#
# 1. add a spectral penalty to any training loop (`sl.make_regularizer` → `extra_loss`) and know
#    what each one costs per step;
# 2. run a reproducible standard-versus-stable study with `sl.run_study` (seeds, strengths, noise
#    scales; cached on disk) and read its table: accuracy, SE, FD, $\kappa_{attr}$, instability;
# 3. read the accuracy–stability trade-off from a strength sweep;
# 4. explain why FD can fall by an order of magnitude while SE hardly moves — the *tails* and the
#    *scale* of the Jacobian spectrum — and say which of the paper's claims a run supports.
#
# Spec: §7 (regularisers R1–R5; all choices, not from the paper), §8 (protocol; 8.2a holds the
# only reported numbers), §4.3 (metric definitions, choices). The paper's model, regulariser,
# strength and metric definitions are unknown, so nothing below "reproduces" its numbers: we
# measure our own, next to its, and say where they agree.

# %% tags=["nbval-ignore-output"]
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import spectral_lab as sl
from spectral_lab.experiments import assess_claims, format_claims, paper_table

sl.plots.use_style()
t_start = time.perf_counter()

# ---- Parameters -------------------------------------------------------------------------------
FULL = False  # True: the full study of `spectral-lab reproduce` (tens of minutes on a CPU)
DATASET = "mnist"  # "mnist", "cifar10", "cifar100" or "digits"
STRENGTHS = (1e-3, 3e-3, 1e-2)  # the sweep; the middle one is "the" stable model
# -------------------------------------------------------------------------------------------------

cfg = sl.study_preset(DATASET)
if not FULL:  # a real-MNIST subset and few epochs: about a minute on two CPU cores
    cfg = cfg.replace(n_train=6000, epochs=3, n_eval=300, n_draws=4)
try:
    data = sl.experiments.load_study_data(cfg)
except sl.DatasetNotFoundError as err:
    print(f"NOTICE: {DATASET} files were not found: {str(err)[:160]}...")
    print("NOTICE: falling back to the bundled 8x8 digits; every number below is for digits.")
    cfg = sl.study_preset("digits", quick=not FULL)
    data = sl.experiments.load_study_data(cfg)
STRENGTH = STRENGTHS[len(STRENGTHS) // 2]
cfg = cfg.replace(strength=STRENGTH)
print(cfg)

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
# plus hard layer-weight spectral normalisation, `sl.apply_spectral_norm(model)`. Measured cost
# (`python benchmarks/bench_regularizers.py`, MLP 784-256-256-10, batch 128, penalty on 32
# samples, one CPU thread of a busy shared machine, so ±30 %): R1 ≈ 1.9×, R2 ≈ 5.8×, R3 ≈ 1.0×,
# R4 ≈ 2.1×, R5 ≈ 5.7×, hard spectral normalisation ≈ 1.5× a plain step. We use **R1**,
# the spec's recommended default; the choice is ours, not the paper's.
#
# First, check the two Jacobian estimators against exact SVDs on a small network.

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
small = sl.MLP(20, 10, width=32, activation="tanh").double()
xs = torch.randn(8, 20, dtype=torch.float64)
J_small = sl.input_jacobian(small.eval(), xs)
s_exact = torch.linalg.svdvals(J_small)
s_power = sl.jacobian_spectral_norm(small, xs, n_iter=50).detach()
fro_mc = sl.jacobian_frobenius_norm(small, xs, n_proj=3000).detach()
power_ok = torch.allclose(s_power, s_exact[:, 0], rtol=1e-6)
hutch_ok = torch.allclose(fro_mc, (J_small**2).sum((1, 2)), rtol=0.1)
print("power iteration (JVP/VJP) = sigma_1 from the SVD:", power_ok)
print("random projections estimate ||J||_F^2 without bias:", hutch_ok)
assert power_ok and hutch_ok

# %% [markdown]
# ## 2. Standard versus stable, with a strength sweep
#
# `sl.run_study(cfg)` trains, for every seed, a standard model and a stable one (same seed, same
# batch order, plus $\lambda\cdot$R1), then measures on held-out test points: accuracy (whole test
# set); **SE**, the mean per-sample spectral entropy of $J_f(x)$ in **bits** (energy
# normalisation; bits because 3.10 only fits a 10-class Jacobian in base 2, spec §8.2a);
# **ACN**, the median $\kappa_{attr}$; $\sigma_1$; and, at each noise scale $s$, **FD** (squared
# Fréchet distance between clean and perturbed saliency clouds, top-32 principal components),
# **FD_shape** (the same on unit-norm maps), $\Delta_{grad}$, cosine distance, top-10 % overlap.
# Every run is cached on disk (`~/.cache/spectral_lab/studies` or `$SPECTRAL_LAB_CACHE`), so
# re-running this cell re-plots without retraining; `strength_sweep` reuses the standard models.

# %%
sweep = sl.strength_sweep(cfg, STRENGTHS, progress=False, data=data)
res = sweep[STRENGTH]
print(res)
print(res.format_table())

# %%
S_REF = cfg.scales[len(cfg.scales) // 2]
sl.plots.plot_study_comparison(
    res,
    [
        ("accuracy", None),
        ("SE", None),
        ("ACN", None),
        ("sigma1", None),
        ("FD", S_REF),
        ("FD_shape", S_REF),
        ("delta_grad", S_REF),
        ("topk", S_REF),
    ],
    title=f"stable / standard at λ = {STRENGTH:g} (bars: mean over seeds; dots: seeds)",
)
plt.show()

fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
sl.plots.plot_strength_sweep(
    sweep, "accuracy", "FD", scale=S_REF, ax=ax[0], title="trade-off: accuracy vs FD"
)
sl.plots.plot_strength_sweep(
    sweep, "accuracy", "FD_shape", scale=S_REF, ax=ax[1], title="... vs FD of unit-norm maps"
)
fig.tight_layout()
plt.show()

# %% tags=["nbval-check-output"]
# check (robust parts): FD falls by more than half in every seed at the chosen strength,
# the accuracy cost is below one point, and a stronger penalty lowers FD further
fd0, fd1 = res.value("standard", "FD", S_REF), res.value("stable", "FD", S_REF)
fd_halved = all(b < 0.5 * a for a, b in zip(fd0["values"], fd1["values"]))
acc_drop = res.value("standard", "accuracy")["mean"] - res.value("stable", "accuracy")["mean"]
fds = [sweep[s].value("stable", "FD", S_REF)["mean"] for s in STRENGTHS]
print("FD more than halved in every seed:", fd_halved)
print("accuracy cost below 1 point:", acc_drop < 0.01)
print("FD decreases along the sweep:", bool(np.all(np.diff(fds) < 0)))
assert fd_halved and acc_drop < 0.01 and np.all(np.diff(fds) < 0)

# %% [markdown]
# ## 3. What changes in the spectrum when FD drops but SE does not
#
# SE depends only on the *shape* of the spectrum, $p_k=\sigma_k^2/\sum_j\sigma_j^2$: multiplying
# the Jacobian by any constant leaves it unchanged. FD of raw saliency maps is in squared
# attribution units: shrinking every map by a factor $t$ shrinks FD by $t^2$. The left panel shows
# the raw singular values: the penalty pulls the **whole spectrum** down, most of all the top
# $\sigma_1$ (the tail that $\kappa_{attr}$ sees). The right panel divides each sample's spectrum
# by its $\sigma_1$: the shapes — what SE measures — differ much less.

# %%
seed0 = cfg.seeds[0]
sig_std = res.record("standard", seed0)["sigma"].numpy()
sig_stab = res.record("stable", seed0)["sigma"].numpy()
fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
sl.plots.plot_spectrum_tails(
    sig_std,
    sig_stab,
    ax=ax[0],
    normalize=False,
    title="raw spectra: the scale and the top tail drop",
)
sl.plots.plot_spectrum_tails(
    sig_std,
    sig_stab,
    ax=ax[1],
    normalize=True,
    title="normalised spectra: the shape (SE) moves much less",
)
fig.tight_layout()
plt.show()
for name in ("SE", "ACN", "sigma1"):
    a, b = res.value("standard", name), res.value("stable", name)
    print(f"{name:>7}: {a['mean']:.3f} -> {b['mean']:.3f}  (ratio {b['mean'] / a['mean']:.3f})")
for name in ("FD", "FD_shape", "delta_grad"):
    a, b = res.value("standard", name, S_REF), res.value("stable", name, S_REF)
    print(f"{name:>10} @ s={S_REF}: ratio stable/standard {b['mean'] / a['mean']:.3f}")

# %% [markdown]
# So the paper's *pattern* — a large FD drop next to a comparatively small SE change — appears
# here too, although our SE moves more than the paper's 0.03 % (a few per cent, towards a *flatter*
# spectrum, so `assess_claims` with its 5 % threshold may call it "not supported"). The spectra
# show the mechanism: the regulariser acts on the scale and the top tail of $J_f(x)$, to which FD of
# unnormalised maps is sensitive and SE is blind. The scale-free measures tell a more sober story:
# **FD_shape and $\Delta_{grad}$ barely move, or rise slightly** — the stable model's maps are
# mostly *smaller*, not differently *shaped* under noise. Whether the paper's FD normalises maps is
# not known (spec §4.3), so this is a caveat on reading "FD" rather than a contradiction.

# %% [markdown]
# ## 4. Next to the paper's numbers, and which claims this run supports
#
# The only numbers the paper is known to report are for CIFAR-10 (spec §8.2a, from the seed
# summary). They are printed below with their provenance; our numbers are for a different data
# set, model and (unknown-to-us) metric definitions, so compare *patterns*, not values.

# %% tags=["nbval-ignore-output"]
print(paper_table("cifar10"))
print()
print(f"this run ({cfg.dataset}, λ = {STRENGTH:g}):")
claims = assess_claims(res)
print(format_claims(claims))

# %% tags=["nbval-check-output"]
# check: the verdicts that are robust on this data and strength
fd_claim = claims[0].verdict == "supported"
acc_claim = claims[3].verdict == "supported"
print("FD drops substantially (claim supported):", fd_claim)
print("the regularisation is modest (claim supported):", acc_claim)
assert fd_claim and acc_claim

# %% [markdown]
# The thresholds behind each verdict are in `sl.assess_claims`' docstring (ours: FD at least
# halved and lower in every seed; SE within 5 %; accuracy cost under one point; median
# $|\rho| < 0.3$ and varying across seeds; a falling 95 % envelope). Our stricter reading "the maps
# themselves get more stable" is listed separately because the paper does not state it.

# %% [markdown]
# ## 5. CIFAR-10 and CIFAR-100
#
# The study code is the same for CIFAR (a 3-conv CNN, 32-64-128 channels, spec §8.4), loaded
# through torchvision's own CIFAR readers. **The CIFAR files are not available on the machines
# this course was built on**, so no CIFAR number was measured here and none is shown. Where you have
# the files (`SPECTRAL_LAB_DATA/cifar-10-batches-py`, `.../cifar-100-python`), run
# `spectral-lab reproduce --dataset cifar10` (or set `DATASET = "cifar10"` above).

# %% tags=["nbval-ignore-output"]
for name in ("cifar10", "cifar100"):
    try:
        sl.load_dataset(name, "test")
        print(f"{name}: files found — run `spectral-lab reproduce --dataset {name}` for its table")
    except sl.DatasetNotFoundError:
        print(f"{name}: not available here, so no {name} numbers are shown.")

# %% [markdown]
# ## 6. The full MNIST study
#
# Regenerate with (about 2 minutes of CPU time on one thread, more on a busy machine; the
# numbers are cached, so a second call prints instantly):
#
# ```bash
# SPECTRAL_LAB_DATA=/path/to/data spectral-lab reproduce --dataset mnist
# ```
#
# Settings (`sl.study_preset("mnist")`): MLP 784-256-256-10, Adam lr $10^{-3}$, batch 128, 5
# epochs on all 60,000 training images, R1 with $\lambda = 10^{-3}$ on 32 samples per batch, seeds
# 0, 1, 2; 500 test points, 8 noise draws per point; SE in bits; FD squared, top-32 PCs.
#
# Result of that command (run once on 23 Nov 2026 on a shared 2-core CPU with one torch thread:
# **4 min 38 s wall, 1 min 31 s CPU** for the 6 trainings and measurements; mean ± std over the
# three seeds; ratio = stable / standard):
#
# | metric | noise $s$ | standard | stable ($\lambda=10^{-3}$) | ratio |
# | --- | --- | --- | --- | --- |
# | accuracy | | 0.9773 ± 0.0034 | 0.9771 ± 0.0025 | 1.000 |
# | SE (bits) | | 2.502 ± 0.004 | 2.591 ± 0.015 | 1.035 |
# | ACN (median $\kappa_{attr}$) | | 2.654 ± 0.046 | 2.456 ± 0.037 | 0.925 |
# | median $\sigma_1$ | | 16.14 ± 0.11 | 3.63 ± 0.04 | 0.225 |
# | FD (squared, PCA 32) | 0.01 | 0.00316 ± 0.00034 | 0.00043 ± 0.00003 | 0.134 |
# | FD | 0.03 | 0.00907 ± 0.0017 | 0.00134 ± 0.00023 | 0.148 |
# | FD | 0.1 | 0.0464 ± 0.0037 | 0.0051 ± 0.0010 | 0.111 |
# | FD_shape (unit-norm maps) | 0.03 | 0.000101 ± 0.000014 | 0.000148 ± 0.000015 | 1.461 |
# | $\Delta_{grad}$ | 0.03 | 0.1085 ± 0.0023 | 0.1164 ± 0.0017 | 1.073 |
# | cosine distance | 0.03 | 0.00751 ± 0.00028 | 0.00952 ± 0.00028 | 1.267 |
# | top-10 % overlap | 0.03 | 0.9226 ± 0.0023 | 0.9246 ± 0.0014 | 1.002 |
# | prediction agreement | 0.03 | 0.9963 ± 0.0009 | 0.9975 ± 0.0016 | 1.001 |
#
# Verdicts printed by the same command: FD drops substantially — **supported** (ratio 0.15, lower
# in every seed; the paper's CIFAR-10 ratio is 0.23); SE changes little — **supported** (3.5 %);
# modest accuracy cost — **supported** (0.02 points); weak, seed-dependent per-sample correlation of
# SE and $\Delta_{grad}$ — **supported** (ρ = 0.27, 0.17, 0.24); entropy caps the unstable regime
# (falling envelope) — **not supported** (envelope trends +0.77, +0.49, +0.60: it *rises* with
# entropy); the maps themselves more stable, not only smaller — **not supported** (FD_shape ratio
# 1.46, $\Delta_{grad}$ ratio 1.07). **CIFAR-10 and CIFAR-100: not run** — their files are not
# available on the machines this course was built on; no CIFAR number here was measured.

# %% [markdown]
# ## 7. Play: the strength slider
#
# Move λ: the left panel shows the spectra (normalised by $\sigma_1$), the right the ratios
# stable/standard of each metric. Watch FD fall with λ while FD_shape and $\Delta_{grad}$ do not.

# %% tags=["nbval-ignore-output"]
sl.widgets.study_explorer(sweep)

# %% tags=["nbval-ignore-output"]
print(f"chapter ran in {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# ## Exercises
#
# 1. Replace R1 by R2 (`cfg.replace(regularizer="jacobian_spectral")`). Does penalising only
#    $\sigma_1$ change SE more or less than R1? Why?
# 2. Use `fd_normalize=True` in the config so that the headline FD is scale free. Which claims
#    does `assess_claims` support now?
# 3. Try `regularizer="spectral_entropy"` (R5, pushing towards flat spectra). What happens to SE,
#    and to FD?
# 4. Set `FULL = True` and run the chapter (tens of minutes). Do the verdicts change?
#
# ### Solutions
#
# 1. R2 pushes down only the top singular value, so the spectrum flattens: SE *rises* more than
#    under R1, whose penalty $\sum_k\sigma_k^2$ shrinks all directions together.
# 2. With unit-norm maps FD no longer sees the overall shrinkage; on MNIST the FD claim is then
#    typically not supported — the same story as FD_shape above.
# 3. SE rises towards $\log_2 10$ by construction; FD falls less than with R1 because the scale of
#    the Jacobian is not penalised.
# 4. Compare with the table in §6 (it *is* the full study for MNIST).
