"""Deprecated alias of :mod:`spectral_lab.sensitivity` (renamed so that "bounds" means one thing:
the stability bounds live in :mod:`spectral_lab.stability`). Kept for one release.

Every name still resolves here, with a ``DeprecationWarning`` that names the new spelling.
"""

from __future__ import annotations

import sys

from . import sensitivity as _sensitivity
from ._deprecate import warn_deprecated

__all__ = list(_sensitivity.__all__)


def __getattr__(name: str):
    if name in _sensitivity.__all__:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if not caller.startswith("spectral_lab"):  # the library's own imports stay quiet
            warn_deprecated(
                f"spectral_lab.bounds is deprecated and will be removed in the next release; "
                f"use spectral_lab.sensitivity.{name}",
                stacklevel=3,
            )
        return getattr(_sensitivity, name)
    raise AttributeError(f"module 'spectral_lab.bounds' has no attribute {name!r}")
