"""`spectral-lab reproduce` on absent, CIFAR-format and real MNIST data."""

from __future__ import annotations

import json

import pytest

from spectral_lab.cli import main

from ._helpers import HAVE_MNIST, MNIST_ROOT, _write_cifar


def test_reproduce_without_cifar_says_so_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECTRAL_LAB_DATA", str(tmp_path))
    for name in ("cifar10", "cifar100"):
        code = main(["reproduce", "--dataset", name, "--quick", "--no-cache"])
        out, err = capsys.readouterr()
        assert code == 2
        assert "not available" in err and "no " + name + " numbers are shown" in err
        assert "metric" not in out  # no table was printed


def test_reproduce_on_cifar_format_files(tmp_path, capsys):
    root = _write_cifar(tmp_path / "data", "cifar100")
    code = main(
        [
            "reproduce",
            "--dataset",
            "cifar100",
            "--quick",
            "--root",
            str(root),
            "--no-verify",
            "--cache",
            str(tmp_path / "cache"),
            "--quiet",
            "--n-eval",
            "16",
            "--save",
            str(tmp_path / "summary.json"),
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    assert "FD" in out and "no numbers reported" in out and "supported" in out
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["command"].startswith("spectral-lab reproduce --dataset cifar100")
    assert saved["config"]["dataset"] == "cifar100" and len(saved["claims"]) == 6
    assert all(c["verdict"] in out for c in saved["claims"])


@pytest.mark.skipif(not HAVE_MNIST, reason="real MNIST files not found (set SPECTRAL_LAB_DATA)")
def test_reproduce_mnist_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPECTRAL_LAB_DATA", MNIST_ROOT)
    code = main(["reproduce", "--dataset", "mnist", "--quick", "--cache", str(tmp_path), "--quiet"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "dataset=mnist" in out and "Which of the paper's claims" in out
    assert "paper (cifar10, reported" in out  # the reference numbers, labelled as the paper's
