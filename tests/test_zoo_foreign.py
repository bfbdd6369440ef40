"""The one entrance on models no one here wrote: timm, Hugging Face and peft models built from
configs (random init, no downloads), plus the silent cases of issue 21, each call against a
reference that never goes through spectral_lab.

References (float64, plain autograd on the module itself, in eval mode):

* input Jacobian: ``torch.autograd.functional.jacobian`` per sample, with respect to the input or,
  for token models, to the output of the word embedding (Hugging Face's ``inputs_embeds``);
* Hessian-vector product: five-point central differences of autograd gradients of the mean loss
  (first-order AD only: double backward disagrees with them on BERT, see ``Case.hvp``), or
  double backward for the mixture of experts, whose routing makes differences unreliable;
* top Hessian eigenvalue: SciPy's ``eigsh`` on those products;
* NTK Gram: inner products of per-(sample, class) parameter gradients;
* saliency: ``torch.autograd.grad`` of the predicted logit.

The silent wrong numbers of issue 21 each have a test here that fails on the code before it:
regression Hessians off by ``N`` for ``(N,)`` targets, random Jacobians from functional dropout in
train mode, a wrapper around an eval'd model refused as "in train mode", a compiled model's
"donated buffers" error, and samples that interact.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import spectral_lab as sl

D = torch.float64
C = 3
timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")


def _last(out):
    return out.logits[:, -1]


# --- the zoo -----------------------------------------------------------------------------------


def _convnext():
    from timm.models.convnext import ConvNeXt

    torch.manual_seed(0)
    m = ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), num_classes=C, ls_init_value=0.5)
    return m.to(D), torch.randn(3, 3, 32, 32, dtype=D), {}


def _vit():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    m = VisionTransformer(
        img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=C
    )
    return m.to(D), torch.randn(3, 3, 16, 16, dtype=D), {}


def _bert():
    cfg = transformers.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16, num_labels=C,
    )  # fmt: skip
    torch.manual_seed(0)
    m = transformers.BertForSequenceClassification(cfg).to(D)  # built in train mode
    return m, torch.randint(0, 40, (3, 6)), {}


def _gpt2(lora: bool = False):
    cfg = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2)
    torch.manual_seed(0)
    m = transformers.GPT2LMHeadModel(cfg).to(D)
    if lora:
        peft = pytest.importorskip("peft")
        conf = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], lora_dropout=0.1)
        m = peft.get_peft_model(m, conf)
        for n, p in m.named_parameters():  # LoRA's B starts at zero: give it a value
            if "lora_B" in n:
                p.data.normal_(0, 0.3)
    return m, torch.randint(0, 40, (3, 5)), {"output": _last}


def _mixtral():
    cfg = transformers.MixtralConfig(
        vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
        num_experts_per_tok=2, max_position_embeddings=16,
        experts_implementation="eager",  # grouped_mm has no float64 kernel on CPU
    )  # fmt: skip
    torch.manual_seed(0)
    return (
        transformers.MixtralForCausalLM(cfg).to(D),
        torch.randint(0, 40, (3, 5)),
        {"output": _last},
    )


FLOAT32_SOFTMAX = {
    "HF BERT (ids)", "HF GPT-2 (last token)", "HF Mixtral MoE (last token)", "peft LoRA on GPT-2"
}  # fmt: skip
"""Hugging Face attention computes its softmax in float32 whatever the model's dtype, so curvature
products agree with any reference only to float32's accuracy there (1e-6 relative, not 1e-8)."""

PIECEWISE = {"HF Mixtral MoE (last token)"}
"""Models whose function is only piecewise smooth near the point (a router's top-k choice flips
within a finite-difference step: steps of 1e-3, 1e-4 and 1e-5 disagree by up to 7e-3), so their
Hessian reference is plain double backward instead."""

ZOO = {
    "timm ConvNeXt": _convnext,
    "timm ViT": _vit,
    "HF BERT (ids)": _bert,
    "HF GPT-2 (last token)": _gpt2,
    "HF Mixtral MoE (last token)": _mixtral,
    "peft LoRA on GPT-2": lambda: _gpt2(lora=True),
}


