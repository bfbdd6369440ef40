"""Real-browser tests (``pytest -m browser``): Debian's Chromium driven by Playwright.

``spectral-lab lab`` itself (the command a reader types; as root it must add ``--allow-root``)
serves a throwaway git repository holding the chapters, ``pyproject.toml`` (the Jupytext
configuration) and ``.gitignore``. Chapters 00 (a widget and exercises), 02 (a widget and "think"
answers) and 08 (exercises) are opened from their ``.py``, run with Run -> Run All Cells, checked
for error outputs, a slider is moved until the widget's figure changes, and then the chapter is
saved (Ctrl+S), closed and reopened: ``git status`` must stay clean. A ``git checkout`` of either
file of a pair must leave the chapter openable. The built book's chapter 02 is opened over file://
and must show typeset formulas (MathJax 3, no "Math Processing Error"), a picture where the widget
stands, and no solution or answer text until a reader opens it.

Skipped, with the reason, when Playwright or a Chromium binary is missing. Playwright's own browser
download is never used: ``executable_path`` points at the system's ``chromium``. Every server is
stopped by its PID (its process group, so its kernels go with it). Screenshots go to
``SPECTRAL_LAB_SHOTS`` when set. The book is ``SPECTRAL_LAB_BOOK`` when set (CI builds it first),
else chapter 02 alone is built into a temporary folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next(
    (p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None
)
playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[browser]'"
)
if CHROMIUM is None:
    pytest.skip(
        "no Chromium found (apt-get install -y chromium); browser tests skipped",
        allow_module_level=True,
    )


def _shot(page, name: str) -> None:
    folder = os.environ.get("SPECTRAL_LAB_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=False)


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """``spectral-lab lab`` on a git repository with a copy of the chapters (never the checkout)."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "chapters", root / "chapters")
    for name in ("pyproject.toml", ".gitignore"):
        shutil.copy(ROOT / name, root / name)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "chapters")
    port = _free_port()
    cmd = [sys.executable, "-m", "spectral_lab.cli", "lab", "--root", str(root)]
    cmd += ["--port", str(port), "--no-browser", "--ServerApp.ip=127.0.0.1"]
    cmd += ["--IdentityProvider.token=", "--ServerApp.password="]
    cmd += ["--LabApp.expose_app_in_browser=True"]  # no --allow-root: the command adds it as root
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log_path = tmp_path_factory.mktemp("lab-log") / "lab-server.log"  # outside the repository
    log = open(log_path, "w")  # noqa: SIM115
    server = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.5)
        else:
            server.poll()
        if server.returncode is not None:
            pytest.fail("spectral-lab lab did not start: " + log_path.read_text()[-2000:])
        yield base, root
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


IDLE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
  const busy = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
    .some(e => e.textContent.includes('*'));
  return !!k && k.status === 'idle' && !busy;
}"""
ERRORS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .flatMap(c => c.model.type === 'code' ? c.model.outputs.toJSON() : [])
  .filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)"""

