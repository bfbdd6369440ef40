"""SpectralMonitor against independent references: dense autograd Hessians and Jacobians, the
closed-form sharpness of a quadratic, torch's own Adam step; warm start against a cold Lanczos."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab.monitor import DivergenceWarning, SpectralMonitor
from spectral_lab.monitor import measure as measure_mod


def _data(n=24, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=g)
    return x, y


def _ce_step(model, opt, x, y, mon=None):
    loss = nn.functional.cross_entropy(model(x), y)
    rec = mon.step(model, opt, loss=loss) if mon is not None else None
    opt.zero_grad()
    loss.backward()
    opt.step()
    return rec


def _flat_loss(model, x, y, loss="cross_entropy"):
    """The probe loss as a function of the flat parameter vector (torch.func, independent of
    the library)."""
    names = [n for n, p in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def f(theta):
        parts, i = {}, 0
        for n, s in zip(names, shapes):
            k = math.prod(s)
            parts[n] = theta[i : i + k].view(s)
            i += k
        out = torch.func.functional_call(model, parts, (x,))
        if loss == "cross_entropy":
            return nn.functional.cross_entropy(out, y)
        return 0.5 * ((out - y) ** 2).sum(1).mean()

    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return f, theta


# --- sharpness ------------------------------------------------------------------------------------


def _trained_monitor(tiny_mlp, **kw):
    model = tiny_mlp(5, 3, width=6)
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    mon = SpectralMonitor((x, y), every=3, quantities=("sharpness",), tol=1e-9, **kw)
    for _ in range(7):
        _ce_step(model, opt, x, y, mon)
    return model, (x, y), mon


def test_logged_sharpness_is_hessian_eigs_at_the_same_checkpoint(tiny_mlp):
    model, probe, mon = _trained_monitor(tiny_mlp)
    assert [h["step"] for h in mon.history] == [0, 3, 6]
    # the checkpoint the last record measured: measure again now (after step 6's update it moved),
    # so re-measure explicitly at the current parameters
    rec = mon.measure(model)
    ref = sl.hessian_eigs(model, probe, tol=1e-10, max_iter=200)
    assert abs(rec["sharpness"] - float(ref)) <= 1e-6 * abs(float(ref))
    # and against a dense autograd Hessian (independent of the library's operator)
    f, theta = _flat_loss(model, *probe)
    H = torch.autograd.functional.hessian(f, theta)
    lam = float(torch.linalg.eigvalsh(H)[-1])
    assert abs(rec["sharpness"] - lam) <= 1e-6 * abs(lam)
    assert rec["two_over_lr"] is not None if "two_over_lr" in rec else True


def test_mutation_gauss_newton_for_the_hessian_is_caught(tiny_mlp, monkeypatch):
    real = measure_mod.hessian_operator
    monkeypatch.setattr(
        measure_mod, "hessian_operator", lambda *a, **k: real(*a, **{**k, "which": "gn"})
    )
    model, probe, mon = _trained_monitor(tiny_mlp)
    rec = mon.measure(model)
    ref = float(sl.hessian_eigs(model, probe, tol=1e-10, max_iter=200))
    assert abs(rec["sharpness"] - ref) > 1e-6 * abs(ref)


def _quadratic(seed=0, n=32, d=6):
    """``loss = 1/2 theta^T H theta`` with ``H = X^T X / n``: a linear model, zero targets, mse."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.zeros(n, 1, dtype=torch.float64)
    lam = float(torch.linalg.eigvalsh(x.T @ x / n)[-1])
    torch.manual_seed(seed)
    model = nn.Linear(d, 1, bias=False).double()
    return model, (x, y), lam


