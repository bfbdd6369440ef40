"""operator_product on models it was never taught: torchvision, timm, Hugging Face (at the
embedding) and custom forwards. Every case: ``dense()`` against ``torch.func.jacrev`` to 1e-10 in
float64, ``matvec``/``rmatvec`` against the dense Jacobian, and the structure that must survive
(named W/D/B/R factors where the layers are known; generic G only where nothing is known).
Everything is random-init, built from configs (no downloads)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spectral_lab as sl
from spectral_lab._generic import GenericFactor
from spectral_lab.operators import (
    DenseFactor,
    MergeFactor,
    ModelStateError,
    ResidualFactor,
    register_walker,
)

tvm = pytest.importorskip("torchvision.models")

D64 = torch.float64


def jacobian(model, x):
    """The independent reference: reverse-mode ``jacrev`` of ``x -> model(x[None])[0]``."""
    j = torch.func.jacrev(lambda z: model(z[None].clone())[0])(x)
    return j.reshape(j.shape[0], -1).detach()


def check(model, x, *, partial=False, seed=1):
    """dense == jacrev, products == dense; returns (op, max |dense - jacrev|)."""
    g = torch.Generator().manual_seed(seed)
    op = sl.operator_product(model, x)
    ref = jacobian(model, x)
    dense = op.dense()
    assert dense.shape == ref.shape == (op.n_outputs, op.d)
    err = float((dense - ref).abs().max())
    assert err <= 1e-10 * max(1.0, float(ref.abs().max())), err
    v = torch.randn(3, op.d, dtype=D64, generator=g)
    u = torch.randn(3, op.n_outputs, dtype=D64, generator=g)
    assert torch.allclose(op.matvec(v), v @ ref.T, rtol=1e-9, atol=1e-10)
    assert torch.allclose(op.rmatvec(u), u @ ref, rtol=1e-9, atol=1e-10)
    if partial:  # the last cut of the partial products is the whole Jacobian
        assert torch.allclose(op.partial_products()[-1], ref, rtol=1e-9, atol=1e-10)
    return op, err


def prepared(model, seed=0):
    """float64, eval mode, non-trivial BatchNorm statistics (the defaults hide a wrong formula)."""
    g = torch.Generator().manual_seed(seed)
    model = model.double().eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
            c = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(c, generator=g, dtype=D64))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g, dtype=D64))
    return model


# ----------------------------------------------------------------------------- custom forwards
class ResMLP(nn.Module):
    """A residual MLP with a custom forward (functional gates, a residual sum per block)."""

    def __init__(self, d=6, width=8, c=3, depth=2):
        super().__init__()
        self.inp = nn.Linear(d, width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.out = nn.Linear(width, c)

    def forward(self, x):
        h = F.relu(self.inp(x))
        for lin in self.blocks:
            h = h + torch.tanh(lin(h))
        return self.out(h)


class FunctionalNet(nn.Module):
    """F.relu / F.gelu / .sigmoid() calls, a flatten and eval-mode functional dropout."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fc1, self.fc2 = nn.Linear(3 * 4 * 4, 8), nn.Linear(8, 4)

    def forward(self, x):
        h = F.relu(self.conv(x))
        h = torch.flatten(h, 1)
        h = F.dropout(h, 0.3, training=self.training)
        h = F.gelu(self.fc1(h)).sigmoid()
        return self.fc2(h)


class MHABlock(nn.Module):
    """A pre-LN transformer block written by hand around nn.MultiheadAttention."""

    def __init__(self, d=8, c=3):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.fc1, self.fc2 = nn.Linear(d, 16), nn.Linear(16, d)
        self.head = nn.Linear(d, c)

    def forward(self, x):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + a
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return self.head(x.mean(1))


