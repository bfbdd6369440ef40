"""Run the course's chapters headless: the HTML book, and re-executing paired notebooks.

Chapters live in ``chapters/NN_slug.py`` (jupytext percent format, the reviewed source) next to
``chapters/NN_slug.ipynb`` (what people open; committed with outputs). Chapters run on the CPU or
the first CUDA device, as each chapter chooses; nothing here touches tensors.

The book is a Sphinx project (``docs/conf.py``: MyST-NB, sphinx-book-theme, a local MathJax 3):
:func:`build_book` stages the chapters as notebooks next to ``docs/*.md`` and generated API pages,
then runs ``python -m sphinx``. MyST-NB executes each chapter once and caches its outputs by the
notebook's code, so an unchanged chapter is not re-run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
    if run.ok:  # unpaired: this is the one writer of the .ipynb (see pyproject's [tool.jupytext])
        run.notebook.metadata.pop("jupytext", None)
        nbformat.write(run.notebook, path.with_suffix(".ipynb"))
    return run


def docs_dir() -> Path:
    """``docs/`` (the Sphinx configuration and hand-written pages) of this checkout.

    Example:
        >>> (docs_dir() / "conf.py").is_file()
        True
    """
    return Path(__file__).resolve().parents[1] / "docs"


def select_chapters(paths: list[Path], only: list[str] | None) -> list[Path]:
    """Keep the chapters whose file name starts with one of ``only`` (``["00", "02"]``,
    ``["02_spectral"]``); all of them when ``only`` is empty. An unmatched prefix is an error.

    Example:
        >>> ps = [Path("00_tour.py"), Path("01_ops.py"), Path("02_ent.py")]
        >>> [p.name for p in select_chapters(ps, ["00", "02"])]
        ['00_tour.py', '02_ent.py']
    """
    if not only:
        return list(paths)
    prefixes = [o.strip() for item in only for o in item.split(",") if o.strip()]
    for prefix in prefixes:
        if not any(p.name.startswith(prefix) for p in paths):
            raise ValueError(f"no chapter starts with {prefix!r}: {[p.name for p in paths]}")
    return [p for p in paths if any(p.name.startswith(x) for x in prefixes)]


def _write_if_changed(path: Path, text: str) -> None:
    """Write only on change, so Sphinx (which compares mtimes) re-reads only what changed."""
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _api_pages() -> dict[str, str]:
    """MyST pages for the API reference: the face (``spectral_lab.__all__``) and one page per
    topic namespace, from the docstrings (autodoc + napoleon)."""
    import inspect

    import spectral_lab as sl

    topics = [n for n in sl.__all__ if inspect.ismodule(getattr(sl, n))]
    face = [n for n in sl.__all__ if n not in topics]
    others = [m for m in public_modules() if m not in topics]
    pages = {}
    lines = [
        "# API reference",
        "",
        "`import spectral_lab as sl`: the calls a reader makes first sit at the top level; "
        "everything else is reached through a topic namespace.",
        "",
        "```{toctree}",
        ":maxdepth: 1",
        ":caption: Topic namespaces",
        "",
        *[f"{t}" for t in topics],
        "```",
        "",
        "```{toctree}",
        ":maxdepth: 1",
        ":caption: Other modules (imported by name: `from spectral_lab import residual_stream`)",
        "",
        *[f"{m}" for m in others],
        "```",
        "",
        "## The top level",
        "",
    ]
    for name in face:
        obj = getattr(sl, name)
        kind = "autoclass" if inspect.isclass(obj) else "autofunction"
        members = ["   :members:"] if inspect.isclass(obj) else []
        lines += ["```{eval-rst}", f".. {kind}:: spectral_lab.{name}", *members]
        lines += ["", "```", ""]
    pages["index"] = "\n".join(lines)
    for t in topics:
        pages[t] = "\n".join(
            [
                f"# `sl.{t}`",
                "",
                "```{eval-rst}",
                f".. automodule:: spectral_lab.{t}",
                "   :members:",
                "   :imported-members:" if t in ("plots", "widgets") else "",
                "```",
                "",
            ]
        )
    for m in others:
        pages[m] = "\n".join(
            [f"# `spectral_lab.{m}`", "", "```{eval-rst}", f".. automodule:: spectral_lab.{m}",
             "   :members:", "   :no-index:", "```", ""]
        )  # fmt: skip
    return pages


def public_modules() -> list[str]:
    """Every public module and subpackage of ``spectral_lab`` (no leading underscore): the API
    reference has a page for each.

    Example:
        >>> {"jacobians", "transformer_ops", "residual_stream", "exercises"} <= set(public_modules())
        True
    """
    import pkgutil

    import spectral_lab

    return sorted(m.name for m in pkgutil.iter_modules(spectral_lab.__path__) if m.name[0] != "_")


@dataclass(frozen=True)
class BookBuild:
    """One ``spectral-lab book`` run: the output folder, the chapters built, the wall time and
    Sphinx's exit status (``ok`` is ``status == 0``)."""

    out: Path
    chapters: list[Path]
    seconds: float
    status: int

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def index(self) -> Path:
        return self.out / "index.html"


