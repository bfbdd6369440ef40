"""Per-phase progress and time / matvec budgets for :func:`spectral_lab.diagnose`.

:class:`Budget` holds what a run may spend (``time_budget`` seconds of wall time,
``matvec_budget`` operator products) and records, per phase, what it skipped or stopped and why.
The NTK and Hessian phases live here too, because they are where the budget bites:

* :func:`ntk_phase` builds the dense NTK Gram column block by column block (only the upper
  triangle: ``K`` is symmetric), ticking a bar per block and predicting the cost of the rest from
  the first block before spending it;
* :func:`hessian_phase` times one Hessian-vector product, caps Lanczos at the products the budget
  allows, and hands Lanczos a :func:`counted` operator whose every product ticks the bar and is
  charged to the budget.

A *matvec* is one product with an operator: one Hessian-vector product, or one NTK-vector product
(a dense Gram on ``n`` samples is ``n`` of them, each ``C`` VJP+JVP pairs).
"""

from __future__ import annotations

import math
import time

import torch

from ._progress import headless
from .linalg import LinearOperator


class OutOfBudget(Exception):
    """Raised by a :func:`counted` operator when the budget ran out between products."""


class Budget:
    """What a run may spend and what it skipped: ``time_budget`` seconds (from construction),
    ``matvec_budget`` operator products (``None``: unlimited); ``progress`` switches the bars
    (off in headless runs, see :mod:`spectral_lab._progress`)."""

    def __init__(
        self,
        time_budget: float | None = None,
        matvec_budget: int | None = None,
        progress: bool = True,
    ) -> None:
        if time_budget is not None and not (float(time_budget) > 0):
            raise ValueError(
                f"time_budget must be a positive number of seconds, got {time_budget!r}"
            )
        if matvec_budget is not None and (
            isinstance(matvec_budget, bool)
            or int(matvec_budget) != matvec_budget
            or matvec_budget < 0
        ):
            raise ValueError(f"matvec_budget must be a non-negative int, got {matvec_budget!r}")
        self.time_budget = None if time_budget is None else float(time_budget)
        self.matvec_budget = None if matvec_budget is None else int(matvec_budget)
        self.progress = progress
        self.t0 = time.perf_counter()
        self.matvecs = 0
        #: phase -> why it was skipped (not run at all) or stopped (run, result unusable)
        self.skipped: dict[str, str] = {}
        #: phase -> why its solver was stopped early (result kept, "not certified")
        self.capped: dict[str, str] = {}
        #: phase -> seconds spent
        self.seconds: dict[str, float] = {}

    # ------------------------------------------------------------------ accounting
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def time_left(self) -> float:
        return math.inf if self.time_budget is None else self.time_budget - self.elapsed()

    def matvecs_left(self) -> float:
        return math.inf if self.matvec_budget is None else self.matvec_budget - self.matvecs

    def time_out(self) -> str | None:
        """Why the time is up, or ``None``."""
        if self.time_left() <= 0:
            return f"the time budget of {self.time_budget:g} s was spent"
        return None

    def charge(self, n: int) -> None:
        """Spend ``n`` products, or raise :class:`OutOfBudget` (before spending) if they do not
        fit or the time is up."""
        if n > self.matvecs_left():
            raise OutOfBudget(
                f"the matvec budget of {self.matvec_budget} products was spent "
                f"({self.matvecs} used)"
            )
        why = self.time_out()
        if why:
            raise OutOfBudget(why)
        self.matvecs += n

    def bar(self, desc: str, total: int | None, unit: str):
        """A tqdm bar for one phase (disabled when ``progress`` is off or the run is headless)."""
        from tqdm.auto import tqdm

        return tqdm(
            total=total, desc=desc, unit=unit, leave=False,
            disable=not self.progress or headless(),
        )  # fmt: skip

    def to_dict(self) -> dict:
        return {
            "time_budget": self.time_budget,
            "matvec_budget": self.matvec_budget,
            "matvecs": self.matvecs,
            "skipped": dict(self.skipped),
            "capped": dict(self.capped),
            "seconds": dict(self.seconds),
        }


