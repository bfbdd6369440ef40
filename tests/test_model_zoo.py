"""Every curvature, Jacobian and NTK call on models no one here wrote, against independent references.

Tiny, randomly initialised, eval-mode, float64 versions of torchvision ResNet-18 and
MobileNetV3-small, a transformer-encoder classifier (fused fast path and not), an LSTM and a GRU
classifier. References never go through spectral_lab:

* parameter Jacobian: ``torch.autograd.functional.jacobian`` of ``theta -> functional_call(model,
  theta, x)`` on the flat trainable parameters (first-order reverse mode only);
* input Jacobian: ``torch.autograd.functional.jacobian`` with respect to ``x``;
* NTK: ``J J^T`` of that Jacobian, its spectrum from ``numpy.linalg.eigh``;
* Hessian: central finite differences of autograd gradients (so no higher-order AD at all, which
  hardsigmoid and the fused attention kernels lack), its spectrum from ``numpy.linalg.eigh``;
* Gauss--Newton: ``(1/N) sum_i J_i^T (diag p_i - p_i p_i^T) J_i`` (the softmax cross-entropy
  Hessian in closed form).

Large models are restricted to a few trainable tensors (the rest frozen) so the references stay
dense; those tensors are chosen so that derivatives flow through the whole network (ResNet's
first batch norm) or through the op that lacks higher-order AD (MobileNet's hardsigmoid
squeeze-excitation), and never include the output bias, whose constant softmax block would
dominate every norm. Their batch norms get running statistics from one batch of random images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab import hessian as hs
from spectral_lab import ntk as nk

torchvision = pytest.importorskip("torchvision")

C = 3  # classes of every zoo model


class Recurrent(nn.Module):
    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.r = cell(4, 6, batch_first=True)
        self.h = nn.Linear(6, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(self.r(x)[0][:, -1])


class Encoder(nn.Module):
    """Float sequences (N, 5, 4) -> linear embedding -> TransformerEncoder -> mean -> Linear."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        # "relu" keeps PyTorch's fused fast path (_transformer_encoder_layer_fwd) eligible; a
        # callable activation turns it off
        act = "relu" if fused else nn.functional.silu
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=act, batch_first=True)
        self.e = nn.Linear(4, 8)
        self.t = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.h = nn.Linear(8, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(self.t(self.e(x)).mean(1))


def _restrict(model: nn.Module, keep: tuple[str, ...]) -> nn.Module:
    for name, p in model.named_parameters():
        p.requires_grad_(name in keep)
    return model


def _calibrate(model: nn.Module) -> nn.Module:
    """Set batch-norm running statistics from one batch of random images, as a trained model
    has them: with the fresh ones (mean 0, variance 1) MobileNetV3's logits are ~1e-11 and the
    loss Hessian is the constant softmax block of the output bias alone."""
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.momentum = None  # cumulative average: one batch sets the statistics
    model.train()
    with torch.no_grad():
        model(torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(5)))
    return model


def _build(name: str):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if name == "resnet18":
        m = torchvision.models.resnet18(num_classes=C)
        m = _restrict(_calibrate(m), ("bn1.weight",))
        x = torch.rand(2, 3, 32, 32, generator=g)
    elif name == "mobilenet_v3_small":
        m = torchvision.models.mobilenet_v3_small(num_classes=C)
        keep = ("features.0.1.weight", "features.1.block.1.fc1.bias")
        m = _restrict(_calibrate(m), (*keep, "features.1.block.1.fc2.bias"))
        x = torch.rand(2, 3, 32, 32, generator=g)
    elif name in ("transformer_fused", "transformer"):
        m = Encoder(fused=name == "transformer_fused")
        x = torch.randn(3, 5, 4, generator=g)
    elif name == "lstm":
        m = Recurrent(nn.LSTM)
        x = torch.randn(3, 5, 4, generator=g)
    elif name == "gru":
        m = Recurrent(nn.GRU)
        x = torch.randn(3, 5, 4, generator=g)
    else:
        raise KeyError(name)
    m = m.double().eval()
    x = x.double()
    y = torch.arange(len(x)) % C
    return m, x, y


