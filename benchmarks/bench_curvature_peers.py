"""Curvature and NTK products against the peers, in one run: ratios, not absolute seconds.

Run: ``python benchmarks/bench_curvature_peers.py [--n 512] [--reps 5] [--ntk-n 512]``
(``pip install -e ".[bench]"`` installs the peers; a peer that is not installed is skipped with a
note).

Workload: the pooled course CNN (``SmallCNN(1, 10, 28, (8, 16))``, 9,098 parameters) trained for
one epoch on 2,000 MNIST training images, in float32 (``--dtype``; references in float64), on ``--n`` MNIST test images (through
``SPECTRAL_LAB_DATA``; without it the bundled 8x8 digits, with a printed note). Every timing is
the median of interleaved repetitions (each tool once per round: ``--reps`` for single products,
``--solver-reps`` for the solvers, whose many products average the noise themselves), so
contention from other processes hits all tools alike; the ratio column is against one gradient
(products) or against spectral_lab (solvers).

Rows:

1. one Hessian-vector product: a forward pass, a gradient, spectral_lab's operator (kept graph
   and streaming), a block of 10 columns per column, PyHessian's double backward through its
   kept gradient graph, curvlinops' ``H @ v``.
2. Hutchinson trace at an equal budget of products (operator construction included), against
   PyHessian's ``trace`` (its stopping test switched off); the error column is the estimator's
   standard error relative to the estimate (no exact trace is affordable at this size).
3. top-1 and top-5 eigenvalues: spectral_lab Lanczos, PyHessian's power iteration (default and
   tight tolerance), curvlinops + ``scipy.sparse.linalg.eigsh``, hessian-eigenthings' Lanczos;
   error = max relative error against a float64 Lanczos reference run to residual 1e-11 (checked
   against SciPy's ``eigsh`` on the same products at ``tol=1e-12``).
4. NTK top-10 of ``--ntk-n`` images: spectral_lab's ``ntk_operator`` + Lanczos, its time against
   (products x one product), and the torch.func NTK tutorial (Jacobian contraction, then
   ``eigvalsh``).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import spectral_lab as sl
from spectral_lab.hessian import hessian_operator
from spectral_lab.ntk import ntk_operator

TUTORIAL_MAX_N = 4096


def _pyhessian(PyHessian, model, data):
    """PyHessian's ``hessian``: its ``loss.backward(create_graph=True)`` accumulates into
    ``p.grad``, so without clearing them each new object would differentiate through every
    earlier graph as well (slower with each call)."""
    model.zero_grad(set_to_none=True)
    return PyHessian(model, torch.nn.CrossEntropyLoss(), data=data, cuda=False)


def _peer(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        print(f"  (peer {name!r} not installed: skipped; pip install -e '.[bench]')")
        return None


def _interleaved(tools: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in tools}
    for _ in range(reps):
        for name, fn in tools.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _kw(**kw):
    """``memory_budget`` exists only after issue 15; on older code the keyword is dropped."""
    import inspect

    ok = "memory_budget" in inspect.signature(hessian_operator).parameters
    return kw if ok else {k: v for k, v in kw.items() if k != "memory_budget"}


def _table(rows: list[tuple], base: float) -> None:
    print(f"  {'tool':<66} {'seconds':>8} {'products':>8} {'error':>9} {'ratio':>6}")
    for name, sec, prods, err, *rest in rows:
        ratio = sec / base if not rest else rest[0]
        e = "" if err is None else f"{err:.1e}"
        p = "" if prods is None else str(prods)
        print(f"  {name:<66} {sec:>8.3f} {p:>8} {e:>9} {ratio:>6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512, help="test images in the loss")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median)")
    ap.add_argument("--budget", type=int, default=30, help="products of the trace estimators")
    ap.add_argument("--solver-reps", type=int, default=1, help="repetitions of sections 2-4")
    ap.add_argument("--ntk-n", type=int, default=128, help="images of the NTK top-10")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--skip-ntk", action="store_true")
    ap.add_argument("--ntk-only", action="store_true", help="section 4 alone (e.g. --ntk-n 20000)")
    args = ap.parse_args()
    torch.manual_seed(0)
    try:
        train = sl.load_dataset("mnist", split="train", n=2000)
        test = sl.load_dataset("mnist", split="test")
        size = 28
    except Exception as err:  # no data root: the bundled digits
        print(f"note: MNIST not found ({type(err).__name__}); using the bundled 8x8 digits")
        train = sl.load_dataset("digits", split="train")
        test = sl.load_dataset("digits", split="test")
        size = 8
    model = sl.SmallCNN(1, 10, image_size=size, channels=(8, 16))
    sl.train(model, train, epochs=1, lr=3e-3, batch_size=64, seed=0, progress=False)
    dt = getattr(torch, args.dtype)
    model64 = copy.deepcopy(model).double().eval()
    model = model.to(dt).eval()
    x, y = test.tensors(min(args.n, len(test)))
    x = x.reshape(len(x), 1, size, size)
    data, data64 = (x.to(dt), y), (x.double(), y)
    x = x.to(dt)
    params = [p for p in model.parameters() if p.requires_grad]
    p = sum(q.numel() for q in params)
    print(f"model: SmallCNN(1, 10, {size}x{size}, 8-16, max pool), p = {p}, {args.dtype}, "
          f"{len(x)} test images, cross-entropy; torch threads = {torch.get_num_threads()}")  # fmt: skip
    print(f"spectral_lab from {sl.__file__}")
    g = torch.Generator().manual_seed(1)
    v = torch.randn(p, dtype=torch.float64, generator=g).to(dt)
    V10 = torch.randn(p, 10, dtype=torch.float64, generator=g).to(dt)

    if args.ntk_only:
        _ntk_section(args, model, x, size, dt, g)
        return

    # --- 1. one product --------------------------------------------------------------------------
    print("\n1. one Hessian-vector product (ratio: x one gradient)")
    build: dict[str, list[float]] = {"default": [], "reverse": []}
    for _ in range(3):  # construction (the recording or the kept graph), interleaved
        for name, kw in (("default", {}), ("reverse", {"route": "reverse"})):
            t0 = time.perf_counter()
            hessian_operator(model, data, **_kw(memory_budget=2**31, **kw))
            build[name].append(time.perf_counter() - t0)
    kept = hessian_operator(model, data, **_kw(memory_budget=2**31))
    rev = hessian_operator(model, data, **_kw(memory_budget=2**31, route="reverse"))
    stream = hessian_operator(model, data, **_kw(memory_budget=0))
    print(f"  spectral_lab routes: default {kept.route!r} "
          f"{getattr(kept, 'memory', {}).get('estimate_bytes')} bytes, built in {statistics.median(build['default']):.3f} s; "
          f"route='reverse' {rev.route!r} {getattr(rev, 'memory', {}).get('estimate_bytes')} bytes, "
          f"built in {statistics.median(build['reverse']):.3f} s; forced streaming {stream.route!r}")  # fmt: skip

    def fwd():
        with torch.no_grad():
            model(x)

    def grad():
        torch.autograd.grad(F.cross_entropy(model(x), y), params)

    tools = {
        "forward pass": fwd,
        "gradient (forward + backward)": grad,
        "spectral_lab op @ v (default route)": lambda: kept @ v,
        "spectral_lab op @ v (route='reverse': kept autograd graph)": lambda: rev @ v,
        "spectral_lab op @ v (memory_budget=0: streaming)": lambda: stream @ v,
        "spectral_lab op @ V, 10 columns, per column": lambda: kept @ V10,
    }
    pyh = _peer("pyhessian")
    if pyh is not None:
        from pyhessian import hessian as PyHessian
        from pyhessian.utils import hessian_vector_product

        ph = _pyhessian(PyHessian, model, data)
        vs = [t.clone() for t in torch.split(v, [q.numel() for q in params])]
        vs = [t.reshape(q.shape) for t, q in zip(vs, params)]
        tools["PyHessian: double backward through its kept graph"] = (
            lambda: hessian_vector_product(ph.gradsH, ph.params, vs)
        )  # fmt: skip
        tools["PyHessian: fresh graph + double backward"] = lambda: hessian_vector_product(
            _pyhessian(PyHessian, model, data).gradsH,
            ph.params, vs,
        )  # fmt: skip
    cl = _peer("curvlinops")
    H_cl = None
    if cl is not None:
        H_cl = cl.HessianLinearOperator(
            model, torch.nn.CrossEntropyLoss(), params, [data], check_deterministic=False
        ).to_scipy()
        vn = v.numpy()  # in the model's dtype
        tools["curvlinops H @ v"] = lambda: H_cl @ vn
    t = _interleaved(tools, args.reps)
    med = {k: statistics.median(s) for k, s in t.items()}
    med["spectral_lab op @ V, 10 columns, per column"] /= 10
    base = med["gradient (forward + backward)"]
    _table([(k, s, None, None) for k, s in med.items()], base)
    ref_hv = (stream @ v).detach()
    print(f"  kept vs streaming product: max |diff| = {float((kept @ v - ref_hv).abs().max()):.1e}")

    # --- reference eigenvalues ------------------------------------------------------------------
    t0 = time.perf_counter()
    ref = sl.hessian_eigs(model64, data64, k=5, tol=1e-11, max_iter=300)
    ref_t = time.perf_counter() - t0
    lam = ref.eigenvalues
    print(f"\nreference top-5 (float64 model, Lanczos, residual <= 1e-11 |lambda|, {ref.matvecs} products, "
          f"{ref_t:.1f} s): {[f'{a:.10g}' for a in lam.tolist()]}")  # fmt: skip
    try:
        import numpy as np
        from scipy.sparse.linalg import LinearOperator as SciOp
        from scipy.sparse.linalg import eigsh

        op64 = hessian_operator(model64, data64)
        A = SciOp((p, p), matvec=lambda w: (op64 @ torch.from_numpy(np.ascontiguousarray(w).ravel())).numpy(), dtype=np.float64)  # fmt: skip
        w = eigsh(A, k=5, which="LA", tol=1e-12, return_eigenvectors=False)
        chk = torch.from_numpy(np.sort(w)[::-1].copy())
        print(f"  check: SciPy eigsh on the same products: max rel diff {float(((chk - lam) / lam).abs().max()):.1e}")  # fmt: skip
    except ImportError:
        print("  (scipy not installed: reference not cross-checked)")

    def err(vals) -> float:
        vals = torch.as_tensor(sorted(vals, reverse=True), dtype=torch.float64)
        k = len(vals)
        return float(((vals - lam[:k]) / lam[:k]).abs().max())

    # --- 2. trace --------------------------------------------------------------------------------
    m = args.budget
    print(f"\n2. Hutchinson trace, {m} products each, operator construction included (ratio: x spectral_lab Hutchinson)")  # fmt: skip
    res: dict[str, tuple] = {}

    def ours_trace(method):
        def run():
            r = sl.hessian_trace(model, data, method=method, num_matvecs=m)
            res[f"spectral_lab {method}"] = (r.matvecs, r.std_error / abs(r.estimate))

        return run

    tools = {"spectral_lab hutchinson": ours_trace("hutchinson"), "spectral_lab hutch++": ours_trace("hutch++")}  # fmt: skip
    if pyh is not None:

        def ph_trace():
            h = _pyhessian(PyHessian, model, data)
            tr = h.trace(maxIter=m, tol=0.0)
            se = statistics.stdev(tr) / len(tr) ** 0.5
            res["PyHessian trace (Hutchinson, tol=0)"] = (len(tr), se / abs(statistics.mean(tr)))

        tools["PyHessian trace (Hutchinson, tol=0)"] = ph_trace
    t = _interleaved(tools, args.solver_reps)
    med = {k: statistics.median(s) for k, s in t.items()}
    b = med["spectral_lab hutchinson"]
    _table([(k, s, *res[k]) for k, s in med.items()], b)

    # --- 3. top-k --------------------------------------------------------------------------------
    def section3(k: int) -> None:
        print(f"\n3. top-{k} eigenvalue(s) (error: max relative error vs the reference; ratio: x spectral_lab)")  # fmt: skip
        res = {}

        def ours(k=k):
            r = sl.hessian_eigs(model, data, k=k, tol=1e-6)
            res["spectral_lab hessian_eigs (Lanczos, tol 1e-6)"] = (r.matvecs, err(r.eigenvalues.tolist()))  # fmt: skip

        def ours_gap(k=k):
            r = sl.hessian_eigs(model, data, k=k, tol=1e-6, stop="eigenvalue")
            res["spectral_lab hessian_eigs (Lanczos, stop='eigenvalue', tol 1e-6)"] = (r.matvecs, err(r.eigenvalues.tolist()))  # fmt: skip

        tools = {"spectral_lab hessian_eigs (Lanczos, tol 1e-6)": ours,
                 "spectral_lab hessian_eigs (Lanczos, stop='eigenvalue', tol 1e-6)": ours_gap}  # fmt: skip
        if pyh is not None:
            hv_mod = importlib.import_module("pyhessian.hessian")
            # the tight tolerance only for top-1: for top-5 deflated power iteration needs ~10x
            # the products of Lanczos (353 against 31 on the digits), too long for one run here
            tols = ((1e-3, "default tol 1e-3"), (1e-8, "tol 1e-8"))[: 2 if k == 1 else 1]
            for tol, label in tols:
                name = f"PyHessian eigenvalues (power, {label})"

                def ph_eigs(k=k, tol=tol, name=name):
                    count = [0]
                    orig = hv_mod.hessian_vector_product

                    def counted(*a):
                        count[0] += 1
                        return orig(*a)

                    hv_mod.hessian_vector_product = counted
                    try:
                        h = _pyhessian(PyHessian, model, data)
                        vals, _ = h.eigenvalues(maxIter=1000, tol=tol, top_n=k)
                    finally:
                        hv_mod.hessian_vector_product = orig
                    res[name] = (count[0], err(vals))

                tools[name] = ph_eigs
        if cl is not None:

            def cl_eigs(k=k):
                import numpy as np
                from scipy.sparse.linalg import LinearOperator as SciOp
                from scipy.sparse.linalg import eigsh

                Hc = cl.HessianLinearOperator(
                    model, torch.nn.CrossEntropyLoss(), params, [data], check_deterministic=False
                ).to_scipy()
                count = [0]

                def mv(w):
                    count[0] += 1
                    return Hc @ np.ascontiguousarray(w, dtype=np.float32).ravel()

                vals = eigsh(SciOp((p, p), matvec=mv, dtype=np.float32 if args.dtype == "float32" else np.float64), k=k, which="LA", tol=1e-6, return_eigenvectors=False)  # fmt: skip
                res["curvlinops + scipy eigsh (tol 1e-6)"] = (count[0], err(vals.tolist()))

            tools["curvlinops + scipy eigsh (tol 1e-6)"] = cl_eigs
        he = _peer("hessian_eigenthings") if k == 1 else importlib.util.find_spec("hessian_eigenthings") and importlib.import_module("hessian_eigenthings")  # fmt: skip
        if he:
            for iters in (10, 30):
                name = f"hessian-eigenthings lanczos (max_iter={max(iters, 2 * k)})"

                def he_eigs(k=k, iters=iters, name=name):
                    op = he.HessianOperator(model, [data], he.supervised_loss(F.cross_entropy))
                    count = [0]
                    orig = op.matvec

                    def mv(w):
                        count[0] += 1
                        return orig(w)

                    op.matvec = mv
                    r = he.lanczos(op, k=k, max_iter=max(iters, 2 * k), tol=1e-6, which="LA", seed=0)  # fmt: skip
                    res[name] = (count[0], err(torch.as_tensor(r.eigenvalues).tolist()))

                tools[name] = he_eigs
        t = _interleaved(tools, args.solver_reps)
        med = {kk: statistics.median(s) for kk, s in t.items()}
        b = med["spectral_lab hessian_eigs (Lanczos, tol 1e-6)"]
        _table([(kk, s, *res[kk]) for kk, s in med.items()], b)

    for k in (1, 5):
        section3(k)
    if not args.skip_ntk:
        _ntk_section(args, model, x, size, dt, g)


def _ntk_section(args, model, x, size: int, dt: torch.dtype, g: torch.Generator) -> None:
    """Section 4: NTK top-10 against (products x one product) and the torch.func tutorial."""
    if args.ntk_n > len(x):  # more than the test images of the loss: MNIST training images
        train = sl.load_dataset("mnist" if size == 28 else "digits", split="train", n=args.ntk_n)
        x = train.tensors(args.ntk_n)[0].reshape(-1, 1, size, size)
    nx = x[: args.ntk_n].to(dt)
    print(f"\n4. NTK top-10 of {len(nx)} images (scalar NTK, C = 10)")
    op = ntk_operator(model, nx)
    u = torch.randn(len(nx), dtype=torch.float64, generator=g).to(dt)
    res = {}

    def ours_ntk():
        r = sl.ntk.ntk_eigs(model, nx, k=10, method="lanczos", tol=1e-8)
        res["spectral_lab ntk_eigs (Lanczos on ntk_operator)"] = r

    def tutorial():
        # the torch.func NTK tutorial: per-sample Jacobians by vmap(jacrev), contracted, then eigh
        from torch.func import functional_call, jacrev, vmap

        ps = {k: q.detach() for k, q in model.named_parameters()}

        def fnet_single(pp, xi):
            return functional_call(model, pp, (xi.unsqueeze(0),)).squeeze(0)

        jac = vmap(jacrev(fnet_single), (None, 0))(ps, nx)
        jac = [j.flatten(2) for j in jac.values()]
        K = sum(torch.einsum("Naf,Maf->NM", j, j) for j in jac)
        res["torch.func tutorial (Jacobian contraction + eigvalsh)"] = torch.linalg.eigvalsh(K).flip(0)[:10]  # fmt: skip

    tools = {
        "one product K u": lambda: op @ u,
        "spectral_lab ntk_eigs (Lanczos on ntk_operator)": ours_ntk,
    }
    if len(nx) <= TUTORIAL_MAX_N:  # its (N, C, p) Jacobian and dense (N, N) eigvalsh grow too large
        tools["torch.func tutorial (Jacobian contraction + eigvalsh)"] = tutorial
    t = _interleaved(tools, args.solver_reps)
    med = {kk: statistics.median(s) for kk, s in t.items()}
    r = res["spectral_lab ntk_eigs (Lanczos on ntk_operator)"]
    one = med["one product K u"]
    print(f"  route {op.route!r}; one product {one:.3f} s")
    b = med["spectral_lab ntk_eigs (Lanczos on ntk_operator)"]
    tut = res.get("torch.func tutorial (Jacobian contraction + eigvalsh)")
    e = None if tut is None else float(((r.eigenvalues - tut) / tut).abs().max())
    rows = [
        ("spectral_lab ntk_eigs (Lanczos on ntk_operator)", b, r.matvecs, e, b / (r.matvecs * one))
    ]
    if tut is not None:
        rows.append(("torch.func tutorial (Jacobian contraction + eigvalsh)", med["torch.func tutorial (Jacobian contraction + eigvalsh)"], None, None))  # fmt: skip
    else:
        print(
            f"  (the torch.func tutorial is skipped above {TUTORIAL_MAX_N} images; no error column)"
        )
    _table(rows, b)
    print("  (ratio of the spectral_lab row: seconds / (products x one product); of the tutorial: x spectral_lab;\n"
          "   error: max relative difference of the top-10 between the two)")  # fmt: skip


if __name__ == "__main__":
    main()
