"""The spectral-lab command: info, book (HTML with figures; non-zero exit on a failing chapter)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from spectral_lab import cli
from spectral_lab.book import chapter_sources, execute_chapter

HEADER = """# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---
"""


def _chapter(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(HEADER + "\n# %% [markdown]\n# # A title\n\n" + body)
    return path


def test_info_lists_versions_and_data(capsys, tmp_path):
    assert cli.main(["info", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "mnist" in out and "missing" in out


def test_book_writes_html_with_figures_and_fails_on_error(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    _chapter(
        chapters,
        "00_ok.py",
        "# %%\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()\nprint('hello')\n",
    )
    out = tmp_path / "book"
    assert cli.main(["book", "--out", str(out), "--chapters", str(chapters)]) == 0
    page = (out / "00_ok.html").read_text()
    assert "hello" in page and "data:image/png;base64," in page
    png = page.split("data:image/png;base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(png)[:4] == b"\x89PNG"
    assert "00_ok.html" in (out / "index.html").read_text()
    # formulas render offline: MathJax is copied next to the pages and referenced relatively
    assert (out / "mathjax" / "MathJax.js").is_file() and 'src="mathjax/MathJax.js' in page

    _chapter(chapters, "01_bad.py", "# %%\nraise RuntimeError('boom')\n")
    assert cli.main(["book", "--out", str(out), "--chapters", str(chapters)]) == 1
    assert "FAILED" in (out / "index.html").read_text()


def test_execute_chapter_reports_the_error(tmp_path):
    run = execute_chapter(_chapter(tmp_path, "00_x.py", "# %%\n1 / 0\n"))
    assert not run.ok and "ZeroDivisionError" in run.error


def test_no_chapters_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no chapters"):
        chapter_sources(tmp_path)
    assert cli.main(["book", "--out", str(tmp_path / "b"), "--chapters", str(tmp_path)]) == 2


def test_headless_runs_switch_progress_bars_off(monkeypatch):
    from spectral_lab._progress import progress_bar

    monkeypatch.delenv("SPECTRAL_LAB_HEADLESS", raising=False)
    assert not progress_bar(range(2), desc="x").disable
    monkeypatch.setenv("SPECTRAL_LAB_HEADLESS", "1")
    assert progress_bar(range(2), desc="x").disable
