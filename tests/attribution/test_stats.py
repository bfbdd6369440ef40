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


def test_upper_envelope_is_the_q_quantile_of_equal_count_bins():
    # x = y = 0..39 in 4 bins of 10 consecutive values: centre 10 b + 4.5 and 95 % quantile
    # (linear interpolation at position 0.95 * 9 = 8.55) 10 b + 8.55, in closed form
    x = np.arange(40.0)
    env = upper_envelope(x[::-1].copy(), x[::-1].copy(), bins=4, q=0.95)
    b = np.arange(4)
    np.testing.assert_allclose(env.centers, 10 * b + 4.5)
    np.testing.assert_allclose(env.upper, 10 * b + 8.55)
    assert env.counts.tolist() == [10] * 4 and env.trend == pytest.approx(1.0)
    assert upper_envelope(x, x, bins=4, q=1.0).upper.tolist() == [9.0, 19.0, 29.0, 39.0]
