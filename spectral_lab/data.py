"""Datasets for the course: synthetic sets, the bundled digits, and MNIST / CIFAR via torchvision.

One entry point, :func:`load_dataset`. Every data set comes back as an :class:`ArrayDataset`
(inputs in ``[0, 1]`` pixel units for images, labels as ``int64``), so chapters and the library
can take the whole tensor at once (``ds.tensors()``) instead of looping over samples.

Where files are looked for (first match wins)::

    root argument  >  $SPECTRAL_LAB_DATA  >  ~/.cache/spectral_lab/data  ($XDG_CACHE_HOME honoured)

Nothing is downloaded unless ``download=True``.

Example:
    >>> ds = load_dataset("digits", split="test")
    >>> len(ds), ds.input_shape, ds.num_classes
    (360, (1, 8, 8), 10)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._extras import require

SYNTHETIC = ("teacher", "teacher_regression", "gaussian_mixture")
BUNDLED = ("digits",)
TORCHVISION = ("mnist", "cifar10", "cifar100")
DATASETS = SYNTHETIC + BUNDLED + TORCHVISION
SPLITS = ("train", "test")
_FOLDER = {"mnist": "MNIST/raw", "cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are missing or corrupt under the resolved data root; the message says
    where it looked and how to fix it. A ``FileNotFoundError``, so ``except FileNotFoundError``
    catches it too."""


