"""The per-sample phases under a budget: input-Jacobian rows in pieces, and the parameter
Jacobian's top singular value, exact or matrix-free.

Input Jacobian: with no time or memory budget, one :func:`~spectral_lab.jacobians.input_jacobian`
call per batch (its fastest route). Under a budget, a probe (one sample, one output row: a forward
and one backward pass) gives the seconds per sample-row; the batch is cut to the samples whose
``C`` rows fit in the time left, then one forward pass and one backward pass per output row of
``sum_n f_c(x_n)`` (a piece each), the clock checked between rows. When not even one sample's
``C`` rows fit (ResNet-50's 1000 classes, GPT-2's 50257), or when the ``m x C x d`` block does
not fit the memory limit (1 GiB without a budget), the rows that fit are returned (``(m, k, d)``,
``k < C``): ``sigma_1`` and ``||J||_F`` of a subset of rows are *lower* estimates (interlacing;
the missing rows count as zero in ``||J||_F / sqrt(C)``), and the cut is reported. Memory: the Jacobian block ``m C d`` plus the graph of ``m`` samples
stays within the memory budget (samples per pass, then rows held).
"""

from __future__ import annotations

import math

import torch

from .core import PRODUCT_UNITS, Budget

_ROW_BYTES = 2**30  # Jacobian rows held at once without a memory budget (input_jacobian's own)
_PARAM_BYTES = 2**31  # one chunk of parameter Jacobians without a memory budget


def _rows_chunk(f, xin, rows: range, budget: Budget, out: torch.Tensor) -> int:
    """Rows ``rows`` of the input Jacobian of ``f`` at ``xin`` into ``out`` (one backward pass
    per row, a piece each); the number of rows done (fewer when the time ran out)."""
    from .._checks import check_logits

    rec = budget.log("input_jacobian")
    m = len(xin)
    xc = xin.detach().requires_grad_(True)
    done = 0
    with torch.enable_grad():
        with budget.piece("input_jacobian", units=m / 3):  # the forward pass
            fx = check_logits(f(xc))
        for k in rows:
            if not budget.fits(rec.rate.predict(m), "samples") and done > 0:
                break
            with budget.piece("input_jacobian", units=m):
                (g,) = torch.autograd.grad(fx[:, k].sum(), xc, retain_graph=True)
                out[:, k] = g.reshape(m, -1)
            done += 1
    return done


