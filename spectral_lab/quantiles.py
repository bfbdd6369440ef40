"""A mergeable, bounded-memory quantile sketch for per-sample statistics of whole data sets.

:class:`QuantileSketch` holds every value while it can (``count <= capacity``: *exact mode*, whose
quantile is the library's "higher" rule, :func:`higher_quantile`, bit for bit) and, beyond that,
compacts into a hierarchy of equal-size buffers (*compact mode*, ``exact == False``) whose
rank error it accounts for and reports as ``rank_error``.

The compactor is the one of Manku, Rajagopalan and Lindsay, "Approximate Medians and other
Quantiles in One Pass and with Limited Memory" (SIGMOD 1998): level ``h`` holds values of weight
``2**h``; a full level is sorted and every other value (a random offset, as in Agarwal, Cormode,
Huang, Phillips, Wei and Yi, "Mergeable Summaries", PODS 2012, and in Karnin, Lang and Liberty,
"Optimal Quantile Approximation in Streams", FOCS 2016) moves up one level with twice the weight.
One compaction at level ``h`` changes the weighted count of values ``<= v`` by at most ``2**h``
for every ``v``, so the sum ``E`` of ``2**h`` over the compactions done is a deterministic bound
on the rank error of every query; the sketch counts it exactly and reports
``rank_error = E / count``. With buffers of ``b = capacity // 16`` values and ``L ~ log2(n / b)``
levels, ``E <= n L / b`` (in practice far smaller: the random offsets make the errors cancel,
``O(n sqrt(L) / b)``). Merging two sketches concatenates their levels and compacts, so ``E``
adds; the sketch of a stream split across processes is a sketch of the whole stream.
"""

from __future__ import annotations

import math
import random

import torch

__all__ = ["QuantileSketch", "higher_quantile"]

_VERSION = 1


