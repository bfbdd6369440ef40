"""The Hessian phase of the profile: ``lambda_max(H)`` by Lanczos, one product per piece."""

from __future__ import annotations

import math
import time

import torch

from .core import PRODUCT_UNITS, Budget, OutOfBudget, counted, memo_first


def hessian_phase(
    model, loss_fn, x, y, *, max_iter: int, tol: float, seed: int, budget: Budget,
    stop: str = "residual",
) -> tuple[float | None, bool | None, int, str | None]:  # fmt: skip
    """``lambda_max(H)`` by Lanczos within ``budget``: ``(value, converged, products, route)``;
    ``value`` is ``None`` when the phase was skipped (the reason is in ``budget.skipped``).

    The first Hessian-vector product is the probe: its seconds cap Lanczos at the products
    that fit in the time left, and every later product is a piece whose seconds are predicted
    from those done and not started when they do not fit (:func:`~.core.counted`). Lanczos stops
    on the estimated eigenvalue error (``stop="eigenvalue"``: ``min(r, r^2/delta) <= tol
    |theta|``, about half the products of the residual test; ``stop="residual"`` certifies).
    A run capped by the budget that did not converge returns ``converged=False`` and the reason
    in ``budget.capped``. Cost: at most ``max_iter`` products of ``3 n`` sample-gradients each.

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> m, x, y = MLP(4, 3, width=8), torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> b = Budget(progress=False)
        >>> lam, ok, k, _ = hessian_phase(m, "cross_entropy", x, y, max_iter=30, tol=1e-3,
        ...                               seed=0, budget=b)
        >>> ok, b.phases["hessian"].products == k
        (True, True)
    """
    from ..hessian import hessian_operator
    from ..linalg import lanczos

    rec = budget.log("hessian")
    left = budget.matvecs_left()
    if left < 2:
        budget.skipped["hessian"] = (
            f"the matvec budget ({budget.matvec_budget}) leaves {int(left)} products; Lanczos "
            "needs at least 2 Hessian-vector products"
        )
        rec.cut = budget.skipped["hessian"]
        return None, None, 0, None
    why = budget.time_out()
    if why:
        budget.skipped["hessian"] = rec.cut = why
        return None, None, 0, None
    units = PRODUCT_UNITS * len(x)
    unit = budget.unit_seconds()  # the operator's set-up probes and 2 products, before any
    if unit is not None and not budget.fits(3 * units * unit):
        budget.skipped["hessian"] = rec.cut = (
            f"predicted {3 * units * unit:.3g} s for the Hessian operator and two products "
            f"(from the earlier phases' seconds per sample-gradient); "
            f"{max(budget.time_left(), 0):.3g} s of the time budget were left"
        )
        return None, None, 0, None
    t = time.perf_counter()
    op = hessian_operator(model, (x, y), loss=loss_fn)
    bar = budget.bar("Hessian (Lanczos)", max_iter, "HVP")
    res = None
    try:
        cop = counted(op, budget, bar, phase="hessian", units=units)
        g = torch.Generator(device=op.device).manual_seed(seed)
        v0 = torch.randn(op.dim, generator=g, device=op.device, dtype=op.dtype)
        v0 = v0 / v0.norm()
        t1 = time.perf_counter()
        w0 = cop.mv(v0)  # the probe: one product
        t_mv = time.perf_counter() - t1
        left_t = budget.time_left()
        allowed = 10**9 if math.isinf(left_t) else 1 + math.floor(left_t / max(t_mv, 1e-9))
        rec.predicted_s = t_mv * max_iter
        if allowed < 2:
            budget.skipped["hessian"] = rec.cut = (
                f"one Hessian-vector product took {t_mv:.3g} s and Lanczos needs up to "
                f"{max_iter} ({t_mv * max_iter:.3g} s); {max(budget.time_left(), 0):.3g} s of the "
                f"time budget were left"
            )
            return None, None, int(op.n_products), op.route
        cap = min(max_iter, allowed, 1 + int(min(budget.matvecs_left(), 10**9)))
        if cap < max_iter:
            src = "time" if allowed <= 1 + budget.matvecs_left() else "matvec"
            budget.capped["hessian"] = (
                f"Lanczos capped at {cap} of max_iter={max_iter} products by the {src} budget"
            )
        res = lanczos(
            memo_first(cop, v0, w0), 1, which="LA", tol=tol, max_iter=cap, v0=v0,
            return_vectors=False, stop=stop,
        )  # fmt: skip
    except OutOfBudget as e:
        budget.skipped["hessian"] = rec.cut = f"stopped during Lanczos: {e}"
        return None, None, int(op.n_products), op.route
    finally:
        bar.close()
        budget.seconds["hessian"] = time.perf_counter() - t
        if res is not None:
            rec.computed = (
                f"lambda_max(H) on {len(x)} samples, {res.matvecs} Hessian-vector products, "
                + ("converged" if res.converged else "not converged")
                + f" (stop={stop!r}, tol={tol:g})"
            )
    if res.converged:
        budget.capped.pop("hessian", None)
    else:
        rec.cut = budget.capped.get("hessian", f"max_iter={max_iter} products reached")
    return float(res.eigenvalues[0]), bool(res.converged), int(res.matvecs), op.route
