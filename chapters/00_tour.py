# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 — Tour and set-up
#
# > A network is a data-dependent product of linear maps and diagonal gates. The spectra of four
# > operators built from it tell us how it reacts to noise, how stable its explanations are and how
# > well conditioned its training is. This course computes, shows and checks each of them.
#
# **Learning objectives.** After this chapter you can
#
# 1. run the course's notebooks, cells and widgets, and check that your environment works;
# 2. train a small network with `spectral_lab` in a few lines;
# 3. compute the singular values of a network's input Jacobian $J_f(x) = \partial f / \partial x$
#    at a few inputs and read the plot;
# 4. find where in the course each idea is developed.
#
# **Prerequisites.** Python and a little PyTorch; the chain rule; the singular value decomposition
# (what $\sigma_1 \ge \sigma_2 \ge \dots$ of a matrix are). No earlier chapter.
#
# **Approximate time:** about 45 minutes to read, run and do the exercises (an estimate, not
# a measurement). Measured: the cells ran in 29 s, one chapter at a time
# (`benchmarks/bench_chapters.py`), on this project's 2-core Linux test server shared with other
# jobs, load average 8; the last cell prints your run's time.
#
# **Who this is for.** Students who know the chain rule and the singular value decomposition;
# teachers who want runnable, checked material; researchers who want one call that diagnoses their
# own model. Every figure is computed when you run the chapter. A theorem a chapter states is
# checked by a cell that compares it with an independent computation and raises if it fails; where
# a bound holds by construction the chapter says so instead of presenting it as evidence. The
# papers' *empirical* claims are measured on the data the chapter ran on and reported with their
# uncertainty, whatever the result — never asserted.

# %% [markdown]
# ## The map of the course
#
# | chapter | idea | library |
# | --- | --- | --- |
# | 00 | this tour | `load_dataset`, `train`, `input_jacobian` |
# | 01 | a network is a product of linear operators $W_L D_{L-1}(x) \cdots D_1(x) W_1$ | `operator_product` |
# | 01 (continued) | singular values through depth; the product-of-norms bound | `partial_spectra`, `sensitivity.norm_bounds` |
# | 02 | singular spectra, spectral entropy, effective and stable rank | `spectral_entropy`, `stable_rank` |
# | 02 (continued) | typical versus worst-case sensitivity: the entropy bound | `sensitivity_bounds` |
# | 03 | parameter Jacobians and the Neural Tangent Kernel | `parameter_jacobian`, `ntk_gram` |
# | 03 (continued) | linearised training and label noise, from the kernel | `ntk.linearized_residuals` |
# | 04 | the loss Hessian: products, eigenvalues, trace and density | `hessian_eigs`, `linalg` |
# | 04 (continued) | the step-size rule, the edge of stability, Gauss–Newton | `hessian.gd_with_sharpness` |
# | 05 | one index, four kinds of stability: the profile and the index | `stability_profile`, `stability_index` |
# | 05 (continued) | what the index bounds, and the one-call report | `verify_consequences`, `diagnose` |
# | 06 | attribution (saliency) robustness | `saliency`, `frechet_distance` |
# | 06 (continued) | does spectral entropy predict which samples are unstable? | `attribution.spearman` |
# | 07 | spectral regularisers: penalties for any training loop | `regularizers` |
# | 07 (continued) | the regularisation study (real MNIST when present, else the bundled digits) | `experiments` |
# | 08 | the power-law orbit: its geometry, fits and effective rank | `geometry` |
# | 09 | residual networks and their exponent profiles | `geometry` |
# | 09 (continued) | the depth budget, checked | `geometry` |
# | 10 | normalisation and attention as operators | `transformer_ops` |
# | 10 (continued) | a small vision transformer as a product of factors; its residual stream | `residual_stream` |
# | 11 | watching training: the edge of stability, NTK drift against width, a regulariser step by step | `monitor`, `experiments.seed_runs` |
#
# **How to run it.** `pip install -e ".[lab]" && spectral-lab lab`, then open
# `chapters/NN_slug.py`: JupyterLab opens each chapter's `.py` as a notebook. Run the cells from the
# top (*Run → Run All Cells*); saving writes the `.py` back unchanged unless you edited a cell (the
# executed `.ipynb` beside it is the rendered copy, hidden in the lab). Cells marked as *checks*
# end in a line such as `check passed: True`; if a claim failed they would raise instead. Widgets
# (sliders) need a live kernel: in a static page you see only their first picture.

