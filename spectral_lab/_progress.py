"""Progress bars: tqdm's notebook-aware bar, switched off in headless runs.

``spectral-lab book`` and ``spectral-lab sync`` set ``SPECTRAL_LAB_HEADLESS=1`` for the kernels they
start: a widget bar saved into a static page would show its first frame ("0%") forever.
"""

from __future__ import annotations

import os


def headless() -> bool:
    return os.environ.get("SPECTRAL_LAB_HEADLESS", "") not in ("", "0")


def progress_bar(iterable, *, desc: str, enabled: bool = True, **kwargs):
    """``tqdm.auto.tqdm(iterable)``, disabled when ``enabled`` is false or the run is headless."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not enabled or headless(), leave=False, **kwargs)
