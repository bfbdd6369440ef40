"""Spearman and the upper envelope."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_lab.attribution import spearman, upper_envelope


def test_spearman_and_upper_envelope():
    x = np.arange(40.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    # y uniform under a falling cap: the envelope falls although rank correlation is weak-ish
    xs = rng.uniform(0, 1, 4000)
    ys = rng.uniform(0, 1, 4000) * (1 - xs)
    env = upper_envelope(xs, ys, bins=8, q=0.95)
    assert env.trend == pytest.approx(-1.0)
    assert np.all(np.diff(env.upper) < 0) and env.counts.sum() == 4000
    flat = upper_envelope(xs, rng.uniform(0, 1, 4000), bins=8)
    assert abs(flat.trend) < 1.0

