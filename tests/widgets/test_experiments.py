"""The regularisation study: its figures and the study explorer draw the sweep's numbers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import spectral_lab as sl
from spectral_lab import plots, widgets


@pytest.fixture(scope="module")
def sweep():
    cfg = sl.experiments.StudyConfig(
        dataset="digits",
        model_kwargs={"width": 16, "depth": 2},
        epochs=1,
        seeds=(0, 1),
        n_eval=40,
        n_draws=2,
        scales=(0.05, 0.1),
        fd_pca_dim=6,
    )
    return sl.experiments.strength_sweep(cfg, [0.01, 0.1], cache_dir=False, progress=False)


def _seed_means(res, variant: str) -> dict[str, float]:
    """Means over seeds of the headline metrics, from the raw per-seed records (numpy)."""
    recs = [res.record(variant, s) for s in res.config.seeds]
    i = list(res.config.scales).index(0.1)
    return {
        "accuracy": np.mean([r["accuracy"] for r in recs]),
        "SE": np.mean([r["se"].numpy().mean() for r in recs]),
        # the study's medians are NumPy's (the mean of the middle two for an even count)
        "ACN": np.mean([np.median(r["acn"].double().numpy()) for r in recs]),
        "sigma1": np.mean([np.median(r["sigma"].double().numpy()[:, 0]) for r in recs]),
        "FD": np.mean([float(r["fd"][i]) for r in recs]),
    }


def test_study_plots_and_explorer(sweep):
    res = sweep[0.1]
    # the stored per-sample SE is the base-2 energy entropy of the stored singular values
    for variant in ("standard", "stable"):
        rec = res.record(variant, 0)
        sv = rec["sigma"].numpy()
        p = sv**2 / (sv**2).sum(1, keepdims=True)
        se = -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(1)
        np.testing.assert_allclose(rec["se"].numpy(), se, rtol=1e-5, atol=1e-6)
    fig = plots.plot_study_comparison(res)
    assert len(fig.axes[0].patches) == 4
    std, stab = _seed_means(res, "standard"), _seed_means(res, "stable")
    heights = [b.get_height() for b in fig.axes[0].patches]
    ref = [stab[k] / std[k] for k in ("accuracy", "SE", "ACN", "sigma1")]
    np.testing.assert_allclose(heights, ref, rtol=1e-6)
    plt.close(fig)
    fig = plots.plot_strength_sweep(sweep, "accuracy", "FD", scale=0.1)
    line = fig.axes[0].lines[0]  # the stable models across strengths, in increasing strength
    means = [_seed_means(sweep[lam], "stable") for lam in sorted(sweep)]
    np.testing.assert_allclose(
        np.asarray(line.get_xdata(), float), [m["accuracy"] for m in means], rtol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(line.get_ydata(), float), [m["FD"] for m in means], rtol=1e-6
    )
    star = fig.axes[0].lines[-1]  # the standard model
    assert star.get_xdata()[0] == pytest.approx(std["accuracy"], rel=1e-6)
    assert star.get_ydata()[0] == pytest.approx(std["FD"], rel=1e-6)
    plt.close(fig)
    rec0, rec1 = res.record("standard", 0), res.record("stable", 0)
    fig = plots.plot_spectrum_tails(rec0["sigma"].numpy(), rec1["sigma"].numpy())
    assert len(fig.axes[0].lines) == 2
    for line, rec in zip(fig.axes[0].lines, (rec0, rec1)):  # median of sigma_k / sigma_1
        sv = rec["sigma"].numpy().astype(float)
        np.testing.assert_allclose(line.get_ydata(), np.median(sv / sv[:, :1], axis=0), rtol=1e-9)
    plt.close(fig)
    draw = widgets.study_draw(sweep)
    fig = draw(strength=0.01, scale=0.05)
    assert len(fig.axes) == 2
    plt.close(fig)
    ui = widgets.study_explorer(sweep)
    assert callable(ui.draw)
