"""The ``spectral-lab`` command.

spectral-lab info                 versions, device, where data is looked for
spectral-lab book [--out DIR]     execute every chapter, write an HTML book
spectral-lab sync CHAPTER.py ...  re-execute chapters and rewrite their paired .ipynb
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _info(args: argparse.Namespace) -> int:
    import platform

    import torch
    import torchvision

    from . import __version__
    from .data import TORCHVISION, default_cache_dir, where_is

    print(f"spectral_lab {__version__}")
    print(f"python       {platform.python_version()}")
    print(f"torch        {torch.__version__}   torchvision {torchvision.__version__}")
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
    from .book import build_book

    runs = build_book(args.out, args.chapters, timeout=args.timeout)
    index = Path(args.out).resolve() / "index.html"
    failed = [r for r in runs if not r.ok]
    print(f"\nbook written to {index}  ({len(runs) - len(failed)}/{len(runs)} chapters ran)")
    for r in failed:
        print(f"FAILED {r.path.name}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _sync(args: argparse.Namespace) -> int:
    from .book import chapter_sources, sync_chapter

    paths = [Path(p) for p in args.paths] or chapter_sources()
    status = 0
    for p in paths:
        run = sync_chapter(p, timeout=args.timeout)
        print(f"{p.name}: {'ok' if run.ok else 'FAILED ' + str(run.error)} ({run.seconds:.1f}s)")
        status |= 0 if run.ok else 1
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spectral-lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, device, data locations")
    p.add_argument("--root", help="data root to inspect (default: SPECTRAL_LAB_DATA or the cache)")
    p.set_defaults(func=_info)
    p = sub.add_parser("book", help="execute every chapter and write an HTML book")
    p.add_argument("--out", default="build/book", help="output folder (default build/book)")
    p.add_argument("--chapters", default=None, help="chapters folder (default: the checkout's)")
    p.add_argument("--timeout", type=int, default=900, help="per-cell timeout in seconds")
    p.set_defaults(func=_book)
    p = sub.add_parser("sync", help="re-execute chapters and rewrite their paired .ipynb")
    p.add_argument("paths", nargs="*", help="chapter .py files (default: all)")
    p.add_argument("--timeout", type=int, default=900)
    p.set_defaults(func=_sync)
    # later subcommands register here (diagnose, reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"spectral-lab {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