class Reference:
    """Dense references for one model, from first-order autograd and finite differences only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.model, self.x, self.y = _build(name)
        m = self.model
        self.names = [k for k, p in m.named_parameters() if p.requires_grad]
        tensors = dict(m.named_parameters())
        self.shapes = [tensors[k].shape for k in self.names]
        self.theta = torch.cat([tensors[k].detach().reshape(-1) for k in self.names])
        self.p = self.theta.numel()
        self.J = torch.autograd.functional.jacobian(lambda t: self.f(t, self.x), self.theta)
        self.H = self._fd_hessian()
        probs = torch.softmax(self.f(self.theta, self.x).detach(), -1)
        lam = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]
        self.G = torch.einsum("ncp,ncd,ndq->pq", self.J, lam, self.J) / len(self.x)

    def f(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for k, s in zip(self.names, self.shapes):
            n = int(np.prod(s))
            params[k] = theta[i : i + n].view(s)
            i += n
        return torch.func.functional_call(self.model, params, (x,))

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        t = theta.detach().requires_grad_(True)
        loss = nn.functional.cross_entropy(self.f(t, self.x), self.y)
        return torch.autograd.grad(loss, t)[0]

    def _fd_hessian(self, h: float = 1e-5) -> torch.Tensor:
        cols = []
        for j in range(self.p):
            e = torch.zeros_like(self.theta)
            e[j] = h
            cols.append((self.grad(self.theta + e) - self.grad(self.theta - e)) / (2 * h))
        H = torch.stack(cols, 1)
        return 0.5 * (H + H.T)


ZOO = ["resnet18", "mobilenet_v3_small", "transformer_fused", "transformer", "lstm", "gru"]
_CACHE: dict[str, Reference] = {}


@pytest.fixture(scope="module", params=ZOO)
def ref(request) -> Reference:
    if request.param not in _CACHE:
        _CACHE[request.param] = Reference(request.param)
    return _CACHE[request.param]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# --- first-order calls -------------------------------------------------------------------------


def test_parameter_jacobian(ref):
    J = sl.parameter_jacobian(ref.model, ref.x)
    assert J.shape == ref.J.shape
    assert _rel(J, ref.J) < 1e-10


def test_input_jacobian_every_route(ref):
    n = len(ref.x)
    full = torch.autograd.functional.jacobian(ref.model, ref.x)  # (N, C, N, *x)
    want = full.reshape(n, C, n, -1)[torch.arange(n), :, torch.arange(n)]
    for route in ("auto", "backward", "vmap"):
        J = sl.input_jacobian(ref.model, ref.x, route=route)
        assert _rel(J, want) < 1e-10, route


# --- NTK -----------------------------------------------------------------------------------------


def test_ntk_gram_both_methods(ref):
    K_ref = torch.einsum("ncp,mcp->nm", ref.J, ref.J)
    Kb_ref = torch.einsum("ncp,mdp->nmcd", ref.J, ref.J)
    for method in ("jacobian", "ntvp"):
        assert _rel(sl.ntk_gram(ref.model, ref.x, method=method), K_ref) < 1e-10, method
        Kb = sl.ntk_gram(ref.model, ref.x, method=method, kind="block")
        assert _rel(Kb, Kb_ref) < 1e-10, method
    # a rectangular Gram (x2 != x1) through the NTK-vector-product route
    K12 = sl.ntk_gram(ref.model, ref.x[:1], ref.x, method="ntvp")
    assert _rel(K12, K_ref[:1]) < 1e-10


def test_ntk_eigs_dense_and_lanczos(ref):
    Kb = torch.einsum("ncp,mdp->nmcd", ref.J, ref.J)
    w_ref = np.linalg.eigvalsh(nk.block_to_matrix(Kb).numpy())[::-1]
    for method in ("dense", "lanczos"):
        r = sl.ntk_eigs(ref.model, ref.x, k=2, kind="block", method=method, tol=1e-10)
        np.testing.assert_allclose(r.eigenvalues.numpy(), w_ref[:2], rtol=1e-8)
        assert r.route is not None


# --- Hessian and Gauss--Newton ------------------------------------------------------------------


@pytest.mark.slow
def test_hessian_products_and_dense(ref):
    data = (ref.x, ref.y)
    v = torch.randn(ref.p, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # finite differences: relative error ~1e-9 at h = 1e-5 in float64
    assert _rel(sl.hvp(ref.model, data, v), ref.H @ v) < 1e-6
    assert _rel(hs.gnvp(ref.model, data, v), ref.G @ v) < 1e-10
    H = hs.dense_hessian(ref.model, data)
    assert _rel(H, ref.H) < 1e-6


@pytest.mark.slow
def test_hessian_spectrum_trace_density(ref):
    data = (ref.x, ref.y)
    w = np.linalg.eigvalsh(ref.H.numpy())
    scale = float(np.abs(w).max())
    r = sl.hessian_eigs(ref.model, data, k=1, tol=1e-8)
    assert r.converged and r.route is not None
    assert abs(float(r) - w[-1]) < 1e-6 * scale
    low = sl.hessian_eigs(ref.model, data, k=1, order="smallest", tol=1e-8)
    assert abs(float(low) - w[0]) < 1e-6 * scale
    # Hutch++ is exact once its sketch (num_matvecs // 3 columns) spans the whole space; on the
    # two CNNs (a product costs ~0.1 s) a 30-product estimate must lie within 4 standard errors
    exact = ref.name not in ("resnet18", "mobilenet_v3_small")
    tr = sl.hessian_trace(ref.model, data, num_matvecs=3 * ref.p + 3 if exact else 30)
    err = abs(float(tr) - float(w.sum()))
    assert err < 1e-6 * float(np.abs(w).sum()) + (0 if exact else 4 * tr.std_error)
    assert tr.route == r.route
    # Ritz values of the Lanczos quadrature lie inside [lambda_min, lambda_max] (interlacing)
    dens = sl.hessian_density(ref.model, data, num_probes=2, num_steps=6)
    assert dens.route == r.route
    assert float(dens.nodes.min()) >= w[0] - 1e-6 * scale
    assert float(dens.nodes.max()) <= w[-1] + 1e-6 * scale


# --- the route choice itself ---------------------------------------------------------------------


class _TanhNoJvp(torch.autograd.Function):
    """tanh with a (twice-differentiable) backward but no forward-mode rule."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return torch.tanh(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class _NoJvpMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(_TanhNoJvp.apply(self.a(x)))


