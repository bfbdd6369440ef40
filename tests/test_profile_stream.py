"""The profile over a stream of any length: an IterableDataset without ``__len__`` read whole with
``max_samples=None``, quantiles equal to NumPy's on the concatenated per-sample values (computed by
dense autograd, independently of the library), bounded memory with a tiny sketch capacity, the
curvature subsample = the first samples, and bars without a total."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import spectral_lab as sl
import spectral_lab.stability._profile_run as run
from spectral_lab._budget import Budget
from spectral_lab.stability import stability_profile

N, D, C = 3000, 5, 3
QS = (0.5, 0.9, 0.95, 0.99, 1.0)


class Stream(IterableDataset):
    """``(x_i, y_i)`` one sample at a time, no ``__len__``."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return zip(self.x, self.y)


@pytest.fixture(scope="module")
def case():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (N,), generator=g)
    torch.manual_seed(0)
    model = sl.MLP(D, C, width=8).double()
    # the per-sample sigma_1(J_f(x_i)) by dense autograd on the concatenated tensor
    J = torch.func.vmap(torch.func.jacrev(lambda z: model(z[None])[0]))(x)
    s = torch.linalg.svdvals(J).detach()
    return model, x, y, s


def _loader(x, y):
    return DataLoader(Stream(x, y), batch_size=200)


def _profile(model, data, **kw):
    kw.setdefault("operators", ("input_jacobian",))
    return stability_profile(model, data, progress=False, max_samples=kw.pop("max_samples", None), **kw)  # fmt: skip


def test_iterable_without_len_is_read_whole_and_quantiles_are_exact(case):
    model, x, y, s = case
    loader = _loader(x, y)
    with pytest.raises(TypeError):
        len(loader)  # the case under test: no length anywhere
    prof = _profile(model, loader)
    assert prof.n == N and prof.settings["per_sample"].startswith(f"all {N} kept")
    ref = s[:, 0].numpy()
    torch.testing.assert_close(prof.samples["jac_top"], s[:, 0], rtol=1e-10, atol=0)
    for q in QS:
        want = float(np.quantile(ref, q, method="higher"))
        assert math.isclose(prof.with_q(q).jac_top, want, rel_tol=1e-10), q
    fro = (s.square().sum(1).sqrt() / math.sqrt(C)).numpy()
    assert math.isclose(prof.jac_fro, float(fro.mean()), rel_tol=1e-10)
    # the same numbers as the profile of the in-memory concatenation, to the last digit
    whole = _profile(model, (x, y))
    for q in QS:
        assert prof.with_q(q).jac_top == whole.with_q(q).jac_top
    assert prof.jac_entropy == pytest.approx(whole.jac_entropy, rel=1e-14)


def test_default_cap_stays_and_none_reads_everything(case):
    model, x, y, _ = case
    capped = stability_profile(model, _loader(x, y), progress=False, operators=("input_jacobian",))
    assert capped.n == 512  # the default is unchanged
    rep = sl.diagnose(model, _loader(x, y), max_samples=None, progress=False,
                      operators=("input_jacobian",))  # fmt: skip
    assert rep.profile.n == N
    # a one-shot generator of batches (no length either)
    gen = ((x[i : i + 300], y[i : i + 300]) for i in range(0, N, 300))
    assert _profile(model, gen).n == N


def test_tiny_capacity_bounds_memory_and_keeps_the_rank_error(case, monkeypatch):
    model, x, y, s = case
    monkeypatch.setattr(run, "SAMPLE_CAPACITY", 256)
    prof = _profile(model, _loader(x, y), operators=("input_jacobian", "parameter_jacobian"))
    assert prof.n == N and prof.samples == {}
    assert prof.settings["per_sample"].startswith(f"not kept: {N} samples")
    for sk in prof.sketches.values():
        assert sk.count == N and not sk.exact and sk.held <= 256
    E = prof.sketches["jac_top"].rank_error * N
    assert 0 < E < 0.5 * N
    srt = torch.sort(s[:, 0]).values
    for q in QS:
        v = prof.with_q(q).jac_top  # from the sketch: samples are gone
        i = math.ceil(q * (N - 1))
        below = int((srt < v * (1 - 1e-12)).sum())
        at_most = int((srt <= v * (1 + 1e-12)).sum())
        assert below <= i + E and at_most >= i + 1 - E, q
    assert prof.jac_top == pytest.approx(float(srt[-1]), rel=1e-10)  # the supremum stays exact
    fro = s.square().sum(1).sqrt() / math.sqrt(C)
    assert prof.jac_fro == pytest.approx(float(fro.mean()), rel=1e-10)  # the mean is a running sum


def test_curvature_phases_use_the_first_samples_of_the_stream(case):
    model, x, y, _ = case
    ops = ("input_jacobian", "ntk", "hessian")
    prof = _profile(model, _loader(x, y), operators=ops, num_ntk_samples=8, num_hessian_samples=40)  # fmt: skip
    head = _profile(model, (x[:40], y[:40]), operators=ops, num_ntk_samples=8, num_hessian_samples=40)  # fmt: skip
    assert prof.n == N and (prof.n_ntk, prof.n_hess) == (8, 40)
    assert prof.ntk_top == pytest.approx(head.ntk_top, rel=1e-10)
    assert prof.hess_top == pytest.approx(head.hess_top, rel=1e-8)
    assert prof.settings["curvature_subsample"] == "the first samples of the stream: 8 (NTK), 40 (Hessian)"  # fmt: skip


def test_bars_count_without_a_total_when_the_length_is_unknown(case, monkeypatch):
    model, x, y, _ = case
    seen = []
    original = Budget.bar

    def record(self, desc, total, unit):
        seen.append((desc, total))
        return original(self, desc, total, unit)

    monkeypatch.setattr(Budget, "bar", record)
    _profile(model, _loader(x, y), max_samples=None)
    assert seen[0][1] is None and "no total" in seen[0][0]
    seen.clear()
    _profile(model, (x, y), max_samples=None)
    assert seen[0] == ("input Jacobian", N)  # a known length: tqdm's ETA
    assert run._total(_loader(x, y), 700) == 700 and run._total(_loader(x, y), None) is None


def test_histogram_of_a_compacted_profile_counts_every_sample(case, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from spectral_lab.plots import plot_profile_samples

    model, x, y, s = case
    monkeypatch.setattr(run, "SAMPLE_CAPACITY", 256)
    prof = _profile(model, _loader(x, y))
    fig = plot_profile_samples(prof, "jac_top", q=0.9)
    counts = sum(p.get_height() for p in fig.axes[0].patches)
    assert counts == N  # the weights stand for every sample streamed
    assert float(fig.axes[0].lines[0].get_xdata()[0]) == pytest.approx(float(s[:, 0].max()), rel=1e-10)  # fmt: skip
    plt.close(fig)