def library_hash() -> str:
    """A short hash of the library's sources: part of the execution cache's key, so editing
    ``spectral_lab`` re-runs the chapters while re-building an unchanged checkout does not.

    Example:
        >>> len(library_hash())
        12
    """
    import hashlib

    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def stage_book(out_dir: str | os.PathLike, chapters: list[Path]) -> Path:
    """Lay out the Sphinx source folder ``out_dir/.build/src``: ``docs/*.md``, the API pages and
    each chapter as ``chapters/NN_slug.ipynb`` read from its ``.py`` (no outputs: MyST-NB runs it).
    Files are rewritten only when their content changed. Returns the source folder."""
    import jupytext
    import nbformat

    src = Path(out_dir) / ".build" / "src"
    docs = docs_dir()
    for page in docs.glob("*.md"):
        _write_if_changed(src / page.name, page.read_text(encoding="utf-8"))
    for name, text in _api_pages().items():
        _write_if_changed(src / "api" / f"{name}.md", text)
    wanted = set()
    for path in chapters:
        nb = jupytext.read(path)
        nb.metadata.pop("jupytext", None)
        nb.metadata["spectral_lab"] = {"library": library_hash()}  # a new library re-reads pages
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"cell-{i:03d}"
        target = src / "chapters" / f"{path.stem}.ipynb"
        _write_if_changed(target, nbformat.writes(nb) + "\n")
        wanted.add(target.name)
        results = path.parent / "results"
        if results.is_dir():
            shutil.copytree(results, src / "chapters" / "results", dirs_exist_ok=True)
    for old in (src / "chapters").glob("*.ipynb"):
        if old.name not in wanted:
            old.unlink()
    return src


def build_book(
    out_dir: str | os.PathLike = "build/book",
    chapters_dir: str | os.PathLike | None = None,
    only: list[str] | None = None,
    timeout: int = 900,
) -> BookBuild:
    """Build the HTML book into ``out_dir`` with Sphinx + MyST-NB (``docs/conf.py``): every
    chapter (or those named by ``only``) executed once, its outputs cached by content (the chapter's code and
    :func:`library_hash`) in ``out_dir/.build/cache-HASH``; a failing chapter stops the build with its traceback and a non-zero
    ``status``. Sphinx's log goes to this process's stdout/stderr.
    Cost: the run time of every changed chapter, plus about 10 s of Sphinx. Not a doctest:
    executing a chapter takes seconds to minutes (``tests/test_cli_book.py`` tests it)."""
    out = Path(out_dir).resolve()
    chapters = select_chapters(chapter_sources(chapters_dir), only)
    start = time.perf_counter()
    src = stage_book(out, chapters)
    cache = out / ".build" / f"cache-{library_hash()}"
    for old in (out / ".build").glob("cache-*"):
        if old != cache:
            shutil.rmtree(old, ignore_errors=True)
    env = {
        **os.environ,
        # headless kernels: progress bars off, explorers attach their first picture
        "SPECTRAL_LAB_HEADLESS": "1",
    }
    cmd = [
        sys.executable, "-m", "sphinx", "-T", "-b", "html", "-c", str(docs_dir()),
        "-d", str(out / ".build" / "doctrees"),
        "-D", f"nb_execution_cache_path={cache}",
        "-D", f"nb_execution_timeout={timeout}",
        str(src), str(out),
    ]  # fmt: skip
    status = subprocess.run(cmd, env=env, check=False).returncode
    return BookBuild(out, chapters, time.perf_counter() - start, status)