class Case:
    """A zoo model with its references (computed once)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.model, self.x, self.opts = ZOO[name]()
        self.tokens = not torch.is_floating_point(self.x)
        select = self.opts.get("output")
        was = [(m, m.training) for m in self.model.modules()]
        self.model.eval()  # the references: eval mode, set by hand
        self.params = [p for p in self.model.parameters() if p.requires_grad]

        def logits(inp):
            kw = {"inputs_embeds": inp} if self.tokens else {}
            out = self.model(**kw) if self.tokens else self.model(inp)
            if select is not None:
                return select(out)
            return out.logits if hasattr(out, "logits") else out

        self.logits = logits
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            self.point = self._embed(self.x) if self.tokens else self.x
            self.out = logits(self.point)
        self.y = torch.arange(len(self.x)) % C if self.out.shape[1] >= C else None
        if self.out.shape[1] != C:  # a language model: classes are vocabulary ids
            self.y = torch.tensor([1, 7, 3])
        for m, flag in was:
            m.training = flag

    def _embed(self, ids):
        return self.model.get_input_embeddings()(ids)

    def eval(self):
        saved = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return saved

    @staticmethod
    def restore(saved):
        for m, flag in saved:
            m.training = flag

    def input_jacobian(self) -> torch.Tensor:
        saved = self.eval()
        try:
            with sdpa_kernel(SDPBackend.MATH):
                rows = [
                    torch.autograd.functional.jacobian(
                        lambda z, i=i: self.logits(
                            torch.cat([self.point[:i], z[None], self.point[i + 1 :]])
                        )[i],
                        self.point[i],
                    )
                    for i in range(len(self.point))
                ]
        finally:
            self.restore(saved)
        return torch.stack([r.reshape(r.shape[0], -1) for r in rows])

    def loss(self, params=None) -> torch.Tensor:
        kw = {"input_ids": self.x} if self.tokens else {}
        out = self.model(**kw) if self.tokens else self.model(self.x)
        sel = self.opts.get("output")
        out = sel(out) if sel else (out.logits if hasattr(out, "logits") else out)
        return nn.functional.cross_entropy(out, self.y)

    def grad(self, shift: torch.Tensor | None = None) -> torch.Tensor:
        """The loss gradient at ``theta + shift`` (first-order reverse mode only)."""
        saved = self.eval()
        try:
            with torch.no_grad():
                i = 0
                for p in self.params if shift is not None else ():
                    p.add_(shift[i : i + p.numel()].view_as(p))
                    i += p.numel()
            with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
                g = torch.autograd.grad(self.loss(), self.params)
        finally:
            with torch.no_grad():
                i = 0
                for p in self.params if shift is not None else ():
                    p.sub_(shift[i : i + p.numel()].view_as(p))
                    i += p.numel()
            self.restore(saved)
        return torch.cat([t.reshape(-1) for t in g])

    def hvp(self, v: torch.Tensor, h: float = 1e-4) -> torch.Tensor:
        if self.name in PIECEWISE:
            return self.double_backward(v)
        return self.finite_differences(v, h)

    def double_backward(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` as the gradient of ``<grad L, v>`` (``torch.autograd.grad`` twice)."""
        saved = self.eval()
        try:
            with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
                g = torch.autograd.grad(self.loss(), self.params, create_graph=True)
                flat = torch.cat([t.reshape(-1) for t in g])
                hv = torch.autograd.grad(flat @ v, self.params, allow_unused=True)
        finally:
            self.restore(saved)
        return torch.cat(
            [(torch.zeros_like(p) if t is None else t).reshape(-1) for t, p in zip(hv, self.params)]
        )

    def finite_differences(self, v: torch.Tensor, h: float = 1e-4) -> torch.Tensor:
        """``H v`` by the five-point central difference of gradients along ``v / ||v||`` (error
        ``O(h^4)``): no higher-order AD at all. (Double backward is no reference for Hugging Face
        attention: its softmax runs in float32 even in a float64 model, ``softmax(a,
        dtype=torch.float32)``, and double backward through that loses 4e-4 relative on BERT,
        where forward-over-reverse stays within 2e-7 of these differences.)"""
        g, n = self.grad, float(v.norm())
        u = v / n
        return n * (8 * (g(h * u) - g(-h * u)) - (g(2 * h * u) - g(-2 * h * u))) / (12 * h)

    def ntk(self) -> torch.Tensor:
        saved = self.eval()
        rows = []
        try:
            with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
                for i in range(len(self.x)):
                    kw = {"input_ids": self.x[i : i + 1]} if self.tokens else {}
                    out = self.model(**kw) if self.tokens else self.model(self.x[i : i + 1])
                    sel = self.opts.get("output")
                    out = sel(out) if sel else (out.logits if hasattr(out, "logits") else out)
                    for c in range(out.shape[1]):
                        g = torch.autograd.grad(out[0, c], self.params, retain_graph=True)
                        rows.append(torch.cat([t.reshape(-1) for t in g]))
        finally:
            self.restore(saved)
        J = torch.stack(rows).reshape(len(self.x), -1, rows[0].numel())
        return torch.einsum("icp,jcp->ij", J, J)


