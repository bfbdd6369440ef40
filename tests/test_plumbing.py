"""The private plumbing every public function goes through: _data, _losses, _random, _results
(each checked against a direct computation)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import spectral_lab as sl
from spectral_lab._data import Batches, iter_batches
from spectral_lab._losses import half_mse, resolve_loss
from spectral_lab._random import resolve_generator
from spectral_lab._results import Result


def _kinds(x, y):
    return {
        "tuple": (x, y),
        "ArrayDataset": sl.ArrayDataset(x, y, num_classes=3, name="t"),
        "TensorDataset": TensorDataset(x, y),
        "DataLoader": DataLoader(TensorDataset(x, y), batch_size=5),
        "list of batches": [(x[:6], y[:6]), (x[6:], y[6:])],
    }


def test_iter_batches_streams_every_kind_in_order(digits_batch, device):
    x, y = digits_batch[0][:13], digits_batch[1][:13]
    for name, data in _kinds(x, y).items():
        got = list(iter_batches(data, 4, device=device, dtype=torch.float64))
        assert torch.equal(torch.cat([b for b, _ in got]).cpu(), x.double()), name
        assert torch.equal(torch.cat([t for _, t in got]).cpu(), y), name
        assert all(b.dtype == torch.float64 and b.device.type == device for b, _ in got)
        assert sum(len(b) for b, _ in iter_batches(data, 4, max_samples=7)) == 7, name
    ((xb, yb),) = list(iter_batches(x, None))
    assert yb is None and torch.equal(xb, x)


def test_iter_batches_shuffles_reproducibly_and_covers_every_sample():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    a = [t for _, t in iter_batches((x, y), 3, shuffle=True, generator=resolve_generator(seed=1))]
    b = [t for _, t in iter_batches((x, y), 3, shuffle=True, generator=resolve_generator(seed=1))]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert sorted(torch.cat(a).tolist()) == list(range(10)) and torch.cat(a).tolist() != list(
        range(10)
    )


def test_iter_batches_errors():
    x, y = torch.randn(4, 2), torch.arange(4)
    with pytest.raises(ValueError, match="differ in length"):
        list(iter_batches((x, y[:3]), 2))
    with pytest.raises(ValueError, match="no samples"):
        list(iter_batches(DataLoader(TensorDataset(x[:0], y[:0])), 2))
    with pytest.raises(TypeError, match="data must be"):
        list(iter_batches(3.0, 2))
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_batches((x, y), 0))
    batches = Batches((x, y), 3)
    assert batches.num_samples() == 4 and len(list(batches)) == 2  # re-iterable


def test_half_mse_is_the_formula_and_the_registry_holds_it():
    out, y = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    ref = sum(0.5 * float(((out[i] - y[i]) ** 2).sum()) for i in range(5)) / 5
    assert float(half_mse(out, y)) == pytest.approx(ref, rel=1e-14)
    assert float(half_mse(out, y)) == pytest.approx(3 * 0.5 * float(F.mse_loss(out, y)), rel=1e-14)
    # output-space Hessian is I/n per sample
    H = torch.autograd.functional.hessian(lambda o: half_mse(o, y), out).reshape(15, 15)
    torch.testing.assert_close(H, torch.eye(15, dtype=torch.float64) / 5)
    assert resolve_loss("mse") is half_mse and resolve_loss("cross_entropy") is F.cross_entropy
    assert sl.training.LOSSES["mse"] is half_mse
    with pytest.raises(ValueError, match="unknown loss"):
        resolve_loss("hinge")
    with pytest.raises(TypeError, match="callable"):
        resolve_loss(3)


def test_resolve_generator():
    g = torch.Generator().manual_seed(5)
    assert resolve_generator(g) is g
    a = torch.rand(3, generator=resolve_generator())
    assert torch.equal(a, torch.rand(3, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(
        torch.rand(3, generator=resolve_generator(seed=7)),
        torch.rand(3, generator=torch.Generator().manual_seed(7)),
    )
    with pytest.raises(ValueError, match="not both"):
        resolve_generator(g, 1)
    with pytest.raises(TypeError, match="seed must be an int"):
        resolve_generator(seed=1.5)


def test_result_to_dict_is_plain_python():
    @dataclasses.dataclass(frozen=True)
    class R(Result):
        a: torch.Tensor
        b: float

    assert R(torch.tensor([1.0, 2.0]), 3.0).to_dict() == {"a": [1.0, 2.0], "b": 3.0}


def test_regularizer_one_generator_rule(tiny_mlp):
    m = tiny_mlp(4, 3)
    x = torch.randn(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="not both"):
        sl.regularizers.jacobian_frobenius_norm(m, x, generator=torch.Generator(), seed=1)


def test_input_gradient_penalty_with_mse_matches_per_sample_autograd(tiny_mlp):
    m = tiny_mlp(4, 3)
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    got = sl.regularizers.input_gradient_penalty(m, x, y, loss="mse")
    for i in range(5):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(0.5 * ((m(xi) - y[i : i + 1]) ** 2).sum(), xi)
        assert float(got[i]) == pytest.approx(float((g**2).sum()), rel=1e-10)


def test_train_and_evaluate_use_one_loss(tiny_mlp):
    m = tiny_mlp(4, 3)
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    loss, acc = sl.evaluate(m, (x, y), loss="mse")
    with torch.no_grad():
        assert loss == pytest.approx(float(((m(x) - y) ** 2).sum() / 16), rel=1e-12)
    with pytest.raises(TypeError, match="positional"):
        sl.evaluate(m, (x, y), "mse")  # the loss is a keyword
    hist = sl.train(m, (x, y), loss="mse", epochs=1, progress=False)
    assert hist.to_dict()["epochs"][0]["epoch"] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        hist.epochs = []
