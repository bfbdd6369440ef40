"""The study runner, its cache, the claims verdicts, the CIFAR code path and `reproduce`."""

from __future__ import annotations

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
    entropy_instability_relation,
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
    cfg = sl.study_preset("cifar10", quick=True).replace(
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
    return sl.StudyConfig(
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
    sweep = sl.strength_sweep(cfg, [0.05, 0.2], cache_dir=tmp_path, progress=False)
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
def _fake(fd_std, fd_stab, se_std=3.0, se_stab=3.0, acc=(0.95, 0.948), rho_noise=1.0):
    """A StudyResult with hand-made records, to check the verdict logic exactly."""
    cfg = sl.StudyConfig(seeds=(0, 1, 2), scales=(0.1,))
    rng = np.random.default_rng(0)
    runs = {}
    for s in cfg.seeds:
        for variant, fd, se, a in (
            ("standard", fd_std, se_std, acc[0]),
            ("stable", fd_stab, se_stab, acc[1]),
        ):
            se_i = torch.tensor(se + 0.1 * rng.normal(size=200), dtype=torch.float32)
            dg = torch.tensor(rng.uniform(size=(1, 200)) * rho_noise, dtype=torch.float32)
            runs[(variant, s)] = {
                "accuracy": a,
                "train_seconds": 1.0,
                "se": se_i,
                "acn": torch.ones(200),
                "sigma": torch.ones(200, 10),
                "fd": torch.tensor([fd * (1 + 0.01 * s)]),
                "fd_shape": torch.tensor([fd]),
                "delta_grad": dg,
                "cosine": dg,
                "topk": dg,
                "agreement": dg,
            }
    return StudyResult(cfg, runs)


def test_claims_verdicts_follow_the_numbers():
    good = assess_claims(_fake(200.0, 50.0))
    assert all(isinstance(c, Claim) for c in good) and len(good) == 6
    assert good[0].verdict == "supported"  # FD ratio 0.25
    assert good[1].verdict == "mixed"  # FD_shape drops (0.25) but delta_grad does not
    assert good[2].verdict == "supported"  # SE unchanged
    assert good[3].verdict == "supported"  # 0.2 point accuracy drop
    assert "0.25" in good[0].evidence
    assert assess_claims(_fake(200.0, 160.0))[0].verdict == "mixed"
    assert assess_claims(_fake(200.0, 260.0))[0].verdict == "not supported"
    assert assess_claims(_fake(200.0, 260.0))[1].verdict == "not supported"
    assert assess_claims(_fake(200.0, 50.0, se_stab=3.6))[2].verdict == "not supported"
    assert assess_claims(_fake(200.0, 50.0, acc=(0.95, 0.90)))[3].verdict == "not supported"
    rel = entropy_instability_relation(_fake(200.0, 50.0))
    assert len(rel["rho"]) == 3 and all(abs(r) < 0.3 for r in rel["rho"])


def test_paper_numbers_are_the_spec_ones_with_provenance():
    rep = sl.PAPER_REPORTED["cifar10"]
    assert rep["standard"] == {"SE": 3.101, "FD": 220.445}
    assert rep["stable"] == {"SE": 3.102, "FD": 51.165}
    assert sl.PAPER_REPORTED["cifar100"] == {}
    assert "2602.01136" in PAPER_PROVENANCE and "8.2a" in PAPER_PROVENANCE


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
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    assert "FD" in out and "no numbers reported" in out and "supported" in out


@pytest.mark.skipif(not HAVE_MNIST, reason="real MNIST files not found (set SPECTRAL_LAB_DATA)")
def test_reproduce_mnist_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECTRAL_LAB_DATA", MNIST_ROOT)
    code = main(["reproduce", "--dataset", "mnist", "--quick", "--cache", str(tmp_path), "--quiet"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "dataset=mnist" in out and "Which of the paper's claims" in out
    assert "paper (cifar10, reported" in out  # the reference numbers, labelled as the paper's