# %% [markdown]
# ## 1. Is the environment working?

# %% tags=["nbval-ignore-output"]
import platform
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import spectral_lab as sl
from spectral_lab import exercises as ex

_chapter_start = time.perf_counter()  # the last cell prints the run time

sl.plots.use_style()
torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"
print(
    f"python {platform.python_version()}, torch {torch.__version__}, spectral_lab {sl.__version__}"
)
print(f"device: {device}, CPU threads: {torch.get_num_threads()}")

# %% tags=["nbval-check-output"]
# check: the library imports, tensors compute, and the bundled data needs no network
x_check = torch.randn(3, 3, dtype=torch.float64)
env_ok = torch.allclose(torch.linalg.inv(x_check) @ x_check, torch.eye(3, dtype=torch.float64))
print("environment works:", env_ok)
assert env_ok

# %% [markdown]
# ## 2. A first model on the bundled digits
#
# The default data set of the course is scikit-learn's bundled handwritten digits: 1,797 images of
# $8\times 8$ pixels, shipped inside the package, so nothing is downloaded. (Chapters 06 and 07
# use real MNIST when its files are present and say in their first output which data they ran on;
# the README says where data is looked for. The code path for CIFAR exists, but no CIFAR result is
# shown in this course, because none was measured.)

# %%
train_set = sl.load_dataset("digits", split="train")
test_set = sl.load_dataset("digits", split="test")
print(train_set)
print(test_set)

fig, axes = plt.subplots(1, 8, figsize=(8, 1.3))
for ax, i in zip(axes, range(8)):
    img, label = train_set[i]
    ax.imshow(img[0], cmap="gray_r")
    ax.set_title(str(int(label)))
    ax.set_axis_off()
plt.show()

# %% [markdown]
# A multilayer perceptron $f: \mathbb{R}^{64} \to \mathbb{R}^{10}$ with two hidden ReLU layers.
# `sl.train` runs Adam with a progress bar and returns the history.

# %%
model = sl.MLP(in_features=64, num_classes=10, width=64, depth=3, activation="relu", gain=2**0.5)
history = sl.train(model, train_set, epochs=15, lr=3e-3, batch_size=64, test_data=test_set, seed=0)
print(history)
sl.plots.plot_history(history)
plt.show()

# %% tags=["nbval-check-output"]
# check: the network learned the task
test_loss, test_acc = sl.evaluate(model, test_set)
print("test accuracy above 90%:", test_acc > 0.90)
assert test_acc > 0.90

# %% [markdown]
# ## 3. The input Jacobian and its singular values
#
# At an input $x$ the network is locally linear: $f(x + \delta) \approx f(x) + J_f(x)\,\delta$ with
# the $10 \times 64$ matrix $J_f(x)$. Its singular values $\sigma_1 \ge \dots \ge \sigma_{10}$ say how
# strongly each input direction is amplified: $\sigma_1$ is the worst case, the spread of the rest is
# the "shape" of the sensitivity. Chapters 01 and 02 develop this; here we just look.

# %%
x_few, y_few = test_set.tensors(6)
J = sl.input_jacobian(model, x_few)  # (6, 10, 64): one Jacobian per input, no Python loop
s = sl.singular_values(J)  # (6, 10)
print("Jacobian shape:", tuple(J.shape))
print("sigma_1 per input:", np.round(s[:, 0].detach().numpy(), 2))

sl.plots.plot_spectra(
    s.detach(),
    labels=[f"digit {int(t)}" for t in y_few],
    title="singular values of $J_f(x)$ at six test digits",
)
plt.show()

# %% [markdown]
# Check the Jacobian against something independent: a central finite difference
# $\big(f(x + h v) - f(x - h v)\big) / 2h \approx J_f(x)\, v$ in a random direction $v$ (in float64,
# where $h = 10^{-6}$ is accurate; ReLU networks are piecewise linear, so the match is essentially
# exact away from kinks).