def _gd_quadratic(factor, steps=80, every=5):
    model, (x, y), lam = _quadratic()
    lr = factor / lam
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    mon = SpectralMonitor((x, y), loss="mse", every=every, quantities=("sharpness",), tol=1e-8)
    for _ in range(steps):
        loss = 0.5 * (model(x) ** 2).sum(1).mean()
        mon.step(model, opt, loss=loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mon, lam, lr


def test_quadratic_below_the_edge_is_flat_and_decays():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        mon, lam, lr = _gd_quadratic(1.9)
    sharp = [h["sharpness"] for h in mon.history]
    assert max(abs(s - lam) for s in sharp) <= 1e-6 * lam  # flat, at the closed form
    assert all(h["two_over_lr"] == pytest.approx(2 / lr) for h in mon.history)
    losses = [h["probe_loss"] for h in mon.history]
    assert losses[-1] < 1e-2 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert not any(h["diverging"] for h in mon.history)
    # the loss the loop passed is the probe loss here (same data, same parameters)
    assert all(h["loss"] == pytest.approx(h["probe_loss"]) for h in mon.history)


def test_quadratic_above_the_edge_is_reported_diverging():
    with pytest.warns(DivergenceWarning, match="diverging"):
        mon, lam, lr = _gd_quadratic(2.1)
    assert mon.history[-1]["diverging"]
    assert mon.history[-1]["sharpness"] > mon.history[-1]["two_over_lr"]
    first = next(h for h in mon.history if h["diverging"])
    # the rule: two rises of the probe loss in a row, above 2/eta
    i = mon.history.index(first)
    assert i >= 2
    losses = [h["probe_loss"] for h in mon.history[i - 2 : i + 1]]
    assert losses[0] < losses[1] < losses[2]
    assert not any(h["diverging"] for h in mon.history[:i])


def test_warm_start_spends_fewer_products_than_a_cold_start(tiny_mlp):
    model = tiny_mlp(5, 3, width=6)
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tol = 1e-6
    mon = SpectralMonitor((x, y), every=2, quantities=("sharpness",), tol=tol)
    warm, cold = [], []
    for t in range(6):
        rec = mon.measure(model, opt, step=2 * t)
        ref = sl.hessian_eigs(model, (x, y), tol=tol, seed=0)  # cold: a fresh random start
        assert rec["sharpness_converged"] and ref.converged
        assert abs(rec["sharpness"] - float(ref)) <= 10 * tol * abs(float(ref))
        if t > 0:
            warm.append(rec["sharpness_products"])
            cold.append(ref.matvecs)
        for _ in range(2):
            _ce_step(model, opt, x, y)
    assert sum(warm) < sum(cold), (warm, cold)
    assert all(h["products"] == h["sharpness_products"] for h in mon.history)


# --- preconditioned sharpness (Adam) ---------------------------------------------------------------


def _adam_run(tiny_mlp, steps=4):
    model = tiny_mlp(5, 3, width=5)
    x, y = _data()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.9, 0.99), eps=1e-3)
    for _ in range(steps):
        _ce_step(model, opt, x, y)
    return model, opt, (x, y)


def test_adam_preconditioner_is_the_one_adam_steps_with(tiny_mlp):
    """Adam's update is ``theta - eta P^{-1} m`` (m the raw exponential average): checked against
    torch's own step."""
    model, opt, (x, y) = _adam_run(tiny_mlp)
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    _ce_step(model, opt, x, y)
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    prep = sl.prepare(model, (x, y))
    P = measure_mod.adam_preconditioner(prep, opt)
    m = torch.cat([opt.state[p]["exp_avg"].reshape(-1) for p in model.parameters()])
    assert torch.allclose(after, before - 0.01 * m / P, rtol=0, atol=1e-12)


def test_preconditioned_sharpness_matches_a_dense_computation(tiny_mlp):
    model, opt, probe = _adam_run(tiny_mlp)
    mon = SpectralMonitor(probe, quantities=("sharpness",), tol=1e-10)
    rec = mon.measure(model, opt)
    f, theta = _flat_loss(model, *probe)
    H = torch.autograd.functional.hessian(f, theta)
    b1, b2 = 0.9, 0.99
    v = torch.cat([opt.state[p]["exp_avg_sq"].reshape(-1) for p in model.parameters()])
    t = float(opt.state[next(model.parameters())]["step"])
    P = (1 - b1**t) * ((v / (1 - b2**t)).sqrt() + 1e-3)
    lam = float(torch.linalg.eigvals(torch.linalg.solve(torch.diag(P), H)).real.max())
    assert abs(rec["preconditioned_sharpness"] - lam) <= 1e-6 * abs(lam)
    assert rec["preconditioned_threshold"] == pytest.approx((2 + 2 * b1) / ((1 - b1) * 0.01))
    assert rec["two_over_lr"] == pytest.approx(200.0)


