"""Sphinx configuration of the spectral_lab book (built by ``spectral-lab book``).

``spectral-lab book`` stages the sources (these pages, the chapters as notebooks, the API pages)
and runs ``python -m sphinx -c docs/ ...``; see ``spectral_lab/book.py``. Everything here works
offline: MathJax 3 with its fonts comes from the ``sphinx-mathjax-offline`` wheel, the theme from
``sphinx-book-theme``, and no page loads anything from a CDN.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

project = "spectral_lab"
author = "spectral_lab contributors"
copyright = "spectral_lab contributors (MIT)"
html_title = "spectral_lab — the course"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
exclude_patterns = ["**/.ipynb_checkpoints", "chapters/results"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# kernels talk over IPC sockets in a private folder (as spectral_lab.book.execute_chapter does): no
# TCP ports to collide between parallel builds, and no "Kernel is running over TCP without
# encryption" warning at every chapter. jupyter-cache builds its KernelManager without any
# configuration, so the Sphinx process gives every KernelManager these two defaults.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

from jupyter_client.manager import KernelManager  # noqa: E402

_sockets = tempfile.mkdtemp(prefix="spectral-lab-kernels-")
atexit.register(shutil.rmtree, _sockets, ignore_errors=True)
_km_init = KernelManager.__init__


def _ipc_kernel_manager(self, *args, **kwargs):
    kwargs.setdefault("transport", "ipc")
    kwargs.setdefault("ip", str(Path(tempfile.mkdtemp(dir=_sockets)) / "kernel"))
    _km_init(self, *args, **kwargs)


KernelManager.__init__ = _ipc_kernel_manager

# --- execution: once per chapter, cached by the notebook's code; a failure fails the build
nb_execution_mode = "cache"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 900
nb_execution_in_temp = False  # chapters run in their own folder (chapters/results/ beside them)
nb_merge_streams = True
# no widget state is embedded: an explorer's cell shows its first figure (image/png in the same
# output, see spectral_lab.widgets._core) instead of a live widget that would need a CDN script
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js = {}

# --- API reference from the docstrings
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = True
suppress_warnings = ["myst.header", "autodoc.import_object", "ref.python"]

# --- MathJax 3 served from the book's own _static/mathjax (fonts included): typesets offline
_mathjax = importlib.util.find_spec("sphinx-mathjax-offline")
if _mathjax is None or not _mathjax.submodule_search_locations:
    raise RuntimeError(
        "the book needs a local MathJax: pip install sphinx-mathjax-offline "
        '(or reinstall spectral_lab with the book: pip install -e ".[book]")'
    )
html_static_path = [
    str(Path(next(iter(_mathjax.submodule_search_locations))) / "static"),
    str(Path(__file__).resolve().parent / "_static"),  # book.css: long lines scroll or wrap
]
html_css_files = ["book.css"]
mathjax_path = "mathjax/tex-chtml-full.js"

# --- the theme: sidebar contents, previous/next, search, a download button per chapter
html_theme = "sphinx_book_theme"
html_theme_options = {
    "use_download_button": True,
    "use_fullscreen_button": False,
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
html_last_updated_fmt = None
html_copy_source = True