def _mlp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, C)).double().eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    return m, x, torch.arange(5) % C


def test_plain_mlp_keeps_the_fast_routes():
    m, x, y = _mlp()
    # within the memory budget the products replay a recording of forward-over-reverse ...
    lin = "forward-over-reverse (linearized, kept graph)"
    assert hs.hessian_operator(m, (x, y)).route == lin
    assert nk.ntk_operator(m, x).route == lin
    assert sl.hessian_eigs(m, (x, y)).route == lin
    # ... and streaming (memory_budget=0) keeps the fast streaming route
    assert hs.hessian_operator(m, (x, y), memory_budget=0).route == "forward-over-reverse"
    assert nk.ntk_operator(m, x, memory_budget=0).route == "forward-over-reverse"
    assert float(sl.hessian_eigs(m, (x, y), memory_budget=0)) > 0
    assert sl.hessian_eigs(m, (x, y), memory_budget=0).route == "forward-over-reverse"
    prep = sl.prepare(m, x)
    sl.parameter_jacobian(prep, x)
    assert prep.routes["parameter_jacobian"] == "vmap"
    sl.ntk_gram(prep, x, method="ntvp")
    assert prep.routes["ntk"] == "ntvp (forward-over-reverse, vmap)"


def test_op_without_forward_ad_selects_double_backward():
    torch.manual_seed(0)
    m = _NoJvpMLP().double().eval()
    x, y = torch.randn(5, 4, dtype=torch.float64), torch.arange(5) % C
    with pytest.raises(NotImplementedError, match="jvp"):
        sl.hvp(m, (x, y), torch.ones(sum(p.numel() for p in m.parameters())), route="forward")
    op = hs.hessian_operator(m, (x, y), memory_budget=0)
    assert op.route == "reverse-over-reverse"
    assert hs.hessian_operator(m, (x, y)).route == "reverse-over-reverse (kept graph)"
    # and it is right: the same network with torch.tanh takes the forward route
    twin = nn.Sequential(m.a, nn.Tanh(), m.b)
    H = hs.dense_hessian(m, (x, y), memory_budget=0)
    H_twin = hs.dense_hessian(twin, (x, y), memory_budget=0)
    assert hs.hessian_operator(twin, (x, y), memory_budget=0).route == "forward-over-reverse"
    assert _rel(H, H_twin) < 1e-12
    assert _rel(hs.dense_hessian(m, (x, y)), H_twin) < 1e-12  # the kept graph
    assert nk.ntk_operator(m, x, memory_budget=0).route == "reverse-over-reverse"
    assert _rel(sl.ntk_gram(m, x, method="ntvp"), sl.ntk_gram(twin, x, method="ntvp")) < 1e-12


