"""diagnose() / StabilityReport and the ``spectral-lab diagnose`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import spectral_lab as sl
from spectral_lab import cli

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def report_and_data():
    torch.manual_seed(0)
    model = sl.MLP(6, 3, width=10, depth=3, activation="tanh").double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    rep = sl.diagnose(model, (x, y), max_samples=32, num_ntk_samples=16, num_hessian_samples=32,
                      max_iter=30, progress=False, name="tiny", data_name="random")  # fmt: skip
    return model, x, y, rep


def _dense_references(model, x, y):
    """Independent values of the four index terms on ``x``: dense autograd Jacobians / Hessian
    (torch.autograd.functional) and numpy singular values / eigenvalues."""
    from torch.func import functional_call

    names = [k for k, _ in model.named_parameters()]
    shapes = [v.shape for _, v in model.named_parameters()]
    flat = torch.cat([v.detach().flatten() for v in model.parameters()])

    def unflat(v):
        out, i = {}, 0
        for k, sh in zip(names, shapes):
            out[k] = v[i : i + sh.numel()].reshape(sh)
            i += sh.numel()
        return out

    jf = [torch.autograd.functional.jacobian(lambda v: model(v[None])[0], xi).numpy() for xi in x]
    jt = [
        torch.autograd.functional.jacobian(
            lambda v, xi=xi: functional_call(model, unflat(v), (xi[None],))[0], flat
        ).numpy()
        for xi in x
    ]
    jac_top = max(np.linalg.svd(j, compute_uv=False)[0] for j in jf)
    param_top = max(np.linalg.svd(j, compute_uv=False)[0] for j in jt)
    return jac_top, param_top, jt, flat, unflat


def test_report_values_against_independent_dense_references(report_and_data):
    from torch.func import functional_call

    model, x, y, rep = report_and_data
    p, i, b = rep.profile, rep.index, rep.bounds
    assert p.n == 32 and p.n_ntk == 16 and p.n_hess == 32
    assert i.q == 1.0 and rep.robust_index.q == 0.95
    jac_top, param_top, jt, flat, unflat = _dense_references(model, x[:32], y[:32])
    # scalar NTK on the first 16 samples: K_ij = tr J_i J_j^T, eigenvalues by numpy
    J16 = np.stack(jt[:16])
    lam = np.linalg.eigvalsh(np.einsum("icp,jcp->ij", J16, J16))
    # dataset Hessian of the mean cross-entropy on the first 32 samples, dense
    H = torch.autograd.functional.hessian(
        lambda v: torch.nn.functional.cross_entropy(
            functional_call(model, unflat(v), (x[:32],)), y[:32]
        ),
        flat,
    ).numpy()
    hess_top = np.linalg.eigvalsh(H)[-1]
    terms = {
        "input_jacobian": jac_top,
        "parameter_jacobian": param_top,
        "ntk": np.sqrt(lam[-1] / 16),
        "hessian": np.sqrt(max(hess_top, 0.0)),
    }
    for k, v in terms.items():
        assert i.terms[k] == pytest.approx(v, rel=1e-6), k  # Lanczos: 30 steps on p = 213
    gamma = max(terms.values())
    assert i.value == pytest.approx(gamma, rel=1e-6)
    assert b["forward_gain"] == pytest.approx(gamma, rel=1e-6)
    assert b["forward_gain_operator"] == pytest.approx(jac_top, rel=1e-10)
    assert b["stable_lr"] == pytest.approx(2 / gamma**2, rel=1e-6)
    assert b["stable_lr_operator"] == pytest.approx(2 / hess_top, rel=1e-6)
    assert b["attribution_change"] == pytest.approx(2 * gamma, rel=1e-6)
    assert b["ntk_condition"] == pytest.approx(lam[-1] / lam[0], rel=1e-6)
    assert b["ntk_condition_bound"] == pytest.approx(gamma**2 * 16 / lam[0], rel=1e-6)
    assert 0 <= rep.data["accuracy"] <= 1 and rep.data["name"] == "random"
    acc = float((model(x[:32]).argmax(1) == y[:32]).double().mean())
    assert rep.data["accuracy"] == pytest.approx(acc)


def test_report_representations(report_and_data, tmp_path):
    *_, rep = report_and_data
    text = str(rep)
    assert "Global Matrix Stability Index" in text and "tiny" in text and repr(rep) == text
    html = rep._repr_html_()
    assert html.startswith("<div") and "&Gamma;" in html and "sets Gamma" in html
    d = rep.to_dict()
    assert d["format"] == "spectral_lab.stability_report/1" and "samples" not in d["profile"]
    path = tmp_path / "r.json"
    loaded = json.loads(rep.to_json(path))
    assert json.loads(path.read_text()) == loaded
    assert len(loaded["profile"]["samples"]["jac_top"]) == 32
    assert loaded["index"]["value"] == pytest.approx(rep.index.value)
    fig = rep.plot()
    assert len(fig.axes) == 3
    matplotlib.pyplot.close(fig)


def test_streaming_over_a_dataloader_matches_tensors(report_and_data):
    model, x, y, rep = report_and_data
    loader = DataLoader(TensorDataset(x, y), batch_size=7)
    rep2 = sl.diagnose(model, loader, max_samples=32, num_ntk_samples=16, num_hessian_samples=32,
                       max_iter=30, progress=False, batch_size=7)  # fmt: skip
    assert torch.allclose(rep2.profile.samples["jac_top"], rep.profile.samples["jac_top"])
    assert rep2.index.value == pytest.approx(rep.index.value, rel=1e-8)


def test_widget_and_plot_helpers(report_and_data):
    *_, rep = report_and_data
    ui = sl.widgets.stability_explorer(rep.profile)
    for agg in ("max", "geomean"):
        fig = ui.draw(q=0.9, agg=agg)
        assert len(fig.axes) == 2
        matplotlib.pyplot.close(fig)
    fig = sl.plots.plot_bound_check([1.0, 2.0], [2.0, 2.5], labels=["a", "b"])
    matplotlib.pyplot.close(fig)


# --------------------------------------------------------------------------- CLI
FAST = ["--samples", "24", "--num-ntk-samples", "12", "--num-hessian-samples", "24",
        "--max-iter", "8", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    ds = sl.load_dataset("digits", n=200)
    model = sl.MLP(64, 10, width=16, depth=2)
    sl.train(model, ds, epochs=1, progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "digits_mlp.pt"
    sl.save_checkpoint(path, model, name="mlp", input_shape=ds.input_shape, num_classes=10,
                       dataset="digits", width=16, depth=2)  # fmt: skip
    return path


def test_cli_diagnose_checkpoint_writes_json_and_png(checkpoint, capsys):
    assert cli.main(["diagnose", str(checkpoint), *FAST]) == 0
    out = capsys.readouterr().out
    assert "Global Matrix Stability Index" in out and "wrote" in out
    data = json.loads(checkpoint.with_name("digits_mlp.stability.json").read_text())
    assert data["model"]["num_params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert data["data"]["name"] == "digits (test)" and data["profile"]["n"] == 24
    assert checkpoint.with_name("digits_mlp.stability.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_diagnose_named_model(tmp_path, capsys):
    out = tmp_path / "sub" / "report.json"
    argv = ["diagnose", "--model", "mlp", "--model-arg", "width=8", "--data", "teacher",
            "--out", str(out), *FAST]  # fmt: skip
    assert cli.main(argv) == 0
    assert (tmp_path / "sub" / "report.json").is_file() and (
        tmp_path / "sub" / "report.png"
    ).is_file()
    assert "mlp (untrained" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["diagnose", "missing.pt"], "does not exist"),
        (["diagnose", "--model", "mlp", "--data", "imagenet"], "unknown dataset"),
        (["diagnose", "--model", "transformer"], "unknown model"),
        (["diagnose"], "either a checkpoint file or --model"),
        (["diagnose", "--model", "mlp", "--model-arg", "width"], "KEY=VALUE"),
        (["diagnose", "--model", "mlp", "--q", "0"], "q must be"),
    ],
)
def test_cli_diagnose_bad_input_exits_2(argv, message, capsys):
    assert cli.main(argv + ["--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_cli_checkpoint_mismatches_exit_2(checkpoint, tmp_path, capsys):
    # weights that do not fit the model the checkpoint describes
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["model"]["kwargs"]["width"] = 32
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    assert cli.main(["diagnose", str(bad), "--no-progress"]) == 2
    assert "does not match the model" in capsys.readouterr().err
    # a data set with other input shapes than the checkpoint was trained on
    assert cli.main(["diagnose", str(checkpoint), "--data", "teacher", "--no-progress"]) == 2
    assert "expects inputs of shape" in capsys.readouterr().err
    # not a checkpoint at all
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert cli.main(["diagnose", str(junk), "--no-progress"]) == 2
    assert "not a readable spectral_lab checkpoint" in capsys.readouterr().err


def test_cli_exit_code_in_a_real_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "spectral_lab.cli", "diagnose", str(tmp_path / "nope.pt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_diagnose_on_cuda_matches_cpu(report_and_data):
    model, x, y, rep = report_and_data
    rep_gpu = sl.diagnose(model.to("cuda"), (x.cuda(), y.cuda()), max_samples=32, num_ntk_samples=16,
                          num_hessian_samples=32, max_iter=30, progress=False)  # fmt: skip
    model.to("cpu")
    assert rep_gpu.index.value == pytest.approx(rep.index.value, rel=1e-6)
    assert rep_gpu.profile.samples["jac_top"].device.type == "cpu"  # kept on the host for plots
