"""The training monitor's cost: its overhead on the course's CNN, and what a warm start saves.

Run: ``SPECTRAL_LAB_DATA=/path/to/data python benchmarks/bench_monitor.py [--steps 1000]``
(MNIST when the data root has it, else the bundled digits).

1. **Overhead.** The course's CNN (:class:`~spectral_lab.SmallCNN`, channels (8, 16)) trained with
   :func:`spectral_lab.train` (Adam, lr 1e-3, batch 128) for ``--steps`` steps, with a
   :class:`~spectral_lab.monitor.SpectralMonitor` at its defaults (every 50 steps, every quantity,
   a probe of ``--probe`` training images) as ``callbacks=[monitor]``. The overhead is the
   monitor's own measured time (the sum of its records' ``seconds``) over the rest of the run's
   time (training). A second, unmonitored run of the same training gives the baseline time too;
   both ratios are printed (the machine's load moves them; its load average is printed).
2. **Warm start.** At every checkpoint the monitor measured, a cold Lanczos run (a random start,
   the same ``tol`` and residual test) on the same Hessian, against the monitor's warm-started
   run: products of each, and their eigenvalues' relative difference.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time

import torch

import spectral_lab as sl
from spectral_lab.hessian import hessian_operator
from spectral_lab.linalg import lanczos
from spectral_lab.monitor import SpectralMonitor


def _data():
    try:
        ds = sl.load_dataset("mnist", split="train")
        return ds, "MNIST", 28
    except sl.DatasetNotFoundError:
        return sl.load_dataset("digits", split="train"), "digits (MNIST not found)", 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000, help="training steps (batch 128)")
    ap.add_argument("--probe", type=int, default=128, help="probe images")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds, name, size = _data()
    n = args.steps * 128
    x, y = ds.tensors(min(n, len(ds)))
    epochs = max(1, -(-n // len(x)))
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(x), generator=g)[: args.probe]
    probe = (x[idx], y[idx])

    def model():
        torch.manual_seed(0)
        return sl.SmallCNN(1, 10, image_size=size, channels=(8, 16))

    p = sum(q.numel() for q in model().parameters())
    print(f"data: {name}, {len(x)} images, {epochs} epoch(s) of batch 128; SmallCNN p = {p}")
    print(f"torch threads: {torch.get_num_threads()}; machine: {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} cores; load average before: {os.getloadavg()}")  # fmt: skip

    base = model()
    t0 = time.perf_counter()
    sl.train(base, (x, y), epochs=epochs, lr=1e-3, batch_size=128, seed=0, progress=False)
    t_base = time.perf_counter() - t0

    net = model()
    mon = SpectralMonitor(probe)  # the defaults

    class Keep:  # keeps each measured checkpoint for the warm/cold comparison; its time is removed
        def __init__(self):
            self.states, self.seconds = [], 0.0

        def _keep(self, model, step):
            s = time.perf_counter()
            if mon.history and mon.history[-1]["step"] == step:
                self.states.append(copy.deepcopy(model.state_dict()))
            self.seconds += time.perf_counter() - s

        def on_train_begin(self, model, optimizer):
            self._keep(model, 0)

        def on_step_end(self, model, optimizer, step, loss):
            self._keep(model, step)

    keep = Keep()
    t0 = time.perf_counter()
    hist = sl.train(net, (x, y), epochs=epochs, lr=1e-3, batch_size=128, seed=0, progress=False,
                    callbacks=[mon, keep])  # fmt: skip
    t_run = time.perf_counter() - t0 - keep.seconds
    t_mon = sum(h["seconds"] for h in mon.history)
    steps = len(hist.step_loss)
    print(f"load average after: {os.getloadavg()}")
    print()
    print(f"steps: {steps}; measurements: {len(mon.history)} (every {mon.every}), probe "
          f"{len(mon.x)} images, quantities {mon.quantities}, tol {mon.tol}")  # fmt: skip
    print(f"unmonitored training: {t_base:.1f} s")
    print(f"monitored run: {t_run:.1f} s, of which the monitor {t_mon:.1f} s "
          f"({t_mon / len(mon.history):.2f} s per measurement)")  # fmt: skip
    print(f"overhead (monitor / training time of the same run): {t_mon / (t_run - t_mon):.1%}")
    print(f"overhead (monitored run / unmonitored run - 1):      {t_run / t_base - 1:.1%}")
    parts = {}
    for k in ("sharpness_products", "products"):
        parts[k] = sum(h[k] for h in mon.history) / len(mon.history)
    print(f"mean products per measurement: {parts['products']:.1f} "
          f"(Hessian-vector products {parts['sharpness_products']:.1f}, "
          f"preconditioned {parts['products'] - parts['sharpness_products'] - len(mon.ntk_index):.1f}, "
          f"NTK Gram {len(mon.ntk_index)})")  # fmt: skip

    print()
    print("warm start vs cold Lanczos at the same checkpoints (same tol, residual test):")
    print(f"{'step':>6} {'warm':>6} {'cold':>6} {'rel diff':>9} {'sharpness':>10}")
    states = keep.states
    warm_total = cold_total = 0
    for rec, state in zip(mon.history, states):
        if rec["step"] == 0:
            continue  # the first measurement has nothing to start from
        net.load_state_dict(state)
        prep = sl.prepare(net, probe, loss="cross_entropy")
        op = hessian_operator(prep, probe, loss="cross_entropy")
        cold = lanczos(op, 1, tol=mon.tol, max_iter=mon.max_iter, seed=0)
        diff = abs(float(cold.eigenvalues[0]) - rec["sharpness"]) / abs(rec["sharpness"])
        warm_total += rec["sharpness_products"]
        cold_total += cold.matvecs
        print(f"{rec['step']:>6} {rec['sharpness_products']:>6} {cold.matvecs:>6} {diff:>9.1e} "
              f"{rec['sharpness']:>10.4g}")  # fmt: skip
    print(f"total: warm {warm_total}, cold {cold_total} products "
          f"({1 - warm_total / max(cold_total, 1):.0%} saved)")  # fmt: skip


if __name__ == "__main__":
    main()
