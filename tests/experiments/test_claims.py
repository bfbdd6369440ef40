"""The study runner, its cache, the claims verdicts, the CIFAR code path and `reproduce`."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import spectral_lab as sl
from spectral_lab.cli import main
from spectral_lab.data import DatasetNotFoundError
from spectral_lab.experiments import (
    PAPER_PROVENANCE,
    Claim,
    StudyResult,
    assess_claims,
    paper_table,
)

MNIST_ROOT = os.environ.get("SPECTRAL_LAB_DATA", "/work/shared/data")
HAVE_MNIST = (Path(MNIST_ROOT) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


# --------------------------------------------------------------------------- CIFAR-format files
def _write_cifar(root: Path, kind: str = "cifar10", per_batch: int = 40, seed: int = 0) -> Path:
    """Small files in CIFAR's own python pickle format (torchvision's layout)."""
    rng = np.random.default_rng(seed)
    n_cls = 10 if kind == "cifar10" else 100

    def batch(n):
        labels = rng.integers(0, n_cls, n).tolist()
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        # make the task learnable: brighten the red channel in proportion to the label
        data[:, :1024] = (np.array(labels)[:, None] * (255 // n_cls)).astype(np.uint8)
        key = "labels" if kind == "cifar10" else "fine_labels"
        return {"data": data, key: labels, "batch_label": "synthetic"}

    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for i in range(1, 6):
            (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch)))
        (folder / "test_batch").write_bytes(pickle.dumps(batch(per_batch)))
        meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        (folder / "train").write_bytes(pickle.dumps(batch(5 * per_batch)))
        (folder / "test").write_bytes(pickle.dumps(batch(per_batch)))
        meta = {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []}
        (folder / "meta").write_bytes(pickle.dumps(meta))
    return root


@pytest.mark.parametrize("kind,n_cls", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_files_load_unverified_and_refuse_verification(tmp_path, kind, n_cls):
    root = _write_cifar(tmp_path, kind)
    train = sl.load_dataset(kind, "train", root=root, verify=False)
    test = sl.load_dataset(kind, "test", root=root, verify=False)
    assert len(train) == 200 and len(test) == 40
    assert train.input_shape == (3, 32, 32) and train.num_classes == n_cls
    x, y = test.tensors()
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
    assert y.dtype == torch.int64
    with pytest.raises(DatasetNotFoundError, match="MD5|corrupt"):
        sl.load_dataset(kind, "train", root=root, verify=True)


def test_study_runs_the_real_cifar_code_path(tmp_path):
    root = _write_cifar(tmp_path / "data", "cifar10")
    cfg = sl.experiments.study_preset("cifar10", quick=True).replace(
        data_root=str(root),
        verify=False,
        model_kwargs={"channels": (4,)},
        n_eval=24,
        n_train=None,
        fd_pca_dim=8,
    )
    res = sl.run_study(cfg, cache_dir=tmp_path / "cache", progress=False)
    assert set(res.runs) == {("standard", 0), ("stable", 0)}
    rec = res.record("stable", 0)
    assert rec["se"].shape == (24,) and rec["sigma"].shape == (24, 10)
    assert rec["maps_clean"].shape[1:] == (3, 32, 32)
    text = res.format_table()
    assert "cifar10" in text and "paper (cifar10, reported" in text
    # CIFAR-100's paper entry carries no numbers
    assert "no numbers reported" in paper_table("cifar100")


# --------------------------------------------------------------------------- runner and cache
def _digits_cfg():
    return sl.experiments.StudyConfig(
        dataset="digits",
        model_kwargs={"width": 32, "depth": 2},
        epochs=2,
        seeds=(0, 1),
        n_eval=64,
        n_draws=2,
        scales=(0.05, 0.1),
        fd_pca_dim=8,
        batch_size=64,
        lr=3e-3,
        strength=0.05,
    )


def test_study_table_cache_and_sweep(tmp_path):
    cfg = _digits_cfg()
    res = sl.run_study(cfg, cache_dir=tmp_path, progress=False)
    assert res.cached == 0 and len(res.runs) == 4
    rows = res.table()
    metrics = {r["metric"] for r in rows}
    assert {
        "accuracy",
        "SE",
        "ACN",
        "sigma1",
        "FD",
        "FD_shape",
        "delta_grad",
        "cosine",
        "topk",
        "agreement",
    } <= metrics
    r = res.value("stable", "FD", 0.1)
    assert len(r["values"]) == 2
    assert r["mean"] == pytest.approx(np.mean(r["values"]))
    assert r["std"] == pytest.approx(np.std(r["values"], ddof=1))
    # SE per sample is within [0, log2 10] bits (10-class Jacobian, base 2)
    se = res.per_sample("standard", "se")
    assert se.shape == (2, 64) and (se >= 0).all() and (se <= np.log2(10) + 1e-5).all()
    # cached: nothing retrained, identical numbers
    again = sl.run_study(cfg, cache_dir=tmp_path, progress=False)
    assert again.cached == 4
    assert again.table() == rows
    # a sweep reuses the standard runs from the cache
    sweep = sl.experiments.strength_sweep(cfg, [0.05, 0.2], cache_dir=tmp_path, progress=False)
    assert sweep[0.05].cached == 4 and sweep[0.2].cached == 2
    # a corrupt cache entry is recomputed, not trusted
    for p in tmp_path.glob("*.pt"):
        p.write_bytes(b"garbage")
    fixed = sl.run_study(cfg, cache_dir=tmp_path, progress=False)
    assert fixed.cached == 0 and fixed.table()[0]["mean"] == pytest.approx(rows[0]["mean"])


def test_cache_keys_separate_what_changes_a_run():
    cfg = _digits_cfg()
    key = cfg.run_key("stable", 0)
    assert key != cfg.run_key("stable", 1) and key != cfg.run_key("standard", 0)
    assert key != cfg.replace(strength=0.1).run_key("stable", 0)
    assert key != cfg.replace(data_root="/elsewhere").run_key("stable", 0)
    assert key != cfg.replace(verify=False).run_key("stable", 0)
    # the standard run does not depend on the regulariser: sweeps share it
    assert cfg.run_key("standard", 0) == cfg.replace(strength=0.1).run_key("standard", 0)
    assert key == cfg.replace(seeds=(0, 5)).run_key("stable", 0)


def test_training_is_reproducible_without_cache():
    cfg = _digits_cfg().replace(seeds=(3,), epochs=1)
    a = sl.run_study(cfg, cache_dir=False, progress=False)
    b = sl.run_study(cfg, cache_dir=False, progress=False)
    strip = [r for r in a.table() if r["metric"] != "train_seconds"]
    assert strip == [r for r in b.table() if r["metric"] != "train_seconds"]


# --------------------------------------------------------------------------- claims
N_FAKE = 400


def _fake(
    fd_std,
    fd_stab,
    se_std=3.0,
    se_stab=3.0,
    acc=(0.95, 0.948),
    rho_noise=1.0,
    *,
    shape=None,
    acc_seed_sd=0.001,
    se_seed_sd=0.01,
    per_seed=None,
    boot_sd=0.05,
):
    """A StudyResult with hand-made records, to check the verdict logic exactly.

    ``per_seed(seed, rng) -> (se, delta_grad)`` overrides the per-sample standard-model arrays;
    FD bootstrap replicates are ``fd * (1 + boot_sd * N(0, 1))``, paired across variants.
    """
    cfg = sl.experiments.StudyConfig(seeds=(0, 1, 2), scales=(0.1,), n_boot=200)
    rng = np.random.default_rng(0)
    z = np.random.default_rng(1).normal(size=200)
    z2 = np.random.default_rng(2).normal(size=200)
    base = np.random.default_rng(3).normal(size=N_FAKE)
    shape = (fd_std, fd_stab) if shape is None else shape
    runs = {}
    for s in cfg.seeds:
        off_se = se_seed_sd * (s - 1)
        off_acc = acc_seed_sd * (s - 1)
        for variant, fd, fds, se, a in (
            ("standard", fd_std, shape[0], se_std, acc[0]),
            ("stable", fd_stab, shape[1], se_stab, acc[1]),
        ):
            # the same test points in every run (as in a study): shared per-sample part
            se_i = se + off_se + 0.1 * base + 0.01 * rng.normal(size=N_FAKE)
            dg = rng.uniform(size=N_FAKE) * rho_noise
            if per_seed is not None and variant == "standard":
                se_i, dg = per_seed(s, rng)
            dg_t = torch.tensor(dg, dtype=torch.float64)[None]
            f = fd * (1 + 0.01 * s)
            # paired replicates: the stable model's share half the variance of the standard's
            zz = z if variant == "standard" else 0.5 * z + 0.75**0.5 * z2
            runs[(variant, s)] = {
                "accuracy": a + (off_acc if variant == "standard" else -off_acc),
                "train_seconds": 1.0,
                "se": torch.tensor(se_i, dtype=torch.float64),
                "acn": torch.ones(N_FAKE),
                "sigma": torch.ones(N_FAKE, 10),
                "fd": torch.tensor([f]),
                "fd_shape": torch.tensor([fds]),
                "fd_boot": torch.tensor(f * (1 + boot_sd * zz))[None],
                "fd_shape_boot": torch.tensor(fds * (1 + boot_sd * zz))[None],
                "delta_grad": dg_t,
                "cosine": dg_t,
                "topk": dg_t,
                "agreement": dg_t,
            }
    return StudyResult(cfg, runs)


def _correlated(rhos_true):
    """per_seed callback: Gaussian pairs with correlation rhos_true[seed] (n = N_FAKE)."""

    def make(seed, rng):
        r = rhos_true[seed]
        x = rng.normal(size=N_FAKE)
        y = r * x + np.sqrt(1 - r**2) * rng.normal(size=N_FAKE)
        return x, y

    return make


def test_claims_fd_verdicts_raw_and_unit_norm():
    good = assess_claims(_fake(200.0, 50.0, shape=(1.0, 1.0)))
    assert all(isinstance(c, Claim) for c in good) and len(good) == 6
    assert good[0].verdict == "supported"  # ratio 0.25, CI well below 1
    assert good[0].stats["ci"][0] < good[0].stats["ratio"] < good[0].stats["ci"][1] < 0.5
    assert "0.250" in good[0].evidence
    assert good[1].verdict == "inconclusive"  # unit-norm FD unchanged: CI straddles 1
    assert assess_claims(_fake(200.0, 50.0, shape=(1.0, 0.3)))[1].verdict == "supported"
    # a real but small drop is "mixed"; a rise is "not supported"; noise-level changes inconclusive
    assert assess_claims(_fake(200.0, 160.0))[0].verdict == "mixed"
    assert assess_claims(_fake(200.0, 260.0))[0].verdict == "not supported"
    assert assess_claims(_fake(200.0, 260.0, shape=(1.0, 1.3)))[1].verdict == "not supported"
    assert assess_claims(_fake(200.0, 190.0, boot_sd=0.3))[0].verdict == "inconclusive"


def test_claims_se_verdict_uses_seed_to_seed_spread():
    # SE moves by 0.01 while retraining moves it by 0.05 (sd): little
    c = assess_claims(_fake(200.0, 50.0, se_stab=3.01, se_seed_sd=0.05))[2]
    assert c.verdict == "supported" and c.stats["seed_sd"] == pytest.approx(0.05, rel=0.15)
    # the same change with a tiny seed spread is 10 sd: not "little" (a mutant threshold without
    # the seed spread would not see the difference between these two runs)
    assert assess_claims(_fake(200.0, 50.0, se_stab=3.01, se_seed_sd=0.001))[2].verdict == (
        "not supported"
    )
    c = assess_claims(_fake(200.0, 50.0, se_stab=3.6))[2]
    assert c.verdict == "not supported"
    assert c.stats["ci"][0] < c.stats["delta"] < c.stats["ci"][1]
    assert c.stats["delta"] == pytest.approx(0.6, abs=0.03)


def test_claims_accuracy_verdict_is_a_t_interval_over_seeds():
    from scipy.stats import t as student_t

    c = assess_claims(_fake(200.0, 50.0, acc=(0.95, 0.948)))[3]
    assert c.verdict == "supported"
    d = np.array(c.stats["per_seed"])
    half = student_t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert c.stats["ci"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert assess_claims(_fake(200.0, 50.0, acc=(0.95, 0.90)))[3].verdict == "not supported"
    # a 0.5-point mean drop with seed spread of 1 point: the interval straddles 1 point
    noisy = assess_claims(_fake(200.0, 50.0, acc=(0.95, 0.945), acc_seed_sd=0.005))[3]
    assert noisy.verdict == "inconclusive"


def test_rho_heterogeneity_against_closed_forms():
    from scipy.stats import norm

    from spectral_lab.experiments import rho_heterogeneity

    # equal rhos: Q = 0, p = 1
    h = rho_heterogeneity([0.2, 0.2, 0.2], [400, 400, 400])
    assert h["Q"] == pytest.approx(0.0, abs=1e-12) and h["p"] == pytest.approx(1.0)
    assert h["pooled_rho"] == pytest.approx(0.2)
    # two seeds: Q is the squared two-sample z statistic of Fisher's z, p its two-sided p-value
    r, n = np.array([0.35, 0.1]), np.array([300, 500])
    z = np.arctanh(r)
    zstat = (z[0] - z[1]) / np.sqrt(1.06 / (n[0] - 3) + 1.06 / (n[1] - 3))
    h = rho_heterogeneity(r, n)
    assert h["Q"] == pytest.approx(zstat**2, rel=1e-12)
    assert h["p"] == pytest.approx(2 * norm.sf(abs(zstat)), rel=1e-9)
    # the audit's full-MNIST rhos differ by less than their standard errors: not rejected
    h = rho_heterogeneity([0.273, 0.166, 0.238], [500, 500, 500])
    assert h["p"] > 0.1 and 0.17 < h["pooled_rho"] < 0.27


def test_claims_correlation_verdict_known_both_ways():
    # clearly seed dependent, weak on the whole (pooled rho ~ 0): weak AND seed dependent
    dep = assess_claims(_fake(200.0, 50.0, per_seed=_correlated([0.45, 0.0, -0.35])))[4]
    assert dep.stats["seed_dependent"] and dep.stats["heterogeneity"]["p"] < 1e-6
    assert dep.verdict == "supported" and "seed dependent" in dep.evidence
    # identical per-sample data in every seed: identical rhos, Q = 0 -> consistent, not dependent
    same = _correlated([0.2, 0.2, 0.2])

    def fixed(seed, rng):
        return same(0, np.random.default_rng(5))

    eq = assess_claims(_fake(200.0, 50.0, per_seed=fixed))[4]
    assert not eq.stats["seed_dependent"] and eq.stats["heterogeneity"]["Q"] < 1e-12
    assert eq.verdict == "mixed" and "consistent across seeds" in eq.evidence
    assert all(p < 0.01 for p in eq.stats["p"])  # rho = 0.15 at n = 400 is significant
    # strong and equal: neither weak nor seed dependent
    strong = _correlated([0.8, 0.8, 0.8])
    st = assess_claims(
        _fake(200.0, 50.0, per_seed=lambda s, r: strong(0, np.random.default_rng(5)))
    )
    assert st[4].verdict == "not supported" and not st[4].stats["weak"]


def test_correlation_verdict_mutants_are_caught(monkeypatch):
    """Mutation tests: a wrong standard error, or the old 'range of rho > 0.1' rule, must flip the
    verdict on rhos that differ only by sampling noise (like the full MNIST study's)."""
    from spectral_lab import experiments as ex

    def noisy(seed, rng):  # one true rho, three independent samples
        return _correlated([0.25, 0.25, 0.25])(seed, np.random.default_rng(60 + seed))

    res = _fake(200.0, 50.0, per_seed=noisy)
    right = assess_claims(res)[4]
    assert not right.stats["seed_dependent"]
    rhos = right.stats["rho"]
    assert np.ptp(rhos) > 0.1  # the old rule would call these "varying across seeds"
    # mutant 1: se of Fisher z without the square root (1.06 / (n - 3)): far too small
    monkeypatch.setattr(ex, "_z_se", lambda n: 1.06 / (n - 3))
    assert assess_claims(res)[4].stats["seed_dependent"]
    monkeypatch.undo()
    # mutant 2: the old heuristic in place of the test
    real = ex.rho_heterogeneity

    def range_rule(r, n):
        h = real(r, n)
        return {**h, "p": 0.0 if np.ptp(r) > 0.1 else 1.0}

    monkeypatch.setattr(ex, "rho_heterogeneity", range_rule)
    assert assess_claims(res)[4].verdict != right.verdict


def test_claims_envelope_verdict_known_both_ways():
    def capped(sign):
        def make(seed, rng):
            x = rng.uniform(0, 1, N_FAKE)
            cap = (1 - x) if sign < 0 else x
            return x, rng.uniform(0, 1, N_FAKE) * cap

        return make

    falling = assess_claims(_fake(200.0, 50.0, per_seed=capped(-1)))[5]
    assert falling.verdict == "supported" and falling.stats["ci"][1] < 0
    rising = assess_claims(_fake(200.0, 50.0, per_seed=capped(+1)))[5]
    assert rising.verdict == "not supported" and rising.stats["ci"][0] > 0
    flat = assess_claims(_fake(200.0, 50.0))[5]  # delta_grad independent of SE
    assert flat.verdict == "inconclusive"
    assert flat.stats["ci"][0] <= flat.stats["mean"] <= flat.stats["ci"][1]


def test_study_summary_round_trip(tmp_path):
    from spectral_lab.experiments import (
        format_summary_table,
        load_study_summary,
        save_study_summary,
    )

    res = _fake(200.0, 50.0)
    d = save_study_summary(res, tmp_path / "r.json", "spectral-lab reproduce --dataset x")
    back = load_study_summary(tmp_path / "r.json")
    assert back["command"] == "spectral-lab reproduce --dataset x" and len(back["date"]) == 10
    assert back["table"] == [r for r in res.table() if r["metric"] != "train_seconds"]
    assert [c["verdict"] for c in back["claims"]] == [c.verdict for c in assess_claims(res)]
    assert back["claims"][0]["stats"]["ratio"] == pytest.approx(
        assess_claims(res)[0].stats["ratio"]
    )
    assert back == json.loads(json.dumps(d))
    assert "FD" in format_summary_table(back)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a spectral_lab.study-summary"):
        load_study_summary(tmp_path / "bad.json")


def test_paper_numbers_are_the_spec_ones_with_provenance():
    rep = sl.experiments.PAPER_REPORTED["cifar10"]
    assert rep["standard"] == {"SE": 3.101, "FD": 220.445}
    assert rep["stable"] == {"SE": 3.102, "FD": 51.165}
    assert sl.experiments.PAPER_REPORTED["cifar100"] == {}
    assert "2602.01136" in PAPER_PROVENANCE and "Table 1" in PAPER_PROVENANCE


# --------------------------------------------------------------------------- the CLI
def test_reproduce_without_cifar_says_so_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECTRAL_LAB_DATA", str(tmp_path))
    for name in ("cifar10", "cifar100"):
        code = main(["reproduce", "--dataset", name, "--quick", "--no-cache"])
        out, err = capsys.readouterr()
        assert code == 2
        assert "not available" in err and "no " + name + " numbers are shown" in err
        assert "metric" not in out  # no table was printed


def test_reproduce_on_cifar_format_files(tmp_path, capsys):
    root = _write_cifar(tmp_path / "data", "cifar100")
    code = main(
        [
            "reproduce",
            "--dataset",
            "cifar100",
            "--quick",
            "--root",
            str(root),
            "--no-verify",
            "--cache",
            str(tmp_path / "cache"),
            "--quiet",
            "--n-eval",
            "16",
            "--save",
            str(tmp_path / "summary.json"),
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    assert "FD" in out and "no numbers reported" in out and "supported" in out
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["command"].startswith("spectral-lab reproduce --dataset cifar100")
    assert saved["config"]["dataset"] == "cifar100" and len(saved["claims"]) == 6
    assert all(c["verdict"] in out for c in saved["claims"])


@pytest.mark.skipif(not HAVE_MNIST, reason="real MNIST files not found (set SPECTRAL_LAB_DATA)")
def test_reproduce_mnist_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECTRAL_LAB_DATA", MNIST_ROOT)
    code = main(["reproduce", "--dataset", "mnist", "--quick", "--cache", str(tmp_path), "--quiet"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "dataset=mnist" in out and "Which of the paper's claims" in out
    assert "paper (cifar10, reported" in out  # the reference numbers, labelled as the paper's


# --------------------------------------------------------------------------- the stored full study
STORED = Path(__file__).resolve().parents[1] / "chapters" / "results" / "mnist_full_study.json"


def test_stored_mnist_study_is_the_preset_and_self_consistent():
    from spectral_lab.experiments import load_study_summary

    d = load_study_summary(STORED)
    assert "reproduce --dataset mnist" in d["command"] and d["date"].startswith("20")
    preset = json.loads(json.dumps(dataclasses.asdict(sl.experiments.study_preset("mnist"))))
    assert d["config"] == preset  # the full study, not a quick one
    assert d["runs"]["n"] == 6 and d["runs"]["cached"] == 0  # trained by that command
    rows = {(r["variant"], r["metric"], r["scale"]): r for r in d["table"]}
    fd = d["claims"][0]["stats"]
    sc = fd["scale"]
    want = rows[("stable", "FD", sc)]["mean"] / rows[("standard", "FD", sc)]["mean"]
    assert fd["ratio"] == pytest.approx(want, rel=1e-6)
    assert fd["per_seed"] == pytest.approx(
        np.array(rows[("stable", "FD", sc)]["values"])
        / np.array(rows[("standard", "FD", sc)]["values"]),
        rel=1e-6,
    )
    for r in d["table"]:
        assert r["mean"] == pytest.approx(np.mean(r["values"]), rel=1e-9, abs=1e-12)
    assert json.dumps(d).__len__() < 50_000  # small: no per-sample arrays, no images


def test_stored_mnist_study_is_reproduced_from_its_cache():
    """Where the full study's runs are cached (``$SPECTRAL_LAB_CACHE``), its numbers and verdicts
    are recomputed from them and must equal the stored file."""
    from spectral_lab.experiments import cached_study, load_study_summary, study_summary

    res = cached_study(sl.experiments.study_preset("mnist"))
    if res is None:
        pytest.skip("the full MNIST study is not in the cache (run the command in the JSON)")
    d, now = load_study_summary(STORED), study_summary(res)
    for a, b in zip(d["table"], now["table"]):
        assert a["metric"] == b["metric"] and a["values"] == pytest.approx(b["values"], rel=1e-6)
    assert [c["verdict"] for c in d["claims"]] == [c["verdict"] for c in now["claims"]]
    assert [c["evidence"] for c in d["claims"]] == [c["evidence"] for c in now["claims"]]
