"""Typical versus worst-case sensitivity: the entropy and norm bounds of chapters 01-02, and the
Schur-concavity helpers behind them. (The stability bounds of chapter 05 live in
``spectral_lab.stability``.)

Typical versus worst case. For an isotropic perturbation ``delta`` (``E delta = 0``,
``E delta delta^T = (eps^2/d) I_d``) and any ``J in R^{C x d}``::

    E ||J delta||^2 = (eps^2/d) ||J||_F^2 = (eps^2/d) sigma_1^2 srank(J)
                   <= (eps^2/d) sigma_1^2 exp(SE(J))  <= (eps^2/d) sigma_1^2 rank(J)
    sup_{||delta|| = eps} ||J delta||^2 = eps^2 sigma_1^2.

Here ``SE(J) = -sum_k p_k log p_k`` with ``p_k = sigma_k^2 / sum_j sigma_j^2`` (the energy
normalisation of :func:`spectral_lab.spectra.spectral_entropy`) and ``srank = ||J||_F^2/sigma_1^2``.
With ``K = sigma_1^2 / d`` this reads ``E ||f(x+delta) - f(x)||^2 <= K eps^2 exp(SE(J_f(x)))`` to
first order in ``eps`` (``O(eps^3)`` remainder for a C^2 network), the form in which "A Unified
Matrix-Spectral Framework for Stability and Interpretability in Deep Learning" (Katende 2026) states
that spectral entropy bounds typical sensitivity. Over a data set, ``E_x`` of the left side is at
most ``K eps^2 E_x exp(SE(J_f(x)))`` with ``K = max_x sigma_1(x)^2/d``. The constant ``K`` is this
library's (the step ``srank <= exp(SE)`` holds because ``-log p_1 <= SE``); it is stated and tested.

Worst-case forward bound: ``||J_f(x)||_2 <= prod_k ||F_k(x)||_2 <= prod_k sup ||F_k||`` for the
factors ``F_k`` of the network's operator product, see
:meth:`spectral_lab.operators.OperatorProduct.norm_bound` and :func:`norm_bounds`.

Schur-concavity (standard facts about majorisation): the entropy is Schur-concave, so moving energy
from a larger to a smaller singular value (a Robin-Hood transfer, a majorisation decrease) raises
``SE`` and can only lower the classical condition number; and ``SE >= log(1 + (r - 1)/kappa^2)``
for ``kappa = sigma_1/sigma_r``.

Example:
    >>> J = torch.diag(torch.tensor([2.0, 1.0, 1.0]))
    >>> b = sensitivity_bounds(J, eps=0.1)
    >>> round(float(b.typical), 6), round(float(b.worst_case), 6)
    (0.02, 0.04)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ._checks import check_tensor
from ._results import Result
from .spectra import singular_values, spectral_entropy

__all__ = [
    "NormBounds",
    "SensitivityBounds",
    "entropy_bound_constant",
    "entropy_lower_bound",
    "isotropic_perturbations",
    "majorizes",
    "mix_toward_uniform",
    "monte_carlo_sensitivity",
    "norm_bounds",
    "robin_hood_transfer",
    "sensitivity_bounds",
]


def _eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    return float(eps)


@dataclass(frozen=True)
class SensitivityBounds(Result):
    """Squared output changes for perturbations of size ``eps`` (fields are batch tensors).

    ``typical = (eps^2/d)||J||_F^2`` (exact mean for isotropic noise) ``<= entropy_bound =
    K eps^2 exp(SE)`` with ``K = sigma_1^2/d`` ``<= rank_bound = (eps^2/d) sigma_1^2 rank``;
    ``worst_case = eps^2 sigma_1^2``.
    """

    eps: float
    d: int
    typical: torch.Tensor
    entropy_bound: torch.Tensor
    rank_bound: torch.Tensor
    worst_case: torch.Tensor
    K: torch.Tensor

    def __repr__(self) -> str:
        def f(t):
            return f"{t.item():.4g}" if t.numel() == 1 else f"mean {t.double().mean().item():.4g}"

        return (
            f"SensitivityBounds(eps={self.eps:g}, d={self.d}, typical={f(self.typical)}, "
            f"entropy_bound={f(self.entropy_bound)}, rank_bound={f(self.rank_bound)}, "
            f"worst_case={f(self.worst_case)})"
        )

    def holds(self, rtol: float = 1e-6) -> torch.Tensor:
        """``typical <= entropy_bound <= rank_bound`` and ``typical <= worst_case`` (bool tensor)."""
        t, e, r, w = self.typical, self.entropy_bound, self.rank_bound, self.worst_case
        return (t <= e * (1 + rtol)) & (e <= r * (1 + rtol)) & (t <= w * (1 + rtol))


def sensitivity_bounds(J: torch.Tensor, eps: float) -> SensitivityBounds:
    """Typical, entropy-bound, rank-bound and worst-case squared sensitivities of ``J``
    ``(..., C, d)`` to perturbations of norm ``eps`` (formulas in the module docstring; SE in the
    energy normalisation ``p_k = sigma_k^2 / sum_j sigma_j^2``).

    Cost: one SVD per matrix. ``J`` is a Jacobian from :func:`spectral_lab.input_jacobian` or any
    matrix stack. Runs on the device and dtype of its input.

    Example: ``J = diag(2, 1, 1)``, ``eps = 0.1``: typical ``= 0.01 * 6 / 3``, worst ``= 0.01 * 4``.
        >>> b = sensitivity_bounds(torch.diag(torch.tensor([2.0, 1.0, 1.0])), eps=0.1)
        >>> round(float(b.typical), 6), round(float(b.worst_case), 6), bool(b.holds())
        (0.02, 0.04, True)
    """
    J = check_tensor(J, "J", min_dim=2)
    eps = _eps(eps)
    d = J.shape[-1]
    s = singular_values(J)
    s1sq = s[..., 0] ** 2
    se = spectral_entropy(s, kind="singular")
    rank = (s > max(J.shape[-2:]) * torch.finfo(s.dtype).eps * s[..., :1]).sum(-1)
    K = s1sq / d
    return SensitivityBounds(
        eps=eps,
        d=d,
        typical=eps**2 * (s**2).sum(-1) / d,
        entropy_bound=K * eps**2 * torch.exp(se),
        rank_bound=K * eps**2 * rank.to(s.dtype),
        worst_case=eps**2 * s1sq,
        K=K,
    )


def entropy_bound_constant(J: torch.Tensor) -> torch.Tensor:
    """``K = max_n sigma_1(J_n)^2 / d`` over a stack ``(N, C, d)``: the data-set constant with
    ``E_n (eps^2/d)||J_n||_F^2 <= K eps^2 E_n exp(SE(J_n))`` (the typical-sensitivity bound of the
    module docstring; this ``K`` is the library's).

    Cost: one SVD per matrix. Runs on the device and dtype of its input.

    Example:
        >>> J = torch.stack([torch.eye(2), 3 * torch.eye(2)])
        >>> float(entropy_bound_constant(J))
        4.5
    """
    J = check_tensor(J, "J", min_dim=2)
    return (singular_values(J)[..., 0] ** 2).max() / J.shape[-1]


def isotropic_perturbations(
    shape: tuple[int, ...] | torch.Size,
    eps: float,
    num_draws: int,
    distribution: str = "gaussian",
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``num_draws`` isotropic perturbations of inputs of ``shape``: ``(num_draws, *shape)``.

    ``"gaussian"``: ``N(0, (eps^2/d) I)`` (so ``E||delta||^2 = eps^2``); ``"sphere"``: uniform on the
    sphere of radius ``eps``. Both have ``E delta delta^T = (eps^2/d) I``. Drawn from ``generator``
    (default: torch's global generator) with the given ``dtype`` and ``device``.
    Cost: ``num_draws * d`` normal draws.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> d = isotropic_perturbations((3,), 0.5, 4, "sphere", generator=g)
        >>> d.shape, d.norm(dim=1).round(decimals=4).tolist()
        (torch.Size([4, 3]), [0.5, 0.5, 0.5, 0.5])
    """
    eps = _eps(eps)
    if distribution not in ("gaussian", "sphere"):
        raise ValueError(f"distribution must be 'gaussian' or 'sphere', got {distribution!r}")
    if int(num_draws) < 1:
        raise ValueError(f"num_draws must be >= 1, got {num_draws}")
    d = math.prod(shape)
    z = torch.randn(int(num_draws), d, generator=generator, dtype=dtype, device=device)
    if distribution == "sphere":
        z = eps * z / z.norm(dim=1, keepdim=True)
    else:
        z = z * (eps / math.sqrt(d))
    return z.reshape(int(num_draws), *shape)


def monte_carlo_sensitivity(
    f: nn.Module | torch.Tensor,
    x: torch.Tensor | None,
    eps: float,
    num_draws: int = 1000,
    distribution: str = "gaussian",
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte-Carlo estimate of ``E_delta ||f(x + delta) - f(x)||^2`` per sample: ``(N,)``.

    ``f`` is a model (then ``x`` is the ``(N, ...)`` batch) or a Jacobian stack ``J (N, C, d)``
    (then ``x`` is ignored and the linear change ``J delta`` is used). The same ``num_draws``
    perturbations (:func:`isotropic_perturbations`, from ``generator``) are used for every sample.
    Cost: ``N * num_draws`` forward passes, in batches of about 65,536. Runs on the device and dtype of the model's parameters; inputs are cast to them.
    A Jacobian stack stays on its own device and dtype.

    Example: for ``J = I_2`` the exact mean is ``(eps^2/d) ||J||_F^2 = eps^2 = 0.01``.
        >>> g = torch.Generator().manual_seed(0)
        >>> mc = monte_carlo_sensitivity(torch.eye(2)[None], None, 0.1, 20000, generator=g)
        >>> round(float(mc), 3)
        0.01
    """
    eps = _eps(eps)
    if isinstance(f, torch.Tensor):
        J = check_tensor(f, "J", min_dim=3)
        delta = isotropic_perturbations(
            (J.shape[-1],),
            eps,
            num_draws,
            distribution,
            generator=generator,
            dtype=J.dtype,
            device=J.device,
        )
        return torch.einsum("ncd,md->nmc", J, delta).pow(2).sum(-1).mean(1)
    from .prepared import prepare

    model, x = prepare(f, x).input_space(x)
    delta = isotropic_perturbations(
        tuple(x.shape[1:]),
        eps,
        num_draws,
        distribution,
        generator=generator,
        dtype=x.dtype,
        device=x.device,
    )
    m = delta.shape[0]
    per = max(1, 65536 // m)  # samples per batch of (samples x draws) forward passes
    out = []
    with torch.no_grad():
        f0 = model(x)
        for i in range(0, len(x), per):
            xs = (x[i : i + per, None] + delta[None]).reshape(-1, *x.shape[1:])
            fi = model(xs).reshape(-1, m, f0.shape[1])
            out.append((fi - f0[i : i + per, None]).pow(2).sum(-1).mean(1))
    return torch.cat(out)


@dataclass(frozen=True)
class NormBounds(Result):
    """The worst-case forward bound at one input: ``jacobian_norm <= product_at_x <= global_bound``
    (``||J_f(x)||_2 <= prod_k ||F_k(x)||_2 <= prod_k sup_x ||F_k||_2``); see :func:`norm_bounds`."""

    jacobian_norm: float
    product_at_x: float
    global_bound: float

    def holds(self, rtol: float = 1e-9) -> bool:
        """Both inequalities, up to a relative tolerance ``rtol``."""
        return self.jacobian_norm <= self.product_at_x * (
            1 + rtol
        ) and self.product_at_x <= self.global_bound * (1 + rtol)


def norm_bounds(op) -> NormBounds:
    """``||J_f(x)||_2``, ``prod_k ||F_k(x)||_2`` and ``prod_k sup_x ||F_k||_2`` for an
    :class:`~spectral_lab.operators.OperatorProduct`. For an MLP the last one is
    ``(sup|phi'|)^{L-1} prod_l ||W_l||_2``, a global Lipschitz constant of the network.

    Cost: one dense Jacobian and its SVD, plus one spectral norm per factor. Runs on the device and
    dtype of the operator product.

    Example:
        >>> from spectral_lab import MLP, operator_product
        >>> _ = torch.manual_seed(0)
        >>> nb = norm_bounds(operator_product(MLP(4, 3, width=8).eval(), torch.randn(4)))
        >>> nb.holds(), nb.jacobian_norm <= nb.global_bound
        (True, True)
    """
    j = op.dense()
    return NormBounds(
        jacobian_norm=float(torch.linalg.matrix_norm(j, ord=2)),
        product_at_x=op.norm_bound(),
        global_bound=op.sup_norm_bound(),
    )


# ---------------------------------------------------------------------------------------------
# Schur-concavity: majorisation, Robin-Hood transfers, flattening toward uniform


def majorizes(p: torch.Tensor, q: torch.Tensor, atol: float = 1e-12) -> bool:
    """Whether ``p`` majorises ``q`` (``p`` at least as concentrated): equal sums and every partial
    sum of the decreasingly sorted ``p`` is ``>=`` that of ``q``. Then ``H(p) <= H(q)``.

    Cost: two sorts, ``O(k log k)``.

    Example: a point mass majorises everything with the same sum, the uniform vector nothing else.
        >>> majorizes(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]))
        True
        >>> majorizes(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]))
        False
    """
    p = check_tensor(p, "p").flatten().sort(descending=True).values
    q = check_tensor(q, "q").flatten().sort(descending=True).values
    if p.shape != q.shape:
        raise ValueError(f"p and q need the same length, got {p.numel()} and {q.numel()}")
    cp, cq = p.cumsum(0), q.cumsum(0)
    return bool(abs(cp[-1] - cq[-1]) <= atol * max(1.0, float(cp[-1])) and (cp >= cq - atol).all())


def robin_hood_transfer(s: torch.Tensor, i: int, j: int, fraction: float) -> torch.Tensor:
    """Move ``fraction`` of the energy gap from singular value ``i`` to ``j`` (``s_i > s_j``),
    keeping ``||.||_F``: ``e_i -> e_i - t (e_i - e_j)/2``, ``e_j -> e_j + t (e_i - e_j)/2`` with
    ``e = s^2`` and ``t = fraction in [0, 1]`` (``t = 1`` equalises them). A T-transform: the new
    energy vector is majorised by the old one, so SE rises and ``sigma_1/sigma_r`` cannot grow.

    Cost: ``O(k log k)`` (a sort). Runs on the device and dtype of its input.

    Example: ``t = 1`` equalises energies 4 and 2 at 3.
        >>> (robin_hood_transfer(torch.tensor([2.0, 2 ** 0.5]), 0, 1, 1.0) ** 2).round(decimals=4).tolist()
        [3.0, 3.0]
    """
    s = check_tensor(s, "s", min_dim=1)
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    e = (s**2).clone()
    gap = (e[..., i] - e[..., j]) * fraction / 2
    e[..., i] -= gap
    e[..., j] += gap
    return e.sqrt().sort(-1, descending=True).values


def mix_toward_uniform(s: torch.Tensor, t: float) -> torch.Tensor:
    """Singular values whose energy distribution is ``(1 - t) p + t / k`` (same ``||.||_F``):
    ``t = 0`` gives ``s``, ``t = 1`` a flat spectrum. SE increases and the classical condition
    number decreases monotonically in ``t`` (for ``s`` without zeros).

    Cost: ``O(k)``. Runs on the device and dtype of its input.

    Example:
        >>> (mix_toward_uniform(torch.tensor([2.0, 0.0]), 1.0) ** 2).round(decimals=4).tolist()
        [2.0, 2.0]
    """
    s = check_tensor(s, "s", min_dim=1)
    if not 0 <= t <= 1:
        raise ValueError(f"t must lie in [0, 1], got {t}")
    e = s**2
    total = e.sum(-1, keepdim=True)
    p = (1 - t) * e / total + t / s.shape[-1]
    return (p * total).sqrt()


def entropy_lower_bound(kappa: torch.Tensor | float, r: int) -> torch.Tensor:
    """``SE_E2 >= -log max_k p_k >= log(1 + (r - 1)/kappa^2)`` for a rank-``r`` matrix with
    classical condition number ``kappa = sigma_1/sigma_r``: a well-conditioned matrix has high
    entropy (equality at ``kappa = 1``: ``log r``). Choice of statement, not from the paper.

    Cost: ``O(1)``; returns a float64 tensor on the CPU.

    Example: a perfectly conditioned rank-4 matrix has ``SE = log 4``.
        >>> bool(torch.isclose(entropy_lower_bound(1.0, 4), torch.tensor(4.0).log().double()))
        True
    """
    kappa = torch.as_tensor(kappa, dtype=torch.float64)
    return torch.log1p((r - 1) / kappa**2)
