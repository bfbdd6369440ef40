"""How attribution maps move under isotropic input noise: :func:`attribution_instability` and its
result :class:`AttributionInstability`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .._random import resolve_generator
from .._results import Result
from ._common import _check_inputs, _targets
from .frechet import _check_fd_method, frechet_distance, frechet_distance_bootstrap
from .methods import attribution
from .metrics import cosine_distance, relative_change, topk_overlap


@dataclass(frozen=True)
class AttributionInstability(Result):
    """Per-sample attribution instability at several noise scales (rows of each array: scales).

    ``delta_grad``, ``cosine_distance``, ``topk_overlap``, ``agreement`` (prediction unchanged):
    ``(S, N)`` means over ``num_draws`` draws of ``delta ~ N(0, s^2 I)``; ``fd``: ``(S,)`` Fréchet
    distance (see ``fd_squared``, ``fd_pca_dim``, ``fd_normalize``, ``fd_method``) between the clean attributions
    and the perturbed attributions of all draws pooled; ``fd_shape``: the same with every map
    normalised to unit L2 norm (insensitive to an overall shrinking of the maps). ``clean``
    ``(N, ...)`` and ``perturbed`` ``(S, N, ...)`` (first draw) are kept for pictures.
    ``fd_boot`` / ``fd_shape_boot``: ``(S, B)`` bootstrap replicates over points
    (:func:`frechet_distance_bootstrap`, ``fd_bootstrap=B``), ``None`` when not asked for.
    """

    scales: tuple[float, ...]
    method: str
    delta_grad: torch.Tensor
    cosine_distance: torch.Tensor
    topk_overlap: torch.Tensor
    agreement: torch.Tensor
    fd: torch.Tensor
    fd_shape: torch.Tensor
    clean: torch.Tensor = field(repr=False)
    perturbed: torch.Tensor = field(repr=False)
    fd_squared: bool = True
    fd_pca_dim: int | None = None
    fd_normalize: bool = False
    fd_method: str = "auto"
    fd_boot: torch.Tensor | None = field(default=None, repr=False)
    fd_shape_boot: torch.Tensor | None = field(default=None, repr=False)

    def summary(self) -> list[dict[str, float]]:
        """One row per scale: means over samples."""
        return [
            {
                "scale": s,
                "delta_grad": float(self.delta_grad[i].mean()),
                "cosine_distance": float(self.cosine_distance[i].mean()),
                "topk_overlap": float(self.topk_overlap[i].mean()),
                "agreement": float(self.agreement[i].mean()),
                "fd": float(self.fd[i]),
                "fd_shape": float(self.fd_shape[i]),
            }
            for i, s in enumerate(self.scales)
        ]

    def __repr__(self) -> str:
        rows = "; ".join(
            f"s={r['scale']:g}: Δgrad={r['delta_grad']:.3g}, cos-dist={r['cosine_distance']:.3g}, "
            f"top-k={r['topk_overlap']:.3g}, FD={r['fd']:.4g}"
            for r in self.summary()
        )
        return f"AttributionInstability(method={self.method!r}, n={self.clean.shape[0]}, {rows})"


def attribution_instability(
    model: nn.Module,
    x: torch.Tensor,
    scales: Sequence[float] = (0.01, 0.03, 0.1),
    *,
    num_draws: int = 8,
    method: str = "saliency",
    target: int | torch.Tensor | None = None,
    topk: int | float = 0.1,
    fd_pca_dim: int | None = None,
    fd_normalize: bool = False,
    fd_squared: bool = True,
    fd_method: str = "auto",
    fd_bootstrap: int = 0,
    bootstrap_seed: int = 0,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    **method_kwargs,
) -> AttributionInstability:
    """How attributions move under isotropic input noise ``delta ~ N(0, s^2 I)`` (pixel units).

    The class is fixed at the clean prediction (or ``target``) so that the perturbed map explains
    the same output. For every scale ``s``, all ``m = num_draws`` noisy copies of the batch are
    attributed in one batched call. Noise comes from ``generator`` or ``seed`` (default 0).
    Cost: ``1 + S * m`` attribution calls' worth of work on ``N`` samples, plus two Fréchet
    distances per scale, each exact and by default through the ``N x N m`` cross-Gram matrix of the
    two clouds (``fd_method="auto"``: ``O(N^2 m d)`` for ``d``-pixel maps, no ``d x d``
    covariance; ``fd_method="dense"`` forms it, ``O(d^3)``; see :func:`frechet_distance`). ``fd_bootstrap=B > 0`` adds ``B`` bootstrap replicates over points of both
    squared FDs (``bootstrap_seed`` seeds the index draws; see :func:`frechet_distance_bootstrap`).
    Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Example: a linear model's saliency does not move at all under noise.
        >>> lin = torch.nn.Linear(4, 3)
        >>> inst = attribution_instability(lin, torch.randn(6, 4), scales=(0.1,), num_draws=2)
        >>> float(inst.delta_grad.max()), float(inst.topk_overlap.min())
        (0.0, 1.0)
    """
    model, x = _check_inputs(model, x)
    _check_fd_method(fd_method)
    scales = tuple(float(s) for s in scales)
    if not scales or min(scales) < 0:
        raise ValueError(f"scales must be a non-empty list of non-negative numbers, got {scales}")
    if num_draws < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws}")
    t = _targets(model, x, target)
    g = resolve_generator(generator, seed, x.device)
    clean = attribution(model, x, method, t, **method_kwargs).detach()
    with torch.no_grad():
        pred = model(x).argmax(1)
    n = len(x)
    dg, cd, tk, ag, fds, fdn, first, boot, boot_n = [], [], [], [], [], [], [], [], []
    for s in scales:  # a handful of scales; every draw and sample is batched
        noise = torch.randn((num_draws, *x.shape), generator=g, device=x.device, dtype=x.dtype)
        xs = (x[None] + s * noise).reshape(num_draws * n, *x.shape[1:])
        pert = attribution(model, xs, method, t.repeat(num_draws), **method_kwargs).detach()
        with torch.no_grad():
            agree = (model(xs).argmax(1) == pred.repeat(num_draws)).to(x.dtype)
        rep = clean.repeat(num_draws, *([1] * (clean.dim() - 1)))
        dg.append(relative_change(rep, pert).view(num_draws, n).mean(0))
        cd.append(cosine_distance(rep, pert).view(num_draws, n).mean(0))
        tk.append(topk_overlap(rep, pert, topk).view(num_draws, n).mean(0))
        ag.append(agree.view(num_draws, n).mean(0))
        fds.append(
            frechet_distance(
                clean,
                pert,
                normalize=fd_normalize,
                pca_dim=fd_pca_dim,
                squared=fd_squared,
                method=fd_method,
            )
        )
        fdn.append(
            frechet_distance(
                clean,
                pert,
                normalize=True,
                pca_dim=fd_pca_dim,
                squared=fd_squared,
                method=fd_method,
            )
        )
        first.append(pert[:n])
        if fd_bootstrap > 0:
            pv = pert.view(num_draws, *clean.shape)
            kw = {"pca_dim": fd_pca_dim, "seed": bootstrap_seed, "method": fd_method}
            for norm, acc in ((fd_normalize, boot), (True, boot_n)):
                b = frechet_distance_bootstrap(clean, pv, fd_bootstrap, normalize=norm, **kw)
                acc.append(b if fd_squared else b.sqrt())
    return AttributionInstability(
        scales=scales,
        method=method,
        delta_grad=torch.stack(dg),
        cosine_distance=torch.stack(cd),
        topk_overlap=torch.stack(tk),
        agreement=torch.stack(ag),
        fd=torch.stack(fds),
        fd_shape=torch.stack(fdn),
        clean=clean,
        perturbed=torch.stack(first),
        fd_squared=fd_squared,
        fd_pca_dim=fd_pca_dim,
        fd_normalize=fd_normalize,
        fd_method=fd_method,
        fd_boot=torch.stack(boot) if boot else None,
        fd_shape_boot=torch.stack(boot_n) if boot_n else None,
    )
