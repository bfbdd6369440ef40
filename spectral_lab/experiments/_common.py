"""Shared plumbing of the experiments package: the package-level lookup of swappable formulas."""

from __future__ import annotations

import sys
from collections.abc import Callable


def _swappable(name: str) -> Callable:
    """The function ``name`` as bound on the package :mod:`spectral_lab.experiments`, looked up at
    call time.

    The statistics a claim's verdict relies on (``_z_se``, ``rho_heterogeneity``) are reached this
    way, so a mutation test or a chapter can swap one with
    ``mock.patch.object(sl.experiments, name, wrong)`` and watch the verdict change.
    """
    return getattr(sys.modules[__package__], name)
