"""Chapter run times against the time each chapter's header claims.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_chapters.py [00 02 ...] [--json FILE]``

Executes each chapter's ``.py`` top to bottom in a fresh kernel, one at a time (nothing is
written back), and prints its wall time next to the header's "the cells ran in N s" and their
ratio, with the machine it ran on (CPU count, load average before each chapter). A chapter is
not failed for being slow: the ratio is the report. The claim in a header is what this script
measured on the machine the header names; re-run it there after changing a chapter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conftest import claimed_seconds  # noqa: E402
from spectral_lab.book import chapter_sources, execute_chapter, select_chapters  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("only", nargs="*", help="chapter prefixes (default: all)")
    parser.add_argument("--json", default=None, help="also write the table to this file")
    args = parser.parse_args()
    chapters = select_chapters(chapter_sources(ROOT / "chapters"), args.only)
    print(
        f"{platform.node()}: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(f"{'chapter':32s} {'load':>5s} {'measured':>9s} {'claimed':>8s} {'ratio':>6s}")
    rows, status = {}, 0
    for path in chapters:
        load = os.getloadavg()[0]
        run = execute_chapter(path)
        claim = claimed_seconds(path)
        ratio = f"{run.seconds / claim:6.2f}" if claim else "     -"
        said = f"{claim:7.0f}s" if claim else "   none"
        print(f"{path.stem:32s} {load:5.1f} {run.seconds:8.1f}s {said} {ratio}", flush=True)
        if not run.ok:
            print(f"  FAILED: {run.error}")
            status = 1
        rows[path.stem] = {"load": load, "seconds": round(run.seconds, 1), "claimed": claim}
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