STDOUT = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .flatMap(c => c.model.type === 'code' ? c.model.outputs.toJSON() : [])
  .filter(o => o.output_type === 'stream').map(o => [].concat(o.text).join('')).join('')"""


def _wait_idle(page, timeout_s: float, hold_s: float = 3.0) -> None:
    deadline, since = time.time() + timeout_s, None
    while time.time() < deadline:
        if page.evaluate(IDLE):
            since = since or time.time()
            if time.time() - since >= hold_s:
                return
        else:
            since = None
        time.sleep(0.5)
    raise AssertionError(f"kernel not idle after {timeout_s} s")


def _widget_pictures(widget) -> str:
    srcs = widget.locator("img").evaluate_all("els => els.map(e => e.src)")
    return hashlib.sha1("".join(srcs).encode()).hexdigest() if srcs else ""


def _open(page, base: str, path: str) -> None:
    page.goto(f"{base}/lab/tree/{path}?reset", timeout=120_000)
    page.wait_for_function("() => window.jupyterapp", timeout=120_000)
    # a notebook, not the text editor: JupyterLab's default viewer for .py is Jupytext's
    page.wait_for_function(
        "() => document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length > 10",
        timeout=120_000,
    )
    assert page.locator(".jp-FileEditor").count() == 0
    assert page.locator(".jp-Dialog").count() == 0, page.locator(".jp-Dialog").inner_text()


def _save_and_close(page) -> None:
    page.locator(".jp-NotebookPanel").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.context && !w.context.model.dirty; }",
        timeout=60_000,
    )
    page.evaluate(
        "async () => { const w = window.jupyterapp.shell.currentWidget;"
        " await w.sessionContext.shutdown(); w.close(); }"
    )


def _move_slider(page) -> None:
    widget = page.locator(".jp-OutputArea-output .widget-interact").first
    widget.scroll_into_view_if_needed()
    before = _widget_pictures(widget)
    assert before, "the widget shows no picture"
    handle = widget.locator(".noUi-handle").first
    readout = widget.locator(".widget-readout").first
    old = readout.inner_text()
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")
    if readout.inner_text() == old:  # the slider started at its maximum
        for _ in range(3):
            handle.press("ArrowLeft")
    deadline = time.time() + 60
    while time.time() < deadline and _widget_pictures(widget) in ("", before):
        time.sleep(0.5)
    _wait_idle(page, 60, hold_s=1)
    assert _widget_pictures(widget) not in ("", before), "the figure did not change"


@pytest.mark.parametrize(
    ("stem", "slider", "think"),
    [
        ("00_tour", True, True),
        ("02_spectral_entropy_bound", True, True),
        ("08_power_law_geometry", False, False),
    ],
)
def test_open_run_save_close_reopen_leaves_git_clean(browser, lab, stem, slider, think):
    import jupytext

    base, root = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        _open(page, base, f"chapters/{stem}.py")
        _wait_idle(page, 120, hold_s=1)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        time.sleep(2)
        _wait_idle(page, 400)
        assert page.evaluate(ERRORS) == []
        # read from the cells' models: the notebook renders only the cells in view
        text = page.evaluate(STDOUT)
        assert "not yet attempted" in text and ": passed" not in text
        # think answers: collapsed <details>; solutions: collapsed cells showing one comment line
        answers = page.locator(".jp-RenderedMarkdown details")
        assert answers.count() >= (1 if think else 0)
        assert all(answers.nth(i).get_attribute("open") is None for i in range(answers.count()))
        shown = page.locator(".jp-InputPlaceholder").all_text_contents()  # in view or not
        solutions = [
            c
            for c in jupytext.read(root / "chapters" / f"{stem}.py").cells
            if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])
        ]
        assert len(shown) == len(solutions) > 0, shown
        assert all(t.strip().startswith("# Reference solution") for t in shown), shown
        if slider:
            _move_slider(page)
            _shot(page, f"lab_{stem}_after_slider")
        _save_and_close(page)
        assert _git(root, "status", "--porcelain") == "", _git(root, "diff")
        _open(page, base, f"chapters/{stem}.py")  # reopen: the same notebook
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        assert _git(root, "status", "--porcelain") == "", _git(root, "diff")
    finally:
        page.close()


@pytest.mark.parametrize("suffix", [".ipynb", ".py"])
def test_checkout_of_either_file_leaves_the_chapter_openable(browser, lab, suffix):
    """``git checkout`` of one file of the pair makes it the newer one: the .py still opens."""
    base, root = lab
    changed = root / "chapters" / f"00_tour{suffix}"
    changed.write_text(changed.read_text() + "\n")
    time.sleep(1.1)
    _git(root, "checkout", "--", str(changed.relative_to(root)))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        _open(page, base, "chapters/00_tour.py")
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    finally:
        page.close()
    assert _git(root, "status", "--porcelain") == ""


@pytest.fixture(scope="module")
def book():
    given = os.environ.get("SPECTRAL_LAB_BOOK")
    if given:
        yield Path(given)
        return
    out = Path(tempfile.mkdtemp(prefix="spectral-lab-book-")) / "book"
    status = subprocess.call(
        [sys.executable, "-m", "spectral_lab.cli", "book", "--out", str(out), "--only", "02"]
    )
    assert status == 0
    yield out
    shutil.rmtree(out.parent, ignore_errors=True)


def test_book_chapter_02_typesets_math_and_shows_widget_picture(browser, book):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto((book / "chapters" / "02_spectral_entropy_bound.html").as_uri())
        page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=60_000
        )
        page.evaluate("() => MathJax.startup.promise")
        typeset = page.locator("mjx-container").count()
        assert typeset > 20, f"only {typeset} formulas typeset"
        assert "Math Processing Error" not in page.inner_text("body")
        assert page.locator("mjx-merror").count() == 0
        # a MathJax font actually loaded (not a fallback serif)
        fonts = page.evaluate(
            "() => [...document.fonts].filter(f => f.family.includes('MJXZERO') ||"
            " f.family.includes('MJXTEX')).map(f => f.status)"
        )
        assert "loaded" in fonts, fonts
        cell = page.locator(".cell", has_text="entropy_explorer(").first
        cell.scroll_into_view_if_needed()
        imgs = cell.locator(".cell_output img")
        assert imgs.count() >= 1
        assert imgs.first.evaluate("e => e.complete && e.naturalWidth > 0")
        assert "interactive(children" not in page.inner_text("body")
        _shot(page, "book_02_widget")
        # long code lines scroll and outputs wrap: nothing is cut off at the page's edge
        page.set_viewport_size({"width": 700, "height": 1000})
        cut = page.evaluate(
            """() => [...document.querySelectorAll('div.cell_output pre, div.cell_input pre')]
              .filter(e => e.scrollWidth > e.clientWidth + 1 &&
                      !['auto', 'scroll'].includes(getComputedStyle(e).overflowX)).length"""
        )
        assert cut == 0, f"{cut} code or output blocks are cut off"
        page.set_viewport_size({"width": 1400, "height": 1000})
        # nothing of a solution or an answer shows until the reader opens it
        solution = page.locator(".cell.tag_solution .cell_input").first
        assert solution.count() == 1 and not solution.is_visible()
        answer = page.locator("details", has_text="Answer (click to show)").first
        body = answer.locator("p").first
        assert not body.is_visible()
        answer.locator("summary").click()
        assert body.is_visible()
        page.locator("mjx-container").nth(5).scroll_into_view_if_needed()
        _shot(page, "book_02_math")
    finally:
        page.close()
