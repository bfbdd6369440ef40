"""Optional dependencies: what the ``course``, ``book`` and ``lab`` extras add, imported on demand.

``pip install spectral_lab`` gives the library (torch, NumPy, SciPy, tqdm). The figures and explorers
(Matplotlib, ipywidgets), the embedded digits and the torchvision data sets (scikit-learn,
torchvision) and the chapter tools (Jupytext, nbformat, nbclient) come with
``pip install "spectral_lab[course]"``; the HTML book (Sphinx, MyST-NB) with ``[book]``; JupyterLab
with ``[lab]``. Every place that needs one of them imports it through :func:`require`, so a missing
package is one message that names the extra to install, raised before any work is done.

Example:
    >>> require("math", "a doctest").sqrt(4.0)
    2.0
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["BOOK", "CHAPTERS", "EXTRA_OF", "check_installed", "missing_extra_message", "require"]

EXTRA_OF: dict[str, tuple[str, str]] = {
    # import name: (pip package, the extra that installs it)
    "matplotlib": ("matplotlib", "course"),
    "ipywidgets": ("ipywidgets", "course"),
    "sklearn": ("scikit-learn", "course"),
    "torchvision": ("torchvision", "course"),
    "jupytext": ("jupytext", "course"),
    "nbformat": ("nbformat", "course"),
    "nbclient": ("nbclient", "course"),
    "nbconvert": ("nbconvert", "course"),
    "ipykernel": ("ipykernel", "course"),
    "jupyter_client": ("jupyter_client", "course"),
    "sphinx": ("sphinx", "book"),
    "myst_nb": ("myst-nb", "book"),
    "sphinx_book_theme": ("sphinx-book-theme", "book"),
    "sphinx-mathjax-offline": ("sphinx-mathjax-offline", "book"),
    "jupyterlab": ("jupyterlab", "lab"),
    "pandas": ("pandas", "monitor"),
    "tensorboard": ("tensorboard", "monitor"),
    "lightning": ("lightning", "lightning"),
    "transformers": ("transformers", "hf"),
}
"""The optional packages, by import name: the pip package and the extra that brings it."""

CHAPTERS = ("jupytext", "nbformat", "nbclient", "jupyter_client", "ipykernel")
"""What executing a chapter needs (``spectral-lab sync``)."""

BOOK = (*CHAPTERS, "sphinx", "myst_nb", "sphinx_book_theme", "sphinx-mathjax-offline")
"""What building the HTML book needs (``spectral-lab book``)."""


def missing_extra_message(module: str, what: str) -> str:
    """The one message for a missing optional package: what needs it and the command to install.

    Example:
        >>> missing_extra_message("sklearn.datasets", "load_dataset('digits')")
        'load_dataset(\\'digits\\') needs scikit-learn, which is not installed: pip install "spectral_lab[course]"'
    """
    top = module.split(".", 1)[0]
    package, extra = EXTRA_OF.get(top, (top, "course"))
    return f'{what} needs {package}, which is not installed: pip install "spectral_lab[{extra}]"'


def check_installed(modules: tuple[str, ...], what: str) -> None:
    """Raise ``ImportError`` with :func:`missing_extra_message` for the first of ``modules`` that is
    not installed, without importing any of them (``importlib.util.find_spec``).

    Example:
        >>> check_installed(("math", "json"), "a doctest")
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise ImportError(missing_extra_message(module, what))


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (a dotted name) and return it, or raise ``ImportError`` with
    :func:`missing_extra_message` (the original error chained) when it is not installed.
    ``what`` names the caller's feature, e.g. ``"spectral_lab.plots"``. Cost: one import."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(missing_extra_message(module, what)) from err
