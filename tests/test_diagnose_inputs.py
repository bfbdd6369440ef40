"""Any input, any output, any loss, and honest reports: ``diagnose`` / ``stability_profile`` on
models the library did not write (dict and tuple outputs, token ids, regression, bf16), checked
against per-sample autograd references; partial and unconverged reports; the checks that refuse
random, batch-dependent or mislabelled input before any expensive work."""

from __future__ import annotations

import importlib
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.functional import hessian as ag_hessian
from torch.autograd.functional import jacobian as ag_jacobian
from torch.func import functional_call

import spectral_lab as sl
from spectral_lab.models import TokenIds, as_logits, split_at_embedding
from spectral_lab.stability import stability_profile

FAST = dict(progress=False, max_iter=60)
diagnose_mod = importlib.import_module("spectral_lab.diagnose")


def _mlp(c=3, d=64):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, c))


class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, x):
        return {"features": x.flatten(1), "logits": self.net(x)}


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _mlp()

    def forward(self, x):
        return self.net(x), x.sum()


class Text(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.emb, self.head = nn.Embedding(20, 4), nn.Linear(4, 3)

    def forward(self, tok):
        return self.head(torch.tanh(self.emb(tok)).mean(1))


def _data(n=8, c=3):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 8, 8, generator=g), torch.arange(n) % c


def _sigma1_per_sample(f, x):
    """max singular value of df(x_i)/dx_i by autograd on one sample at a time (the reference)."""
    out = []
    for xi in x:
        J = ag_jacobian(lambda v: f(v[None])[0], xi)
        out.append(torch.linalg.svdvals(J.reshape(J.shape[0], -1).double())[0])
    return torch.stack(out)


# ---------------------------------------------------------------------------- outputs
def test_dict_output_uses_the_logits_key_and_matches_autograd():
    m = DictOut().eval()
    x, y = _data()
    rep = sl.diagnose(m, (x, y), **FAST)
    assert rep.data["notes"]["output"] == "output['logits']"
    assert "output used: output['logits']" in rep.summary()
    ref = _sigma1_per_sample(m.net, x)
    torch.testing.assert_close(rep.profile.samples["jac_top"], ref, rtol=1e-5, atol=1e-7)
    # the adapter for every other call
    J = sl.input_jacobian(as_logits(m), x)
    ref_J = torch.stack([ag_jacobian(lambda v: m.net(v[None])[0], xi).flatten(1) for xi in x])
    torch.testing.assert_close(J, ref_J, rtol=1e-5, atol=1e-6)


def test_tuple_output_first_tensor_and_user_selection():
    m = TupleOut().eval()
    x, y = _data()
    rep = sl.diagnose(m, (x, y), **FAST)
    assert rep.data["notes"]["output"].startswith("output[0]")
    ref = _sigma1_per_sample(m.net, x)
    torch.testing.assert_close(rep.profile.samples["jac_top"], ref, rtol=1e-5, atol=1e-7)
    rep2 = sl.diagnose(m, (x, y), output=lambda out: out[0], **FAST)
    assert rep2.profile.jac_top == pytest.approx(rep.profile.jac_top)
    with pytest.raises(TypeError, match="could not find the logits"):
        sl.diagnose(m, (x, y), output=lambda out: None, **FAST)


