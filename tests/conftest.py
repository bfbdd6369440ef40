"""Shared fixtures: the devices to test on, tiny model factories and a seeded digits batch.

* ``device``: parametrises a test over ``"cpu"`` and, when one is present, ``"cuda"``.
* ``tiny_mlp(in_features=4, num_classes=3, **kw)`` / ``tiny_cnn(**kw)``: small seeded float64 (by
  default) models in eval mode, cheap enough for dense references.
* ``digits_batch``: ``(x, y)`` -- the first 64 samples of the embedded ``digits`` training set
  (8x8 images flattened to 64 features, float32, labels 0-9), identical on every run.
"""

from __future__ import annotations

import pytest
import torch

from spectral_lab import MLP, SmallCNN, load_dataset

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture
def tiny_mlp():
    def make(
        in_features: int = 4,
        num_classes: int = 3,
        *,
        width: int = 8,
        depth: int = 2,
        activation: str = "tanh",
        dtype: torch.dtype = torch.float64,
        device: str = "cpu",
        seed: int = 0,
    ) -> MLP:
        torch.manual_seed(seed)
        m = MLP(in_features, num_classes, width=width, depth=depth, activation=activation)
        return m.to(device=device, dtype=dtype).eval()

    return make


@pytest.fixture
def tiny_cnn():
    def make(
        *,
        image_size: int = 8,
        num_classes: int = 3,
        channels=(2, 3),
        dtype: torch.dtype = torch.float64,
        device: str = "cpu",
        seed: int = 0,
    ) -> SmallCNN:
        torch.manual_seed(seed)
        m = SmallCNN(1, num_classes, image_size=image_size, channels=channels)
        return m.to(device=device, dtype=dtype).eval()

    return make


@pytest.fixture(scope="session")
def digits_batch() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_dataset("digits", split="train").tensors(64)
    return x.reshape(len(x), -1).float(), y


@pytest.fixture
def regression() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight float64 regression pairs ``x`` (8, 3), ``y`` (8, 1), seeded."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.randn(8, 1, generator=g, dtype=torch.float64)
    return x, y


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Six test digits ``(x, y)`` (images 1x8x8)."""
    x, y = load_dataset("digits", split="test").tensors(6)
    return x, y


@pytest.fixture(scope="module")
def model_and_data():
    """A small digits MLP (eval mode, seeded) and twelve test digits."""
    torch.manual_seed(0)
    x, y = load_dataset("digits", split="test").tensors(12)
    return MLP(64, 10, width=16, depth=2).eval(), x, y
