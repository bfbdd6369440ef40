"""The NTK phase of the profile: the dense NTK Gram in pieces, cut to the samples that fit.

Scalar NTK (the default): ``K = sum_c G_c G_c^T`` with ``G_c`` the ``n x p`` per-sample
gradients of output ``c``; they are computed a chunk of samples and one class at a time (a
*piece*), so memory is two chunks of ``m x p`` numbers (``m`` from the memory budget) and the work
is about ``C n`` sample-gradients (``C n / N`` gradient-equivalents on the profile's ``N``
samples) -- against ``C n^2 / 2`` JVP+VJP pairs for the same Gram from NTK-vector products.
Column chunks are finished in order, so after each one ``K[:e, :e]`` is the complete Gram of the
first ``e`` samples: a budget that runs out keeps the largest complete Gram (at least 2 samples)
and reports the samples it cut. The block NTK (``nC x nC``), and models that cannot be vmapped
over samples, use NTK-vector products column block by column block (upper triangle only).
"""

from __future__ import annotations

import time

import torch

from .core import PRODUCT_UNITS, Budget, OutOfBudget

_DEFAULT_BYTES = 2**31  # chunk memory when no memory budget is given


def _predict_rest(done: list[tuple[int, int, float]], todo: list[tuple[int, int]]) -> float:
    """Seconds for the column blocks ``todo`` (columns, rows), from the blocks ``done``
    (columns, rows, seconds) under the model ``t = columns (a + b rows)`` (a per-column VJP and
    a JVP over the rows), ``a, b >= 0`` fitted by least squares; with one block, ``a = 0`` (all
    cost in the rows: the larger prediction).

    >>> _predict_rest([(2, 4, 8.0)], [(2, 8)])  # 1 s per column-row: 2 columns x 8 rows
    16.0
    """
    if len(done) == 1:
        c, r, t = done[0]
        a, b = 0.0, t / (c * r)
    else:
        A = torch.tensor([[c, c * r] for c, r, _ in done], dtype=torch.float64)
        t = torch.tensor([t for *_, t in done], dtype=torch.float64)
        a, b = (max(float(v), 0.0) for v in torch.linalg.lstsq(A, t[:, None]).solution[:, 0])
        if a == 0.0 or b == 0.0:  # a clipped coefficient: refit the other alone
            col = A[:, 1] if a == 0.0 else A[:, 0]
            v = float(col @ t / (col @ col))
            a, b = (0.0, v) if a == 0.0 else (v, 0.0)
    return sum(c * (a + b * r) for c, r in todo)


def class_gradient_cost(n: int, m: int, C: int) -> int:
    """Sample-gradients of the chunked scalar Gram on ``n`` samples, chunks of ``m``: column
    chunk ``b`` (ending at ``e_b``) recomputes the chunks before it, ``C sum_b e_b``.

    >>> class_gradient_cost(32, 32, 10), class_gradient_cost(32, 12, 10)
    (320, 680)
    """
    return C * sum(min(s + m, n) for s in range(0, n, m))


def largest_prefix(n: int, m: int, C: int, seconds_per_unit: float, seconds: float) -> int:
    """The most samples ``n' <= n`` whose chunked Gram is predicted to fit in ``seconds``
    (0 when not even 2 fit).

    >>> largest_prefix(32, 8, 10, 0.01, 1e9), largest_prefix(32, 8, 10, 0.01, 2.0)
    (32, 12)
    >>> largest_prefix(32, 8, 10, 1.0, 5.0)
    0
    """
    for k in range(n, 1, -1):
        if class_gradient_cost(k, m, C) * seconds_per_unit <= seconds:
            return k
    return 0