def counted(op: LinearOperator, budget: Budget, bar=None) -> LinearOperator:
    """``op`` with every product charged to ``budget`` (raising :class:`OutOfBudget` before a
    product that does not fit) and ticking ``bar``; the route and name are kept."""

    def mv(v):
        budget.charge(1)
        out = op.mv(v)
        if bar is not None:
            bar.update(1)
        return out

    def mm(V):
        budget.charge(V.shape[1])
        out = op.mm(V)
        if bar is not None:
            bar.update(V.shape[1])
        return out

    w = LinearOperator(mv, op.dim, op.dtype, op.device, matmat=mm, name=op.name)
    w.route = op.route
    return w


def _memo_first(op: LinearOperator, v0: torch.Tensor, w0: torch.Tensor) -> LinearOperator:
    """``op`` that answers a product with (a multiple of) ``v0`` from the already computed
    ``w0 = op v0`` once, so timing the first product costs nothing extra."""
    used = [False]

    def mv(v):
        if not used[0]:
            used[0] = True
            c = float(v @ v0) / float(v0 @ v0)
            if float((v - c * v0).norm()) <= 1e-6 * float(v.norm()):
                return c * w0
        return op.mv(v)

    w = LinearOperator(mv, op.dim, op.dtype, op.device, matmat=op.mm, name=op.name)
    w.route = op.route
    return w


def hessian_phase(
    model, loss_fn, x, y, *, max_iter: int, tol: float, seed: int, budget: Budget
) -> tuple[float | None, bool | None, int, str | None]:
    """``lambda_max(H)`` by Lanczos within ``budget``: ``(value, converged, products, route)``;
    ``value`` is ``None`` when the phase was skipped (the reason is in ``budget.skipped``). A run
    capped by the budget that did not converge returns ``converged=False`` and the reason in
    ``budget.capped``."""
    from .hessian import hessian_operator
    from .linalg import lanczos

    left = budget.matvecs_left()
    if left < 2:
        budget.skipped["hessian"] = (
            f"the matvec budget ({budget.matvec_budget}) leaves {int(left)} products; Lanczos "
            "needs at least 2 Hessian-vector products"
        )
        return None, None, 0, None
    why = budget.time_out()
    if why:
        budget.skipped["hessian"] = why
        return None, None, 0, None
    t = time.perf_counter()
    op = hessian_operator(model, (x, y), loss=loss_fn)
    bar = budget.bar("Hessian (Lanczos)", max_iter, "HVP")
    try:
        cop = counted(op, budget, bar)
        g = torch.Generator(device=op.device).manual_seed(seed)
        v0 = torch.randn(op.dim, generator=g, device=op.device, dtype=op.dtype)
        v0 = v0 / v0.norm()
        t1 = time.perf_counter()
        w0 = cop.mv(v0)
        t_mv = time.perf_counter() - t1
        steps = max_iter
        left_m = budget.matvecs_left()
        left_t = budget.time_left()
        allowed = 10**9 if math.isinf(left_t) else 1 + math.floor(left_t / max(t_mv, 1e-9))
        if allowed < 2:
            budget.skipped["hessian"] = (
                f"one Hessian-vector product took {t_mv:.3g} s and Lanczos needs up to "
                f"{max_iter} ({t_mv * max_iter:.3g} s); {max(budget.time_left(), 0):.3g} s of the "
                f"time budget were left"
            )
            return None, None, budget_used(op), op.route
        cap = min(steps, allowed, 1 + int(min(left_m, 10**9)))
        if cap < steps:
            src = "time" if allowed <= 1 + left_m else "matvec"
            budget.capped["hessian"] = (
                f"Lanczos capped at {cap} of max_iter={max_iter} products by the {src} budget"
            )
        res = lanczos(
            _memo_first(cop, v0, w0), 1, which="LA", tol=tol, max_iter=cap, v0=v0,
            return_vectors=False,
        )  # fmt: skip
    except OutOfBudget as e:
        budget.skipped["hessian"] = f"stopped during Lanczos: {e}"
        return None, None, budget_used(op), op.route
    finally:
        bar.close()
        budget.seconds["hessian"] = time.perf_counter() - t
    if res.converged:
        budget.capped.pop("hessian", None)
    return float(res.eigenvalues[0]), bool(res.converged), int(res.matvecs), op.route


