"""Per-sample relations between two measurements: Spearman's rank correlation and the upper
envelope (a high ``x`` caps ``y``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._results import Result


@dataclass(frozen=True)
class Envelope(Result):
    """Upper envelope of ``y`` against ``x``: the ``q``-quantile of ``y`` in equal-count bins of
    ``x``; ``trend`` is the Spearman correlation of the bin centres with the envelope values."""

    centers: np.ndarray
    upper: np.ndarray
    counts: np.ndarray
    q: float
    trend: float

    def __repr__(self) -> str:
        return f"Envelope(bins={len(self.centers)}, q={self.q}, trend={self.trend:+.2f})"


def spearman(x, y) -> float:
    """Spearman rank correlation of two 1-D arrays (average ranks for ties).

    Cost: two sorts, ``O(n log n)``; computed by SciPy in float64.

    Example: any increasing relation has correlation 1.
        >>> spearman([1, 2, 3, 4], [1, 4, 9, 16])
        1.0
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or len(x) < 3:
        raise ValueError("x and y must be 1-D arrays of the same length >= 3")
    return float(spearmanr(x, y).statistic)


def upper_envelope(x, y, bins: int = 8, q: float = 0.95) -> Envelope:
    """The ``q``-quantile of ``y`` within ``bins`` equal-count bins of ``x``.

    This is the test of the claim that entropy bounds the unstable regime (a figure of "A Unified
    Matrix-Spectral Framework for Stability and Interpretability in Deep Learning"): a falling
    envelope means that a high ``x`` caps ``y``. Cost: one sort, ``O(n log n)``; NumPy float64.

    Example: ``y = 1/x`` has a falling envelope.
        >>> import numpy as np
        >>> x = np.arange(1.0, 33.0)
        >>> env = upper_envelope(x, 1 / x, bins=4)
        >>> env.trend, env.counts.tolist()
        (-1.0, [8, 8, 8, 8])
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or len(x) < 2 * bins:
        raise ValueError(f"need x, y of equal length >= 2*bins = {2 * bins}")
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    order = np.argsort(x, kind="stable")
    parts = np.array_split(order, bins)
    centers = np.array([np.median(x[p]) for p in parts])
    upper = np.array([np.quantile(y[p], q) for p in parts])
    counts = np.array([len(p) for p in parts])
    trend = spearman(centers, upper) if bins >= 3 else float("nan")
    return Envelope(centers, upper, counts, q, trend)
