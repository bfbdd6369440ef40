"""A PyTorch Lightning ``Callback`` over a :class:`~spectral_lab.monitor.SpectralMonitor`.

    >>> from spectral_lab.monitor import SpectralMonitor, LightningMonitor  # doctest: +SKIP
    >>> trainer = lightning.Trainer(callbacks=[LightningMonitor(SpectralMonitor(probe))])  # doctest: +SKIP

It measures the starting point when training starts (step 0) and then after every optimiser
step whose global step is a multiple of ``every`` (``trainer.global_step``: optimiser steps, so
gradient accumulation counts once), on the ``LightningModule`` itself (its ``forward`` must give
the logits), with the first optimiser's ``lr`` and state; each record's numbers are also logged
through ``pl_module.log_dict`` under ``spectral/<key>`` (``log=False`` turns that off).
Lightning is an optional package (``pip install "spectral_lab[lightning]"``).
"""

from __future__ import annotations

import math

import torch

from .._extras import require
from .core import SpectralMonitor

_pl = require("lightning.pytorch", "spectral_lab.monitor.LightningMonitor")

__all__ = ["LightningMonitor"]


def _loss_of(outputs) -> float | None:
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    if isinstance(outputs, torch.Tensor) and outputs.numel() == 1:
        return float(outputs.detach())
    return None


class LightningMonitor(_pl.Callback):
    """Drive ``monitor`` from a Lightning ``Trainer`` (see the module docstring).

    Args:
        monitor: the :class:`~spectral_lab.monitor.SpectralMonitor` that measures and keeps the
            history.
        log: also log each record's numbers through ``pl_module.log_dict`` (``spectral/<key>``).
    """

    def __init__(self, monitor: SpectralMonitor, log: bool = True) -> None:
        if not isinstance(monitor, SpectralMonitor):
            raise TypeError(
                f"monitor must be a SpectralMonitor, got {type(monitor).__name__}: "
                "LightningMonitor(SpectralMonitor(probe, ...))"
            )
        super().__init__()
        self.monitor, self.log = monitor, log

    @staticmethod
    def _optimizer(trainer):
        opts = trainer.optimizers
        return opts[0] if opts else None

    def _log(self, pl_module, rec: dict | None) -> None:
        if not self.log or rec is None:
            return
        values = {f"spectral/{k}": float(v) for k, v in rec.items()
                  if k != "step" and isinstance(v, (int, float, bool)) and math.isfinite(float(v))}  # fmt: skip
        pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=len(self.monitor.x))

    def on_train_start(self, trainer, pl_module) -> None:
        """Measure the starting point (the trainer's global step, 0 for a fresh run)."""
        mon = self.monitor
        if not mon.history or mon.history[-1]["step"] != trainer.global_step:
            with torch.enable_grad(), torch.inference_mode(False):
                mon.measure(pl_module, self._optimizer(trainer), step=trainer.global_step)
            mon.count = trainer.global_step + 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """After a batch: :meth:`SpectralMonitor.step` at the trainer's global step."""
        with torch.enable_grad(), torch.inference_mode(False):
            rec = self.monitor.step(
                pl_module, self._optimizer(trainer), loss=_loss_of(outputs),
                step=trainer.global_step,
            )  # fmt: skip
        self._log(pl_module, rec)
