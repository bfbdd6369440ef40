"""Frobenius normalisation of a factor, its Cartan coordinate, spectral energy and top radial
(the single-factor quantities of "Geometric and Spectral Alignment for Deep Neural Network I").

Matrix functions run on the device and dtype of their input; spectrum functions return float64
NumPy on the CPU."""

from __future__ import annotations

import math

import numpy as np
import torch

from .._checks import check_tensor
from ._common import _as_spectrum, _check_trace


def frobenius_normalize(a: torch.Tensor, trace: str = "d") -> torch.Tensor:
    """``Ā = sqrt(d) A / ||A||_F`` (``trace="d"``, default) or ``A / ||A||_F`` (``"one"``).

    ``d = min(rows, cols)``; batched over leading dimensions. With ``trace="d"`` the identity is a
    fixed point and ``tr(ĀᵀĀ) = d`` — the convention under which the Bures line element is
    exactly ``(d/4) I(α)`` [D]; ``"one"`` (trace 1) is the alternative [C]. Cost ``O(d²)``. Runs
    on the device and dtype of its input.

    Example:
        >>> frobenius_normalize(2 * torch.eye(3, dtype=torch.float64)).diag().tolist()
        [1.0, 1.0, 1.0]
    """
    a = check_tensor(a, "a", min_dim=2)
    _check_trace(trace)
    d = min(a.shape[-2:])
    fro = torch.linalg.matrix_norm(a, keepdim=True)
    if (fro == 0).any():
        raise ValueError("a has a zero matrix; it has no Frobenius normalisation")
    scale = math.sqrt(d) if trace == "d" else 1.0
    return a * (scale / fro)


def cartan_coordinates(a: torch.Tensor, trace: str = "d") -> torch.Tensor:
    """Cartan coordinate ``a_k = log σ_k(Ā) = ½ log λ_k(ĀᵀĀ)``, descending, batched [P/D].

    Lies in the Weyl chamber ``a_1 ≥ … ≥ a_d`` with ``Σ_k e^{2 a_k} = d`` (trace ``"d"``). Cost: one
    SVD, ``O(d³)``. Zero singular values give ``-inf``. Runs on the device and dtype of its input.

    Example:
        >>> cartan_coordinates(torch.eye(4)).abs().max().item()
        0.0
    """
    return torch.log(torch.linalg.svdvals(frobenius_normalize(a, trace)))


def spectral_energy(spectrum, kind: str = "singular") -> np.ndarray:
    """Spectral-energy distribution on ranks ``p_k = λ_k / Σ_j λ_j`` (descending), float64.

    ``kind="singular"`` takes singular values (``λ = σ²``), ``"eigen"`` takes ``λ``. Values
    below ``1e-14 λ_1`` are dropped. Cost ``O(d log d)``; returns float64 NumPy on the CPU.

    Example:
        >>> spectral_energy([1.0, 1.0]).tolist()
        [0.5, 0.5]
    """
    lam = _as_spectrum(spectrum, kind)
    return lam / lam.sum()


def top_radial(
    spectrum, kind: str = "singular", normalized: bool = False, trace: str = "d"
) -> float:
    """Top-radial Cartan coordinate ``r = log σ_1(Ā) = ½ log(d p_1) ∈ [0, ½ log d]`` [P name, D formula].

    ``d`` is the **ambient** dimension: the number of values passed, zeros included (pass all
    ``min(rows, cols)`` singular values of the factor). So ``r`` equals ``log σ_1`` of the
    Frobenius-normalised factor (:func:`frobenius_normalize`) for every factor, rank-deficient or
    not: ``r = 0`` iff the spectrum is flat (``Ā`` orthogonal), ``½ log d`` iff rank one.
    (:func:`power_law_fit` instead fits the numerically nonzero part and reports its own
    ``r_hat`` with ``d`` = the numerical rank; the two agree for full-rank spectra.)
    ``normalized=True`` returns ``r / (½ log d) ∈ [0, 1]`` (choice, not from the paper: its exact
    normalisation is unknown). ``trace="one"`` returns ``½ log p_1 = r − ½ log d``. Cost ``O(d)``.

    Example:
        >>> top_radial([1.0, 1.0, 1.0, 1.0])
        0.0
        >>> round(top_radial([1.0, 0.0, 0.0, 0.0]), 6) == round(0.5 * math.log(4), 6)  # rank one
        True
    """
    _check_trace(trace)
    lam = _as_spectrum(spectrum, kind, drop_zeros=False)
    d = lam.size
    p1 = lam[0] / lam.sum()
    r = 0.5 * math.log(d * p1)
    if normalized:
        return 0.0 if d == 1 else r / (0.5 * math.log(d))
    return r if trace == "d" else r - 0.5 * math.log(d)
