"""The study's per-run metrics against an independent reference, with the slips an audit (and
this round) found surviving; and the cache keyed on the library's source, the data and torch.

The reference rebuilds each run's model from its stored weights, takes the input Jacobian with
``torch.autograd.functional.jacobian`` per test point and reduces it with NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import spectral_lab as sl
from spectral_lab.experiments import cache as study_cache
from spectral_lab.experiments import study as study_mod


def _cfg():
    return sl.experiments.StudyConfig(
        dataset="digits", model_kwargs={"width": 16, "depth": 2}, epochs=1, seeds=(0, 1),
        n_eval=40, n_draws=2, scales=(0.05,), fd_pca_dim=4, n_boot=20, batch_size=64, lr=3e-3,
        strength=0.05,
    )  # fmt: skip


def _np_entropy_bits(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0).sum(-1)


def _reference(res) -> dict:
    """Per run: the dense singular values of J_f on the study's test points (NumPy SVD)."""
    cfg = res.config
    _, test_set = sl.experiments.load_study_data(cfg)
    x, _ = test_set.subset(cfg.n_eval, seed=1234).tensors()
    out = {}
    for key, rec in res.runs.items():
        model = sl.build_model(cfg.model, test_set.input_shape, test_set.num_classes,
                               **cfg.model_kwargs)  # fmt: skip
        model.load_state_dict(rec["state_dict"])
        model = model.eval().double()
        jf = np.stack(
            [
                torch.autograd.functional.jacobian(lambda z, m=model: m(z[None])[0], xi).numpy()
                for xi in x.double()
            ]
        )
        out[key] = np.linalg.svd(jf.reshape(len(jf), jf.shape[1], -1), compute_uv=False)
    return out


def study_mismatches(res, ref) -> list[str]:
    """The table's SE (mean per-sample energy entropy, bits), ACN (median of
    ``sigma_1 / median_k sigma_k``) and std over seeds (ddof=1) against the reference."""
    bad = set()
    for variant in ("standard", "stable"):
        se = [float(_np_entropy_bits(ref[(variant, s)] ** 2 / (ref[(variant, s)] ** 2).sum(1,
              keepdims=True)).mean()) for s in res.config.seeds]  # fmt: skip
        acn = [
            float(np.median(ref[(variant, s)][:, 0] / np.median(ref[(variant, s)], axis=1)))
            for s in res.config.seeds
        ]
        row = res.value(variant, "SE")
        if not np.allclose(row["values"], se, rtol=1e-4):
            bad.add("SE")
        if len(se) > 1 and not math.isclose(
            row["std"], float(np.std(se, ddof=1)), rel_tol=1e-3, abs_tol=1e-9
        ):
            bad.add("std")
        if not np.allclose(res.value(variant, "ACN")["values"], acn, rtol=1e-4):
            bad.add("ACN")
    return sorted(bad)


@pytest.fixture(scope="module")
def study():
    res = sl.run_study(_cfg(), cache_dir=False, progress=False)
    return res, _reference(res)


def _with(res, fn):
    """A copy of ``res`` whose every run has ``fn(run) -> {key: value}`` applied."""
    runs = {k: {**r, **fn(r)} for k, r in res.runs.items()}
    return sl.experiments.StudyResult(res.config, runs, res.seconds, res.cached)


def test_study_se_is_the_energy_entropy_in_bits(study, monkeypatch):
    """Survivor 4: SE in the amplitude normalisation (p_k = sigma_k / sum sigma), applied where
    the study computes it; the run must be recomputed to show it (no cache)."""
    res, ref = study
    assert study_mismatches(res, ref) == []

    def amplitude(J, base):
        return sl.spectral_entropy(J, "amplitude", base=base)

    monkeypatch.setattr(study_mod, "_jacobian_entropy", amplitude)
    wrong = sl.run_study(res.config.replace(seeds=(0,)), cache_dir=False, progress=False)
    ref0 = {k: v for k, v in ref.items() if k[1] == 0}
    assert "SE" in study_mismatches(wrong, ref0)


@pytest.mark.parametrize(
    "slip,key",
    [
        (lambda r: {"se": r["se"] * math.log(2)}, "SE"),  # nats although bits were asked
        (lambda r: {"acn": r["sigma"][:, 0] / r["sigma"].mean(1)}, "ACN"),  # mean, not median
        (  # the lower median of 10 values (torch.median) instead of the mean of the middle two
            lambda r: {"acn": r["sigma"][:, 0] / r["sigma"].median(1).values},
            "ACN",
        ),
    ],
    ids=["se_in_nats", "acn_mean", "acn_lower_median"],
)
def test_own_round_study_slips_are_caught(study, slip, key):
    res, ref = study
    assert key in study_mismatches(_with(res, slip), ref)


def test_table_median_over_samples_is_the_mean_of_the_middle_two(study):
    """The table's ACN over an even number of test points (40): torch.median's lower median was
    the library's value before this round (a slip the audit named for kappa_attr)."""
    res, ref = study
    lower = [float(res.runs[("stable", s)]["acn"].median()) for s in res.config.seeds]
    assert not np.allclose(res.value("stable", "ACN")["values"], lower, rtol=1e-4)


