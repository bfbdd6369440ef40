"""Root pytest configuration: chapter notebooks under nbval, each chapter's run time measured.

Chapters run as their committed ``chapters/NN_slug.ipynb`` (nbval-lax: every cell must run; cells
tagged ``nbval-check-output`` must reproduce their stored output). ``tests/test_chapters.py``
checks that each ``.ipynb`` matches its ``.py`` source.

Time is measured, never a test: a chapter fails only when a cell hangs past nbval's per-cell
timeout (``--nbval-cell-timeout`` in pyproject's addopts, a generous 600 s). The summary prints each
chapter's wall time next to the time its header claims, and writes them to
``build/chapter-times.json`` (``benchmarks/bench_chapters.py`` measures them one at a time).
"""

from __future__ import annotations

import collections
import json
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# chapters under nbval run headless, as `spectral-lab book` and `spectral-lab sync` run them: no
# progress bar reaches a cell's output (tests that need the bars unset this with monkeypatch)
os.environ.setdefault("SPECTRAL_LAB_HEADLESS", "1")
CLAIM = re.compile(r"cells ran in (?:about )?(\d+(?:\.\d+)?) s")
_spent: dict[str, float] = collections.defaultdict(float)


def claimed_seconds(ipynb: Path) -> float | None:
    """The run time a chapter's header claims ("the cells ran in N s ..."), or ``None``."""
    source = ipynb.with_suffix(".py")
    if not source.is_file():
        return None
    match = CLAIM.search(source.read_text(encoding="utf-8")[:6000])
    return float(match.group(1)) if match else None


def pytest_ignore_collect(collection_path, config):
    # chapter sources are notebooks, never test modules: do not import them
    if collection_path.suffix == ".py" and collection_path.parent.name == "chapters":
        return True
    return None


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _spent[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _spent:
        return
    terminalreporter.section("chapter execution time (measured here; the header's claim)")
    rows = {}
    for path, s in sorted(_spent.items()):
        claim = claimed_seconds(ROOT / path)
        said = f"header: {claim:.0f} s" if claim is not None else "header: no claim"
        terminalreporter.write_line(f"{s:7.1f} s  {path}  ({said})")
        rows[path] = {"seconds": round(s, 1), "claimed_seconds": claim}
    out = ROOT / "build" / "chapter-times.json"
    try:
        out.parent.mkdir(exist_ok=True)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        out.write_text(
            json.dumps({"cpus": os.cpu_count(), "load": load, "chapters": rows}, indent=1)
        )
    except OSError:  # a read-only checkout: the table above is the record
        pass
