"""TensorBoard logging of a :class:`~spectral_lab.monitor.SpectralMonitor`: pass
``writer=torch.utils.tensorboard.SummaryWriter(log_dir)`` (or :func:`summary_writer`) to the
monitor and every record is logged -- each number as a scalar under ``spectral/<key>``, each
spectrum (NTK eigenvalues, input-Jacobian singular values, each layer's singular values) as a
histogram under ``spectrum/<name>``, at the record's step.

TensorBoard is an optional package (``pip install "spectral_lab[monitor]"``).
"""

from __future__ import annotations

import math

import torch

from .._extras import require

__all__ = ["log_record", "summary_writer"]


def summary_writer(log_dir: str | None = None, **kwargs):
    """A ``torch.utils.tensorboard.SummaryWriter`` writing to ``log_dir`` (an ``ImportError``
    naming the extra when TensorBoard is not installed)."""
    require("tensorboard", "spectral_lab.monitor.tensorboard")
    tb = require("torch.utils.tensorboard", "spectral_lab.monitor.tensorboard")
    return tb.SummaryWriter(log_dir, **kwargs)


def log_record(writer, record: dict, spectra: dict | None = None) -> None:
    """Write one monitor record: its finite numbers as scalars ``spectral/<key>`` (booleans as
    0/1; ``step`` is the global step), its spectra as histograms ``spectrum/<name>``; then flush.
    Cost: a few small writes."""
    step = int(record["step"])
    for key, value in record.items():
        if key == "step" or not isinstance(value, (int, float, bool)):
            continue
        value = float(value)
        if math.isfinite(value):
            writer.add_scalar(f"spectral/{key}", value, step)
    for name, values in (spectra or {}).items():
        if name == "step" or not isinstance(values, torch.Tensor) or values.numel() == 0:
            continue
        writer.add_histogram(f"spectrum/{name}", values.detach().reshape(-1).double().cpu(), step)
    writer.flush()
