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


def anatomy_problems(nb) -> list[str]:
    """What a chapter lacks of the course's anatomy (empty when complete).

    Learning objectives, prerequisites and an approximate time at the top; a ``## Summary`` and
    ``## Exercises`` at the end; every exercise a stub cell (tag ``exercise``) with a solution cell
    (tag ``solution``) whose source is collapsed (``jupyter.source_hidden``) and at least one check
    cell (tag ``nbval-check-output``) after the exercises; no visible ``### Solutions`` block.
    """
    problems = []
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    head = "\n".join(c.source for c in nb.cells[:3] if c.cell_type == "markdown")
    for needle, what in [
        ("Learning objectives", "state the learning objectives"),
        ("Prerequisites", "state the prerequisites near the top"),
        ("Approximate time", "state the approximate time near the top"),
    ]:
        if needle not in head:
            problems.append(what)
    for needle, what in [
        ("## Summary", "end with a ## Summary"),
        ("## Exercises", "end with ## Exercises"),
    ]:
        if needle not in text:
            problems.append(what)
    if "### Solutions" in text:
        problems.append(
            "solutions must sit in hidden solution cells, not a visible ### Solutions block"
        )
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    if not any("nbval-check-output" in t for t in tags):
        problems.append("tag at least one check cell nbval-check-output")
    exercises = [i for i, t in enumerate(tags) if "exercise" in t]
    solutions = [i for i, t in enumerate(tags) if "solution" in t]
    if not exercises:
        problems.append("give at least one exercise cell (tag exercise)")
    if not solutions:
        problems.append("give each exercise a solution cell (tag solution)")
    hidden = [
        nb.cells[i].metadata.get("jupyter", {}).get("source_hidden") is True for i in solutions
    ]
    if not all(hidden):
        problems.append('solution cells must be collapsed: jupyter={"source_hidden": true}')
    if exercises and not any("nbval-check-output" in t for t in tags[exercises[0] :]):
        problems.append("check the reader's answer in a cell tagged nbval-check-output")
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        problems.append("kernelspec must be python3")
    return problems


@pytest.mark.parametrize("py", SOURCES, ids=lambda p: p.stem)
def test_chapter_anatomy(py: Path):
    """Objectives, prerequisites and time at the top; summary, exercises with hidden solutions and checks."""
    problems = anatomy_problems(jupytext.read(py))
    assert not problems, f"{py.name}: " + "; ".join(problems)


_GOOD = """\
# %% [markdown]
# # 99 — A chapter
#
# **Learning objectives.** ...
#
# **Prerequisites.** chapter 00. **Approximate time:** 30 minutes.

# %% tags=["nbval-check-output"]
print("check passed: True")

# %% [markdown]
# ## Summary
#
# * one idea
#
# ## Exercises
#
# 1. Do it.

# %% tags=["exercise"]
answer = ...

# %% tags=["solution", "hide-input"] jupyter={"source_hidden": true}
answer = 1

# %% tags=["nbval-check-output"]
print("exercise 1 passed:", answer == 1)
"""


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        (None, None, None),
        ("**Prerequisites.** chapter 00. ", "", "prerequisites"),
        ("**Approximate time:** 30 minutes.", "", "approximate time"),
        ("**Learning objectives.** ...", "", "learning objectives"),
        ("## Summary", "## Recap", "## Summary"),
        ("## Exercises", "## Homework", "## Exercises"),
        ('tags=["exercise"]', "", "exercise cell"),
        (' jupyter={"source_hidden": true}', "", "collapsed"),
        (
            '# %% tags=["solution", "hide-input"] jupyter={"source_hidden": true}',
            "# %%",
            "solution cell",
        ),
        (
            '# %% tags=["nbval-check-output"]\nprint("exercise',
            '# %%\nprint("exercise',
            "reader's answer",
        ),
        ("# 1. Do it.", "# 1. Do it.\n#\n# ### Solutions\n#\n# 1. answer = 1", "### Solutions"),
    ],
)
def test_anatomy_check_fails_on_a_chapter_missing_a_part(old, new, complaint):
    """The anatomy test passes on a complete chapter and names the missing part otherwise."""
    text = _GOOD if old is None else _GOOD.replace(old, new, 1)
    assert old is None or text != _GOOD, "the mutation did not apply"
    nb = jupytext.reads(text, fmt="py:percent")
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    problems = anatomy_problems(nb)
    if complaint is None:
        assert problems == []
    else:
        assert any(complaint in p for p in problems), problems
