"""``diagnose`` budgets, progress and the per-sample route, against independent references.

A budget that runs out must skip (or stop) phases, say which and why, and turn every bound that
needs them into "not computed" / "not certified"; the mutation tests ignore the budget and check
that these tests then fail. The per-sample route of a batch-dependent model is compared with a
Python loop over batches of one (here, in the test only).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab._budget import Budget, ntk_phase

FAST = dict(progress=False, max_samples=16, num_ntk_samples=8, num_hessian_samples=16)


def _mlp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double().eval()
    x = torch.randn(16, 5, dtype=torch.float64)
    return m, x, torch.arange(16) % 3


def _flat(m):
    names = [k for k, p in m.named_parameters() if p.requires_grad]
    theta = torch.cat([p.detach().reshape(-1) for k, p in m.named_parameters() if k in names])
    shapes = [p.shape for k, p in m.named_parameters() if k in names]

    def f(t, x):
        params, i = {}, 0
        for k, s in zip(names, shapes):
            params[k] = t[i : i + s.numel()].view(s)
            i += s.numel()
        return torch.func.functional_call(m, params, (x,))

    return theta, f


def _dense_hessian_top(m, x, y) -> float:
    theta, f = _flat(m)
    H = torch.autograd.functional.hessian(lambda t: nn.functional.cross_entropy(f(t, x), y), theta)
    return float(torch.linalg.eigvalsh(H)[-1])


def _hessian_skipped(rep) -> bool:
    """Everything a skipped Hessian phase must show; False if any piece is missing."""
    skipped = rep.profile.settings["budget"]["skipped"]
    return (
        "hessian" in skipped
        and rep.profile.hess_top is None
        and "hessian" not in rep.index.terms
        and rep.bounds["stable_lr"] is None
        and rep.bounds["stable_lr_operator"] is None
        and rep.bound_status["stable_lr"].startswith("not computed (needs hessian, skipped")
        and "skipped: hessian" in rep.summary()
        and "stable GD step eta < not computed" in rep.summary()
    )


def test_tiny_matvec_budget_skips_the_hessian_and_reports_it():
    m, x, y = _mlp()
    # the dense NTK Gram on 8 samples costs exactly 8 products: nothing is left for Lanczos
    rep = sl.diagnose(m, (x, y), matvec_budget=8, **FAST)
    assert _hessian_skipped(rep)
    assert "matvec budget (8) leaves 0" in rep.profile.settings["budget"]["skipped"]["hessian"]
    assert rep.profile.ntk_top is not None and rep.bound_status["ntk_condition"] == "computed"
    assert rep.profile.settings["budget"]["matvecs"] == 8
    full = sl.diagnose(m, (x, y), **FAST)  # the same run without a budget computes the Hessian
    assert full.profile.hess_top is not None and not _hessian_skipped(full)


def test_budget_mutation_ignoring_the_skip_fails_the_check(monkeypatch):
    m, x, y = _mlp()
    monkeypatch.setattr(Budget, "matvecs_left", lambda self: math.inf)  # the budget ignored
    rep = sl.diagnose(m, (x, y), matvec_budget=8, **FAST)
    assert not _hessian_skipped(rep)


def test_zero_matvec_budget_skips_ntk_and_hessian_only():
    m, x, y = _mlp()
    rep = sl.diagnose(m, (x, y), matvec_budget=0, **FAST)
    skipped = rep.profile.settings["budget"]["skipped"]
    assert set(skipped) == {"ntk", "hessian"}
    assert set(rep.index.terms) == {"input_jacobian", "parameter_jacobian"}
    for k in ("ntk_condition", "ntk_condition_bound", "stable_lr", "stable_lr_operator"):
        assert rep.bounds[k] is None and rep.bound_status[k].startswith("not computed")
    assert rep.bounds["forward_gain"] is not None


def test_matvec_budget_caps_lanczos_and_the_step_bound_is_not_certified():
    m, x, y = _mlp()
    rep = sl.diagnose(
        m, (x, y), operators=("input_jacobian", "hessian"), matvec_budget=3, tol=1e-12,
        **FAST,
    )  # fmt: skip
    st = rep.profile.settings
    assert st["hessian_matvecs"] <= 3 and st["hessian_converged"] is False
    assert "capped at 3" in st["budget"]["capped"]["hessian"]
    assert rep.bound_status["stable_lr"].startswith("not certified (Lanczos capped at 3")
    assert rep.bounds["stable_lr"] is None and "stopped early: hessian" in rep.summary()
    # a Ritz value never exceeds lambda_max: a lower estimate of the dense reference
    assert rep.profile.hess_top <= _dense_hessian_top(m, x, y) * (1 + 1e-12)


def test_unbudgeted_hessian_matches_the_dense_reference():
    m, x, y = _mlp()
    rep = sl.diagnose(m, (x, y), tol=1e-10, max_iter=200, **FAST)
    assert rep.profile.settings["hessian_converged"] is True
    assert rep.profile.hess_top == pytest.approx(_dense_hessian_top(m, x, y), rel=1e-8)
    assert rep.bound_status["stable_lr"] == "computed"


def test_spent_time_budget_stops_the_stream_and_skips_the_rest():
    m, x, y = _mlp()
    rep = sl.diagnose(m, (x, y), time_budget=1e-9, batch_size=4, **FAST)
    b = rep.profile.settings["budget"]
    # one probe's worth: one output row of one sample (a lower estimate, reported), then stop
    assert rep.profile.n == 1
    assert "lower estimates" in b["capped"]["input_jacobian"]
    assert "stopped" in b["capped"]["samples"]
    assert set(b["skipped"]) == {"ntk", "hessian", "parameter_jacobian"}
    assert all("time budget" in v for v in b["skipped"].values())
    assert rep.bounds["stable_lr"] is None and rep.bounds["ntk_condition"] is None


def test_ntk_blocks_upper_triangle_match_dense_gram():
    torch.manual_seed(2)  # three layers: the C x C blocks J_i J_j^T are not symmetric
    m = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3))
    m = m.double().eval()
    x = torch.randn(7, 5, dtype=torch.float64)
    theta, f = _flat(m)
    J = torch.autograd.functional.jacobian(lambda t: f(t, x[:7]), theta)  # (7, 3, p)
    ref = torch.linalg.eigvalsh(torch.einsum("ncp,mcp->nm", J, J))
    lam = ntk_phase(m, x[:7], "scalar", budget=Budget(progress=False), block=3, dense_limit=0)
    torch.testing.assert_close(lam, ref, rtol=1e-10, atol=1e-10)
    Kb = torch.einsum("ncp,mdp->ncmd", J, J).reshape(21, 21)
    lamb = ntk_phase(m, x[:7], "block", budget=Budget(progress=False), block=3, dense_limit=0)
    torch.testing.assert_close(lamb, torch.linalg.eigvalsh(Kb), rtol=1e-10, atol=1e-10)


def test_ntk_phase_is_skipped_when_its_predicted_cost_exceeds_the_time_left(monkeypatch):
    m, x, _ = _mlp()
    monkeypatch.setattr(
        Budget, "time_left", lambda self, phase=None: 1e-7
    )  # positive, but almost nothing
    b = Budget(progress=False)
    assert ntk_phase(m, x[:9], "scalar", budget=b, block=3, dense_limit=0) is None
    assert b.skipped["ntk"].startswith("predicted")
    assert b.matvecs == 0  # predicted from the one-sample probe: no column chunk was spent
    assert b.phases["ntk"].pieces == 1  # the probe only


def test_every_phase_shows_a_bar_and_the_bars_tick(monkeypatch):
    m, x, y = _mlp()
    bars: dict[str, object] = {}
    enabled: list[bool] = []
    real = Budget.bar

    def spy(self, desc, total, unit):
        bar = real(self, desc, total, unit)
        bars[desc] = bar
        enabled.append(not bar.disable)
        return bar

    monkeypatch.setattr(Budget, "bar", spy)
    monkeypatch.delenv("SPECTRAL_LAB_HEADLESS", raising=False)
    rep = sl.diagnose(m, (x, y), **{**FAST, "progress": True})
    assert set(bars) == {
        "input Jacobian",
        "parameter Jacobian",
        "NTK Gram",
        "Hessian (Lanczos)",
        "loss",
    }
    assert bars["input Jacobian"].n == bars["parameter Jacobian"].n == rep.profile.n == 16
    assert bars["NTK Gram"].n == 8
    assert bars["Hessian (Lanczos)"].n == rep.profile.settings["hessian_matvecs"] > 1
    assert all(enabled) and len(enabled) == 5


def test_headless_and_progress_false_switch_the_bars_off(monkeypatch):
    monkeypatch.setenv("SPECTRAL_LAB_HEADLESS", "1")
    assert Budget(progress=True).bar("x", 3, "it").disable
    monkeypatch.delenv("SPECTRAL_LAB_HEADLESS")
    assert Budget(progress=False).bar("x", 3, "it").disable
    assert not Budget(progress=True).bar("x", 3, "it").disable


def test_bad_budgets_are_refused():
    m, x, y = _mlp()
    with pytest.raises(ValueError, match="time_budget"):
        sl.diagnose(m, (x, y), time_budget=0, **FAST)
    with pytest.raises(ValueError, match="matvec_budget"):
        sl.diagnose(m, (x, y), matvec_budget=-1, **FAST)


# --- batch-dependent models: the per-sample route ------------------------------------------------


def _bn_cnn(track: bool = False):
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3, track_running_stats=track), nn.Tanh(),
        nn.Flatten(), nn.Linear(3 * 5 * 5, 4),
    ).double().eval()  # fmt: skip


def test_batch_dependent_model_gets_the_per_sample_route_equal_to_a_loop():
    m = _bn_cnn()
    x = torch.rand(6, 1, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6) % 4
    assert not torch.allclose(m(x)[:3], m(x[:3]))  # batch-dependent indeed
    rep = sl.diagnose(m, (x, y), progress=False, tol=1e-10, max_iter=100)
    assert "its own batch of one" in rep.data["notes"]["batch"]
    assert "per-sample route" in rep.summary()
    # references: a loop over batches of one (test only)
    outs = torch.cat([m(x[i : i + 1]) for i in range(6)])
    assert rep.data["loss"] == pytest.approx(float(nn.functional.cross_entropy(outs, y)), rel=1e-10)
    top = []
    for i in range(6):
        J = torch.autograd.functional.jacobian(lambda xi: m(xi[None])[0], x[i]).reshape(4, -1)
        top.append(float(torch.linalg.svdvals(J)[0]))
    torch.testing.assert_close(
        rep.profile.samples["jac_top"], torch.tensor(top, dtype=torch.float64)
    )
    theta, f = _flat(m)
    J = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda t, i=i: f(t, x[i : i + 1])[0], theta)
            for i in range(6)
        ]
    )
    lam = torch.linalg.eigvalsh(torch.einsum("ncp,mcp->nm", J, J))
    assert rep.profile.ntk_top == pytest.approx(float(lam[-1]) / 6, rel=1e-8)
    assert rep.profile.ntk_min == pytest.approx(float(lam[0]) / 6, rel=1e-6, abs=1e-12)
    H = torch.autograd.functional.hessian(
        lambda t: nn.functional.cross_entropy(torch.cat([f(t, x[i : i + 1]) for i in range(6)]), y),
        theta,
    )
    assert rep.profile.hess_top == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-7)


def test_per_sample_route_refuses_an_ill_posed_model_with_the_reason():
    m = nn.Sequential(
        nn.Linear(4, 5), nn.BatchNorm1d(5, track_running_stats=False), nn.Linear(5, 3)
    ).eval()
    x, y = torch.randn(8, 4), torch.arange(8) % 3
    with pytest.raises(ValueError, match="batch-dependent.*per-sample route.*ill-posed"):
        sl.diagnose(m, (x, y), progress=False)


def test_per_sample_route_mutation_batch_stats_would_fail(monkeypatch):
    """If the route evaluated the whole batch at once, the loop reference would disagree."""
    from spectral_lab import _adapt

    monkeypatch.setattr(_adapt.PerSample, "forward", lambda self, x: self.model(x))
    m = _bn_cnn()
    x = torch.rand(6, 1, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="batch-dependent"):
        sl.diagnose(m, (x, torch.arange(6) % 4), progress=False)


# --- the command line ------------------------------------------------------------------------------

CLI = ["diagnose", "--model", "mlp", "--data", "digits", "--model-arg", "width=16",
       "--samples", "16", "--num-ntk-samples", "8", "--num-hessian-samples", "16"]  # fmt: skip


def test_cli_matvec_budget_skips_and_reports(tmp_path, capsys, monkeypatch):
    import json

    from spectral_lab import cli

    monkeypatch.setenv("SPECTRAL_LAB_HEADLESS", "1")
    argv = [*CLI, "--matvec-budget", "8", "--out", str(tmp_path / "rep")]
    assert cli.main(argv) == 0
    cap = capsys.readouterr()
    assert "skipped: hessian (the matvec budget (8) leaves 0" in cap.out
    assert "Hessian (Lanczos)" not in cap.err  # headless: no bars
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["bounds"]["stable_lr"] is None
    assert rep["bound_status"]["stable_lr"].startswith("not computed (needs hessian, skipped")
    assert rep["profile"]["settings"]["budget"]["matvec_budget"] == 8


def test_cli_progress_on_stderr_unless_headless(tmp_path, capsys, monkeypatch):
    from spectral_lab import cli

    monkeypatch.delenv("SPECTRAL_LAB_HEADLESS", raising=False)
    assert cli.main([*CLI, "--time-budget", "600", "--out", str(tmp_path / "rep")]) == 0
    cap = capsys.readouterr()
    for phase in ("input Jacobian", "parameter Jacobian", "NTK Gram", "Hessian (Lanczos)"):
        assert f"{phase}:" in cap.err and f"{phase}:" not in cap.out  # "name: 50%|..."
    assert cli.main([*CLI, "--no-progress", "--out", str(tmp_path / "rep")]) == 0
    assert "NTK Gram:" not in capsys.readouterr().err
    assert cli.main([*CLI, "--time-budget", "0"]) == 2  # a clear error, exit 2
    assert "time_budget must be a positive" in capsys.readouterr().err


def test_ntk_cost_prediction_fits_per_column_and_per_row_costs():
    from spectral_lab._budget import _predict_rest

    def cost(c, r):  # a known cost model: 2 s per column plus 0.5 s per column and row
        return c * (2 + 0.5 * r)

    done = [(8, 8, cost(8, 8)), (8, 16, cost(8, 16))]
    assert _predict_rest(done, [(8, 24), (4, 28)]) == pytest.approx(cost(8, 24) + cost(4, 28))
    # one block: all of its cost is put on the rows, so the prediction is never smaller
    assert _predict_rest(done[:1], [(8, 24)]) >= cost(8, 24)
