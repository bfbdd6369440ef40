"""Fixtures of the stability tests: float64 per module and one profiled tiny model."""

from __future__ import annotations

import pytest
import torch

from spectral_lab.stability import (
    stability_profile,
)

from ._helpers import _data, _model


@pytest.fixture(scope="module", autouse=True)
def _float64():
    """float64 inside this module only (the default dtype is global: restore it afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def setup(_float64):
    model, (x, y) = _model(), _data()
    prof = stability_profile(model, (x, y), max_iter=200)
    return model, x, y, prof
