"""Small reference models used throughout the course.

Every model keeps its computation in ``model.layers`` (an ``nn.Sequential``) so that it reads as the
product of linear maps and coordinate-wise gates the course is about. Residual blocks compute
``h + scale * branch(h)``; their Jacobian is ``I + scale * J_branch``.

Adapters for models written elsewhere: :func:`as_logits` (tuple/dict outputs, regression
``(N,)`` outputs), :class:`TokenIds` and :func:`split_at_embedding` (token-id inputs).

Example:
    >>> m = MLP(in_features=64, num_classes=10, width=32, depth=3, activation="tanh")
    >>> m(torch.zeros(5, 1, 8, 8)).shape
    torch.Size([5, 10])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ._adapt import TokenIds, as_logits, split_at_embedding  # noqa: F401 (re-exported)

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """The activation module called ``name`` (one of ``ACTIVATIONS``).

    Example:
        >>> activation("tanh")
        Tanh()
    """
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None


def init_weights_(module: nn.Module, gain: float = 1.0) -> nn.Module:
    """Gaussian init ``W ~ N(0, gain^2 / fan_in)`` and zero biases for every Linear/Conv layer.

    ``gain = 1`` keeps linear networks norm-preserving on average; ``sqrt(2)`` is the critical
    choice for ReLU (He et al. 2015, "Delving Deep into Rectifiers"). Initialises in place on the
    module's device and dtype (draws from torch's global generator); returns the module.

    Example: with ``gain = 1`` a wide layer preserves the squared norm on average.
        >>> _ = torch.manual_seed(0)
        >>> lin = init_weights_(torch.nn.Linear(1000, 1000))
        >>> w, b = lin.weight.detach(), lin.bias.detach()
        >>> round(float(w.pow(2).sum(1).mean()), 1), float(b.abs().max())
        (1.0, 0.0)
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            fan_in = m.weight[0].numel()
            with torch.no_grad():
                m.weight.normal_(0.0, gain / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.zero_()
    return module


def _positive(**kw: int | float) -> None:
    for k, v in kw.items():
        if v <= 0:
            raise ValueError(f"{k} must be positive, got {v}")


class ResidualBlock(nn.Module):
    """``h -> h + scale * branch(h)``: a near-identity factor when ``scale`` is small.

    Its Jacobian is ``I + scale * J_branch(h)``. Cost: one branch evaluation. Runs on the device
    and dtype of the branch's parameters.

    Example:
        >>> block = ResidualBlock(torch.nn.Linear(3, 3), scale=0.0)
        >>> torch.equal(block(torch.ones(2, 3)), torch.ones(2, 3))
        True
    """

    def __init__(self, branch: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.branch, self.scale = branch, float(scale)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.scale * self.branch(h)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class MLP(nn.Module):
    """Fully connected network ``in -> width x (depth-1) -> num_classes`` (``depth`` linear layers).

    Inputs of any shape are flattened. ``gain`` scales the Gaussian initialisation. Cost of a
    forward pass: ``O(N (in width + (depth-2) width^2 + width C))``. Created on the CPU in torch's default dtype; move it with ``.to(device, dtype)``.

    Example:
        >>> m = MLP(64, 10, width=32, depth=3)
        >>> m(torch.zeros(5, 1, 8, 8)).shape, sum(p.numel() for p in m.parameters())
        (torch.Size([5, 10]), 3466)
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        width: int = 64,
        depth: int = 3,
        activation: str = "relu",
        gain: float = 1.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _positive(in_features=in_features, num_classes=num_classes, width=width, depth=depth)
        dims = [in_features] + [width] * (depth - 1) + [num_classes]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b, bias=bias))
            if i < depth - 1:
                layers.append(globals()["activation"](activation))
        self.layers = nn.Sequential(*layers)
        init_weights_(self, gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    """``[conv3x3 -> act -> pool] x len(channels) -> flatten -> linear``.

    ``pool`` is ``"max"``, ``"avg"`` or ``None``; ``image_size`` is the input's height (= width).
    Created on the CPU in torch's default dtype; move it with ``.to(device, dtype)``.

    Example:
        >>> SmallCNN(1, 10, image_size=8, channels=(4,))(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        channels: Sequence[int] = (8, 16),
        activation: str = "relu",
        pool: str | None = "max",
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        _positive(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
        pools = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, None: None}
        if pool not in pools:
            raise ValueError(f"pool must be 'max', 'avg' or None, got {pool!r}")
        layers: list[nn.Module] = []
        c, size = in_channels, image_size
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, padding=1), globals()["activation"](activation)]
            if pool is not None:
                layers.append(pools[pool](2))
                size //= 2
            c = out
        layers += [nn.Flatten(), nn.Linear(c * size * size, num_classes)]
        self.layers = nn.Sequential(*layers)
        init_weights_(self, gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ResidualMLP(nn.Module):
    """Residual MLP: embed -> ``depth`` blocks ``h + scale * W act(h)`` -> linear read-out.

    With ``hidden`` set, each branch is ``W2 act(W1 act(h))``-style two-matrix
    (``act -> Linear(width, hidden) -> act -> Linear(hidden, width)``). Created on the CPU in torch's default dtype; move it with ``.to(device, dtype)``.

    Example:
        >>> m = ResidualMLP(64, 10, width=16, depth=4)
        >>> m(torch.zeros(3, 64)).shape, len(m.blocks)
        (torch.Size([3, 10]), 4)
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        width: int = 32,
        depth: int = 8,
        residual_scale: float = 0.1,
        activation: str = "tanh",
        hidden: int | None = None,
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        _positive(in_features=in_features, num_classes=num_classes, width=width, depth=depth)
        act = globals()["activation"]
        blocks = []
        for _ in range(depth):
            if hidden is None:
                branch = nn.Sequential(act(activation), nn.Linear(width, width))
            else:
                branch = nn.Sequential(
                    act(activation),
                    nn.Linear(width, hidden),
                    act(activation),
                    nn.Linear(hidden, width),
                )
            blocks.append(ResidualBlock(branch, residual_scale))
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, width), *blocks, nn.Linear(width, num_classes)
        )
        init_weights_(self, gain)

    @property
    def blocks(self) -> list[ResidualBlock]:
        return [m for m in self.layers if isinstance(m, ResidualBlock)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConvResNet(nn.Module):
    """Small conv ResNet: conv stem -> ``depth`` blocks ``h + scale * conv3x3(act(h))`` ->
    average pool -> linear. Created on the CPU in torch's default dtype; move it with ``.to(device, dtype)``.

    Example:
        >>> m = ConvResNet(1, 10, image_size=8, channels=4, depth=2, pool=4)
        >>> m(torch.zeros(2, 1, 8, 8)).shape, len(m.blocks)
        (torch.Size([2, 10]), 2)
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        channels: int = 8,
        depth: int = 4,
        residual_scale: float = 0.1,
        activation: str = "relu",
        pool: int = 4,
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        _positive(in_channels=in_channels, num_classes=num_classes, channels=channels, depth=depth)
        act = globals()["activation"]
        blocks = [
            ResidualBlock(
                nn.Sequential(act(activation), nn.Conv2d(channels, channels, 3, padding=1)),
                residual_scale,
            )
            for _ in range(depth)
        ]
        size = image_size // pool
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1),
            *blocks,
            nn.AvgPool2d(pool),
            nn.Flatten(),
            nn.Linear(channels * size * size, num_classes),
        )
        init_weights_(self, gain)

    @property
    def blocks(self) -> list[ResidualBlock]:
        return [m for m in self.layers if isinstance(m, ResidualBlock)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def build_model(name: str, input_shape: Sequence[int], num_classes: int, **kwargs) -> nn.Module:
    """A reference model by name (``mlp``, ``cnn``, ``resmlp``, ``resnet``) sized for the data.

    ``kwargs`` go to the model's constructor. Created on the CPU in torch's default dtype; move it with ``.to(device, dtype)``.

    Example:
        >>> type(build_model("cnn", (1, 8, 8), 10, channels=(4,))).__name__
        'SmallCNN'
    """
    shape = tuple(input_shape)
    if name not in ("mlp", "cnn", "resmlp", "resnet"):
        raise ValueError(f"unknown model {name!r}; choose one of mlp, cnn, resmlp, resnet")
    if name == "mlp":
        return MLP(math.prod(shape), num_classes, **kwargs)
    if name == "resmlp":
        return ResidualMLP(math.prod(shape), num_classes, **kwargs)
    if len(shape) != 3:
        raise ValueError(f"{name} needs (channels, height, width) inputs, got input_shape={shape}")
    if name == "cnn":
        return SmallCNN(shape[0], num_classes, image_size=shape[1], **kwargs)
    return ConvResNet(shape[0], num_classes, image_size=shape[1], **kwargs)
