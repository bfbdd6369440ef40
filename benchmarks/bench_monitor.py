"""The training monitor's cost: its overhead on the course's CNN, and what a warm start saves.

Run: ``SPECTRAL_LAB_DATA=/path/to/data python benchmarks/bench_monitor.py`` (MNIST when the data
root has it, else the bundled digits; ``--quick`` for a short run).

1. **Overhead.** The course's CNN (:class:`~spectral_lab.SmallCNN`, channels (8, 16)) trained by
   :func:`spectral_lab.train` with a :class:`~spectral_lab.monitor.SpectralMonitor` at its
   defaults (every 50 steps, every quantity, Lanczos ``tol`` 1e-3) as ``callbacks=[monitor]``, in
   two regimes: *minibatch* (``train``'s defaults: Adam, lr 1e-3, batch 128; a probe of 64
   training images, so the preconditioned sharpness is measured too) and *full batch* (gradient
   descent on ``--full-n`` images, chapter 11's regime; the probe is 128 of them). The overhead is
   the monitor's own time (the sum of its records' ``seconds``) over the rest of the same run
   (training); an unmonitored run of the same training gives a second ratio. The machine's load
   moves both: its load average is printed.
2. **Warm start.** At every checkpoint the monitor measured after the first, a cold Lanczos run (a
   random start, the same ``tol`` and residual test) on the same probe Hessian, against the
   monitor's warm-started run: products of each, and the relative error of each against a tight
   reference (Lanczos, ``tol`` 1e-8, another seed).
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch

import spectral_lab as sl
from spectral_lab.hessian import hessian_operator
from spectral_lab.linalg import lanczos
from spectral_lab.monitor import SpectralMonitor


class Keep:
    """Keeps each checkpoint the monitor measured (for the warm/cold comparison); its own time is
    taken off the run's."""

    def __init__(self, mon: SpectralMonitor) -> None:
        self.mon, self.states, self.seconds = mon, [], 0.0

    def _keep(self, model, step: int) -> None:
        s = time.perf_counter()
        if self.mon.history and self.mon.history[-1]["step"] == step:
            self.states.append(copy.deepcopy(model.state_dict()))
        self.seconds += time.perf_counter() - s

    def on_train_begin(self, model, optimizer) -> None:
        self._keep(model, 0)

    def on_step_end(self, model, optimizer, step, loss) -> None:
        self._keep(model, step)


def regime(name, make, data, probe, train_kw) -> None:
    print(f"== {name}: {train_kw}, probe {len(probe[0])} images")
    print(f"load average before: {tuple(round(v, 2) for v in os.getloadavg())}")
    t0 = time.perf_counter()
    sl.train(make(), data, progress=False, seed=0, **train_kw)
    t_base = time.perf_counter() - t0
    net = make()
    mon = SpectralMonitor(probe)  # the defaults
    keep = Keep(mon)
    t0 = time.perf_counter()
    hist = sl.train(net, data, progress=False, seed=0, callbacks=[mon, keep], **train_kw)
    t_run = time.perf_counter() - t0 - keep.seconds
    t_mon = sum(h["seconds"] for h in mon.history)
    print(f"load average after:  {tuple(round(v, 2) for v in os.getloadavg())}")
    n = len(mon.history)
    print(f"steps {len(hist.step_loss)}, measurements {n} (every {mon.every}), quantities "
          f"{mon.quantities}, tol {mon.tol}")  # fmt: skip
    print(f"unmonitored training {t_base:.1f} s; monitored run {t_run:.1f} s, of which the "
          f"monitor {t_mon:.1f} s ({t_mon / n:.2f} s per measurement)")  # fmt: skip
    parts = {k.split("/")[1]: sum(h[k] for h in mon.history) / n
             for k in mon.history[0] if k.startswith("seconds/")}  # fmt: skip
    print("  per measurement: " + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items()))
    print(f"OVERHEAD {name}: monitor / training time of the same run = {t_mon / (t_run - t_mon):.1%}"
          f"; monitored / unmonitored run - 1 = {t_run / t_base - 1:.1%}")  # fmt: skip
    sharp = sum(h["sharpness_products"] for h in mon.history) / n
    total = sum(h["products"] for h in mon.history) / n
    print(f"mean products per measurement {total:.1f}: sharpness {sharp:.1f}, preconditioned "
          f"{max(0.0, total - sharp - len(mon.ntk_index)):.1f}, NTK Gram {len(mon.ntk_index)}")  # fmt: skip
    print("warm start vs cold Lanczos at the same checkpoints (same tol, residual test):")
    print(f"{'step':>6} {'warm':>5} {'cold':>5} {'warm err':>9} {'cold err':>9} {'sharpness':>10}")
    warm_total = cold_total = 0
    worst = 0.0
    for rec, state in zip(mon.history, keep.states):
        if rec["step"] == 0:
            continue  # the first measurement has nothing to start from
        net.load_state_dict(state)
        op = hessian_operator(net, mon.probe, loss="cross_entropy")
        cold = lanczos(op, 1, tol=mon.tol, max_iter=mon.max_iter, seed=0)
        ref = float(lanczos(op, 1, tol=1e-8, max_iter=300, seed=1).eigenvalues[0])
        err_w = abs(rec["sharpness"] - ref) / ref
        err_c = abs(float(cold.eigenvalues[0]) - ref) / ref
        worst = max(worst, err_w, err_c)
        warm_total += rec["sharpness_products"]
        cold_total += cold.matvecs
        print(f"{rec['step']:>6} {rec['sharpness_products']:>5} {cold.matvecs:>5} {err_w:>9.1e} "
              f"{err_c:>9.1e} "
              f"{rec['sharpness']:>10.4g}")  # fmt: skip
    print(f"WARM START {name}: warm {warm_total}, cold {cold_total} products "
          f"({1 - warm_total / max(cold_total, 1):.0%} saved); largest error of either against "
          f"the reference {worst:.1e}")  # fmt: skip
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500, help="minibatch steps (batch 128)")
    ap.add_argument("--full-n", type=int, default=512, help="full-batch training images")
    ap.add_argument("--full-steps", type=int, default=300, help="full-batch steps")
    ap.add_argument("--quick", action="store_true", help="200 minibatch and 100 full-batch steps")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.full_steps = 200, 100
    torch.set_num_threads(args.threads)
    try:
        ds, name, size = sl.load_dataset("mnist", split="train"), "MNIST", 28
    except sl.DatasetNotFoundError:
        ds, name, size = sl.load_dataset("digits", split="train"), "digits (no MNIST)", 8

    def make():
        torch.manual_seed(0)
        return sl.SmallCNN(1, 10, image_size=size, channels=(8, 16))

    p = sum(q.numel() for q in make().parameters())
    print(f"data {name}; SmallCNN(channels=(8, 16)) p = {p}; torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} cores")  # fmt: skip
    print()
    x, y = ds.tensors(min(args.steps * 128, len(ds)))
    epochs = max(1, round(args.steps * 128 / len(x)))
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(x), generator=g)[:64]
    regime("minibatch", make, (x, y), (x[idx], y[idx]),
           {"epochs": epochs, "lr": 1e-3, "batch_size": 128, "optimizer": "adam"})  # fmt: skip
    xf, yf = x[: args.full_n], y[: args.full_n]
    regime("full batch", make, (xf, yf), (xf[:128], yf[:128]),
           {"epochs": args.full_steps, "lr": 0.05, "batch_size": args.full_n,
            "optimizer": "sgd"})  # fmt: skip


if __name__ == "__main__":
    main()
