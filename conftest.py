"""Root pytest configuration: chapter notebooks under nbval, with a per-chapter time budget.

Chapters run as their committed ``chapters/NN_slug.ipynb`` (nbval-lax: every cell must run; cells
tagged ``nbval-check-output`` must reproduce their stored output). ``tests/test_chapters.py``
checks that each ``.ipynb`` matches its ``.py`` source. A chapter whose cells together take longer
than ``$NOTEBOOK_BUDGET_S`` (default 240 s) fails the run.
"""

from __future__ import annotations

import collections
import os

import pytest

BUDGET_S = float(os.environ.get("NOTEBOOK_BUDGET_S", "240"))
_spent: dict[str, float] = collections.defaultdict(float)


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
    terminalreporter.section("chapter execution time")
    for path, s in sorted(_spent.items()):
        flag = "  OVER BUDGET" if s > BUDGET_S else ""
        terminalreporter.write_line(f"{s:7.1f} s  {path}{flag}")


def pytest_sessionfinish(session, exitstatus):
    over = [p for p, s in _spent.items() if s > BUDGET_S]
    if over and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
