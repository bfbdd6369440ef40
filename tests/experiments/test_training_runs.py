"""Seeds loops of full-batch gradient descent (chapter 11's helper) against closed forms: gradient
descent on linear least squares by hand in NumPy, Student-t intervals from SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from spectral_lab.experiments import (
    Run,
    RunSpec,
    late_ratio,
    loglog_slope,
    seed_interval,
    seed_runs,
)


class Recorder:
    """A monitor that records the parameters it is shown, every ``every`` steps."""

    def __init__(self, every: int):
        self.every, self.history = every, []

    def measure(self, model, optimizer=None, *, step=None):
        w = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().copy()
        self.history.append({"step": step, "params": w})

    def step(self, model, optimizer=None, *, loss=None, step=None):
        if step % self.every == 0:
            self.measure(model, step=step)


def _data(n=20, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, y


def _numpy_gd(w, b, X, Y, lr, steps):
    """Full-batch GD on (1/n) sum 1/2 (w.x + b - y)^2, by hand: losses and parameters per step."""
    losses, params = [], []
    for _ in range(steps + 1):
        r = X @ w + b - Y[:, 0]
        losses.append(0.5 * np.mean(r**2))
        params.append(np.concatenate([w, [b]]))
        w, b = w - lr * X.T @ r / len(X), b - lr * r.mean()
    return np.array(losses), params


@pytest.mark.parametrize("lr", [0.05, 0.3])
def test_runs_are_full_batch_gradient_descent_with_the_seeded_init(lr):
    x, y = _data()
    runs = seed_runs(
        lambda s: RunSpec(torch.nn.Linear(3, 1).double(), s, monitor=Recorder(5)),
        (x, y),
        [lr],
        [0, 3],
        steps=12,
    )
    for seed in (0, 3):
        torch.manual_seed(seed)
        ref = torch.nn.Linear(3, 1).double()
        w0, b0 = ref.weight.detach().numpy()[0], float(ref.bias.detach())
        losses, params = _numpy_gd(w0, b0, x.numpy(), y.numpy(), lr, 12)
        run = runs.get(lr, seed)
        assert run.lr == lr and not run.diverged
        np.testing.assert_allclose(run.loss, losses, rtol=1e-10)
        # the record of step t holds the parameters after t updates
        assert [r["step"] for r in run.history] == [0, 5, 10]
        for r in run.history:
            np.testing.assert_allclose(r["params"], params[r["step"]], rtol=1e-10)
        final = np.concatenate([run.state["weight"].numpy()[0], run.state["bias"].numpy()])
        np.testing.assert_allclose(final, params[12], rtol=1e-10)


def test_a_step_above_two_over_lambda_max_is_marked_diverged_not_raised():
    x, y = _data()
    lam = float(torch.linalg.eigvalsh(torch.cat([x, torch.ones(20, 1, dtype=x.dtype)], 1).T
                                      @ torch.cat([x, torch.ones(20, 1, dtype=x.dtype)], 1) / 20)[-1])  # fmt: skip
    runs = seed_runs(
        lambda c: RunSpec(torch.nn.Linear(3, 1).double(), c / lam), (x, y), [1.9, 6.0], [0],
        steps=400,
    )  # fmt: skip
    assert not runs.get(1.9, 0).diverged and runs.get(1.9, 0).loss[-1] < runs.get(1.9, 0).loss[0]
    fast = runs.get(6.0, 0)
    assert fast.diverged and 0 < len(fast.loss) < 401 and np.isfinite(fast.loss).all()
    assert fast.loss[-1] > 1e100 * fast.loss[0]  # the losses up to the overflow are kept


def test_bad_arguments_are_refused_before_training():
    x, y = _data()
    with pytest.raises(ValueError, match="steps"):
        seed_runs(lambda s: RunSpec(torch.nn.Linear(3, 1).double(), 0.1), (x, y), [1], [0], steps=0)
    with pytest.raises(ValueError, match="settings and seeds"):
        seed_runs(lambda s: None, (x, y), [], [0], steps=3)
    with pytest.raises(TypeError, match="RunSpec"):
        seed_runs(lambda s: torch.nn.Linear(3, 1), (x, y), [1], [0], steps=3)


def test_seed_interval_is_scipys_student_t_interval():
    v = [1.3, 0.7, 2.2, 1.1, 0.4]
    s = seed_interval(v, level=0.9)
    lo, hi = stats.t.interval(0.9, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert s["mean"] == pytest.approx(np.mean(v))
    assert (s["lo"], s["hi"]) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert seed_interval([1.0, math.nan, 3.0])["dropped"] == 1
    assert math.isnan(seed_interval([1.0])["lo"])


def test_late_ratio_and_loglog_slope():
    hist = [{"step": t, "sharpness": s} for t, s in [(0, 5.0), (10, 30.0), (20, 19.0), (30, 21.0)]]
    run = Run("a", 0, 0.1, [1.0], hist, False, {})
    assert late_ratio(run) == pytest.approx(20.0 * 0.1 / 2)  # median of 30, 19, 21 at steps >= 15
    assert late_ratio(run, start=0.9) == pytest.approx(21.0 * 0.1 / 2)
    assert math.isnan(late_ratio(Run("a", 0, 0.1, [1.0], [], True, {})))
    w = np.array([16.0, 64.0, 256.0])
    assert loglog_slope(w, 3 * w**-0.5) == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="positive"):
        loglog_slope([1, 2], [0, 1])
