"""Clear errors from every attribution function."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spectral_lab as sl
from spectral_lab.attribution import topk_overlap

from ._helpers import _tanh_mlp


def test_errors_are_clear():
    m = _tanh_mlp()
    x = torch.randn(3, 6, dtype=torch.float64)
    with pytest.raises(TypeError, match="integer"):
        sl.saliency(m, torch.ones(3, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        sl.saliency(m, x.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="target must have shape"):
        sl.saliency(m, x, target=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        sl.saliency(m, x, target=9)
    with pytest.raises(ValueError, match="method must be one of"):
        sl.attribution.attribution(m, x, "lime")
    with pytest.raises(ValueError, match="same number of features"):
        sl.frechet_distance(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        sl.frechet_distance(torch.randn(1, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="pca_dim"):
        sl.frechet_distance(torch.randn(5, 3), torch.randn(5, 3), pca_dim=4)
    with pytest.raises(ValueError, match="k must select"):
        topk_overlap(torch.randn(2, 3), torch.randn(2, 3), 4)
    with pytest.raises(ValueError, match="same shape"):
        sl.attribution.relative_change(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="kind"):
        sl.attribution.attribution_condition_number(torch.randn(2, 3, 4), kind="max")
    with pytest.raises(ValueError, match="scales"):
        sl.attribution_instability(m, x, scales=())
    with pytest.raises(ValueError, match="steps"):
        sl.integrated_gradients(m, x, num_steps=0)
    with pytest.raises(ValueError, match="no trainable parameters"):
        sl.saliency(nn.Identity(), x)
