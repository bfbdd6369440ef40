"""Shared pieces of the experiments tests: CIFAR-format files, a tiny digits study, fake study
results with known statistics, the stored MNIST study."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

import spectral_lab as sl
from spectral_lab.experiments import StudyResult

MNIST_ROOT = os.environ.get("SPECTRAL_LAB_DATA", "/work/shared/data")
HAVE_MNIST = (Path(MNIST_ROOT) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()

STORED = Path(__file__).resolve().parents[2] / "chapters" / "results" / "mnist_full_study.json"


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
