"""Run the course's chapters headless: the HTML book, and re-executing paired notebooks.

Chapters live in ``chapters/NN_slug.py`` (jupytext percent format, the reviewed source) next to
``chapters/NN_slug.ipynb`` (what people open; committed with outputs). Chapters run on the CPU or
the first CUDA device, as each chapter chooses; nothing here touches tensors.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KERNEL = "python3"


def default_chapters_dir() -> Path:
    """``chapters/`` of the checkout this package was installed from (editable install), else
    ``./chapters``.

    Example:
        >>> default_chapters_dir().name
        'chapters'
    """
    here = Path(__file__).resolve().parents[1] / "chapters"
    if here.is_dir():
        return here
    return Path.cwd() / "chapters"


def chapter_sources(chapters_dir: str | os.PathLike | None = None) -> list[Path]:
    """The chapter sources ``NN_*.py``, in order; ``FileNotFoundError`` when there are none.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for name in ("01_b.py", "00_a.py", "notes.py"):
        ...     _ = (d / name).write_text("")
        >>> [p.name for p in chapter_sources(d)]
        ['00_a.py', '01_b.py']
    """
    folder = Path(chapters_dir) if chapters_dir else default_chapters_dir()
    paths = sorted(p for p in folder.glob("[0-9][0-9]_*.py"))
    if not paths:
        raise FileNotFoundError(
            f"no chapters (NN_slug.py) found in {folder}; run from a checkout of spectral_lab or "
            "pass --chapters PATH"
        )
    return paths


@dataclass(frozen=True)
class ChapterRun:
    """One chapter's run: its path, wall time, the error (``None`` if every cell ran) and the
    executed notebook. ``ok`` is ``error is None``."""

    path: Path
    seconds: float
    error: str | None
    notebook: object  # nbformat.NotebookNode

    @property
    def ok(self) -> bool:
        return self.error is None


def execute_chapter(path: str | os.PathLike, timeout: int = 900) -> ChapterRun:
    """Execute one chapter (``.py`` or ``.ipynb``) top to bottom in a fresh kernel (``timeout``
    seconds per cell). Cost: the chapter's own run time plus a kernel start (about a second).
    Not a doctest: executing a chapter takes seconds to minutes (``spectral-lab sync`` and ``spectral-lab book`` call it; ``tests/test_cli_book.py`` tests it)."""
    import jupytext
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    nb = jupytext.read(path)
    sockets = tempfile.mkdtemp(prefix="spectral-lab-kernel-")  # absolute: the kernel runs elsewhere
    # IPC sockets named after the kernel's own connection file: kernels started at the same time
    # (parallel builds, a test run beside a book build) cannot pick the same TCP ports and talk to
    # each other's clients, which hung executions; and the kernel stays silent about TCP.
    client = NotebookClient(
        nb,
        km=KernelManager(kernel_name=KERNEL, transport="ipc", ip=str(Path(sockets) / "kernel")),
        timeout=timeout,
        kernel_name=KERNEL,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    error = None
    try:
        # headless kernel: progress bars off (a saved widget bar would show "0%" forever)
        client.execute(env={**os.environ, "SPECTRAL_LAB_HEADLESS": "1"})
    except CellExecutionError as err:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
        error = text.splitlines()[-1] if text else repr(err)
    except Exception as err:  # kernel died, timeout, ...
        error = f"{type(err).__name__}: {err}"
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    return ChapterRun(path, time.perf_counter() - start, error, clean_notebook(nb))


def clean_notebook(nb):
    """Drop per-run noise (widget state, execution timestamps) so re-runs diff cleanly.

    Example:
        >>> import nbformat
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
        >>> nb.metadata["widgets"] = {}
        >>> nb = clean_notebook(nb)
        >>> "widgets" in nb.metadata, nb.cells[0]["id"]
        (False, 'cell-000')
    """
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)
        if "id" in cell:
            cell["id"] = f"cell-{i:03d}"  # jupytext draws random ids: keep them stable
    return nb


def sync_chapter(path: str | os.PathLike, timeout: int = 900) -> ChapterRun:
    """Execute ``NN_slug.py`` and write the paired ``NN_slug.ipynb`` with fresh outputs (only when
    every cell ran). Cost: :func:`execute_chapter`. Not a doctest: executing a chapter takes seconds to minutes (``spectral-lab sync`` and ``spectral-lab book`` call it; ``tests/test_cli_book.py`` tests it)."""
    import nbformat

    path = Path(path).with_suffix(".py")
    run = execute_chapter(path, timeout)
    if run.ok:
        run.notebook.metadata.setdefault("jupytext", {})["formats"] = "ipynb,py:percent"
        nbformat.write(run.notebook, path.with_suffix(".ipynb"))
    return run


def build_book(
    out_dir: str | os.PathLike = "build/book", chapters_dir=None, timeout: int = 900, progress=print
) -> list[ChapterRun]:
    """Execute every chapter and write ``out_dir/NN_slug.html`` plus an ``index.html``.
    Cost: every chapter's run time. Not a doctest: executing a chapter takes seconds to minutes (``spectral-lab sync`` and ``spectral-lab book`` call it; ``tests/test_cli_book.py`` tests it)."""
    from nbconvert import HTMLExporter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    local = _local_mathjax(out)
    if local:
        exporter.mathjax_url = local
    runs = []
    for path in chapter_sources(chapters_dir):
        progress(f"running {path.name} ...")
        run = execute_chapter(path, timeout)
        body, _ = exporter.from_notebook_node(run.notebook)
        (out / f"{path.stem}.html").write_text(body, encoding="utf-8")
        progress(
            f"  {'ok' if run.ok else 'FAILED'} in {run.seconds:.1f}s"
            + ("" if run.ok else f": {run.error}")
        )
        runs.append(run)
    rows = "\n".join(
        f"<tr><td><a href='{r.path.stem}.html'>{html.escape(_title(r.notebook, r.path))}</a></td>"
        f"<td>{'ok' if r.ok else 'FAILED: ' + html.escape(r.error or '')}</td>"
        f"<td>{r.seconds:.1f} s</td></tr>"
        for r in runs
    )
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>spectral_lab</title>"
        "<style>body{font-family:sans-serif;max-width:52em;margin:2em auto}"
        "td{padding:.3em 1em}</style><h1>spectral_lab &mdash; the course</h1>"
        f"<table><tr><th>chapter</th><th>status</th><th>time</th></tr>{rows}</table>",
        encoding="utf-8",
    )
    return runs


def _local_mathjax(out: Path) -> str | None:
    """Copy MathJax (from ``jupyter_server_mathjax``) next to the book so formulas render offline."""
    import shutil

    try:
        import jupyter_server_mathjax
    except ImportError:  # the HTML then loads MathJax from nbconvert's default CDN
        return None
    src = Path(jupyter_server_mathjax.__file__).parent / "static"
    dst = out / "mathjax"
    if not (dst / "MathJax.js").exists():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def _title(nb, path: Path) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem
