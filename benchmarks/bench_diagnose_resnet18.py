"""A default ``diagnose`` of torchvision's ResNet-18 on 64 CIFAR-size inputs: time, memory, numbers.

Run: ``python benchmarks/bench_diagnose_resnet18.py`` (``--only fast`` skips the slow exact run).

* **fast**: ``sl.diagnose(resnet18(num_classes=10).eval(), (x, y))`` with every default, on 64
  random inputs in ``[0, 1]`` of shape ``3 x 32 x 32`` (seeded) and labels ``0..9`` (real CIFAR-10
  is not needed: the cost does not depend on the pixels). Random initialisation, seed 0.
* **exact**: the same model and samples in float64, Lanczos to ``tol=1e-8`` with more iterations
  (the dense NTK Gram is exact either way): the reference the fast numbers are compared with.

Each run is a fresh subprocess, so its peak RSS (``resource.getrusage(...).ru_maxrss``) is its own.
Targets (issue 12): the fast run in at most 5 minutes on 2 CPU cores with under 4 GB peak memory,
and the same numbers as the exact run to the stated tolerance (``tol`` of the fast run for
``lambda_max(H)``; float32 rounding for the rest). The last line is a one-line summary.
The machine may be shared: the wall time is only meaningful with the load average printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

KEYS = ("gamma", "input_jacobian", "parameter_jacobian", "ntk", "hessian", "ntk_min", "loss")


def run(mode: str, n: int) -> dict:
    import torch
    import torchvision

    import spectral_lab as sl

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=g)
    y = torch.arange(n) % 10
    kw: dict = {}
    if mode == "exact":
        model, x = model.double(), x.double()
        kw = dict(tol=1e-8, max_iter=60)
    t = time.perf_counter()
    rep = sl.diagnose(
        model, (x, y), name="resnet18", data_name=f"{n} random CIFAR-size inputs", **kw
    )
    wall = time.perf_counter() - t
    terms = rep.index.terms
    st = rep.profile.settings
    return {
        "mode": mode,
        "wall_s": wall,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "cpu_s": time.process_time(),
        "threads": torch.get_num_threads(),
        "gamma": rep.index.value,
        **{k: terms.get(k) for k in ("input_jacobian", "parameter_jacobian", "ntk", "hessian")},
        "ntk_min": rep.profile.ntk_min,
        "loss": rep.data.get("loss"),
        "hessian_converged": st.get("hessian_converged"),
        "hessian_matvecs": st.get("hessian_matvecs"),
        "hessian_tol": st.get("hessian_tol"),
        "hessian_route": st.get("hessian_route"),
        "ntk_route": st.get("ntk_route"),
        "phase_seconds": (st.get("budget") or {}).get("seconds"),
        "bound_status": dict(rep.bound_status),
        "summary": rep.summary(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["fast", "exact"], default=None)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run(args.child, args.n)))
        return
    print(
        "ResNet-18 (torchvision, num_classes=10, random init, seed 0) on "
        f"{args.n} random inputs in [0,1] of shape 3x32x32 (real CIFAR-10 is not on this machine; "
        "the cost does not depend on the pixels)"
    )
    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")  # fmt: skip
    out = {}
    for mode in ("fast", "exact"):
        if args.only and mode != args.only:
            continue
        proc = subprocess.run(  # progress bars go to this process's stderr
            [sys.executable, __file__, "--child", mode, "--n", str(args.n)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
        if proc.returncode or not line:
            print(proc.stdout[-3000:])
            raise SystemExit(f"{mode} run failed (exit {proc.returncode})")
        r = json.loads(line[0][7:])
        out[mode] = r
        print(f"\n=== {mode}: {r['wall_s']:.1f} s wall ({r['cpu_s']:.0f} s CPU), peak RSS {r['peak_rss_gb']:.2f} GB, "
              f"{r['threads']} torch threads, load average after {os.getloadavg()}")  # fmt: skip
        print(r["summary"])
        print(f"  phases (s): {r['phase_seconds']}")
        print(f"  Hessian: route {r['hessian_route']}, {r['hessian_matvecs']} HVPs, converged "
              f"{r['hessian_converged']} at tol {r['hessian_tol']}; NTK route {r['ntk_route']}")  # fmt: skip
    if "fast" in out and "exact" in out:
        f, e = out["fast"], out["exact"]
        print("\nfast vs exact (relative difference):")
        worst = 0.0
        for k in KEYS:
            a, b = f.get(k), e.get(k)
            if a is None or b is None:
                print(f"  {k:<20} fast {a}  exact {b}")
                continue
            rel = abs(a - b) / max(abs(b), 1e-300)
            worst = max(worst, rel)
            print(f"  {k:<20} fast {a:.6g}  exact {b:.6g}  rel {rel:.2e}")
        print(f"  worst relative difference {worst:.2e}")
    if "fast" in out:
        f = out["fast"]
        ok = f["wall_s"] <= 300 and f["peak_rss_gb"] < 4
        print(
            f"\nSUMMARY resnet18 diagnose n={args.n}: {f['wall_s']:.0f} s, peak RSS "
            f"{f['peak_rss_gb']:.2f} GB ({'meets' if ok else 'misses'} <= 300 s and < 4 GB); "
            f"Hessian converged={f['hessian_converged']} in {f['hessian_matvecs']} HVPs"
            + (f"; worst rel. diff vs exact {worst:.1e}" if "exact" in out else "")
            + f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus"
        )


if __name__ == "__main__":
    main()
