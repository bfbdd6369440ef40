"""Shared references of the geometry tests (numpy versions of orbit quantities, Haar matrices)."""

from __future__ import annotations

import math

import numpy as np

D = 32


def _haar(d, rng):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _np_log_sigma1_normalized(a: np.ndarray) -> float:
    """Independent reference: log σ_1 of sqrt(d) A / ||A||_F, d = min(rows, cols), in numpy."""
    ab = math.sqrt(min(a.shape)) * a / np.linalg.norm(a, "fro")
    return math.log(np.linalg.svd(ab, compute_uv=False)[0])


def _np_orbit_r(alpha: float, d: int) -> float:
    """Independent reference: top radial ½ log(d p_1) of the power law p_k ∝ k^{-α}, numpy."""
    w = np.arange(1, d + 1, dtype=np.float64) ** -alpha
    return 0.5 * math.log(d * w[0] / w.sum())
