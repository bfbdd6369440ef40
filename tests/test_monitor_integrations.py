"""The monitor's adapters, each with its real package: PyTorch Lightning, the Hugging Face Trainer,
TensorBoard (skipped, with the reason, when the package is missing)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from spectral_lab import MLP
from spectral_lab.monitor import SpectralMonitor


def _data(n=32, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def test_lightning_callback_records_a_real_training_run():
    pl = pytest.importorskip("lightning.pytorch", reason="lightning is not installed")
    from spectral_lab.monitor import LightningMonitor

    x, y = _data()

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = MLP(6, 3, width=8)

        def forward(self, inp):
            return self.net(inp)

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return nn.functional.cross_entropy(self(xb), yb)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    mon = SpectralMonitor((x[:16], y[:16]), every=2, quantities=("sharpness", "ntk", "layers"))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = pl.Trainer(
        max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[LightningMonitor(mon)],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on DataLoader workers
        trainer.fit(Module(), loader)
    assert [h["step"] for h in mon.history] == [0, 2, 4, 6]
    assert all(h["sharpness"] > 0 for h in mon.history)
    assert "preconditioned_sharpness" in mon.history[-1]  # Adam's state was read
    assert mon.history[0]["two_over_lr"] == pytest.approx(200.0)
    assert "loss" in mon.history[-1] and mon.history[0]["ntk_drift"] == 0.0
    assert mon.history[-1]["ntk_drift"] > 0
    assert trainer.callback_metrics["spectral/sharpness"] == pytest.approx(
        mon.history[-1]["sharpness"]
    )


class _HFModel(nn.Module):
    """A plain module the Trainer can train: ``forward(x, labels)`` returns loss and logits."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = MLP(6, 3, width=8)

    def forward(self, x, labels=None):
        logits = self.net(x)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        return out


def test_hugging_face_callback_records_a_real_training_run(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("accelerate", reason="the transformers Trainer needs accelerate")
    from spectral_lab.monitor import HFMonitor

    x, y = _data()
    ds = [{"x": xi, "labels": int(yi)} for xi, yi in zip(x, y)]
    mon = SpectralMonitor({"x": x[:16], "labels": y[:16]}, every=2,
                          quantities=("sharpness", "input_jacobian"))  # fmt: skip
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=6, per_device_train_batch_size=8, learning_rate=1e-2,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
        lr_scheduler_type="constant",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = transformers.Trainer(
            model=_HFModel(), args=args, train_dataset=ds, callbacks=[HFMonitor(mon)]
        )
        trainer.train()
    assert [h["step"] for h in mon.history] == [0, 2, 4, 6]
    assert all(h["sharpness"] > 0 and h["jac_top"] > 0 for h in mon.history)
    assert "preconditioned_sharpness" in mon.history[-1]  # AdamW's state
    assert mon.history[0]["two_over_lr"] == pytest.approx(200.0)
    logged = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert mon.history[-1]["loss"] in logged


def test_hugging_face_callback_on_a_real_transformers_model(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    pytest.importorskip("accelerate", reason="the transformers Trainer needs accelerate")
    from spectral_lab.monitor import HFMonitor

    cfg = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 50, (16, 6), generator=g)
    labels = torch.randint(0, 2, (16,), generator=g)
    ds = [{"input_ids": i, "labels": int(t)} for i, t in zip(ids, labels)]
    mon = SpectralMonitor({"input_ids": ids[:8], "labels": labels[:8]}, every=2,
                          quantities=("sharpness", "input_jacobian"))  # fmt: skip
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=8, learning_rate=1e-3,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformers.Trainer(model=model, args=args, train_dataset=ds,
                             callbacks=[HFMonitor(mon)]).train()  # fmt: skip
    assert [h["step"] for h in mon.history] == [0, 2, 4]
    assert all(h["sharpness"] > 0 and h["jac_entropy"] >= 0 for h in mon.history)


def test_tensorboard_writes_the_scalars_and_spectra(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spectral_lab.monitor.tensorboard import summary_writer

    x, y = _data()
    torch.manual_seed(0)
    model = MLP(6, 3, width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    writer = summary_writer(str(tmp_path))
    mon = SpectralMonitor((x, y), every=2, writer=writer)
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        mon.step(model, opt, loss=loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    writer.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    for key in ("sharpness", "ntk_drift", "jac_entropy", "two_over_lr", "probe_loss", "products"):
        events = acc.Scalars(f"spectral/{key}")
        assert [e.step for e in events] == [0, 2, 4], key
        assert [e.value for e in events] == pytest.approx(
            [h[key] for h in mon.history], rel=1e-6, abs=1e-12
        ), key
    layer = next(k for k in mon.history[0] if k.startswith("stable_rank/"))
    assert f"spectral/{layer}" in tags["scalars"]
    assert "spectrum/ntk" in tags["histograms"] and "spectrum/input_jacobian" in tags["histograms"]
    hist = acc.Histograms("spectrum/ntk")
    assert [h.step for h in hist] == [0, 2, 4]
    assert hist[0].histogram_value.num == len(mon.ntk_index)
    assert hist[0].histogram_value.max == pytest.approx(mon.history[0]["ntk_top"], rel=1e-6)


def test_adapters_refuse_anything_but_a_monitor():
    pytest.importorskip("lightning.pytorch", reason="lightning is not installed")
    from spectral_lab.monitor import LightningMonitor

    with pytest.raises(TypeError, match="SpectralMonitor"):
        LightningMonitor(object())
