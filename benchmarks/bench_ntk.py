"""NTK Gram per method (time, peak memory) and matrix-free top-10 NTK eigenvalues.

Run: ``python benchmarks/bench_ntk.py [--n-gram 1000] [--n-ntvp 100] [--n-eigs 20000] [--kind scalar]``

1. The scalar NTK Gram of the course CNN (``SmallCNN``, 28x28 inputs, channels 8-16, C = 10) on
   ``--n-gram`` MNIST images (random images if MNIST is not found) by Jacobian contraction, and by
   NTK-vector products on ``--n-ntvp`` images (its cost grows like N^2 C forward passes; the time
   for ``--n-gram`` images is extrapolated as (n_gram / n_ntvp)^2 and labelled as such). The two
   methods are checked to agree on the common sub-block.
2. Top-10 NTK eigenvalues for ``--n-eigs`` inputs matrix-free (Lanczos on ``ntk_operator``; Gram
   never formed), relative accuracy 1e-4, ``--chunk`` samples per forward pass.

Each measurement runs in its own subprocess so that its peak resident memory (``ru_maxrss``; on
CUDA ``torch.cuda.max_memory_allocated``) is its own; memory is reported above the baseline of a
process that has loaded the model and data.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

import spectral_lab as sl


def setup(n: int, device: str):
    torch.manual_seed(0)
    model = sl.SmallCNN(1, 10, image_size=28, channels=(8, 16)).to(device)
    try:
        x, _ = sl.load_dataset("mnist", split="train").tensors(n)
        src = "MNIST"
    except Exception:  # noqa: BLE001 - any missing-data error: fall back to random images
        x, src = torch.rand(n, 1, 28, 28), "random images (MNIST not found)"
    return model, x.to(device), src


def peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(task: str, n: int, kind: str, chunk: int, device: str) -> dict:
    model, x, src = setup(n, device)
    base = peak_mb(device)
    t0 = time.perf_counter()
    if task == "baseline":
        out = {}
    elif task in ("jacobian", "ntvp"):
        K = sl.ntk_gram(model, x, method=task, chunk_size=None if task == "jacobian" else 64)
        out = {"corner": K[:20, :20].tolist()}
    else:
        r = sl.ntk_eigs(model, x, k=10, kind=kind, method="lanczos", chunk_size=chunk, tol=1e-4)
        out = {"eigs": r.eigenvalues.tolist(), "matvecs": r.matvecs, "converged": r.converged}
    out.update(seconds=time.perf_counter() - t0, peak_mb=peak_mb(device), base_mb=base, data=src)
    return out


def run(task: str, n: int, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        task,
        "--n",
        str(n),
        "--kind",
        args.kind,
        "--chunk",
        str(args.chunk),
        "--device",
        args.device,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-gram", type=int, default=1000)
    ap.add_argument("--n-ntvp", type=int, default=100)
    ap.add_argument("--n-eigs", type=int, default=20000)
    ap.add_argument("--kind", default="scalar", choices=["scalar", "block"])
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip", nargs="*", default=[], choices=["gram", "eigs"])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.kind, args.chunk, args.device)))
        return
    p = sum(q.numel() for q in sl.SmallCNN(1, 10, image_size=28, channels=(8, 16)).parameters())
    print(
        f"SmallCNN(1, 10, 28x28, channels 8-16): p = {p}, C = 10, device {args.device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    if "gram" not in args.skip:
        jb = run("jacobian", args.n_gram, args)
        nv = run("ntvp", args.n_ntvp, args)
        print(f"data: {jb['data']}")
        print(f"{'method':<10} {'N':>6} {'time s':>9} {'peak MB above base':>19}")
        print(
            f"{'jacobian':<10} {args.n_gram:>6} {jb['seconds']:>9.2f} {jb['peak_mb'] - jb['base_mb']:>19.0f}"
        )
        print(
            f"{'ntvp':<10} {args.n_ntvp:>6} {nv['seconds']:>9.2f} {nv['peak_mb'] - nv['base_mb']:>19.0f}"
        )
        extra = nv["seconds"] * (args.n_gram / args.n_ntvp) ** 2
        print(
            f"ntvp extrapolated to N={args.n_gram}: ~{extra:.0f} s "
            f"(= {extra / jb['seconds']:.0f}x the Jacobian route; NOT measured)"
        )
        a, b = torch.tensor(jb["corner"]), torch.tensor(nv["corner"])
        m = min(len(a), len(b))
        rel = float((a[:m, :m] - b[:m, :m]).norm() / a[:m, :m].norm())
        print(f"methods agree on the common {m}x{m} block: rel. diff {rel:.1e}")
    if "eigs" not in args.skip:
        r = run("eigs", args.n_eigs, args)
        print()
        print(
            f"top-10 {args.kind} NTK eigenvalues, N = {args.n_eigs}, matrix-free Lanczos "
            f"(chunk {args.chunk}): {r['matvecs']} NTK-vector products, {r['seconds']:.0f} s, "
            f"converged={r['converged']}"
        )
        print("  eigenvalues:", [f"{v:.5g}" for v in r["eigs"]])
        print(
            f"  peak memory above base: {r['peak_mb'] - r['base_mb']:.0f} MB "
            f"(a dense {args.kind} Gram would need "
            f"{(args.n_eigs * (10 if args.kind == 'block' else 1)) ** 2 * 4 / 2**20:.0f} MB)"
        )


if __name__ == "__main__":
    main()
