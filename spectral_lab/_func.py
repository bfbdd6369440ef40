"""Private torch.func plumbing shared by the parameter-space modules (jacobians, ntk, hessian).

Parameter-space vectors are flat 1-D tensors of length ``p`` laid out in the order of
``model.named_parameters()`` (trainable ones only), in the parameters' dtype and device.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


def trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` of the trainable parameters (detached), raising if there are none."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(
            "model has no trainable parameters; parameter Jacobians, the NTK and the loss "
            "Hessian need at least one parameter with requires_grad=True"
        )
    return params


def buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: b.detach() for k, b in model.named_buffers()}


def num_params(params: dict[str, torch.Tensor]) -> int:
    return sum(p.numel() for p in params.values())


def flatten(tree: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tree.values()])


def flatten_batched(tree: dict[str, torch.Tensor], lead: int) -> torch.Tensor:
    """Flatten a dict whose leaves carry ``lead`` leading batch dimensions."""
    return torch.cat([t.reshape(*t.shape[:lead], -1) for t in tree.values()], dim=-1)


def unflatten(v: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for k, p in like.items():
        out[k] = v[i : i + p.numel()].view_as(p)
        i += p.numel()
    return out


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode (dropout off, batch-norm on running statistics); afterwards every
    module gets its own flag back (``model.train(was)`` would set the root's flag on all of them:
    a wrapper in train mode around an eval'd model would leave that model in train mode)."""
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in saved:
            m.training = flag


def functional(model: nn.Module):
    """``f(params, x) -> model(x)`` with the model's buffers fixed (torch.func.functional_call)."""
    bufs = buffers(model)

    def f(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, (params, bufs), (x,))

    return f


def check_vector(v: object, dim: int, like: torch.Tensor, name: str = "v") -> torch.Tensor:
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of length {dim}, got {type(v).__name__}")
    if v.dim() != 1 or v.shape[0] != dim:
        raise ValueError(
            f"{name} must be a flat vector of length {dim} (the number of trainable parameters), "
            f"got shape {tuple(v.shape)}"
        )
    return v.to(dtype=like.dtype, device=like.device)


# --- automatic differentiation routes (issue 12) --------------------------------------------------
# Curvature and NTK products need a Jacobian-vector product J v (or the derivative of a gradient).
# "forward" takes it with forward-mode AD (torch.func.jvp: forward-over-reverse for the Hessian);
# "reverse" with reverse mode only (reverse-over-reverse: J v = d/du <J^T u, v>, H v = vjp of the
# gradient). Some kernels support neither higher-order route (hardsigmoid's backward has no
# derivative; the fused CPU attention kernels have none); "composite" evaluates the model with
# those kernels swapped for mathematically identical compositions of differentiable ops
# (hardsigmoid(x) = clamp(x + 3, 0, 6) / 6; scaled-dot-product attention on its MATH backend).

AD_ROUTES = ("auto", "forward", "reverse")
_CANDIDATES = (
    ("forward-over-reverse", False, False),
    ("reverse-over-reverse", True, False),
    ("forward-over-reverse (composite ops)", False, True),
    ("reverse-over-reverse (composite ops)", True, True),
)
#: routes that keep per-chunk state between products (_kept): the recorded tangent operations of
#: forward-over-reverse (_linearized), else the autograd graph for backward passes through it
KEPT_CANDIDATES = (
    ("forward-over-reverse (linearized, kept graph)", False, False),
    ("reverse-over-reverse (kept graph)", True, False),
    ("forward-over-reverse (composite ops, linearized, kept graph)", False, True),
    ("reverse-over-reverse (composite ops, kept graph)", True, True),
)


def _hardsigmoid(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return torch.clamp(x + 3, 0, 6) / 6


class _Composite(torch.overrides.TorchFunctionMode):
    _subs = {torch.nn.functional.hardsigmoid: _hardsigmoid}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        sub = self._subs.get(func)
        if sub is not None:
            return sub(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


@contextmanager
def ad_context(composite: bool) -> Iterator[None]:
    """Evaluate with composite (higher-order differentiable) kernels when ``composite``."""
    if not composite:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with _Composite(), sdpa_kernel(SDPBackend.MATH):
        yield


@dataclass
class ADRoute:
    """The route chosen for a product: its ``name``, whether it is reverse-only, composite."""

    name: str
    reverse: bool
    composite: bool

    def context(self):
        return ad_context(self.composite)


def choose_route(route: str, probe, kind: str, candidates=_CANDIDATES) -> ADRoute:
    """Pick the first AD route on which ``probe(route)`` (a product on a tiny slice) runs.

    ``route="auto"`` tries forward-over-reverse, reverse-over-reverse, then both with composite
    kernels; ``"forward"`` / ``"reverse"`` restrict to that mode (plain first, then composite).
    The first error is re-raised (with a note naming the routes tried) when none runs.
    ``candidates`` (``(name, reverse, composite)`` triples) defaults to the streaming routes;
    :data:`KEPT_CANDIDATES` are the kept-graph ones.
    """
    if route not in AD_ROUTES:
        raise ValueError(f"route must be one of {AD_ROUTES}, got {route!r}")
    first: BaseException | None = None
    tried = []
    for name, reverse, composite in candidates:
        if route == "forward" and reverse or route == "reverse" and not reverse:
            continue
        cand = ADRoute(name, reverse, composite)
        tried.append(name)
        try:
            with cand.context():
                probe(cand)
        except (NotImplementedError, RuntimeError) as err:
            first = first or err
            continue
        return cand
    if first is None:
        raise ValueError(f"route={route!r} leaves no {kind} route to try")
    first.add_note(f"spectral_lab tried the {kind} routes {tried}; none ran on this model")
    raise first


def jvp(fn, primals: dict, tangents: dict, reverse: bool):
    """``(fn(primals), J tangents)``: forward mode, or reverse-only via ``d/du <J^T u, t>``."""
    if not reverse:
        return torch.func.jvp(fn, (primals,), (tangents,))
    out, vjp_fn = torch.func.vjp(fn, primals)
    _, vjp_of_vjp = torch.func.vjp(lambda u: vjp_fn(u)[0], torch.zeros_like(out))
    return out, vjp_of_vjp(tangents)[0]


def hvp_of(fn, primals: dict, tangents: dict, reverse: bool):
    """``grad^2 fn (primals) tangents`` for a scalar ``fn``: forward- or reverse-over-reverse."""
    if not reverse:
        return torch.func.jvp(torch.func.grad(fn), (primals,), (tangents,))[1]
    _, vjp_fn = torch.func.vjp(torch.func.grad(fn), primals)
    return vjp_fn(tangents)[0]


def vmap_or_loop(fn, V: torch.Tensor, state: dict) -> torch.Tensor:
    """``fn`` over the columns of ``V`` (dim, b): vmapped, or column by column (a loop over
    vectors, not samples) when vmap fails on this model; ``state["matmat"]`` remembers which."""
    if state.get("matmat") != "loop":
        try:
            out = torch.func.vmap(fn, in_dims=1, out_dims=1)(V)
            state["matmat"] = "vmap"
            return out
        except (NotImplementedError, RuntimeError):
            if state.get("matmat") == "vmap":
                raise
            state["matmat"] = "loop"
    return torch.stack([fn(V[:, j]) for j in range(V.shape[1])], dim=1)
