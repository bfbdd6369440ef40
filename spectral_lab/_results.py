"""The base of every result dataclass: frozen, with ``to_dict()`` (plain Python: tensors become
lists, nested results dicts), so results can be printed, logged and saved as JSON."""

from __future__ import annotations

import dataclasses

import torch


def to_plain(value: object) -> object:
    """Tensors and arrays -> (nested) lists or numbers; results -> dicts; containers recursively."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if hasattr(value, "tolist") and callable(value.tolist):  # NumPy arrays and scalars
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


class Result:
    """Mixin for ``@dataclass(frozen=True)`` results: :meth:`to_dict`."""

    def to_dict(self) -> dict:
        """Every field as plain Python (tensors become lists); JSON-serialisable for numbers."""
        return {f.name: to_plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
