"""A rectangular :class:`~spectral_lab.linalg.LinearOperator` from a function's JVP and VJP: the
input and parameter Jacobians as operators share it."""

from __future__ import annotations

import torch

from .._checks import check_logits


def _jacobian_operator(fn, primal: dict, n_out: int, like: torch.Tensor, name: str, route: str):
    """A rectangular :class:`~spectral_lab.linalg.LinearOperator` for ``v -> J v`` and
    ``u -> J^T u`` of ``fn(primal)`` (``primal`` a dict of tensors, vectors flat in its order);
    ``J v`` by forward mode, or by reverse mode only where an operation lacks it."""
    from .. import _func
    from ..linalg import LinearOperator

    def flat_out(out):
        return check_logits(out).reshape(-1)

    def jv(v, reverse):
        t = _func.unflatten(v.to(like), primal)
        return _func.jvp(lambda p: flat_out(fn(p)), primal, t, reverse)[1].detach()

    def probe(r: _func.ADRoute) -> None:
        jv(torch.zeros(_func.num_params(primal), dtype=like.dtype, device=like.device), r.reverse)

    ad = _func.choose_route(route, probe, name)

    def mv(v):
        with ad.context():
            return jv(v, ad.reverse)

    def rmv(u):
        with ad.context():
            _, vjp_fn = torch.func.vjp(lambda p: flat_out(fn(p)), primal)
            return _func.flatten(vjp_fn(u.to(like).reshape(n_out))[0]).detach()

    op = LinearOperator(mv, _func.num_params(primal), like.dtype, like.device, name=name,
                        rmatvec=rmv, out_dim=n_out)  # fmt: skip
    op.route = ad.name
    return op
