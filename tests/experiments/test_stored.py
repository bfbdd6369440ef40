"""The stored JSON summary: round trip, the paper numbers with provenance, the full MNIST study
kept in chapters/results/."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import spectral_lab as sl
from spectral_lab.experiments import PAPER_PROVENANCE, assess_claims

from ._helpers import STORED, _fake


def test_study_summary_round_trip(tmp_path):
    from spectral_lab.experiments import (
        format_summary_table,
        load_study_summary,
        save_study_summary,
    )

    res = _fake(200.0, 50.0)
    d = save_study_summary(res, tmp_path / "r.json", "spectral-lab reproduce --dataset x")
    back = load_study_summary(tmp_path / "r.json")
    assert back["command"] == "spectral-lab reproduce --dataset x" and len(back["date"]) == 10
    assert back["table"] == [r for r in res.table() if r["metric"] != "train_seconds"]
    assert [c["verdict"] for c in back["claims"]] == [c.verdict for c in assess_claims(res)]
    assert back["claims"][0]["stats"]["ratio"] == pytest.approx(
        assess_claims(res)[0].stats["ratio"]
    )
    assert back == json.loads(json.dumps(d))
    assert "FD" in format_summary_table(back)
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a spectral_lab.study-summary"):
        load_study_summary(tmp_path / "bad.json")


def test_paper_numbers_are_the_spec_ones_with_provenance():
    rep = sl.experiments.PAPER_REPORTED["cifar10"]
    assert rep["standard"] == {"SE": 3.101, "FD": 220.445}
    assert rep["stable"] == {"SE": 3.102, "FD": 51.165}
    assert sl.experiments.PAPER_REPORTED["cifar100"] == {}
    assert "2602.01136" in PAPER_PROVENANCE and "Table 1" in PAPER_PROVENANCE


def test_stored_mnist_study_is_the_preset_and_self_consistent():
    from spectral_lab.experiments import load_study_summary

    d = load_study_summary(STORED)
    assert "reproduce --dataset mnist" in d["command"] and d["date"].startswith("20")
    preset = json.loads(json.dumps(dataclasses.asdict(sl.experiments.study_preset("mnist"))))
    assert d["config"] == preset  # the full study, not a quick one
    assert d["runs"]["n"] == 6 and d["runs"]["cached"] == 0  # trained by that command
    rows = {(r["variant"], r["metric"], r["scale"]): r for r in d["table"]}
    fd = d["claims"][0]["stats"]
    sc = fd["scale"]
    want = rows[("stable", "FD", sc)]["mean"] / rows[("standard", "FD", sc)]["mean"]
    assert fd["ratio"] == pytest.approx(want, rel=1e-6)
    assert fd["per_seed"] == pytest.approx(
        np.array(rows[("stable", "FD", sc)]["values"])
        / np.array(rows[("standard", "FD", sc)]["values"]),
        rel=1e-6,
    )
    for r in d["table"]:
        assert r["mean"] == pytest.approx(np.mean(r["values"]), rel=1e-9, abs=1e-12)
    assert json.dumps(d).__len__() < 50_000  # small: no per-sample arrays, no images


def test_stored_mnist_study_is_reproduced_from_its_cache():
    """Where the full study's runs are cached (``$SPECTRAL_LAB_CACHE``), its numbers and verdicts
    are recomputed from them and must equal the stored file."""
    from spectral_lab.experiments import cached_study, load_study_summary, study_summary

    res = cached_study(sl.experiments.study_preset("mnist"))
    if res is None:
        pytest.skip("the full MNIST study is not in the cache (run the command in the JSON)")
    d, now = load_study_summary(STORED), study_summary(res)
    for a, b in zip(d["table"], now["table"]):
        assert a["metric"] == b["metric"] and a["values"] == pytest.approx(b["values"], rel=1e-6)
    assert [c["verdict"] for c in d["claims"]] == [c["verdict"] for c in now["claims"]]
    assert [c["evidence"] for c in d["claims"]] == [c["evidence"] for c in now["claims"]]
