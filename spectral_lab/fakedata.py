"""Write small data sets in MNIST's and CIFAR's own on-disk formats.

Useful to exercise the real torchvision loading path without the real files (the test suite does
this on every run) and to try a pipeline offline. The images are random; only the formats are real.

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> _ = write_fake_mnist(root, num_train=20, num_test=10)
    >>> load_dataset("mnist", "test", root=root).x.shape
    torch.Size([10, 1, 28, 28])
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import numpy as np

from .data import load_dataset  # noqa: F401  (used in the docstring example)


def _idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_fake_mnist(
    root: str | os.PathLike, num_train: int = 64, num_test: int = 32, seed: int = 0
) -> Path:
    """Write ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uncompressed IDX):
    ``num_train`` and ``num_test`` random 28x28 uint8 images with labels 0-9, drawn with NumPy
    from ``seed``. Cost: ``784 (num_train + num_test)`` bytes written. Returns the ``raw`` folder.
    Example: see the module docstring."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", num_train), ("t10k", num_test)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return raw


def write_fake_cifar(
    root: str | os.PathLike, which: str = "cifar10", num_per_batch: int = 20, seed: int = 0
) -> Path:
    """Write CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) pickles.

    The files have the real names, keys and layouts (``data``: uint8 ``(n, 3072)`` rows in
    channel-major order; ``labels`` / ``fine_labels``; a meta file), but not the real MD5 sums:
    load them with ``load_dataset(..., verify=False)``. Each batch file holds ``num_per_batch``
    random images (NumPy, from ``seed``). Cost: ``3072 num_per_batch`` bytes per file. Returns the
    folder.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> _ = write_fake_cifar(root, "cifar10", num_per_batch=4)
        >>> load_dataset("cifar10", "train", root=root, verify=False).x.shape
        torch.Size([20, 3, 32, 32])
    """
    rng = np.random.default_rng(seed)
    if which == "cifar10":
        folder = Path(root) / "cifar-10-batches-py"
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        meta_name, meta = "batches.meta", {"label_names": [f"class{i}" for i in range(10)]}
        label_key, classes = "labels", 10
    elif which == "cifar100":
        folder = Path(root) / "cifar-100-python"
        files = ["train", "test"]
        meta_name, meta = "meta", {"fine_label_names": [f"class{i}" for i in range(100)]}
        label_key, classes = "fine_labels", 100
    else:
        raise ValueError(f"which must be 'cifar10' or 'cifar100', got {which!r}")
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        batch = {
            "data": rng.integers(0, 256, (num_per_batch, 3072), dtype=np.uint8),
            label_key: rng.integers(0, classes, num_per_batch).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / meta_name, "wb") as f:
        pickle.dump(meta, f)
    return folder