# ---------------------------------------------------------------------------- token ids
def test_token_ids_input_jacobian_is_taken_at_the_embedding_output():
    m = Text().eval()
    g = torch.Generator().manual_seed(2)
    tok = torch.randint(0, 20, (6, 5), generator=g)
    y = torch.arange(6) % 3
    rep = sl.diagnose(m, (tok, y), **FAST)
    assert "'emb'" in rep.data["notes"]["input_space"]
    assert "input space: token ids" in rep.summary()
    e = m.emb(tok).detach()
    rest = lambda v: m.head(torch.tanh(v).mean(1))  # noqa: E731  the model after its embedding
    ref = _sigma1_per_sample(rest, e)
    torch.testing.assert_close(rep.profile.samples["jac_top"], ref, rtol=1e-5, atol=1e-7)
    assert rep.profile.input_dim == 5 * 4
    # split_at_embedding directly, with the library's default input-Jacobian route
    head, e2 = split_at_embedding(m, tok)
    torch.testing.assert_close(e2, e)
    J = sl.input_jacobian(head, e2)
    ref_J = torch.stack([ag_jacobian(lambda v: rest(v[None])[0], ei).flatten(1) for ei in e])
    torch.testing.assert_close(J, ref_J, rtol=1e-5, atol=1e-6)


def test_saliency_and_sensitivity_of_a_token_model_through_the_split():
    m = Text().eval()
    tok = torch.randint(0, 20, (4, 5), generator=torch.Generator().manual_seed(9))
    head, e = split_at_embedding(m, tok, embedding="emb")
    target = m(tok).argmax(1)
    a = sl.attribution.saliency(head, e, target)
    ev = e.clone().requires_grad_(True)
    out = m.head(torch.tanh(ev).mean(1))
    (ref,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), ev)
    torch.testing.assert_close(a.reshape(ref.shape), ref, rtol=1e-5, atol=1e-7)
    J = sl.input_jacobian(head, e)  # input sensitivity from the Jacobian at the embedding
    mc = sl.sensitivity.monte_carlo_sensitivity(J, None, 1e-3, num_draws=4000)
    fro2 = J.double().square().sum((1, 2)) * 1e-6 / J.shape[2]  # E||J d||^2, d ~ N(0, eps^2/d I)
    torch.testing.assert_close(mc.double(), fro2, rtol=0.15, atol=0)
    with pytest.raises(ValueError, match="not a sub-batch"):
        head(e[:2] + 1.0)  # perturbed sub-batches cannot be matched to their tokens


def test_token_ids_parameter_space_includes_the_embedding_table():
    m = Text().eval()
    tok = torch.randint(0, 20, (5, 4), generator=torch.Generator().manual_seed(3))
    prof = stability_profile(m, (tok, torch.arange(5) % 3), max_iter=60)
    # reference: scalar NTK K_ij = sum_c <grad f_c(x_i), grad f_c(x_j)> over ALL parameters
    params = {k: v.detach() for k, v in m.named_parameters()}

    def f(p, t):
        return functional_call(m, p, (t[None],))[0]

    rows = []
    for t in tok:
        jac = torch.func.jacrev(f)(params, t)
        rows.append(torch.cat([v.reshape(3, -1) for v in jac.values()], 1).double())
    G = torch.stack(rows)  # (n, C, p)
    assert G[:, :, : 20 * 4].abs().sum() > 0  # the embedding table is differentiated
    K = torch.einsum("icp,jcp->ij", G, G)
    assert prof.ntk_top == pytest.approx(float(torch.linalg.eigvalsh(K)[-1]) / 5, rel=1e-5)
    assert TokenIds(m)(tok.float()).equal(m(tok))


class TextTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.emb, self.head = nn.Embedding(20, 8), nn.Linear(8, 3)
        self.enc = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)

    def forward(self, tok):
        return self.head(self.enc(self.emb(tok)).mean(1))


def test_token_ids_on_a_transformer_with_dropout_in_eval_mode():
    m = TextTransformer().eval()
    tok = torch.randint(0, 20, (4, 6), generator=torch.Generator().manual_seed(8))
    rep = sl.diagnose(m, (tok, torch.arange(4) % 3), operators=("input_jacobian",), **FAST)
    e = m.emb(tok).detach()
    ref = _sigma1_per_sample(lambda v: m.head(m.enc(v).mean(1)), e)
    torch.testing.assert_close(rep.profile.samples["jac_top"], ref, rtol=1e-4, atol=1e-6)


