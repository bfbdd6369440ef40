"""A network at one input as a product of linear operators.

By the chain rule, a network ``f = z_L`` built from affine maps and coordinate-wise activations has
the input Jacobian

    J_f(x) = W_L D_{L-1}(x) W_{L-1} ... D_1(x) W_1,      D_l(x) = diag(phi'(z_l(x))),

exact for smooth ``phi`` and almost everywhere for ReLU-type ``phi`` (biases enter only through
``D_l``). This product is the starting point of "A Unified Matrix-Spectral Framework for Stability
and Interpretability in Deep Learning" (Katende 2026). :func:`operator_product` turns ANY model
that autograd can differentiate into such a product at one input: the layers it knows become
named, structured factors (dense weights ``W``, matrix-free convolutions, BatchNorm ``B``, pooling
``P``, gates ``D``, residual blocks ``R = D_g (J_S + scale J_branch)``, LayerNorm and the attention
value/pattern paths), a custom ``forward`` is captured with ``torch.fx`` (its branches that merge
become sums of products, ``R`` or ``M``), and every other module or function becomes a generic
matrix-free factor ``G`` (its own JVP/VJP). Nothing is refused for being unknown.

This module is the public face; the pieces live one idea per file: the factor types
(``_factors``; the generic factor in ``_generic``), the product (``_product``), the walker registry
and dispatch (``_walk``), the ``torch.fx`` capture (``_capture``) and the walkers of known layers
(``_walkers``, ``_transformer_walkers``, imported here so that they register).

Extending the walk: every layer type is handled by a *walker* found in a registry by
``type(module).__mro__``. To give a new layer named, structured factors (instead of a generic
``G``), register one from any file::

    from spectral_lab.operators import MapFactor, WalkContext, register_walker

    @register_walker(MyLayer)
    def _walk_my_layer(m: nn.Module, h: torch.Tensor, ctx: WalkContext) -> torch.Tensor:
        shape = tuple(h.shape[1:])                 # h is a batch of one: (1, *shape)
        ctx.add(MapFactor(ctx.name("W"), "weight", shape, shape, m, lambda v: ..., h))
        return m(h)                                # the walk continues from the output

``ctx.name(kind)`` numbers factors per kind (``W1``, ``D2``, ...), ``ctx.walk(layers, h)`` recurses
into sublayers (factors land in the same product) and ``ctx.sub(prefix)`` opens a separate
context for a branch (its ``factors`` become an :class:`OperatorProduct` of their own). A walker
must append factors whose product is the module's Jacobian at ``h`` and return ``module(h)``.

Example:
    >>> from spectral_lab import MLP
    >>> model = MLP(4, 3, width=8, depth=2).double()
    >>> op = operator_product(model, torch.randn(4, dtype=torch.float64))
    >>> op
    OperatorProduct(3 x 4 = W2 · D1 · W1)
    >>> op.dense().shape
    torch.Size([3, 4])
"""

from __future__ import annotations

import torch
from torch import nn

from . import _func
from . import _transformer_walkers as _transformer_walkers  # noqa: F401  (registers walkers)
from . import _walkers as _walkers  # noqa: F401  (registers the walkers of torch's layers)
from ._capture import same_output
from ._checks import check_model, check_tensor
from ._factors import (
    ACTIVATION_SUP_DERIVATIVE,
    DenseFactor,
    DiagonalFactor,
    DiagonalMaps,
    Factor,
    GateFactor,
    MapFactor,
    MergeFactor,
    ModelStateError,
    ResidualFactor,
    SelectionFactor,
    TokenLinearFactor,
    activation_derivative,
)
from ._generic import GenericFactor
from ._product import OperatorProduct
from ._walk import (
    WalkContext,
    Walker,
    check_state,
    find_walker,
    generic_module,
    register_walker,
    supported_layers,
    walk_module,
)
from .prepared import Prepared