class ArrayDataset(Dataset):
    """Inputs and labels held as two tensors; images may be stored as ``uint8`` to save memory.

    ``x`` is returned as ``x.float() * scale`` (``scale = 1/255`` for 8-bit images), ``y`` as-is.
    Tensors stay on the CPU; the library's functions cast and move each batch to the model's
    device and dtype. Indexing costs one sample; ``tensors()`` one pass.

    Example:
        >>> ds = ArrayDataset(torch.full((4, 2), 255, dtype=torch.uint8), torch.arange(4),
        ...                   num_classes=4, name="toy", scale=1 / 255)
        >>> ds[0][0].tolist(), ds.tensors(2)[1].tolist(), len(ds.subset(3))
        ([1.0, 1.0], [0, 1], 3)
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        num_classes: int | None,
        name: str,
        scale: float = 1.0,
        classes: list[str] | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        self.x, self.y, self.scale = x, y, scale
        self.num_classes, self.name = num_classes, name
        self.classes = classes or ([str(c) for c in range(num_classes)] if num_classes else None)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self._inputs(self.x[i]), self.y[i]

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale if self.scale != 1.0 or not x.is_floating_point() else x

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def tensors(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` samples (all by default) as ``(inputs, labels)``."""
        sl = slice(None) if n is None else slice(0, n)
        return self._inputs(self.x[sl]), self.y[sl]

    def subset(self, n: int, seed: int = 0) -> ArrayDataset:
        """A seeded random subset of ``n`` samples (all of them if ``n >= len(self)``)."""
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[: min(n, len(self))]
        return ArrayDataset(
            self.x[idx],
            self.y[idx],
            num_classes=self.num_classes,
            name=self.name,
            scale=self.scale,
            classes=self.classes,
        )

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(name={self.name!r}, n={len(self)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )


def default_cache_dir() -> Path:
    """The per-user cache folder ``$XDG_CACHE_HOME/spectral_lab/data`` (default
    ``~/.cache/spectral_lab/data``), the last place :func:`resolve_root` looks.

    Example:
        >>> default_cache_dir().parts[-2:]
        ('spectral_lab', 'data')
    """
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spectral_lab" / "data"


def resolve_root(root: str | os.PathLike | None = None, *, create: bool = False) -> Path:
    """The data root: ``root`` argument, else ``$SPECTRAL_LAB_DATA``, else the per-user cache.

    An explicit root (argument or environment) must exist; the cache folder is created when
    ``create=True`` (i.e. when downloading). Raises :class:`DatasetNotFoundError` for a missing
    explicit root.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> resolve_root(d) == Path(d)
        True
    """
    if root is not None:
        source = "the root argument"
    elif os.environ.get("SPECTRAL_LAB_DATA"):
        root, source = os.environ["SPECTRAL_LAB_DATA"], "$SPECTRAL_LAB_DATA"
    else:
        path = default_cache_dir()
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(root).expanduser()
    if not path.is_dir():
        if create:
            path.mkdir(parents=True, exist_ok=True)
        else:
            raise DatasetNotFoundError(
                f"data root {str(path)!r} (from {source}) does not exist; create it, point "
                "SPECTRAL_LAB_DATA at the folder that holds MNIST/ or cifar-10-batches-py/, "
                "or pass download=True"
            )
    return path


def where_is(name: str, root: str | os.PathLike | None = None) -> dict[str, object]:
    """Where ``name``'s files would be looked for, and whether they are there (for ``info``).

    Example:
        >>> where_is("digits")
        {'name': 'digits', 'path': '(built in)', 'found': True}
    """
    name = _check_name(name)
    if name not in TORCHVISION:
        return {"name": name, "path": "(built in)", "found": True}
    try:
        base = resolve_root(root)
    except DatasetNotFoundError as err:
        return {"name": name, "path": str(err), "found": False}
    path = base / _FOLDER[name]
    return {"name": name, "path": str(path), "found": path.is_dir() and any(path.iterdir())}


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    download: bool = False,
    *,
    verify: bool = True,
    seed: int = 0,
    n: int | None = None,
    **kwargs,
) -> ArrayDataset:
    """Load a data set by name as an :class:`ArrayDataset`.

    Args:
        name: one of ``teacher``, ``teacher_regression``, ``gaussian_mixture`` (synthetic, seeded),
            ``digits`` (scikit-learn's bundled 8x8 digits; the offline default), ``mnist``,
            ``cifar10``, ``cifar100`` (torchvision, from the data root).
        split: ``"train"`` or ``"test"``.
        root: data root for torchvision sets (see module docstring for the fallback order).
        download: let torchvision download missing files (needs the internet).
        verify: check torchvision's MD5 sums of CIFAR files; ``False`` accepts re-packed copies
            in CIFAR's pickle format (the tests use this with small files).
        seed: seed of the synthetic sets and of the digits train/test split.
        n: keep a seeded random subset of ``n`` samples.
        **kwargs: size options of the synthetic sets (``num_samples``, ``dim``, ``num_classes``,
            ``noise``).

    Cost: synthetic and digits are instant; MNIST reads ~55 MB, CIFAR ~180 MB. The tensors live on
    the CPU (images as ``uint8`` scaled to ``[0, 1]`` float32 on access, labels ``int64``); every
    library function casts and moves the batches it reads to the model's device and dtype.

    Example:
        >>> ds = load_dataset("teacher", num_samples=64, dim=5, num_classes=3)
        >>> len(ds), ds.input_shape, ds.num_classes
        (64, (5,), 3)
    """
    name = _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if name in SYNTHETIC:
        ds = _synthetic(name, split, seed=seed, **kwargs)
    elif name == "digits":
        ds = _digits(split, seed=seed)
    else:
        if kwargs:
            raise TypeError(f"unexpected options for {name}: {sorted(kwargs)}")
        ds = _torchvision(name, split, root, download, verify)
    return ds.subset(n, seed=seed) if n is not None else ds


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name.lower()