def test_adapters_follow_the_wrapped_models_mode():
    m = nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5)).eval()
    for w in (as_logits(m), TokenIds(m)):
        assert not w.training
        w.train()
        assert m.training and w.training
        w.eval()
        assert not m.training
    sl.input_jacobian(as_logits(m), torch.randn(2, 4))  # an eval-mode dropout model is fine


# ---------------------------------------------------------------------------- regression
class RegCNN(nn.Module):
    def __init__(self, out_shape=(1,)):
        super().__init__()
        torch.manual_seed(4)
        self.conv, self.lin = nn.Conv2d(1, 2, 3), nn.Linear(2 * 6 * 6, 1)
        self.flat = out_shape == ()

    def forward(self, x):
        out = self.lin(torch.tanh(self.conv(x)).flatten(1))
        return out[:, 0] if self.flat else out


@pytest.mark.parametrize("out_shape", [(1,), ()])
def test_regression_gets_mse_and_regression_metrics(out_shape):
    m = RegCNN(out_shape).eval()
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    t = torch.randn(8, generator=torch.Generator().manual_seed(6))
    rep = sl.diagnose(m, (x, t), **FAST)
    assert rep.data["loss_fn"] == "mse" and rep.data["accuracy"] is None
    text = rep.summary()
    assert "loss (mse)" in text and "accuracy" not in text and "R^2" in text
    f = m(x).detach().reshape(-1).double()
    td = t.double()
    assert rep.data["mse"] == pytest.approx(float(((f - td) ** 2).mean()), rel=1e-6)
    r2 = 1 - ((f - td) ** 2).sum() / ((td - td.mean()) ** 2).sum()
    assert rep.data["r2"] == pytest.approx(float(r2), rel=1e-6)
    assert rep.data["loss"] == pytest.approx(float(0.5 * ((f - td) ** 2).mean()), rel=1e-6)
    # the Hessian of the library's one mse, (1/n) sum 1/2 (f - t)^2, by dense autograd
    names = [k for k, _ in m.named_parameters()]
    shapes = [p.shape for p in m.parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in m.parameters()]).double()
    m64 = RegCNN(out_shape).double().eval()

    def loss(th):
        ps, i = {}, 0
        for k, s in zip(names, shapes, strict=True):
            ps[k] = th[i : i + math.prod(s)].reshape(s)
            i += math.prod(s)
        out = functional_call(m64, ps, (x.double(),)).reshape(-1)
        return 0.5 * ((out - td) ** 2).mean()

    H = ag_hessian(loss, theta)
    lam = float(torch.linalg.eigvalsh(H)[-1])
    assert rep.profile.hess_top == pytest.approx(lam, rel=1e-4)
    assert rep.bounds["stable_lr_operator"] == pytest.approx(2 / lam, rel=1e-4)


def test_auto_loss_is_cross_entropy_for_integer_labels_and_overridable():
    x, y = _data()
    rep = sl.diagnose(_mlp().eval(), (x, y), **FAST)
    assert rep.data["loss_fn"] == "cross_entropy" and "loss (cross_entropy)" in rep.summary()
    rep = sl.diagnose(_mlp().eval(), (x, F.one_hot(y, 3).float()), loss="mse", **FAST)
    assert rep.data["loss_fn"] == "mse" and rep.data["accuracy"] is None


# ---------------------------------------------------------------------------- honest reports
def _dishonest(rep) -> list[str]:
    """Bounds printed as numbers although an operator they need was not computed or certified."""
    need = {
        "parameter_gain": "parameter_jacobian",
        "parameter_gain_operator": "parameter_jacobian",
        "ntk_condition": "ntk",
        "ntk_condition_bound": "ntk",
        "stable_lr": "hessian",
        "stable_lr_operator": "hessian",
    }
    bad = []
    certified = rep.profile.settings.get("hessian_converged") is not False
    for key, op in need.items():
        ok = op in rep.index.terms and (op != "hessian" or certified)
        if not ok and rep.bounds[key] is not None:
            bad.append(key)
    return bad


