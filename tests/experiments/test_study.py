"""Running a study: the CIFAR code path, the tidy table, the on-disk cache and its keys, the sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import spectral_lab as sl
from spectral_lab.data import DatasetNotFoundError
from spectral_lab.experiments import paper_table

from ._helpers import _digits_cfg, _write_cifar


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
    # ACN = sigma_1 / median_k sigma_k per sample (NumPy's median: mean of the middle two of 10)
    rec = res.record("stable", 0)
    sig = rec["sigma"].double().numpy()
    np.testing.assert_allclose(rec["acn"].numpy(), sig[:, 0] / np.median(sig, axis=1), rtol=1e-5)
    # the sigmas are those of the model's input Jacobian on the stored images
    model = sl.build_model(cfg.model, (64,), 10, **cfg.model_kwargs)
    model.load_state_dict(rec["state_dict"])
    J = sl.input_jacobian(model.eval().double(), rec["images"].double())
    k = len(rec["images"])
    np.testing.assert_allclose(np.linalg.svd(J.numpy(), compute_uv=False), sig[:k], rtol=1e-4)
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
