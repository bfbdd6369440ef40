"""Real-browser tests (``pytest -m browser``): Debian's Chromium driven by Playwright.

JupyterLab on 127.0.0.1 (a free port) serves a copy of the chapters; chapters 00, 02 and 04 are
opened, run with Run -> Run All Cells, checked for error outputs, and a slider is moved until the
widget's figure changes. The built book's chapter 02 is opened over file:// and must show typeset
formulas (MathJax 3, no "Math Processing Error") and a picture where the widget stands.

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


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a copy of the chapters (running them must not touch the checkout)."""
    from spectral_lab.book import lab_command

    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "chapters", root / "chapters")
    port = _free_port()
    cmd = lab_command(root, root / ".settings", port=port) + [
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.allow_root=True",
        "--LabApp.expose_app_in_browser=True",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    log = open(root / "lab-server.log", "w")  # noqa: SIM115
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
                time.sleep(0.5)
        else:
            pytest.fail(
                "JupyterLab did not start: " + (root / "lab-server.log").read_text()[-2000:]
            )
        yield base
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


@pytest.mark.parametrize("stem", ["00_tour", "02_spectral_entropy", "04_hessian"])
def test_chapter_runs_clean_in_jupyterlab_and_its_slider_redraws(browser, lab, stem):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab}/lab/tree/chapters/{stem}.ipynb?reset", timeout=120_000)
        page.wait_for_function("() => window.jupyterapp", timeout=120_000)
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
        _wait_idle(page, 120, hold_s=1)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        time.sleep(2)
        _wait_idle(page, 400)
        assert page.evaluate(ERRORS) == []
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
        _shot(page, f"lab_{stem}_after_slider")
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    finally:
        page.close()


def test_py_chapter_opens_as_a_notebook(browser, lab):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab}/lab/tree/chapters/00_tour.py?reset", timeout=120_000)
        page.wait_for_function("() => window.jupyterapp", timeout=120_000)
        # a notebook, not the text editor: JupyterLab's default viewer for .py is Jupytext's
        page.wait_for_function(
            "() => document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length > 10",
            timeout=60_000,
        )
        assert page.locator(".jp-FileEditor").count() == 0
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    finally:
        page.close()


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
        page.goto((book / "chapters" / "02_spectral_entropy.html").as_uri())
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
        page.locator("mjx-container").nth(5).scroll_into_view_if_needed()
        _shot(page, "book_02_math")
    finally:
        page.close()
