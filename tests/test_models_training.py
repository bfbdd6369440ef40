"""Reference models, the training loop, checkpoints and input validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab._checks import check_model, check_tensor


@pytest.mark.parametrize("act", sorted(sl.models.ACTIVATIONS))
def test_mlp_shapes_and_activation(act):
    m = sl.MLP(12, 5, width=7, depth=4, activation=act)
    assert m(torch.randn(3, 12)).shape == (3, 5)
    assert sum(isinstance(x, nn.Linear) for x in m.layers) == 4


def test_linear_mlp_is_its_weight_product():
    m = sl.MLP(6, 3, width=5, depth=3, activation="identity", bias=False).double()
    ws = [layer.weight for layer in m.layers if isinstance(layer, nn.Linear)]
    x = torch.randn(4, 6, dtype=torch.float64)
    assert torch.allclose(m(x), x @ (ws[2] @ ws[1] @ ws[0]).T)


def test_init_gain_sets_weight_variance():
    torch.manual_seed(0)
    m = sl.MLP(400, 10, width=400, depth=2, gain=2.0)
    w = m.layers[1].weight
    assert abs(w.var().item() * 400 / 4.0 - 1) < 0.05
    assert m.layers[1].bias.abs().max() == 0


def test_cnn_and_resnets_run_on_images():
    x = torch.randn(2, 3, 16, 16)
    for model in (
        sl.SmallCNN(3, 7, image_size=16, pool="max"),
        sl.SmallCNN(3, 7, image_size=16, pool="avg"),
        sl.SmallCNN(3, 7, image_size=16, pool=None),
        sl.ConvResNet(3, 7, image_size=16, depth=2),
        sl.build_model("resmlp", (3, 16, 16), 7, depth=2),
    ):
        assert model(x).shape == (2, 7)


def test_residual_block_is_identity_at_zero_scale():
    m = sl.ResidualMLP(8, 3, width=8, depth=3, residual_scale=0.0)
    h = torch.randn(4, 8)
    for block in m.blocks:
        assert torch.equal(block(h), h)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="unknown activation"):
        sl.MLP(4, 2, activation="swishy")
    with pytest.raises(ValueError, match="width must be positive"):
        sl.MLP(4, 2, width=0)
    with pytest.raises(ValueError, match="unknown model"):
        sl.build_model("transformer", (4,), 2)
    with pytest.raises(ValueError, match="channels, height, width"):
        sl.build_model("cnn", (4,), 2)


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, (x[:, 0] > 0).long()


def test_training_is_deterministic_and_learns():
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        m = sl.MLP(5, 2, width=16)
        h = sl.train(
            m, _data(), epochs=20, lr=1e-2, batch_size=16, progress=False, test_data=_data(seed=1)
        )
        runs.append((h.step_loss, m.layers[1].weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    assert h.final("test_acc") > 0.85 and not m.training


def test_extra_loss_hook_is_added_and_recorded():
    calls = []

    def penalty(model, x, y, logits):
        calls.append(len(x))
        return 1e-3 * sum((p**2).sum() for p in model.parameters())

    m = sl.MLP(5, 2, width=8)
    h = sl.train(m, _data(), epochs=2, batch_size=32, extra_loss=penalty, progress=False)
    assert calls == [32, 32, 32, 32] and all(v > 0 for v in h.step_extra)


def test_sgd_and_mse_and_dataloader():
    x = torch.randn(32, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    m = sl.MLP(3, 1, width=16, depth=2, activation="tanh")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    h = sl.train(m, loader, epochs=30, lr=0.05, optimizer="sgd", loss="mse", progress=False)
    assert h.epochs[-1]["train_loss"] < 0.2 * h.epochs[0]["train_loss"]


def test_training_rejects_bad_input():
    x, y = _data()
    with pytest.raises(ValueError, match="NaN"):
        sl.train(sl.MLP(5, 2), (x.clone().fill_(float("nan")), y), progress=False)
    with pytest.raises(ValueError, match="loss must be"):
        sl.train(sl.MLP(5, 2), (x, y), loss="hinge", progress=False)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        sl.train(
            sl.MLP(5, 2, gain=30.0, depth=6), (x * 1e6, y), lr=1e6, optimizer="sgd", progress=False
        )


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    m = sl.build_model("mlp", (1, 8, 8), 10, width=16)
    path = sl.save_checkpoint(
        tmp_path / "m.pt",
        m,
        name="mlp",
        input_shape=(1, 8, 8),
        num_classes=10,
        dataset="digits",
        width=16,
    )
    m2, info = sl.load_checkpoint(path)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(m(x), m2(x)) and info["dataset"] == "digits"
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["kwargs"]["width"] = 17
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not match"):
        sl.load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        sl.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        sl.load_checkpoint(tmp_path / "junk.pt")


def test_checks_name_the_problem():
    with pytest.raises(TypeError, match="integer"):
        check_tensor(torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        check_tensor(torch.ones(0, 3))
    with pytest.raises(ValueError, match="Inf"):
        check_tensor(torch.tensor([1.0, float("inf")]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        check_tensor([1.0])
    drop = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    assert check_model(drop) is drop  # static checks only: behaviour is judged by sl.prepare
    with pytest.raises(ValueError, match="no parameters"):
        check_model(nn.ReLU())
    with pytest.raises(ValueError, match="NaN"):
        sl.input_jacobian(sl.MLP(3, 2), torch.tensor([[float("nan"), 0.0, 0.0]]))


def test_input_jacobian_follows_dtype():
    torch.manual_seed(0)
    for dtype in (torch.float64, torch.float32):
        m = sl.MLP(4, 3, width=6, activation="tanh").to(dtype)
        x = torch.randn(5, 4, dtype=dtype)
        J = sl.input_jacobian(m, x)
        assert J.dtype == dtype and J.shape == (5, 3, 4)
        # autograd reference at the same points, sample by sample
        ref = torch.stack(
            [torch.autograd.functional.jacobian(lambda z, m=m: m(z[None])[0], xi) for xi in x]
        )
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(J, ref, rtol=tol, atol=tol)
        # a Jacobian of the wrong sample (or transposed samples) would be caught
        assert (J[0] - ref[1]).abs().max() > 100 * tol


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda():
    m = sl.MLP(5, 2).cuda()
    x, y = _data()
    sl.train(m, (x, y), epochs=1, progress=False)
    assert sl.input_jacobian(m, x[:4].cuda()).is_cuda