@pytest.fixture(scope="module", params=list(ZOO))
def case(request) -> Case:
    return Case(request.param)


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _modes(model):
    return [m.training for m in model.modules()]


def test_input_jacobian(case):
    before = _modes(case.model)
    J = (
        sl.input_jacobian(case.model, case.x)
        if not case.opts
        else sl.input_jacobian(sl.prepare(case.model, case.x, **case.opts), case.x)
    )
    assert _rel(J, case.input_jacobian()) < 1e-10
    assert _modes(case.model) == before  # the model's own mode is left as it was


def test_saliency(case):
    prep = sl.prepare(case.model, case.x, **case.opts)
    a = sl.saliency(prep, case.x, target=0)
    ref = case.input_jacobian()[:, 0].reshape(a.shape)
    assert _rel(a, ref) < 1e-10


def test_attribution_instability_runs_on_every_model(case):
    """It could not run on any token model; now its maps are taken at the embedding's output."""
    prep = sl.prepare(case.model, case.x, **case.opts)
    inst = sl.attribution_instability(prep, case.x, scales=(0.01,), num_draws=2, target=0)
    clean = case.input_jacobian()[:, 0]
    assert inst.delta_grad.shape == (1, len(case.x)) and torch.isfinite(inst.delta_grad).all()
    assert _rel(sl.saliency(prep, case.x, target=0).flatten(1), clean) < 1e-10


def test_hessian_vector_product(case):
    prep = sl.prepare(case.model, (case.x, case.y), loss="cross_entropy", **case.opts)
    p = sum(t.numel() for t in case.params)
    v = torch.randn(p, dtype=D, generator=torch.Generator().manual_seed(1))
    tol = 1e-6 if case.name in FLOAT32_SOFTMAX else 1e-8
    assert _rel(sl.hvp(prep, (case.x, case.y), v, loss="cross_entropy"), case.hvp(v)) < tol


def test_block_products_equal_the_reference_column_by_column(case):
    """A block ``op @ V`` is one vmapped replay, or a loop where vmap cannot run (the mixture of
    experts' data-dependent routing); either way the operator stays usable and exact."""
    prep = sl.prepare(case.model, (case.x, case.y), loss="cross_entropy", **case.opts)
    op = sl.hessian.hessian_operator(prep, (case.x, case.y), loss="cross_entropy")
    p = op.dim
    V = torch.randn(p, 3, dtype=D, generator=torch.Generator().manual_seed(2))
    ref = torch.stack([case.hvp(V[:, j]) for j in range(3)], 1)
    tol = 1e-6 if case.name in FLOAT32_SOFTMAX else 1e-8
    assert _rel(op @ V, ref) < tol
    assert _rel(op @ V[:, 0], ref[:, 0]) < tol  # single products after the block