# %% tags=["nbval-check-output"]
model64 = sl.MLP(64, 10, width=64, depth=3, gain=2**0.5).double()
model64.load_state_dict(model.state_dict())
x64 = x_few.double()
v = torch.randn_like(x64)
h = 1e-6
fd = (model64(x64 + h * v) - model64(x64 - h * v)) / (2 * h)
jv = torch.einsum("ncd,nd->nc", sl.input_jacobian(model64, x64), v.flatten(1))
rel_err = ((fd - jv).norm() / jv.norm()).item()
print("finite differences agree with input_jacobian:", rel_err < 1e-6)
assert rel_err < 1e-6

# %% [markdown]
# And a first theorem-style fact: the squared singular values add up to the squared Frobenius
# norm, $\sum_k \sigma_k^2 = \|J\|_F^2$, and the largest one bounds how much any unit direction is
# stretched: $\|J v\| \le \sigma_1 \|v\|$.

# %% tags=["nbval-check-output"]
fro_ok = torch.allclose((s**2).sum(1), (J**2).sum((1, 2)), rtol=1e-4)
u = torch.randn(6, 64)
stretch = torch.einsum("ncd,nd->nc", J, u).norm(dim=1) / u.norm(dim=1)
worst_ok = bool((stretch <= s[:, 0] * (1 + 1e-5)).all())
print("sum of sigma^2 = ||J||_F^2:", fro_ok, "| ||Jv|| <= sigma_1 ||v||:", worst_ok)
assert fro_ok and worst_ok

# %% [markdown]
# Each exercise has a cell to complete (replace the `...`), a collapsed reference solution (click
# it to read it, after trying; it computes its answer in its own names and never overwrites yours),
# and a check cell that grades *your* cell: it prints `not yet attempted` until you fill it in, then
# `passed`, or what is still wrong. It first checks the reference solution against an independent
# computation, so a chapter whose solution were wrong would stop there.
#
# **Exercise 1.** Compute $\sigma_1(J_f(x))$ of the trained `model` at all 360 test digits and find
# the class whose median $\sigma_1$ is the largest.

# %% tags=["exercise"]
x_all, y_all = test_set.tensors()
sigma1_all = ...  # tensor of shape (360,): the top singular value at each test digit
loudest_class = ...  # int: the class with the largest median sigma_1


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_1():
    sigma1_all = sl.singular_values(sl.input_jacobian(model, x_all))[:, 0].detach()
    loudest_class = max(range(10), key=lambda c: sigma1_all[y_all == c].median().item())
    return sigma1_all, loudest_class


# %% tags=["nbval-check-output"]
# check exercise 1 against an independent route: autograd's dense Jacobian and the matrix 2-norm
J_ref = torch.stack(
    [torch.autograd.functional.jacobian(model, xi[None])[0, :, 0].flatten(1) for xi in x_all]
)
sigma1_ref = torch.linalg.matrix_norm(J_ref, ord=2)
medians = [sigma1_ref[y_all == c].median().item() for c in range(10)]
solution_1 = _solution_1()
judge_1 = ex.close(
    (sigma1_ref, int(np.argmax(medians))), rtol=1e-4, names=("sigma1_all", "loudest_class")
)
ex.check(1, (sigma1_all, loudest_class), judge_1, solution=solution_1)

# %% tags=["nbval-ignore-output"]
# what this run measured (by the reference solution)
print(f"class with the largest median sigma_1: {solution_1[1]}")

# %% [markdown]
# ## 4. Play: a widget
#
# Move the slider to pick a test digit. The blue line is that digit's Jacobian spectrum, the grey
# lines the others. Which digits have a steep spectrum (one dominant direction) and which a flat one?

# %% tags=["nbval-ignore-output"]
x_many, y_many = test_set.tensors(40)
sl.widgets.jacobian_spectrum_explorer(model, x_many, y_many)

# %% [markdown]
# **Exercise 2.** Depth at initialisation. Complete `median_sigma1_at_init(depth)`: seed with
# `torch.manual_seed(0)`, build an *untrained* `sl.MLP(64, 10, width=64, depth=depth, gain=2**0.5)`
# and return the median of $\sigma_1$ over the 40 digits in `x_many`. Then look at depths 2, 4 and 8:
# does $\sigma_1$ change geometrically with depth? (Chapter 01 explains why.)