def test_zoo_routes():
    """The routes each zoo model gets: recorded, and the fast ones wherever they run."""
    routes = {}
    for name in ("mobilenet_v3_small", "transformer_fused", "gru"):
        m, x, y = _build(name)
        routes[name] = hs.hessian_operator(m, (x[:1], y[:1]), memory_budget=0).route
        routes[name + "/kept"] = hs.hessian_operator(m, (x[:1], y[:1])).route
        routes[name + "/NTK"] = nk.ntk_operator(m, x[:1]).route
        prep = sl.prepare(m, x[:2])
        sl.parameter_jacobian(prep, x[:2])
        routes[name + "/J"] = prep.routes["parameter_jacobian"]
    assert routes["mobilenet_v3_small"] == "forward-over-reverse (composite ops)"
    assert routes["transformer_fused"] == "forward-over-reverse (composite ops)"
    assert routes["gru"] == "forward-over-reverse"
    # kept state: recordings of forward mode; composite kernels only where streaming needs them
    # too (the same function, not bit for bit). MobileNet's NTK needs none (its hardsigmoid
    # backward has no derivative, which only the double-VJP route needed: it used to stream)
    lin, lin_c = "forward-over-reverse (linearized, kept graph)", "forward-over-reverse (composite ops, linearized, kept graph)"  # fmt: skip
    assert routes["mobilenet_v3_small/kept"] == routes["transformer_fused/kept"] == lin_c
    assert routes["transformer_fused/NTK"] == lin_c
    assert routes["gru/kept"] == routes["gru/NTK"] == lin
    assert routes["mobilenet_v3_small/NTK"] == lin
    m, x, _ = _build("mobilenet_v3_small")  # the recorded NTK product is the streamed one
    u = torch.randn(2 * C, generator=torch.Generator().manual_seed(6), dtype=x.dtype)
    kept, stream = (nk.ntk_operator(m, x[:2], "block", memory_budget=b) for b in (2**30, 0))
    assert kept.route == lin and stream.memory["storage"] == "streaming"
    assert _rel(kept @ u, stream @ u) < 1e-5
    assert routes["gru/J"] == "batched"
    assert routes["mobilenet_v3_small/J"] == "vmap"
    m, x, _ = _build("gru")
    prep = sl.prepare(m, x)
    with pytest.warns(UserWarning, match="does not run on this model"):
        sl.input_jacobian(prep, x, route="vmap")
    assert prep.routes["input_jacobian"] == "backward"


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs mkldnn")
def test_float32_lstm_on_mkldnn_uses_double_backward():
    """In float32 on CPU the LSTM runs mkldnn_rnn_layer, which has no forward-mode AD."""
    torch.manual_seed(0)
    m = Recurrent(nn.LSTM).eval()
    x, y = torch.randn(3, 5, 4), torch.arange(3)
    op = hs.hessian_operator(m, (x, y), memory_budget=0)
    assert op.route == "reverse-over-reverse"
    assert hs.hessian_operator(m, (x, y)).route == "reverse-over-reverse (kept graph)"
    m64 = Recurrent(nn.LSTM).eval()
    m64.load_state_dict(m.state_dict())
    m64 = m64.double()
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(2))
    want = sl.hvp(m64, (x.double(), y), v.double())
    assert _rel(op @ v, want.float()) < 1e-4


