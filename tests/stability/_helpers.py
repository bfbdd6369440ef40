"""Tiny float64 models and data, and dense references, shared by the stability tests."""

from __future__ import annotations

import math

import torch
from torch.func import functional_call

import spectral_lab as sl


def _model(act="tanh", width=7, depth=3, d=5, c=3, seed=0, gain=1.3):
    torch.manual_seed(seed)
    return sl.MLP(d, c, width=width, depth=depth, activation=act, gain=gain).double()


def _data(n=12, d=5, c=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, c, (n,), generator=g)


def _flat_params(model):
    names = [k for k, _ in model.named_parameters()]
    shapes = [v.shape for _, v in model.named_parameters()]
    flat = torch.cat([v.detach().flatten() for v in model.parameters()])

    def unflat(v):
        out, i = {}, 0
        for k, s in zip(names, shapes):
            out[k] = v[i : i + math.prod(s)].reshape(s)
            i += math.prod(s)
        return out

    return flat, unflat


def _dense_param_jacobian(model, xi):
    flat, unflat = _flat_params(model)
    return torch.autograd.functional.jacobian(
        lambda v: functional_call(model, unflat(v), (xi[None],))[0], flat
    )
