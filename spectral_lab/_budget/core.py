"""What a run may spend and what each phase did: :class:`Budget`, :class:`Rate`, :func:`counted`.

A **phase** (the per-sample input Jacobian, the parameter Jacobian's top singular value, the NTK
Gram, the Hessian's Lanczos) splits its work into **pieces** (one backward pass for a group of
output rows, one chunk of per-sample gradients, one operator product), times a probe before it
starts, predicts every piece's seconds from the pieces done (:class:`Rate`), and does not start
a piece that would end after the time budget. So a run ends within the budget plus the error of
one piece's prediction; a piece that still ran past the budget is reported with its overrun.

**Gradient-equivalents** (``ge``) count the work in one unit: one gradient of the loss on the
profile's ``n`` samples (forward plus backward) is ``1``; a pass over ``m`` of them is ``m / n``.
So an input-Jacobian pass over ``m`` samples is ``C m / n`` (``C`` backward passes), a
parameter Jacobian the same, a per-sample gradient ``1 / n``, an NTK-vector or
Jacobian-Gram product over ``m`` samples ``3 m / n`` (a VJP, a JVP at about twice a forward), a
Hessian-vector product ``3 m / n`` (forward-over-reverse). These are counts of passes, not
seconds: ``benchmarks/bench_real_size.py`` prints both.

Example:
    >>> b = Budget(time_budget=60.0, progress=False)
    >>> with b.piece("demo", units=3.0):
    ...     pass
    >>> b.ref_samples = 3
    >>> rec = b.to_dict()["phases"]["demo"]
    >>> rec["pieces"], rec["ge"], rec["overrun_s"]
    (1, 1.0, 0.0)
"""

from __future__ import annotations

import math
import resource
import sys
import time
from contextlib import contextmanager

import torch

from .._progress import headless
from ..linalg import LinearOperator

#: work units per product: an NTK-vector / Jacobian-Gram product and a Hessian-vector product
#: cost about three gradients on the same samples (see the module docstring)
PRODUCT_UNITS = 3.0


class OutOfBudget(Exception):
    """Raised by a :func:`counted` operator when the budget ran out between products."""


class Rate:
    """Seconds per unit of work, learnt from the pieces done.

    ``predict(units)`` is ``units`` times the larger of the last observed rate and a running
    mean (a slower piece raises the prediction at once, a faster one lowers it gradually), so a
    machine whose load rises mid-phase is followed within one piece.

    >>> r = Rate()
    >>> r.predict(4) is None
    True
    >>> r.observe(2, 1.0); r.predict(4)
    2.0
    >>> r.observe(2, 3.0); r.predict(1)  # the last piece was slower: 1.5 s per unit
    1.5
    """

    def __init__(self) -> None:
        self.last: float | None = None
        self.mean: float | None = None

    def observe(self, units: float, seconds: float) -> None:
        r = seconds / max(units, 1e-12)
        self.last = r
        self.mean = r if self.mean is None else 0.5 * (self.mean + r)

    def predict(self, units: float) -> float | None:
        if self.last is None:
            return None
        return units * max(self.last, self.mean)


class Phase:
    """One phase's record: what was computed, what was cut, seconds, pieces, products, work
    units (gradients on one sample; ``ge = units / n``), and the longest overrun of a piece past
    the time budget."""

    def __init__(self) -> None:
        self.computed = ""
        self.cut: str | None = None
        self.seconds = 0.0
        self.pieces = 0
        self.products = 0
        self.units = 0.0
        self.overrun_s = 0.0
        self.predicted_s: float | None = None
        self.samples = 0
        self.graph_bytes = 0
        self.rate = Rate()

    def to_dict(self, ref: int | None) -> dict:
        return {
            "computed": self.computed,
            "cut": self.cut,
            "samples": self.samples,
            "seconds": self.seconds,
            "pieces": self.pieces,
            "products": self.products,
            "ge": None if not ref else self.units / ref,
            "overrun_s": self.overrun_s,
            "predicted_s": self.predicted_s,
        }


