"""Small models shared by the attribution tests."""

from __future__ import annotations

import torch
from torch import nn

import spectral_lab as sl

torch.set_default_dtype(torch.float32)


def _tanh_mlp(d=6, c=4, seed=0):
    torch.manual_seed(seed)
    return sl.MLP(d, c, width=12, depth=3, activation="tanh").double().eval()


def _linear(d=5, c=3, seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(d, c)).double().eval()
    return m
