"""The Matrix Stability Profile: per-operator spectral statistics of a model on data."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.utils.data import DataLoader

from .._checks import check_logits, check_model, check_tensor
from .._data import DataLike, iter_batches
from ._common import (
    _ELEMENTS,
    _SAMPLE_KEYS,
    OPERATORS,
    LossFn,
    _check_chunk,
    _check_q,
    _loss_fn,
    _predict,
    quantile,
)


@dataclass(frozen=True, repr=False)
class StabilityProfile:
    """The Matrix Stability Profile: per-operator spectral statistics of a model on data.

    The four operators are those of the index in "A Unified Matrix-Spectral Framework for
    Stability and Interpretability in Deep Learning"; which statistics are kept is a choice of
    this library.

    Per-sample statistics (kept in ``samples`` for plots, CPU float64, one value per sample):
    ``jac_top = sigma_1(J_f(x_i))``, ``jac_fro = ||J_f(x_i)||_F / sqrt(C)``,
    ``jac_entropy = SE(J_f(x_i))`` (energy normalisation, base ``entropy_base``) and
    ``param_top = sigma_1(J_theta(x_i))``. Aggregates: ``Q_q`` of ``jac_top``, ``param_top`` and
    ``jac_entropy`` (``jac_entropy_q``), the mean of ``jac_fro`` and ``jac_entropy``.
    Data-set operators (on the first ``n_ntk`` / ``n_hess`` samples): ``ntk_top = lambda_max(K)/n``,
    ``ntk_min = lambda_min(K)/n``, ``ntk_entropy = SE(K)`` and ``hess_top = lambda_max(H)``.
    Operators that were not computed are ``None``. :meth:`with_q` re-aggregates at another quantile
    without recomputing anything.

    Example:
        >>> from spectral_lab import MLP
        >>> prof = stability_profile(MLP(4, 3, width=8), torch.randn(8, 4), operators=("input_jacobian",))
        >>> prof.n, prof.num_classes, prof.hess_top is None
        (8, 3, True)
        >>> prof.with_q(0.5).jac_top <= prof.jac_top
        True
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
    from ..spectra import spectral_entropy

    return spectral_entropy(s, "energy", base=base, kind="singular")


