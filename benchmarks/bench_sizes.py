"""Real sizes: the Lanczos basis, the NTK Gram's accumulation, the Fréchet distance.

Run: ``python benchmarks/bench_sizes.py [lanczos|ntk|frechet ...] [--p 2000000]``

1. ``lanczos``: peak resident memory of ``lanczos(k=1)`` on a Hessian-like diagonal operator of
   ``p`` float32 parameters (a few outliers over a bulk; converges in ~20 products), each run in a
   fresh process: the up-front ``max_iter x p`` basis of the previous version (``git show``
   of ``main``'s ``linalg.py``, when available) against the capped, growing basis. The ResNet-18
   numbers follow from ``peak_basis x p x 4`` bytes.
2. ``ntk``: ``ntk_gram`` of torchvision's ResNet-18 (random init, 10 classes, float32) on two
   CIFAR-size inputs by the Jacobian route, against a float64 reference of the same weights; the
   old float32 contraction of the same Jacobians is shown for comparison.
3. ``frechet``: the squared Fréchet distance of 8 clean and 64 perturbed maps at ``d = 3 x 224 x
   224`` by the Gram route (the default), and both routes at ``d = 3 x 32 x 32`` in one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch


def _lanczos_child(which: str, p: int) -> None:
    if which == "old":
        spec = importlib.util.spec_from_file_location("spectral_lab._old_linalg", os.environ["OLD"])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        lanczos, LinearOperator = mod.lanczos, mod.LinearOperator
    else:
        from spectral_lab.linalg import LinearOperator, lanczos
    g = torch.Generator().manual_seed(0)
    lam = 0.01 * torch.rand(p, generator=g)
    lam[:5] = torch.tensor([50.0, 30.0, 20.0, 12.0, 8.0])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    r = lanczos(LinearOperator(lambda v: lam * v, p, torch.float32), k=1, tol=1e-6)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "which": which,
                "matvecs": r.matvecs,
                "lambda": float(r.eigenvalues[0]),
                "converged": r.converged,
                "peak_basis": getattr(r, "peak_basis", None),
                "rss_growth_MB": (peak - base) / 1024,
                "seconds": dt,
            }
        )
    )


def bench_lanczos(p: int) -> None:
    old = None
    try:
        src = subprocess.run(
            ["git", "show", "main:spectral_lab/linalg.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        old = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
        old.write(src.replace("from ._", "from spectral_lab._"))
        old.close()
    except (subprocess.CalledProcessError, FileNotFoundError):
        print("(no git main to compare with: new version only)")
    print(f"lanczos k=1, tol=1e-6 on a diagonal operator of p = {p:,} float32 parameters")
    for which in ("old", "new") if old else ("new",):
        env = dict(os.environ, OLD=old.name if old else "")
        out = subprocess.run(
            [sys.executable, __file__, "_child", which, str(p)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        print(" ", out.stdout.strip().splitlines()[-1])
    from spectral_lab.linalg import default_basis_cap

    p18 = sum(q.numel() for q in _resnet18().parameters())
    cap = default_basis_cap(1, 1e-6)
    print(
        f"ResNet-18 (p = {p18:,}, float32): up-front basis 100 x p = {100 * p18 * 4 / 1e9:.2f} GB; "
        f"capped basis at most {cap} x p = {cap * p18 * 4 / 1e9:.2f} GB (k=1, tol=1e-6)"
    )


def _resnet18():
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def bench_ntk() -> None:
    import spectral_lab.ntk as N
    from spectral_lab.jacobians import parameter_jacobian

    m = _resnet18()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    J = parameter_jacobian(m, x, 1)
    t_jac = time.perf_counter() - t0
    t0 = time.perf_counter()
    old = torch.einsum("ncp,mcp->nm", J, J)
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    new = N._contract(J, None, "scalar")
    t_new = time.perf_counter() - t0
    del J
    J64 = parameter_jacobian(m.double(), x.double(), 1)
    ref = J64.reshape(2, -1) @ J64.reshape(2, -1).T
    del J64

    def err(K):
        return float(((K.double() - ref).abs() / ref.abs()).max())

    print(f"ResNet-18 NTK on 2 CIFAR-size inputs, float32 Jacobians ({t_jac:.1f} s)")
    print(f"  old float32 contraction: max rel. error {err(old):.2e}  ({t_old:.2f} s)")
    print(f"  float64-block contraction: max rel. error {err(new):.2e}  ({t_new:.2f} s)")
    print(
        f"  diagonal: old {old.diag().tolist()}, new {new.diag().tolist()}, ref {ref.diag().tolist()}"
    )


def bench_frechet() -> None:
    import spectral_lab as sl

    g = torch.Generator().manual_seed(0)
    for d, routes in ((3 * 224 * 224, ("gram",)), (3 * 32 * 32, ("gram", "dense"))):
        A = torch.randn(8, d, generator=g, dtype=torch.float64)
        B = A.repeat(8, 1) + 0.1 * torch.randn(64, d, generator=g, dtype=torch.float64)
        for route in routes:
            t0 = time.perf_counter()
            fd = float(sl.frechet_distance(A, B, method=route))
            print(
                f"  d = {d:>6}, n = 8 + 64, {route:>5}: FD = {fd:.10g}  ({time.perf_counter() - t0:.3f} s)"
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _lanczos_child(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("parts", nargs="*", default=["lanczos", "ntk", "frechet"])
    ap.add_argument("--p", type=int, default=2_000_000, help="operator size for the Lanczos part")
    args = ap.parse_args()
    for part in args.parts:
        {"lanczos": lambda: bench_lanczos(args.p), "ntk": bench_ntk, "frechet": bench_frechet}[
            part
        ]()


if __name__ == "__main__":
    main()
