"""Old keyword spellings of the stability functions, ``diagnose`` and the CLI still work for one
release: the same result as the new spelling, a ``DeprecationWarning`` that names the new spelling
and points at the caller's line (``warning.filename`` is this file), and ``TypeError`` when both
spellings are passed."""

from __future__ import annotations

import warnings

import pytest
import torch

from spectral_lab.stability import (
    logit_hessian_norm,
    measure_attribution_change,
    measure_forward_sensitivity,
    measure_parameter_sensitivity,
    verify_consequences,
)

from ._helpers import _data, _model


def _old(fn, match, *args, **kwargs):
    """Call ``fn`` with a deprecated spelling; check the warning and where it points."""
    with pytest.warns(DeprecationWarning, match=match) as rec:
        out = fn(*args, **kwargs)
    assert all(r.filename == __file__ for r in rec if r.category is DeprecationWarning), [
        r.filename for r in rec
    ]
    return out


def _silent(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        (measure_forward_sensitivity, (0.1,), {"direction": "random"}),
        (measure_parameter_sensitivity, (1e-3,), {"direction": "random"}),
        (measure_attribution_change, (0.5,), {}),
    ],
)
def test_measure_draws_is_num_draws(fn, args, kwargs):
    model, (x, _) = _model(), _data(n=5)
    new = _silent(fn, model, x, *args, num_draws=3, **kwargs)
    old = _old(fn, "'draws'.*'num_draws'", model, x, *args, draws=3, **kwargs)
    torch.testing.assert_close(old, new, rtol=0, atol=0)
    with pytest.raises(TypeError, match="both"):
        fn(model, x, *args, draws=3, num_draws=3, **kwargs)


def test_logit_hessian_norm_memory_budget_is_chunk_size():
    model, (x, _) = _model(), _data(n=5)
    c = model(x).argmax(1)
    new = _silent(logit_hessian_norm, model, x, c, chunk_size=2)
    old = _old(logit_hessian_norm, "'memory_budget'.*'chunk_size'", model, x, c, memory_budget=50)
    torch.testing.assert_close(old, new, rtol=1e-12, atol=0)
    with pytest.raises(TypeError, match="both"):
        logit_hessian_norm(model, x, c, memory_budget=50, chunk_size=2)


def test_verify_consequences_old_keywords():
    model, (x, y) = _model(), _data(n=6)
    kw = {"curvature_eps": None, "lr_steps": 5, "lr_iters": 2}
    new = _silent(verify_consequences, model, (x, y), num_attribution_draws=1, max_iter=40, **kw)
    old = _old(verify_consequences, "'attribution_draws'|'lanczos_steps'", model, (x, y),
               attribution_draws=1, lanczos_steps=40, **kw)  # fmt: skip
    assert old.measured == new.measured and old.bound == new.bound
