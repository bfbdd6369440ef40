"""Reference figures at real sizes: ``diagnose`` on ResNet-18, ResNet-50 and a GPT-2-sized model.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_real_size.py [--models resnet18,resnet50,gpt2]
[--time-budget SECONDS] [--threads 1]`` (one thread: on a shared, loaded machine two
OpenMP threads wait on each other).

* **resnet18**: ``torchvision.models.resnet18(num_classes=10)``, 64 inputs of 3x32x32, labels
  ``0..9``: the *default* call (no budget unless ``--time-budget``); the target is at most 100
  gradient-equivalents in all.
* **resnet50**: ``torchvision.models.resnet50()`` (1000 classes), 8 inputs of 3x224x224,
  ``time_budget=120`` (or ``--time-budget``): the call must return within 132 s plus set-up and
  say what it cut.
* **gpt2**: ``GPT2LMHeadModel(GPT2Config())`` (the GPT-2 small configuration, random init),
  4 sequences of 128 token ids, ``output=lambda out: out.logits[:, -1]`` (50257 classes),
  ``time_budget=120`` (or ``--time-budget``).

Every model is random (seed 0) and runs in a fresh subprocess (its peak RSS is its own). Printed
per model: wall and CPU seconds of the ``diagnose`` call, peak memory (the process's RSS
high-water mark, ``resource.getrusage``), and per phase the products, seconds, share of the
call, the ratio of its seconds to one gradient of the loss on the same batch (measured, median
of 3), and its counted gradient-equivalents (see :mod:`spectral_lab._budget.core`), with the
total. The machine may be shared: the load average is printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

DEFAULT_BUDGET = {"resnet18": None, "resnet50": 120.0, "gpt2": 120.0}


def build(name: str):
    import torch

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if name == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=10).eval()
        x = torch.rand(64, 3, 32, 32, generator=g)
        return model, x, torch.arange(64) % 10, {}
    if name == "resnet50":
        import torchvision

        model = torchvision.models.resnet50().eval()
        x = torch.rand(8, 3, 224, 224, generator=g)
        return model, x, torch.randint(0, 1000, (8,), generator=g), {}
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config()
        model = GPT2LMHeadModel(cfg).eval()
        x = torch.randint(0, cfg.vocab_size, (4, 128), generator=g)
        y = torch.randint(0, cfg.vocab_size, (4,), generator=g)
        return model, x, y, {"output": lambda out: out.logits[:, -1]}
    raise ValueError(f"unknown model {name!r}; choose from {sorted(DEFAULT_BUDGET)}")


def one(name: str, budget: float | None, threads: int) -> dict:
    import torch

    import spectral_lab as sl

    torch.set_num_threads(threads)
    model, x, y, opts = build(name)
    prep = sl.prepare(model, (x, y), **opts)
    grad_s = []
    for _ in range(3):  # one gradient of the loss on the same batch
        t = time.perf_counter()
        with torch.enable_grad():
            loss = prep.loss_fn(prep.model(prep.inputs(x)), y)
            torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
        grad_s.append(time.perf_counter() - t)
    grad = sorted(grad_s)[1]
    t, c = time.perf_counter(), time.process_time()
    rep = sl.diagnose(model, (x, y), progress=False, time_budget=budget, **opts)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    b = rep.profile.settings["budget"]
    return {
        "model": name, "n": len(x), "classes": rep.profile.num_classes,
        "params": rep.profile.num_params, "time_budget": budget, "wall_s": wall, "cpu_s": cpu,
        "grad_s": grad, "memory": b["memory"], "ge": b["ge"], "phases": b["phases"],
        "budget_wall_s": b["wall_s"], "other_s": b["other_s"],
        "skipped": b["skipped"], "capped": b["capped"], "summary": rep.summary(),
        "load_after": os.getloadavg(),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    out = [
        "| model | phase | computed | cut | products | seconds | share | x gradient | ge |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        total = sum(p["seconds"] for p in r["phases"].values()) or 1.0
        for k, p in r["phases"].items():
            out.append(
                f"| {r['model']} | {k} | {p['computed'] or '-'} | {p['cut'] or '-'} | "
                f"{p['products']} | {p['seconds']:.1f} | {p['seconds'] / total:.0%} | "
                f"{p['seconds'] / r['grad_s']:.0f} | "
                + ("-" if p["ge"] is None else f"{p['ge']:.1f}")
                + " |"
            )
        mem = r["memory"]["peak_bytes"] / 2**30
        ge = "-" if r["ge"] is None else f"{r['ge']:.1f}"
        out.append(
            f"| {r['model']} | **total** | n={r['n']}, C={r['classes']}, p={r['params']:,}, "
            f"budget={r['time_budget']} s | wall {r['wall_s']:.0f} s (profile "
            f"{r['budget_wall_s']:.0f} s, of which {r['other_s']:.0f} s outside the phases' "
            f"pieces; the rest set-up and the loss), CPU {r['cpu_s']:.0f} s, "
            f"peak RSS {mem:.2f} GiB | | {r['wall_s']:.0f} | | "
            f"{r['wall_s'] / r['grad_s']:.0f} (1 gradient = {r['grad_s']:.3f} s) | **{ge}** |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,resnet50,gpt2")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds for every model (default: none for resnet18, 120 for the others)")  # fmt: skip
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the rows to this file")
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(a.one, a.time_budget, a.threads)))
        return 0
    rows = []
    load0 = os.getloadavg()
    for name in a.models.split(","):
        budget = a.time_budget if a.time_budget is not None else DEFAULT_BUDGET[name]
        cmd = [sys.executable, __file__, "--one", name, "--threads", str(a.threads)]
        if budget is not None:
            cmd += ["--time-budget", str(budget)]
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "SPECTRAL_LAB_HEADLESS": "1"}
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode:
            print(f"{name}: failed\n{res.stderr[-3000:]}", file=sys.stderr)
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["process_s"] = time.perf_counter() - t
        rows.append(row)
        print(row["summary"], flush=True)
    print(
        f"\n{time.strftime('%Y-%m-%d', time.gmtime())}, {platform.processor() or platform.machine()}"
        f", {os.cpu_count()} cores, {a.threads} threads, torch CPU; load average before "
        f"{load0[0]:.2f}, after " + ", ".join(f"{r['model']} {r['load_after'][0]:.2f}" for r in rows)
    )  # fmt: skip
    print(table(rows))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
