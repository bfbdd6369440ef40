"""Batched input Jacobians ``J_f(x) = df/dx`` of a classifier, shape ``(N, C, d)``.

Example:
    >>> from spectral_lab import MLP
    >>> J = input_jacobian(MLP(4, 3, width=8), torch.randn(5, 4))
    >>> J.shape
    torch.Size([5, 3, 4])
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_logits, check_model, check_tensor


def input_jacobian(
    model: nn.Module, x: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """Input Jacobians of ``model`` at every row of ``x``: ``(N, C, d)``, ``d = prod(x.shape[1:])``.

    Route: one forward pass over a chunk, then ``C`` backward passes of ``sum_n f_c(x_n)``; since
    samples do not interact (eval mode), each gives row ``c`` of every sample's Jacobian at once.
    Cost: ``C`` backward passes per chunk; memory ``O(chunk * C * d)``.
    """
    check_model(model)
    x = check_tensor(x, "x", min_dim=2)
    n = x.shape[0]
    chunk = n if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    out = []
    for i in range(0, n, chunk):
        xc = x[i : i + chunk].detach().requires_grad_(True)
        with torch.enable_grad():
            f = check_logits(model(xc))
            c = f.shape[1]
            rows = [
                torch.autograd.grad(f[:, k].sum(), xc, retain_graph=k < c - 1)[0].reshape(
                    len(xc), -1
                )
                for k in range(c)
            ]
        out.append(torch.stack(rows, 1))
    return torch.cat(out)
