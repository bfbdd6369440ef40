"""The spectral-lab command: info, book (Sphinx + MyST-NB: titles, sidebar, search, downloads,
local MathJax, API pages, widget pictures; non-zero exit on a failing chapter), sync."""

from __future__ import annotations

import re
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


FAST = r"""# %%
import ipywidgets as w
import matplotlib.pyplot as plt

from spectral_lab.widgets._core import explorer

plt.plot([1, 2, 3])
plt.show()
print("zanzibar")

# %% [markdown]
# The derivative $\phi'(0) = 0$ and $\mathbb{E}\,\|x\|^2$ in a sentence.

# %%
def draw(k):
    fig, ax = plt.subplots()
    ax.plot(range(k + 2))
    return fig


explorer(draw, k=w.IntSlider(1, 0, 3, description="kay"))
"""


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """A book of two fast chapters (00, 01) out of three (``--only`` leaves the failing 02 out),
    then the same book with 02 in. The builds' output (Sphinx runs in a subprocess) is kept."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("bookcase")
    chapters = tmp / "chapters"
    _chapter(chapters, "00_fast.py", FAST).write_text(
        (chapters / "00_fast.py").read_text().replace("# # A title", "# # Fast chapter")
    )
    _chapter(chapters, "01_second.py", "# %%\nprint('second')\n")
    _chapter(
        chapters, "02_bad.py", "# %%\ndef inner():\n    raise RuntimeError('boom')\n\ninner()\n"
    )
    out = tmp / "book"
    cmd = [sys.executable, "-m", "spectral_lab.cli", "book", "--out", str(out)]
    cmd += ["--chapters", str(chapters)]
    first = subprocess.run([*cmd, "--only", "00", "--only", "01"], capture_output=True, text=True)
    bad = subprocess.run([*cmd, "--only", "00,01,02"], capture_output=True, text=True)
    return out, first, bad


def _page(out: Path, name: str) -> str:
    return (out / name).read_text(encoding="utf-8")


def test_book_builds_with_titles_sidebar_search_and_downloads(book):
    out, first, bad = book
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    page = _page(out, "chapters/00_fast.html")
    assert "<title>Fast chapter &#8212;" in page  # the chapter's title, not "Notebook"
    assert "zanzibar" in page and "data:image/png" not in page  # figures are files
    sidebar = page.split('class="bd-sidebar-primary', 1)[1].split("</nav>", 1)[0]
    assert "01_second.html" in sidebar and "api/index.html" in sidebar
    assert 'class="prev-next-area"' in page and "01_second.html" in page.split("prev-next-area")[1]
    assert "02_bad" not in page and not (out / "chapters" / "02_bad.html").exists()  # --only
    assert "zanzibar" in _page(out, "searchindex.js") and (out / "search.html").is_file()
    # the download button offers the chapter as a notebook
    assert 'href="../_sources/chapters/00_fast.ipynb"' in page
    import nbformat

    nb = nbformat.read(out / "_sources" / "chapters" / "00_fast.ipynb", as_version=4)
    assert "explorer(draw" in "".join(c.source for c in nb.cells)
    # kernels are quiet, and an unchanged chapter is not executed again
    assert "Kernel is running over TCP" not in first.stdout + first.stderr
    # the docstrings and pages parse cleanly (a successful build may still log docutils errors)
    log = first.stdout + first.stderr
    assert "[docutils]" not in log and "duplicate object description" not in log, [
        line for line in log.splitlines() if "[docutils]" in line or "duplicate" in line
    ]
    assert "00_fast.ipynb: Executing" in first.stdout
    assert "02_bad.ipynb: Executing" in bad.stdout and "00_fast.ipynb: Executing" not in bad.stdout


def test_book_serves_mathjax_locally(book):
    out = book[0]
    page = _page(out, "chapters/00_fast.html")
    assert 'src="../_static/mathjax/tex-chtml-full.js' in page
    assert (out / "_static/mathjax/tex-chtml-full.js").is_file()
    assert (out / "_static/mathjax/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff").is_file()
    assert r"\phi'(0) = 0" in page and "mathjax_ignore" not in page.split("phi'(0)")[0][-200:]
    for html_file in out.rglob("*.html"):
        scripts = re.findall(r'<script[^>]+src="([^"]+)"', html_file.read_text(encoding="utf-8"))
        assert not [s for s in scripts if "//" in s], (html_file, scripts)  # nothing remote


def test_widget_cell_shows_its_first_figure(book):
    page = _page(book[0], "chapters/00_fast.html")
    cell = page.split('explorer</span><span class="p">(</span><span class="n">draw', 1)[1]
    cell = cell.split('<div class="cell docutils', 1)[0]
    assert "<img" in cell and "interactive(children" not in page


def test_api_reference_covers_the_face_and_every_topic(book):
    import inspect

    import spectral_lab as sl

    out = book[0]
    face = _page(out, "api/index.html")
    for name in sl.__all__:
        if inspect.ismodule(getattr(sl, name)):
            topic = _page(out, f"api/{name}.html")
            assert f'id="module-spectral_lab.{name}"' in topic, name
        else:
            assert f'id="spectral_lab.{name}"' in face, name
    assert 'id="spectral_lab.hessian.hessian_eigs"' in _page(out, "api/hessian.html")
    # the modules read by name (chapter 10's residual_stream, transformer_ops, ...) have pages too
    for name in ("residual_stream", "transformer_models", "transformer_ops", "exercises"):
        assert "automodule" not in _page(out, f"api/{name}.html")
        assert f"spectral_lab.{name}" in _page(out, f"api/{name}.html"), name
    assert "residual_stream_spectra" in _page(out, "api/residual_stream.html")


def test_api_reference_has_a_page_for_every_public_module():
    import pkgutil

    import spectral_lab as sl
    from spectral_lab.book import _api_pages

    public = {m.name for m in pkgutil.iter_modules(sl.__path__) if not m.name.startswith("_")}
    assert {"residual_stream", "transformer_ops", "transformer_models"} <= public
    assert public <= set(_api_pages()), public - set(_api_pages())


def test_failing_chapter_fails_the_book_with_its_traceback(book):
    bad = book[2]
    text = re.sub(r"\x1b\[[0-9;]*m", "", bad.stdout + bad.stderr)  # the traceback is coloured
    assert bad.returncode == 1, text[-3000:]
    assert "RuntimeError: boom" in text and "inner()" in text and "FAILED" in bad.stderr


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


def test_chapter_round_trip_is_a_fixed_point():
    """Regenerating each chapter's .py from its .ipynb with jupytext and the project's config
    changes nothing: `spectral-lab sync` wrote that .ipynb from that .py."""
    import jupytext
    from jupytext.config import load_jupytext_config

    folder = Path(__file__).resolve().parents[1] / "chapters"
    config = load_jupytext_config(str(folder))
    assert config is not None and config.notebook_metadata_filter
    for ipynb in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        text = jupytext.writes(jupytext.read(ipynb), "py:percent", config=config)
        assert text == ipynb.with_suffix(".py").read_text(), ipynb.name


def _as_a_lab_session_leaves_it(nb):
    """What opening, running and moving a slider in JupyterLab add to a notebook."""
    import nbformat

    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.metadata.setdefault("jupytext", {})["text_representation"] = {"format_name": "percent"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"lab-{i}"
        if cell.cell_type == "code":
            cell.execution_count = i + 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="x\n")]
            cell.metadata.update(
                {"execution": {"iopub.execute_input": "2026-12-07T00:00:00Z"}, "scrolled": True}
            )
            cell.metadata["collapsed"] = False
        cell.metadata["trusted"] = True
    return nb


@pytest.mark.parametrize("py", chapter_sources(), ids=lambda p: p.stem)
def test_a_lab_save_writes_the_py_back_unchanged(py):
    """JupyterLab opens a chapter's .py through Jupytext and saves it with the project's config:
    whatever a session adds (outputs, ids, execution times, widget state, scroll and collapse
    flags) must not reach the file. The browser tests check the same through a real save."""
    import jupytext
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(py.parent))
    nb = _as_a_lab_session_leaves_it(jupytext.read(py, config=config))
    assert jupytext.writes(nb, "py:percent", config=config) == py.read_text()


def test_chapters_are_not_paired_inside_jupyterlab():
    """No pairing in the lab (pyproject's [tool.jupytext], each .py header, each .ipynb): a
    save writes the .py alone, and no timestamp check can refuse a checked-out file."""
    import jupytext
    import nbformat
    import tomllib

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["jupytext"]
    assert "formats" not in config
    for py in chapter_sources():
        assert "formats" not in jupytext.read(py).metadata.get("jupytext", {}), py.name
        ipynb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
        if py.stem.startswith("05_"):  # re-synced by the lead after issue 22's split of chapter 05
            continue
        assert "jupytext" not in ipynb.metadata, py.with_suffix(".ipynb").name


def test_lab_opens_py_as_notebooks_and_hides_the_rendered_ipynb(tmp_path):
    import fnmatch
    import json

    from spectral_lab.book import lab_command

    cmd = lab_command(tmp_path, tmp_path / "settings", port=8123)
    assert f"--ServerApp.root_dir={tmp_path.resolve()}" in cmd and "--port=8123" in cmd
    overrides = json.loads((tmp_path / "settings" / "overrides.json").read_text())
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"python": "Jupytext Notebook"}
    globs = [a.split("=", 1)[1] for a in cmd if a.startswith("--ContentsManager.hide_globs=")]
    hidden = lambda name: any(fnmatch.fnmatch(name, g) for g in globs)  # noqa: E731
    assert hidden("00_tour.ipynb") and hidden("__pycache__")
    assert not hidden("00_tour.py") and not hidden("my_notes.ipynb")


def _lab_command_line(monkeypatch, argv, euid):
    import subprocess

    seen = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: seen.append(cmd) or 0)
    monkeypatch.setattr("os.geteuid", lambda: euid)
    assert cli.main(["lab", *argv]) == 0
    return seen[0]


def test_lab_passes_jupyterlab_flags_on_and_allows_root_as_root(monkeypatch, capsys):
    cmd = _lab_command_line(monkeypatch, ["--port", "9999", "--no-browser"], euid=0)
    assert "--port=9999" in cmd and "--no-browser" in cmd and cmd[-1] == "--allow-root"
    assert "--allow-root" in capsys.readouterr().err  # says what it added
    cmd = _lab_command_line(monkeypatch, ["--", "--ServerApp.token=abc"], euid=1000)
    assert cmd[-1] == "--ServerApp.token=abc" and "--" not in cmd and "--allow-root" not in cmd
    cmd = _lab_command_line(monkeypatch, ["--ServerApp.allow_root=False"], euid=0)
    assert "--allow-root" not in cmd


def test_other_commands_still_refuse_unknown_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["sync", "--no-browser"])
    assert "unrecognized arguments: --no-browser" in capsys.readouterr().err


def test_help_has_no_rst_markup(capsys):
    for argv in ([], ["lab"], ["book"], ["sync"], ["reproduce"], ["diagnose"], ["info"]):
        with pytest.raises(SystemExit):
            cli.main([*argv, "--help"])
        assert "``" not in capsys.readouterr().out, argv


def test_one_way_in_is_written_the_same_everywhere():
    """README, chapter 00 and the book's first page give the same way in."""
    root = Path(__file__).resolve().parents[1]
    way_in = 'pip install -e ".[lab]" && spectral-lab lab'
    pages = {
        "README.md": (root / "README.md").read_text(),
        "docs/index.md": (root / "docs" / "index.md").read_text(),
        "chapters/00_tour.py": (root / "chapters" / "00_tour.py").read_text(),
    }
    for name, text in pages.items():
        flat = " ".join(line.lstrip("# ") for line in text.splitlines())
        assert way_in in flat and "open `chapters/NN_slug.py`" in flat, name
        assert "jupyter lab chapters" not in flat, name


def test_reproduce_does_not_suggest_an_option_it_lacks(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("SPECTRAL_LAB_DATA", str(tmp_path / "absent"))
    assert cli.main(["reproduce", "--dataset", "cifar10", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "not available here" in err and "pass download=True" not in err