# %% tags=["exercise"]
def median_sigma1_at_init(depth: int) -> float:
    raise NotImplementedError(
        "complete median_sigma1_at_init: build the MLP, then J_f, then sigma_1"
    )


# %% jupyter={"source_hidden": true} tags=["solution", "hide-input"]
# Reference solution (try the exercise first).
def _solution_2(depth: int) -> float:
    torch.manual_seed(0)
    net = sl.MLP(64, 10, width=64, depth=depth, gain=2**0.5)
    return sl.singular_values(sl.input_jacobian(net, x_many))[:, 0].median().item()


# %% tags=["nbval-check-output"]
# check exercise 2 at depth 4 against the largest eigenvalue of J J^T from autograd, at each input
torch.manual_seed(0)
net_ref = sl.MLP(64, 10, width=64, depth=4, gain=2**0.5)
J4 = torch.stack(
    [torch.autograd.functional.jacobian(net_ref, xi[None])[0, :, 0].flatten(1) for xi in x_many]
)
ref = torch.linalg.eigvalsh(J4 @ J4.transpose(1, 2))[:, -1].sqrt().median().item()
judge_2 = lambda f: ex.close(ref, rtol=1e-4, names="median_sigma1_at_init(4)")(f(4))  # noqa: E731
ex.check(2, median_sigma1_at_init, judge_2, solution=_solution_2)
by_depth = {d: _solution_2(d) for d in (2, 4, 8)}

# %% tags=["nbval-ignore-output"]
# what this run measured
print("median sigma_1 at init by depth:", {d: round(v, 3) for d, v in by_depth.items()})

# %% [markdown]
# **Exercise 3 (think).** Retrain with `activation="tanh"` and compare the spectra with the ReLU
# ones above. Before you run it: which do you expect to be flatter, and why?

# %% [markdown] tags=["solution"]
# <details><summary>Answer (click to show)</summary>
#
# A ReLU gate is $0$ or $1$, so each input switches some directions off completely; a tanh
# gate takes values in $(0, 1]$ and switches none off entirely. That argues for flatter tanh spectra,
# but training changes the weights too, so the outcome is an empirical question: measure it with
# `sl.spectral_entropy` (chapter 02) on both models rather than trusting the argument.
#
# </details>

# %% [markdown]
# ## Where next
#
# * **Chapter 01** writes $J_f(x)$ as the product $W_L D_{L-1}(x) \cdots D_1(x) W_1$; its
#   continuation watches singular values spread through depth.
# * **Chapter 02** turns a spectrum into numbers — spectral entropy, effective and stable rank; its
#   continuation proves that entropy bounds the *typical* effect of noise, not just the worst case.
# * **Chapters 03–04** move from inputs to parameters: the Neural Tangent Kernel and the loss Hessian,
#   each continued by what it predicts about gradient descent.
# * **Chapter 05** folds all four operators into one stability index; its continuation checks what
#   the index bounds and runs the one-call `diagnose`.
# * **Chapters 06–07** ask whether explanations (saliency maps) are stable, and whether a modest
#   spectral regulariser makes them so, measured on MNIST (or the bundled digits) with
#   confidence intervals.
# * **Chapters 08–09** follow the power-law geometry of spectra (08) and then deep residual chains
#   and their depth budget (09).
# * **Chapter 10** treats LayerNorm and self-attention as operators (a projection times a gain; a
#   value path plus a pattern path), writes a small vision transformer as a product of factors and
#   follows spectra through its residual stream.
#
# ## Summary
#
# * The course runs offline on the bundled digits; every chapter runs top to bottom and its check
#   cells raise if a claim fails.
# * `sl.train` fits a model in one line; `sl.input_jacobian` gives $J_f(x)$ for a batch at once, and
#   `sl.singular_values` its spectrum.
# * $\sigma_1$ is the worst-case amplification of a small input change; the shape of the rest of the
#   spectrum says how that amplification is spread over directions.
# * Trust a derivative only after comparing it with something independent (here: finite differences).

# %% tags=["nbval-ignore-output"]
# this run's wall time, from the first code cell to here (the header states what was measured)
print(f"chapter 00 ran in {time.perf_counter() - _chapter_start:.0f} s")