def test_mutation_preconditioner_without_bias_correction_is_caught(tiny_mlp, monkeypatch):
    model, opt, probe = _adam_run(tiny_mlp)
    real = measure_mod.adam_preconditioner

    def slip(prep, optimizer):  # forgets the (1 - beta_1^t) of the momentum's bias correction
        t = float(next(iter(optimizer.state.values()))["step"])
        return real(prep, optimizer) / (1 - 0.9**t)

    good = SpectralMonitor(probe, quantities=("sharpness",), tol=1e-10).measure(model, opt)
    monkeypatch.setattr(measure_mod, "adam_preconditioner", slip)
    bad = SpectralMonitor(probe, quantities=("sharpness",), tol=1e-10).measure(model, opt)
    rel = abs(bad["preconditioned_sharpness"] - good["preconditioned_sharpness"])
    assert rel > 1e-6 * good["preconditioned_sharpness"]


def test_sgd_has_no_preconditioned_sharpness(tiny_mlp):
    model = tiny_mlp(5, 3, width=5)
    x, y = _data()
    rec = SpectralMonitor((x, y), quantities=("sharpness",)).measure(
        model, torch.optim.SGD(model.parameters(), lr=0.1)
    )
    assert "preconditioned_sharpness" not in rec and rec["two_over_lr"] == pytest.approx(20.0)


# --- NTK, input Jacobian, layers ------------------------------------------------------------------


def _dense_ntk(model, x):
    """``K_ij = sum_c <d f_c(x_i)/d theta, d f_c(x_j)/d theta>`` from torch.func.jacrev."""
    params = {k: p.detach() for k, p in model.named_parameters()}
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(model, p, (x,)))(params)
    J = torch.cat([j.reshape(x.shape[0], -1, j[0, 0].numel()) for j in jac.values()], dim=2)
    return torch.einsum("icp,jcp->ij", J, J)


def test_ntk_drift_starts_at_zero_and_matches_a_dense_computation(tiny_mlp):
    model = tiny_mlp(5, 3, width=6)
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    mon = SpectralMonitor((x, y), every=5, quantities=("ntk",), num_ntk_samples=10)
    xs = mon.x[mon.ntk_index]
    K0 = _dense_ntk(model, xs)
    for _ in range(11):
        _ce_step(model, opt, x, y, mon)
    assert mon.history[0]["ntk_drift"] == 0.0
    Kt = _dense_ntk(model, xs)  # the parameters of the last record (step 10)? re-measure now
    rec = mon.measure(model)
    drift = float(torch.linalg.norm(Kt - K0) / torch.linalg.norm(K0))
    assert drift > 1e-3
    assert rec["ntk_drift"] == pytest.approx(drift, rel=1e-8)
    eig = torch.linalg.eigvalsh(Kt)
    assert rec["ntk_top"] == pytest.approx(float(eig[-1]), rel=1e-8)
    assert rec["ntk_cond"] == pytest.approx(float(eig[-1] / eig[0]), rel=1e-6)
    assert rec["products"] == 10


