"""Singular spectra and the summaries built on them.

Example:
    >>> singular_values(torch.diag(torch.tensor([3.0, 1.0]))).tolist()
    [3.0, 1.0]
"""

from __future__ import annotations

import torch

from ._checks import check_tensor


def singular_values(m: torch.Tensor) -> torch.Tensor:
    """Singular values, descending, batched over leading dimensions: ``(..., min(rows, cols))``."""
    m = check_tensor(m, "m", min_dim=2)
    return torch.linalg.svdvals(m)
