"""The one data iterator: every ``data`` argument goes through :func:`iter_batches`.

Accepted: a tensor of inputs (labels ``None``), an ``(x, y)`` pair of tensors, an
:class:`~spectral_lab.data.ArrayDataset`, any ``torch.utils.data.Dataset`` of ``(x, y)`` items, a
``DataLoader``, or any other iterable of ``(x, y)`` batches. Batches are cast to ``dtype`` (inputs
always; labels when floating point) and moved to ``device``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ._checks import check_input_dtype

Batch = tuple[torch.Tensor, "torch.Tensor | None"]

DataLike = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | Dataset | DataLoader | Iterable[Batch]
"""What a ``data`` argument accepts: a tensor of inputs, an ``(x, y)`` pair, a ``Dataset`` (an
:class:`~spectral_lab.data.ArrayDataset` or any other), a ``DataLoader`` or an iterable of
``(x, y)`` batches; all are streamed by :func:`iter_batches`."""

_KINDS = "a tensor of inputs, an (x, y) pair of tensors, a Dataset, a DataLoader or an iterable of (x, y) batches"


def _in_memory(data) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """``(x, y)`` when ``data`` is held in memory as tensors, else ``None``."""
    if isinstance(data, torch.Tensor):
        return data, None
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        y = torch.as_tensor(y)
        if len(x) != len(y):
            raise ValueError(f"data: x and y differ in length ({len(x)} vs {len(y)})")
        return x, y
    if hasattr(data, "tensors") and callable(data.tensors) and isinstance(data, Dataset):
        return data.tensors()
    return None


def _move(x, y, device, dtype, keep_integer_inputs: bool = False, model=None) -> Batch:
    x = torch.as_tensor(x)
    if x.numel() == 0 or len(x) == 0:
        raise ValueError("data contains an empty batch; pass at least one sample")
    if model is not None:  # the one dtype policy: token ids kept, other integer inputs refused
        keep_integer_inputs = check_input_dtype(x, model)
    if not x.is_floating_point() and keep_integer_inputs:
        x = x.to(device=device)
    else:
        if not x.is_floating_point():
            x = x.float() if dtype is None else x
        x = x.to(device=device, dtype=dtype)
    if y is not None:
        y = torch.as_tensor(y)
        if len(y) != len(x):
            raise ValueError(f"a batch has {len(x)} inputs but {len(y)} labels")
        y = (
            y.to(device=device, dtype=dtype)
            if (y.is_floating_point() and dtype is not None)
            else y.to(device)
        )
    return x, y


def iter_batches(
    data,
    batch_size: int | None = 256,
    max_samples: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    keep_integer_inputs: bool = False,
    model: nn.Module | None = None,
) -> Iterator[Batch]:
    """Stream ``(x, y)`` batches (``y`` is ``None`` for a bare tensor) from any accepted ``data``.

    Args:
        data: a tensor of inputs, an ``(x, y)`` pair, an ``ArrayDataset``, any ``Dataset``, a
            ``DataLoader`` or an iterable of ``(x, y)`` batches.
        batch_size: samples per batch for in-memory data and Datasets (``None``: all at once); a
            DataLoader or an iterable of batches keeps its own batching.
        max_samples: stop after this many samples (the last batch is cut).
        device: where the batches go.
        dtype: inputs are cast to it (integer inputs become ``float32`` when ``dtype`` is
            ``None``), floating-point labels too; integer labels keep their dtype.
        shuffle: a random order (``torch.randperm``) for in-memory data and Datasets.
        generator: the source of that order.
        keep_integer_inputs: leave integer inputs (token ids, uint8 images) as they are, so the
            caller can apply the one dtype policy (:func:`spectral_lab._checks.check_input_dtype`).
        model: apply that policy here, batch by batch: token ids (int32/int64 into a model with an
            ``nn.Embedding``) are kept, other integer/bool inputs (uint8 images) are refused with
            the library's one message; floating-point inputs are cast as usual.

    Example:
        >>> x, y = torch.arange(10.0)[:, None], torch.arange(10)
        >>> [len(b) for b, _ in iter_batches((x, y), batch_size=4, max_samples=9)]
        [4, 4, 1]
    """
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    cap = math.inf if max_samples is None else max_samples
    mem = _in_memory(data)
    if mem is not None:
        x, y = mem
        n = len(x)
        if n == 0:
            raise ValueError("data is empty; pass at least one sample")
        if shuffle:
            order = torch.randperm(n, generator=generator)
        bs = n if batch_size is None else batch_size

        def source():
            for i in range(0, n, bs):
                if shuffle:
                    idx = order[i : i + bs].to(x.device)
                    yield x[idx], (None if y is None else y[idx.to(y.device)])
                else:
                    yield x[i : i + bs], (None if y is None else y[i : i + bs])

        items: Iterable = source()
    elif isinstance(data, DataLoader):
        items = data
    elif isinstance(data, Dataset):
        bs = len(data) if batch_size is None else batch_size  # type: ignore[arg-type]
        items = DataLoader(data, batch_size=max(bs, 1), shuffle=shuffle, generator=generator)
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes, dict)):
        items = data
    else:
        raise TypeError(f"data must be {_KINDS}; got {type(data).__name__}")
    seen = 0
    for item in items:
        if seen >= cap:
            break
        if isinstance(item, (tuple, list)) and len(item) in (1, 2):
            xb, yb = (item[0], item[1]) if len(item) == 2 else (item[0], None)
        elif isinstance(item, torch.Tensor):
            xb, yb = item, None
        else:
            raise TypeError(f"data must be {_KINDS}; a batch was a {type(item).__name__}")
        take = int(min(len(xb), cap - seen))
        seen += take
        yield _move(
            xb[:take], None if yb is None else yb[:take], device, dtype, keep_integer_inputs, model
        )
    if seen == 0:
        raise ValueError("data yielded no samples (an empty DataLoader?); pass some data")


class Batches:
    """A re-iterable view of ``data`` (each ``iter`` streams it again through :func:`iter_batches`);
    used by functions that pass over the data many times (one Hessian-vector product each)."""

    def __init__(self, data, batch_size: int | None = None, **kwargs) -> None:
        self.data, self.batch_size, self.kwargs = data, batch_size, kwargs
        self._n: int | None = None

    def __iter__(self) -> Iterator[Batch]:
        return iter_batches(self.data, self.batch_size, **self.kwargs)

    def num_samples(self) -> int:
        """Total number of samples streamed (one pass, cached)."""
        if self._n is None:
            self._n = sum(len(x) for x, _ in self)
        return self._n