def test_table_std_is_over_seeds_with_ddof_1(study, monkeypatch):
    res, ref = study
    right = study_mod._row

    def ddof0(variant, metric, scale, vals):
        r = right(variant, metric, scale, vals)
        return {**r, "std": float(np.std(vals))}

    monkeypatch.setattr(study_mod, "_row", ddof0)
    assert "std" in study_mismatches(res, ref)


# --- the cache: keyed on configuration, data bytes, library source and torch version ----------


def _tiny():
    return _cfg().replace(seeds=(0,), n_eval=16)


def test_changed_library_source_recomputes(tmp_path, monkeypatch):
    extra = tmp_path / "fake_module.py"
    extra.write_text("X = 1\n")
    files = study_cache._source_files()
    assert any(p.name == "study.py" for p in files) and any(p.name == "spectra.py" for p in files)
    monkeypatch.setattr(study_cache, "_source_files", lambda: [*files, extra])
    cfg, cache = _tiny(), tmp_path / "cache"
    first = sl.run_study(cfg, cache_dir=cache, progress=False)
    assert first.cached == 0
    assert sl.run_study(cfg, cache_dir=cache, progress=False).cached == 2
    assert sl.experiments.cached_study(cfg, cache_dir=cache).cached == 2
    extra.write_text("X = 2  # an edited library module\n")
    assert sl.experiments.cached_study(cfg, cache_dir=cache) is None
    again = sl.run_study(cfg, cache_dir=cache, progress=False)
    assert again.cached == 0 and len(list(cache.glob("*.pt"))) == 4


def test_other_data_or_torch_recomputes(tmp_path, monkeypatch):
    cfg = _tiny()
    train, test = sl.experiments.load_study_data(cfg)
    assert sl.run_study(cfg, cache_dir=tmp_path, progress=False, data=(train, test)).cached == 0
    assert sl.run_study(cfg, cache_dir=tmp_path, progress=False).cached == 2  # same bytes
    x = train.x.clone()
    x[0, 0] += 1.0
    other = sl.ArrayDataset(x, train.y, num_classes=train.num_classes, name=train.name,
                            scale=train.scale)  # fmt: skip
    assert sl.run_study(cfg, cache_dir=tmp_path, progress=False, data=(other, test)).cached == 0
    monkeypatch.setattr(torch, "__version__", "0.0-other")
    assert sl.experiments.cached_study(cfg, cache_dir=tmp_path) is None


def test_stale_stamp_inside_a_file_is_not_trusted(tmp_path):
    cfg = _tiny()
    sl.run_study(cfg, cache_dir=tmp_path, progress=False)
    for p in tmp_path.glob("*.pt"):  # a record whose content says it came from elsewhere
        rec = torch.load(p, weights_only=True)
        torch.save({**rec, "stamp": "0" * 16}, p)
    assert sl.run_study(cfg, cache_dir=tmp_path, progress=False).cached == 0


# --- the claims statistics: this round's slips ------------------------------------------------


def test_fd_ratio_interval_is_the_central_95_percent_of_paired_replicates():
    """The FD claim's interval is the 2.5 % and 97.5 % quantiles of the paired bootstrap ratio
    sum_seeds stable_b / sum_seeds standard_b (a 90 % interval, ALPHA instead of ALPHA / 2, fails)."""
    from ._helpers import _fake

    res = _fake(200.0, 50.0)
    st = sl.experiments.assess_claims(res)[0].stats
    seeds = res.config.seeds
    ba = np.stack([res.runs[("standard", s)]["fd_boot"][0].numpy() for s in seeds]).sum(0)
    bb = np.stack([res.runs[("stable", s)]["fd_boot"][0].numpy() for s in seeds]).sum(0)
    want = np.percentile(bb / ba, [2.5, 97.5])
    np.testing.assert_allclose(st["ci"], want, rtol=1e-12)
    assert not np.allclose(np.percentile(bb / ba, [5, 95]), want, rtol=1e-3)


def test_entropy_instability_rho_is_spearmans_rank_correlation():
    """Per seed, rho is Pearson's r of the ranks (computed here with NumPy's argsort), which a
    Pearson correlation of the raw values (SciPy's pearsonr in place of spearmanr) misses on a
    monotone but strongly nonlinear relation."""
    from ._helpers import _fake

    def skewed(seed, rng):
        se = rng.normal(size=400)
        return se, np.exp(3 * se) + 0.5 * rng.normal(size=400)

    res = _fake(200.0, 50.0, per_seed=skewed)
    rel = sl.experiments.entropy_instability_relation(res)
    for s, rho in zip(res.config.seeds, rel["rho"]):
        r = res.runs[("standard", s)]
        x, y = r["se"].numpy(), r["delta_grad"][0].numpy()
        ranks = [np.argsort(np.argsort(v)).astype(float) for v in (x, y)]
        assert math.isclose(rho, np.corrcoef(*ranks)[0, 1], rel_tol=1e-10)
        assert abs(rho - np.corrcoef(x, y)[0, 1]) > 0.05  # Pearson's r would be caught
