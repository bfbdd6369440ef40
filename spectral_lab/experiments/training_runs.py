"""Seeds loops of full-batch gradient-descent runs, each watched by a monitor, and the interval
statistics chapter 11 reports them with.

A *setting* is what one sweep varies (a step size, a width, a regulariser strength). For each
setting and seed, :func:`seed_runs` seeds torch's global generator with the seed, asks
``configure(setting)`` for a :class:`RunSpec` (the freshly built model, its step size, and
optionally a monitor and an extra loss), and trains the model by full-batch gradient descent:
:func:`~spectral_lab.training.train` with ``optimizer="sgd"``, ``batch_size`` the whole set and
``epochs=steps``, so one step is ``theta <- theta - lr * grad L(theta)`` on every sample. The
monitor (anything with ``step(model, optimizer=None, *, loss=None)``, ``measure(model)`` and a
``history`` list of dicts, such as :class:`spectral_lab.monitor.SpectralMonitor`) measures the
initial model (``measure(model, step=0)``), then is called after update ``t`` as
``step(model, step=t)``, so a record's ``step`` counts the updates behind it; it is given no
optimiser, so give it the step size (``lr=``) for its ``2/lr``. A run whose loss overflows is
marked ``diverged`` instead of raising (the monitor's own ``"diverging"`` flag stays in its
records).

Statistics (measured claims are reported, never asserted): :func:`seed_interval` (mean and a
Student-t interval over seeds), :func:`late_ratio` (the sharpness over the late part of a run in
units of ``2/lr``: about 1 at the edge of stability), :func:`loglog_slope` (a power law's exponent
by least squares on logarithms).

Example: two seeds of a linear least-squares model, whose sharpness is constant.
    >>> import torch
    >>> x, y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    >>> make = lambda lr: RunSpec(torch.nn.Linear(3, 1).double(), lr)
    >>> runs = seed_runs(make, (x, y), [0.1, 0.2], [0, 1], steps=20)
    >>> len(runs.runs), [r.diverged for r in runs.runs]
    (4, [False, False, False, False])
    >>> bool(runs.get(0.2, 1).loss[-1] < runs.get(0.2, 1).loss[0])
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._results import Result
from ..training import as_tensors, train

__all__ = [
    "Run",
    "RunSpec",
    "SeedRuns",
    "late_ratio",
    "loglog_slope",
    "seed_interval",
    "seed_runs",
]


@dataclass
class RunSpec:
    """What ``configure(setting)`` returns for one run: the model (built after the seed was set),
    its step size ``lr``, and optionally a ``monitor`` and an ``extra_loss(model, x, y, logits)``
    (a penalty from :func:`~spectral_lab.regularizers.make_regularizer`)."""

    model: nn.Module
    lr: float
    monitor: object | None = None
    extra_loss: Callable | None = None


@dataclass(frozen=True)
class Run(Result):
    """One run: its setting and seed, step size, the loss before each update (``loss[t]`` at the
    parameters after ``t`` updates; a diverged run's list ends at its last finite loss), the
    monitor's records, whether the loss overflowed, and the final parameters (``state``, a state
    dict)."""

    setting: Hashable
    seed: int
    lr: float
    loss: list[float]
    history: list[dict]
    diverged: bool
    state: dict = field(repr=False)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of the records that hold ``key`` (a monitor quantity)."""
        recs = [r for r in self.history if r.get(key) is not None]
        return (
            np.array([r["step"] for r in recs], dtype=float),
            np.array([float(r[key]) for r in recs], dtype=float),
        )


@dataclass(frozen=True)
class SeedRuns(Result):
    """Every run of a sweep: ``settings`` x ``seeds``, in that order, and ``steps`` per run."""

    settings: tuple
    seeds: tuple[int, ...]
    steps: int
    runs: tuple[Run, ...] = field(repr=False)

    def get(self, setting: Hashable, seed: int) -> Run:
        """The run of one setting and seed."""
        for r in self.runs:
            if r.setting == setting and r.seed == seed:
                return r
        raise KeyError(f"no run with setting={setting!r} and seed={seed!r}")

    def values(self, fn: Callable[[Run], float], setting: Hashable) -> list[float]:
        """``fn(run)`` for every seed of one setting, in seed order."""
        return [float(fn(self.get(setting, s))) for s in self.seeds]

    def summary(self, fn: Callable[[Run], float], level: float = 0.95) -> dict:
        """``{setting: seed_interval(values over seeds)}`` of ``fn(run)``."""
        return {s: seed_interval(self.values(fn, s), level) for s in self.settings}

    def histories(self, label: Callable[[Run], str] | None = None) -> dict[str, list[dict]]:
        """The monitor records of every run, keyed by a label (default ``"<setting>, seed <s>"``),
        the input of :func:`spectral_lab.widgets.monitor_history_explorer`."""
        label = label or (lambda r: f"{r.setting}, seed {r.seed}")
        return {label(r): r.history for r in self.runs}


