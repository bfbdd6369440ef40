"""The ``spectral-lab`` command::

    spectral-lab info                 versions, device, where data is looked for
    spectral-lab book [--out DIR]     execute every chapter, build the HTML book (Sphinx)
    spectral-lab sync CHAPTER.py ...  re-execute chapters and rewrite their paired .ipynb
    spectral-lab lab                  JupyterLab on the course, chapters' .py open as notebooks
    spectral-lab reproduce --dataset {digits,mnist,cifar10,cifar100} [--quick]
                                      standard vs spectrally regularised models (chapter 07)
    spectral-lab diagnose CKPT|--model NAME|torchvision:NAME|pkg.mod:fn [--weights W.pt]
                          [--data NAME|FILE.pt]   stability report (JSON + PNG)
    torchrun --nproc_per_node N -m spectral_lab.cli diagnose ...
                                      the same report over N processes (rank 0 writes it)

Each sub-command's ``--help`` says more.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._extras import require


def _info(args: argparse.Namespace) -> int:
    import importlib.util
    import platform

    import torch

    from . import __version__
    from .data import TORCHVISION, default_cache_dir, where_is

    print(f"spectral_lab {__version__}")
    print(f"python       {platform.python_version()}")
    if importlib.util.find_spec("torchvision") is None:
        tv = 'not installed (pip install "spectral_lab[course]")'
    else:
        import torchvision

        tv = torchvision.__version__
    print(f"torch        {torch.__version__}   torchvision {tv}")
    cuda = torch.cuda.is_available()
    print(
        f"device       {'cuda: ' + torch.cuda.get_device_name(0) if cuda else 'cpu'}"
        f" ({torch.get_num_threads()} threads)"
    )
    import os

    env = os.environ.get("SPECTRAL_LAB_DATA")
    print(
        f"data root    {args.root or env or default_cache_dir()}"
        f"  ({'--root' if args.root else 'SPECTRAL_LAB_DATA' if env else 'per-user cache'})"
    )
    print("built in     teacher, teacher_regression, gaussian_mixture, digits")
    for name in TORCHVISION:
        w = where_is(name, args.root)
        print(f"{name:<12} {'found' if w['found'] else 'missing'}: {w['path']}")
    return 0


def _book(args: argparse.Namespace) -> int:
    from ._extras import BOOK, check_installed
    from .book import build_book

    check_installed(BOOK, "spectral-lab book")
    build = build_book(args.out, args.chapters, only=args.only, timeout=args.timeout)
    names = ", ".join(p.stem for p in build.chapters)
    if build.ok:
        print(f"\nbook written to {build.index} in {build.seconds:.0f} s ({names})")
        return 0
    print(
        f"\nspectral-lab book: FAILED after {build.seconds:.0f} s (Sphinx exit {build.status}); "
        "the failing chapter and its traceback are printed above",
        file=sys.stderr,
    )
    return 1


def _sync(args: argparse.Namespace) -> int:
    from ._extras import CHAPTERS, check_installed
    from .book import chapter_sources, sync_chapter

    check_installed(CHAPTERS, "spectral-lab sync")
    paths = [Path(p) for p in args.paths] or chapter_sources()
    status = 0
    for p in paths:
        run = sync_chapter(p, timeout=args.timeout)
        print(f"{p.name}: {'ok' if run.ok else 'FAILED ' + str(run.error)} ({run.seconds:.1f}s)")
        status |= 0 if run.ok else 1
    return status


def _lab(args: argparse.Namespace) -> int:
    import importlib.util
    import subprocess
    import tempfile

    from .book import default_chapters_dir, lab_arguments, lab_command

    if importlib.util.find_spec("jupyterlab") is None:
        print('spectral-lab lab: JupyterLab is missing: pip install -e ".[lab]"', file=sys.stderr)
        return 2
    root = Path(args.root) if args.root else default_chapters_dir().parent
    with tempfile.TemporaryDirectory(prefix="spectral-lab-lab-") as settings:
        extra = lab_arguments(args.lab_args)
        if "--allow-root" in extra and "--allow-root" not in args.lab_args:
            print(
                "spectral-lab lab: running as root, so --allow-root is passed on", file=sys.stderr
            )
        cmd = lab_command(root, settings, port=args.port) + extra
        return subprocess.call(cmd)


def _without_download_hint(err: Exception) -> str:
    """The library's data messages end with "or pass download=True", a keyword of
    ``load_dataset``; the commands have no such option, so say what works from the shell.

    Example:
        >>> print(_without_download_hint(ValueError("put them there, or pass download=True")))
        put them there, or fetch them once in Python: spectral_lab.load_dataset(name, root, download=True)
    """
    import re

    return re.sub(
        r"or pass download=True( where the internet is reachable)?",
        "or fetch them once in Python: spectral_lab.load_dataset(name, root, download=True)",
        str(err),
    )


def _reproduce(args: argparse.Namespace) -> int:
    import time

    from .data import DatasetNotFoundError
    from .experiments import (
        assess_claims,
        format_claims,
        paper_table,
        run_study,
        study_preset,
    )

    cfg = study_preset(args.dataset, quick=args.quick)
    changes = {"data_root": args.root, "verify": not args.no_verify}
    if args.seeds:
        changes["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    for key in ("epochs", "strength", "regularizer", "n_eval", "n_train"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    cfg = cfg.replace(**changes)
    t0 = time.perf_counter()
    try:
        from .experiments import load_study_data

        data = load_study_data(cfg)
    except DatasetNotFoundError as err:
        print(
            f"spectral-lab reproduce: {args.dataset} is not available here, so nothing was run "
            f"and no {args.dataset} numbers are shown.\n{_without_download_hint(err)}\n"
            "The paper's reported numbers (not measured here): "
            + paper_table(args.dataset if args.dataset.startswith("cifar") else "cifar10"),
            file=sys.stderr,
        )
        return 2
    cache = False if args.no_cache else args.cache
    res = run_study(cfg, cache_dir=cache, force=args.force, progress=not args.quiet, data=data)
    print(res.format_table())
    if args.dataset in ("digits", "mnist"):
        print(f"(no paper numbers for {args.dataset}; the paper reports only CIFAR-10:)")
        print(paper_table("cifar10"))
    print("\nWhich of the paper's claims this run supports (thresholds: see assess_claims):")
    print(format_claims(assess_claims(res)))
    if args.save:
        from .experiments import save_study_summary

        command = "spectral-lab " + " ".join(sys.argv[1:] if args.argv is None else args.argv)
        save_study_summary(res, args.save, command)
        print(f"summary (config, table, claims with their statistics) written to {args.save}")
    print(f"\n{len(res.runs)} runs ({res.cached} from cache) in {time.perf_counter() - t0:.1f} s")
    return 0


def _parse_value(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


REFERENCE_MODELS = ("mlp", "cnn", "resmlp", "resnet")


def _model_from_spec(spec: str, kwargs: dict, num_classes: int | None):
    """A model from ``--model``: ``torchvision:NAME`` or ``package.module:function`` (called with
    the ``--model-arg`` options and ``num_classes`` when given)."""
    import importlib

    from torch import nn

    if spec.startswith("torchvision:"):
        try:
            torchvision = require("torchvision", "--model torchvision:NAME")
        except ImportError as err:
            raise ValueError(str(err)) from None
        name = spec.split(":", 1)[1]
        if num_classes is not None:
            kwargs = {"num_classes": num_classes, **kwargs}
        try:
            return torchvision.models.get_model(name, **kwargs)
        except ValueError as err:
            raise ValueError(f"--model {spec}: {err}") from None
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(
            f"unknown model {spec!r}: use a reference name ({', '.join(REFERENCE_MODELS)}), "
            "torchvision:NAME or package.module:function"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"--model {spec}: cannot import {attr!r} from {module_name!r}: {err}"
        ) from None
    if num_classes is not None:
        kwargs = {"num_classes": num_classes, **kwargs}
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {spec} returned a {type(model).__name__}, not an nn.Module")
    return model


def _load_weights(model, path: str) -> None:
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"--weights {path}: not a readable weights file: {err}") from err
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"--weights {path}: expected a state_dict, got {type(sd).__name__}")
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        miss, extra = result.missing_keys, result.unexpected_keys
        raise ValueError(
            f"--weights {path} does not fit the model: {len(miss)} missing key(s) "
            f"{miss[:3]}{' ...' if len(miss) > 3 else ''}, {len(extra)} unexpected key(s) "
            f"{extra[:3]}{' ...' if len(extra) > 3 else ''}"
        )


def _load_tensor_data(path: str):
    """``(x, y)`` from a ``torch.save``d file holding a pair or a dict with ``x`` and ``y``."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"--data {path}: not a readable tensor file: {err}") from err
    if isinstance(obj, dict) and "x" in obj:
        obj = (obj["x"], obj.get("y"))
    if isinstance(obj, torch.Tensor):
        return obj
    if (
        isinstance(obj, (tuple, list))
        and len(obj) == 2
        and isinstance(obj[0], torch.Tensor)
        and (obj[1] is None or isinstance(obj[1], torch.Tensor))
    ):
        return obj[0] if obj[1] is None else (obj[0], obj[1])
    raise ValueError(
        f"--data {path}: expected a tensor x, a pair (x, y) or a dict with keys 'x' and 'y' "
        "(written with torch.save)"
    )


