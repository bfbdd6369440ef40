"""A whole data set through ``diagnose``: MNIST's 60,000 training images, ``max_samples=None``.

Run: ``SPECTRAL_LAB_DATA=/path/to/data OMP_NUM_THREADS=1 python benchmarks/bench_whole_dataset.py
[--budget 600] [--model cnn|mlp] [--max-samples N] [--json FILE]``

Streams every sample of the MNIST training set (a ``DataLoader`` of batch 256) through
``diagnose(model, loader, max_samples=None, time_budget=...)`` on the course's MNIST CNN
(``SmallCNN(1, 10, 28, (8, 16))``, seeded initialisation: the cost does not depend on training)
or an ``MLP(784, 10)``, and prints the wall and CPU time, the samples seen, the peak resident
memory (``resource.getrusage``), the resident memory sampled every second (flat once the data is
loaded: the per-sample statistics go into bounded-memory quantile sketches), the per-phase
seconds and what the budget cut. Nothing is asserted: the numbers are the report.

Resident memory and glibc: the per-sample phase allocates and frees chunks of tens of MiB each
batch; glibc's dynamic mmap threshold then serves them from a fragmenting heap and the RSS drifts
up by a few hundred MiB over a long run without any live tensor growing. Run with
``MALLOC_MMAP_THRESHOLD_=131072`` to see the flat figure (the header prints the setting).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import spectral_lab as sl  # noqa: E402


def rss_mib() -> float:
    """Current resident set size (``/proc/self/status``), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=600.0, help="time_budget in seconds")
    parser.add_argument("--model", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--max-samples", type=int, default=None, help="default: all")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.2f} at start, "
        f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}"
    )
    ds = sl.load_dataset("mnist", "train")
    torch.manual_seed(0)
    model = sl.SmallCNN(1, 10, 28, (8, 16)) if args.model == "cnn" else sl.MLP(784, 10)
    loader = DataLoader(ds, batch_size=args.batch_size)
    rss0 = rss_mib()
    print(f"data: MNIST train, {len(ds)} images; model: {type(model).__name__}, "
          f"{sum(p.numel() for p in model.parameters())} parameters; RSS after loading {rss0:.0f} MiB")  # fmt: skip

    trace: list[tuple[float, float]] = []
    done = threading.Event()

    def sample_rss():
        t0 = time.perf_counter()
        while not done.wait(1.0):
            trace.append((time.perf_counter() - t0, rss_mib()))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    w0, c0 = time.perf_counter(), time.process_time()
    rep = sl.diagnose(model, loader, max_samples=args.max_samples, time_budget=args.budget)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    done.set()
    sampler.join()

    prof = rep.profile
    budget = prof.settings["budget"]
    held = {k: s.held for k, s in prof.sketches.items()}
    quarter = [r for t, r in trace if t >= wall / 4]
    out = {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "time_budget_s": args.budget,
        "samples_seen": prof.n,
        "samples_in_data": len(ds),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_after_loading_mib": round(rss0, 1),
        "rss_after_first_quarter_mib": [round(min(quarter), 1), round(max(quarter), 1)]
        if quarter
        else None,  # fmt: skip
        "rss_timeline_mib": [(round(t), round(r)) for t, r in trace[:: max(1, len(trace) // 12)]],
        "sketch_values_held": held,
        "per_sample": prof.settings["per_sample"],
        "curvature_subsample": prof.settings["curvature_subsample"],
        "phase_seconds": {k: round(v, 1) for k, v in budget["seconds"].items()},
        "skipped": budget["skipped"],
        "capped": budget["capped"],
        "index": rep.index.value,
        "load_average_end": round(os.getloadavg()[0], 2),
    }
    for k, v in out.items():
        print(f"{k:28s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
