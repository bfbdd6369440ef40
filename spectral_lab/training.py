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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ._checks import check_logits, check_tensor
from ._data import _in_memory, iter_batches
from ._losses import LOSSES, resolve_loss
from ._progress import progress_bar
from ._random import resolve_generator
from ._results import Result
from .models import build_model

ExtraLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@runtime_checkable
class TrainCallback(Protocol):
    """What :func:`train` calls on each of its ``callbacks=`` (e.g. a
    :class:`~spectral_lab.monitor.SpectralMonitor`): ``on_step_end(model, optimizer, step, loss)``
    after every optimiser step (``step`` counts the steps taken, from 1; ``loss`` is that step's
    training loss, a float). Optional methods, called when present: ``on_train_begin(model,
    optimizer)`` once before the first step and ``on_train_end(model, optimizer)`` once after the
    last. The model is in train mode during the calls; a callback that evaluates it restores its
    mode (the library's calls do)."""

    def on_step_end(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, loss: float
    ) -> None: ...


def _check_callbacks(callbacks) -> list:
    callbacks = list(callbacks or ())
    for cb in callbacks:
        if not callable(getattr(cb, "on_step_end", None)):
            raise TypeError(
                f"each of callbacks must have a method on_step_end(model, optimizer, step, loss) "
                f"(spectral_lab.training.TrainCallback), got {type(cb).__name__}; for a plain "
                "function use callback="
            )
    return callbacks


def _notify(callbacks, name: str, *args) -> None:
    for cb in callbacks:
        fn = getattr(cb, name, None)
        if callable(fn):
            fn(*args)


@dataclass(frozen=True)
class History(Result):
    """What happened during :func:`train`: per-step losses and per-epoch summaries (frozen: the
    lists are filled while training runs; ``to_dict()`` gives plain Python)."""

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
    """``(x, y)`` from a tuple, an :class:`~spectral_lab.data.ArrayDataset`, a Dataset or a
    DataLoader (all samples, concatenated), cast to ``dtype`` (inputs; integer inputs become
    ``float32`` when ``dtype`` is None) and moved to ``device``.

    Cost: one pass over ``data`` and a copy of it in memory.

    Example:
        >>> x, y = as_tensors((torch.zeros(3, 2, dtype=torch.uint8), torch.arange(3)))
        >>> x.dtype, y.tolist()
        (torch.float32, [0, 1, 2])
    """
    mem = _in_memory(data)
    if mem is not None and mem[1] is None:
        raise TypeError("as_tensors needs labels: pass (x, y), a Dataset or a DataLoader")
    batches = list(iter_batches(data, None, device=device, dtype=dtype))
    if any(y is None for _, y in batches):
        raise TypeError("as_tensors needs labels: the data yielded inputs without labels")
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def _batches(data, batch_size: int, shuffle: bool, generator: torch.Generator, device, dtype):
    for x, y in iter_batches(
        data, batch_size, device=device, dtype=dtype, shuffle=shuffle, generator=generator
    ):
        if y is None:
            raise ValueError("training needs labels: pass data as (x, y), not inputs alone")
        yield x, y


