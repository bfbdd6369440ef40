"""The profile's computation, the one code path behind :func:`~spectral_lab.stability_profile`
and :func:`~spectral_lab.diagnose`: stream the per-sample statistics, then the NTK and Hessian
phases, every phase under one :class:`~spectral_lab._budget.Budget` (progress bars, time and
product budgets; unlimited by default)."""

from __future__ import annotations

import contextlib  # dist (issue 25)
import math
import warnings
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from .._budget import Budget, hessian_phase, input_jacobian_rows, ntk_phase, param_top
from ..distributed import local_only  # dist (issue 25)
from ..distributed._profile import agreed, gather_sketches  # dist (issue 25)
from ..prepared import LOW_PRECISION, Prepared
from ..quantiles import QuantileSketch
from ._common import _SAMPLE_KEYS


def entropy(s: torch.Tensor, base: float) -> torch.Tensor:
    """Spectral entropy of singular values ``s`` (energy normalisation ``p_k = s_k^2 / sum s^2``)."""
    from ..spectra import spectral_entropy

    return spectral_entropy(s, "energy", base=base, kind="singular")


def _total(data, max_samples: int | None) -> int | None:
    """The number of samples the stream will yield, or ``None`` when the data cannot say (an
    ``IterableDataset`` without ``__len__``, a generator): the bars then count without a total."""
    total = None
    if isinstance(data, tuple) and data and isinstance(data[0], torch.Tensor):
        total = len(data[0])  # an (x, y) pair
    elif isinstance(data, torch.Tensor):
        total = len(data)
    elif isinstance(data, list) and all(isinstance(b, (tuple, list)) and b for b in data):
        total = sum(len(b[0]) for b in data)  # a list of (x, y) batches
    elif hasattr(data, "__len__") and not isinstance(data, (tuple, list)):
        try:
            total = len(data.dataset) if isinstance(data, DataLoader) else len(data)
        except TypeError:  # an IterableDataset without __len__
            total = None
    if max_samples is not None:
        total = max_samples if total is None else min(total, max_samples)
    return total


SAMPLE_CAPACITY = 2**21
"""Per-sample values each statistic's :class:`~spectral_lab.quantiles.QuantileSketch` holds
exactly (16 MiB of float64 each); beyond it the quantiles come from the sketch's compaction, with
its rank-error bound in ``settings["per_sample"]``, and ``samples`` is empty."""


