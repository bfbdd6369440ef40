"""Root pytest configuration: chapter notebooks under nbval, each chapter's run time measured.

Chapters run as their committed ``chapters/NN_slug.ipynb`` (nbval-lax: every cell must run; cells
tagged ``nbval-check-output`` must reproduce their stored output). ``tests/test_chapters.py``
checks that each ``.ipynb`` matches its ``.py`` source.

Time is measured, and a chapter has a budget: the summary prints each chapter's wall time next to
the time its header claims and writes them to ``build/chapter-times.json``
(``benchmarks/bench_chapters.py`` measures them one at a time). A chapter whose cells together run
longer than its budget (``SPECTRAL_LAB_CHAPTER_BUDGET`` seconds, default 480: twice the slowest
chapter measured on this project's loaded two-core server, 240 s) fails on its last cell, with its
measured time in the message. A single hanging cell still fails on nbval's per-cell timeout
(``--nbval-cell-timeout`` in pyproject's addopts, 600 s).
"""

from __future__ import annotations

import collections
import json
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
# chapters under nbval run headless, as `spectral-lab book` and `spectral-lab sync` run them: no
# progress bar reaches a cell's output (tests that need the bars unset this with monkeypatch)
os.environ.setdefault("SPECTRAL_LAB_HEADLESS", "1")
CLAIM = re.compile(r"cells ran in (?:about )?(\d+(?:\.\d+)?) s")
_spent: dict[str, float] = collections.defaultdict(float)
_last_cell: dict[str, str] = {}  # chapter path -> node id of its last collected cell
BUDGET_ENV = "SPECTRAL_LAB_CHAPTER_BUDGET"
DEFAULT_BUDGET = 480.0


def chapter_budget() -> float:
    """Seconds a chapter's cells may take together (``SPECTRAL_LAB_CHAPTER_BUDGET``, default 480)."""
    raw = os.environ.get(BUDGET_ENV, "")
    try:
        budget = float(raw) if raw else DEFAULT_BUDGET
    except ValueError:
        raise ValueError(f"{BUDGET_ENV}={raw!r} is not a number of seconds (e.g. 300)") from None
    if not budget > 0:
        raise ValueError(f"{BUDGET_ENV}={raw!r} must be positive (use inf for no budget)")
    return budget


def over_budget(path: str, seconds: float, budget: float) -> str | None:
    """The failure message of a chapter that ran ``seconds`` against ``budget``, or ``None``."""
    if seconds <= budget:
        return None
    return (
        f"{path}: the chapter's cells ran {seconds:.1f} s, over its budget of {budget:g} s "
        f"(measured here on {os.cpu_count()} CPUs; {BUDGET_ENV} sets the budget)"
    )


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


def pytest_collection_modifyitems(session, config, items):
    for item in items:
        path = item.nodeid.split("::")[0]
        if path.endswith(".ipynb"):
            _last_cell[path] = item.nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    path = item.nodeid.split("::")[0]
    if report.when != "call" or _last_cell.get(path) != item.nodeid or not report.passed:
        return
    # this cell's setup is already in _spent (logged before its call)
    message = over_budget(path, _spent[path] + report.duration, chapter_budget())
    if message is not None:
        report.outcome = "failed"
        report.longrepr = message


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
