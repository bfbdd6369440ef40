"""QuantileSketch against NumPy (exact mode) and against exact ranks (compact mode): the "higher"
rule bit for bit, the deterministic rank-error bound on random and adversarial streams, merge ==
concatenation, state round trips, and mutations the checks must catch."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

import spectral_lab.quantiles as qmod
from spectral_lab.quantiles import QuantileSketch, higher_quantile
from spectral_lab.stability import quantile as library_quantile

QS = (0.0, 0.01, 0.1, 0.25, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999, 1.0)


def _feed(sketch: QuantileSketch, v: torch.Tensor, seed: int = 0) -> QuantileSketch:
    """Update in chunks of random length (1 to 700), as a data loader would."""
    g = torch.Generator().manual_seed(seed)
    i = 0
    while i < len(v):
        k = int(torch.randint(1, 700, (1,), generator=g))
        sketch.update(v[i : i + k])
        i += k
    return sketch


def _streams(n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "uniform": torch.rand(n, generator=g, dtype=torch.float64),
        "heavy_tail": torch.randn(n, generator=g, dtype=torch.float64).exp() ** 3,
        "sorted": torch.arange(n, dtype=torch.float64),
        "reverse": torch.arange(n, 0, -1, dtype=torch.float64),
        "constant": torch.full((n,), 2.5, dtype=torch.float64),
        "few_values": torch.randint(0, 5, (n,), generator=g).double(),
    }


def check_exact(sketch: QuantileSketch, v: np.ndarray) -> None:
    assert sketch.exact and sketch.rank_error == 0.0 and sketch.count == len(v)
    for q in QS:
        assert sketch.quantile(q) == float(np.quantile(v, q, method="higher")), q


def check_ranks(sketch: QuantileSketch, v: torch.Tensor) -> float:
    """The compact-mode contract: the answer's rank lies within E of ceil(q (n - 1)); returns the
    worst measured rank error as a fraction of n."""
    n = len(v)
    srt = torch.sort(v).values
    E = sketch.rank_error * n
    worst = 0.0
    for q in QS:
        x = sketch.quantile(q)
        i = math.ceil(q * (n - 1))
        below = int(torch.searchsorted(srt, torch.tensor([x], dtype=srt.dtype)))  # #{v < x}
        at_most = int(torch.searchsorted(srt, torch.tensor([x], dtype=srt.dtype), right=True))
        assert at_most > below, f"q={q}: {x} is not one of the values"
        assert below <= i + E and at_most >= i + 1 - E, (q, below, at_most, i, E)
        worst = max(worst, max(0, below - i, i + 1 - at_most) / n)
    return worst


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 1001, 5000])
def test_exact_mode_equals_numpy_higher(n):
    g = torch.Generator().manual_seed(n)
    for v in (torch.randn(n, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g).double()):  # fmt: skip
        s = _feed(QuantileSketch(), v, seed=n)
        check_exact(s, v.numpy())
        for q in QS[1:]:
            assert s.quantile(q) == library_quantile(v, q)  # the profile's rule, bit for bit
        assert torch.equal(s.values(), v)
        assert s.count == n and math.isclose(s.mean, float(v.mean()), rel_tol=1e-12)


def test_exact_up_to_capacity_then_compact():
    v = torch.randn(4096, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = _feed(QuantileSketch(capacity=4096), v)
    check_exact(s, v.numpy())
    s.update(torch.tensor([0.0]))
    assert not s.exact and 0 < s.rank_error < 0.01 and s.held <= 4096
    with pytest.raises(ValueError, match="compacted"):
        s.values()


def test_higher_quantile_float32_and_torch():
    v = torch.randn(999, generator=torch.Generator().manual_seed(3))
    for q in QS:
        assert higher_quantile(v, q) == float(torch.quantile(v.double(), q, interpolation="higher"))
    assert math.isnan(higher_quantile(torch.tensor([1.0, math.nan]), 0.5))


@pytest.mark.parametrize("name", list(_streams(10)))
def test_compact_rank_error_bound(name):
    n, cap = 60_000, 2048
    v = _streams(n)[name]
    s = _feed(QuantileSketch(capacity=cap, seed=7), v)
    assert not s.exact and s.count == n
    b = cap // 16
    assert s.rank_error <= (1 + math.log2(n / b)) / b  # the documented n L / b bound
    assert s.rank_error < 0.1  # a bound worth having at this size
    assert s.held <= cap  # bounded memory
    hv, hw = s.weighted()
    assert len(hv) == s.held and int(hw.sum()) == n  # the weights stand for every value
    worst = check_ranks(s, v)
    assert worst <= s.rank_error
    assert s.quantile(1.0) == float(v.max()) and s.quantile(0.0) == float(v.min())
    assert math.isclose(s.mean, float(v.mean()), rel_tol=1e-12)


def test_compact_error_is_measured_not_assumed():
    """On a uniform stream the measured error is well inside the deterministic bound."""
    v = _streams(100_000)["uniform"]
    s = _feed(QuantileSketch(capacity=4096), v)
    worst = check_ranks(s, v)
    assert worst < 0.5 * s.rank_error


def test_memory_stays_bounded_on_a_long_stream():
    s = QuantileSketch(capacity=256)
    g = torch.Generator().manual_seed(0)
    peak = 0
    for _ in range(400):
        s.update(torch.rand(1000, generator=g))
        peak = max(peak, s.held)
    assert s.count == 400_000 and peak <= 256


def test_exact_mode_holds_few_tensors_whatever_the_batch_size():
    v = torch.randn(5000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    s = QuantileSketch()
    for x in v.split(1):  # a DataLoader of batch 1
        s.update(x)
    assert len(s._pending) <= 14 and torch.equal(s.values(), v)  # O(log n) chunks, order kept


def test_merge_of_exact_sketches_is_the_concatenation():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(3000, generator=g).double(), torch.randn(1234, generator=g).double()
    m = _feed(QuantileSketch(), a).merge(_feed(QuantileSketch(), b, seed=1))
    whole = _feed(QuantileSketch(), torch.cat([a, b]))
    assert m.exact and torch.equal(m.values(), whole.values())
    assert m.state()["count"] == whole.count and math.isclose(m.mean, whole.mean, rel_tol=1e-12)
    for q in QS:
        assert m.quantile(q) == whole.quantile(q)
    check_exact(m, torch.cat([a, b]).numpy())


def test_merge_beyond_capacity_and_of_compact_sketches():
    g = torch.Generator().manual_seed(6)
    parts = [torch.rand(k, generator=g, dtype=torch.float64) for k in (20_000, 1_500, 30_000)]
    sketches = [_feed(QuantileSketch(capacity=2048), p) for p in parts]
    assert [s.exact for s in sketches] == [False, True, False]
    m = sketches[0].merge(sketches[1]).merge(sketches[2])
    v = torch.cat(parts)
    assert m.count == len(v) and not m.exact and m.held <= 2048
    assert m.rank_error >= sketches[0].rank_error  # errors add
    check_ranks(m, v)
    # two exact sketches whose total overflows compact on merge
    e1, e2 = _feed(QuantileSketch(capacity=1024), parts[1][:1000]), _feed(QuantileSketch(capacity=1024), parts[1][500:])  # fmt: skip
    m2 = e1.merge(e2)
    assert not m2.exact
    check_ranks(m2, torch.cat([parts[1][:1000], parts[1][500:]]))


@pytest.mark.parametrize("cap", [2**21, 512])
def test_state_round_trip(cap):
    v = torch.randn(5000, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    s = _feed(QuantileSketch(capacity=cap, seed=3), v)
    d = pickle.loads(pickle.dumps(s.state()))  # what all_gather_object does
    assert all(isinstance(x, (int, float, bool, torch.Tensor, list)) for x in d.values())
    r = QuantileSketch.from_state(d)
    assert (r.count, r.exact, r.rank_error, r.mean, r.held) == (s.count, s.exact, s.rank_error, s.mean, s.held)  # fmt: skip
    for q in QS:
        assert r.quantile(q) == s.quantile(q)
    # both continue identically
    more = torch.rand(3000, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    s.update(more), r.update(more)
    for q in QS:
        assert r.quantile(q) == s.quantile(q)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="capacity"):
        QuantileSketch(capacity=4)
    with pytest.raises(ValueError, match="1-D"):
        QuantileSketch().update(torch.ones(2, 2))
    with pytest.raises(ValueError, match="no values"):
        QuantileSketch().quantile(0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        QuantileSketch().quantile(1.5)
    with pytest.raises(ValueError, match="state"):
        QuantileSketch.from_state({"version": 0})
    s = QuantileSketch(capacity=64)
    s.update(torch.tensor([1.0, math.nan, 2.0]))
    assert math.isnan(s.quantile(0.5)) and s.count == 3
    s.update(torch.rand(500))
    assert math.isnan(s.quantile(0.5))


# -- mutations the checks above must catch -----------------------------------------------------


class _OffByOne:
    """``math`` with ``ceil`` one short: the rank index ``ceil(q (n - 1)) - 1``."""

    def __getattr__(self, name):
        return getattr(math, name)

    @staticmethod
    def ceil(x):
        return max(math.ceil(x) - 1, 0)


def test_mutation_off_by_one_rank_is_caught(monkeypatch):
    v = torch.randn(1001, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    monkeypatch.setattr(qmod, "math", _OffByOne())
    with pytest.raises(AssertionError):
        check_exact(_feed(QuantileSketch(), v), v.numpy())


def test_mutation_uncounted_compaction_is_caught(monkeypatch):
    original = QuantileSketch._compact

    def forgets_error(self):
        e = self._error
        original(self)
        self._error = e  # a compaction whose rank error is not accounted

    v = _streams(60_000)["sorted"]
    monkeypatch.setattr(QuantileSketch, "_compact", forgets_error)
    with pytest.raises(AssertionError):
        check_ranks(_feed(QuantileSketch(capacity=2048), v), v)


def test_mutation_unweighted_levels_are_caught(monkeypatch):
    monkeypatch.setattr(QuantileSketch, "_weights", lambda self: torch.ones(self.held, dtype=torch.int64))  # fmt: skip
    v = _streams(60_000)["uniform"]
    with pytest.raises(AssertionError):
        check_ranks(_feed(QuantileSketch(capacity=2048), v), v)