__all__ = [
    "ACTIVATION_SUP_DERIVATIVE",
    "DenseFactor",
    "DiagonalFactor",
    "DiagonalMaps",
    "Factor",
    "GateFactor",
    "GenericFactor",
    "MapFactor",
    "MergeFactor",
    "ModelStateError",
    "OperatorProduct",
    "ResidualFactor",
    "SelectionFactor",
    "TokenLinearFactor",
    "WalkContext",
    "Walker",
    "activation_derivative",
    "find_walker",
    "operator_product",
    "register_walker",
    "supported_layers",
]


def operator_product(model: nn.Module, x: torch.Tensor) -> OperatorProduct:
    """The network at ONE input ``x`` (shape ``input_shape``, no batch dimension) as the product
    ``J_f(x) = F_K(x) ... F_1(x)`` of linear factors, e.g. ``W_L D_{L-1}(x) ... W_1``, for any
    model that autograd can differentiate.

    Formula: the chain rule through the model's forward at ``x``; a branch that merges is a sum of
    products: ``a + b`` of two paths from one input is ``R = J_S + J_branch`` (gated by the
    activation after it where a walker knows it), any other ``op(a_1, ..., a_m)`` is
    ``M = sum_i J_op,i P_i``. Every module is handled by the first rule that applies:

    1. **a registered walker** (:func:`supported_layers`; :func:`register_walker` adds one) gives
       named, structured factors: ``Linear`` (``W``, dense; ``I_n ⊗ W`` on ``n`` positions),
       ``Conv2d`` (``W``, matrix-free), the gates ``D = diag(phi'(z))`` of ReLU, LeakyReLU, Tanh,
       Sigmoid, GELU, SiLU, BatchNorm in eval mode (``B``, ``gamma / sqrt(running_var + eps)``),
       pooling (``P``: max = a 0/1 selection at ``x``, average = a fixed map), ``Flatten``,
       ``Identity``, eval dropout (no factor), residual blocks (``R``: the library's
       ``ResidualBlock``, torchvision's ``BasicBlock``/``Bottleneck``/``ResNet``), LayerNorm
       (``LN``), self-attention (``A`` = value path + pattern path; ``nn.MultiheadAttention``
       too) and the library's transformer blocks (``B1.attn``, ``B1.mlp``);
    2. **a custom forward** (a module with submodules and no walker, or a subclass that overrides
       its walker's ``forward``) is **captured** with one level of ``torch.fx``: its submodules are
       walked by these same rules, functional gates (``F.relu``, ``torch.tanh``...) become ``D``,
       reshapes and eval dropout no factor, merging branches ``R``/``M``, any other function a
       generic ``G`` (see :mod:`spectral_lab._capture`);
    3. **anything else** -- a leaf module without a walker (``nn.ELU``, ``Hardswish``, a Hugging
       Face model called with keywords), a forward ``torch.fx`` cannot trace (data-dependent
       control flow), a graph that is not a product and sum of paths (DenseNet's concatenations)
       -- becomes ONE generic matrix-free factor ``G``: the module's own JVP (``torch.func.jvp``)
       and VJP at its input, ``dense()`` from those products (:class:`GenericFactor`).

    Names: ``W``, ``D``, ``B``, ``P``, ``R``, ``LN``, ``A`` as above; ``G1``, ``G2``, ... generic
    factors; ``M1`` a merge of several paths (its partial Jacobians ``M1.J1``, ``M1.J2``...);
    factors found by a capture are numbered in the order the forward runs them, so the factors
    of a captured branch (``R1.branch``) and the top-level product share one numbering.
    ``partial_products()`` cuts the top-level product after any factor.

    Checks: the output of every module with submodules (walked or captured) is compared with
    ``module(h)``, and every captured product with autograd's VJP of its module for one random
    vector; a mismatch drops its factors for one generic factor, so the product always describes
    ``model`` itself (``op.generic_factors()`` shows where structure was given up). The model is
    analysed in eval mode, as by :func:`~spectral_lab.prepare` (its own mode is left as it was; a
    :class:`~spectral_lab.Prepared` is walked through its module). Refused, with the reason and
    the fix: a model whose output is random or batch-dependent even in eval mode (BatchNorm
    without running statistics, two calls that differ: ``ModelStateError``), an output that is not ``(1, C)`` logits, an ``x`` whose
    dtype or device is not the model's (a ``TypeError`` says how to cast).

    Cost: one forward pass per nesting level for the checks, one ``torch.fx`` trace per captured
    module (kept for the next call) and one backward pass for its spot check, plus the factors'
    bookkeeping (ResNet-18 at 3x32x32 in float64: 0.13 s vs 0.09 s for the walkers alone before
    captures existed; one core); every structured factor is stored matrix-free or as
    its own (small) dense matrix, a generic one keeps the autograd graph of its module at its
    input. ``matvec``/``rmatvec`` cost about one forward/backward pass; ``dense()`` costs ``C``
    transposed sweeps. Runs on the device and dtype of the model's parameters; inputs are cast to
    them only by you (``x`` must already have them), because the factors are compared with
    autograd to the last bit.

    Example:
        >>> from spectral_lab import SmallCNN
        >>> op = operator_product(SmallCNN(1, 10, image_size=8, channels=(4,)), torch.randn(1, 8, 8))
        >>> op.names
        ['W1', 'D1', 'P1', 'W2']

    Example: a torchvision ResNet; each residual block is one factor ``R``.
        >>> from torchvision.models.resnet import BasicBlock, ResNet
        >>> _ = torch.manual_seed(0)
        >>> net = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=3).double().eval()
        >>> x = torch.randn(3, 16, 16, dtype=torch.float64)
        >>> op = operator_product(net, x)
        >>> op.names
        ['W1', 'B1', 'D1', 'P1', 'R1', 'R2', 'R3', 'R4', 'P2', 'W2']
        >>> J = torch.autograd.functional.jacobian(lambda v: net(v[None])[0], x).reshape(3, -1)
        >>> torch.allclose(op.dense(), J, rtol=0, atol=1e-12)
        True

    Example: a custom forward with a functional gate, a residual sum and an unknown layer.
        >>> class Net(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.a, self.b, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        ...         self.act = nn.ELU()
        ...     def forward(self, x):
        ...         h = torch.relu(self.a(x))
        ...         return self.out(self.act(h + self.b(h)))
        >>> net = Net().double()
        >>> op = operator_product(net, torch.randn(4, dtype=torch.float64))
        >>> op.names, op.factors[2].branch.names
        (['W1', 'D1', 'R1', 'G1', 'W3'], ['W2'])
    """
    if isinstance(model, Prepared):
        model = model.source
    check_model(model)
    x = check_tensor(x, "x")
    p = next(model.parameters())
    if x.dtype != p.dtype or x.device != p.device:
        raise TypeError(
            f"x is {x.dtype} on {x.device} but the model is {p.dtype} on {p.device}; "
            "use x.to(model's dtype/device) or model.to(x.dtype)"
        )
    # the one mode policy (see sl.prepare): the model is analysed in eval mode, every module's
    # own flag restored afterwards
    with _func.eval_mode(model):
        check_state(model)
        h = x.detach().clone()[None]
        with torch.no_grad():
            try:
                ref = model(h.clone())
            except Exception as err:  # noqa: BLE001  (the model's own error, named)
                raise ValueError(
                    f"the model could not run on x of shape {tuple(x.shape)}: pass ONE input without a "
                    f"batch dimension (e.g. X[0], not X[:1]) ({type(err).__name__}: {err})"
                ) from err
            if not isinstance(ref, torch.Tensor) or ref.dim() != 2:
                got = tuple(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
                raise ValueError(
                    f"model output must be (1, C) logits, got {got}; wrap the model so that its "
                    "forward returns one tensor of shape (batch, C) (e.g. .logits.flatten(1))"
                )
            if not same_output(model(h.clone()), ref):
                raise ModelStateError(
                    f"{type(model).__name__} gives two different outputs on the same x even in eval "
                    "mode (F.dropout(training=True), noise in forward?): pass "
                    "training=self.training to the functional dropout, or remove the noise"
                )
            ctx = WalkContext()
            out = walk_module(model, h, ctx)
            if not same_output(out, ref):  # an internal assertion: never return another function
                ctx = WalkContext()
                out = generic_module(model, h, ctx, ref)
        return OperatorProduct(ctx.factors, tuple(x.shape), x)
