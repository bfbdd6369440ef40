"""Per-sample measures of how an attribution moves: relative change (Delta_grad), cosine distance,
top-k overlap; the attribution condition number; the finite-difference sensitivity."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_tensor
from ._common import _check_inputs


def _flat_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = check_tensor(a, "a", min_dim=1)
    b = check_tensor(b, "b", min_dim=1)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dim() == 1:
        a, b = a[None], b[None]
    return a.flatten(1), b.flatten(1)


def relative_change(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``Delta_grad = ||b - a|| / (||a|| + eps)`` per sample (rows; ``a`` = clean attribution).

    Cost: ``O(N d)``. Runs on the device and dtype of its inputs.

    Example:
        >>> relative_change(torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 5.0]]))
        tensor([0.2000])
    """
    a, b = _flat_pair(a, b)
    return (b - a).norm(dim=1) / (a.norm(dim=1) + eps)


def cosine_distance(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``1 - cos(a, b)`` per sample, in ``[0, 2]``.

    Cost: ``O(N d)``. Runs on the device and dtype of its inputs.

    Example:
        >>> cosine_distance(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 2.0], [-1.0, 0.0]]))
        tensor([1., 2.])
    """
    a, b = _flat_pair(a, b)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(eps)
    return 1.0 - cos


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int | float = 0.1) -> torch.Tensor:
    """Fraction of the ``k`` largest-``|a|`` features that are also among the ``k`` largest ``|b|``.

    ``k`` is a count (int) or a fraction of the features (float in (0, 1]). 1 means the same top
    features. Cost: two ``topk`` calls. Runs on the device and dtype of its inputs.

    Example: the top two of ``a`` are features 0 and 1, those of ``b`` are 1 and 2.
        >>> topk_overlap(torch.tensor([[5.0, 4.0, 1.0]]), torch.tensor([[1.0, 4.0, 5.0]]), k=2)
        tensor([0.5000])
    """
    a, b = _flat_pair(a, b)
    d = a.shape[1]
    kk = int(math.ceil(k * d)) if isinstance(k, float) else int(k)
    if not 1 <= kk <= d:
        raise ValueError(f"k must select between 1 and {d} features, got {k}")
    ia = a.abs().topk(kk, dim=1).indices
    ib = b.abs().topk(kk, dim=1).indices
    ma = torch.zeros_like(a, dtype=torch.bool).scatter_(1, ia, True)
    mb = torch.zeros_like(b, dtype=torch.bool).scatter_(1, ib, True)
    return (ma & mb).sum(1).to(a.dtype) / kk


def attribution_condition_number(
    model_or_jacobian: nn.Module | torch.Tensor,
    x: torch.Tensor | None = None,
    *,
    kind: str = "median",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Attribution condition number per sample from the input Jacobian's singular values.

    ``kind="median"`` (default): ``kappa_attr(x) = sigma_1 / median_k sigma_k`` over the
    ``min(C, d)`` singular values (median as numpy's: the mean of the two middle values for an even
    count). ``kind="classical"``: ``sigma_1 / sigma_r`` (choice, not from the paper; unbounded when
    the Jacobian is rank deficient).
    Pass a model and ``x`` (the Jacobian is computed, cost ``C`` backward passes) or a Jacobian
    ``(..., C, d)`` directly. Cost of the SVDs: ``O(N C^2 d)``. Runs on the device and dtype of the model's parameters; inputs are cast to them.
    A Jacobian passed directly stays on its own device and dtype.

    Example: singular values 4, 2, 1 give ``4 / 2 = 2`` (median) and ``4 / 1 = 4`` (classical).
        >>> J = torch.diag(torch.tensor([4.0, 2.0, 1.0]))
        >>> attribution_condition_number(J), attribution_condition_number(J, kind="classical")
        (tensor(2.), tensor(4.))
    """
    if not isinstance(model_or_jacobian, torch.Tensor):
        if x is None:
            raise ValueError("pass the inputs x together with a model")
        from ..jacobians import input_jacobian

        J = input_jacobian(model_or_jacobian, x, chunk_size)
    else:
        J = check_tensor(model_or_jacobian, "jacobian", min_dim=2)
    if kind not in ("median", "classical"):
        raise ValueError(f"kind must be 'median' or 'classical', got {kind!r}")
    s = torch.linalg.svdvals(J.detach())
    denom = s.quantile(0.5, dim=-1) if kind == "median" else s[..., -1]
    return s[..., 0] / denom.clamp_min(torch.finfo(s.dtype).tiny)


def finite_difference_sensitivity(
    model: nn.Module, x: torch.Tensor, delta: torch.Tensor
) -> torch.Tensor:
    """``||f(x + delta) - f(x)|| / ||delta||`` per sample: the *other* reading of "FD" (a finite
    difference rather than a Fréchet distance), kept under its own name.

    Cost: two forward passes. Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: for a linear map the ratio is ``||W delta|| / ||delta||``.
        >>> lin = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.diag(torch.tensor([3.0, 1.0])))
        >>> finite_difference_sensitivity(lin, torch.zeros(1, 2), torch.tensor([[0.1, 0.0]]))
        tensor([3.])
    """
    model, x = _check_inputs(model, x)
    delta = check_tensor(delta, "delta", min_dim=2).to(x)
    if delta.shape != x.shape:
        raise ValueError(
            f"delta must have the shape of x {tuple(x.shape)}, got {tuple(delta.shape)}"
        )
    with torch.no_grad():
        df = model(x + delta) - model(x)
    return df.flatten(1).norm(dim=1) / delta.flatten(1).norm(dim=1).clamp_min(1e-30)
