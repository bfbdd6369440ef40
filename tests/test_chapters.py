"""Chapters: each .py source has a paired, executed .ipynb whose cells match it exactly.

The notebooks themselves run under nbval (see pyproject's addopts and conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
SOURCES = sorted(CHAPTERS.glob("[0-9][0-9]_*.py"))


def _cells(nb):
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_there_are_chapters():
    assert [p.stem[:2] for p in SOURCES][:1] == ["00"]


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_ipynb_is_paired_with_py(py: Path):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"missing {ipynb.name}: run `spectral-lab sync {py}`"
    assert _cells(jupytext.read(py)) == _cells(nbformat.read(ipynb, as_version=4)), (
        f"{ipynb.name} has drifted from {py.name}: run `spectral-lab sync {py}`"
    )


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_ipynb_outputs_come_from_one_clean_run(py: Path):
    """Committed outputs were produced by running the notebook top to bottom once."""
    nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{py.stem}.ipynb was not executed top to bottom in one run: `spectral-lab sync {py}`"
    )
    for cell in nb.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{py.stem}.ipynb stores an error output"
            stderr = [o.text for o in cell.outputs if o.get("name") == "stderr"]
            assert not stderr, f"{py.stem}.ipynb prints to stderr (a warning?): {stderr[0][:200]}"


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_chapter_anatomy(py: Path):
    """Learning objectives at the top, exercises at the end, at least one check cell."""
    nb = jupytext.read(py)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "Learning objectives" in text, f"{py.name}: state the learning objectives"
    assert "## Exercises" in text, f"{py.name}: end with exercises"
    checks = [c for c in nb.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    assert checks, f"{py.name}: tag at least one check cell nbval-check-output"
    assert nb.metadata["kernelspec"]["name"] == "python3"
