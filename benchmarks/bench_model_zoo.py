"""The model x call table of issue 12 ("any architecture"): every curvature, Jacobian and NTK call on
the model zoo of ``tests/test_model_zoo.py`` (tiny float64 torchvision ResNet-18 and
MobileNetV3-small, transformer encoders with and without the fused fast path, LSTM, GRU), timed and
compared with the same independent references as the tests (first-order autograd, finite
differences of gradients, numpy eigensolvers), plus the route each call took. A last column runs
the LSTM in float32, where CPU PyTorch uses mkldnn_rnn_layer (no forward-mode AD). Cells: seconds
(single thread) and the relative error against the reference (for ``hessian_trace``, relative to
``sum |lambda|``; for ``hessian_density``, whether every quadrature node lies in the spectrum).

Run from the repository root: ``python benchmarks/bench_model_zoo.py`` (prints a markdown table).
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import spectral_lab as sl
from spectral_lab import hessian as hs
from spectral_lab import ntk as nk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the zoo lives in tests/
from tests.test_model_zoo import ZOO, Reference


def rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).norm() / b.norm())


def calls(r: Reference):
    data = (r.x, r.y)
    n = len(r.x)
    v = torch.randn(r.p, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = np.linalg.eigvalsh(r.H.numpy())
    Kb = torch.einsum("ncp,mdp->nmcd", r.J, r.J)
    wk = np.linalg.eigvalsh(nk.block_to_matrix(Kb).numpy())[::-1]
    full = torch.autograd.functional.jacobian(r.model, r.x)
    Jx = full.reshape(n, full.shape[1], n, -1)[torch.arange(n), :, torch.arange(n)]
    return {
        "input_jacobian": (lambda: sl.input_jacobian(r.model, r.x), lambda o: rel(o, Jx)),
        "input_jacobian(vmap)": (
            lambda: sl.input_jacobian(r.model, r.x, route="vmap"),
            lambda o: rel(o, Jx),
        ),
        "parameter_jacobian": (lambda: sl.parameter_jacobian(r.model, r.x), lambda o: rel(o, r.J)),
        "ntk_gram(jacobian)": (
            lambda: sl.ntk_gram(r.model, r.x, method="jacobian", kind="block"),
            lambda o: rel(o, Kb),
        ),
        "ntk_gram(ntvp)": (
            lambda: sl.ntk_gram(r.model, r.x, method="ntvp", kind="block"),
            lambda o: rel(o, Kb),
        ),
        "ntk_eigs(lanczos)": (
            lambda: sl.ntk_eigs(r.model, r.x, k=1, kind="block", method="lanczos", tol=1e-10),
            lambda o: abs(float(o) - wk[0]) / wk[0],
        ),
        "hvp": (lambda: sl.hvp(r.model, data, v), lambda o: rel(o, r.H @ v)),
        "gnvp": (lambda: hs.gnvp(r.model, data, v), lambda o: rel(o, r.G @ v)),
        "hessian_eigs(k=1)": (
            lambda: sl.hessian_eigs(r.model, data, k=1, tol=1e-8),
            lambda o: abs(float(o) - w[-1]) / abs(w[-1]),
        ),
        "hessian_trace(60)": (
            lambda: sl.hessian_trace(r.model, data),
            lambda o: abs(float(o) - w.sum()) / abs(w).sum(),
        ),
        "hessian_density(2x10)": (
            lambda: sl.hessian_density(r.model, data, num_probes=2, num_steps=10),
            lambda o: (
                "in spectrum"
                if w[0] - 1e-6 * abs(w).max() <= float(o.nodes.min())
                and float(o.nodes.max()) <= w[-1] + 1e-6 * abs(w).max()
                else "OUTSIDE"
            ),
        ),
    }


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    table: dict[str, dict[str, str]] = {}
    routes: dict[str, dict[str, str]] = {}
    for name in [*ZOO, "lstm_float32"]:
        if name == "lstm_float32":
            # the same LSTM in float32, where CPU PyTorch runs mkldnn_rnn_layer (no forward-mode
            # AD): compared with the float64 references of the same weights
            r = copy.copy(Reference("lstm"))
            r.model, r.x = copy.deepcopy(r.model).float(), r.x.float()
        else:
            r = Reference(name)
        routes[name] = {"p (trainable)": str(r.p), "N": str(len(r.x))}
        for call, (fn, check) in calls(r).items():
            out = None
            t0 = time.perf_counter()
            try:
                out = fn()
                dt = time.perf_counter() - t0
                err = check(out)
                err = f"{err:.0e}" if isinstance(err, float) else err
                cell = f"✓ {dt:.2f} ({err})"
            except Exception as e:  # noqa: BLE001 -- the table records every failure
                cell = f"✗ {type(e).__name__}: {str(e).splitlines()[0][:60]}"
            table.setdefault(call, {})[name] = cell
            route = getattr(out, "route", None)
            if route:
                routes[name][call] = route
    names = list(routes)
    print("| call | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for call, row in table.items():
        print(f"| `{call}` | " + " | ".join(row.get(m, "–") for m in names) + " |")
    print()
    for name, rs in routes.items():
        print(name, rs)


if __name__ == "__main__":
    main()