def test_input_jacobian_and_layers_match_direct_computations(tiny_mlp):
    model = tiny_mlp(5, 3, width=6)
    x, y = _data()
    mon = SpectralMonitor((x, y), quantities=("input_jacobian", "layers"), num_jacobian_samples=4)
    rec = mon.measure(model)
    xs = mon.x[mon.jac_index]
    J = torch.stack([torch.autograd.functional.jacobian(model, xi[None])[0, :, 0] for xi in xs])
    s = torch.linalg.svdvals(J)
    p = s**2 / (s**2).sum(1, keepdim=True)
    ent = -(p * p.log()).sum(1)
    assert rec["jac_entropy"] == pytest.approx(float(ent.mean()), rel=1e-8)
    assert rec["jac_top"] == pytest.approx(float(s[:, 0].mean()), rel=1e-8)
    layers = {n: m.weight for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert {k.split("/", 1)[1] for k in rec if k.startswith("stable_rank/")} == set(layers)
    for name, W in layers.items():
        sv = torch.linalg.svdvals(W.detach())
        assert rec[f"stable_rank/{name}"] == pytest.approx(float((sv**2).sum() / sv[0] ** 2))
        assert math.isfinite(rec[f"alpha/{name}"]) and rec[f"alpha/{name}"] >= 0


def test_every_record_has_the_bookkeeping(tiny_mlp):
    model = tiny_mlp(5, 3, width=6)
    x, y = _data()
    mon = SpectralMonitor((x, y), every=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = [_ce_step(model, opt, x, y, mon) for _ in range(5)]
    assert [r is not None for r in out] == [True, False, True, False, True]
    for rec in mon.history:
        for key in ("step", "sharpness", "ntk_top", "ntk_cond", "ntk_drift", "jac_entropy",
                    "jac_top", "loss", "probe_loss", "products", "seconds", "diverging"):  # fmt: skip
            assert key in rec, key
        assert rec["products"] == rec["sharpness_products"] + len(mon.ntk_index)
        assert rec["seconds"] > 0
    df = mon.to_dataframe()
    assert list(df["step"]) == [0, 2, 4]


# --- sl.train, figures, errors ---------------------------------------------------------------------


def test_train_callbacks_drive_the_monitor(tiny_mlp):
    model = tiny_mlp(5, 3, width=6, dtype=torch.float32)
    x, y = _data()
    x = x.float()
    mon = SpectralMonitor((x[:16], y[:16]), every=2, quantities=("sharpness", "layers"))
    hist = sl.train(model, (x, y), epochs=2, batch_size=8, optimizer="sgd", lr=0.1,
                    progress=False, callbacks=[mon])  # fmt: skip
    assert len(hist.step_loss) == 6
    assert [h["step"] for h in mon.history] == [0, 2, 4, 6]
    assert [h["loss"] for h in mon.history[1:]] == [hist.step_loss[i] for i in (1, 3, 5)]
    assert mon.history[0]["two_over_lr"] == pytest.approx(20.0)


def test_measure_works_inside_no_grad_and_inference_mode(tiny_mlp):
    model = tiny_mlp(5, 3, width=6)
    x, y = _data()
    mon = SpectralMonitor((x, y), quantities=("sharpness", "ntk", "input_jacobian"), tol=1e-8)
    ref = mon.measure(model)
    with torch.no_grad():
        a = mon.measure(model)
    with torch.inference_mode():
        b = mon.measure(model)
    for rec in (a, b):
        assert rec["sharpness"] == pytest.approx(ref["sharpness"], rel=1e-6)
        assert rec["jac_top"] == pytest.approx(ref["jac_top"], rel=1e-10)


def test_train_refuses_a_callback_without_on_step_end(tiny_mlp):
    with pytest.raises(TypeError, match="on_step_end"):
        sl.train(tiny_mlp(5, 3), _data(), epochs=1, progress=False, callbacks=[object()])


def test_figure_draws_the_history(tiny_mlp):
    plt = pytest.importorskip("matplotlib.pyplot")
    _, _, mon = _trained_monitor(tiny_mlp)
    fig = mon.figure()
    assert [float(v) for v in fig.axes[0].lines[0].get_ydata()] == [
        h["sharpness"] for h in mon.history
    ]
    plt.close(fig)


def test_live_display_updates_in_place(tiny_mlp, monkeypatch):
    pytest.importorskip("IPython")
    import IPython.display

    shown, updated = [], []

    class Handle:
        def update(self, obj):
            updated.append(obj)

    def display(obj, display_id=False):
        shown.append(obj)
        return Handle()

    monkeypatch.setattr(IPython.display, "display", display)
    model = tiny_mlp(5, 3, width=6)
    x, y = _data()
    mon = SpectralMonitor((x, y), every=1, quantities=("sharpness",)).live()
    mon.step(model)
    mon.step(model)
    assert len(shown) == 1 and len(updated) == 2 and updated[0] is shown[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probe": torch.randn(4, 5)}, "probe must be an"),
        ({"probe": (torch.randn(4, 5), torch.zeros(3))}, "one length"),
        ({"quantities": ("hessian",)}, "quantities must be among"),
        ({"every": 0}, "every must be a positive int"),
        ({"lr": -1.0}, "lr must be a positive"),
        ({"tol": 0.0}, "tol must be in"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs, match):
    kw = {"probe": (torch.randn(4, 5), torch.zeros(4, dtype=torch.long)), **kwargs}
    probe = kw.pop("probe")
    with pytest.raises((TypeError, ValueError), match=match):
        SpectralMonitor(probe, **kw)


def test_to_dataframe_names_the_extra_without_pandas(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pandas", None)
    mon = SpectralMonitor((torch.randn(4, 5), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ImportError, match=r"spectral_lab\[monitor\]"):
        mon.to_dataframe()
