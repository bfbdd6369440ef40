"""Data loading: synthetic sets, bundled digits, and the real torchvision code paths on files in
MNIST's and CIFAR's own formats (and on the real MNIST when SPECTRAL_LAB_DATA has it)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import spectral_lab as sl
from spectral_lab.data import DatasetNotFoundError, default_cache_dir, resolve_root, where_is
from spectral_lab.fakedata import write_fake_cifar, write_fake_mnist


@pytest.mark.parametrize("name", ["teacher", "teacher_regression", "gaussian_mixture"])
def test_synthetic_sets_are_seeded_and_split(name):
    a = sl.load_dataset(name, seed=3)
    b = sl.load_dataset(name, seed=3)
    c = sl.load_dataset(name, "test", seed=3)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert a.x.dtype == torch.float32 and torch.isfinite(a.x).all()


def test_teacher_labels_come_from_the_teacher():
    train = sl.load_dataset("teacher", num_samples=2000, dim=8)
    test = sl.load_dataset("teacher", "test", num_samples=2000, dim=8)
    model = sl.MLP(8, 4, width=64, depth=2)
    sl.train(model, train, epochs=30, lr=3e-3, progress=False)
    assert sl.evaluate(model, test)[1] > 0.8  # learnable, so labels are a function of x


def test_digits_is_the_bundled_sklearn_set():
    from sklearn.datasets import load_digits

    train, test = sl.load_dataset("digits"), sl.load_dataset("digits", "test")
    assert len(train) + len(test) == 1797
    assert train.input_shape == (1, 8, 8) and train.num_classes == 10
    ref = load_digits()
    x, _ = train.tensors()
    # every training image is one of sklearn's, scaled to [0, 1]
    flat = torch.tensor(ref.data, dtype=torch.float32) / 16
    d = torch.cdist(x.flatten(1), flat).min(1).values
    assert d.max() < 1e-6 and 0.0 <= x.min() and x.max() <= 1.0


def test_subset_is_seeded():
    ds = sl.load_dataset("digits")
    a, b = ds.subset(50, seed=1), ds.subset(50, seed=1)
    assert len(a) == 50 and torch.equal(a.x, b.x)
    assert len(sl.load_dataset("digits", n=10)) == 10


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        sl.load_dataset("imagenet")
    with pytest.raises(ValueError, match="split must be"):
        sl.load_dataset("digits", split="validation")


def test_missing_root_says_where_it_looked(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match="does not exist") as err:
        sl.load_dataset("mnist", root=missing)
    assert str(missing) in str(err.value)


def test_missing_files_say_where_and_how_to_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        sl.load_dataset("mnist", root=tmp_path)
    msg = str(err.value)
    assert "MNIST" in msg and str(tmp_path) in msg and "SPECTRAL_LAB_DATA" in msg


def test_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECTRAL_LAB_DATA", str(tmp_path))
    assert resolve_root() == tmp_path
    other = tmp_path / "explicit"
    other.mkdir()
    assert resolve_root(other) == other
    monkeypatch.delenv("SPECTRAL_LAB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_root() == default_cache_dir() == tmp_path / "cache" / "spectral_lab" / "data"


def test_mnist_loader_on_idx_files(tmp_path):
    write_fake_mnist(tmp_path, num_train=12, num_test=7)
    train = sl.load_dataset("mnist", root=tmp_path)
    test = sl.load_dataset("mnist", "test", root=tmp_path)
    assert (len(train), len(test)) == (12, 7)
    assert train.x.dtype == torch.uint8 and train.input_shape == (1, 28, 28)
    x, y = test.tensors()
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y.dtype == torch.int64
    assert where_is("mnist", tmp_path)["found"]


def test_corrupt_mnist_gives_clear_error(tmp_path):
    raw = write_fake_mnist(tmp_path, num_train=5, num_test=5)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"garbage")
    with pytest.raises(DatasetNotFoundError, match="corrupt"):
        sl.load_dataset("mnist", "test", root=tmp_path)


@pytest.mark.parametrize("which,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_loader_on_pickle_files(tmp_path, which, classes):
    write_fake_cifar(tmp_path, which, num_per_batch=6)
    ds = sl.load_dataset(which, "train", root=tmp_path, verify=False)
    test = sl.load_dataset(which, "test", root=tmp_path, verify=False)
    n_train = 30 if which == "cifar10" else 6
    assert (len(ds), len(test)) == (n_train, 6)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == classes
    # channel-major rows (R plane, G plane, B plane) must come out as (3, 32, 32) images
    import pickle

    folder = tmp_path / ("cifar-10-batches-py" if which == "cifar10" else "cifar-100-python")
    with open(folder / ("test_batch" if which == "cifar10" else "test"), "rb") as f:
        raw = pickle.load(f)["data"]
    assert np.array_equal(test.x.numpy().reshape(6, -1), raw)


def test_cifar_md5_check_is_on_by_default(tmp_path):
    write_fake_cifar(tmp_path, "cifar10", num_per_batch=2)
    with pytest.raises(DatasetNotFoundError, match="MD5 checked; verify=False"):
        sl.load_dataset("cifar10", root=tmp_path)


def test_model_output_must_be_logits():
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x).unsqueeze(-1)

    with pytest.raises(ValueError, match="2-D"):
        sl.train(Bad(), (torch.randn(8, 4), torch.zeros(8, dtype=torch.long)), progress=False)


REAL = os.environ.get("SPECTRAL_LAB_DATA")


@pytest.mark.skipif(
    not (REAL and (Path(REAL) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists()),
    reason="real MNIST not found under SPECTRAL_LAB_DATA",
)
def test_real_mnist():
    test = sl.load_dataset("mnist", "test")
    assert len(test) == 10000 and int(test.y[0]) == 7
    counts = torch.bincount(test.y, minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