def budget_used(op: LinearOperator) -> int:
    return int(op.n_products)


def _predict_rest(done: list[tuple[int, int, float]], todo: list[tuple[int, int]]) -> float:
    """Seconds for the column blocks ``todo`` (columns, rows), from the blocks ``done``
    (columns, rows, seconds) under the model ``t = columns (a + b rows)`` (a per-column VJP and
    a JVP over the rows), ``a, b >= 0`` fitted by least squares; with one block, ``a = 0`` (all
    cost in the rows: the larger prediction)."""
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


def ntk_phase(
    model, x, kind: str, *, budget: Budget, block: int = 8, dense_limit: int = 2**30
) -> torch.Tensor | None:
    """All eigenvalues of the scalar or block NTK Gram on ``x`` within ``budget``, or ``None``
    when skipped (the reason is in ``budget.skipped``).

    When the parameter Jacobians fit in ``dense_limit`` bytes (1 GiB), one :func:`~spectral_lab.ntk.ntk_gram` call (its
    ``"jacobian"`` method). Otherwise the Gram is built by NTK-vector products (``"ntvp"``) one
    block of ``block`` columns at a time, only on and above the diagonal (``K`` is symmetric:
    about half the products of the full Gram); the first block is timed and the rest predicted
    (cost of a block ~ its columns times the rows it spans) and skipped up front if it does not
    fit in the time left.
    """
    from .ntk import block_to_matrix, ntk_gram

    n = len(x)
    t = time.perf_counter()
    if n > budget.matvecs_left():
        budget.skipped["ntk"] = (
            f"the dense NTK Gram on {n} samples needs {n} NTK-vector products; the matvec "
            f"budget ({budget.matvec_budget}) leaves {int(budget.matvecs_left())}"
        )
        return None
    why = budget.time_out()
    if why:
        budget.skipped["ntk"] = why
        return None
    from .prepared import prepare

    prep = prepare(model, x)
    p, C = prep.num_params, prep.num_outputs
    model = prep
    fits = 2 * n * C * p * x.element_size() <= dense_limit
    bar = budget.bar("NTK Gram", n, "column")
    try:
        if fits:
            budget.charge(n)
            K = ntk_gram(model, x, kind=kind).detach()
            bar.update(n)
        else:
            K = None
            starts = list(range(0, n, block))
            blocks: list[tuple[int, int, float]] = []  # (columns, rows, seconds)
            for s in starts:
                e = min(s + block, n)
                if blocks:
                    rest = _predict_rest(blocks, [(min(block, n - r), min(r + block, n))
                                                  for r in starts if r >= s])  # fmt: skip
                    if rest > budget.time_left():
                        spent = sum(b[2] for b in blocks)
                        budget.skipped["ntk"] = (
                            f"predicted {rest:.3g} s for the rest of the NTK Gram (from "
                            f"{spent:.3g} s for the first {s} columns); "
                            f"{max(budget.time_left(), 0):.3g} s of the time budget were left"
                        )
                        return None
                tb = time.perf_counter()
                budget.charge(e - s)
                kb = ntk_gram(model, x[:e], x[s:e], method="ntvp", kind=kind).detach()
                if K is None:
                    shape = (n, n) if kind == "scalar" else (n, n, C, C)
                    K = torch.zeros(shape, dtype=kb.dtype, device=kb.device)
                K[:e, s:e] = kb
                K[s:e, :e] = kb.transpose(0, 1) if kind == "scalar" else kb.permute(1, 0, 3, 2)
                blocks.append((e - s, e, time.perf_counter() - tb))
                bar.update(e - s)
    except OutOfBudget as e:
        budget.skipped["ntk"] = f"stopped while building the NTK Gram: {e}"
        return None
    finally:
        bar.close()
        budget.seconds["ntk"] = time.perf_counter() - t
    K = K.double()
    if kind == "block":
        K = block_to_matrix(K)
    return torch.linalg.eigvalsh(0.5 * (K + K.T))