@torch.no_grad()
def run_profile(
    prep: Prepared,
    data,
    *,
    q: float,
    operators: Sequence[str],
    max_samples: int | None,
    num_ntk_samples: int,
    ntk_kind: str,
    num_hessian_samples: int,
    max_iter: int,
    tol: float,
    entropy_base: float,
    batch_size: int,
    chunk_size: int | None,
    elements: int,
    seed: int,
    phases: Budget,
    process_group=None,  # dist (issue 25): a resolved group, or None/False for one process
):
    """The Matrix Stability Profile of a prepared model (see
    :func:`~spectral_lab.stability.stability_profile` for every argument): one pass over the data
    for the per-sample statistics (the sample stream stops when the time budget is spent), then
    the NTK Gram and the Hessian's top eigenvalue on the first samples, each skipped or capped by
    ``phases`` with the reason recorded."""
    from ..spectra import singular_values
    from .profile import StabilityProfile

    # one bounded-memory sketch per statistic (exact while it holds every value), fed batch by batch
    sketches = {k: QuantileSketch(SAMPLE_CAPACITY) for k in _SAMPLE_KEYS}
    if "parameter_jacobian" not in operators:
        del sketches["param_top"]
    keep_x: list[torch.Tensor] = []
    keep_y: list[torch.Tensor] = []
    kept, labels_given = 0, True
    n_keep = max(
        num_ntk_samples if "ntk" in operators else 0,
        num_hessian_samples if "hessian" in operators else 0,
    )
    total = _total(data, max_samples)
    unknown = "" if total is not None else " (the data has no length: no total)"
    bar = phases.bar("input Jacobian" + unknown, total, "sample")
    pbar = phases.bar("parameter Jacobian" + unknown, total, "sample") if "param_top" in sketches else None  # fmt: skip
    t_samples = phases.elapsed()
    num_classes = input_dim = 0
    for xr, x, y in prep.batches(data, batch_size, max_samples):
        J = input_jacobian_rows(prep, xr, phases)  # rows in pieces under the budget
        if J is None:
            break
        xr, x = xr[: len(J)], x[: len(J)]
        num_classes, input_dim = prep.num_outputs, J.shape[2]  # J may hold fewer rows (cut)
        s = singular_values(J.float() if J.dtype in LOW_PRECISION else J).double()
        sketches["jac_top"].update(s[:, 0])
        sketches["jac_fro"].update(s.square().sum(1).sqrt() / math.sqrt(num_classes))
        sketches["jac_entropy"].update(entropy(s, entropy_base).double())
        bar.update(len(x))
        if pbar is not None:
            sketches["param_top"].update(param_top(prep, x, chunk_size, elements, pbar.update, phases))  # fmt: skip
        if kept < n_keep:  # the curvature phases' subsample: the first n_keep samples streamed
            take = min(len(x), n_keep - kept)
            keep_x.append(x[:take].detach())
            if y is None:
                labels_given = False
                out = prep.model(x[:take])
                keep_y.append(out if prep.loss == "mse" else out.argmax(1))
            else:
                keep_y.append(y[:take])
            kept += take
        why = phases.time_out("samples")
        if why:
            n_seen = sketches["jac_top"].count
            phases.capped["samples"] = f"the sample stream stopped after {n_seen} samples: {why}"
            break
    bar.close()
    if pbar is not None:
        pbar.close()
    phases.seconds["per-sample Jacobians"] = phases.elapsed() - t_samples
    n = sketches["jac_top"].count
    if n == 0:
        raise ValueError("data is empty; pass at least one sample")
    # --- dist (issue 25): every rank's sketches merged in rank order (exact, as the concatenation,
    # while they hold every value) and the first samples of the concatenated data, on which the
    # curvature phases below run replicated (spectral_lab.distributed._profile)
    group = process_group or None
    if group is not None:
        sketches, keep_x, keep_y, labels_given = gather_sketches(
            group, sketches, keep_x, keep_y, n_keep, labels_given
        )
        n = sketches["jac_top"].count
    curvature = local_only() if group is not None else contextlib.nullcontext()
    curvature.__enter__()
    # --- end dist
    exact = sketches["jac_top"].exact
    sketches = {k: v for k, v in sketches.items() if v.count}  # a phase cut before its first sample
    phases.ref_samples = n  # gradient-equivalents: one gradient on these n samples is 1
    if pbar is not None and "param_top" not in sketches:
        phases.skipped["parameter_jacobian"] = (
            phases.log("parameter_jacobian").cut or "no sample fitted in the time left"
        )
    samples = {k: v.values() for k, v in sketches.items()} if exact else {}
    per_sample = (
        f"all {n} kept in samples; exact quantiles"
        if exact
        else f"not kept: {n} samples exceed the capacity of {SAMPLE_CAPACITY}; quantiles from a "
        f"Manku-Rajagopalan-Lindsay sketch, rank error <= {sketches['jac_top'].rank_error:.2e}"
    )

    ntk_top = ntk_min = ntk_entropy = hess_top = None
    n_ntk = n_hess = 0
    hess_converged, hess_matvecs, hess_route = None, 0, None
    if keep_x:
        xs, ys = torch.cat(keep_x), torch.cat(keep_y)
        if "ntk" in operators:
            if len(xs) < 2:
                warnings.warn("the NTK needs at least 2 samples; skipped", stacklevel=3)
                if "samples" in phases.capped:
                    phases.skipped["ntk"] = (
                        f"the NTK needs at least 2 samples; the time budget stopped the stream "
                        f"after {len(xs)}"
                    )
            else:
                n_ntk = min(num_ntk_samples, len(xs))
                lam = ntk_phase(prep, xs[:n_ntk], ntk_kind, budget=phases)
                if lam is None:
                    n_ntk = 0
                else:  # the budget may have cut the Gram to its first samples
                    n_ntk = len(lam) // (1 if ntk_kind == "scalar" else prep.num_outputs)
                    ntk_top = float(lam[-1]) / n_ntk
                    ntk_min = max(float(lam[0]), 0.0) / n_ntk
                    # eigenvalues of K are the squared singular values of J: pass sqrt(lambda)
                    ntk_entropy = float(entropy(lam.clamp_min(0).sqrt(), entropy_base))
        if "hessian" in operators:
            n_hess = min(num_hessian_samples, len(xs))
            hess_top, hess_converged, hess_matvecs, hess_route = hessian_phase(
                prep, prep.loss, xs[:n_hess], ys[:n_hess], max_iter=max_iter, tol=tol,
                seed=seed, budget=phases,
            )  # fmt: skip
            if hess_top is None:
                n_hess = 0
            elif hess_converged is False and "hessian" not in phases.capped:
                warnings.warn(
                    f"Lanczos did not converge in max_iter={max_iter} products; "
                    "lambda_max(H) is a lower estimate (Ritz values never exceed it): raise "
                    "max_iter for a safe step-size bound",
                    stacklevel=3,
                )

    curvature.__exit__(None, None, None)  # dist (issue 25)

    for name, rec in phases.phases.items():
        phases.seconds.setdefault(name, rec.seconds)

    def agg(key):
        return sketches[key].quantile(q) if key in sketches else None

    return agreed(group, StabilityProfile(  # dist (issue 25): rank 0's result on every rank
        q=q, n=n, num_classes=num_classes, num_params=prep.num_params, input_dim=input_dim,
        jac_top=agg("jac_top"), jac_fro=sketches["jac_fro"].mean,
        jac_entropy=sketches["jac_entropy"].mean, jac_entropy_q=agg("jac_entropy"),
        param_top=agg("param_top"), ntk_top=ntk_top, ntk_min=ntk_min, ntk_entropy=ntk_entropy,
        hess_top=hess_top, n_ntk=n_ntk, n_hess=n_hess, samples=samples, sketches=sketches,
        settings={
            "per_sample": per_sample,
            "curvature_subsample": f"the first samples of the stream: {n_ntk} (NTK), {n_hess} (Hessian)",
            "entropy_base": entropy_base,
            "loss": prep.loss_name,
            "max_iter": max_iter,
            "hessian_tol": tol,
            "hessian_converged": hess_converged,
            "hessian_matvecs": hess_matvecs,
            "hessian_route": hess_route,
            "ntk_route": prep.routes.get("ntk") if n_ntk else None,
            "budget": phases.to_dict(),
            "ntk": "scalar (trace over outputs)" if ntk_kind == "scalar" else "block (nC x nC)",
            "quantile_rule": "higher",
            "labels": "given" if labels_given else "predicted by the model",
            "operators": tuple(operators),
            **{k: v for k, v in prep.notes.items() if k != "loss"},
        },
    ))  # fmt: skip