def _param_top(
    model: nn.Module,
    x: torch.Tensor,
    chunk_size: int | None,
    budget: int = _ELEMENTS,
    tick=None,
) -> torch.Tensor:
    """``sigma_1(J_theta(x_i))`` per sample via the ``C x C`` per-sample Gram ``J J^T``, with the
    Jacobians of ``chunk_size`` samples held at once (default: as many as fit in ``budget``
    elements); ``tick(k)`` is called after each chunk of ``k`` samples (a progress bar)."""
    from ..jacobians import parameter_jacobian

    if chunk_size is None:
        p = sum(t.numel() for t in model.parameters() if t.requires_grad)
        c = check_logits(model(x[:1])).shape[1]
        chunk = max(1, budget // max(1, c * p))
    else:
        chunk = chunk_size
    out = []
    for i in range(0, len(x), chunk):
        j = parameter_jacobian(model, x[i : i + chunk]).detach()
        # the C x C Gram J J^T accumulated in float64, 2**20 parameters at a time (a float32 sum
        # over p terms loses ~1e-4 relative on ResNet-18)
        g = torch.zeros(j.shape[0], j.shape[1], j.shape[1], dtype=torch.float64, device=j.device)
        for k in range(0, j.shape[2], 2**20):
            jk = j[..., k : k + 2**20].double()
            g += jk @ jk.transpose(1, 2)
        out.append(torch.linalg.eigvalsh(g.double())[:, -1].clamp_min(0).sqrt())
        if tick is not None:
            tick(len(j))
    return torch.cat(out)


def _ntk_spectrum(model: nn.Module, x: torch.Tensor, kind: str = "scalar") -> torch.Tensor:
    """All eigenvalues of the scalar (``n x n``) or block (``nC x nC``) NTK Gram on ``x``."""
    from ..ntk import block_to_matrix, ntk_gram

    k = ntk_gram(model, x, kind=kind).detach().double()
    if kind == "block":
        k = block_to_matrix(k)
    return torch.linalg.eigvalsh(0.5 * (k + k.T))


def _ntk_route(n_ntk: int) -> str | None:
    from .. import _func

    return _func.LAST_ROUTES.get("ntk") if n_ntk else None


def _hess_top(model, loss_fn, x, y, steps: int, seed: int) -> tuple[float, bool, int]:
    from ..hessian import hessian_eigs

    res = hessian_eigs(model, (x, y), loss=loss_fn, k=1, max_iter=steps, seed=seed)
    return float(res.eigenvalues[0]), bool(res.converged), int(res.matvecs)


LOW_PRECISION = (torch.bfloat16, torch.float16)


@dataclass
class _Prepared:
    """A model made to fit the contract, and what was done to it (``notes``, for the report)."""

    model: nn.Module  # float input -> (N, C) logits; token ids arrive as floats (TokenIds)
    logits: nn.Module  # raw input -> (N, C) logits
    tokens: bool
    embedding: nn.Module | None
    loss: str | LossFn
    num_classes: int
    stream: object
    notes: dict[str, str]

    @property
    def loss_name(self) -> str:
        loss = self.loss
        return loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")


def _auto_loss(loss, y, num_classes: int):
    if loss is None or loss == "auto":
        if y is None:
            return "cross_entropy" if num_classes > 1 else "mse"
        return "mse" if torch.is_floating_point(y) else "cross_entropy"
    _loss_fn(loss)  # a clear error for an unknown name
    return loss


@torch.no_grad()
def _prepare(model, data, *, loss, output, embedding, batch_size, max_samples) -> _Prepared:
    """Check and adapt ``model`` on the first batch of ``data``, before any expensive work: the
    one dtype policy, the logits, the loss, the labels, randomness and batch dependence."""
    import itertools

    from .._adapt import LogitsOf, TokenIds, find_embedding, select_logits
    from .._checks import check_deterministic, check_input_dtype, check_labels

    check_model(model)
    notes: dict[str, str] = {}
    p0 = next(model.parameters())
    if p0.dtype in LOW_PRECISION:
        notes["precision"] = (
            f"the model is in {str(p0.dtype).removeprefix('torch.')}: analysed as a float32 copy "
            "(the same weights, upcast exactly; spectra in float32)"
        )
        model = copy.deepcopy(model).float()
    p0 = next(model.parameters())
    device, dtype = p0.device, p0.dtype
    stream = iter_batches(data, batch_size, max_samples, device, dtype, keep_integer_inputs=True)
    x, y = next(stream)
    tokens = check_input_dtype(x, model)
    if not tokens:
        check_tensor(x, "data inputs", min_dim=2)
    probe = x[: min(len(x), 8)]
    raw = model(probe)
    out, found = select_logits(raw, output)
    logits = (
        model
        if (output is None and isinstance(raw, torch.Tensor) and raw.dim() == 2)
        else (LogitsOf(model, output))
    )
    notes["output"] = found
    emb = None
    if tokens:
        emb, emb_name = find_embedding(model, x, embedding)
        notes["input_space"] = (
            f"token ids: input-space quantities are taken with respect to the output of the "
            f"input embedding {emb_name!r} ({type(emb).__name__})"
        )
        pmodel = TokenIds(logits)
    else:
        notes["input_space"] = "the inputs"
        pmodel = logits
    check_logits(out)
    num_classes = out.shape[1]
    loss = _auto_loss(loss, y, num_classes)
    if y is not None and isinstance(loss, str):
        check_labels(y, len(x), num_classes, loss)
    try:
        check_deterministic(pmodel, probe.to(dtype) if tokens else probe)
    except ValueError as err:
        if "batch-dependent" not in str(err):
            raise
        from .._adapt import per_sample

        try:
            logits = per_sample(logits, probe.to(dtype) if tokens else probe)
        except ValueError as why:
            raise ValueError(f"{err}. {why}") from None
        pmodel = TokenIds(logits) if tokens else logits
        check_deterministic(pmodel, probe.to(dtype) if tokens else probe)
        notes["batch"] = (
            "the model is batch-dependent (a sample's output changes with its batch: BatchNorm "
            "without running statistics); every sample was evaluated as its own batch of one "
            "(one vmapped call)"
        )
    notes["loss"] = loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")
    return _Prepared(
        model=pmodel,
        logits=logits,
        tokens=tokens,
        embedding=emb,
        loss=loss,
        num_classes=num_classes,
        stream=itertools.chain([(x, y)], stream),
        notes=notes,
    )


def _batch(prep: _Prepared, x, y, dtype):
    """One streamed batch checked and made ready: ``(raw x, float x, y)``."""
    from .._checks import check_input_dtype, check_labels

    if check_input_dtype(x, prep.model) != prep.tokens:
        raise TypeError(f"data: a batch of dtype {x.dtype} among batches of another kind")
    if not prep.tokens:
        check_tensor(x, "data inputs", min_dim=2)
    if y is not None and isinstance(prep.loss, str):
        y = check_labels(y, len(x), prep.num_classes, prep.loss)
        if torch.is_floating_point(y):
            y = y.to(dtype)
    return x, (x.to(dtype) if prep.tokens else x), y


def _check_args(q, operators, ntk_kind, num_ntk_samples, num_hessian_samples, max_iter) -> float:
    q = _check_q(q)
    unknown = set(operators) - set(OPERATORS)
    if unknown or "input_jacobian" not in operators:
        raise ValueError(
            f"operators must include 'input_jacobian' and be drawn from {OPERATORS}; got "
            f"{tuple(operators)}"
        )
    if ntk_kind not in ("scalar", "block"):
        raise ValueError(f"ntk_kind must be 'scalar' or 'block', got {ntk_kind!r}")
    if num_ntk_samples < 2 or num_hessian_samples < 1 or max_iter < 1:
        raise ValueError(
            "need num_ntk_samples >= 2, num_hessian_samples >= 1 and max_iter >= 1; got "
            f"{num_ntk_samples}, {num_hessian_samples}, {max_iter}"
        )
    return q


@torch.no_grad()
def stability_profile(
    model: nn.Module,
    data: DataLike,
    q: float = 1.0,
    *,
    loss: str | LossFn = "auto",
    operators: Sequence[str] = OPERATORS,
    max_samples: int | None = None,
    num_ntk_samples: int = 256,
    ntk_kind: str = "scalar",
    num_hessian_samples: int = 512,
    max_iter: int = 30,
    entropy_base: float = math.e,
    batch_size: int = 256,
    chunk_size: int | None = None,
    seed: int = 0,
    progress: bool = False,
    output=None,
    embedding=None,
) -> StabilityProfile:
    """The Matrix Stability Profile of ``model`` on ``data``, aggregated with the quantile ``Q_q``.

    Per sample ``x_i``: ``sigma_1(J_f(x_i))``, ``||J_f(x_i)||_F / sqrt(C)``, the spectral entropy
    ``SE(J_f(x_i)) = -sum_k p_k log p_k`` with ``p_k = sigma_k^2 / sum_j sigma_j^2``, and
    ``sigma_1(J_theta(x_i))``; on the first samples ``lambda_max(K)/n``, ``lambda_min(K)/n`` of
    the NTK Gram ``K`` and ``lambda_max(H)`` of the loss Hessian (see :class:`StabilityProfile`).
    Runs on the device and dtype of the model's parameters; inputs are cast to them.

    Args:
        model: the network (any ``nn.Module``; a tuple/dict output with ``output=``).
        data: inputs ``x`` (a tensor; labels are then the model's own predictions), ``(x, y)``,
            an ``ArrayDataset``/``Dataset`` or a ``DataLoader`` (streamed batch by batch).
            Floating-point inputs, or token ids (int64/int32) for a model with an
            ``nn.Embedding``; other integer inputs (uint8 images) are refused.
        q: quantile level over samples; ``1`` is the supremum (worst case, what the bounds need),
            ``0.95`` the robust variant the paper names for empirical diagnostics.
        loss: ``"auto"`` (default: ``"mse"`` for float targets, ``"cross_entropy"`` for integer
            labels; without labels, by the number of outputs), ``"cross_entropy"`` (integer
            labels), ``"mse"`` (``1/2 ||f - y||^2`` per sample, averaged) or a callable
            ``loss(logits, y) -> scalar`` (mean over the batch). Labels are checked against it
            before any expensive work.
        operators: which of ``input_jacobian``, ``parameter_jacobian``, ``ntk``, ``hessian`` to
            compute (the others are ``None``).
        max_samples: cap on the samples streamed for the per-sample statistics.
        ntk_kind: ``"scalar"`` (default, the NTK the index uses: ``K_ij = tr J_i J_j^T``) or
            ``"block"`` (the ``nC x nC`` NTK that drives linearised dynamics; its
            ``lambda_max / n`` is at most ``max_i sigma_1(J_theta(x_i))^2``, whereas the scalar
            one can exceed that by up to a factor ``C``). A choice, not from the paper.
        num_ntk_samples: the NTK Gram (dense, ``n x n``) uses the first ``num_ntk_samples``
            streamed samples.
        num_hessian_samples: the Hessian (matrix-free, Lanczos) uses the first
            ``num_hessian_samples`` streamed samples.
        max_iter: cap on Lanczos iterations (= Hessian-vector products) for
            ``lambda_max(H)``; Lanczos stops earlier once the Ritz residual is below 1e-6
            relative. Ritz values never exceed ``lambda_max``, so an unconverged run
            *under*-estimates it (a warning is issued; ``settings["hessian_converged"]``).
        entropy_base: log base of the spectral entropy (``math.e`` nats, ``2`` bits).
        batch_size: samples per streamed batch.
        chunk_size: samples whose ``C x p`` parameter Jacobians are held at once; by default
            as many as fit in ``2**24`` elements.
        seed: seeds the Lanczos start vector of the Hessian phase.
        progress: show a progress bar over batches.
        output: which part of a tuple/dict output holds the logits (a key, an index or a
            callable; default: the ``"logits"`` key, else the first tensor); see
            :func:`spectral_lab.models.as_logits`.
        embedding: for token-id inputs, the input embedding (a submodule or its name; default:
            the first ``nn.Embedding`` that runs). Input-space operators are taken with respect
            to its output; see :func:`spectral_lab.models.split_at_embedding`.

    The model must be deterministic and per-sample (checked on the first batch by what it does:
    two forward passes must agree, and a sample's output must not depend on its batch). A
    bfloat16/float16 model is analysed as a float32 copy. ``settings`` records the output, the
    input space, the loss and the precision used.

    Cost: per sample ``C`` backward passes (input Jacobian) and one ``C x p`` parameter Jacobian;
    ``O(n_ntk^2 p)`` for the Gram; ``max_iter`` Hessian-vector products over ``n_hess``
    samples. Nothing of size ``p x p`` is formed.

    Example:
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> prof = stability_profile(MLP(4, 3, width=8), (x, y))
        >>> prof.n_ntk, prof.n_hess, prof.ntk_min <= prof.ntk_top, prof.settings["hessian_converged"]
        (16, 16, True, True)
    """
    check_model(model)
    q = _check_args(q, operators, ntk_kind, num_ntk_samples, num_hessian_samples, max_iter)
    _check_chunk(chunk_size)
    budget = _ELEMENTS
    prep = _prepare(
        model, data, loss=loss, output=output, embedding=embedding, batch_size=batch_size,
        max_samples=max_samples,
    )  # fmt: skip
    return _profile(
        prep, data, q=q, operators=operators, max_samples=max_samples,
        num_ntk_samples=num_ntk_samples, ntk_kind=ntk_kind,
        num_hessian_samples=num_hessian_samples, max_iter=max_iter, entropy_base=entropy_base,
        chunk_size=chunk_size, budget=budget, seed=seed, progress=progress,
    )  # fmt: skip


@torch.no_grad()
def _profile(
    prep: _Prepared,
    data,
    *,
    q,
    operators,
    max_samples,
    num_ntk_samples,
    ntk_kind,
    num_hessian_samples,
    max_iter,
    entropy_base,
    chunk_size,
    budget,
    seed,
    progress,
    phases=None,
    tol: float = 1e-6,
) -> StabilityProfile:
    """The profile's computation. ``phases`` (a :class:`spectral_lab._budget.Budget`, used by
    :func:`~spectral_lab.diagnose`) adds a progress bar per phase and a time / matvec budget:
    the sample stream stops when the time is up, and the NTK and Hessian phases are skipped
    (or their solver capped) with the reason recorded in the budget."""
    from tqdm.auto import tqdm

    from .._adapt import split_at_embedding
    from .._budget import hessian_phase, ntk_phase
    from ..jacobians import input_jacobian
    from ..spectra import singular_values

    model, loss = prep.model, prep.loss
    loss_fn = _loss_fn(loss)
    p0 = next(model.parameters())
    dtype = p0.dtype
    per: dict[str, list[torch.Tensor]] = {k: [] for k in _SAMPLE_KEYS}
    keep_x: list[torch.Tensor] = []
    keep_y: list[torch.Tensor] = []
    kept = 0
    labels_given = True
    n_keep = max(
        num_ntk_samples if "ntk" in operators else 0,
        num_hessian_samples if "hessian" in operators else 0,
    )
    num_classes = input_dim = 0
    total = None
    if isinstance(data, tuple) and data and isinstance(data[0], torch.Tensor):
        total = len(data[0])  # an (x, y) pair
    elif hasattr(data, "__len__") and not isinstance(data, (tuple, list)):
        total = len(data.dataset) if isinstance(data, DataLoader) else len(data)
    if max_samples is not None:
        total = max_samples if total is None else min(total, max_samples)
    if phases is None:
        bar = tqdm(
            total=total, desc="stability profile", unit="sample", disable=not progress, leave=False
        )
        pbar = None
    else:
        bar = phases.bar("input Jacobian", total, "sample")
        pbar = (
            phases.bar("parameter Jacobian", total, "sample")
            if "parameter_jacobian" in operators
            else None
        )
        t_samples = phases.elapsed()
    p = sum(t.numel() for t in model.parameters() if t.requires_grad)
    for xr, yr in prep.stream:
        xr, x, y = _batch(prep, xr, yr, dtype)
        if prep.tokens:
            head, e = split_at_embedding(prep.logits, xr, prep.embedding)
            J = input_jacobian(head, e, route="backward", chunk_size=len(e)).detach()
        else:
            J = input_jacobian(model, x).detach()
        num_classes, input_dim = J.shape[1], J.shape[2]
        s = singular_values(J.float() if J.dtype in LOW_PRECISION else J).double()
        per["jac_top"].append(s[:, 0].cpu())
        per["jac_fro"].append((s.square().sum(1).sqrt() / math.sqrt(num_classes)).cpu())
        per["jac_entropy"].append(_entropy(s, entropy_base).double().cpu())
        bar.update(len(x))
        if "parameter_jacobian" in operators:
            tick = None if pbar is None else pbar.update
            per["param_top"].append(_param_top(model, x, chunk_size, budget, tick).cpu())
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
        why = None if phases is None else phases.time_out()
        if why:
            n_seen = sum(len(v) for v in per["jac_top"])
            phases.capped["samples"] = f"the sample stream stopped after {n_seen} samples: {why}"
            break
    bar.close()
    if pbar is not None:
        pbar.close()
    if phases is not None:
        phases.seconds["per-sample Jacobians"] = phases.elapsed() - t_samples
    if not per["jac_top"]:
        raise ValueError("data is empty; pass at least one sample")
    samples = {k: torch.cat(v) for k, v in per.items() if v}
    n = len(samples["jac_top"])

    ntk_top = ntk_min = ntk_entropy = None
    n_ntk = n_hess = 0
    hess_top = None
    hess_converged, hess_matvecs, hess_route = None, 0, None
    if keep_x:
        xs, ys = torch.cat(keep_x), torch.cat(keep_y)
        if "ntk" in operators:
            if len(xs) < 2:
                warnings.warn("the NTK needs at least 2 samples; skipped", stacklevel=2)
            else:
                n_ntk = min(num_ntk_samples, len(xs))
                if phases is None:
                    lam = _ntk_spectrum(model, xs[:n_ntk], ntk_kind)
                else:
                    lam = ntk_phase(model, xs[:n_ntk], ntk_kind, budget=phases)
                if lam is None:
                    n_ntk = 0
                else:
                    ntk_top = float(lam[-1]) / n_ntk
                    ntk_min = max(float(lam[0]), 0.0) / n_ntk
                    ntk_entropy = float(_entropy(lam.clamp_min(0).sqrt(), entropy_base))
        if "hessian" in operators:
            n_hess = min(num_hessian_samples, len(xs))
            if phases is None:
                hess_top, hess_converged, hess_matvecs = _hess_top(
                    model, loss_fn, xs[:n_hess], ys[:n_hess], max_iter, seed
                )
            else:
                hess_top, hess_converged, hess_matvecs, hess_route = hessian_phase(
                    model, loss_fn, xs[:n_hess], ys[:n_hess], max_iter=max_iter, tol=tol,
                    seed=seed, budget=phases,
                )  # fmt: skip
                if hess_top is None:
                    n_hess = 0
            if hess_converged is False and phases is not None and "hessian" in phases.capped:
                pass  # stopped by the budget: reported as such, no convergence warning
            elif hess_converged is False:
                warnings.warn(
                    f"Lanczos did not converge in max_iter={max_iter} products; "
                    "lambda_max(H) is a lower estimate (Ritz values never exceed it): raise "
                    "max_iter for a safe step-size bound",
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
            "loss": prep.loss_name,
            "max_iter": max_iter,
            "hessian_converged": hess_converged,
            "hessian_matvecs": hess_matvecs,
            **(
                {}
                if phases is None
                else {
                    "hessian_tol": tol,
                    "hessian_route": hess_route,
                    "ntk_route": _ntk_route(n_ntk),
                    "budget": phases.to_dict(),
                }
            ),
            "ntk": "scalar (trace over outputs)" if ntk_kind == "scalar" else "block (nC x nC)",
            "quantile_rule": "higher",
            "labels": "given" if labels_given else "predicted by the model",
            "operators": tuple(operators),
            **{k: v for k, v in prep.notes.items() if k != "loss"},
        },
    )