def test_partial_diagnose_shows_not_computed_never_a_number(monkeypatch):
    m = _mlp().eval()
    x, y = _data()
    rep = sl.diagnose(m, (x, y), operators=("input_jacobian",), **FAST)
    assert _dishonest(rep) == []
    for key in ("parameter_gain", "ntk_condition_bound", "stable_lr", "stable_lr_operator"):
        assert rep.bounds[key] is None
        assert rep.bound_status[key].startswith("not computed")
    text = rep.summary()
    assert "stable GD step eta < not computed" in text
    assert "not computed: the bounds that need parameter_jacobian, ntk, hessian" in text
    assert rep.bounds["forward_gain"] == pytest.approx(rep.profile.jac_top)  # still a bound
    assert rep.to_dict()["bound_status"]["stable_lr"].startswith("not computed")
    html = rep._repr_html_()
    assert "stable GD step &eta; &lt;</td><td style='text-align:right'>not computed" in html
    # mutation: the old behaviour (every bound filled in from the partial Gamma) is caught
    monkeypatch.setattr(diagnose_mod, "_NEEDS", {})
    old = sl.diagnose(m, (x, y), operators=("input_jacobian",), **FAST)
    assert "stable_lr" in _dishonest(old) and "parameter_gain" in _dishonest(old)
    full = sl.diagnose(m, (x, y), **FAST)
    assert old.bounds["stable_lr"] > full.bounds["stable_lr_operator"]  # the lie it told


def test_unconverged_hessian_is_not_certified():
    x, y = _data()
    with pytest.warns(UserWarning, match="did not converge"):
        rep = sl.diagnose(_mlp().eval(), (x, y), progress=False, max_iter=1)
    assert rep.profile.settings["hessian_converged"] is False
    assert rep.bounds["stable_lr"] is None and rep.bounds["stable_lr_operator"] is None
    assert rep.bound_status["stable_lr"].startswith("not certified")
    assert "stable GD step eta < not certified" in rep.summary()
    assert rep.bounds["parameter_gain"] is not None and _dishonest(rep) == []


class FunctionalDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.b(F.dropout(torch.relu(self.a(x.flatten(1))), 0.5, self.training))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(8, 8)
        self.att = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = self.inp(x.reshape(len(x), 8, 8))
        return self.out(self.att(h, h, h)[0].mean(1))


class AlwaysRandom(FunctionalDropout):
    def forward(self, x):
        return self.b(F.dropout(torch.relu(self.a(x.flatten(1))), 0.5, training=True))


@pytest.mark.parametrize("cls", [FunctionalDropout, Attention])
def test_train_mode_is_analysed_in_eval_mode_by_behaviour(cls):
    """One policy, decided by what the model does: a model left in train mode (functional or
    attention dropout, no Dropout module) is analysed in eval mode, with the same numbers as the
    eval'd model, and its own mode is left as it was (issue 21: input_jacobian returned random
    numbers here while diagnose refused)."""
    x, y = _data()
    m = cls().train()
    assert not any(isinstance(k, nn.modules.dropout._DropoutNd) for k in m.modules())
    rep = sl.diagnose(m, (x, y), **FAST)
    assert m.training and all(k.training for k in m.modules())
    assert "train mode" in rep.data["notes"]["mode"]
    ref = sl.diagnose(m.eval(), (x, y), **FAST)
    numbers, ref_numbers = rep.profile.to_dict(), ref.profile.to_dict()
    numbers.pop("settings"), ref_numbers.pop("settings")  # the notes and timings differ
    assert numbers == ref_numbers
    m.train()
    J1, J2 = sl.input_jacobian(m, x[:4]), sl.input_jacobian(m, x[:4])
    assert torch.equal(J1, J2)
    assert torch.equal(J1, sl.input_jacobian(m.eval(), x[:4]))


