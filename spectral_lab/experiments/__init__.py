"""A reproducible study: standard versus spectrally regularised ("stable") models, after the
experiments of "A Unified Matrix-Spectral Framework for Stability and Interpretability in Deep Learning" (Katende 2026).

For one data set and model, :func:`run_study` trains, for every seed, a *standard* model and a
*stable* one (same seed, same data order, plus a spectral penalty from
:mod:`spectral_lab.regularizers`), then measures on ``n_eval`` test points:

* ``accuracy`` — on the whole test split;
* ``SE`` — mean per-sample spectral entropy of ``J_f(x)`` (energy normalisation
  ``p_k = sigma_k^2 / sum_j sigma_j^2``) in base ``entropy_base`` (default 2, bits: the only base
  in which the paper's reported 3.10 fits a 10-class Jacobian, whose entropy is at most
  ``log 10``, 2.30 nats or 3.32 bits);
* ``ACN`` — median over samples of ``kappa_attr = sigma_1 / median_k sigma_k``;
* ``sigma1`` — median over samples of ``sigma_1(J_f(x))``;
* per noise scale ``s`` (``delta ~ N(0, s^2 I)``, pixel units, ``n_draws`` draws): ``FD`` (squared
  Fréchet distance between clean and perturbed saliency clouds, on the top-``fd_pca_dim`` principal
  components of the clean cloud), ``FD_shape`` (the same on unit-norm maps: blind to maps that
  merely shrink), ``delta_grad``, ``cosine``, ``topk``, ``agreement``.

The result is a tidy table (one row per variant x metric x scale with mean, std and the per-seed
values) plus every per-sample array. Each (variant, seed) run is cached on disk under ``cache_dir``
(default ``~/.cache/spectral_lab/studies``), keyed by everything that changes it: the
configuration, the SHA-256 of the data's bytes, of the package's ``.py`` sources and the torch
version (:mod:`.cache`), so a chapter can re-plot, and a strength sweep reuse the standard models,
without retraining, and a changed library never returns a stale run.

Everything here is a choice, not from the paper: the paper's model, regulariser,
strength, perturbation scale, SE base and FD definition are unknown. The only numbers the paper is
known to report are in :data:`PAPER_REPORTED`.

Example: see :func:`run_study` (a whole study in a few seconds).

Layout: :mod:`.config` (:class:`StudyConfig`, :func:`study_preset`), :mod:`.cache` (what a
cached run depends on beyond its configuration), :mod:`.study` (running,
caching and tabulating: :func:`run_study`, :func:`cached_study`, :func:`strength_sweep`,
:class:`StudyResult`, :func:`paper_table`), :mod:`.claims` (each of the paper's claims as a
verdict with its statistics: :func:`assess_claims`, :func:`rho_heterogeneity`, ...) and
:mod:`.stored` (the JSON summary kept in ``chapters/results/``). Every public name is re-exported
here; the statistics behind the correlation verdict (``_z_se``, ``rho_heterogeneity``) are looked
up on this package at call time, so ``mock.patch.object(sl.experiments, name, wrong)`` reaches them.
"""

from __future__ import annotations

from .claims import (
    ACC_POINTS,
    ALPHA,
    FD_SUBSTANTIAL,
    SE_SEED_SDS,
    SPEARMAN_Z_VARIANCE,
    WEAK_RHO,
    Claim,
    assess_claims,
    entropy_instability_relation,
    envelope_trend_bootstrap,
    format_claims,
    rho_heterogeneity,
)
from .claims import _ci as _ci
from .claims import _fd_verdict as _fd_verdict
from .claims import _ratio_stats as _ratio_stats
from .claims import _z_se as _z_se
from .config import CACHE_FORMAT, DATASETS, StudyConfig, study_preset
from .stored import (
    SUMMARY_FORMAT,
    format_summary_table,
    load_study_summary,
    save_study_summary,
    study_summary,
)
from .stored import _jsonable as _jsonable
from .study import (
    PAPER_PROVENANCE,
    PAPER_REPORTED,
    StudyResult,
    cached_study,
    load_study_data,
    paper_table,
    run_study,
    strength_sweep,
)
from .study import _cache_dir as _cache_dir
from .study import _jacobian_entropy as _jacobian_entropy
from .study import _pm as _pm
from .study import _row as _row
from .study import _run_one as _run_one
from .training_runs import (
    Run,
    RunSpec,
    SeedRuns,
    late_ratio,
    loglog_slope,
    seed_interval,
    seed_runs,
)

__all__ = [
    "ACC_POINTS",
    "ALPHA",
    "CACHE_FORMAT",
    "DATASETS",
    "FD_SUBSTANTIAL",
    "PAPER_PROVENANCE",
    "PAPER_REPORTED",
    "SE_SEED_SDS",
    "SPEARMAN_Z_VARIANCE",
    "SUMMARY_FORMAT",
    "WEAK_RHO",
    "Claim",
    "StudyConfig",
    "StudyResult",
    "assess_claims",
    "cached_study",
    "entropy_instability_relation",
    "envelope_trend_bootstrap",
    "format_claims",
    "format_summary_table",
    "load_study_data",
    "load_study_summary",
    "paper_table",
    "rho_heterogeneity",
    "run_study",
    "save_study_summary",
    "strength_sweep",
    "Run",
    "RunSpec",
    "SeedRuns",
    "late_ratio",
    "loglog_slope",
    "seed_interval",
    "seed_runs",
    "study_preset",
    "study_summary",
]
