"""The Matrix Stability Profile: per-operator spectral statistics of a model on data."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .._data import DataLike
from ..distributed import on_every_rank  # dist (issue 25)
from ..prepared import Prepared, prepare
from ..quantiles import QuantileSketch
from ._common import _ELEMENTS, OPERATORS, LossFn, _check_chunk, _check_q, quantile


@dataclass(frozen=True, repr=False)
class StabilityProfile:
    """The Matrix Stability Profile: per-operator spectral statistics of a model on data.

    The four operators are those of the index in "A Unified Matrix-Spectral Framework for
    Stability and Interpretability in Deep Learning"; which statistics are kept is a choice of
    this library.

    Per-sample statistics (streamed into one :class:`~spectral_lab.quantiles.QuantileSketch` each,
    ``sketches``; kept in ``samples`` for plots, CPU float64, one value per sample, while the
    sketches hold every value, up to ``2**21`` samples; beyond that ``samples`` is empty, the
    quantiles come from the sketch and ``settings["per_sample"]`` says so with the rank error):
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
    sketches: Mapping[str, QuantileSketch] = field(default_factory=dict, compare=False)

    @property
    def ntk_condition(self) -> float | None:
        """``kappa(K) = lambda_max(K) / lambda_min(K)`` (``inf`` when ``K`` is singular)."""
        if self.ntk_top is None or self.ntk_min is None:
            return None
        return self.ntk_top / self.ntk_min if self.ntk_min > 0 else math.inf

    def with_q(self, q: float) -> StabilityProfile:
        """The same profile aggregated at quantile ``q`` (per-sample values are reused)."""
        q = _check_q(q)

        def agg(key):
            if key in self.samples:
                return quantile(self.samples[key], q)
            return self.sketches[key].quantile(q) if key in self.sketches else None

        return replace(
            self, q=q, jac_top=agg("jac_top"), jac_entropy_q=agg("jac_entropy"),
            param_top=agg("param_top"),
        )  # fmt: skip

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


def _check_args(q, operators, ntk_kind, num_ntk_samples, num_hessian_samples, max_iter, tol):
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
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be positive (relative Ritz residual), got {tol!r}")
    return q


