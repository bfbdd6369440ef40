"""The quantities the training monitor records, each one call to the library's own operators.

Every function takes a :class:`~spectral_lab.Prepared` model (the one entrance) and the probe
batch, and returns plain floats (and, where a spectrum is worth a histogram, the spectrum):

* :func:`sharpness` -- ``lambda_max(H)`` of the loss Hessian on the probe, by Lanczos on
  :func:`~spectral_lab.hessian.hessian_operator`, started from ``v0`` (warm start);
* :func:`adam_preconditioner` and :func:`preconditioned_sharpness` -- ``lambda_max(P^{-1} H)``
  with Adam's own preconditioner (Cohen et al. 2022, "Adaptive Gradient Methods at the Edge of
  Stability");
* :func:`ntk_summary` -- the NTK Gram on the probe (:func:`~spectral_lab.ntk.ntk_gram`), its top
  eigenvalue, condition number and drift ``||K_t - K_0||_F / ||K_0||_F``;
* :func:`jacobian_summary` -- the input Jacobian's spectral entropy and ``sigma_1``
  (:func:`~spectral_lab.jacobians.input_jacobian`, :mod:`spectral_lab.spectra`);
* :func:`layer_summary` -- per weight matrix, its stable rank and the power-law exponent of its
  spectrum (:func:`~spectral_lab.spectra.stable_rank`, :func:`~spectral_lab.geometry.power_law_fit`).

Runs on the device and dtype of the model's parameters; inputs are cast to them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..hessian import hessian_operator
from ..jacobians import input_jacobian
from ..linalg import EigResult, LinearOperator, lanczos
from ..ntk import ntk_gram
from ..prepared import Prepared
from ..spectra import condition_number, singular_values, spectral_entropy, stable_rank

__all__ = [
    "adam_preconditioner",
    "adam_threshold",
    "hessian",
    "jacobian_singular_values",
    "jacobian_summary",
    "jacobian_values",
    "layer_summary",
    "ntk_summary",
    "preconditioned_sharpness",
    "sharpness",
]


def _trainable(prep: Prepared) -> list[nn.Parameter]:
    """The trainable parameters in the order of the flat vectors of :func:`hessian_operator`."""
    return [p for _, p in prep.model.named_parameters() if p.requires_grad]


def hessian(
    prep: Prepared,
    probe: tuple[torch.Tensor, torch.Tensor],
    route: str = "reverse",
    process_group: Any = False,
) -> LinearOperator:
    """The loss Hessian on ``probe`` (:func:`~spectral_lab.hessian.hessian_operator`), shared by
    :func:`sharpness` and :func:`preconditioned_sharpness`. ``route="reverse"`` (default) keeps
    the autograd graph of the gradient: after an optimiser step it is rebuilt in about one
    gradient's time, where the linearized recording of ``route="auto"`` costs several (0.03 s
    against 0.16 s on the course's CNN with 64 images, at the same 0.045 s per product) -- what a
    monitor pays at every measurement. Where the reverse route does not run, ``"auto"``.
    ``process_group``: ``False`` (default) this process's probe alone; a group: ``probe`` is this
    rank's shard and the operator is that of the concatenated probe (every rank falls back
    together: a failed setup raises on every rank)."""
    pg = {"process_group": process_group}
    try:
        return hessian_operator(prep, probe, loss=prep.loss, route=route, **pg)
    except (RuntimeError, NotImplementedError):
        if route == "auto":
            raise
        return hessian_operator(prep, probe, loss=prep.loss, route="auto", **pg)


def sharpness(
    H: LinearOperator,
    *,
    tol: float,
    max_iter: int | None,
    v0: torch.Tensor | None,
    generator: torch.Generator,
) -> EigResult:
    """``lambda_max(H)``: Lanczos (``k = 1``, residual test ``||H u - theta u|| <= tol |theta|``)
    started from ``v0`` (the previous measurement's top eigenvector; a random vector from
    ``generator`` when None). Cost: ``result.matvecs`` Hessian-vector products."""
    return lanczos(H, 1, tol=tol, max_iter=max_iter, v0=v0, generator=generator)


def adam_preconditioner(prep: Prepared, optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
    """Adam's preconditioner ``P`` (its diagonal, a flat parameter vector), or None when
    ``optimizer`` is not Adam-like or has not stepped yet.

    Adam's step is ``theta <- theta - eta P^{-1} m`` with ``m`` the exponential average of the
    gradients (``m_t = beta_1 m_{t-1} + (1 - beta_1) g_t``) and, after ``t`` steps,

        ``P = (1 - beta_1^t) (sqrt(v_t / (1 - beta_2^t)) + eps)``,

    the bias corrections of ``m`` and ``v`` (``v_t`` = ``exp_avg_sq``) folded in (Cohen et al.
    2022, "Adaptive Gradient Methods at the Edge of Stability", section 2). Read from
    ``optimizer.state`` (``exp_avg_sq``, ``step``) and the parameter group (``betas``, ``eps``):
    ``torch.optim.Adam`` and ``AdamW`` (its decoupled weight decay is not part of ``P``). A
    parameter the optimiser does not hold gets ``P = 1``. Cost: one pass over the state.
    """
    if optimizer is None:
        return None
    group_of = {}
    for group in optimizer.param_groups:
        if "betas" not in group or "eps" not in group:
            return None
        for p in group["params"]:
            group_of[p] = group
    parts, found = [], False
    for p in _trainable(prep):
        state = optimizer.state.get(p, {})
        if "exp_avg_sq" not in state or p not in group_of:
            parts.append(torch.ones(p.numel(), dtype=p.dtype, device=p.device))
            continue
        group = group_of[p]
        b1, b2 = group["betas"]
        t = float(state["step"])
        if t < 1:
            parts.append(torch.ones(p.numel(), dtype=p.dtype, device=p.device))
            continue
        found = True
        v_hat = state["exp_avg_sq"].detach().reshape(-1) / (1.0 - b2**t)
        parts.append(((1.0 - b1**t) * (v_hat.sqrt() + group["eps"])).to(p.dtype))
    return torch.cat(parts) if found else None


def adam_threshold(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """The stability threshold of the preconditioned sharpness for Adam,
    ``(2 + 2 beta_1) / ((1 - beta_1) eta)`` (``38/eta`` for ``beta_1 = 0.9``): the largest
    ``lambda(P^{-1} H)`` for which heavy-ball momentum in EMA form is stable on a quadratic
    (Cohen et al. 2022, "Adaptive Gradient Methods at the Edge of Stability")."""
    b1 = optimizer.param_groups[0]["betas"][0]
    return (2.0 + 2.0 * b1) / ((1.0 - b1) * lr)


def preconditioned_sharpness(
    H: LinearOperator,
    P: torch.Tensor,
    *,
    tol: float,
    max_iter: int | None,
    v0: torch.Tensor | None,
    generator: torch.Generator,
) -> EigResult:
    """``lambda_max(P^{-1} H)`` for a positive diagonal preconditioner ``P`` (a flat vector):
    the same eigenvalues as the symmetric ``P^{-1/2} H P^{-1/2}``, on which Lanczos runs
    (warm-started from ``v0``). Cost: ``result.matvecs`` Hessian-vector products."""
    d = P.rsqrt()

    def mv(v: torch.Tensor) -> torch.Tensor:
        return d * H.mv(d * v)

    def mm(V: torch.Tensor) -> torch.Tensor:
        return d[:, None] * H.mm(d[:, None] * V)

    op = LinearOperator(mv, H.dim, H.dtype, H.device, matmat=mm, name="P^-1/2 H P^-1/2")
    op.route = H.route
    return lanczos(op, 1, tol=tol, max_iter=max_iter, v0=v0, generator=generator)


def ntk_summary(
    prep: Prepared, x: torch.Tensor, K0: torch.Tensor | None
) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """The scalar NTK Gram ``K`` on ``x`` (:func:`~spectral_lab.ntk.ntk_gram`) and
    ``{"ntk_top": lambda_max(K), "ntk_cond": lambda_max/lambda_min, "ntk_drift":
    ||K - K0||_F / ||K0||_F}`` (drift 0 when ``K0`` is None: this is the first). Returns
    ``(values, K, eigenvalues descending)``. Cost: ``len(x) C`` backward passes (the Gram) plus
    an ``n x n`` eigendecomposition."""
    K = ntk_gram(prep, x).double()
    K = 0.5 * (K + K.T)
    eig = torch.linalg.eigvalsh(K).flip(0)
    cond = float(condition_number(K))  # K is PSD: its singular values are its eigenvalues
    drift = 0.0 if K0 is None else float(torch.linalg.norm(K - K0) / torch.linalg.norm(K0))
    return {"ntk_top": float(eig[0]), "ntk_cond": cond, "ntk_drift": drift}, K, eig


def jacobian_summary(prep: Prepared, x: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    """Per probe sample the input Jacobian ``J_f(x_n)`` (``C x d``), its spectral entropy
    ``-sum_k p_k log p_k`` (``p_k = sigma_k^2 / sum sigma^2``, nats) and ``sigma_1``; returns
    ``{"jac_entropy": mean entropy, "jac_top": mean sigma_1}`` and the singular values
    ``(N, min(C, d))``. Cost: ``C`` backward passes over ``x`` plus ``N`` small SVDs."""
    s = jacobian_singular_values(prep, x)
    return jacobian_values(s), s


def jacobian_singular_values(prep: Prepared, x: torch.Tensor) -> torch.Tensor:
    """The singular values ``(N, min(C, d))`` of the input Jacobian of each sample of ``x``."""
    return singular_values(input_jacobian(prep, x))


def jacobian_values(s: torch.Tensor) -> dict[str, float]:
    """``{"jac_entropy": mean spectral entropy, "jac_top": mean sigma_1}`` of per-sample singular
    values ``s`` (``(N, k)``, descending)."""
    ent = spectral_entropy(s, kind="singular")
    return {"jac_entropy": float(ent.mean()), "jac_top": float(s[:, 0].mean())}


def weight_matrices(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{module name: W}`` for every module with a weight of two or more dimensions (linear and
    convolutional layers; a convolution's ``(out, in, k, k)`` kernel read as ``out x (in k k)``)."""
    out = {}
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and w.dim() >= 2 and not isinstance(m, nn.Embedding):
            out[name or type(m).__name__] = w.detach().flatten(1)
    return out


def layer_summary(model: nn.Module) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Per weight matrix ``W`` (:func:`weight_matrices`): ``stable_rank/<layer>`` =
    ``||W||_F^2 / ||W||_2^2`` and ``alpha/<layer>``, the exponent of the power law
    ``lambda_k ~ k^{-alpha}`` fitted to the eigenvalues ``sigma_k^2`` of ``W^T W``
    (:func:`~spectral_lab.geometry.power_law_fit`, the maximum-likelihood chart; NaN for fewer
    than three nonzero singular values). Returns the values and the singular values by layer.
    Cost: one SVD per layer plus the fit."""
    from ..geometry import power_law_fit  # SciPy: imported on first use, as sl.geometry is

    values, spectra = {}, {}
    for name, W in weight_matrices(model).items():
        s = singular_values(W.double())
        spectra[name] = s
        values[f"stable_rank/{name}"] = float(stable_rank(s, kind="singular"))
        try:
            values[f"alpha/{name}"] = float(power_law_fit(s.cpu(), kind="singular").alpha)
        except ValueError:
            values[f"alpha/{name}"] = math.nan
    return values, spectra