def test_a_model_random_in_eval_mode_is_refused():
    x, y = _data()
    m = AlwaysRandom().eval()
    with pytest.raises(ValueError, match="random even in eval mode"):
        sl.diagnose(m, (x, y), **FAST)
    with pytest.raises(ValueError, match="random even in eval mode"):
        sl.input_jacobian(m, x[:4])
    with pytest.raises(ValueError, match="random even in eval mode"):
        sl.saliency(m, x[:4])


def test_batch_dependent_model_is_refused_with_the_fix():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16, track_running_stats=False),
        nn.Tanh(), nn.Linear(16, 3),
    ).eval()  # fmt: skip
    x, y = _data()
    with pytest.raises(ValueError, match="batch-dependent.*track_running_stats"):
        sl.diagnose(m, (x, y), **FAST)
    ok = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3)
    ).eval()
    before = ok[2].running_mean.clone()
    sl.diagnose(ok, (x, y), **FAST)
    assert torch.equal(ok[2].running_mean, before)


def test_bad_labels_fail_before_any_expensive_work(monkeypatch):
    x, y = _data()

    def boom(*a, **k):
        raise AssertionError("expensive work started")

    monkeypatch.setattr(sl.jacobians, "input_jacobian", boom)
    m = _mlp().eval()
    with pytest.raises(ValueError, match=r"out of range: found class id 12 .* 3 outputs"):
        sl.diagnose(m, (x, torch.full((8,), 12)), **FAST)
    with pytest.raises(ValueError, match="differ in length"):
        sl.diagnose(m, (x, y[:-1]), **FAST)
    with pytest.raises(TypeError, match="floating point.*cross-entropy.*loss='mse'"):
        sl.diagnose(m, (x, y.float()), loss="cross_entropy", **FAST)
    with pytest.raises(ValueError, match="one output is identically zero"):
        sl.diagnose(_mlp(c=1).eval(), (x, torch.zeros(8, dtype=torch.long)), **FAST)
    monkeypatch.undo()
    bad_later = y.clone()
    bad_later[6] = -1  # in the second batch: caught when that batch is streamed
    with pytest.raises(ValueError, match="found class id -1"):
        sl.diagnose(m, (x, bad_later), batch_size=4, **FAST)


def test_uint8_refused_with_one_message_everywhere():
    m = _mlp().eval()
    x8 = (torch.rand(8, 1, 8, 8) * 255).to(torch.uint8)
    y = torch.arange(8) % 3
    calls = {
        "input_jacobian": lambda: sl.input_jacobian(m, x8),
        "parameter_jacobian": lambda: sl.parameter_jacobian(m, x8),
        "ntk_gram": lambda: sl.ntk_gram(m, x8),
        "diagnose": lambda: sl.diagnose(m, (x8, y), **FAST),
        "stability_profile": lambda: stability_profile(m, x8),
        "diagnose(int64, no embedding)": lambda: sl.diagnose(m, (x8.long(), y), **FAST),
    }
    msgs = {}
    for name, call in calls.items():
        with pytest.raises(TypeError) as info:
            call()
        msgs[name] = str(info.value).replace("int64", "uint8")
    assert len(set(msgs.values())) == 1, msgs
    assert "x.float() / 255" in msgs["diagnose"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_model_is_analysed_as_a_float32_copy(dtype):
    x, y = _data()
    m = _mlp().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = sl.diagnose(m.to(dtype), (x, y), **FAST)
    assert next(m.parameters()).dtype == dtype  # the user's model is left as it was
    assert "float32 copy" in rep.data["notes"]["precision"]
    assert "precision:" in rep.summary()
    ref = sl.diagnose(_mlp().to(dtype).float().eval(), (x, y), **FAST)
    assert rep.index.value == pytest.approx(ref.index.value, rel=1e-6)
    assert rep.profile.hess_top == pytest.approx(ref.profile.hess_top, rel=1e-6)