def test_hessian_top_eigenvalue_against_scipy(case):
    from scipy.sparse.linalg import LinearOperator, eigsh

    p = sum(t.numel() for t in case.params)
    op = LinearOperator(
        (p, p), matvec=lambda v: case.hvp(torch.as_tensor(v).reshape(-1)).numpy(), dtype=np.float64
    )
    ref = float(eigsh(op, k=1, which="LA", tol=1e-9, v0=np.ones(p))[0][0])
    prep = sl.prepare(case.model, (case.x, case.y), loss="cross_entropy", **case.opts)
    res = sl.hessian_eigs(prep, (case.x, case.y), loss="cross_entropy", tol=1e-9, max_iter=300)
    assert res.converged
    assert float(res.eigenvalues[0]) == pytest.approx(ref, rel=1e-5)


def test_ntk_gram(case):
    prep = sl.prepare(case.model, case.x, **case.opts)
    assert _rel(sl.ntk_gram(prep, case.x), case.ntk()) < 1e-10


@pytest.mark.slow
def test_diagnose(case):
    rep = sl.diagnose(
        case.model, (case.x, case.y), progress=False, max_iter=40, num_ntk_samples=3,
        loss="cross_entropy", **case.opts,
    )  # fmt: skip
    sigma1 = torch.linalg.svdvals(case.input_jacobian())[:, 0]
    assert rep.profile.jac_top == pytest.approx(float(sigma1.max()), rel=1e-9)
    # the NTK now comes from per-class sample gradients (issue 23), not NTK-vector products: on
    # models whose attention softmax runs in float32 the two agree to float32's accuracy only
    rel = 1e-6 if case.name in FLOAT32_SOFTMAX else 1e-9
    assert rep.profile.ntk_top == pytest.approx(
        float(torch.linalg.eigvalsh(case.ntk())[-1]) / len(case.x), rel=rel
    )
    if case.tokens:
        assert "embedding" in rep.data["notes"]["input_space"]


# --- the silent cases of issue 21: each fails on the code before the one entrance ---------------


def test_regression_targets_of_shape_n_are_not_broadcast():
    """``(N,)`` targets on a one-output model: ``(N,1) - (N,)`` broadcast to ``(N, N)`` and made
    ``hvp``/``hessian_eigs``/``loss_value`` wrong by about a factor ``N``."""
    torch.manual_seed(0)
    m = sl.MLP(4, 1, width=6).double()
    x, y = torch.randn(10, 4, dtype=D), torch.randn(10, dtype=D)
    flat = torch.cat([p.detach().reshape(-1) for p in m.parameters()])

    def loss(v):  # the reference: (1/n) sum 1/2 (f(x_i) - y_i)^2, by hand
        out = torch.func.functional_call(m, _unflat(m, v), (x,))
        return 0.5 * ((out[:, 0] - y) ** 2).mean()

    H = torch.autograd.functional.hessian(loss, flat)
    top = float(torch.linalg.eigvalsh(H)[-1])
    assert float(sl.hessian_eigs(m, (x, y), loss="mse", tol=1e-10).eigenvalues[0]) == (
        pytest.approx(top, rel=1e-8)
    )
    v = torch.randn(len(flat), dtype=D)
    assert _rel(sl.hvp(m, (x, y), v, loss="mse"), H @ v) < 1e-10
    assert sl.hessian.loss_value(m, (x, y), loss="mse") == pytest.approx(float(loss(flat)))
    assert float(sl.hessian_trace(m, (x, y), loss="mse", num_matvecs=3 * len(flat) + 3)) == (
        pytest.approx(float(H.trace()), rel=1e-8)
    )


def _unflat(m, v):
    out, i = {}, 0
    for n, p in m.named_parameters():
        out[n] = v[i : i + p.numel()].view_as(p)
        i += p.numel()
    return out


class FunctionalDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(5, 8), nn.Linear(8, C)

    def forward(self, x):
        return self.b(nn.functional.dropout(torch.tanh(self.a(x)), 0.5, self.training))


def test_functional_dropout_in_train_mode_gives_the_eval_jacobian():
    """It returned random numbers (two calls differing by 60-100 %) from input_jacobian and
    saliency while diagnose refused it."""
    torch.manual_seed(0)
    m, x = FunctionalDropout().double().train(), torch.randn(4, 5, dtype=D)
    ref = torch.stack(
        [torch.autograd.functional.jacobian(lambda z: m.eval()(z[None])[0], xi) for xi in x]
    )
    m.train()
    for _ in range(2):
        assert _rel(sl.input_jacobian(m, x), ref) < 1e-12
        assert _rel(sl.saliency(m, x, target=1), ref[:, 1]) < 1e-12
    assert m.training