class Budget:
    """What a run may spend and what it did: ``time_budget`` seconds of wall time (from
    construction), ``matvec_budget`` operator products, ``memory_budget`` bytes for the chunks
    a phase holds at once (``None``: unlimited; the phases' own defaults); ``progress`` switches
    the bars (off in headless runs, see :mod:`spectral_lab._progress`).

    ``reserve`` (a fraction of ``time_budget``) is kept back from the per-sample phases for the
    curvature phases that follow (:meth:`time_left` with ``phase="samples"``)."""

    def __init__(
        self,
        time_budget: float | None = None,
        matvec_budget: int | None = None,
        progress: bool = True,
        memory_budget: int | None = None,
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
        if memory_budget is not None and (
            isinstance(memory_budget, bool) or not (float(memory_budget) >= 2**20)
        ):
            raise ValueError(
                f"memory_budget must be a number of bytes of at least 2**20 (1 MiB), got "
                f"{memory_budget!r}"
            )
        self.time_budget = None if time_budget is None else float(time_budget)
        self.matvec_budget = None if matvec_budget is None else int(matvec_budget)
        self.memory_budget = None if memory_budget is None else int(memory_budget)
        self.progress = progress
        self.reserve = 0.0
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.matvecs = 0
        self.ref_samples: int | None = None
        self.largest_chunk = 0
        self.rss0 = _rss_high_water()
        #: phase -> why it was skipped (not run at all) or stopped (run, result unusable)
        self.skipped: dict[str, str] = {}
        #: phase -> why its solver was stopped early (result kept, "not certified")
        self.capped: dict[str, str] = {}
        #: phase -> seconds spent
        self.seconds: dict[str, float] = {}
        self.phases: dict[str, Phase] = {}
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    # ------------------------------------------------------------------ accounting
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def time_left(self, phase: str | None = None) -> float:
        """Seconds left; for ``phase="samples"`` less the :attr:`reserve` kept for later phases."""
        if self.time_budget is None:
            return math.inf
        keep = self.reserve * self.time_budget if phase == "samples" else 0.0
        return self.time_budget - keep - self.elapsed()

    def matvecs_left(self) -> float:
        return math.inf if self.matvec_budget is None else self.matvec_budget - self.matvecs

    def time_out(self, phase: str | None = None) -> str | None:
        """Why the time is up (for ``phase``, see :meth:`time_left`), or ``None``."""
        if self.time_left(phase) <= 0:
            if phase == "samples" and self.reserve and self.time_left() > 0:
                return (
                    f"the per-sample phases' share of the time budget "
                    f"({(1 - self.reserve) * self.time_budget:.3g} of {self.time_budget:g} s) "
                    "was spent; the rest is kept for the NTK and Hessian"
                )
            return f"the time budget of {self.time_budget:g} s was spent"
        return None

    def fits(self, predicted: float | None, phase: str | None = None) -> bool:
        """Whether a piece predicted to take ``predicted`` seconds ends within the budget
        (``None``, no prediction yet: it fits while time is left)."""
        left = self.time_left(phase)
        return left > 0 and (predicted is None or predicted <= left)

    def unit_seconds(self) -> float | None:
        """Seconds per unit of work (one gradient on one sample) learnt so far, the largest
        over the phases: the prediction for a phase that has not run its probe yet."""
        rates = [p.rate.predict(1) for p in self.phases.values() if p.rate.last is not None]
        return max(rates) if rates else None

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

    def log(self, name: str) -> Phase:
        """The record of phase ``name`` (created on first use)."""
        if name not in self.phases:
            self.phases[name] = Phase()
        return self.phases[name]

    @contextmanager
    def piece(self, phase: str, units: float = 0.0, products: int = 0):
        """Time one piece of ``phase``: its seconds teach the phase's :class:`Rate` (per unit of
        work), and a piece that ends past the time budget records its overrun."""
        rec = self.log(phase)
        t = time.perf_counter()
        yield rec
        dt = time.perf_counter() - t
        rec.seconds += dt
        rec.pieces += 1
        rec.units += units
        rec.products += products
        if units:
            rec.rate.observe(units, dt)
        if self.time_budget is not None:
            rec.overrun_s = max(rec.overrun_s, -self.time_left())

    def chunk(self, bytes_per_item: float, default: int, at_most: int | None = None) -> int:
        """Items held at once: ``default``, lowered so that ``items * bytes_per_item`` stays
        within :attr:`memory_budget` (at least 1), and at most ``at_most``."""
        k = default
        if self.memory_budget is not None:
            k = min(k, int(self.memory_budget // max(bytes_per_item, 1)))
        if at_most is not None:
            k = min(k, at_most)
        return max(1, k)

    def hold(self, nbytes: float) -> None:
        """Record a chunk of ``nbytes`` held at once (the largest is reported)."""
        self.largest_chunk = max(self.largest_chunk, int(nbytes))

    def bar(self, desc: str, total: int | None, unit: str):
        """A tqdm bar for one phase (disabled when ``progress`` is off or the run is headless)."""
        from tqdm.auto import tqdm

        return tqdm(
            total=total, desc=desc, unit=unit, leave=False,
            disable=not self.progress or headless(),
        )  # fmt: skip

    def memory(self) -> dict:
        """The peak-memory figure and how it was measured."""
        out: dict = {"largest_chunk_bytes": self.largest_chunk,
                     "memory_budget": self.memory_budget}  # fmt: skip
        if torch.cuda.is_available() and torch.cuda.memory_allocated() > 0:
            out["peak_bytes"] = int(torch.cuda.max_memory_allocated())
            out["peak_how"] = "torch.cuda.max_memory_allocated (CUDA tensors, since the call began)"
        else:
            rss = _rss_high_water()
            out["peak_bytes"] = rss
            out["peak_how"] = (
                "process RSS high-water mark (resource.getrusage ru_maxrss): the whole process "
                "since it started"
                + ("" if rss > self.rss0 else "; it was reached before this call")
            )
        return out

    def to_dict(self) -> dict:
        total = sum(p.units for p in self.phases.values())
        return {
            "time_budget": self.time_budget,
            "matvec_budget": self.matvec_budget,
            "memory_budget": self.memory_budget,
            "matvecs": self.matvecs,
            "skipped": dict(self.skipped),
            "capped": dict(self.capped),
            "seconds": dict(self.seconds),
            "wall_s": self.elapsed(),
            # time outside every phase's pieces: set-up, per-sample statistics, eigensolvers
            "other_s": self.elapsed() - sum(p.seconds for p in self.phases.values()),
            "cpu_s": time.process_time() - self.cpu0,
            "phases": {k: p.to_dict(self.ref_samples) for k, p in self.phases.items()},
            "ge": None if not self.ref_samples else total / self.ref_samples,
            "ge_unit": f"one gradient of the loss on the profile's {self.ref_samples} samples",
            "memory": self.memory(),
        }


def _rss_high_water() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def counted(
    op: LinearOperator,
    budget: Budget,
    bar=None,
    phase: str | None = None,
    units: float = 0.0,
    charge: bool = True,
) -> LinearOperator:
    """``op`` with every product charged to ``budget`` (raising :class:`OutOfBudget` before a
    product that does not fit the products left, or whose predicted seconds do not fit the time
    left) and ticking ``bar``; each product is a piece of ``phase`` worth ``units``.
    ``charge=False``: the products are not counted against ``matvec_budget`` (which is for the
    NTK and Hessian), only timed."""

    def run(k, fn, arg):
        if phase is not None:
            rec = budget.log(phase)
            pred = rec.rate.predict(units * k)
            if not budget.fits(pred):
                if pred is None:
                    raise OutOfBudget(budget.time_out() or "no time left")
                raise OutOfBudget(
                    f"the next product was predicted to take {pred:.3g} s and "
                    f"{max(budget.time_left(), 0):.3g} s of the time budget were left"
                )
        if charge:
            budget.charge(k)
        elif budget.time_out():
            raise OutOfBudget(budget.time_out())
        if phase is None:
            out = fn(arg)
        else:
            with budget.piece(phase, units=units * k, products=k):
                out = fn(arg)
        if bar is not None:
            bar.update(k)
        return out

    w = LinearOperator(lambda v: run(1, op.mv, v), op.dim, op.dtype, op.device,
                       matmat=lambda V: run(V.shape[1], op.mm, V), name=op.name)  # fmt: skip
    w.route = op.route
    return w


def memo_first(op: LinearOperator, v0: torch.Tensor, w0: torch.Tensor) -> LinearOperator:
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
