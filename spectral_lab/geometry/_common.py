"""Shared pieces of the geometry package: trace conventions, the exponent range and validators."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_tensor

TRACES = ("d", "one")
ALPHA_MAX = 60.0  # exponents are searched in [0, ALPHA_MAX]; beyond it p_α is rank one to 1e-18


def _check_trace(trace: str) -> str:
    if trace not in TRACES:
        raise ValueError(f"trace must be 'd' (tr ĀᵀĀ = d, the default) or 'one', got {trace!r}")
    return trace


def _check_d(d: int) -> int:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d (the width) must be a positive integer, got {d!r}")
    return int(d)


def _check_alpha(alpha: float, name: str = "alpha") -> float:
    a = float(alpha)
    if not math.isfinite(a):
        raise ValueError(f"{name} must be finite, got {alpha}")
    return a


def _as_spectrum(
    spectrum, kind: str = "singular", name: str = "spectrum", drop_zeros: bool = True
) -> np.ndarray:
    """Eigenvalues ``λ`` of ``ĀᵀĀ`` (unnormalised), float64, descending.

    ``drop_zeros=True`` keeps only the numerically nonzero part (``λ > 1e-14 λ_1``), so that ``d``
    becomes the numerical rank (what the power-law fit and the energy distribution on ranks use);
    ``drop_zeros=False`` keeps every value, so that ``d`` is the ambient dimension (what the top
    radial ``log σ_1(Ā)`` of the whole factor uses).
    """
    if kind not in ("singular", "eigen"):
        raise ValueError(
            f"kind must be 'singular' (singular values σ, λ = σ²) or 'eigen' (λ itself), got {kind!r}"
        )
    if isinstance(spectrum, torch.Tensor):
        check_tensor(spectrum, name)
        s = spectrum.detach().to("cpu", torch.float64).numpy()
    else:
        s = np.asarray(spectrum)
        if s.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be numeric, got dtype {s.dtype}")
        s = s.astype(np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one spectrum), got shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} is empty; pass at least one value")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains NaN/Inf; clean the spectrum first")
    if (s < 0).any() and kind == "eigen":
        raise ValueError(f"{name} has negative eigenvalues; pass λ ≥ 0 (eigenvalues of ĀᵀĀ)")
    lam = s**2 if kind == "singular" else s
    lam = np.sort(lam)[::-1]
    if lam[0] <= 0:
        raise ValueError(f"{name} is identically zero; a zero factor has no normalised spectrum")
    if not drop_zeros:
        return lam
    # rank-deficient factors: keep the numerically nonzero part (fit on the rank, not the width)
    keep = lam > lam[0] * 1e-14
    return lam[keep]
