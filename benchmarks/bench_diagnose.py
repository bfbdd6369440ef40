"""Where the time of ``diagnose`` goes: each operator of the stability profile timed alone.

Run: ``python benchmarks/bench_diagnose.py``. Prints seconds per operator and the ratio to the
input-Jacobian pass (the baseline: what a Jacobian-only diagnostic costs), for an MLP on digits and
a CNN on MNIST-sized inputs (random pixels; no data files needed).
"""

from __future__ import annotations

import time

import torch

import spectral_lab as sl

OPS = {
    "input_jacobian": ("input_jacobian",),
    "+ parameter_jacobian": ("input_jacobian", "parameter_jacobian"),
    "+ ntk": ("input_jacobian", "ntk"),
    "+ hessian": ("input_jacobian", "hessian"),
}


def bench(name, model, x, y, repeats=2, **kw):
    model.eval()
    sl.stability_profile(model, (x[:8], y[:8]), num_ntk_samples=4, num_hessian_samples=8)  # warm up
    times = {}
    for label, ops in OPS.items():
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            sl.stability_profile(model, (x, y), operators=ops, **kw)
            best = min(best, time.perf_counter() - t)
        times[label] = best
    t = time.perf_counter()
    sl.diagnose(model, (x, y), progress=False, max_samples=len(x), **kw)
    times["diagnose (all)"] = time.perf_counter() - t
    base = times["input_jacobian"]
    p = sum(q.numel() for q in model.parameters())
    print(f"\n{name}: n={len(x)}, p={p:,}, {kw}")
    for label, s in times.items():
        extra = s - base if label.startswith("+") else s
        print(
            f"  {label:<22} {s:7.2f} s   ratio to input Jacobian {s / base:6.1f}   (alone: {extra:.2f} s)"
        )


if __name__ == "__main__":
    torch.manual_seed(0)
    x, y = sl.load_dataset("digits", "test").tensors(256)
    bench("MLP 64-128-128-10 on digits", sl.MLP(64, 10, width=128), x, y,
          num_ntk_samples=128, num_hessian_samples=256, max_iter=20)  # fmt: skip
    x = torch.rand(256, 1, 28, 28)
    y = torch.randint(0, 10, (256,))
    bench("SmallCNN on 28x28 inputs", sl.SmallCNN(1, 10, image_size=28), x, y,
          num_ntk_samples=128, num_hessian_samples=256, max_iter=20)  # fmt: skip