def test_forward_and_reverse_routes_agree_on_a_mlp():
    m, x, y = _mlp()
    p = sum(q.numel() for q in m.parameters())
    V = torch.randn(p, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for which in ("full", "gn"):
        ops = [
            hs.hessian_operator(m, (x, y), which=which, route=r, memory_budget=0)
            for r in ("forward", "reverse")
        ]
        ops.append(hs.hessian_operator(m, (x, y), which=which, route="reverse"))
        assert [o.route for o in ops] == [
            "forward-over-reverse",
            "reverse-over-reverse",
            "reverse-over-reverse (kept graph)",
        ]
        for o in ops[1:]:
            assert _rel(o @ V[:, 0], ops[0] @ V[:, 0]) < 1e-10
            assert _rel(o @ V, ops[0] @ V) < 1e-10
    for kind in ("scalar", "block"):
        a, b, c = (
            nk.ntk_operator(m, x, kind, route=r, memory_budget=b)
            for r, b in (("forward", 0), ("reverse", 0), ("reverse", 2**30))
        )
        assert c.route == "reverse-over-reverse (kept graph)"
        u = torch.randn(a.dim, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        assert _rel(b @ u, a @ u) < 1e-10
        assert _rel(c @ u, a @ u) < 1e-10
    Ks = [sl.ntk_gram(m, x, method="ntvp", kind="block", route=r) for r in ("forward", "reverse")]
    assert _rel(Ks[1], Ks[0]) < 1e-10


def test_input_jacobian_auto_forward_route_falls_back_silently_on_a_gru():
    """``d < C`` picks forward mode under "auto"; a GRU cannot be vmapped, so "backward" runs."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.GRU(1, 4, batch_first=True), _Last(), nn.Linear(4, 7)).double().eval()
    x = torch.randn(3, 2, 1, dtype=torch.float64)  # d = 2 < C = 7
    prep = sl.prepare(m, x)
    J = sl.input_jacobian(prep, x)
    assert prep.routes["input_jacobian"] == "backward"
    full = torch.autograd.functional.jacobian(m, x).reshape(3, 7, 3, 2)
    assert _rel(J, full[torch.arange(3), :, torch.arange(3)]) < 1e-12


class _Last(nn.Module):
    def forward(self, out):
        return out[0][:, -1]


def test_vmap_fallback_routes_agree_on_a_mlp():
    m, x, _ = _mlp()
    J = [sl.parameter_jacobian(m, x, route=r) for r in ("vmap", "batched")]
    assert _rel(J[1], J[0]) < 1e-12
    # blocks smaller than the batch: chunking must not mix samples
    assert _rel(sl.parameter_jacobian(m, x, chunk_size=2, route="batched"), J[0]) < 1e-12


# --- diagnose end to end on every zoo model ------------------------------------------------------


def _sigma1(J: torch.Tensor) -> torch.Tensor:
    """Largest singular value of each ``J[i]`` (flattened to a matrix), by LAPACK."""
    return torch.stack([torch.linalg.svdvals(j.reshape(j.shape[0], -1))[0] for j in J])


def _check_report(rep, *, jac_top, J, H, loss, tol_h=1e-6):
    """The report's numbers against dense references: input-Jacobian sigma_1 per sample,
    parameter-Jacobian sigma_1 per sample, NTK lambda_max/n and lambda_min/n from ``J J^T``,
    lambda_max of the dense Hessian ``H``, the loss, and Gamma as the max of those terms."""
    n = J.shape[0]
    torch.testing.assert_close(rep.profile.samples["jac_top"], jac_top, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(rep.profile.samples["param_top"], _sigma1(J), rtol=1e-8, atol=1e-12)
    lam = np.linalg.eigvalsh(torch.einsum("ncp,mcp->nm", J, J).numpy())
    assert rep.profile.ntk_top == pytest.approx(lam[-1] / n, rel=1e-8)
    assert rep.profile.ntk_min == pytest.approx(max(lam[0], 0) / n, rel=1e-5, abs=1e-10 * lam[-1])
    w = np.linalg.eigvalsh(H.numpy())
    assert rep.profile.settings["hessian_converged"] is True
    assert abs(rep.profile.hess_top - w[-1]) < tol_h * np.abs(w).max()
    assert rep.data["loss"] == pytest.approx(loss, rel=1e-10)
    terms = [float(jac_top.max()), float(_sigma1(J).max()), np.sqrt(lam[-1] / n), np.sqrt(w[-1])]
    assert rep.index.value == pytest.approx(max(terms), rel=1e-5)
    assert all(v == "computed" for k, v in rep.bound_status.items() if k != "gamma")
    assert rep.profile.settings["hessian_route"] is not None


def _diag(model, data, p, **kw):
    return sl.diagnose(model, data, progress=False, tol=1e-8, max_iter=min(p, 300), **kw)


@pytest.mark.slow
def test_diagnose_on_the_zoo_matches_references(ref):
    n = len(ref.x)
    rep = _diag(ref.model, (ref.x, ref.y), ref.p)
    full = torch.autograd.functional.jacobian(ref.model, ref.x)
    Jx = full.reshape(n, C, n, -1)[torch.arange(n), :, torch.arange(n)]
    loss = float(nn.functional.cross_entropy(ref.model(ref.x), ref.y))
    _check_report(rep, jac_top=_sigma1(Jx), J=ref.J, H=ref.H, loss=loss)
    assert rep.data["loss_fn"] == "cross_entropy" and rep.data["accuracy"] is not None


def _fd_hessian(f, theta, loss_fn, h=1e-5):
    """Central differences of first-order autograd gradients (no higher-order AD)."""

    def grad(t):
        t = t.detach().requires_grad_(True)
        return torch.autograd.grad(loss_fn(f(t)), t)[0]

    cols = []
    for j in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[j] = h
        cols.append((grad(theta + e) - grad(theta - e)) / (2 * h))
    H = torch.stack(cols, 1)
    return 0.5 * (H + H.T)


def _functional(model):
    names = [k for k, q in model.named_parameters() if q.requires_grad]
    tensors = dict(model.named_parameters())
    theta = torch.cat([tensors[k].detach().reshape(-1) for k in names])

    def f(t, x):
        params, i = {}, 0
        for k in names:
            s = tensors[k].shape
            params[k] = t[i : i + s.numel()].view(s)
            i += s.numel()
        return torch.func.functional_call(model, params, (x,))

    return theta, f


class TextClassifier(nn.Module):
    """Token ids (N, 5) -> Embedding -> TransformerEncoder (not fused) -> mean -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        layer = nn.TransformerEncoderLayer(
            8, 2, 16, dropout=0.0, activation=nn.functional.silu, batch_first=True
        )
        self.t = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.h = nn.Linear(8, C)

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.h(self.t(e).mean(1))

    def forward(self, tok: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(tok))


@pytest.mark.slow
def test_diagnose_token_id_text_classifier():
    torch.manual_seed(0)
    m = _restrict(TextClassifier().double().eval(), ("emb.weight", "h.weight"))
    tok = torch.randint(0, 20, (3, 5), generator=torch.Generator().manual_seed(0))
    y = torch.arange(3) % C
    theta, f = _functional(m)
    rep = _diag(m, (tok, y), theta.numel())
    assert "embedding 'emb'" in rep.data["notes"]["input_space"]
    # input space: the embedding's output e, per sample
    e = m.emb(tok).detach()
    jac = [
        torch.autograd.functional.jacobian(lambda ei: m.head(ei[None])[0], e[i]) for i in range(3)
    ]
    J = torch.autograd.functional.jacobian(lambda t: f(t, tok), theta)
    H = _fd_hessian(lambda t: f(t, tok), theta, lambda o: nn.functional.cross_entropy(o, y))
    loss = float(nn.functional.cross_entropy(m(tok), y))
    _check_report(rep, jac_top=_sigma1(torch.stack(jac)), J=J, H=H, loss=loss)
    assert J[:, :, :160].abs().sum() > 0  # the embedding table is in the parameter space


@pytest.mark.slow
def test_diagnose_regression_cnn_uses_mse_and_regression_metrics():
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 5 * 5, 1)
    ).double().eval()  # fmt: skip
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 5, 5, generator=g, dtype=torch.float64)
    t = torch.randn(5, 1, generator=g, dtype=torch.float64)
    theta, f = _functional(m)
    rep = _diag(m, (x, t), theta.numel())

    def mse(o):  # the one "mse": (1/n) sum_i 1/2 ||f(x_i) - y_i||^2
        return 0.5 * (o - t).square().sum() / len(t)

    jac = [torch.autograd.functional.jacobian(lambda xi: m(xi[None])[0], x[i]) for i in range(5)]
    J = torch.autograd.functional.jacobian(lambda th: f(th, x), theta)
    H = torch.autograd.functional.hessian(lambda th: mse(f(th, x)), theta)
    _check_report(rep, jac_top=_sigma1(torch.stack(jac)), J=J, H=H, loss=float(mse(m(x))))
    out = m(x).detach()
    r2 = 1 - float((out - t).square().sum() / (t - t.mean()).square().sum())
    assert rep.data["loss_fn"] == "mse" and rep.data["accuracy"] is None
    assert rep.data["r2"] == pytest.approx(r2, rel=1e-10)
    assert "accuracy" not in rep.summary() and "loss (mse)" in rep.summary()


class DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.Tanh())
        self.head = nn.Linear(6, C)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(x)
        return {"features": h, "logits": self.head(h)}


@pytest.mark.slow
def test_diagnose_dict_output_model():
    torch.manual_seed(0)
    m = DictOut().double().eval()
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(5) % C
    theta, f = _functional(m)
    rep = _diag(m, (x, y), theta.numel())
    assert rep.data["notes"]["output"] == "output['logits']"
    logits = lambda th, xx: f(th, xx)["logits"]  # noqa: E731
    jac = [
        torch.autograd.functional.jacobian(lambda xi: m(xi[None])["logits"][0], x[i])
        for i in range(5)
    ]
    J = torch.autograd.functional.jacobian(lambda th: logits(th, x), theta)
    H = torch.autograd.functional.hessian(
        lambda th: nn.functional.cross_entropy(logits(th, x), y), theta
    )
    loss = float(nn.functional.cross_entropy(m(x)["logits"], y))
    _check_report(rep, jac_top=_sigma1(torch.stack(jac)), J=J, H=H, loss=loss)