def test_a_wrapper_around_an_eval_model_is_judged_by_behaviour():
    """A freshly built wrapper (train mode) around an eval'd model with Dropout was refused as
    "in train mode" although it computes a deterministic function; and _func.eval_mode left the
    inner model in train mode afterwards."""
    inner = nn.Sequential(nn.Linear(5, 8), nn.Dropout(0.5), nn.Tanh(), nn.Linear(8, C))
    inner = inner.double().eval()

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    w = Wrapper()
    assert w.training and not inner.training
    x, y = torch.randn(6, 5, dtype=D), torch.arange(6) % C
    rep = sl.diagnose(w, (x, y), progress=False)
    assert rep.profile.n == 6
    assert sl.hessian_eigs(w, (x, y)).converged
    assert w.training and not any(m.training for m in inner.modules())  # modes left as they were


def test_a_compiled_model_is_analysed_through_its_original_module():
    torch.manual_seed(0)
    m = sl.MLP(5, C, width=8).double().eval()
    cm = torch.compile(m)
    x, y = torch.randn(4, 5, dtype=D), torch.arange(4) % C
    assert torch.equal(sl.input_jacobian(cm, x), sl.input_jacobian(m, x))
    prep = sl.prepare(cm, (x, y))
    assert "torch.compile" in prep.notes["compiled"]
    rep = sl.diagnose(cm, (x, y), progress=False)
    assert rep.profile.jac_top == sl.diagnose(m, (x, y), progress=False).profile.jac_top


class Interacting(nn.Module):
    """Samples interact: each is centred by the batch mean (a set/graph model over the batch)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, C)

    def forward(self, x):
        return self.a(x - x.mean(0, keepdim=True))


@pytest.mark.parametrize(
    "call",
    [
        lambda m, x, y: sl.input_jacobian(m, x),
        lambda m, x, y: sl.saliency(m, x),
        lambda m, x, y: sl.hessian_eigs(m, (x, y)),
        lambda m, x, y: sl.ntk_gram(m, x),
        lambda m, x, y: sl.diagnose(m, (x, y), progress=False),
    ],
    ids=["input_jacobian", "saliency", "hessian_eigs", "ntk_gram", "diagnose"],
)
def test_interacting_samples_are_refused_with_the_reason(call):
    m, x, y = Interacting().double(), torch.randn(6, 5, dtype=D), torch.arange(6) % C
    with pytest.raises(ValueError, match="samples interact.*ONE sample"):
        call(m, x, y)


def test_a_language_model_output_names_the_output_fix():
    m, x, _ = _gpt2()
    with pytest.raises(ValueError, match=r"one row per position.*output=lambda out: out\.logits"):
        sl.input_jacobian(m, x)


def test_diagnose_validates_the_model_once(monkeypatch):
    """One entrance: diagnose runs the behaviour checks (three forward passes) exactly once."""
    from spectral_lab import prepared as prepare_mod

    calls = []
    real = prepare_mod._check_behaviour
    monkeypatch.setattr(prepare_mod, "_check_behaviour", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    x, y = torch.randn(12, 5, dtype=D), torch.arange(12) % C
    sl.diagnose(sl.MLP(5, C, width=8).double(), (x, y), progress=False)
    assert len(calls) == 1


def test_diagnose_and_stability_profile_agree_to_the_last_digit():
    torch.manual_seed(0)
    m = sl.MLP(5, C, width=8).double()
    x, y = torch.randn(12, 5, dtype=D), torch.arange(12) % C
    kw = dict(max_iter=25, num_ntk_samples=10, tol=1e-6, progress=False)
    a = sl.diagnose(m, (x, y), **kw).profile.to_dict(samples=True)
    b = sl.stability_profile(m, (x, y), **kw).to_dict(samples=True)
    for d in (a, b):
        d["settings"].pop("budget")  # timings
    assert a == b
    assert not math.isnan(a["hess_top"])
