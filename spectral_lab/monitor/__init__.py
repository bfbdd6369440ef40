"""Watching training: the spectral quantities of a network, measured every ``k`` steps.

:class:`SpectralMonitor` measures, on a fixed probe batch, the loss Hessian's top eigenvalue (the
sharpness, beside ``2/eta``; for Adam the preconditioned sharpness), the NTK's top eigenvalue,
condition number and drift, the input Jacobian's spectral entropy and ``sigma_1``, and each
layer's stable rank and power-law exponent -- all through the library's operators, Lanczos
warm-started from the previous measurement. Thin adapters put it where people train:

* your own loop: ``monitor.step(model, optimizer, loss=loss)`` once per step;
* :func:`spectral_lab.train`: ``train(..., callbacks=[monitor])``;
* PyTorch Lightning: ``trainer = Trainer(callbacks=[LightningMonitor(monitor)])``
  (:mod:`spectral_lab.monitor.lightning_callback`, extra ``lightning``);
* Hugging Face: ``Trainer(..., callbacks=[HFMonitor(monitor)])``
  (:mod:`spectral_lab.monitor.hf_callback`, extra ``hf``);
* TensorBoard: ``SpectralMonitor(..., writer=SummaryWriter(log_dir))``
  (:mod:`spectral_lab.monitor.tensorboard`, extra ``monitor``);
* ``DistributedDataParallel``: each rank passes its shard of the probe; the records are those of
  the concatenated probe, the same on every rank, logged by rank 0 (``process_group=``).

The adapters import their package on first use, so ``import spectral_lab.monitor`` needs torch only.
"""

from __future__ import annotations

import importlib

from .core import QUANTITIES, DivergenceWarning, SpectralMonitor

__all__ = ["QUANTITIES", "DivergenceWarning", "HFMonitor", "LightningMonitor", "SpectralMonitor"]

_LAZY = {
    "LightningMonitor": ".lightning_callback",
    "HFMonitor": ".hf_callback",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'spectral_lab.monitor' has no attribute {name!r}")