class ConvRes(nn.Module):
    """A ResNet-like model with a custom forward: stem, two residual blocks, pool, head."""

    def __init__(self, c=4, classes=3):
        super().__init__()
        self.stem = nn.Conv2d(2, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.c1, self.c2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        h = torch.relu(self.bn(self.stem(x)))
        h = F.relu(h + self.c1(h))
        h = F.relu(h + self.c2(h))
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


class TinyUNet(nn.Module):
    """Encoder, bottleneck, a transposed-convolution decoder and a skip concatenation."""

    def __init__(self, c=3, classes=2):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(2, c, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(c, 2 * c, 3, padding=1), nn.GELU())
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec = nn.Conv2d(2 * c, classes, 1)

    def forward(self, x):
        e = self.enc(x)
        u = self.up(self.down(e))
        return self.dec(torch.cat([u, e], dim=1)).flatten(1)


class AudioNet(nn.Module):
    """Conv1d layers (no walker: generic factors) around a GRU-free temporal pooling."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv1d(1, 4, 5, stride=2), nn.Conv1d(4, 4, 3)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = F.silu(self.c2(F.relu(self.c1(x))))
        return self.head(h.mean(-1))


def _lora_mlp():
    peft = pytest.importorskip("peft")
    base = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    cfg = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"], lora_dropout=0.0)
    model = peft.get_peft_model(base, cfg)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # LoRA's B starts at zero: make the adapter's path count
            torch.nn.init.normal_(p, std=0.5)
    return model


# ----------------------------------------------------------------------------- the zoo
def _timm(name, **kw):
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False, num_classes=5, **kw)


class AtEmbedding(nn.Module):
    """A Hugging Face model differentiated at ``inputs_embeds``: ``(n, hidden) -> logits``."""

    def __init__(self, model, last_token=False):
        super().__init__()
        self.model, self.last_token = model, last_token

    def forward(self, e):
        logits = self.model(inputs_embeds=e).logits
        return logits[:, -1] if self.last_token else logits


def _bert():
    tr = pytest.importorskip("transformers")
    cfg = tr.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=16,
        num_labels=3,
    )
    return AtEmbedding(tr.BertForSequenceClassification(cfg))


def _gpt2():
    tr = pytest.importorskip("transformers")
    cfg = tr.GPT2Config(vocab_size=11, n_embd=32, n_layer=2, n_head=2, n_positions=16)
    cfg.bos_token_id = cfg.eos_token_id = 0
    return AtEmbedding(tr.GPT2LMHeadModel(cfg), last_token=True)


IMG = (3, 32, 32)
# name -> (builder, input shape without the batch dimension)
ZOO = {
    "tv-resnet18": (lambda: tvm.resnet18(num_classes=5), IMG),
    "tv-densenet-small": (
        lambda: tvm.DenseNet(8, (2, 2), num_init_features=8, bn_size=2, num_classes=5),
        IMG,
    ),
    "tv-squeezenet1_1": (lambda: tvm.squeezenet1_1(num_classes=5), (3, 48, 48)),
    "tv-regnet_x_400mf": (lambda: tvm.regnet_x_400mf(num_classes=5), IMG),
    "tv-mobilenet_v3_small": (lambda: tvm.mobilenet_v3_small(num_classes=5), IMG),
    "tv-densenet121": (lambda: tvm.densenet121(num_classes=5), IMG),
    "timm-convnext_atto": (lambda: _timm("convnext_atto"), IMG),
    "timm-efficientnet_b0": (lambda: _timm("efficientnet_b0"), IMG),
    "timm-vit-tiny": (
        lambda: _timm("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2),
        IMG,
    ),
    "timm-resnet10t": (lambda: _timm("resnet10t"), IMG),
    "hf-bert-embeddings": (_bert, (5, 32)),
    "hf-gpt2-embeddings": (_gpt2, (5, 32)),
    "custom-mha-block": (MHABlock, (4, 8)),
    "custom-unet": (TinyUNet, (2, 8, 8)),
    "custom-conv1d-audio": (AudioNet, (1, 40)),
    "peft-lora-mlp": (_lora_mlp, (6,)),
    "peft-lora-mlp-base": (lambda: _lora_mlp().get_base_model(), (6,)),
    "custom-residual-mlp": (ResMLP, (6,)),
    "custom-functional-relu": (FunctionalNet, (2, 6, 6)),
    "custom-conv-resnet": (ConvRes, (2, 6, 6)),
}


SLOW = {"timm-efficientnet_b0"}  # about 6 s


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in ZOO]
)
def test_dense_equals_jacrev(name):
    make, shape = ZOO[name]
    torch.manual_seed(0)
    model = prepared(make())
    x = torch.randn(shape, dtype=D64, generator=torch.Generator().manual_seed(2))
    op, _ = check(model, x, partial=name.startswith("custom"))
    assert len(op) >= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [lambda: tvm.swin_t(num_classes=5)],
    ids=["tv-swin_t"],
)
def test_large_torchvision_models(make):  # about 8 s
    torch.manual_seed(0)
    model = prepared(make())
    check(model, torch.randn(IMG, dtype=D64, generator=torch.Generator().manual_seed(2)))


# ----------------------------------------------------------------------------- structure
def test_known_layers_stay_named_factors_in_a_custom_forward():
    torch.manual_seed(0)
    model = prepared(ConvRes())
    op, _ = check(model, torch.randn(2, 6, 6, dtype=D64), partial=True)
    # stem conv W1, BatchNorm B1, torch.relu D1, two residual sums R (each branch one conv W)
    # followed by F.relu gates; the pool function is the one generic factor; the head W4
    assert op.names == ["W1", "B1", "D1", "R1", "D2", "R2", "D3", "G1", "W4"]
    r1 = op.factors[3]
    assert isinstance(r1, ResidualFactor) and r1.shortcut is None and r1.branch.names == ["W2"]
    assert [f.what for f in op.generic_factors()] == ["adaptive_avg_pool2d"]


def test_custom_residual_mlp_and_functional_gates_have_no_generic_factor():
    torch.manual_seed(0)
    op = sl.operator_product(ResMLP().double(), torch.randn(6, dtype=D64))
    assert op.names == ["W1", "D1", "R1", "R2", "W4"] and not op.generic_factors()
    assert [r.branch.names for r in op.factors[2:4]] == [["W2", "D2"], ["W3", "D3"]]
    op = sl.operator_product(FunctionalNet().double().eval(), torch.randn(2, 6, 6, dtype=D64))
    # conv, relu, (flatten, eval dropout: no factor), fc1, gelu, sigmoid, fc2
    assert op.names == ["W1", "D1", "W2", "D2", "D3", "W3"] and not op.generic_factors()


def test_mha_custom_forward_keeps_the_attention_paths():
    torch.manual_seed(0)
    model = MHABlock().double().eval()
    op, _ = check(model, torch.randn(4, 8, dtype=D64))
    r1 = op.factors[0]
    assert op.names == ["R1", "R2", "G1", "W3"] and r1.branch.names == ["LN1", "A1"]
    att = r1.branch.factors[1]
    assert torch.allclose(att.dense(), att.value.dense() + att.pattern.dense(), atol=1e-14)


def test_what_becomes_generic_in_the_zoo():
    torch.manual_seed(0)
    # torchvision's resnet18 and timm's resnet10t: every layer is a walker's (no generic factor)
    for make in (lambda: tvm.resnet18(num_classes=5), ZOO["timm-resnet10t"][0]):
        op = sl.operator_product(prepared(make()), torch.randn(IMG, dtype=D64))
        assert (
            not op.generic_factors() and sum(isinstance(f, ResidualFactor) for f in op.factors) >= 4
        )
    # DenseNet's blocks concatenate every earlier feature map (not a series-parallel graph): one
    # generic factor per dense block, the transition layers stay structured
    dn = prepared(ZOO["tv-densenet-small"][0]())
    op = sl.operator_product(dn, torch.randn(IMG, dtype=D64))
    assert [f.what for f in op.factors if isinstance(f, GenericFactor)] == [
        "_DenseBlock",
        "_DenseBlock",
        "adaptive_avg_pool2d",
    ]
    assert {"W1", "B1", "D1", "P1"} <= set(op.names)
    # squeezenet's Fire modules concatenate two paths: a merge factor M per Fire module
    sq = prepared(ZOO["tv-squeezenet1_1"][0]())
    op = sl.operator_product(sq, torch.randn(3, 48, 48, dtype=D64))
    merges = [f for f in op.factors if isinstance(f, MergeFactor)]
    assert len(merges) == 8 and all(len(m.terms) == 2 and m.op == "cat" for m in merges)


def test_inplace_methods_in_a_custom_forward_are_followed():
    class InPlace(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 2)

        def forward(self, x):
            h = self.a(x)
            h.add_(1.0)
            h.tanh_()  # h itself is overwritten: self.b must see the gated value
            return self.b(h)

    torch.manual_seed(0)
    model = InPlace().double()
    op, _ = check(model, torch.randn(4, dtype=D64))
    assert op.names == ["W1", "D1", "W2"]


class FunctionalNorms(nn.Module):
    """F.batch_norm (eval statistics) and F.layer_norm over channels-last, as timm writes them."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)
        self.gamma = nn.Parameter(1 + 0.3 * torch.randn(3))
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        bn = self.bn
        h = F.batch_norm(self.conv(x), bn.running_mean, bn.running_var, bn.weight, bn.bias)
        h = F.layer_norm(h.permute(0, 2, 3, 1), (3,), self.gamma, None, 1e-5)
        return self.fc(h.flatten(1))


def test_functional_batch_norm_and_layer_norm_are_named_factors(monkeypatch):
    from spectral_lab.operators import DiagonalFactor

    torch.manual_seed(0)
    model, x = prepared(FunctionalNorms()), torch.randn(2, 6, 6, dtype=D64)
    op, _ = check(model, x)
    assert op.names == ["W1", "B1", "G1", "LN1", "W2"] and op.factors[2].what == "permute"
    # mutation: BatchNorm's scale without the square root is caught (by the capture's spot check
    # against autograd, which leaves the module to one generic factor: the structure is lost)
    monkeypatch.setattr(DiagonalFactor, "matvec", lambda self, v: v * self.diag**2)
    monkeypatch.setattr(DiagonalFactor, "rmatvec", lambda self, u: u * self.diag**2)
    assert _fails(model, x, op.names)


def test_lora_layers_are_one_weight_with_the_adapters_folded_in():
    from spectral_lab import _walkers

    torch.manual_seed(0)
    model = prepared(_lora_mlp().get_base_model())
    x = torch.randn(6, dtype=D64)
    op, _ = check(model, x, partial=True)
    assert op.names == ["W1", "D1", "W2"]
    lora = model[0]
    w_eff = (
        lora.base_layer.weight + 2.0 * lora.lora_B["default"].weight @ lora.lora_A["default"].weight
    )
    assert torch.allclose(op.factors[0].dense(), w_eff, atol=1e-14)  # scaling = alpha / r = 2
    # mutation: the adapter's scaling squared (alpha^2 / r^2) in the walker: caught
    walker, key = _walkers._walk_lora_linear, "peft.tuners.lora.layer.Linear"

    def squared(m, h, ctx):  # the walker's formula with s^2 in place of s
        lb, la = m.lora_B["default"].weight, m.lora_A["default"].weight
        w = (m.base_layer.weight + m.scaling["default"] ** 2 * lb @ la).detach()
        ctx.add(DenseFactor(ctx.name("W"), "weight", (6,), (8,), m, w))
        return F.linear(h, w, m.base_layer.bias)

    try:
        register_walker(key)(squared)
        assert _fails(model, x, op.names)
    finally:
        register_walker(key)(walker)


def test_a_kept_trace_that_went_stale_is_not_trusted():
    class Switch(nn.Module):  # the traced graph depends on a Python attribute
        def __init__(self):
            super().__init__()
            self.a, self.b, self.twice = nn.Linear(3, 4), nn.Linear(4, 2), False

        def forward(self, x):
            h = torch.tanh(self.a(x))
            if self.twice:
                h = h * 2.0
            return self.b(h)

    torch.manual_seed(0)
    model, x = Switch().double(), torch.randn(3, dtype=D64)
    assert check(model, x)[0].names == ["W1", "D1", "W2"]
    model.twice = True  # the kept one-level trace says "no doubling": the checks catch it and
    op, _ = check(model, x)  # the forward is traced afresh
    assert op.names == ["W1", "D1", "G1", "W2"] and op.factors[2].what == "mul"


# ----------------------------------------------------------------------------- refusals
def test_random_or_batch_dependent_models_are_refused():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return F.dropout(self.lin(x), 0.5, training=True)

    with pytest.raises(ModelStateError, match="eval"):
        sl.operator_product(Noisy().double().eval(), torch.randn(4, dtype=D64))
    # train mode (the whole model, or one BatchNorm) is analysed in eval mode, as by sl.prepare
    model, x = prepared(ConvRes()), torch.randn(2, 6, 6, dtype=D64)
    ref = sl.operator_product(model, x).dense()
    assert torch.equal(sl.operator_product(model.train(), x).dense(), ref)
    assert model.training and model.bn.training
    model.eval()
    model.bn.train()
    assert torch.equal(sl.operator_product(model, x).dense(), ref)
    assert model.bn.training and not model.training


# ----------------------------------------------------------------------------- mutations
def _fails(model, x, names) -> bool:
    """The check fails, or the product lost its structure (a capture whose product is wrong fails
    its spot check against autograd and falls back to one exact generic factor)."""
    try:
        op, _ = check(model, x)
    except AssertionError:
        return True
    return op.names != names


def test_mutation_residual_sum_without_its_shortcut_is_caught(monkeypatch):
    torch.manual_seed(0)
    model, x = ResMLP().double(), torch.randn(6, dtype=D64)
    names = check(model, x)[0].names
    monkeypatch.setattr(
        ResidualFactor,
        "_paths",
        lambda self, v, fwd: self.branch.matvec(v) if fwd else self.branch.rmatvec(v),
    )
    assert _fails(model, x, names)


def test_mutation_generic_factor_at_the_wrong_point_is_caught(monkeypatch):
    # the JVP/VJP of a generic factor taken at 0 instead of at its input h
    torch.manual_seed(0)
    model = prepared(ZOO["tv-densenet-small"][0]())
    x = torch.randn(IMG, dtype=D64)
    names = check(model, x)[0].names
    init = GenericFactor.__post_init__

    def at_zero(self):
        init(self)
        self.h = torch.zeros_like(self.h)

    monkeypatch.setattr(GenericFactor, "__post_init__", at_zero)
    assert _fails(model, x, names)


def test_mutation_merge_without_one_path_is_caught(monkeypatch):
    torch.manual_seed(0)
    model = prepared(ZOO["tv-squeezenet1_1"][0]())
    x = torch.randn(3, 48, 48, dtype=D64)
    names = check(model, x)[0].names
    monkeypatch.setattr(MergeFactor, "rmatvec", lambda self, u: self.terms[0].rmatvec(u))
    monkeypatch.setattr(MergeFactor, "matvec", lambda self, v: self.terms[0].matvec(v))
    assert _fails(model, x, names)


def test_mutation_functional_gate_with_the_wrong_derivative_is_caught(monkeypatch):
    from spectral_lab import _capture

    torch.manual_seed(0)
    model, x = FunctionalNet().double().eval(), torch.randn(2, 6, 6, dtype=D64)
    names = check(model, x)[0].names
    gate = _capture._gate  # every functional gate read as a ReLU (gelu, sigmoid: wrong)
    monkeypatch.setattr(_capture, "_gate", lambda n, a, k: nn.ReLU() if gate(n, a, k) else None)
    assert _fails(model, x, names)