def _diagnose(args: argparse.Namespace) -> int:
    import math

    import torch

    from .data import load_dataset
    from .diagnose import diagnose
    from .models import build_model
    from .training import load_checkpoint

    if (args.checkpoint is None) == (args.model is None):
        raise ValueError("give either a checkpoint file or --model NAME (not both, not neither)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    user_model = args.model is not None and args.model not in REFERENCE_MODELS
    if args.weights is not None and not user_model:
        raise ValueError("--weights applies to --model torchvision:NAME or package.module:function")
    data_file = args.data is not None and Path(args.data).suffix in (".pt", ".pth")
    if args.checkpoint is not None:
        if args.model_arg:
            raise ValueError("--model-arg applies to --model only; a checkpoint knows its model")
        model, info = load_checkpoint(args.checkpoint, map_location=device)
        spec = info["model"]
        data_name = args.data or info.get("dataset") or "digits"
        name = f"{spec['name']} ({Path(args.checkpoint).name})"
        stem = Path(args.checkpoint).with_suffix("")
        stem = stem.with_name(stem.name + ".stability")
    else:
        spec = None
        data_name = args.data or "digits"
        trained = (
            f"weights {Path(args.weights).name}" if args.weights else f"untrained, seed {args.seed}"
        )
        name = f"{args.model} ({trained})"
        safe = args.model.replace(":", "_").replace(".", "_")
        stem = Path(f"stability_{safe}_{Path(data_name).stem if data_file else data_name}")
    if data_file:
        data = _load_tensor_data(data_name)
        ds = None
        shown = Path(data_name).name
    else:
        ds = data = load_dataset(data_name, split=args.split, seed=args.seed)
        shown = f"{data_name} ({args.split})"
    if args.checkpoint is None:
        kwargs = {}
        for item in args.model_arg:
            if "=" not in item:
                raise ValueError(f"--model-arg takes KEY=VALUE, got {item!r}")
            k, v = item.split("=", 1)
            kwargs[k.strip()] = _parse_value(v.strip())
        torch.manual_seed(args.seed)
        if user_model:
            num_classes = args.num_classes
            if num_classes is None and args.model.startswith("torchvision:") and ds is not None:
                num_classes = ds.num_classes
            model = _model_from_spec(args.model, kwargs, num_classes)
            if args.weights is not None:
                _load_weights(model, args.weights)
            model = model.to(device).eval()
        else:
            if ds is None:
                raise ValueError(
                    "--model NAME (a reference model) is sized from a named data set; with a "
                    "tensor file use --model package.module:function or torchvision:NAME"
                )
            if ds.num_classes is None:
                raise ValueError(
                    f"data set {data_name!r} has no classes; diagnose needs a classifier"
                )
            model = (
                build_model(args.model, ds.input_shape, ds.num_classes, **kwargs).to(device).eval()
            )
    elif ds is not None:
        want = tuple(spec["input_shape"])
        if math.prod(want) != math.prod(ds.input_shape) or (
            spec["name"] not in ("mlp", "resmlp") and want != tuple(ds.input_shape)
        ):
            raise ValueError(
                f"checkpoint {args.checkpoint} expects inputs of shape {want} but data set "
                f"{data_name!r} has {tuple(ds.input_shape)}; pass the --data it was trained on"
            )
        if ds.num_classes is not None and spec["num_classes"] != ds.num_classes:
            raise ValueError(
                f"checkpoint {args.checkpoint} has {spec['num_classes']} outputs but data set "
                f"{data_name!r} has {ds.num_classes} classes; pass the --data it was trained on"
            )
    if args.out is not None:
        stem = Path(args.out)
        if stem.suffix in (".json", ".png"):
            stem = stem.with_suffix("")
    rank = _torchrun(args, device)  # dist (issue 25): under torchrun, this rank's block
    if rank is not None:
        from .distributed._launch import contiguous_shard

        x, y = (data, None) if torch.is_tensor(data) else data if isinstance(data, tuple) else data.tensors()  # fmt: skip
        data = contiguous_shard(x, y, *rank, args.samples)
        args.samples, rank = None, rank[0]
        model = model.to(args.device)
    report = diagnose(
        model,
        data,
        q=args.q,
        robust_q=args.robust_q,
        loss=args.loss,
        max_samples=args.samples,
        num_ntk_samples=args.num_ntk_samples,
        num_hessian_samples=args.num_hessian_samples,
        max_iter=args.max_iter,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=not args.no_progress,
        tol=args.tol,
        time_budget=args.time_budget,
        matvec_budget=args.matvec_budget,
        name=name,
        data_name=shown,
        output=_parse_value(args.output) if args.output is not None else None,
        embedding=args.embedding,
    )
    if rank:  # dist (issue 25): one report, from rank 0
        return 0
    json_path = stem.with_name(stem.name + ".json")
    png_path = stem.with_name(stem.name + ".png")
    report.to_json(json_path)
    try:
        plt = require("matplotlib.pyplot", "the report's figure")
    except ImportError as err:  # the numbers do not need the figure
        print(report.summary())
        print(f"wrote {json_path} (no {png_path.name}: {err})")
        return 0
    plt.switch_backend("Agg")
    fig = report.plot()
    fig.savefig(png_path, bbox_inches="tight")
    plt.close(fig)
    print(report.summary())
    print(f"wrote {json_path} and {png_path}")
    return 0


def _torchrun(args: argparse.Namespace, device: str) -> tuple[int, int] | None:
    """Under ``torchrun --nproc_per_node N`` (``WORLD_SIZE > 1``): the process group (gloo on
    CPU, NCCL on CUDA, ``--dist-timeout`` seconds per collective) and ``(rank, world size)``;
    else ``None``.
    Each rank takes a contiguous block of the first ``--samples`` samples, so the report (written
    by rank 0 alone) equals the single-process one on the same samples."""
    from .distributed._launch import init_from_env, torchrun_world

    if torchrun_world() <= 1:
        return None
    rank, world, args.device = init_from_env(device, args.dist_timeout)
    return rank, world


def build_parser() -> argparse.ArgumentParser:
    """The ``spectral-lab`` argument parser: one sub-command per line of the module docstring,
    each bound to its handler as ``args.func``. Cost: negligible (nothing heavy is imported).

    Example:
        >>> args = build_parser().parse_args(["sync", "chapters/01_example.py"])
        >>> args.command, args.func.__name__
        ('sync', '_sync')
    """
    parser = argparse.ArgumentParser(
        prog="spectral-lab",
        description=__doc__.replace("``", "").replace("::", ":"),  # plain text in --help
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, device, data locations")
    p.add_argument("--root", help="data root to inspect (default: SPECTRAL_LAB_DATA or the cache)")
    p.set_defaults(func=_info)
    p = sub.add_parser(
        "book",
        help="execute every chapter and build the HTML book (Sphinx + MyST-NB)",
        description="Build the course as an HTML book with Sphinx, MyST-NB and "
        "sphinx-book-theme: each chapter executed once, outputs cached by content; a failing "
        "chapter fails the build (exit 1) with its traceback.",
    )
    p.add_argument("--out", default="build/book", help="output folder (default build/book)")
    p.add_argument("--chapters", default=None, help="chapters folder (default: the checkout's)")
    p.add_argument("--only", action="append", default=None, metavar="NN",
                   help="build only chapters whose name starts with NN (repeatable, or 00,02)")  # fmt: skip
    p.add_argument("--timeout", type=int, default=900, help="per-cell timeout in seconds")
    p.set_defaults(func=_book)
    p = sub.add_parser("sync", help="re-execute chapters and rewrite their paired .ipynb")
    p.add_argument("paths", nargs="*", help="chapter .py files (default: all)")
    p.add_argument("--timeout", type=int, default=900)
    p.set_defaults(func=_sync)
    p = sub.add_parser(
        "lab",
        help="open the course in JupyterLab, chapters' .py opening as notebooks",
        description="JupyterLab on the checkout: each chapter's .py opens as a notebook (the "
        "rendered .ipynb are hidden), and saving rewrites nothing but what you changed. Every "
        "other flag goes to jupyter lab (spectral-lab lab --no-browser, or after --: "
        "spectral-lab lab -- --ServerApp.token=...). As root (a container) --allow-root is added.",
    )
    p.add_argument("--root", default=None, help="folder to serve (default: the checkout)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("lab_args", nargs=argparse.REMAINDER, help="passed on to jupyter lab")
    p.set_defaults(func=_lab)
    p = sub.add_parser(
        "reproduce", help="standard vs spectrally regularised models: table and claims"
    )
    p.add_argument("--dataset", required=True, choices=["digits", "mnist", "cifar10", "cifar100"])
    p.add_argument("--quick", action="store_true", help="small, fast settings (seconds on MNIST)")
    p.add_argument("--root", default=None, help="data root (default: SPECTRAL_LAB_DATA or cache)")
    p.add_argument("--cache", default=None, help="cache folder for runs (default: user cache)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--force", action="store_true", help="retrain even when runs are cached")
    p.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--strength", type=float, default=None, help="regulariser strength")
    p.add_argument("--regularizer", default=None, help="see spectral_lab.regularizers")
    p.add_argument("--n-eval", dest="n_eval", type=int, default=None)
    p.add_argument("--n-train", dest="n_train", type=int, default=None)
    p.add_argument("--no-verify", action="store_true", help="accept re-packed CIFAR files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--save", default=None, help="write a small JSON summary (table, claims) here")
    p.set_defaults(func=_reproduce)
    p = sub.add_parser(
        "diagnose",
        help="stability report of a checkpoint or a reference model on a data set (JSON + PNG)",
        description="Matrix Stability Profile, Global Matrix Stability Index and its bounds for a "
        "checkpoint written by spectral_lab.save_checkpoint (loaded weights-only) or a named "
        "reference model at initialisation. Writes STEM.json and STEM.png side by side.",
    )
    p.add_argument(
        "checkpoint", nargs="?", help="checkpoint file from spectral_lab.save_checkpoint"
    )
    p.add_argument(
        "--model",
        help="instead of a checkpoint: a reference model (mlp, cnn, resmlp, resnet), "
        "torchvision:NAME (e.g. torchvision:resnet18) or your factory package.module:function",
    )
    p.add_argument("--weights", default=None,
                   help="state_dict file (torch.save) for --model torchvision:NAME or a factory")  # fmt: skip
    p.add_argument("--num-classes", dest="num_classes", type=int, default=None,
                   help="num_classes= for torchvision models and factories")  # fmt: skip
    p.add_argument("--output", default=None,
                   help="which output holds the logits (a dict key or a tuple index)")  # fmt: skip
    p.add_argument("--embedding", default=None,
                   help="token-id models: the input embedding's module name")  # fmt: skip
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="option of --model, e.g. width=64 (repeatable)")  # fmt: skip
    p.add_argument("--data", help="data set name, or a .pt file holding (x, y) saved with "
                   "torch.save (default: the checkpoint's, else digits)")  # fmt: skip
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--samples", type=int, default=512, help="samples for per-sample statistics")
    p.add_argument("--num-ntk-samples", dest="num_ntk_samples", type=int,
                   default=32, help="samples in the NTK Gram")  # fmt: skip
    p.add_argument("--num-hessian-samples", dest="num_hessian_samples",
                   type=int, default=512, help="samples in the loss Hessian")  # fmt: skip
    p.add_argument("--max-iter", dest="max_iter", type=int, default=20,
                   help="cap on Lanczos steps (Hessian-vector products) for lambda_max(H)")  # fmt: skip
    p.add_argument("--tol", type=float, default=1e-3,
                   help="relative Ritz-residual tolerance of Lanczos for lambda_max(H)")  # fmt: skip
    p.add_argument("--time-budget", dest="time_budget", type=float, default=None, metavar="SECONDS",
                   help="wall-time budget: phases that do not fit are skipped and reported")  # fmt: skip
    p.add_argument("--matvec-budget", dest="matvec_budget", type=int, default=None, metavar="N",
                   help="budget of operator products (Hessian- and NTK-vector products)")  # fmt: skip
    p.add_argument("--q", type=float, default=1.0, help="quantile of the main index (1 = sup)")
    p.add_argument("--robust-q", type=float, default=0.95, help="quantile of the robust index")
    p.add_argument("--loss", default="auto", choices=["auto", "cross_entropy", "mse"],
                   help="auto: mse for float targets, cross_entropy for class ids")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--out", default=None,
                   help="output stem: writes STEM.json and STEM.png (default: next to the "
                   "checkpoint, or ./stability_MODEL_DATA)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true",
                   help="hide the progress bars (on stderr; also hidden when "
                   "SPECTRAL_LAB_HEADLESS=1)")  # fmt: skip
    p.add_argument("--dist-timeout", dest="dist_timeout", type=float, default=600.0,
                   metavar="SECONDS", help="under torchrun: seconds a collective may wait for "
                   "the other ranks before every rank stops with an error")  # fmt: skip
    p.set_defaults(func=_diagnose)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``spectral-lab`` command with ``argv`` (default: ``sys.argv[1:]``) and return its
    exit status: 0 on success, 2 with a one-line message on stderr for a missing file or a bad
    value. The cost is that of the sub-command (``diagnose`` and ``reproduce`` run models).

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     status = main(["info"])
        >>> status, "torch" in out.getvalue()
        (0, True)
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "command", None) == "lab":  # JupyterLab's flags: passed on
        args.lab_args = unknown + list(args.lab_args)
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = argv
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, TypeError, ImportError) as err:
        print(f"spectral-lab {args.command}: error: {_without_download_hint(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