@on_every_rank("stability_profile")  # dist (issue 25)
def stability_profile(
    model: nn.Module | Prepared,
    data: DataLike,
    q: float = 1.0,
    *,
    loss: str | LossFn = "auto",
    operators: Sequence[str] = OPERATORS,
    max_samples: int | None = 512,
    num_ntk_samples: int = 32,
    ntk_kind: str = "scalar",
    num_hessian_samples: int = 512,
    max_iter: int = 30,
    tol: float = 1e-3,
    entropy_base: float = math.e,
    batch_size: int = 128,
    chunk_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
    output=None,
    embedding=None,
    time_budget: float | None = None,
    matvec_budget: int | None = None,
    memory_budget: int | None = None,
    process_group: Any = None,
) -> StabilityProfile:
    """The Matrix Stability Profile of ``model`` on ``data``, aggregated with the quantile ``Q_q``.

    Per sample ``x_i``: ``sigma_1(J_f(x_i))``, ``||J_f(x_i)||_F / sqrt(C)``, the spectral entropy
    ``SE(J_f(x_i)) = -sum_k p_k log p_k`` with ``p_k = sigma_k^2 / sum_j sigma_j^2``, and
    ``sigma_1(J_theta(x_i))``; on the first samples ``lambda_max(K)/n``, ``lambda_min(K)/n`` of
    the NTK Gram ``K`` and ``lambda_max(H)`` of the loss Hessian (see :class:`StabilityProfile`).
    This is the one code path of the profile: :func:`~spectral_lab.diagnose` is this call plus
    its report, with these defaults (written here only).

    Args:
        model: any ``nn.Module`` or a :class:`~spectral_lab.prepare.Prepared`; it goes through
            :func:`~spectral_lab.prepare` once (eval mode, output adapter, token ids, labels
            against the loss, random and interacting models refused by what they do).
        data: inputs ``x`` (a tensor; labels are then the model's own predictions), ``(x, y)``,
            an ``ArrayDataset``/``Dataset`` or a ``DataLoader`` (streamed batch by batch).
            Floating-point inputs, or token ids (int64/int32) for a model with an
            ``nn.Embedding`` (input-space statistics at the embedding's output).
        q: quantile level over samples; ``1`` is the supremum (worst case, what the bounds need),
            ``0.95`` the robust variant the paper names for empirical diagnostics.
        loss: ``"auto"`` (``"mse"`` for float targets, ``"cross_entropy"`` for integer labels;
            without labels, by the number of outputs), ``"cross_entropy"``, ``"mse"``
            (``1/2 ||f - y||^2`` per sample, averaged) or a callable ``loss(logits, y) -> scalar``.
        operators: which of ``input_jacobian``, ``parameter_jacobian``, ``ntk``, ``hessian`` to
            compute (the others are ``None``).
        max_samples: cap on the samples streamed for the per-sample statistics (``None``: the
            whole data, of any length: a ``DataLoader`` over an ``IterableDataset`` without
            ``__len__`` too, its progress bar then counting without a total). The statistics are
            streamed into bounded-memory quantile sketches
            (:class:`~spectral_lab.quantiles.QuantileSketch`): exact, and kept in ``samples``, up
            to ``2**21`` samples; beyond that the quantiles carry the sketch's rank-error bound
            (``settings["per_sample"]``) and memory stays bounded whatever the data's length.
        num_ntk_samples: the dense NTK Gram uses the first ``num_ntk_samples`` samples of the
            stream, a documented subsample whatever ``max_samples`` is (``O(n^2 p)``; on a large
            model the Gram costs about ``n^2 C / 2`` VJP+JVP pairs); ``settings
            ["curvature_subsample"]`` records the sizes used.
        ntk_kind: ``"scalar"`` (``K_ij = tr J_i J_j^T``, the NTK the index uses) or ``"block"``
            (the ``nC x nC`` NTK of linearised dynamics). A choice, not from the paper.
        num_hessian_samples: the Hessian (matrix-free, Lanczos) uses the first that many samples
            of the stream (a subsample likewise; pass a shuffled ``DataLoader`` for a random one).
        max_iter: cap on the Lanczos products for ``lambda_max(H)``. Ritz values never exceed
            ``lambda_max``, so an unconverged run *under*-estimates it
            (``settings["hessian_converged"]``; a warning).
        tol: Lanczos stops when the Ritz residual of ``lambda_max(H)`` is below ``tol`` relative
            (so the value is within that relative error of an eigenvalue of ``H``).
        entropy_base: log base of the spectral entropy (``math.e`` nats, ``2`` bits).
        batch_size: samples per streamed batch (a DataLoader keeps its own).
        chunk_size: samples whose ``C x p`` parameter Jacobians are held at once (default: as
            many as fit in ``2**24`` elements).
        seed: the Lanczos start vector.
        progress: a progress bar per phase (off under ``SPECTRAL_LAB_HEADLESS=1``).
        output: which part of a tuple/dict output holds the logits (see
            :func:`~spectral_lab.prepare`).
        embedding: for token ids, the input embedding (see :func:`~spectral_lab.prepare`).
        time_budget: seconds of wall time the call may spend; what a budget skipped or stopped,
            and why, is in ``settings["budget"]`` (see :func:`~spectral_lab.diagnose`).
        matvec_budget: operator products the call may spend (one Hessian-vector or NTK-vector
            product; a dense Gram on ``n`` samples costs ``n``).
        memory_budget: bytes the chunks held at once may take (input-Jacobian rows and samples
            per pass, parameter-Jacobian chunks, NTK gradient chunks); ``None``: the phases'
            defaults. Smaller chunks give the same numbers, more slowly.
        process_group: under ``torch.distributed`` (``None``: the default group when it is
            initialised, else one process; ``False``: this rank alone) ``data`` is this rank's
            shard: the per-sample statistics of every rank are merged exactly (``max_samples``
            caps each rank's), the NTK and Hessian phases use the first samples of the
            concatenated data (rank 0's shard first), and every rank returns the same profile
            (:mod:`spectral_lab.distributed`).

    Budgets (see :mod:`spectral_lab._budget`): every phase times a probe (one sample, one
    product), predicts each piece (one output row, one chunk, one product) from the pieces done
    and starts none that would end past ``time_budget``; so the call returns within the budget
    plus one piece's misprediction. With a time budget and the NTK or Hessian asked for, the
    per-sample phases stop at 75% of it (the rest is kept for those). ``settings["budget"]``
    says per phase what was computed, what was cut, the seconds, the pieces' overrun past the
    budget, the products and the gradient-equivalents (one gradient of the loss on the ``n``
    samples is 1); ``settings["budget"]["memory"]`` the peak-memory figure and how it was
    measured.

    Returns:
        The :class:`StabilityProfile`; ``settings`` records the output, input space, loss,
        precision, routes and budget used.

    Cost: per sample ``C`` backward passes (input Jacobian) and one ``C x p`` parameter Jacobian;
    ``O(n_ntk^2 p)`` for the Gram; at most ``max_iter`` Hessian-vector products over ``n_hess``
    samples. Nothing of size ``p x p`` is formed. Runs on the device and dtype of the model's
    parameters; inputs are cast to them.

    Example:
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> prof = stability_profile(MLP(4, 3, width=8), (x, y), progress=False)
        >>> prof.n_ntk, prof.n_hess, prof.ntk_min <= prof.ntk_top, prof.settings["hessian_converged"]
        (16, 16, True, True)
    """
    from .._budget import Budget
    from ._profile_run import run_profile

    q = _check_args(q, operators, ntk_kind, num_ntk_samples, num_hessian_samples, max_iter, tol)
    _check_chunk(chunk_size)
    phases = Budget(time_budget, matvec_budget, progress, memory_budget)
    if {"ntk", "hessian"} & set(operators):
        phases.reserve = 0.25  # of a time budget, kept from the per-sample phases
    prep = prepare(model, data, loss=loss, output=output, embedding=embedding)
    if prep.loss is None:  # no labels: the model's own predictions stand in for them
        prep = prepare(prep, loss="cross_entropy" if prep.num_outputs > 1 else "mse")
    return run_profile(
        prep, data, q=q, operators=tuple(operators), max_samples=max_samples,
        num_ntk_samples=num_ntk_samples, ntk_kind=ntk_kind,
        num_hessian_samples=num_hessian_samples, max_iter=max_iter, tol=tol,
        entropy_base=entropy_base, batch_size=batch_size, chunk_size=chunk_size,
        elements=_ELEMENTS, seed=seed, phases=phases, process_group=process_group,
    )  # fmt: skip
