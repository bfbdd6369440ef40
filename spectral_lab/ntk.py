"""The empirical Neural Tangent Kernel, its spectrum, and linearised training dynamics.

The scalar NTK ``K(x_i, x_j) = <J_theta(x_i), J_theta(x_j)>_F = tr(J_i J_j^T)`` (n x n) and the
block NTK ``K~_ij = J_i J_j^T`` (C x C blocks, an nC x nC matrix once flattened with
:func:`block_to_matrix`); ``K_ij = tr K~_ij`` (Jacot, Gabriel & Hongler 2018, "Neural Tangent
Kernel: Convergence and Generalization in Neural Networks"). Gradient descent on the sum loss
``1/2 sum_i ||f(x_i) - y_i||^2`` (residual ``r = f(X) - Y``) of the linearised model is governed by
``K~`` (Lee et al. 2019, "Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient
Descent"): ``r_k = (I - eta K~)^k r_0``.

Every function evaluates the model in eval mode (dropout off, batch-norm on running statistics)
and restores its mode afterwards. Runs on the device and dtype of the model's parameters; inputs
are cast to them.

Example:
    >>> from spectral_lab import MLP
    >>> m = MLP(4, 2, width=16, depth=2)
    >>> K = ntk_gram(m, torch.randn(6, 4))
    >>> K.shape, bool(torch.allclose(K, K.T))
    (torch.Size([6, 6]), True)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from . import _func, _kept, distributed
from ._checks import check_logits, check_tensor
from ._random import resolve_generator
from .jacobians import parameter_jacobian
from .linalg import EigResult, LinearOperator, lanczos
from .prepared import Prepared, prepare

__all__ = [
    "block_to_matrix",
    "gd_residuals",
    "label_noise_filter",
    "label_noise_response",
    "linearized_residuals",
    "ntk_eigs",
    "ntk_gram",
    "ntk_operator",
]

_METHODS = ("auto", "jacobian", "ntvp")
_KINDS = ("scalar", "block")


def _setup(model: nn.Module | Prepared, x: torch.Tensor, name: str = "x"):
    """The prepared model (the one entrance), its trainable parameters and ``x`` made ready."""
    prep = prepare(model, x)
    return prep, _func.trainable(prep.model), prep.inputs(x, name)


def _num_outputs(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), _func.eval_mode(model):
        return check_logits(model(x[:1])).shape[1]


def block_to_matrix(K: torch.Tensor) -> torch.Tensor:
    """Flatten block NTK ``(N1, N2, C, C)`` to the ``(N1 C, N2 C)`` matrix, index ``n C + c``.

    Cost: one copy. Runs on the device and dtype of its input.

    Example: the trace of each ``C x C`` block is the scalar NTK.
        >>> Kb = torch.arange(16.0).reshape(2, 2, 2, 2)
        >>> block_to_matrix(Kb)[0].tolist()
        [0.0, 1.0, 4.0, 5.0]
    """
    if K.dim() != 4:
        raise ValueError(f"K must be a block NTK of shape (N1, N2, C, C), got {tuple(K.shape)}")
    n1, n2, c, d = K.shape
    return K.permute(0, 2, 1, 3).reshape(n1 * c, n2 * d)


_ACC_BYTES = 1 << 26  # float64 working copy of one parameter block of both Jacobians: 64 MiB


def _contract(J1: torch.Tensor, J2: torch.Tensor | None, kind: str) -> torch.Tensor:
    """``sum_p J1[n, c, p] J2[m, d, p]`` (scalar: ``c = d`` summed too) accumulated in float64.

    A float32 contraction over the ``C p`` terms of a large model loses accuracy (0.35% on the
    diagonal of ResNet-18's NTK, relative error growing with ``p``: ~2e-4 at ``p = 2M``), so the
    parameter axis is cut into blocks whose float64 copies take at most ``_ACC_BYTES``; each block
    is contracted in float64 and the partial Grams are summed in float64 (error ~1e-16 per term).
    Returned in ``J1``'s dtype. Memory: the float64 Gram plus one block."""
    same = J2 is None
    J2 = J1 if same else J2
    rows = J1.shape[0] * J1.shape[1] + (0 if same else J2.shape[0] * J2.shape[1])
    block = max(1, _ACC_BYTES // (8 * rows))
    (n1, c, _), n2 = J1.shape, J2.shape[0]
    acc = None
    for a in range(0, J1.shape[2], block):  # one plain float64 matrix product per block
        b1 = J1[:, :, a : a + block].double()
        b2 = b1 if same else J2[:, :, a : a + block].double()
        if kind == "scalar":  # (n1, C pb) @ (C pb, n2)
            part = b1.reshape(n1, -1) @ b2.reshape(n2, -1).T
        else:  # (n1 C, pb) @ (pb, n2 C)
            part = b1.reshape(n1 * c, -1) @ b2.reshape(n2 * c, -1).T
        acc = part if acc is None else acc + part
    if kind == "block":
        acc = acc.reshape(n1, c, n2, c).permute(0, 2, 1, 3)
    return acc.to(J1.dtype)


def _gram_jacobian(prep, x1, x2, kind, chunk_size):
    J1 = parameter_jacobian(prep, x1, chunk_size)
    J2 = None if x2 is None else parameter_jacobian(prep, x2, chunk_size)
    return _contract(J1, J2, kind), f"jacobian ({prep.routes['parameter_jacobian']})"


def _gram_ntvp(model, x1, x2, kind, chunk_size, route="auto"):
    params = _func.trainable(model)
    x2 = x1 if x2 is None else x2
    n2 = len(x2)
    C = _num_outputs(model, x1)
    width = chunk_size or 16
    with _func.eval_mode(model):
        f = _func.functional(model)

        def cols_vmap(xa, xb, rev):
            def column(xm, e):
                # one row of J(x_m): J(x_m)^T e (a VJP), then J(xa) times it: K~[:, m][..., d]
                _, vjp_fn = torch.func.vjp(lambda p: f(p, xm[None])[0], params)
                (t,) = vjp_fn(e)
                return _func.jvp(lambda p: f(p, xa), params, t, rev)[1]

            xs = xb.repeat_interleave(C, 0)
            E = torch.eye(C, dtype=xa.dtype, device=xa.device).repeat(len(xb), 1)
            return torch.func.vmap(column, chunk_size=width)(xs, E)  # (Nb C, Na, C)

        def cols_batched(xa, xb, rev):
            # blocks of samples of xb: one VJP pass per block, vmapped over its one-hot
            # cotangents only (the model is never vmapped over samples)
            b = max(1, width // C)
            out = []
            for i in range(0, len(xb), b):
                _, vjp_fn = torch.func.vjp(lambda p, xs=xb[i : i + b]: f(p, xs), params)
                m = min(b, len(xb) - i)
                E = torch.eye(m * C, dtype=xa.dtype, device=xa.device).reshape(m * C, m, C)

                def col(e, vjp_fn=vjp_fn):
                    return _func.jvp(lambda p: f(p, xa), params, vjp_fn(e)[0], rev)[1]

                out.append(torch.func.vmap(col)(E))
            return torch.cat(out)

        ad = _func.choose_route(
            route, lambda r: cols_batched(x1[:1], x2[:1], r.reverse), "ntk (NTK-vector products)"
        )
        with ad.context():
            cols_fn = cols_vmap
            try:
                cols_vmap(x1[:1], x2[:2], ad.reverse)
            except (RuntimeError, NotImplementedError):
                cols_fn = cols_batched
            cols = cols_fn(x1, x2, ad.reverse)
    vm = "vmap" if cols_fn is cols_vmap else "batched"
    K = cols.reshape(n2, C, len(x1), C).permute(2, 0, 3, 1).detach()  # (N1, N2, c, d)
    if kind == "scalar":
        K = torch.diagonal(K, dim1=2, dim2=3).sum(-1)
    return K, f"ntvp ({ad.name}, {vm})"


def ntk_gram(
    model: nn.Module | Prepared,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    method: str = "auto",
    kind: str = "scalar",
    chunk_size: int | None = None,
    memory_budget: float = 2**30,
    *,
    route: str = "auto",
) -> torch.Tensor:
    """Empirical NTK Gram between ``x1`` and ``x2`` (default ``x2 = x1``).

    ``kind="scalar"``: ``K[i, j] = tr(J(x1_i) J(x2_j)^T)``, shape ``(N1, N2)`` (the
    default). ``kind="block"``: ``K[i, j] = J(x1_i) J(x2_j)^T``, shape ``(N1, N2, C, C)``.

    Methods (after the torch.func NTK recipes):

    * ``"jacobian"`` -- per-sample parameter Jacobians, then a contraction over ``p`` that is
      accumulated in float64 block by block (a float32 sum over ``C p`` terms loses up to 0.35% on
      ResNet-18), whatever the model's dtype; the Gram is returned in the model's dtype. Cost
      ``(N1+N2) C`` backward passes plus ``N1 N2 C p`` (scalar) or ``N1 N2 C^2 p`` (block) flops
      in float64; memory ``(N1+N2) C p`` numbers plus a 64 MiB float64 block. Best when the
      forward pass is expensive relative to ``p`` (CNNs).
    * ``"ntvp"`` -- NTK-vector products: for each (sample, output) of ``x2`` one VJP gives a row
      of ``J(x2)``, one JVP over ``x1`` gives a column of the Gram. Never holds the Jacobians:
      memory ``O(chunk (p + N1 activations))``, cost ``N2 C`` VJP+JVP pairs over ``x1``.
    * ``"auto"`` -- ``"jacobian"`` when its Jacobians fit in ``memory_budget`` bytes (default
      1 GiB), else ``"ntvp"`` (a choice, not from the paper).

    ``chunk_size`` bounds the samples (jacobian) or columns (ntvp, default 16) done at once.

    ``route`` (ntvp only; ``"auto"``, ``"forward"``, ``"reverse"``): how the JVP is taken, as in
    :func:`~spectral_lab.hessian.hessian_operator` -- forward mode, or reverse-over-reverse when
    an operation lacks forward-mode AD, chosen on a one-sample probe. Models that cannot be
    vmapped over samples (GRUs) use blocks of samples with vmap over output cotangents only; the
    Jacobian method falls back likewise (see :func:`parameter_jacobian`). The route used is
    recorded in ``Prepared.routes["ntk"]``.
    Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> ntk_gram(MLP(4, 3, width=8, depth=2), torch.randn(5, 4), kind="block").shape
        torch.Size([5, 5, 3, 3])
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    prep, params, x1 = _setup(model, x1, "x1")
    model = prep.model
    if x2 is not None:
        x2 = prep.inputs(x2, "x2")
        if x2.shape[1:] != x1.shape[1:]:
            raise ValueError(
                f"x1 and x2 must have the same per-sample shape, got {tuple(x1.shape[1:])} "
                f"and {tuple(x2.shape[1:])}"
            )
    if method == "auto":
        p = _func.num_params(params)
        C = prep.num_outputs
        n = len(x1) + (0 if x2 is None else len(x2))
        need = n * C * p * x1.element_size()
        method = "jacobian" if need <= memory_budget else "ntvp"
    if method == "jacobian":
        K, prep.routes["ntk"] = _gram_jacobian(prep, x1, x2, kind, chunk_size)
    else:
        K, prep.routes["ntk"] = _gram_ntvp(model, x1, x2, kind, chunk_size, route)
    return K


def _default_chunk(model, f, params, x, width: int, budget: float) -> int:
    """Samples per chunk when ``chunk_size`` is None: as many as keep ``width`` copies of their
    forward graph (the scalar NTK vmaps over its ``C`` classes) within ``max(budget, 1 GiB)``, at
    least 1 and at most all; the bytes per sample are measured on a probe of up to 16 samples."""
    n, m = len(x), min(len(x), 16)
    leaves = {k: p.detach().requires_grad_(True) for k, p in params.items()}
    with torch.enable_grad(), _func.eval_mode(model):
        _, nbytes = _kept.saved_bytes(lambda: f(leaves, x[:m]))
    per_sample = max(1, nbytes) * width / m
    return int(min(n, max(1, max(budget, _kept.DEFAULT_MEMORY_BUDGET) // per_sample)))


def ntk_operator(
    model: nn.Module | Prepared,
    x: torch.Tensor,
    kind: str = "scalar",
    chunk_size: int | None = None,
    *,
    route: str = "auto",
    memory_budget: float = _kept.DEFAULT_MEMORY_BUDGET,
    process_group: Any = None,
) -> LinearOperator:
    """The NTK on ``x`` as a matrix-free :class:`~spectral_lab.linalg.LinearOperator`.

    ``kind="block"``: ``v in R^{N C} -> K~ v = J (J^T v)``, one VJP plus one JVP over the data.
    ``kind="scalar"``: ``v in R^N -> K v = sum_c J_c (J_c^T (v e_c^T))``, ``C`` VJP+JVP pairs.
    Samples are processed ``chunk_size`` at a time (default: as many as keep one chunk's forward
    graph, times ``C`` for the scalar NTK's batched classes, within ``memory_budget`` -- or 1 GiB
    when that is smaller; all of them when they fit); no Gram or Jacobian is ever
    stored. Runs on the device and dtype of the model's parameters; inputs are cast to them.

    **Kept graph** (when the state of all chunks fits ``memory_budget`` bytes, default 1 GiB,
    measured on the first chunk): the graph of the outputs is built once per chunk and a product
    is one backward through it (``J^T v``) and then ``J t``, no forward pass: where every
    operation has forward-mode AD a replay of the outputs' tangent operations, recorded once
    (*linearized*, about one forward pass), else a backward through the kept graph of ``J^T u``
    (``J t = d/du <J^T u, t>``, the double-VJP trick; about two). The scalar NTK's ``C``
    products, and the ``b`` columns of ``op @ V``, go through one vmapped replay or batched
    backward each (``is_grads_batched``; a loop where an operation has no batching rule).
    **Streaming** (over budget, ``memory_budget=0`` or ``route="forward"``):
    every product recomputes each chunk's forward pass, the ``J`` with forward mode (or
    reverse-over-reverse where forward AD is missing), ``C`` classes vmapped; memory
    ``O(C p + chunk activations)``. ``route`` as in :func:`ntk_gram`; the choice is recorded in
    ``op.route`` (``"... (kept graph)"`` or the streaming route) and ``op.memory``.

    ``process_group`` (``None``: the default group when ``torch.distributed`` is initialised;
    ``False``: this rank alone): ``x`` is this rank's shard and the operator is the NTK on the
    concatenated inputs, rank 0's first: ``J_r^T v_r`` on each rank, one all-reduce of ``p``
    numbers (``C p`` for the scalar NTK), ``J_r`` of it and an all-gather of the slices
    (:mod:`spectral_lab.distributed`).

    Example: the kept graph and streaming agree with the Gram.
        >>> from spectral_lab import MLP
        >>> m, x = MLP(4, 2, width=8, depth=2).double(), torch.randn(6, 4, dtype=torch.float64)
        >>> kept, streamed = (ntk_operator(m, x, memory_budget=b) for b in (2**30, 0))
        >>> kept.route, streamed.memory["storage"], (kept @ torch.ones(6)).shape
        ('forward-over-reverse (linearized, kept graph)', 'streaming', torch.Size([6]))
        >>> v = torch.randn(6, dtype=torch.float64)
        >>> all(torch.allclose(op @ v, ntk_gram(m, x) @ v) for op in (kept, streamed))
        True
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    budget = _kept.check_budget(memory_budget)
    group = distributed.resolve_group(process_group)
    if group is not None:  # x is this rank's shard: K on the concatenation
        from .distributed._ntk import sharded_ntk_operator

        return sharded_ntk_operator(model, x, kind, group, route)
    prep, params, x = _setup(model, x)
    model = prep.model
    n = len(x)
    C = prep.num_outputs
    f = _func.functional(model)
    width = C if kind == "scalar" else 1
    chunk = (
        _default_chunk(model, f, params, x, width, budget)
        if chunk_size is None
        else int(chunk_size)
    )
    if chunk < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    zeros = {k: torch.zeros_like(p) for k, p in params.items()}
    memory: dict = {"budget_bytes": budget, "estimate_bytes": None, "storage": "streaming",
                    "chunk_size": chunk}  # fmt: skip
    state = memory  # how blocks ran ("matmat") is recorded beside the storage
    eye = torch.eye(C, dtype=x.dtype, device=x.device)
    size = n * C if kind == "block" else n
    name = f"NTK({kind}, N={n}, C={C})"

    def JT(U):  # (N, C) -> tangent dict, sum over chunks
        acc = zeros
        for i in range(0, n, chunk):
            _, vjp_fn = torch.func.vjp(lambda p, xb=x[i : i + chunk]: f(p, xb), params)
            (g,) = vjp_fn(U[i : i + chunk])
            acc = {k: acc[k] + g[k] for k in acc}
        return acc

    def J(t):  # tangent dict -> (N, C)
        outs = [
            _func.jvp(lambda p, xb=x[i : i + chunk]: f(p, xb), params, t, ad.reverse)[1]
            for i in range(0, n, chunk)
        ]
        return torch.cat(outs)

    def probe(r):
        with _func.eval_mode(model):
            _, vjp_fn = torch.func.vjp(lambda p: f(p, x[:1]), params)
            t = vjp_fn(torch.ones(1, C, dtype=x.dtype, device=x.device))[0]
            _func.jvp(lambda p: f(p, x[:1]), params, t, r.reverse)

    key = ("ntk (operator)", route)
    ad = prep.routes.get(key) or _func.choose_route(route, probe, "ntk (operator)")
    prep.routes[key] = ad
    kept = _kept.ntk_products(model, f, params, x, chunk, C, kind, route, budget, memory, ad)
    if kept is not None:
        op = LinearOperator(lambda v: kept(v, False), size, x.dtype, x.device,
                            matmat=lambda V: kept(V, True), name=name)  # fmt: skip
        op.route, op.memory = kept.route, memory
        prep.routes["ntk (operator)"] = op.route
        return op

    def block_mv(v):
        return J(JT(v.reshape(n, C))).reshape(-1)

    def scalar_mv(v):
        def per_class(e):
            return J(JT(v[:, None] * e[None, :])) @ e

        return _func.vmap_or_loop(per_class, eye, state).sum(1)

    mv = block_mv if kind == "block" else scalar_mv

    def run(fn):
        def wrapped(v):
            with _func.eval_mode(model), ad.context():
                return fn(v).detach()

        return wrapped

    op = LinearOperator(
        run(mv),
        size,
        x.dtype,
        x.device,
        matmat=run(lambda V: _func.vmap_or_loop(mv, V, state)),
        name=name,
    )
    op.route, op.memory = ad.name, memory
    prep.routes["ntk (operator)"] = ad.name
    return op


def ntk_eigs(
    model: nn.Module | Prepared,
    x: torch.Tensor,
    k: int = 10,
    kind: str = "scalar",
    method: str = "auto",
    chunk_size: int | None = None,
    tol: float = 1e-8,
    max_iter: int | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    max_dense: int = 4096,
    *,
    route: str = "auto",
    process_group: Any = None,
) -> EigResult:
    """Top-``k`` eigenvalues (and eigenvectors) of the NTK on ``x``.

    ``method="dense"`` forms the Gram (:func:`ntk_gram`) and calls ``torch.linalg.eigh``
    (``O((NC)^3)``); ``"lanczos"`` runs :func:`~spectral_lab.linalg.lanczos` on
    :func:`ntk_operator`, never forming the Gram (memory ``O(b N C + C p)``, ``b`` the Krylov basis cap
    :func:`~spectral_lab.linalg.default_basis_cap`, whatever ``max_iter`` is); ``"auto"`` is dense when the matrix side is at most ``max_dense`` (a choice, not from
    the paper). ``route`` as in :func:`ntk_gram`; the route used is ``result.route``.
    Eigenvalues are returned largest first. Lanczos draws its start vector from
    ``generator`` or ``seed`` (default 0). ``process_group`` as in :func:`ntk_operator` (``x``
    this rank's shard); there ``"dense"`` forms the Gram from blocks of sharded products
    (``N`` or ``N C`` products) and every rank returns the same result. Runs on the device and
    dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> r = ntk_eigs(MLP(4, 2, width=8, depth=2), torch.randn(6, 4), k=2)
        >>> r.eigenvalues.shape
        torch.Size([2])
    """
    if method not in ("auto", "dense", "lanczos"):
        raise ValueError(f"method must be 'auto', 'dense' or 'lanczos', got {method!r}")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    group = distributed.resolve_group(process_group)
    if group is not None:
        from .distributed._ntk import sharded_ntk_eigs

        return sharded_ntk_eigs(model, x, k, kind, method, tol, max_iter, generator, seed,
                                max_dense, route, group)  # fmt: skip
    prep, _, x = _setup(model, x)
    model, C = prep, prep.num_outputs
    size = len(x) * (C if kind == "block" else 1)
    if not isinstance(k, int) or k < 1 or k > size:
        raise ValueError(f"k must be an int in [1, {size}] (the NTK's size), got {k!r}")
    if method == "auto":
        method = "dense" if size <= max_dense else "lanczos"
    if method == "lanczos":
        g = resolve_generator(generator, seed, x.device)
        return lanczos(
            ntk_operator(model, x, kind, chunk_size, route=route),
            k,
            tol=tol,
            max_iter=max_iter,
            generator=g,
        )
    K = ntk_gram(model, x, kind=kind, chunk_size=chunk_size, route=route)
    if kind == "block":
        K = block_to_matrix(K)
    w, U = torch.linalg.eigh(K)
    w, U = w.flip(0)[:k], U.flip(1)[:, :k]
    res = (K @ U - U * w).norm(dim=0).double().cpu()
    return EigResult(
        eigenvalues=w,
        eigenvectors=U,
        residuals=res,
        matvecs=0,
        converged=True,
        method="dense",
        history=w.double().cpu()[None],
        history_matvecs=torch.zeros(1, dtype=torch.long),
        route=prep.routes.get("ntk"),
    )


# --- linearised dynamics (Lee et al. 2019) ------------------------------------------------------------


def _sym(K: torch.Tensor, name: str = "K") -> torch.Tensor:
    K = check_tensor(K, name, min_dim=2)
    if K.dim() == 4:
        K = block_to_matrix(K)
    if K.dim() != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) kernel matrix, got {tuple(K.shape)}")
    return K


def _check_lr_steps(lr: float, steps: int) -> None:
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")


def linearized_residuals(K: torch.Tensor, r0: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """Predicted residuals ``r_k = (I - eta K~)^k r_0`` for ``k = 0..steps``: ``(steps+1, n)``.

    Gradient descent with step ``eta`` on ``1/2 sum ||f_lin(x_i) - y_i||^2`` for the linearised model
    (see the module docstring). Computed in the eigenbasis ``K~ = U diag(lambda) U^T``:
    ``r_k = U diag((1 - eta lambda)^k) U^T r_0``; it converges iff ``eta < 2 / lambda_max`` (on the
    range of ``K~``). ``K`` is ``(n, n)`` (scalar NTK, or flattened block NTK) or block
    ``(N, N, C, C)``; ``r0`` is flat ``(n,)`` in the same ordering. Cost: one ``eigh``, ``O(n^3)``.
    Runs on the device and dtype of ``K`` (``r0`` is cast to them).

    Example:
        >>> linearized_residuals(torch.eye(2), torch.ones(2), 0.5, 2)[-1]
        tensor([0.2500, 0.2500])
    """
    K = _sym(K)
    _check_lr_steps(lr, steps)
    r0 = check_tensor(r0, "r0").reshape(-1).to(K)
    if r0.shape[0] != K.shape[0]:
        raise ValueError(
            f"r0 has {r0.shape[0]} entries but K is {tuple(K.shape)}; flatten to match"
        )
    lam, U = torch.linalg.eigh(K)
    c = U.T @ r0
    k = torch.arange(steps + 1, dtype=K.dtype, device=K.device)[:, None]
    return ((1 - lr * lam)[None] ** k * c[None]) @ U.T


def label_noise_filter(eigenvalues: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """Fraction ``1 - (1 - eta lambda_i)^k`` of label noise along eigen-direction ``i`` fitted after
    ``k = steps`` steps of the linearised dynamics: large-eigenvalue directions are fitted first.

    Cost: ``O(n)``. Runs on the device and dtype of its input.

    Example:
        >>> label_noise_filter(torch.tensor([1.0, 0.01]), 0.5, 10)
        tensor([0.9990, 0.0489])
    """
    _check_lr_steps(lr, steps)
    lam = torch.as_tensor(eigenvalues)
    return 1 - (1 - lr * lam) ** steps


def label_noise_response(K: torch.Tensor, dy: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """Change of the training-set fit after ``k = steps`` steps when labels move by ``dy``:
    ``Delta f_k = (I - (I - eta K~)^k) dy`` (linearised dynamics); ``||Delta f_k|| <= min(1, k eta
    lambda_max) ||dy||`` for ``eta <= 1/lambda_max``. Shape ``(n,)``.

    Cost: one ``eigh``, ``O(n^3)``. Runs on the device and dtype of ``K`` (``dy`` is cast to them).

    Example:
        >>> label_noise_response(torch.eye(2), torch.ones(2), 0.5, 1)
        tensor([0.5000, 0.5000])
    """
    K = _sym(K)
    dy = check_tensor(dy, "dy").reshape(-1).to(K)
    return dy - linearized_residuals(K, dy, lr, steps)[-1]


def gd_residuals(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    steps: int,
    linearized: bool = False,
) -> torch.Tensor:
    """Residuals ``r_k = f_k(X) - Y`` (flattened, ``(steps+1, N C)``) of full-batch gradient descent
    on ``1/2 sum_i ||f(x_i) - y_i||^2``, without modifying ``model`` (its parameters are copied).
    Note the scale: this loss is the **sum** over the ``N`` samples, ``N`` times ``loss="mse"``
    of :func:`~spectral_lab.train` and :func:`~spectral_lab.hessian_eigs`, so a step ``lr``
    here is a step ``N lr`` on the mean loss. Runs on the device and dtype of the model's
    parameters; inputs are cast to them.

    ``linearized=False`` trains the network itself; ``linearized=True`` trains its linearisation
    ``f_lin(x; theta) = f(x; theta_0) + J_theta(x)(theta - theta_0)``, whose residuals
    equal :func:`linearized_residuals` of the block NTK exactly. Stops early (rows filled with
    ``inf``) if the residual overflows. Cost per step: one VJP and one forward (or JVP) pass.

    Example:
        >>> from spectral_lab import MLP
        >>> m = MLP(3, 1, width=8, depth=2)
        >>> gd_residuals(m, torch.randn(4, 3), torch.zeros(4, 1), 0.01, 5).shape
        torch.Size([6, 4])
    """
    prep, params, x = _setup(model, x)
    model = prep.model
    _check_lr_steps(lr, steps)
    y = check_tensor(y, "y").to(x)
    with _func.eval_mode(model):
        f = _func.functional(model)
        out0, vjp0 = torch.func.vjp(lambda p: check_logits(f(p, x)), params)
        if y.shape != out0.shape:
            raise ValueError(
                f"y must have the model output's shape {tuple(out0.shape)}, got {tuple(y.shape)}"
            )
        theta = {k: p.clone() for k, p in params.items()}
        rows = [(out0 - y).reshape(-1)]
        for _ in range(steps):
            r = rows[-1].reshape(out0.shape)
            if linearized:
                (g,) = vjp0(r)
                theta = {k: theta[k] - lr * g[k] for k in theta}
                delta = {k: theta[k] - params[k] for k in theta}
                _, jd = torch.func.jvp(lambda p: f(p, x), (params,), (delta,))
                out = out0 + jd
            else:
                _, vjp_fn = torch.func.vjp(lambda p: f(p, x), theta)
                (g,) = vjp_fn(r)
                theta = {k: theta[k] - lr * g[k] for k in theta}
                out = f(theta, x)
            rows.append((out - y).reshape(-1).detach())
            if not torch.isfinite(rows[-1]).all():
                rows += [torch.full_like(rows[-1], math.inf)] * (steps + 1 - len(rows))
                break
    return torch.stack(rows).detach()
