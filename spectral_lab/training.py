"""A small, seeded, device-agnostic training loop with a notebook-friendly progress bar.

Example:
    >>> from spectral_lab import load_dataset, MLP, train
    >>> ds = load_dataset("digits")
    >>> model = MLP(64, 10, width=32)
    >>> hist = train(model, ds, epochs=1, progress=False)
    >>> len(hist.epochs)
    1
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from ._checks import check_logits, check_tensor
from ._progress import progress_bar
from .models import build_model

ExtraLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES = {"cross_entropy": F.cross_entropy, "mse": lambda out, y: 0.5 * F.mse_loss(out, y)}


@dataclass
class History:
    """What happened during :func:`train`: per-step losses and per-epoch summaries."""

    step_loss: list[float] = field(default_factory=list)
    step_extra: list[float] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)

    def final(self, key: str) -> float:
        """The last epoch's value of ``key`` (e.g. ``"test_acc"``)."""
        return self.epochs[-1][key]

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v:.4g}" for k, v in self.epochs[-1].items()) if self.epochs else ""
        return f"History(steps={len(self.step_loss)}, last epoch: {last})"


def as_tensors(data, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` from a tuple, an :class:`~spectral_lab.data.ArrayDataset` or a small Dataset."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif hasattr(data, "tensors") and callable(data.tensors):
        x, y = data.tensors()
    elif isinstance(data, Dataset):
        items = [data[i] for i in range(len(data))]
        if not items:
            raise ValueError("data is empty; pass at least one sample")
        x = torch.stack([torch.as_tensor(a) for a, _ in items])
        y = torch.stack([torch.as_tensor(b) for _, b in items])
    else:
        raise TypeError(f"cannot read (x, y) from {type(data).__name__}; pass a tuple or a Dataset")
    x = x.to(device=device, dtype=dtype or (x.dtype if x.is_floating_point() else torch.float32))
    return x, y.to(device)


def _batches(data, batch_size: int, shuffle: bool, generator: torch.Generator, device, dtype):
    if isinstance(data, DataLoader):
        for x, y in data:
            yield x.to(device=device, dtype=dtype), y.to(device)
        return
    x, y = as_tensors(data, device, dtype)
    n = len(x)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size].to(x.device)
        yield x[idx], y[idx]


@torch.no_grad()
def evaluate(model: nn.Module, data, loss: str = "cross_entropy", batch_size: int = 1024):
    """Mean loss and accuracy (NaN for regression) of ``model`` on ``data``; eval mode inside."""
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    g = torch.Generator()
    for x, y in _batches(data, batch_size, False, g, p.device, p.dtype):
        out = check_logits(model(x))
        total += LOSSES[loss](out, y).item() * len(x)
        if loss == "cross_entropy":
            correct += (out.argmax(1) == y).sum().item()
        count += len(x)
    model.train(was_training)
    if count == 0:
        raise ValueError("data is empty; pass at least one sample")
    return total / count, (correct / count if loss == "cross_entropy" else float("nan"))


def train(
    model: nn.Module,
    data,
    *,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 128,
    optimizer: str = "adam",
    loss: str = "cross_entropy",
    weight_decay: float = 0.0,
    extra_loss: ExtraLoss | None = None,
    test_data=None,
    seed: int = 0,
    progress: bool = True,
    callback: Callable[[nn.Module, int, float], None] | None = None,
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    Args:
        data: ``(x, y)`` tensors, an ``ArrayDataset``, any ``Dataset`` or a ``DataLoader``; moved
            to the model's device and dtype batch by batch.
        optimizer: ``"adam"`` or ``"sgd"`` (plain gradient descent when ``batch_size >= n``).
        loss: ``"cross_entropy"`` (integer labels) or ``"mse"`` (``1/2 ||f - y||^2`` mean).
        extra_loss: ``extra_loss(model, x, y, logits) -> scalar`` added to the loss each step,
            e.g. a spectral regulariser from :mod:`spectral_lab.regularizers`.
        test_data: evaluated after every epoch (``test_loss``, ``test_acc``).
        seed: seeds the batch order; with the model's own seeded init the run is reproducible
            on CPU.
        callback: ``callback(model, step, loss)`` after every optimiser step.

    Cost: ``epochs * n / batch_size`` forward/backward passes (plus the extra term's cost).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}"
        )
    p = next(model.parameters(), None)
    if p is None:
        raise ValueError("model has no parameters to train")
    device, dtype = p.device, p.dtype
    opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    opt = opt_cls(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    hist = History()
    bar = progress_bar(range(epochs), desc="training", enabled=progress)
    step = 0
    for epoch in bar:
        model.train()
        seen, total, correct = 0, 0.0, 0
        for x, y in _batches(data, batch_size, True, g, device, dtype):
            if step == 0:
                check_tensor(x, "training inputs")
            out = check_logits(model(x))
            value = LOSSES[loss](out, y)
            extra = extra_loss(model, x, y, out) if extra_loss is not None else None
            total_loss = value + extra if extra is not None else value
            if not torch.isfinite(total_loss):
                raise FloatingPointError(
                    f"loss became {total_loss.item()} at step {step}; lower the learning rate "
                    f"(lr={lr}) or the regulariser strength"
                )
            opt.zero_grad(set_to_none=True)
            total_loss.backward()
            opt.step()
            hist.step_loss.append(value.item())
            hist.step_extra.append(extra.item() if extra is not None else 0.0)
            if callback is not None:
                callback(model, step, value.item())
            step += 1
            total += value.item() * len(x)
            seen += len(x)
            if loss == "cross_entropy":
                correct += (out.argmax(1) == y).sum().item()
        if seen == 0:
            raise ValueError("data is empty; pass at least one sample")
        row = {"epoch": epoch + 1, "train_loss": total / seen}
        if loss == "cross_entropy":
            row["train_acc"] = correct / seen
        if test_data is not None:
            row["test_loss"], acc = evaluate(model, test_data, loss)
            if loss == "cross_entropy":
                row["test_acc"] = acc
        hist.epochs.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
    model.eval()
    return hist


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    name: str,
    input_shape,
    num_classes: int,
    dataset: str | None = None,
    **model_kwargs,
) -> Path:
    """Save weights plus what is needed to rebuild the model with :func:`build_model`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": "spectral_lab.checkpoint/1",
            "model": {
                "name": name,
                "input_shape": list(input_shape),
                "num_classes": num_classes,
                "kwargs": model_kwargs,
            },
            "dataset": dataset,
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild a model saved by :func:`save_checkpoint`; weights are loaded with
    ``weights_only=True`` (no arbitrary code runs). Returns ``(model, info)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable spectral_lab checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != "spectral_lab.checkpoint/1":
        raise ValueError(f"{path} was not written by spectral_lab.save_checkpoint")
    spec = ckpt["model"]
    model = build_model(spec["name"], spec["input_shape"], spec["num_classes"], **spec["kwargs"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not match the model it describes: {err}") from err
    return model.eval(), {k: v for k, v in ckpt.items() if k != "state_dict"}
