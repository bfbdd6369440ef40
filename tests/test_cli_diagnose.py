"""`spectral-lab diagnose` on the reader's own model and data: a factory with a weights file, a
torchvision name, a tensor file of (x, y); and `save_checkpoint` refusing what the CLI cannot load."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab import cli

FAST = ["--samples", "8", "--num-ntk-samples", "8", "--num-hessian-samples", "8",
        "--max-iter", "60", "--no-progress"]  # fmt: skip

FACTORY = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=10, width=16):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.Tanh())
            self.head = nn.Linear(width, num_classes)

        def forward(self, x):
            return {"features": self.body(x), "logits": self.head(self.body(x))}

    def make(num_classes=10, width=16):
        return Net(num_classes, width)
    """
)


@pytest.fixture
def factory(tmp_path, monkeypatch):
    (tmp_path / "my_factory_mod.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    mod = importlib.import_module("my_factory_mod")
    yield mod
    import sys

    sys.modules.pop("my_factory_mod", None)


def test_cli_diagnose_user_factory_with_weights_and_tensor_file(factory, tmp_path, capsys):
    torch.manual_seed(0)
    model = factory.make(num_classes=3, width=8)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # weights unlike any fresh initialisation
    torch.save(model.state_dict(), tmp_path / "w.pt")
    x, y = torch.rand(8, 1, 8, 8), torch.arange(8) % 3
    torch.save((x, y), tmp_path / "data.pt")
    argv = ["diagnose", "--model", "my_factory_mod:make", "--num-classes", "3",
            "--model-arg", "width=8", "--weights", str(tmp_path / "w.pt"),
            "--data", str(tmp_path / "data.pt"), "--out", str(tmp_path / "rep"), *FAST]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "output used: output['logits']" in out and "loss (cross_entropy)" in out
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert (tmp_path / "rep.png").read_bytes()[:4] == b"\x89PNG"
    assert rep["data"]["name"] == "data.pt" and rep["profile"]["n"] == 8
    # the same numbers as the library call on the model with those weights
    direct = sl.diagnose(model.eval(), (x, y), progress=False, max_iter=60, num_ntk_samples=8,
                         num_hessian_samples=8)  # fmt: skip
    assert rep["index"]["value"] == pytest.approx(direct.index.value, rel=1e-6)
    # without --weights the factory's fresh weights give another index: the weights were loaded
    argv_fresh = [a for a in argv if a not in ("--weights", str(tmp_path / "w.pt"))]
    assert cli.main(argv_fresh) == 0
    fresh = json.loads((tmp_path / "rep.json").read_text())
    assert fresh["index"]["value"] != pytest.approx(rep["index"]["value"], rel=1e-3)


def test_cli_diagnose_regression_tensor_file_picks_mse(factory, tmp_path, capsys):
    torch.save((torch.rand(8, 1, 8, 8), torch.randn(8)), tmp_path / "reg.pt")
    argv = ["diagnose", "--model", "my_factory_mod:make", "--num-classes", "1",
            "--data", str(tmp_path / "reg.pt"), "--out", str(tmp_path / "r"), *FAST]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "loss (mse)" in out and "R^2" in out and "accuracy" not in out


def test_cli_model_specs_and_their_errors(factory, tmp_path):
    m = cli._model_from_spec("torchvision:resnet18", {}, 10)
    assert type(m).__name__ == "ResNet" and m.fc.out_features == 10
    with pytest.raises(ValueError, match="package.module:function"):
        cli._model_from_spec("no_colon_here", {}, None)
    with pytest.raises(ValueError, match="cannot import 'nope'"):
        cli._model_from_spec("my_factory_mod:nope", {}, None)
    torch.save({"bad.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not fit the model: 4 missing"):
        cli._load_weights(factory.make(), str(tmp_path / "bad.pt"))
    torch.save([1, 2, 3], tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="expected a tensor x, a pair"):
        cli._load_tensor_data(str(tmp_path / "junk.pt"))


def test_save_checkpoint_rejects_what_the_cli_cannot_load(tmp_path, factory):
    with pytest.raises(ValueError, match=r"cannot rebuild name='Net'.*--model package.module"):
        sl.save_checkpoint(tmp_path / "a.pt", factory.make(), name="Net", input_shape=(1, 8, 8),
                           num_classes=10)  # fmt: skip
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ValueError, match="does not match build_model"):
        sl.save_checkpoint(tmp_path / "b.pt", other, name="mlp", input_shape=(1, 8, 8),
                           num_classes=10)  # fmt: skip
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists()
    good = sl.MLP(64, 10, width=8)
    path = sl.save_checkpoint(tmp_path / "c.pt", good, name="mlp", input_shape=(1, 8, 8),
                              num_classes=10, width=8)  # fmt: skip
    assert isinstance(sl.load_checkpoint(path)[0], sl.MLP)
