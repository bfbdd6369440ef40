"""The one loss registry: every function that takes ``loss=`` resolves it here.

``"mse"`` is :func:`half_mse`, ``L = (1/n) sum_i 1/2 ||f(x_i) - y_i||^2``: **summed over the C
outputs, averaged over the n samples**. Its output-space Hessian is ``I/n`` per sample (``I`` for
one sample), so ``train(loss="mse")`` minimises exactly the loss whose curvature
``hessian_eigs(loss="mse")`` reports, and ``2/lambda_max`` is directly comparable with the
learning rate. (It is ``C`` times ``0.5 * F.mse_loss``, which also averages over outputs.)

``"cross_entropy"`` is ``F.cross_entropy`` (mean over samples, integer labels). A callable
``loss(outputs, y) -> 0-dim tensor`` (the mean over the batch) is used as given.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LossLike = str | Loss
"""What a ``loss`` argument accepts: ``"mse"``, ``"cross_entropy"`` or a callable
``loss(outputs, y)`` returning the mean over the batch; resolved by :func:`resolve_loss`."""


def half_mse(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``: sum over outputs, mean over samples.

    Its Hessian with respect to the outputs of one sample is ``I / n``. Targets of another shape
    with as many entries (``(N,)`` for a one-output model) are read in the outputs' shape, never
    broadcast (``(N, 1) - (N,)`` would be ``(N, N)``); any other shape is refused.

    Example:
        >>> half_mse(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)).item()  # (1 + 4) / 2
        2.5
        >>> half_mse(torch.zeros(3, 1), torch.ones(3)).item()  # (N,) targets, not an (N, N) grid
        0.5
    """
    if y.shape != outputs.shape:
        if y.numel() != outputs.numel():
            raise ValueError(
                f"mse: targets of shape {tuple(y.shape)} do not match the outputs "
                f"{tuple(outputs.shape)}; pass one target per output"
            )
        y = y.reshape(outputs.shape)  # (N,) targets of a one-output model are (N, 1)
    return 0.5 * ((outputs - y) ** 2).reshape(len(outputs), -1).sum(1).mean()


LOSSES: dict[str, Loss] = {"mse": half_mse, "cross_entropy": F.cross_entropy}


def resolve_loss(loss: str | Loss) -> Loss:
    """The loss function for a name in :data:`LOSSES` (``"mse"``, ``"cross_entropy"``) or a
    callable ``loss(outputs, y) -> scalar`` (returned unchanged).

    Example:
        >>> resolve_loss("mse") is half_mse
        True
    """
    if isinstance(loss, str):
        try:
            return LOSSES[loss]
        except KeyError:
            raise ValueError(
                f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or a callable (outputs, y) -> scalar"
            ) from None
    if not callable(loss):
        raise TypeError(
            f"loss must be a name in {sorted(LOSSES)} or a callable (outputs, y) -> scalar, "
            f"got {type(loss).__name__}"
        )
    return loss


def scalar_loss(value: object) -> torch.Tensor:
    """Require the 0-dim tensor a loss must return."""
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"the loss must return a scalar (0-dim) tensor, got {shape}; use reduction='mean'"
        )
    return value
