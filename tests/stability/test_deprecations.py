"""Old keyword spellings of the stability functions, ``diagnose`` and the CLI still work for one
release: the same result as the new spelling, a ``DeprecationWarning`` that names the new spelling
and points at the caller's line (``warning.filename`` is this file), and ``TypeError`` when both
spellings are passed."""

from __future__ import annotations

import warnings

import pytest
import torch

import spectral_lab as sl
from spectral_lab import cli
from spectral_lab.stability import (
    logit_hessian_norm,
    measure_attribution_change,
    measure_forward_sensitivity,
    measure_parameter_sensitivity,
    stability_profile,
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


def test_stability_profile_old_keywords():
    model, (x, y) = _model(), _data()
    new = _silent(stability_profile, model, (x, y), num_ntk_samples=6, num_hessian_samples=8,
                  max_iter=50, chunk_size=3)  # fmt: skip
    for old, name in [
        ({"ntk_samples": 6, "num_hessian_samples": 8, "max_iter": 50}, "'ntk_samples'.*'num_ntk_samples'"),
        ({"num_ntk_samples": 6, "hessian_samples": 8, "max_iter": 50}, "'hessian_samples'.*'num_hessian_samples'"),
        ({"num_ntk_samples": 6, "num_hessian_samples": 8, "lanczos_steps": 50}, "'lanczos_steps'.*'max_iter'"),
    ]:  # fmt: skip
        got = _old(stability_profile, name, model, (x, y), chunk_size=3, **old)
        assert got.to_dict() == new.to_dict()
    # memory_budget (elements held at once) still sets the chunk; values do not depend on it
    got = _old(stability_profile, "'memory_budget'.*'chunk_size'", model, (x, y),
               num_ntk_samples=6, num_hessian_samples=8, max_iter=50, memory_budget=1)  # fmt: skip
    assert got.to_dict() == new.to_dict()
    assert new.settings["max_iter"] == 50
    with pytest.raises(TypeError, match="both"):
        stability_profile(model, (x, y), lanczos_steps=5, max_iter=5)
    with pytest.raises(TypeError, match="both"):
        stability_profile(model, (x, y), memory_budget=10, chunk_size=2)
    with pytest.raises(ValueError, match="chunk_size"):
        stability_profile(model, (x, y), chunk_size=0)


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


def test_diagnose_old_keywords_and_cli_flags(capsys, tmp_path):
    model, (x, y) = _model(), _data()
    kw = {"max_samples": 12, "progress": False}
    new = _silent(sl.diagnose, model, (x, y), num_ntk_samples=6, num_hessian_samples=8,
                  max_iter=40, **kw)  # fmt: skip
    old = _old(sl.diagnose, "deprecated", model, (x, y), ntk_samples=6, hessian_samples=8,
               lanczos_steps=40, **kw)  # fmt: skip
    assert old.to_dict()["index"] == new.to_dict()["index"]
    # the CLI keeps its old flag spellings as aliases of the new ones
    parser = cli.build_parser()
    a = parser.parse_args(["diagnose", "--model", "mlp", "--ntk-samples", "7",
                           "--hessian-samples", "9", "--lanczos-steps", "11"])  # fmt: skip
    b = parser.parse_args(["diagnose", "--model", "mlp", "--num-ntk-samples", "7",
                           "--num-hessian-samples", "9", "--max-iter", "11"])  # fmt: skip
    assert (a.num_ntk_samples, a.num_hessian_samples, a.max_iter) == (7, 9, 11)
    assert vars(a) == vars(b)