def seed_runs(
    configure: Callable[[Hashable], RunSpec],
    data,
    settings: Iterable[Hashable],
    seeds: Iterable[int],
    *,
    steps: int,
    loss: str = "mse",
) -> SeedRuns:
    """Full-batch gradient descent for every setting and seed; see the module docstring.

    Args:
        configure: ``configure(setting) -> RunSpec``, called right after
            ``torch.manual_seed(seed)``, so a model built inside it is initialised by the seed.
        data: ``(x, y)`` tensors or an ``ArrayDataset``; used whole, as one batch per step.
        settings: the values the sweep varies (passed to ``configure``).
        seeds: one run per seed and setting.
        steps: gradient-descent steps per run.
        loss: ``"mse"`` (``(1/n) sum_i 1/2 ||f(x_i) - y_i||^2``, the loss ``hessian_eigs``
            differentiates) or ``"cross_entropy"``.

    Returns:
        A :class:`SeedRuns`. Runs on the device and dtype of the model's parameters; inputs are
        cast to them.

    Cost: ``len(settings) * len(seeds) * steps`` gradients on the whole set, plus each
    monitor's measurements.

    Raises:
        ValueError: ``steps`` is not a positive int, or ``settings``/``seeds`` is empty, before
            any training.
        TypeError: ``configure`` does not return a :class:`RunSpec`.
    """
    settings, seeds = tuple(settings), tuple(int(s) for s in seeds)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not settings or not seeds:
        raise ValueError("settings and seeds must each hold at least one value")
    x, y = as_tensors(data)
    runs = []
    for setting in settings:
        for seed in seeds:
            torch.manual_seed(seed)
            spec = configure(setting)
            if not isinstance(spec, RunSpec):
                raise TypeError(
                    f"configure must return a RunSpec(model, lr, ...), got {type(spec).__name__}"
                )
            runs.append(_one_run(spec, setting, seed, x, y, steps, loss))
    return SeedRuns(settings, seeds, steps, tuple(runs))


def _one_run(spec: RunSpec, setting, seed: int, x, y, steps: int, loss: str) -> Run:
    mon = spec.monitor
    if mon is not None:
        mon.measure(spec.model, step=0)

    losses: list[float] = []

    def callback(model, step, value):  # after update number step + 1; value: the loss before it
        losses.append(value)
        if mon is not None:
            mon.step(model, step=step + 1)

    diverged = False
    try:
        train(
            spec.model,
            (x, y),
            epochs=steps,
            lr=spec.lr,
            batch_size=len(x),
            optimizer="sgd",
            loss=loss,
            extra_loss=spec.extra_loss,
            progress=False,
            seed=seed,
            callback=callback,
        )
    except FloatingPointError:  # train refuses to step on a non-finite loss: the run diverged
        diverged = True
    if not diverged:
        with torch.no_grad():
            p = next(spec.model.parameters())
            final = float(
                _loss_value(spec.model, x.to(p.device, p.dtype), y.to(p.device), loss, p.dtype)
            )
        losses.append(final)
        diverged = not math.isfinite(final)
    history = [dict(r) for r in mon.history] if mon is not None else []
    state = {k: v.detach().clone() for k, v in spec.model.state_dict().items()}
    return Run(setting, seed, float(spec.lr), losses, history, diverged, state)


def _loss_value(model, x, y, loss, dtype):
    from .._losses import resolve_loss, scalar_loss

    if loss == "mse":
        y = y.to(dtype)
    return scalar_loss(resolve_loss(loss)(model(x), y))


def seed_interval(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean of ``values`` (one per seed) with a two-sided Student-t interval at ``level``:
    ``mean +- t_{(1+level)/2, n-1} sd / sqrt(n)`` (``sd`` with ``n - 1``). Non-finite values
    (a diverged run) are dropped and counted in ``dropped``; with fewer than two finite values
    the interval is ``nan``.

    Example:
        >>> s = seed_interval([1.0, 2.0, 3.0])
        >>> s["mean"], round(s["lo"], 3), round(s["hi"], 3), s["n"]
        (2.0, -0.484, 4.484, 3)
    """
    from scipy.stats import t as student_t

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    n = len(finite)
    mean = float(finite.mean()) if n else math.nan
    if n < 2:
        lo = hi = sd = math.nan
    else:
        sd = float(finite.std(ddof=1))
        half = float(student_t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
        lo, hi = mean - half, mean + half
    return {
        "mean": mean,
        "lo": lo,
        "hi": hi,
        "sd": sd,
        "n": n,
        "dropped": len(v) - n,
        "level": level,
        "values": v.tolist(),
    }


def late_ratio(run: Run, key: str = "sharpness", start: float = 0.5) -> float:
    """Median of ``run``'s ``key`` over the records at steps ``>= start * steps`` in units of
    ``2 / lr``: ``median(lambda_max) * lr / 2``. About 1 when a run hovers at the edge of
    stability; ``nan`` when no record falls in the window (a run that diverged early).

    Example:
        >>> r = Run("a", 0, 0.1, [1.0] * 11, [{"step": t, "sharpness": 20.0} for t in (0, 5, 10)], False, {})
        >>> late_ratio(r)
        1.0
    """
    if not 0 <= start < 1:
        raise ValueError(f"start must be in [0, 1), got {start!r}")
    steps, values = run.series(key)
    if not len(steps):
        return math.nan
    window = values[steps >= start * steps.max()]
    return float(np.median(window)) * run.lr / 2 if len(window) else math.nan


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x``: the exponent ``a`` of ``y ~ c x^a``.

    Example:
        >>> round(loglog_slope([1, 2, 4, 8], [3, 12, 48, 192]), 6)
        2.0
    """
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError("xs and ys must be 1-D of the same length, at least 2")
    if not (np.isfinite(x).all() and np.isfinite(y).all() and (x > 0).all() and (y > 0).all()):
        raise ValueError("xs and ys must be positive and finite (logarithms are taken)")
    lx, ly = np.log(x), np.log(y)
    return float(np.polyfit(lx, ly, 1)[0])