def input_jacobian_rows(prep, xr: torch.Tensor, budget: Budget) -> torch.Tensor | None:
    """The input Jacobians ``(m, k, d)`` of the first ``m <= len(xr)`` samples of the batch
    ``xr`` under ``budget``, ``k = C`` rows unless cut (see the module docstring): at least
    one output row of one sample (the probe's worth); the batch is done in sub-batches sized by
    the rate learnt so far, the clock checked between them and between rows.

    Example:
        >>> import torch
        >>> from spectral_lab import MLP, prepare
        >>> m, x = MLP(4, 3, width=8), torch.randn(5, 4)
        >>> prep = prepare(m, x)
        >>> J = input_jacobian_rows(prep, x, Budget(time_budget=60, progress=False))
        >>> from spectral_lab.jacobians import input_jacobian
        >>> torch.allclose(J, input_jacobian(prep, x), atol=1e-6)
        True
    """
    from ..jacobians import input_jacobian

    rec = budget.log("input_jacobian")
    C, n = prep.num_outputs, len(xr)
    if budget.time_budget is None and budget.memory_budget is None:
        with budget.piece("input_jacobian", units=C * n + n / 3):
            J = input_jacobian(prep, xr).detach()
        _note(rec, budget, J.shape[0], C, C)
        return J
    f, xin = prep.input_space(xr)
    d = xin[0].numel()
    elt = xin.element_size()
    if rec.rate.last is None and not prep.tokens:  # the probe: one sample, one row
        from .._kept import saved_bytes

        x1 = xin[:1].detach().requires_grad_(True)
        with budget.piece("input_jacobian", units=1), torch.enable_grad():
            out, graph = saved_bytes(lambda: f(x1))
            torch.autograd.grad(out[:, 0].sum(), x1)
        rec.graph_bytes = graph
    graph = rec.graph_bytes
    limit = budget.memory_budget or _ROW_BYTES
    # samples per pass: their graph and all C rows fit (token models: the batch is one piece)
    m_mem = n if prep.tokens else budget.chunk(graph + C * d * elt, n)
    parts: list[torch.Tensor] = []
    i = 0
    while i < n:
        # a sub-batch sized by the rate learnt so far (the probe's one-sample rate first, then
        # the amortised rate of the sub-batches done), the clock checked between sub-batches
        m = min(m_mem, n - i)
        left = budget.time_left("samples")
        per = rec.rate.predict(C + 1 / 3)
        if not prep.tokens and per is not None and not math.isinf(left):
            if parts and per > left:
                break
            m = min(m, max(1, int(left // per)))
        rows = max(1, min(C, int(limit // max(1, m * d * elt))))  # rows held: the memory limit
        J = xin.new_zeros(m, rows, d)
        budget.hold(J.numel() * elt + m * graph)
        done = _rows_chunk(f, xin[i : i + m], range(rows), budget, J)
        if done < C and parts:  # a later sub-batch cut in its rows: keep the complete ones
            break
        parts.append(J[:, :done])
        i += m
        if done < C:
            why = "time" if done < rows else "memory"
            rec.cut = (
                f"rows {done + 1}..{C} of the {C} output rows of {m} sample(s) were not "
                f"computed (the {why} budget): sigma_1 and ||J_f||_F are lower estimates"
            )
            budget.capped["input_jacobian"] = rec.cut
            budget.capped["samples"] = "the stream stopped in a sample's output rows"
            break
    J = torch.cat(parts) if len(parts) > 1 else parts[0]
    if len(J) < n and J.shape[1] == C:
        rec.cut = f"the stream stopped after {len(J)} of the batch's {n} samples (time budget)"
    _note(rec, budget, len(J), C, J.shape[1])
    return J


def _note(rec, budget: Budget, m: int, C: int, rows: int) -> None:
    rec.samples += m
    rec.products += m * rows
    rec.computed = f"{rec.samples} samples" + ("" if rows == C else f" ({rows} of {C} rows)")


def param_top(prep, x, chunk_size: int | None, elements: int, tick=None, budget=None):
    """``sigma_1(J_theta(x_i))`` per sample, for as many samples as the budget allows.

    Exact route (one sample's ``C x p`` Jacobian fits the memory budget, default 2 GiB): the
    ``C x C`` per-sample Gram ``J J^T`` (float64, ``2**20`` parameters at a time), the Jacobians of
    ``chunk_size`` samples held at once (default: as many as fit in ``elements`` tensor
    elements and the memory budget); a chunk is a piece, its seconds predicted from the chunks
    done (the first sample is the probe). Matrix-free route (one sample's Jacobian does not fit:
    ResNet-50, GPT-2): Lanczos on ``J J^T`` (``C x C``), one VJP+JVP per product, stopped on the
    eigenvalue estimate (``tol=1e-3``): a lower estimate within about that relative error.
    ``tick(k)`` is called after each chunk of ``k`` samples (a progress bar). Cost: ``C``
    sample-gradients per sample (exact), ``3`` per product (matrix-free).
    """
    from ..jacobians import parameter_jacobian

    budget = Budget(progress=False) if budget is None else budget
    rec = budget.log("parameter_jacobian")
    C, p = prep.num_outputs, prep.num_params
    per_sample = C * p * x.element_size()
    if per_sample > (budget.memory_budget or _PARAM_BYTES):
        return _param_top_lanczos(prep, x, budget, tick)
    chunk = chunk_size or max(1, elements // max(1, C * p))
    chunk = budget.chunk(per_sample, chunk)
    if rec.rate.last is None and budget.time_budget is not None:
        _probe_row(prep, x[:1], budget)  # one sample, one output row: one VJP
    out = []
    i = 0
    while i < len(x):
        k = min(chunk, len(x) - i) if rec.rate.last is not None else 1
        if not budget.fits(rec.rate.predict(C * k), "samples"):
            rec.cut = f"the samples after the first {rec.samples} (time budget)"
            break
        with budget.piece("parameter_jacobian", units=C * k):
            j = parameter_jacobian(prep, x[i : i + k]).detach()
            budget.hold(j.numel() * j.element_size())
            g = torch.zeros(j.shape[0], C, C, dtype=torch.float64, device=j.device)
            for a in range(0, j.shape[2], 2**20):
                jk = j[..., a : a + 2**20].double()
                g += jk @ jk.transpose(1, 2)
            out.append(torch.linalg.eigvalsh(g).select(-1, -1).clamp_min(0).sqrt())
        rec.samples += k
        rec.computed = f"{rec.samples} samples (exact C x C Gram)"
        i += k
        if tick is not None:
            tick(k)
    return torch.cat(out) if out else x.new_zeros(0, dtype=torch.float64)


def _probe_row(prep, x1, budget: Budget) -> None:
    """Time one VJP of one output row on one sample: the parameter Jacobian's probe."""
    from .. import _func
    from .._checks import check_logits

    params = _func.trainable(prep.model)
    f = _func.functional(prep.model)
    with budget.piece("parameter_jacobian", units=1), _func.eval_mode(prep.model):
        out, vjp_fn = torch.func.vjp(lambda p: check_logits(f(p, x1)), params)
        e = torch.zeros_like(out)
        e[0, 0] = 1
        vjp_fn(e)


def _param_top_lanczos(prep, x, budget: Budget, tick=None, tol: float = 1e-3):
    from ..jacobians import parameter_jacobian_operator
    from ..linalg import lanczos
    from .core import OutOfBudget, counted

    rec = budget.log("parameter_jacobian")
    C = prep.num_outputs
    out = []
    for i in range(len(x)):
        # before the operator's route probe: the products of one sample, predicted from the
        # products done, or from the earlier phases' seconds per sample-gradient
        unit = budget.unit_seconds() if rec.rate.last is None else rec.rate.predict(1)
        pred = None if unit is None else unit * PRODUCT_UNITS * min(C, 30)
        if not budget.fits(pred, "samples"):
            rec.cut = (
                f"the samples after the first {len(out)}: "
                + ("no time left" if pred is None else f"predicted {pred:.3g} s for the next")
                + f", {max(budget.time_left('samples'), 0):.3g} s left"
            )
            break
        op = parameter_jacobian_operator(prep, x[i : i + 1]).gram("right")
        cop = counted(op, budget, phase="parameter_jacobian", units=PRODUCT_UNITS, charge=False)
        try:
            res = lanczos(cop, 1, tol=tol, max_iter=min(C, 100), stop="eigenvalue",
                          return_vectors=False, seed=i)  # fmt: skip
        except OutOfBudget as e:
            rec.cut = f"the samples after the first {len(out)}: {e}"
            break
        out.append(res.eigenvalues.double().clamp_min(0).sqrt().reshape(1).cpu())
        rec.samples += 1
        rec.computed = f"{rec.samples} samples (matrix-free Lanczos on J J^T, tol={tol:g})"
        if tick is not None:
            tick(1)
    return torch.cat(out) if out else x.new_zeros(0, dtype=torch.float64)