JUPYTEXT_VIEWER = "Jupytext Notebook"


def lab_command(root: str | os.PathLike, settings_dir: str | os.PathLike, port: int | None = None):
    """The ``jupyter lab`` command line that opens the course at ``root`` with every ``.py``
    opening as a notebook (JupyterLab's ``defaultViewers`` set to Jupytext's notebook through an
    ``overrides.json`` written into ``settings_dir``; the user's own settings are untouched).

    Example:
        >>> import json, tempfile
        >>> d = tempfile.mkdtemp()
        >>> cmd = lab_command(".", d)
        >>> cmd[1:3], any(a.startswith("--LabApp.app_settings_dir=") for a in cmd)
        (['-m', 'jupyterlab'], True)
        >>> json.load(open(Path(d) / "overrides.json"))["@jupyterlab/docmanager-extension:plugin"]
        {'defaultViewers': {'python': 'Jupytext Notebook'}}
    """
    import json

    settings = Path(settings_dir)
    try:  # keep whatever the installation's own app settings hold
        from jupyterlab.commands import get_app_dir

        shipped = Path(get_app_dir()) / "settings"
        if shipped.is_dir():
            shutil.copytree(shipped, settings, dirs_exist_ok=True)
    except ImportError:
        pass
    settings.mkdir(parents=True, exist_ok=True)
    overrides_file = settings / "overrides.json"
    overrides = json.loads(overrides_file.read_text()) if overrides_file.is_file() else {}
    overrides.setdefault("@jupyterlab/docmanager-extension:plugin", {}).setdefault(
        "defaultViewers", {}
    )["python"] = JUPYTEXT_VIEWER
    overrides_file.write_text(json.dumps(overrides, indent=2))
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={Path(root).resolve()}"]
    cmd.append(f"--LabApp.app_settings_dir={settings}")
    # the chapters' .ipynb are the rendered copies (written by `spectral-lab sync`): the lab shows
    # only the .py, so what a reader opens, runs and saves is a file whose save changes nothing
    cmd += [f"--ContentsManager.hide_globs={g}" for g in HIDDEN_IN_LAB]
    if port is not None:
        cmd.append(f"--port={port}")
    return cmd


# JupyterLab's own defaults, plus the chapters' rendered notebooks
HIDDEN_IN_LAB = (
    "__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*.so", "*.dylib", "*~", "[0-9][0-9]_*.ipynb",
)  # fmt: skip


def lab_arguments(extra: list[str], euid: int | None = None) -> list[str]:
    """The flags ``spectral-lab lab`` adds to ``jupyter lab``: every flag the reader gave, passed on
    unchanged (a leading ``--`` separator dropped), plus ``--allow-root`` when running as root
    (``euid`` 0, e.g. in a container: JupyterLab refuses root without it) unless the reader already
    decided (``--allow-root`` or ``--ServerApp.allow_root=...``).

    Example:
        >>> lab_arguments(["--", "--ServerApp.token=abc"], euid=1000)
        ['--ServerApp.token=abc']
        >>> lab_arguments(["--port", "9999", "--no-browser"], euid=0)
        ['--port', '9999', '--no-browser', '--allow-root']
        >>> lab_arguments(["--ServerApp.allow_root=False"], euid=0)
        ['--ServerApp.allow_root=False']
    """
    args = list(extra)
    if args[:1] == ["--"]:
        args = args[1:]
    if euid is None:
        euid = os.geteuid() if hasattr(os, "geteuid") else -1
    decided = any(a == "--allow-root" or a.startswith("--ServerApp.allow_root") for a in args)
    if euid == 0 and not decided:
        args.append("--allow-root")
    return args
