"""A Hugging Face ``transformers.TrainerCallback`` over a
:class:`~spectral_lab.monitor.SpectralMonitor`.

    >>> from spectral_lab.monitor import SpectralMonitor, HFMonitor  # doctest: +SKIP
    >>> trainer = transformers.Trainer(model, args, train_dataset=ds,
    ...                                callbacks=[HFMonitor(SpectralMonitor(probe))])  # doctest: +SKIP

It measures the starting point when training begins (step 0) and then at every
``state.global_step`` that is a multiple of ``every``, on the Trainer's model (whose output's
``logits``, or first tensor, are read through :func:`spectral_lab.prepare`'s output rule; the
probe's ``x`` is passed as the model's first positional argument), with the Trainer's optimiser
(its ``lr`` and Adam state: the preconditioned sharpness of AdamW). The training loss of the
last logged step is attached as ``"loss"`` when the Trainer has logged one. For TensorBoard,
give the monitor its own ``writer=`` (:mod:`spectral_lab.monitor.tensorboard`). transformers is
an optional package (``pip install "spectral_lab[hf]"``).
"""

from __future__ import annotations

import torch

from .._extras import require
from .core import SpectralMonitor

_tf = require("transformers", "spectral_lab.monitor.HFMonitor")

__all__ = ["HFMonitor"]


class HFMonitor(_tf.TrainerCallback):
    """Drive ``monitor`` from a Hugging Face ``Trainer`` (see the module docstring).

    Args:
        monitor: the :class:`~spectral_lab.monitor.SpectralMonitor` that measures and keeps the
            history.
    """

    def __init__(self, monitor: SpectralMonitor) -> None:
        if not isinstance(monitor, SpectralMonitor):
            raise TypeError(
                f"monitor must be a SpectralMonitor, got {type(monitor).__name__}: "
                "HFMonitor(SpectralMonitor(probe, ...))"
            )
        self.monitor = monitor
        self._loss: float | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        """Measure the starting point."""
        mon = self.monitor
        if model is not None and (not mon.history or mon.history[-1]["step"] != state.global_step):
            with torch.enable_grad():
                mon.measure(model, optimizer, step=state.global_step)
            mon.count = state.global_step + 1

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        """After an optimiser step: :meth:`SpectralMonitor.step` at ``state.global_step``."""
        if model is None:
            return
        with torch.enable_grad():
            self.monitor.step(model, optimizer, loss=self._loss, step=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Remember the last logged training loss (attached to the next record as ``"loss"``)."""
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])
