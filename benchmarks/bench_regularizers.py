"""Cost per training step of each spectral regulariser, against a plain step (ratios in one run).

    python benchmarks/bench_regularizers.py [--width 256] [--batch 128] [--reg-samples 32]

A step = forward + backward + Adam update of an MLP 784-W-W-10 on a batch of MNIST-sized inputs;
the regularised steps add ``make_regularizer(name)`` on ``--reg-samples`` of the batch.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

import spectral_lab as sl
from spectral_lab.regularizers import REGULARIZERS


def _step_time(model, x, y, reg, repeats: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        out = model(x)
        loss = F.cross_entropy(out, y)
        if reg is not None:
            loss = loss + reg(model, x, y, out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up
        step()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reg-samples", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, 28, 28, device=args.device)
    y = torch.randint(0, 10, (args.batch,), device=args.device)
    print(
        f"device={args.device} threads={torch.get_num_threads()} MLP 784-{args.width}-"
        f"{args.width}-10, batch {args.batch}, penalty on {args.reg_samples} samples"
    )
    rows = []
    for name in REGULARIZERS:
        torch.manual_seed(0)
        model = sl.MLP(784, 10, width=args.width, depth=3).to(args.device)
        kw = {"max_iter": 3} if name == "jacobian_spectral" else {}
        reg = sl.make_regularizer(name, 0.01, max_samples=args.reg_samples, **kw)
        rows.append((name, _step_time(model, x, y, reg, args.repeats)))
    torch.manual_seed(0)
    model = sl.regularizers.apply_spectral_norm(
        sl.MLP(784, 10, width=args.width, depth=3).to(args.device)
    )
    rows.append(("spectral_norm (hard)", _step_time(model, x, y, None, args.repeats)))
    base = rows[0][1]
    print(f"{'route':<24}{'ms/step':>10}{'x plain':>10}")
    for name, t in rows:
        print(f"{name:<24}{1000 * t:>10.2f}{t / base:>10.2f}")


if __name__ == "__main__":
    main()