def _contract64(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``A B^T`` accumulated in float64, ``2**20`` columns at a time (a float32 sum over ``p``
    terms loses ~1e-4 relative on ResNet-18)."""
    out = torch.zeros(len(A), len(B), dtype=torch.float64, device=A.device)
    for k in range(0, A.shape[1], 2**20):
        out += A[:, k : k + 2**20].double() @ B[:, k : k + 2**20].double().T
    return out


def _class_grads(prep):
    """``grads(xc, c)``: the ``(m, p)`` per-sample gradients of output ``c`` (vmap over samples)."""
    from .. import _func
    from .._checks import check_logits

    params = _func.trainable(prep.model)
    f = _func.functional(prep.model)

    def grads(xc: torch.Tensor, c: int) -> torch.Tensor:
        def one(xi):
            g = torch.func.grad(lambda p: check_logits(f(p, xi[None]))[0, c])(params)
            return _func.flatten(g)

        with _func.eval_mode(prep.model):
            return torch.func.vmap(one)(xc).detach()

    return grads, _func.num_params(params)


def _scalar_gram(prep, x, budget: Budget, block: int):
    """The scalar Gram by class gradients; ``(K, n_done)`` or raises ``RuntimeError`` on a model
    that cannot be vmapped over samples (before any real work: the probe is one sample)."""
    rec = budget.log("ntk")
    n, C = len(x), prep.num_outputs
    grads, p = _class_grads(prep)
    per_sample = 2 * p * x.element_size()  # the gradient rows and vmap's unflattened copy
    limit = budget.memory_budget or _DEFAULT_BYTES
    m = max(1, min(n, block or n, int(limit // (2 * per_sample))))
    with budget.piece("ntk", units=1):  # the probe: one sample, one class
        grads(x[:1], 0)
    total = class_gradient_cost(n, m, C)
    rate = rec.rate.predict(1)
    rec.predicted_s = total * rate
    n_use = n
    if rec.predicted_s > budget.time_left():
        n_use = largest_prefix(n, m, C, rate, budget.time_left())
        if n_use < 2:
            raise OutOfBudget(
                f"predicted {rec.predicted_s:.3g} s for the NTK Gram on {n} samples "
                f"({total} sample-gradients at {rate:.3g} s from a one-sample probe), and "
                f"{class_gradient_cost(2, m, C) * rate:.3g} s for 2 samples; "
                f"{max(budget.time_left(), 0):.3g} s of the time budget were left"
            )
        rec.cut = (
            f"{n - n_use} of {n} samples: the Gram on {n} was predicted to take "
            f"{rec.predicted_s:.3g} s, {max(budget.time_left(), 0):.3g} s were left"
        )
    K = torch.zeros(n_use, n_use, dtype=torch.float64, device=x.device)
    done = 0
    bar = budget.bar("NTK Gram", n_use, "sample")
    try:
        for s in range(0, n_use, m):
            e = min(s + m, n_use)
            Kb = torch.zeros(e, e - s, dtype=torch.float64, device=x.device)
            for c in range(C):
                units = e  # this column chunk and every chunk before it
                if not budget.fits(rec.rate.predict(units)):
                    rec.cut = (
                        f"{n - done} of {n} samples: the next column chunk was predicted to "
                        f"take {rec.rate.predict(units):.3g} s and "
                        f"{max(budget.time_left(), 0):.3g} s were left"
                    )
                    raise OutOfBudget(rec.cut)
                with budget.piece("ntk", units=units):
                    Gb = grads(x[s:e], c)
                    budget.hold(2 * Gb.numel() * Gb.element_size())
                    Kb[s:e] += _contract64(Gb, Gb)
                    for a in range(0, s, m):
                        Ga = grads(x[a : min(a + m, s)], c)
                        Kb[a : min(a + m, s)] += _contract64(Ga, Gb)
            K[:e, s:e] = Kb
            K[s:e, :e] = Kb.T
            done = e
            bar.update(e - s)
    except OutOfBudget:
        if done < 2:
            raise
    finally:
        bar.close()
    rec.products = done
    return K[:done, :done], done, f"class gradients (vmap over samples, chunks of {m})"


def _ntvp_gram(prep, x, kind: str, budget: Budget, block: int):
    """The Gram by NTK-vector products, column blocks on and above the diagonal."""
    from ..ntk import ntk_gram

    rec = budget.log("ntk")
    n, C = len(x), prep.num_outputs
    K = None
    starts = list(range(0, n, block))
    blocks: list[tuple[int, int, float]] = []  # (columns, rows, seconds)
    done = 0
    for s in starts:
        e = min(s + block, n)
        if blocks:
            rest = _predict_rest(blocks, [(min(block, n - r), min(r + block, n))
                                          for r in starts if r >= s])  # fmt: skip
            nxt = _predict_rest(blocks, [(e - s, e)])
            rec.predicted_s = sum(b[2] for b in blocks) + rest
            if not budget.fits(nxt) or (rest > budget.time_left() and done < 2):
                spent = sum(b[2] for b in blocks)
                rec.cut = (
                    f"{n - s} of {n} samples: predicted {rest:.3g} s for the rest of the NTK "
                    f"Gram (from {spent:.3g} s for the first {s} columns); "
                    f"{max(budget.time_left(), 0):.3g} s of the time budget were left"
                )
                break
        tb = time.perf_counter()
        with budget.piece("ntk", units=PRODUCT_UNITS * C * e * (e - s)):
            kb = ntk_gram(prep, x[:e], x[s:e], method="ntvp", kind=kind).detach()
        if K is None:
            shape = (n, n) if kind == "scalar" else (n, n, C, C)
            K = torch.zeros(shape, dtype=kb.dtype, device=kb.device)
        K[:e, s:e] = kb
        K[s:e, :e] = kb.transpose(0, 1) if kind == "scalar" else kb.permute(1, 0, 3, 2)
        blocks.append((e - s, e, time.perf_counter() - tb))
        done = e
    if done < 2:
        raise OutOfBudget(rec.cut or "no column block fitted")
    rec.products = done
    return K[:done, :done], done, "NTK-vector products"


def ntk_phase(
    model, x, kind: str, *, budget: Budget, block: int | None = None, dense_limit: int = 2**30
) -> torch.Tensor | None:
    """All eigenvalues of the scalar or block NTK Gram on (the first samples of) ``x`` within
    ``budget``, or ``None`` when skipped (the reason is in ``budget.skipped``). The Gram covers
    ``len(eigenvalues)`` samples (scalar) or ``len(eigenvalues) / C`` (block): fewer than
    ``len(x)`` when the budget cut it (``budget.phases["ntk"].cut`` says how many and why).

    Scalar: per-class per-sample gradients (see the module docstring; ``block`` samples per
    column chunk at most, default as many as fit two chunks in ``budget.memory_budget``, or
    2 GiB without one). Block: one
    :func:`~spectral_lab.ntk.ntk_gram` call (its ``"jacobian"`` method) when the Jacobians fit in
    ``dense_limit`` bytes, else NTK-vector products ``block`` (default 8) columns at a time, each block's
    seconds predicted from those done. Cost (scalar): about ``C n`` sample-gradients and
    ``n^2 p`` float64 multiply-adds; memory two chunks of per-sample gradients.

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> lam = ntk_phase(MLP(4, 3, width=8), torch.randn(6, 4), "scalar",
        ...                 budget=Budget(progress=False))
        >>> lam.shape, bool(lam[0] >= -1e-6)
        (torch.Size([6]), True)
    """
    from ..ntk import block_to_matrix, ntk_gram
    from ..prepared import prepare

    rec = budget.log("ntk")
    n = len(x)
    t = time.perf_counter()
    left = budget.matvecs_left()
    if left < 2 or (left < n and kind != "scalar"):
        budget.skipped["ntk"] = rec.cut = (
            f"the dense NTK Gram on {n} samples needs {n} NTK-vector products; the matvec "
            f"budget ({budget.matvec_budget}) leaves {int(left)}"
        )
        return None
    if left < n:
        rec.cut = f"{n - int(left)} of {n} samples: the matvec budget leaves {int(left)} products"
        x = x[: int(left)]
        n = len(x)
    why = budget.time_out()
    if why:
        budget.skipped["ntk"] = rec.cut = why
        return None
    prep = prepare(model, x)
    p, C = prep.num_params, prep.num_outputs
    unit = budget.unit_seconds()  # the probe and the Gram on 2 samples, before any NTK work
    if unit is not None and not budget.fits((1 + 2 * C) * unit):
        budget.skipped["ntk"] = rec.cut = (
            f"predicted {(1 + 2 * C) * unit:.3g} s for the probe and the Gram on 2 samples "
            f"(from the earlier phases' seconds per sample-gradient); "
            f"{max(budget.time_left(), 0):.3g} s of the time budget were left"
        )
        return None
    try:
        K = None
        if kind == "scalar":
            try:
                K, n_done, how = _scalar_gram(prep, x, budget, block)
            except (RuntimeError, NotImplementedError) as err:
                if isinstance(err, OutOfBudget):
                    raise
                K = None  # a model that cannot be vmapped over samples: NTK-vector products
        if K is None:
            if kind == "block" and 2 * n * C * p * x.element_size() <= min(
                dense_limit, budget.memory_budget or dense_limit
            ):
                with budget.piece("ntk", units=C * n):
                    K = ntk_gram(prep, x, kind=kind).detach()
                n_done, how = n, "dense Jacobians"
                budget.hold(n * C * p * x.element_size())
            else:
                K, n_done, how = _ntvp_gram(prep, x, kind, budget, block or 8)
        budget.matvecs += n_done  # a dense Gram on n samples counts n products
    except OutOfBudget as e:
        why = str(e)
        budget.skipped["ntk"] = (
            why if why.startswith("predicted") else f"stopped while building the NTK Gram: {why}"
        )
        rec.cut = rec.cut or budget.skipped["ntk"]
        return None
    finally:
        budget.seconds["ntk"] = time.perf_counter() - t
    rec.computed = f"{kind} NTK Gram on {n_done} samples ({how})"
    K = K.double()
    if kind == "block":
        K = block_to_matrix(K)
    return torch.linalg.eigvalsh(0.5 * (K + K.T))
