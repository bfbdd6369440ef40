"""The Matrix Stability Profile, the Global Matrix Stability Index and its consequences as bounds.

Spec: ``unified-matrix-spectral.md`` sections 5 and 6, and Definition 4.1 / Theorem 4.2 of the paper
as carried by the seed summary: the index takes the spectral norms of four operators -- the input
Jacobian ``J_f(x)``, the parameter Jacobian ``J_theta(x)``, the NTK Gram ``K`` and the loss Hessian
``H`` -- with a *supremum over the data*; high quantiles (e.g. the 95th percentile) are the robust
alternative for empirical diagnostics.

The paper's exact formula could not be read. What is implemented here is the spec's recommended
construction (section 5.2), a **choice, not from the paper**, kept behind :func:`stability_index`
(``agg=`` and ``weights=`` swap it out; any callable works)::

    Gamma_q = max{ Q_q sigma_1(J_f(x_i)),  Q_q sigma_1(J_theta(x_i)),
                   sqrt(lambda_max(K) / n),  sqrt(max(lambda_max(H), 0)) }

Every term is on the same "Lipschitz" scale (a gain per unit of perturbation), so with ``q = 1`` the
single number ``Gamma`` gives, on the sample and to first order (Theorem 4.2 / spec 6.8):

* forward sensitivity      ``||f(x + delta) - f(x)||       <~ Gamma ||delta||``
* parameter sensitivity    ``||f_{theta+Delta}(x) - f(x)|| <~ Gamma ||Delta||``
* attribution change       ``||a(x') - a(x)||              <= 2 Gamma``  (``||a(x)|| <= sigma_1(J_f(x))``)
* NTK conditioning         ``kappa(K) <= Gamma^2 / (lambda_min(K) / n)``
* stable step size         ``eta < 2 / Gamma^2 <= 2 / lambda_max(H)``

Two of these hold **by construction** and are no evidence about a model: the attribution bound
``2 Gamma`` is the triangle inequality (``||a|| <= sigma_1(J_f) <= Gamma`` at both points), and the
NTK bound is an identity whenever the NTK term sets ``Gamma`` (otherwise ``Gamma^2 >= lambda_max(K)/n``
by the max). The forward and parameter bounds measured at a tiny perturbation along the worst
direction only re-test that ``sigma_1`` is not under-estimated. The consequences that *can* fail are
checked separately: the curvature form ``min(2 Gamma, M eps)`` of the attribution bound, with ``M``
the largest singular value of the logit's input Hessian measured along the segment
(:func:`check_attribution_curvature`), and the certified step ``2 / Gamma^2`` against the measured
divergence threshold of full-batch gradient descent (:func:`measure_max_stable_lr`).
``BY_CONSTRUCTION`` names the keys of :class:`ConsequenceCheck` that cannot fail.

The index uses the **scalar** NTK ``K_ij = tr J_theta(x_i) J_theta(x_j)^T`` (``n x n``); the block
NTK ``K~`` (``nC x nC``) is what governs multi-output training dynamics (``ntk_kind="block"``).

The bound functions below return those right-hand sides; the ``measure_*`` functions measure the
left-hand sides on a model, so a chapter (or a test) can put one against the other.

Example:
    >>> from spectral_lab import MLP
    >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> prof = stability_profile(MLP(4, 3, width=16), (x, y))
    >>> idx = stability_index(prof)
    >>> idx.value >= idx.terms["input_jacobian"]
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ._checks import check_logits, check_model, check_tensor
from ._data import iter_batches
from ._losses import resolve_loss
from .bounds import isotropic_perturbations

OPERATORS = ("input_jacobian", "parameter_jacobian", "ntk", "hessian")
BY_CONSTRUCTION = {
    "attribution": "triangle inequality: ||a(x)|| <= sigma_1(J_f(x)) <= Gamma at both points",
    "ntk_condition": "identity when the NTK term sets Gamma; otherwise Gamma^2 >= lambda_max(K)/n "
    "by the max",
}
"""Consequences of :class:`ConsequenceCheck` that hold for every model by construction (no evidence)."""
AGGREGATIONS = ("max", "geomean")
LOSSES = ("cross_entropy", "mse")
_SAMPLE_KEYS = ("jac_top", "jac_fro", "jac_entropy", "param_top")

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- helpers
def quantile(values: torch.Tensor, q: float) -> float:
    """Empirical ``q``-quantile ``Q_q`` of a 1-D tensor; ``q = 1`` is the maximum (supremum).

    Uses the "higher" rule (an actual sample value, so at least a fraction ``q`` of the samples lie
    at or below it); a choice, not from the paper.
    """
    _check_q(q)
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise ValueError("cannot take a quantile of no values")
    if q >= 1.0:
        return float(v.max())
    return float(torch.quantile(v, q, interpolation="higher"))


def _check_q(q: float) -> float:
    if not isinstance(q, (int, float)) or not 0.0 < float(q) <= 1.0:
        raise ValueError(f"q must be a quantile level in (0, 1] (1 = supremum), got {q!r}")
    return float(q)


def _loss_fn(loss: str | LossFn) -> LossFn:
    return resolve_loss(loss)


# --------------------------------------------------------------------------- the profile
@dataclass(frozen=True, repr=False)
class StabilityProfile:
    """The Matrix Stability Profile (spec 5.1): per-operator spectral statistics of a model on data.

    Per-sample statistics (kept in ``samples`` for plots, CPU float64, one value per sample):
    ``jac_top = sigma_1(J_f(x_i))``, ``jac_fro = ||J_f(x_i)||_F / sqrt(C)``,
    ``jac_entropy = SE(J_f(x_i))`` (energy normalisation, base ``entropy_base``) and
    ``param_top = sigma_1(J_theta(x_i))``. Aggregates: ``Q_q`` of ``jac_top``, ``param_top`` and
    ``jac_entropy`` (``jac_entropy_q``), the mean of ``jac_fro`` and ``jac_entropy``.
    Data-set operators (on the first ``n_ntk`` / ``n_hess`` samples): ``ntk_top = lambda_max(K)/n``,
    ``ntk_min = lambda_min(K)/n``, ``ntk_entropy = SE(K)`` and ``hess_top = lambda_max(H)``.
    Operators that were not computed are ``None``. :meth:`with_q` re-aggregates at another quantile
    without recomputing anything.
    """

    q: float
    n: int
    num_classes: int
    num_params: int
    input_dim: int
    jac_top: float
    jac_fro: float
    jac_entropy: float
    jac_entropy_q: float
    param_top: float | None
    ntk_top: float | None
    ntk_min: float | None
    ntk_entropy: float | None
    hess_top: float | None
    n_ntk: int
    n_hess: int
    samples: Mapping[str, torch.Tensor] = field(default_factory=dict)
    settings: Mapping[str, object] = field(default_factory=dict)

    @property
    def ntk_condition(self) -> float | None:
        """``kappa(K) = lambda_max(K) / lambda_min(K)`` (``inf`` when ``K`` is singular)."""
        if self.ntk_top is None or self.ntk_min is None:
            return None
        return self.ntk_top / self.ntk_min if self.ntk_min > 0 else math.inf

    def with_q(self, q: float) -> StabilityProfile:
        """The same profile aggregated at quantile ``q`` (per-sample values are reused)."""
        q = _check_q(q)
        s = self.samples
        return replace(
            self,
            q=q,
            jac_top=quantile(s["jac_top"], q),
            jac_entropy_q=quantile(s["jac_entropy"], q),
            param_top=None if "param_top" not in s else quantile(s["param_top"], q),
        )

    def to_dict(self, samples: bool = False) -> dict:
        """Plain-Python summary (JSON-ready); ``samples=True`` adds the per-sample lists."""
        out = {
            k: getattr(self, k)
            for k in (
                "q", "n", "num_classes", "num_params", "input_dim", "jac_top", "jac_fro",
                "jac_entropy", "jac_entropy_q", "param_top", "ntk_top", "ntk_min", "ntk_entropy",
                "hess_top", "n_ntk", "n_hess",
            )
        }  # fmt: skip
        out["ntk_condition"] = self.ntk_condition
        out["settings"] = dict(self.settings)
        if samples:
            out["samples"] = {k: v.tolist() for k, v in self.samples.items()}
        return out

    def __repr__(self) -> str:
        def f(v):
            return "-" if v is None else f"{v:.4g}"

        return (
            f"StabilityProfile(q={self.q:g}, n={self.n}, C={self.num_classes}, p={self.num_params}; "
            f"Q_q sigma1(J_f)={f(self.jac_top)}, mean ||J_f||_F/sqrt(C)={f(self.jac_fro)}, "
            f"mean SE(J_f)={f(self.jac_entropy)}, Q_q sigma1(J_theta)={f(self.param_top)}, "
            f"lambda_max(K)/n={f(self.ntk_top)}, lambda_min(K)/n={f(self.ntk_min)} "
            f"[n_ntk={self.n_ntk}], lambda_max(H)={f(self.hess_top)} [n_hess={self.n_hess}])"
        )


def _entropy(s: torch.Tensor, base: float) -> torch.Tensor:
    from .spectra import spectral_entropy

    return spectral_entropy(s, "energy", base=base, kind="singular")


def _param_top(model: nn.Module, x: torch.Tensor, budget: int) -> torch.Tensor:
    """``sigma_1(J_theta(x_i))`` per sample via the ``C x C`` per-sample Gram ``J J^T``."""
    from .jacobians import parameter_jacobian

    p = sum(t.numel() for t in model.parameters() if t.requires_grad)
    c = check_logits(model(x[:1])).shape[1]
    chunk = max(1, budget // max(1, c * p))
    out = []
    for i in range(0, len(x), chunk):
        j = parameter_jacobian(model, x[i : i + chunk]).detach()
        g = j @ j.transpose(1, 2)
        out.append(torch.linalg.eigvalsh(g.double())[:, -1].clamp_min(0).sqrt())
    return torch.cat(out)


def _ntk_spectrum(model: nn.Module, x: torch.Tensor, kind: str = "scalar") -> torch.Tensor:
    """All eigenvalues of the scalar (``n x n``) or block (``nC x nC``) NTK Gram on ``x``."""
    from .ntk import block_to_matrix, ntk_gram

    k = ntk_gram(model, x, kind=kind).detach().double()
    if kind == "block":
        k = block_to_matrix(k)
    return torch.linalg.eigvalsh(0.5 * (k + k.T))


def _hess_top(model, loss_fn, x, y, steps: int, seed: int) -> tuple[float, bool, int]:
    from .hessian import hessian_eigs

    res = hessian_eigs(model, (x, y), loss=loss_fn, k=1, max_iter=steps, seed=seed)
    return float(res.eigenvalues[0]), bool(res.converged), int(res.matvecs)


@torch.no_grad()
def _predict(model, x):
    return model(x)


def stability_profile(
    model: nn.Module,
    data,
    q: float = 1.0,
    *,
    loss: str | LossFn = "cross_entropy",
    operators: Sequence[str] = OPERATORS,
    max_samples: int | None = None,
    ntk_samples: int = 256,
    ntk_kind: str = "scalar",
    hessian_samples: int = 512,
    lanczos_steps: int = 30,
    entropy_base: float = math.e,
    batch_size: int = 256,
    memory_budget: int = 2**24,
    seed: int = 0,
    progress: bool = False,
) -> StabilityProfile:
    """The Matrix Stability Profile of ``model`` on ``data`` (spec 5.1), aggregated with ``Q_q``.

    Args:
        data: inputs ``x`` (a tensor; labels are then the model's own predictions), ``(x, y)``,
            an ``ArrayDataset``/``Dataset`` or a ``DataLoader`` (streamed batch by batch).
        q: quantile level over samples; ``1`` is the supremum (worst case, what the bounds need),
            ``0.95`` the robust variant the paper names for empirical diagnostics.
        loss: ``"cross_entropy"`` (integer labels), ``"mse"`` (``1/2 ||f - y||^2`` per sample,
            averaged) or a callable ``loss(logits, y) -> scalar`` (mean over the batch).
        operators: which of ``input_jacobian``, ``parameter_jacobian``, ``ntk``, ``hessian`` to
            compute (the others are ``None``).
        max_samples: cap on the samples streamed for the per-sample statistics.
        ntk_kind: ``"scalar"`` (default, the spec's reported NTK: ``K_ij = tr J_i J_j^T``) or
            ``"block"`` (the ``nC x nC`` NTK that drives linearised dynamics; its
            ``lambda_max / n`` is at most ``max_i sigma_1(J_theta(x_i))^2``, whereas the scalar
            one can exceed that by up to a factor ``C``). A choice, not from the paper.
        ntk_samples, hessian_samples: the NTK Gram (dense, ``n x n``) and the Hessian (matrix-free,
            Lanczos) use the first ``ntk_samples`` / ``hessian_samples`` streamed samples.
        lanczos_steps: cap on Lanczos iterations (= Hessian-vector products) for
            ``lambda_max(H)``; Lanczos stops earlier once the Ritz residual is below 1e-6
            relative. Ritz values never exceed ``lambda_max``, so an unconverged run
            *under*-estimates it (a warning is issued; ``settings["hessian_converged"]``).
        entropy_base: log base of the spectral entropy (``math.e`` nats, ``2`` bits).
        memory_budget: elements of per-sample parameter Jacobians held at once (sets the chunk).
        progress: show a progress bar over batches.

    Cost: per sample ``C`` backward passes (input Jacobian) and one ``C x p`` parameter Jacobian;
    ``O(n_ntk^2 p)`` for the Gram; ``lanczos_steps`` Hessian-vector products over ``n_hess``
    samples. Nothing of size ``p x p`` is formed.
    """
    check_model(model)
    q = _check_q(q)
    unknown = set(operators) - set(OPERATORS)
    if unknown or "input_jacobian" not in operators:
        raise ValueError(
            f"operators must include 'input_jacobian' and be drawn from {OPERATORS}; got "
            f"{tuple(operators)}"
        )
    if ntk_kind not in ("scalar", "block"):
        raise ValueError(f"ntk_kind must be 'scalar' or 'block', got {ntk_kind!r}")
    if ntk_samples < 2 or hessian_samples < 1 or lanczos_steps < 1:
        raise ValueError(
            "need ntk_samples >= 2, hessian_samples >= 1 and lanczos_steps >= 1; got "
            f"{ntk_samples}, {hessian_samples}, {lanczos_steps}"
        )
    loss_fn = _loss_fn(loss)
    from tqdm.auto import tqdm

    from .jacobians import input_jacobian
    from .spectra import singular_values

    p0 = next(model.parameters())
    device, dtype = p0.device, p0.dtype
    per: dict[str, list[torch.Tensor]] = {k: [] for k in _SAMPLE_KEYS}
    keep_x: list[torch.Tensor] = []
    keep_y: list[torch.Tensor] = []
    kept = 0
    labels_given = True
    n_keep = max(
        ntk_samples if "ntk" in operators else 0, hessian_samples if "hessian" in operators else 0
    )
    num_classes = input_dim = 0
    total = None
    if max_samples is not None:
        total = max_samples
    elif hasattr(data, "__len__") and not isinstance(data, tuple):
        total = len(data.dataset) if isinstance(data, DataLoader) else len(data)
    bar = tqdm(
        total=total, desc="stability profile", unit="sample", disable=not progress, leave=False
    )
    p = sum(t.numel() for t in model.parameters() if t.requires_grad)
    for x, y in iter_batches(data, batch_size, max_samples, device, dtype):
        check_tensor(x, "data inputs", min_dim=2)
        J = input_jacobian(model, x).detach()
        num_classes, input_dim = J.shape[1], J.shape[2]
        s = singular_values(J).double()
        per["jac_top"].append(s[:, 0].cpu())
        per["jac_fro"].append((s.square().sum(1).sqrt() / math.sqrt(num_classes)).cpu())
        per["jac_entropy"].append(_entropy(s, entropy_base).double().cpu())
        if "parameter_jacobian" in operators:
            per["param_top"].append(_param_top(model, x, memory_budget).cpu())
        if kept < n_keep:
            take = min(len(x), n_keep - kept)
            keep_x.append(x[:take].detach())
            if y is None:
                labels_given = False
                out = _predict(model, x[:take])
                keep_y.append(out if loss == "mse" else out.argmax(1))
            else:
                keep_y.append(y[:take])
            kept += take
        bar.update(len(x))
    bar.close()
    if not per["jac_top"]:
        raise ValueError("data is empty; pass at least one sample")
    samples = {k: torch.cat(v) for k, v in per.items() if v}
    n = len(samples["jac_top"])

    ntk_top = ntk_min = ntk_entropy = None
    n_ntk = n_hess = 0
    hess_top = None
    hess_converged, hess_matvecs = None, 0
    if keep_x:
        xs, ys = torch.cat(keep_x), torch.cat(keep_y)
        if "ntk" in operators:
            if len(xs) < 2:
                warnings.warn("the NTK needs at least 2 samples; skipped", stacklevel=2)
            else:
                n_ntk = min(ntk_samples, len(xs))
                lam = _ntk_spectrum(model, xs[:n_ntk], ntk_kind)
                ntk_top = float(lam[-1]) / n_ntk
                ntk_min = max(float(lam[0]), 0.0) / n_ntk
                ntk_entropy = float(_entropy(lam.clamp_min(0).sqrt(), entropy_base))
        if "hessian" in operators:
            n_hess = min(hessian_samples, len(xs))
            hess_top, hess_converged, hess_matvecs = _hess_top(
                model, loss_fn, xs[:n_hess], ys[:n_hess], lanczos_steps, seed
            )
            if not hess_converged:
                warnings.warn(
                    f"Lanczos did not converge in lanczos_steps={lanczos_steps} products; "
                    "lambda_max(H) is a lower estimate (Ritz values never exceed it): raise "
                    "lanczos_steps for a safe step-size bound",
                    stacklevel=2,
                )

    def agg(key):
        return quantile(samples[key], q) if key in samples else None

    return StabilityProfile(
        q=q,
        n=n,
        num_classes=num_classes,
        num_params=p,
        input_dim=input_dim,
        jac_top=agg("jac_top"),
        jac_fro=float(samples["jac_fro"].mean()),
        jac_entropy=float(samples["jac_entropy"].mean()),
        jac_entropy_q=agg("jac_entropy"),
        param_top=agg("param_top"),
        ntk_top=ntk_top,
        ntk_min=ntk_min,
        ntk_entropy=ntk_entropy,
        hess_top=hess_top,
        n_ntk=n_ntk,
        n_hess=n_hess,
        samples=samples,
        settings={
            "entropy_base": entropy_base,
            "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "custom"),
            "lanczos_steps": lanczos_steps,
            "hessian_converged": hess_converged,
            "hessian_matvecs": hess_matvecs,
            "ntk": "scalar (trace over outputs)" if ntk_kind == "scalar" else "block (nC x nC)",
            "quantile_rule": "higher",
            "labels": "given" if labels_given else "predicted by the model",
        },
    )


# --------------------------------------------------------------------------- the index
@dataclass(frozen=True, repr=False)
class StabilityIndex:
    """The Global Matrix Stability Index ``Gamma_q`` and the per-operator terms it pools.

    ``terms`` are on a common gain scale: ``input_jacobian = Q_q sigma_1(J_f)``,
    ``parameter_jacobian = Q_q sigma_1(J_theta)``, ``ntk = sqrt(lambda_max(K)/n)``,
    ``hessian = sqrt(max(lambda_max(H), 0))``. ``value = agg(weights * terms)``.
    """

    value: float
    terms: Mapping[str, float]
    weights: Mapping[str, float]
    agg: str
    q: float

    @property
    def dominant(self) -> str:
        """The operator whose weighted term is largest (the one that sets ``Gamma`` under max)."""
        return max(self.terms, key=lambda k: self.weights.get(k, 1.0) * self.terms[k])

    def dominates(self, operator: str) -> bool:
        """Whether ``Gamma >= term[operator]``, i.e. whether the single index bounds that operator."""
        return operator in self.terms and self.value >= self.terms[operator] * (1 - 1e-12)

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "terms": dict(self.terms),
            "weights": dict(self.weights),
            "agg": self.agg,
            "q": self.q,
            "dominant": self.dominant,
        }

    def __repr__(self) -> str:
        terms = ", ".join(f"{k}={v:.4g}" for k, v in self.terms.items())
        return (
            f"StabilityIndex(Gamma={self.value:.4g}, agg={self.agg!r}, q={self.q:g}, "
            f"dominant={self.dominant!r}; {terms})"
        )


def index_terms(profile: StabilityProfile) -> dict[str, float]:
    """The four operator terms of spec 5.2 on a common gain scale (missing operators left out)."""
    terms = {"input_jacobian": profile.jac_top}
    if profile.param_top is not None:
        terms["parameter_jacobian"] = profile.param_top
    if profile.ntk_top is not None:
        terms["ntk"] = math.sqrt(max(profile.ntk_top, 0.0))
    if profile.hess_top is not None:
        terms["hessian"] = math.sqrt(max(profile.hess_top, 0.0))
    return terms


def stability_index(
    profile: StabilityProfile,
    weights: Mapping[str, float] | None = None,
    agg: str | Callable[[Mapping[str, float]], float] = "max",
) -> StabilityIndex:
    """The Global Matrix Stability Index from a profile (spec 5.2; a choice, not from the paper).

    ``Gamma_q = agg_op( w_op * term_op )`` over the operators present in ``profile``, with the
    terms of :func:`index_terms`. ``agg="max"`` (default) is the construction for which every
    consequence in this module holds with the single constant ``Gamma`` (when all ``w_op >= 1``);
    ``agg="geomean"`` is the weighted geometric mean ``exp(sum w log t / sum w)``, a typical scale
    that does **not** dominate the largest term; any callable ``agg(weighted_terms) -> float`` can
    be swapped in (e.g. the paper's formula, once known).

    Cost: none beyond the profile. Example: ``stability_index(prof, agg="geomean").value``.
    """
    if not isinstance(profile, StabilityProfile):
        raise TypeError(f"profile must be a StabilityProfile, got {type(profile).__name__}")
    terms = index_terms(profile)
    w = {k: 1.0 for k in terms}
    if weights is not None:
        bad = set(weights) - set(OPERATORS)
        if bad:
            raise ValueError(f"weights has unknown operator(s) {sorted(bad)}; use {OPERATORS}")
        for k, v in weights.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"weights[{k!r}] must be a finite number >= 0, got {v!r}")
            if k in terms:
                w[k] = float(v)
    if callable(agg):
        value, name = (
            float(agg({k: w[k] * t for k, t in terms.items()})),
            getattr(agg, "__name__", "custom"),
        )
    elif agg == "max":
        value, name = max(w[k] * t for k, t in terms.items()), "max"
    elif agg == "geomean":
        active = {k: t for k, t in terms.items() if w[k] > 0}
        if not active or any(t <= 0 for t in active.values()):
            raise ValueError("geomean needs positive terms with positive weights")
        ws = sum(w[k] for k in active)
        value = math.exp(sum(w[k] * math.log(t) for k, t in active.items()) / ws)
        name = "geomean"
    else:
        raise ValueError(f"agg must be one of {AGGREGATIONS} or a callable, got {agg!r}")
    return StabilityIndex(value=float(value), terms=terms, weights=w, agg=name, q=profile.q)


# --------------------------------------------------------------------------- bounds (Theorem 4.2)
def _scale(index: StabilityIndex | float, operator: str, scale: str) -> float:
    if isinstance(index, (int, float)):
        if not (math.isfinite(index) and index >= 0):
            raise ValueError(f"index must be a finite number >= 0, got {index!r}")
        return float(index)
    if not isinstance(index, StabilityIndex):
        raise TypeError(f"index must be a StabilityIndex or a number, got {type(index).__name__}")
    if scale == "operator":
        if operator not in index.terms:
            raise ValueError(f"the profile behind this index has no {operator!r} term")
        return index.terms[operator]
    if scale != "index":
        raise ValueError(f"scale must be 'index' or 'operator', got {scale!r}")
    if operator in index.terms and not index.dominates(operator):
        raise ValueError(
            f"this index (agg={index.agg!r}) is smaller than its {operator!r} term, so the bound "
            "would not hold; use agg='max' with weights >= 1, or scale='operator'"
        )
    return index.value


def forward_sensitivity_bound(
    index: StabilityIndex | float, eps: float | torch.Tensor, scale: str = "index"
):
    """``||f(x + delta) - f(x)|| <= Gamma * eps`` for ``||delta|| <= eps`` at sample points, to
    first order (Theorem 4.2 (i); spec 6.2, 6.8). Exact for linear networks; for ReLU networks
    exact while no unit flips on the segment. ``scale="operator"`` uses ``Q_q sigma_1(J_f)``
    itself (the tightest the profile allows). With ``q < 1`` it holds on a fraction ``q`` of samples.
    Measured at a tiny ``eps`` along the worst direction the change realises ``sigma_1(J_f) eps``,
    which is ``<= Gamma eps`` by the max: near-tautological, it only re-tests that ``sigma_1`` is
    not under-estimated.
    """
    return _scale(index, "input_jacobian", scale) * eps


def parameter_sensitivity_bound(
    index: StabilityIndex | float, delta_norm: float | torch.Tensor, scale: str = "index"
):
    """``||f_{theta+Delta}(x) - f_theta(x)|| <= Gamma ||Delta|| + O(||Delta||^2)`` at sample points
    (Theorem 4.2; spec 6.3): the first-order term is ``||J_theta(x) Delta|| <= sigma_1 ||Delta||``."""
    return _scale(index, "parameter_jacobian", scale) * delta_norm


def attribution_change_bound(
    index: StabilityIndex | float,
    eps: float | None = None,
    curvature: float | None = None,
    scale: str = "index",
) -> float:
    """Bound on the saliency change ``||a(x') - a(x)||`` between two points of the support.

    The saliency ``a(x) = J_f(x)^T e_c`` is a row of the input Jacobian, so ``||a(x)|| <=
    sigma_1(J_f(x)) <= Gamma`` and ``||a(x') - a(x)|| <= 2 Gamma`` (the perturbed points must be
    part of the data the index was taken over). That part is the triangle inequality: it holds for
    every model by construction and is no evidence about one. With a curvature bound
    ``M >= sup_t ||grad_x^2 f_c(x + t (x' - x))||_2`` on the segment (mean-value theorem, smooth
    activations) and ``||x' - x|| <= eps`` it is ``min(2 Gamma, M eps)``: that form can fail, and
    :func:`check_attribution_curvature` checks it with ``M`` measured along the segment.
    A worst-case statement; chapter 06 shows attribution change is governed by margins and
    curvature, not by ``sigma_1`` alone. (Choice of the attribution map: vanilla gradient.)
    """
    bound = 2.0 * _scale(index, "input_jacobian", scale)
    if curvature is not None:
        if eps is None:
            raise ValueError("curvature needs eps (the perturbation size)")
        bound = min(bound, float(curvature) * float(eps))
    return bound


def ntk_condition_bound(
    index: StabilityIndex | float, ntk_min: float, scale: str = "index"
) -> float:
    """``kappa(K) = lambda_max(K) / lambda_min(K) <= Gamma^2 / (lambda_min(K) / n)``.

    ``ntk_min`` is ``lambda_min(K)/n`` (``profile.ntk_min``). Holds by construction: ``Gamma^2 >=
    lambda_max(K)/n`` by the max, with equality (so the bound *is* ``kappa(K)``) whenever the NTK
    term sets ``Gamma``. No evidence about a model. ``K`` is the scalar NTK the index uses; the
    block NTK ``K~`` governs multi-output dynamics. ``inf`` for a singular Gram.
    """
    g = _scale(index, "ntk", scale)
    if ntk_min < 0 or not math.isfinite(ntk_min):
        raise ValueError(f"ntk_min must be lambda_min(K)/n >= 0, got {ntk_min!r}")
    return math.inf if ntk_min == 0 else g * g / ntk_min


def stable_step_size(index: StabilityIndex | float, scale: str = "index") -> float:
    """Largest step size the index certifies: gradient descent on the loss's quadratic model is
    stable for ``eta < 2 / Gamma^2 <= 2 / lambda_max(H)`` (Theorem 4.2; spec 6.7). With ``q = 1``
    it also certifies gradient descent on the linearised model under 1/2-MSE, because
    ``lambda_max(J^T J / n) <= max_i sigma_1(J_theta(x_i))^2 <= Gamma^2``.
    ``scale="operator"`` returns ``2 / lambda_max(H)`` itself. Unlike the attribution and NTK
    bounds this can fail on a network: compare it with :func:`measure_max_stable_lr`."""
    g = _scale(index, "hessian", scale)
    return math.inf if g == 0 else 2.0 / (g * g)


# --------------------------------------------------------------------------- measurements
def _directions(shape, eps, generator, like) -> torch.Tensor:
    """One perturbation per sample, uniform on the sphere of radius ``eps``."""
    d = isotropic_perturbations(shape[1:], eps, shape[0], "sphere", generator=generator,
                                dtype=torch.float64)  # fmt: skip
    return d.to(like).reshape(shape)


def measure_forward_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    *,
    draws: int = 8,
    direction: str = "worst",
    seed: int = 0,
) -> torch.Tensor:
    """Measured ``max_draws ||f(x + delta) - f(x)||`` per sample for ``||delta|| = eps``, shape ``(N,)``.

    ``direction="worst"`` uses ``delta = eps * v_1(x)``, the top right singular vector of ``J_f(x)``
    (the direction the bound is tight for, to first order), ``"random"`` ``draws`` isotropic ones.
    Cost: one input Jacobian per sample (worst) or ``draws`` forward passes (random).
    """
    check_model(model)
    x = check_tensor(x, "x", min_dim=2).to(next(model.parameters()))
    _positive_eps(eps)
    with torch.no_grad():
        f0 = model(x)
    if direction == "worst":
        from .jacobians import input_jacobian

        J = input_jacobian(model, x).detach()
        v = torch.linalg.svd(J, full_matrices=False).Vh[:, 0, :]
        with torch.no_grad():
            out = torch.stack(
                [(model(x + s * eps * v.reshape(x.shape)) - f0).norm(dim=1) for s in (1.0, -1.0)]
            ).amax(0)
        return out
    if direction != "random":
        raise ValueError(f"direction must be 'worst' or 'random', got {direction!r}")
    g = torch.Generator().manual_seed(seed)
    best = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        for _ in range(draws):
            d = _directions(x.shape, eps, g, x)
            best = torch.maximum(best, (model(x + d) - f0).norm(dim=1))
    return best


def _flat_to_dict(model: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split rows of ``flat`` (``(..., p)``, parameters in ``named_parameters`` order) into a dict."""
    out, i = {}, 0
    for k, v in model.named_parameters():
        if not v.requires_grad:
            continue
        out[k] = flat[..., i : i + v.numel()].reshape(*flat.shape[:-1], *v.shape)
        i += v.numel()
    return out


def measure_parameter_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    delta_norm: float,
    *,
    draws: int = 8,
    direction: str = "random",
    seed: int = 0,
) -> torch.Tensor:
    """Measured ``||f_{theta+Delta}(x) - f_theta(x)||`` per sample for ``||Delta|| = delta_norm``
    (all parameters jointly), shape ``(N,)``; the model is left unchanged.

    ``direction="random"``: the max over ``draws`` isotropic ``Delta`` (shared by all samples).
    ``direction="worst"``: per sample, ``Delta = +-delta_norm * v_1``, the top right singular vector
    of ``J_theta(x_i)`` (where the first-order bound is tight). Cost: ``draws`` forward passes, or
    one ``C x p`` parameter Jacobian and two forward passes per sample.
    """
    from torch.func import functional_call, vmap

    check_model(model)
    x = check_tensor(x, "x", min_dim=2).to(next(model.parameters()))
    _positive_eps(delta_norm)
    params = {k: v.detach() for k, v in model.named_parameters()}
    with torch.no_grad():
        f0 = model(x)
    if direction == "worst":
        from .jacobians import parameter_jacobian

        Jt = parameter_jacobian(model, x).detach()
        v = torch.linalg.svd(Jt, full_matrices=False).Vh[:, 0, :]

        def one(vi, xi, sign):
            moved = {
                k: params[k] + sign * delta_norm * d for k, d in _flat_to_dict(model, vi).items()
            }
            return functional_call(model, moved, (xi.unsqueeze(0),)).squeeze(0)

        with torch.no_grad():
            outs = [vmap(one, in_dims=(0, 0, None))(v, x, s) for s in (1.0, -1.0)]
        return torch.stack([(o - f0).norm(dim=1) for o in outs]).amax(0)
    if direction != "random":
        raise ValueError(f"direction must be 'worst' or 'random', got {direction!r}")
    g = torch.Generator().manual_seed(seed)
    best = None
    with torch.no_grad():
        for _ in range(draws):
            noise = {
                k: torch.randn(v.shape, generator=g, dtype=torch.float64).to(v)
                for k, v in params.items()
            }
            norm = math.sqrt(sum(float(t.double().square().sum()) for t in noise.values()))
            moved = {k: params[k] + noise[k] * (delta_norm / norm) for k in params}
            diff = (functional_call(model, moved, (x,)) - f0).norm(dim=1)
            best = diff if best is None else torch.maximum(best, diff)
    return best


def measure_attribution_change(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    *,
    draws: int = 4,
    seed: int = 0,
) -> torch.Tensor:
    """Measured ``max_draws ||a(x + delta) - a(x)||`` per sample, ``a(x) = grad_x f_c(x)`` with ``c``
    fixed to the clean prediction and isotropic ``||delta|| = eps``. Shape ``(N,)``.
    Cost: ``draws + 1`` input Jacobians."""
    from .jacobians import input_jacobian

    check_model(model)
    x = check_tensor(x, "x", min_dim=2).to(next(model.parameters()))
    _positive_eps(eps)
    g = torch.Generator().manual_seed(seed)
    J0 = input_jacobian(model, x).detach()
    c = J0.new_zeros(len(x), dtype=torch.long)
    with torch.no_grad():
        c = model(x).argmax(1)
    idx = torch.arange(len(x), device=x.device)
    a0 = J0[idx, c]
    best = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for _ in range(draws):
        xd = x + _directions(x.shape, eps, g, x)
        a1 = input_jacobian(model, xd).detach()[idx, c]
        best = torch.maximum(best, (a1 - a0).norm(dim=1))
    return best


# --------------------------------------------------------------------------- curvature form
def logit_hessian_norm(
    model: nn.Module, x: torch.Tensor, c: torch.Tensor, memory_budget: int = 2**24
) -> torch.Tensor:
    """``sigma_1(grad_x^2 f_c(x_i))`` per sample, shape ``(N,)``: the spectral norm of the input
    Hessian of logit ``c[i]`` at ``x[i]``.

    Dense and exact: the ``d x d`` Hessian is formed with ``torch.func.hessian`` (forward-over-reverse
    autograd, i.e. a Hessian-vector product with every basis vector), vectorised over samples, and
    its norm is ``max |eigenvalue|`` (``eigvalsh``). Cost: ``d`` Hessian-vector products per sample,
    ``chunk * d^2`` memory (``memory_budget`` elements per chunk).
    """
    check_model(model)
    x = check_tensor(x, "x", min_dim=2)
    d = math.prod(x.shape[1:])
    c = torch.as_tensor(c, device=x.device).long()
    chunk = max(1, memory_budget // max(1, d * d))
    out = []
    for i in range(0, len(x), chunk):
        ev = torch.linalg.eigvalsh(_logit_hessians(model, x[i : i + chunk], c[i : i + chunk]))
        out.append(ev.abs().amax(1))
    return torch.cat(out).to(x.dtype)


def _logit_hessians(model: nn.Module, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Dense symmetric input Hessians ``grad_x^2 f_{c_i}(x_i)``, ``(N, d, d)`` float64, by
    ``torch.func.hessian`` (forward-over-reverse autograd) vectorised over samples."""
    from torch.func import functional_call, hessian, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    d = math.prod(x.shape[1:])
    onehot = F.one_hot(c, _predict(model, x[:1]).shape[1]).to(x)

    def fc(xi, oi):
        out = functional_call(model, (params, buffers), (xi.unsqueeze(0),)).squeeze(0)
        return (out * oi).sum()

    h = vmap(hessian(fc))(x, onehot).reshape(-1, d, d).double()
    return 0.5 * (h + h.transpose(1, 2))


def segment_curvature(
    model: nn.Module, x: torch.Tensor, delta: torch.Tensor, c: torch.Tensor, points: int = 9
) -> torch.Tensor:
    """``M_i = max_t sigma_1(grad_x^2 f_c(x_i + t delta_i))`` over ``points`` equally spaced
    ``t in [0, 1]`` (both ends included), shape ``(N,)``: a sup over sampled points of the segment,
    with :func:`logit_hessian_norm` at each. A grid sup can under-estimate the true sup, which is
    why :class:`CurvatureCheck` allows a small relative tolerance."""
    if points < 2:
        raise ValueError(f"points must be >= 2 (both ends of the segment), got {points}")
    ts = torch.linspace(0.0, 1.0, points).tolist()
    return torch.stack([logit_hessian_norm(model, x + t * delta, c) for t in ts]).amax(0)


@dataclass(frozen=True, repr=False)
class CurvatureCheck:
    """The curvature form of the attribution bound, measured (see
    :func:`check_attribution_curvature`). For every perturbation size ``eps[e]`` and sample ``i``:
    ``change[e, i] = ||a(x_i + delta) - a(x_i)||`` (worst of the two signs) against
    ``bound[e, i] = min(2 gamma, curvature[e, i] * eps[e])``, where ``curvature[e, i]`` is the
    segment sup :func:`segment_curvature`. Unlike ``2 Gamma`` alone this can fail: a curvature
    measure that is too small (a dropped factor, the Hessian of another logit, a missing segment
    sup) is caught where ``M eps < 2 gamma``."""

    eps: tuple[float, ...]
    change: torch.Tensor
    curvature: torch.Tensor
    gamma: float
    points: int
    direction: str
    rtol: float = 0.02

    @property
    def bound(self) -> torch.Tensor:
        e = torch.tensor(self.eps, dtype=self.curvature.dtype).unsqueeze(1)
        return torch.minimum(self.curvature * e, torch.full_like(self.curvature, 2 * self.gamma))

    @property
    def holds(self) -> bool:
        """Whether every measured change is at most its bound (to ``rtol``: the grid sup)."""
        return bool((self.change <= self.bound * (1 + self.rtol)).all())

    @property
    def ratio(self) -> list[float]:
        """``max_i change/bound`` per ``eps`` (1 = tight, > 1 + rtol = violated)."""
        b = self.bound
        r = torch.where(b > 0, self.change / b.clamp_min(1e-300), torch.where(
            self.change > 0, torch.full_like(b, math.inf), torch.zeros_like(b)))  # fmt: skip
        return [float(v) for v in r.amax(1)]

    @property
    def curvature_branch(self) -> list[float]:
        """Per ``eps``, the fraction of samples where ``M eps < 2 gamma`` (the falsifiable branch)."""
        e = torch.tensor(self.eps, dtype=self.curvature.dtype).unsqueeze(1)
        return [float(v) for v in (self.curvature * e < 2 * self.gamma).double().mean(1)]

    def __repr__(self) -> str:
        rows = "; ".join(
            f"eps={e:g}: max change/bound={r:.3g} (M eps < 2 Gamma on {f:.0%})"
            for e, r, f in zip(self.eps, self.ratio, self.curvature_branch)
        )
        return f"CurvatureCheck(2 Gamma={2 * self.gamma:.4g}; {rows}; holds={self.holds})"


def check_attribution_curvature(
    model: nn.Module,
    x: torch.Tensor,
    eps: Sequence[float] = (1e-3, 1e-2, 1e-1, 0.5),
    *,
    gamma: float | None = None,
    points: int = 9,
    direction: str = "worst",
    seed: int = 0,
    rtol: float = 0.02,
) -> CurvatureCheck:
    """Check ``||a(x + delta) - a(x)|| <= min(2 Gamma, M ||delta||)`` on ``model`` at every row of
    ``x`` and every size in ``eps`` (spec 6.5 a; smooth activations: for ReLU the Hessian is zero
    almost everywhere and the gradient jumps at kinks, so the curvature form does not apply).

    ``a(x) = grad_x f_c(x)`` (vanilla saliency, a row of :func:`~spectral_lab.input_jacobian`) with
    ``c`` the clean prediction. ``M_i`` is measured, not derived: the largest
    ``sigma_1(grad_x^2 f_c)`` at ``points`` equally spaced points of the segment
    ``x_i + t delta_i`` (dense autograd Hessians, :func:`segment_curvature`). ``direction="worst"``
    takes ``delta = +-eps v``, ``v`` the top eigenvector (in magnitude) of the Hessian at ``x_i``,
    where the bound is tight to first order, so a curvature that is too small by any factor is
    caught at small ``eps``; ``"random"`` uses isotropic directions (looser). ``gamma`` (for the
    ``2 Gamma`` cap) defaults to ``max sigma_1(J_f)`` over the clean and perturbed points, the
    smallest value for which the cap holds; a larger one (e.g. the index) may be passed.

    Cost per ``eps``: ``2 points`` batched dense input Hessians and three input Jacobians.
    """
    from .jacobians import input_jacobian
    from .spectra import singular_values

    check_model(model)
    x = check_tensor(x, "x", min_dim=2).to(next(model.parameters()))
    eps = tuple(float(e) for e in eps)
    for e in eps:
        _positive_eps(e)
    if direction not in ("worst", "random"):
        raise ValueError(f"direction must be 'worst' or 'random', got {direction!r}")
    with torch.no_grad():
        c = model(x).argmax(1)
    idx = torch.arange(len(x), device=x.device)
    J0 = input_jacobian(model, x).detach()
    a0 = J0[idx, c]
    sig = float(singular_values(J0)[:, 0].max())
    if direction == "worst":
        ev, vec = torch.linalg.eigh(_logit_hessians(model, x, c))
        top = ev.abs().argmax(1)
        unit = vec[idx, :, top].to(x).reshape(x.shape)
        # both signs, each checked as its own segment
        x, unit, c, a0 = (
            torch.cat([x, x]),
            torch.cat([unit, -unit]),
            torch.cat([c, c]),
            torch.cat([a0, a0]),
        )
        idx = torch.arange(len(x), device=x.device)
    else:
        g = torch.Generator().manual_seed(seed)
        unit = _directions(x.shape, 1.0, g, x)
    changes, curvs = [], []
    for e in eps:
        delta = e * unit
        J1 = input_jacobian(model, x + delta).detach()
        sig = max(sig, float(singular_values(J1)[:, 0].max()))
        changes.append((J1[idx, c] - a0).norm(dim=1).double().cpu())
        curvs.append(segment_curvature(model, x, delta, c, points).double().cpu())
    g_used = sig if gamma is None else max(float(gamma), sig)
    return CurvatureCheck(eps, torch.stack(changes), torch.stack(curvs), g_used, points,
                          direction, rtol)  # fmt: skip


def _positive_eps(eps) -> None:
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"the perturbation size must be a finite number > 0, got {eps!r}")


def gd_diverges(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    *,
    loss: str | LossFn = "cross_entropy",
    steps: int = 100,
    blowup: float = 10.0,
) -> bool:
    """Whether full-batch gradient descent with step ``lr`` from the model's current weights blows
    up within ``steps`` steps (loss non-finite or above ``blowup`` times its start). Runs on a
    copy; the model is left unchanged. Cost: ``steps`` forward/backward passes over ``x``."""
    import copy

    loss_fn = _loss_fn(loss)
    m = copy.deepcopy(model)
    params = [p for p in m.parameters() if p.requires_grad]
    start = None
    for _ in range(steps + 1):
        value = loss_fn(m(x), y)
        v = float(value.detach())
        if start is None:
            start = v
        if not math.isfinite(v) or v > blowup * max(start, 1e-12):
            return True
        grads = torch.autograd.grad(value, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    return False


def measure_max_stable_lr(
    model: nn.Module,
    data,
    *,
    loss="cross_entropy",
    lo: float = 1e-4,
    hi: float = 1e4,
    steps: int = 100,
    iters: int = 14,
    blowup: float = 10.0,
) -> float:
    """Largest full-batch gradient-descent step that does not blow up within ``steps`` steps,
    found by bisection in log space between ``lo`` and ``hi`` (``iters`` halvings). Empirical: the
    network is nonlinear, so this is compared with, not derived from, ``2 / lambda_max(H)``.
    Cost: ``iters * steps`` full-batch gradients."""
    check_model(model)
    x, y = next(iter_batches(data, batch_size=10**9))
    if y is None:
        raise ValueError("measure_max_stable_lr needs labels: pass (x, y)")
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got {lo}, {hi}")

    def bad(lr):
        return gd_diverges(model, x, y, lr, loss=loss, steps=steps, blowup=blowup)

    if bad(lo):
        return lo
    if not bad(hi):
        return hi
    a, b = math.log(lo), math.log(hi)
    for _ in range(iters):
        m = 0.5 * (a + b)
        if bad(math.exp(m)):
            b = m
        else:
            a = m
    return math.exp(a)


@dataclass(frozen=True, repr=False)
class ConsequenceCheck:
    """Each consequence of Theorem 4.2 measured on a model next to its bound (see
    :func:`verify_consequences`). ``measured[k]`` and ``bound[k]`` are floats; for ``"stable_lr"``
    the bound is a *lower* bound (the certified step must not exceed the measured largest stable
    one), for the others an upper bound. ``operator_bound[k]`` uses the single operator's own term
    instead of ``Gamma``. ``tightness[k]`` is ``measured/bound`` (upper) or ``bound/measured``
    (lower): 1 means tight, small means loose.

    Not every key is evidence. ``"attribution"`` (``2 Gamma``) and ``"ntk_condition"`` hold for
    every model by construction (:data:`BY_CONSTRUCTION`); ``"forward"``/``"parameter"`` at a tiny
    perturbation along the worst direction only re-test that ``sigma_1`` is not under-estimated.
    The checks that can fail are ``"stable_lr"`` (certified ``2/Gamma^2`` against the measured
    divergence threshold; :attr:`step_ratio`) and ``"attribution_curvature"`` (the curvature form
    ``min(2 Gamma, M eps)``, in ``curvature``); :attr:`evidence` lists only the keys that are not
    true by construction."""

    measured: Mapping[str, float]
    bound: Mapping[str, float]
    operator_bound: Mapping[str, float]
    index: StabilityIndex
    profile: StabilityProfile
    curvature: CurvatureCheck | None = None

    first_order_rtol: float = 1e-2

    @property
    def holds(self) -> dict[str, bool]:
        """Whether each bound holds. ``forward`` and ``parameter`` are first-order statements:
        where ``Gamma`` is set by that very operator the measured change is ``Gamma eps (1 +
        O(eps))``, so they are checked to ``first_order_rtol`` (1 %, the spec's 1.01 safety
        factor); the others exactly (to 1e-9)."""
        out = {}
        for k, m in self.measured.items():
            b = self.bound[k]
            tol = self.first_order_rtol if k in ("forward", "parameter") else 1e-9
            out[k] = b <= m * (1 + tol) if k == "stable_lr" else m <= b * (1 + tol)
        if self.curvature is not None:
            out["attribution_curvature"] = self.curvature.holds
        return out

    @property
    def evidence(self) -> dict[str, bool]:
        """:attr:`holds` without the consequences that hold by construction."""
        return {k: v for k, v in self.holds.items() if k not in BY_CONSTRUCTION}

    @property
    def step_ratio(self) -> float:
        """Measured largest stable step over the certified ``2 / Gamma^2`` (``>= 1`` when safe)."""
        b = self.bound["stable_lr"]
        return math.inf if b == 0 else self.measured["stable_lr"] / b

    @property
    def tightness(self) -> dict[str, float]:
        out = {}
        for k, m in self.measured.items():
            b = self.bound[k]
            out[k] = (
                (b / m if m > 0 else math.inf) if k == "stable_lr" else (m / b if b > 0 else 0.0)
            )
        if self.curvature is not None:
            out["attribution_curvature"] = max(self.curvature.ratio)
        return out

    def __repr__(self) -> str:
        rows = ", ".join(
            f"{k}: {self.measured[k]:.3g} {'>=' if k == 'stable_lr' else '<='} {self.bound[k]:.3g}"
            + (" (by construction)" if k in BY_CONSTRUCTION else "")
            for k in self.measured
        )
        if self.curvature is not None:
            rows += f", attribution_curvature: max change/min(2 Gamma, M eps) = {max(self.curvature.ratio):.3g}"
        return (
            f"ConsequenceCheck(Gamma={self.index.value:.4g}; {rows}; "
            f"all checks that can fail hold={all(self.evidence.values())})"
        )


def verify_consequences(
    model: nn.Module,
    data,
    *,
    eps: float = 1e-4,
    delta_norm: float = 1e-4,
    attribution_eps: float = 0.5,
    attribution_draws: int = 2,
    loss: str | LossFn = "cross_entropy",
    lr_steps: int = 20,
    lr_iters: int = 6,
    lr_range: tuple[float, float] = (1e-2, 1e3),
    lanczos_steps: int = 100,
    curvature_eps: Sequence[float] | None = (1e-3, 1e-2, 1e-1, 0.5),
    curvature_points: int = 9,
    seed: int = 0,
) -> ConsequenceCheck:
    """Measure every consequence of Theorem 4.2 on ``data = (x, y)`` and pair it with its bound
    from the supremum index ``Gamma`` of the same data (spec 6.8).

    * ``forward``: ``max_i ||f(x_i + delta) - f(x_i)||`` along each sample's worst direction,
      ``||delta|| = eps``, against ``Gamma eps`` (first order: use a small ``eps``).
    * ``parameter``: the same for parameters along each sample's worst direction, against
      ``Gamma ||Delta||``.
    * ``attribution``: ``max ||a(x + delta) - a(x)||`` for ``attribution_draws`` isotropic
      ``||delta|| = attribution_eps``, against ``2 Gamma`` with the input term taken over the clean
      *and* perturbed points (the bound needs both in the support). **By construction** (triangle
      inequality): shown, never evidence.
    * ``ntk_condition``: ``kappa(K)`` against ``Gamma^2 / (lambda_min(K)/n)``. **By construction**
      (an identity when the NTK term sets ``Gamma``). Scalar NTK, as in the index.
    * ``stable_lr``: the largest full-batch GD step that does not blow up in ``lr_steps`` steps
      (log-bisection, ``lr_iters`` halvings) against the certified ``2 / Gamma^2`` (a lower bound).
      Can fail: a ``Gamma`` without the Hessian term certifies too large a step when the loss's
      curvature exceeds what the Jacobian terms see.
    * ``attribution_curvature`` (``curvature``, unless ``curvature_eps=None``): the curvature form
      ``min(2 Gamma, M eps)`` at every size in ``curvature_eps`` along each sample's worst
      direction, ``M`` measured along the segment (:func:`check_attribution_curvature`). Can fail.

    Cost: one full profile, two worst-direction measurements, ``attribution_draws + 1`` input
    Jacobians, ``lr_iters + 2`` short GD runs, and for the curvature form
    ``2 * curvature_points * len(curvature_eps)`` dense ``d x d`` input Hessians per sample
    (``d`` Hessian-vector products each: seconds for ``d = 64``, minutes for ``d = 784``; pass
    ``curvature_eps=None`` to skip it).
    """
    from .jacobians import input_jacobian
    from .spectra import singular_values

    x, y = next(iter_batches(data, batch_size=10**9))
    if y is None:
        raise ValueError("verify_consequences needs labels: pass (x, y)")
    p0 = next(model.parameters())
    x = x.to(p0)
    prof = stability_profile(
        model, (x, y), loss=loss, ntk_samples=len(x), hessian_samples=len(x),
        lanczos_steps=lanczos_steps, seed=seed,
    )  # fmt: skip
    idx = stability_index(prof)
    g = torch.Generator().manual_seed(seed)
    xp = torch.cat(
        [x + _directions(x.shape, attribution_eps, g, x) for _ in range(attribution_draws)]
    )
    sig_p = float(singular_values(input_jacobian(model, xp))[:, 0].max())
    attr = measure_attribution_change(model, x, attribution_eps, draws=attribution_draws, seed=seed)
    lr = measure_max_stable_lr(
        model, (x, y), loss=loss, lo=lr_range[0], hi=lr_range[1], steps=lr_steps, iters=lr_iters
    )
    fw = float(measure_forward_sensitivity(model, x, eps).max())
    pw = float(measure_parameter_sensitivity(model, x, delta_norm, direction="worst").max())
    measured = {
        "forward": fw,
        "parameter": pw,
        "attribution": float(attr.max()),
        "ntk_condition": prof.ntk_condition,
        "stable_lr": lr,
    }
    gamma_attr = max(idx.value, sig_p)
    bound = {
        "forward": forward_sensitivity_bound(idx, eps),
        "parameter": parameter_sensitivity_bound(idx, delta_norm),
        "attribution": attribution_change_bound(gamma_attr),
        "ntk_condition": ntk_condition_bound(idx, prof.ntk_min),
        "stable_lr": stable_step_size(idx),
    }
    operator_bound = {
        "forward": forward_sensitivity_bound(idx, eps, scale="operator"),
        "parameter": parameter_sensitivity_bound(idx, delta_norm, scale="operator"),
        "attribution": attribution_change_bound(max(prof.jac_top, sig_p)),
        "ntk_condition": ntk_condition_bound(idx, prof.ntk_min, scale="operator"),
        "stable_lr": math.inf if not prof.hess_top or prof.hess_top <= 0 else 2.0 / prof.hess_top,
    }
    curv = None
    if curvature_eps is not None:
        curv = check_attribution_curvature(
            model, x, curvature_eps, gamma=idx.value, points=curvature_points, seed=seed
        )
    return ConsequenceCheck(measured, bound, operator_bound, idx, prof, curv)


__all__ = [
    "AGGREGATIONS",
    "BY_CONSTRUCTION",
    "ConsequenceCheck",
    "CurvatureCheck",
    "OPERATORS",
    "StabilityIndex",
    "StabilityProfile",
    "attribution_change_bound",
    "check_attribution_curvature",
    "forward_sensitivity_bound",
    "gd_diverges",
    "index_terms",
    "iter_batches",
    "logit_hessian_norm",
    "measure_attribution_change",
    "measure_forward_sensitivity",
    "measure_max_stable_lr",
    "measure_parameter_sensitivity",
    "ntk_condition_bound",
    "parameter_sensitivity_bound",
    "quantile",
    "segment_curvature",
    "stability_index",
    "stability_profile",
    "stable_step_size",
    "verify_consequences",
]