@torch.no_grad()
def evaluate(
    model: nn.Module, data, *, loss: str = "cross_entropy", batch_size: int = 1024
) -> tuple[float, float]:
    """Mean loss and accuracy (NaN for regression) of ``model`` on ``data``; eval mode inside.

    ``loss="mse"`` is ``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2`` (sum over outputs, mean over
    samples), the loss :func:`train` minimises. Runs on the device and dtype of the model's
    parameters; inputs are cast to them. Cost: one forward pass over ``data``.

    Example:
        >>> lin = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.eye(2))
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> evaluate(lin, (x, torch.tensor([0, 1, 1])))[1]  # two of three right
        0.6666666666666666
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    loss_fn = resolve_loss(loss)
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    g = torch.Generator()
    for x, y in _batches(data, batch_size, False, g, p.device, p.dtype):
        out = check_logits(model(x))
        total += loss_fn(out, y).item() * len(x)
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
    seed: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    callback: Callable[[nn.Module, int, float], None] | None = None,
    callbacks: Sequence[TrainCallback] = (),
) -> History:
    """Train ``model`` in place and return its :class:`History`.

    Args:
        model: the network, trained in place.
        data: ``(x, y)`` tensors, an ``ArrayDataset``, any ``Dataset`` or a ``DataLoader``.
            Runs on the device and dtype of the model's parameters; inputs are cast to them
            (batch by batch).
        epochs: passes over ``data``.
        lr: the learning rate.
        batch_size: samples per optimiser step.
        optimizer: ``"adam"`` or ``"sgd"`` (plain gradient descent when ``batch_size >= n``).
        loss: ``"cross_entropy"`` (integer labels, mean over samples) or ``"mse"``:
            ``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``, **summed over the outputs and averaged over
            the samples** of each batch -- the same loss :func:`~spectral_lab.hessian_eigs`
            differentiates with ``loss="mse"``, so ``2/lambda_max`` compares directly with
            ``lr``. (It is ``C`` times ``0.5 * F.mse_loss``, which averages over outputs too.)
        weight_decay: the optimiser's L2 weight decay.
        extra_loss: ``extra_loss(model, x, y, logits) -> scalar`` added to the loss each step,
            e.g. a spectral regulariser from :mod:`spectral_lab.regularizers`.
        test_data: evaluated after every epoch (``test_loss``, ``test_acc``).
        seed: the batch order (``torch.randperm`` on the CPU) comes from a generator seeded with
            ``seed`` (default 0); with the model's own seeded init the run is reproducible on CPU.
        generator: a generator for the batch order instead of ``seed``.
        progress: show a progress bar.
        callback: ``callback(model, step, loss)`` after every optimiser step.
        callbacks: objects following :class:`TrainCallback` (``on_train_begin``,
            ``on_step_end``, ``on_train_end``), e.g. a
            :class:`~spectral_lab.monitor.SpectralMonitor`.

    Cost: ``epochs * n / batch_size`` forward/backward passes (plus the extra term's cost).

    Example: with ``loss="mse"`` and plain gradient descent on one full batch, one step is
    ``theta <- theta - lr * grad((1/n) sum_i 1/2 ||f(x_i) - y_i||^2)``.

        >>> lin = torch.nn.Linear(1, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.zero_()
        >>> x, y = torch.ones(4, 1), 2 * torch.ones(4, 1)
        >>> hist = train(lin, (x, y), loss="mse", optimizer="sgd", lr=0.5, epochs=1,
        ...              batch_size=4, progress=False)
        >>> lin.weight.item(), hist.step_loss  # grad = -(y - 0) x = -2, loss = 1/2 * 4
        (1.0, [2.0])
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
    loss_fn = resolve_loss(loss)
    opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    opt = opt_cls(model.parameters(), lr=lr, weight_decay=weight_decay)
    callbacks = _check_callbacks(callbacks)
    g = resolve_generator(generator, seed)
    hist = History()
    bar = progress_bar(range(epochs), desc="training", enabled=progress)
    step = 0
    _notify(callbacks, "on_train_begin", model, opt)
    for epoch in bar:
        model.train()
        seen, total, correct = 0, 0.0, 0
        for x, y in _batches(data, batch_size, True, g, device, dtype):
            if step == 0:
                check_tensor(x, "training inputs")
            out = check_logits(model(x))
            value = loss_fn(out, y)
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
            _notify(callbacks, "on_step_end", model, opt, step, value.item())
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
            row["test_loss"], acc = evaluate(model, test_data, loss=loss)
            if loss == "cross_entropy":
                row["test_acc"] = acc
        hist.epochs.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
    _notify(callbacks, "on_train_end", model, opt)
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
    """Save weights plus what is needed to rebuild the model with :func:`build_model`.

    ``name``, ``input_shape``, ``num_classes`` and ``model_kwargs`` are the arguments of
    :func:`~spectral_lab.models.build_model`. Tensors are saved from the model's device; load them
    anywhere with :func:`load_checkpoint`. Names the CLI cannot load are refused: ``name`` and
    the arguments must rebuild a model whose ``state_dict`` fits ``model``'s. Cost: one write of
    the weights (and one model build). Returns the path.

    Example:
        >>> import tempfile
        >>> from spectral_lab.models import build_model
        >>> m = build_model("mlp", (64,), 10, width=8)
        >>> path = save_checkpoint(tempfile.mkdtemp() + "/m.pt", m, name="mlp", input_shape=(64,),
        ...                        num_classes=10, width=8)
        >>> m2, info = load_checkpoint(path)
        >>> all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters())), info["model"]["kwargs"]
        (True, {'width': 8})
    """
    hint = (
        "save_checkpoint is for the library's reference models (mlp, cnn, resmlp, resnet), which "
        "load_checkpoint and `spectral-lab diagnose CKPT` rebuild by name; save any other model's "
        "weights with torch.save(model.state_dict(), 'w.pt') and diagnose it with "
        "`spectral-lab diagnose --model package.module:function --weights w.pt` (or "
        "--model torchvision:NAME)"
    )
    try:
        rebuilt = build_model(name, input_shape, num_classes, **model_kwargs)
    except (ValueError, TypeError) as err:
        raise ValueError(f"save_checkpoint: cannot rebuild name={name!r}: {err}. {hint}") from None
    try:
        rebuilt.load_state_dict(model.state_dict())
    except RuntimeError:
        raise ValueError(
            f"save_checkpoint: the model does not match build_model({name!r}, "
            f"{tuple(input_shape)}, {num_classes}, **{model_kwargs}), so it could not be loaded "
            f"back. {hint}"
        ) from None
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
    ``weights_only=True`` (no arbitrary code runs). Returns ``(model, info)``, the model in eval
    mode on ``map_location`` (default the CPU). Cost: one read of the weights.
    Example: see :func:`save_checkpoint`."""
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