# --------------------------------------------------------------------------- synthetic sets
def _synthetic(
    name: str,
    split: str,
    *,
    seed: int = 0,
    num_samples: int = 512,
    dim: int | None = None,
    num_classes: int | None = None,
    noise: float = 0.0,
) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    offset = 0 if split == "train" else 1  # same teacher / means, fresh samples for the test split
    if name == "gaussian_mixture":
        dim, num_classes = dim or 2, num_classes or 3
        means = 3.0 * torch.randn(num_classes, dim, generator=g)
        gs = torch.Generator().manual_seed(seed + 1000 * (offset + 1))
        y = torch.randint(num_classes, (num_samples,), generator=gs)
        x = means[y] + torch.randn(num_samples, dim, generator=gs)
        return ArrayDataset(x, y, num_classes=num_classes, name=name)
    dim = dim or 16
    hidden = 32
    w1 = torch.randn(hidden, dim, generator=g) / dim**0.5
    out = 1 if name == "teacher_regression" else (num_classes or 4)
    w2 = torch.randn(out, hidden, generator=g) / hidden**0.5
    gs = torch.Generator().manual_seed(seed + 1000 * (offset + 1))
    x = torch.randn(num_samples, dim, generator=gs)
    f = torch.tanh(x @ w1.T) @ w2.T
    if name == "teacher_regression":
        y = f + noise * torch.randn(f.shape, generator=gs)
        return ArrayDataset(x, y, num_classes=None, name=name)
    f = f + noise * torch.randn(f.shape, generator=gs)
    return ArrayDataset(x, f.argmax(1), num_classes=out, name=name)


# --------------------------------------------------------------------------- digits (bundled)
def _digits(split: str, seed: int = 0) -> ArrayDataset:
    bunch = require("sklearn.datasets", "load_dataset('digits')").load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = 360
    idx = perm[n_test:] if split == "train" else perm[:n_test]
    return ArrayDataset(x[idx], y[idx], num_classes=10, name="digits")


# --------------------------------------------------------------------------- torchvision sets
def _torchvision(name: str, split: str, root, download: bool, verify: bool) -> ArrayDataset:
    torchvision = require("torchvision", f"load_dataset({name!r})")

    base = resolve_root(root, create=download)
    train = split == "train"
    cls = {
        "mnist": torchvision.datasets.MNIST,
        "cifar10": torchvision.datasets.CIFAR10,
        "cifar100": torchvision.datasets.CIFAR100,
    }[name]
    if name != "mnist" and not verify:
        cls = _without_checksums(cls)
    folder = base / _FOLDER[name]
    try:
        tv = cls(root=str(base), train=train, download=download)
    except Exception as err:  # torchvision raises RuntimeError, OSError, pickle and IDX errors
        raise DatasetNotFoundError(_not_found_message(name, folder, download, verify, err)) from err
    if name == "mnist":
        x = tv.data.unsqueeze(1).contiguous()  # uint8 (N, 1, 28, 28)
        y = tv.targets.long()
    else:
        x = torch.from_numpy(np.ascontiguousarray(tv.data)).permute(0, 3, 1, 2).contiguous()
        y = torch.tensor(tv.targets, dtype=torch.int64)
    if x.dtype != torch.uint8 or len(x) == 0:
        raise DatasetNotFoundError(
            f"{name} files under {folder} hold no 8-bit images; they look corrupt"
        )
    return ArrayDataset(
        x, y, num_classes=len(tv.classes), name=name, scale=1 / 255, classes=list(tv.classes)
    )


def _without_checksums(cls):
    """The same torchvision class with every MD5 set to ``None`` (torchvision then only checks
    that the files exist), so re-packed copies in CIFAR's format load through the real code."""
    return type(
        cls.__name__ + "Unverified",
        (cls,),
        {
            "train_list": [[name, None] for name, _ in cls.train_list],
            "test_list": [[name, None] for name, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
        },
    )


def _not_found_message(
    name: str, folder: Path, download: bool, verify: bool, err: Exception
) -> str:
    expected = {
        "mnist": "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        "t10k-labels-idx1-ubyte (uncompressed)",
        "cifar10": "data_batch_1..5, test_batch, batches.meta (the python version)",
        "cifar100": "train, test, meta (the python version)",
    }[name]
    fix = (
        "check your internet connection or place the files there by hand"
        if download
        else "put the files there, point SPECTRAL_LAB_DATA (or root=) at their parent folder, "
        "or pass download=True where the internet is reachable"
    )
    state = "missing" if not folder.exists() else "incomplete or corrupt"
    hint = (
        " (MD5 checked; verify=False accepts re-packed copies)"
        if name != "mnist" and verify
        else ""
    )
    return (
        f"{name} {state} under {folder}{hint}: expected {expected}. {fix}. "
        f"[torchvision said: {type(err).__name__}: {err}]"
    )
