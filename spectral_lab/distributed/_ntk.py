"""The NTK on inputs sharded across ranks: ``K = J J^T`` on the concatenated inputs (rank 0's
shard first), its sample-indexed vectors assembled by an all-gather."""

from __future__ import annotations

from typing import Any

import torch

from ..linalg import EigResult, LinearOperator, lanczos
from ._comm import all_gather_rows, all_reduce_checked, guarded, replicated_generator, shard_info

_BLOCK_BYTES = 1 << 26  # J^T V of a block of columns, all-reduced at once: at most 64 MiB


def sharded_ntk_operator(model: Any, x: torch.Tensor, kind: str, group, route: str = "auto"):
    """The scalar (``N x N``) or block (``N C x N C``) NTK on the inputs of every rank of
    ``group``, ``x`` being this rank's shard (``N = sum_r n_r``, rows ordered rank by rank).

    A block of ``b`` columns ``V``: rank ``r`` takes its rows ``V_r`` and forms ``J_r^T V_r``
    (block: ``b`` VJPs over its shard; scalar: ``b C``, one per output ``c`` with ``v e_c^T``),
    one all-reduce of ``b p`` (scalar: ``b C p``) numbers gives ``J^T V`` on every rank, the
    rank applies its ``J_r`` (as many JVPs) and an all-gather of the ``n_r``-row slices
    assembles ``K V``. The shard's Jacobian is never formed
    (:func:`~spectral_lab.jacobians.parameter_jacobian_operator`); a block is cut into column
    blocks whose ``J^T V`` takes at most 64 MiB (one all-reduce each).

    Example: on one process (``group=None``) it is the NTK itself.
        >>> from spectral_lab import MLP, ntk_gram
        >>> m, x = MLP(3, 2, width=8).double(), torch.randn(4, 3, dtype=torch.float64)
        >>> op = sharded_ntk_operator(m, x, "scalar", None)
        >>> torch.allclose(op.dense(), ntk_gram(m, x))
        True
    """
    from ..jacobians import parameter_jacobian_operator
    from ..prepared import prepare

    def setup():
        prep = prepare(model, x if len(x) else None)
        C = prep.num_outputs
        J = parameter_jacobian_operator(prep, x, route=route) if len(x) else None
        return prep, C, J

    prep, C, J = guarded(group, "ntk_operator (setup)", setup) if group else setup()
    if group is None:
        counts, routes = [len(x)], [J.route]
    else:
        counts, routes = shard_info(
            group, len(x), "ntk_operator (shard sizes)", None if J is None else J.route
        )
    rank = 0 if group is None else torch.distributed.get_rank(group)
    lo, n = sum(counts[:rank]), len(x)
    p, dtype, device = prep.num_params, prep.dtype, prep.device
    width = C if kind == "block" else 1
    N = sum(counts)

    per_col = (C if kind == "scalar" else 1) * p * torch.finfo(dtype).bits // 8
    cols = max(1, _BLOCK_BYTES // per_col)  # columns whose J^T V fit in one all-reduce buffer

    def product(V: torch.Tensor) -> torch.Tensor:  # (N width, b) -> (N width, b)
        if V.shape[1] > cols:
            return torch.cat([block(V[:, i : i + cols]) for i in range(0, V.shape[1], cols)], 1)
        return block(V)

    def block(V: torch.Tensor) -> torch.Tensor:
        b = V.shape[1]
        Vr = V[lo * width : (lo + n) * width]
        err, G = None, torch.zeros(b, C if kind == "scalar" else 1, p, dtype=dtype, device=device)
        try:
            if J is not None:
                for j in range(b):
                    if kind == "block":
                        G[j, 0] = J.rmv(Vr[:, j])
                    else:
                        for c in range(C):
                            U = torch.zeros(n, C, dtype=dtype, device=device)
                            U[:, c] = Vr[:, j]
                            G[j, c] = J.rmv(U.reshape(-1))
        except Exception as e:  # noqa: BLE001 -- forwarded in the all-reduce, then re-raised
            err = e
        if group is not None:
            all_reduce_checked(group, G, "an NTK product (J^T v)", err)
        elif err is not None:
            raise err
        err, out = None, torch.zeros(n * width, b, dtype=dtype, device=device)
        try:
            if J is not None:
                for j in range(b):
                    if kind == "block":
                        out[:, j] = J.mv(G[j, 0])
                    else:
                        out[:, j] = sum(J.mv(G[j, c]).reshape(n, C)[:, c] for c in range(C))
        except Exception as e:  # noqa: BLE001 -- forwarded in the all-gather, then re-raised
            err = e
        rows = all_gather_rows(
            group, out.reshape(n, width * b), counts, "an NTK product (J t)", err
        )
        return rows.reshape(N, width, b).reshape(N * width, b)

    op = LinearOperator(
        lambda v: product(v[:, None])[:, 0], N * width, dtype, device, matmat=product,
        name=f"NTK({kind}, N={N}, C={C}, sharded over {len(counts)} ranks)",
    )  # fmt: skip
    op.route = next(r for r in routes if r is not None)
    op.memory = {"storage": "streaming", "shards": counts}
    return op


def sharded_ntk_eigs(model, x, k, kind, method, tol, max_iter, generator, seed, max_dense,
                     route, group) -> EigResult:  # fmt: skip
    """:func:`ntk_eigs` on the inputs of every rank of ``group`` (``x`` this rank's shard)."""
    op = sharded_ntk_operator(model, x, kind, group, route)
    if not isinstance(k, int) or k < 1 or k > op.dim:
        raise ValueError(f"k must be an int in [1, {op.dim}] (the NTK's size), got {k!r}")
    g = replicated_generator(generator, seed, op.device, group, "ntk_eigs")
    if method == "lanczos" or (method == "auto" and op.dim > max_dense):
        return lanczos(op, k, tol=tol, max_iter=max_iter, generator=g)
    K = op.dense()
    K = 0.5 * (K + K.T)
    w, U = torch.linalg.eigh(K)
    w, U = w.flip(0)[:k], U.flip(1)[:, :k]
    res = (K @ U - U * w).norm(dim=0).double().cpu()
    return EigResult(
        eigenvalues=w, eigenvectors=U, residuals=res, matvecs=op.n_products, converged=True,
        method="dense", history=w.double().cpu()[None],
        history_matvecs=torch.zeros(1, dtype=torch.long), route=op.route,
    )  # fmt: skip