def higher_quantile(values: torch.Tensor, q: float) -> float:
    """The "higher" empirical ``q``-quantile of a 1-D tensor: the value at 0-based position
    ``ceil(q (n - 1))`` of the sorted values (an actual sample, so at least a fraction ``q`` of the
    samples lie at or below it); ``q = 1`` is the maximum, ``q = 0`` the minimum; NaN if any value
    is NaN.

    Equals ``numpy.quantile(values, q, method="higher")`` and ``torch.quantile(values, q,
    interpolation="higher")`` (without torch's size limit). Cost ``O(n)`` (a selection), in
    float64 on the input's device.

    Example:
        >>> higher_quantile(torch.tensor([3.0, 1.0, 2.0, 10.0]), 0.5)
        3.0
    """
    v = torch.as_tensor(values).to(torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("cannot take a quantile of no values")
    if torch.isnan(v).any():
        return math.nan
    if q >= 1.0:
        return float(v.max())
    i = math.ceil(q * (v.numel() - 1))  # the float64 product torch.quantile forms
    return float(torch.kthvalue(v, i + 1).values)


class QuantileSketch:
    """Quantiles, mean and count of a stream of numbers in bounded memory; mergeable.

    ``update(values)`` adds a 1-D tensor; ``quantile(q)`` is exact (the "higher" rule of
    :func:`higher_quantile`) while ``count <= capacity`` and within ``rank_error * count`` ranks
    afterwards (see the module docstring: the compactor of Manku, Rajagopalan and Lindsay,
    "Approximate Medians and other Quantiles in One Pass and with Limited Memory", with the
    deterministic rank-error bound counted as it compacts). Precisely, in compact mode the
    returned value ``v`` satisfies ``#{x < v} <= i + E`` and ``#{x <= v} >= i + 1 - E`` with
    ``i = ceil(q (count - 1))`` and ``E = rank_error * count``. ``q = 1`` (the maximum) and
    ``q = 0`` (the minimum) are exact in both modes; so are ``count`` and ``mean`` (a float64
    running sum).

    Memory: at most ``capacity`` float64 values in exact mode; in compact mode at most ``b =
    capacity // 16`` values per level and in the pending buffer, over ``L = 1 + log2(count / b)``
    levels, i.e. ``(L + 1) b``: within ``capacity`` up to about ``capacity * 2**10`` values, then
    growing by ``b`` per doubling of the stream. The default ``capacity = 2**21`` (16 MiB) holds
    60,000-sample MNIST 34 times over.
    Values are kept on the CPU in float64 whatever the input's device and dtype.

    ``merge`` returns the sketch of both streams (exact while the total fits ``capacity``: then it
    equals the sketch of the concatenation); ``state()`` is a dict of plain tensors, ints and
    floats (``torch.distributed.all_gather_object`` carries it) and :meth:`from_state` rebuilds the
    sketch.

    Example:
        >>> s = QuantileSketch()
        >>> s.update(torch.arange(1.0, 11.0))
        >>> s.quantile(0.95), s.quantile(0.5), s.count, s.exact, s.mean
        (10.0, 6.0, 10, True, 5.5)
        >>> t = QuantileSketch(capacity=64)
        >>> t.update(torch.rand(10_000, generator=torch.Generator().manual_seed(0)))
        >>> t.exact, t.rank_error < 0.5, abs(t.quantile(0.5) - 0.5) < 0.1
        (False, True, True)
    """

    def __init__(self, capacity: int = 2**21, *, seed: int = 0) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 32:
            raise ValueError(
                f"capacity must be an int >= 32 (values held exactly), got {capacity!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.capacity = capacity
        self.seed = seed
        self.count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf
        self._nan = False
        self._error = 0  # E: the summed weights 2**h of the compactions done
        self._compactions = 0
        self._pending: list[torch.Tensor] = []  # weight-1 values not yet in a level (exact: all)
        self._levels: list[torch.Tensor] = []  # level h: values of weight 2**h (compact mode)

    # -- the public surface --------------------------------------------------------------------

    @property
    def exact(self) -> bool:
        """True while every value is held (no compaction has happened)."""
        return self._error == 0 and not self._levels

    @property
    def rank_error(self) -> float:
        """The deterministic rank-error bound as a fraction of ``count`` (0.0 in exact mode)."""
        return self._error / self.count if self.count else 0.0

    @property
    def mean(self) -> float:
        """The mean of every value added (float64 running sum; NaN when empty)."""
        return self._sum / self.count if self.count else math.nan

    @property
    def held(self) -> int:
        """The number of values held in memory."""
        return sum(len(p) for p in self._pending) + sum(len(v) for v in self._levels)

    def update(self, values: torch.Tensor) -> None:
        """Add a 1-D tensor of values (any length, any device and floating dtype)."""
        v = torch.as_tensor(values)
        if v.dim() != 1:
            raise ValueError(
                f"values must be a 1-D tensor, got shape {tuple(v.shape)}; pass values.flatten()"
            )
        if v.numel() == 0:
            return
        v = v.detach().to("cpu", torch.float64)
        self.count += v.numel()
        self._sum += float(v.sum())
        self._pending.append(v)
        # chunks merged like a binary counter: O(log n) tensors held, O(n log n) copying in all
        p = self._pending
        while len(p) > 1 and len(p[-2]) <= len(p[-1]):
            p[-2:] = [torch.cat(p[-2:])]
        nan = torch.isnan(v)
        if nan.any():
            self._nan = True
            v = v[~nan]
        if v.numel():
            self._min = min(self._min, float(v.min()))
            self._max = max(self._max, float(v.max()))
        if self.exact:
            if self.count > self.capacity:
                self._compact()
        elif sum(len(p) for p in self._pending) > self._buffer:
            self._compact()

    def quantile(self, q: float) -> float:
        """The ``q``-quantile, ``0 <= q <= 1`` ("higher" rule; exact in exact mode, within
        ``rank_error`` otherwise); NaN if a NaN was added."""
        if not isinstance(q, (int, float)) or not 0.0 <= float(q) <= 1.0:
            raise ValueError(f"q must be a quantile level in [0, 1], got {q!r}")
        if self.count == 0:
            raise ValueError("cannot take a quantile of no values; update the sketch first")
        if self._nan:
            return math.nan
        if self.exact:
            return higher_quantile(self.values(), q)
        if q >= 1.0:
            return self._max
        if q <= 0.0:
            return self._min
        self._flush()
        vals = torch.cat(self._levels)
        w = self._weights()
        order = torch.argsort(vals)
        cum = torch.cumsum(w[order], 0)
        i = math.ceil(q * (self.count - 1))
        pos = int(torch.searchsorted(cum, torch.tensor([i + 1], dtype=torch.int64)))
        return float(vals[order[min(pos, len(vals) - 1)]])

    def values(self) -> torch.Tensor:
        """Every value added, in order (float64, CPU); exact mode only."""
        if not self.exact:
            raise ValueError(
                f"the sketch has compacted ({self.count} values > capacity {self.capacity}): the "
                "values are no longer held; raise capacity to keep them"
            )
        if not self._pending:
            return torch.empty(0, dtype=torch.float64)
        if len(self._pending) > 1:
            self._pending = [torch.cat(self._pending)]
        return self._pending[0]

    def weighted(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, weights)``: the held values and how many values each stands for (all ones
        in exact mode; ``2**h`` at level ``h`` otherwise; the weights sum to ``count`` less the
        NaNs), e.g. for a histogram ``plt.hist(values, weights=weights)``."""
        if self.exact:
            v = self.values()
            v = v[~torch.isnan(v)]
            return v, torch.ones(len(v), dtype=torch.int64)
        self._flush()
        return torch.cat(self._levels), self._weights()

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        """A new sketch of both streams (this one's values first); exact when both are and the
        total fits in ``capacity`` (the larger of the two)."""
        if not isinstance(other, QuantileSketch):
            raise TypeError(f"can only merge a QuantileSketch, got {type(other).__name__}")
        out = QuantileSketch(max(self.capacity, other.capacity), seed=self.seed)
        out.count = self.count + other.count
        out._sum = self._sum + other._sum
        out._min, out._max = min(self._min, other._min), max(self._max, other._max)
        out._nan = self._nan or other._nan
        out._error = self._error + other._error
        out._compactions = self._compactions + other._compactions
        out._pending = [*self._pending, *other._pending]
        depth = max(len(self._levels), len(other._levels))
        for h in range(depth):
            parts = [s._levels[h] for s in (self, other) if h < len(s._levels)]
            out._levels.append(torch.cat(parts))
        if not out.exact or out.count > out.capacity:
            out._compact()
        return out

    def state(self) -> dict:
        """The sketch as a dict of plain ints, floats, bools and CPU tensors."""
        return {
            "version": _VERSION, "capacity": self.capacity, "seed": self.seed,
            "count": self.count, "sum": self._sum, "min": self._min, "max": self._max,
            "nan": self._nan, "error": self._error, "compactions": self._compactions,
            "pending": torch.cat(self._pending) if self._pending else torch.empty(0, dtype=torch.float64),
            "levels": [v.clone() for v in self._levels],
        }  # fmt: skip

    @classmethod
    def from_state(cls, d: dict) -> QuantileSketch:
        """Rebuild a sketch from :meth:`state`."""
        if not isinstance(d, dict) or d.get("version") != _VERSION:
            raise ValueError("from_state needs a dict made by QuantileSketch.state()")
        s = cls(d["capacity"], seed=d["seed"])
        s.count, s._sum, s._min, s._max = d["count"], d["sum"], d["min"], d["max"]
        s._nan, s._error, s._compactions = d["nan"], d["error"], d["compactions"]
        pending = torch.as_tensor(d["pending"], dtype=torch.float64)
        s._pending = [pending.clone()] if len(pending) else []
        s._levels = [torch.as_tensor(v, dtype=torch.float64).clone() for v in d["levels"]]
        return s

    def __repr__(self) -> str:
        mode = "exact" if self.exact else f"compact, rank_error={self.rank_error:.2e}"
        return f"QuantileSketch(count={self.count}, held={self.held}, {mode})"

    # -- compaction ----------------------------------------------------------------------------

    def _weights(self) -> torch.Tensor:
        """The weight ``2**h`` of every held value, level by level (int64)."""
        sizes = torch.tensor([len(v) for v in self._levels])
        return torch.repeat_interleave(
            2 ** torch.arange(len(self._levels), dtype=torch.int64), sizes
        )

    @property
    def _buffer(self) -> int:
        return self.capacity // 16

    def _flush(self) -> None:
        """Move the pending weight-1 values into level 0 (NaNs dropped: ``_nan`` remembers them)."""
        if self._pending:
            head = [self._levels[0]] if self._levels else []
            merged = torch.cat([*head, *self._pending])
            merged = merged[~torch.isnan(merged)]
            if self._levels:
                self._levels[0] = merged
            else:
                self._levels.append(merged)
            self._pending = []

    def _compact(self) -> None:
        """Compact every level holding more than ``b`` values, from the bottom up: sort, keep
        the largest value if the count is odd, move every other value (random offset) one level up."""
        self._flush()
        b = self._buffer
        h = 0
        while h < len(self._levels):
            v = self._levels[h]
            if len(v) > b:
                v = torch.sort(v).values
                m = len(v) - len(v) % 2
                offset = random.Random(self.seed * 2**32 + self._compactions).getrandbits(1)
                self._compactions += 1
                self._error += 2**h
                up = v[offset:m:2]
                self._levels[h] = v[m:].clone()
                if h + 1 == len(self._levels):
                    self._levels.append(up.clone())
                else:
                    self._levels[h + 1] = torch.cat([self._levels[h + 1], up])
            h += 1
