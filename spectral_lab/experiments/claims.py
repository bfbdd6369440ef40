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
(default ``~/.cache/spectral_lab/studies``), keyed by everything that changes it, so a chapter can
re-plot, and a strength sweep reuse the standard models, without retraining.

Everything here is a choice, not from the paper: the paper's model, regulariser,
strength, perturbation scale, SE base and FD definition are unknown. The only numbers the paper is
known to report are in :data:`PAPER_REPORTED`.

Example: see :func:`run_study` (a whole study in a few seconds).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__ as _version
from ._results import Result
from .attribution import attribution_instability, upper_envelope
from .data import default_cache_dir, load_dataset
from .jacobians import input_jacobian
from .models import build_model
from .regularizers import make_regularizer
from .training import evaluate, train

PAPER_REPORTED: dict[str, dict] = {
    "cifar10": {
        "standard": {"SE": 3.101, "FD": 220.445},
        "stable": {"SE": 3.102, "FD": 51.165},
    },
    "cifar100": {},  # "shows a similar pattern": no numbers are known
}
PAPER_PROVENANCE = (
    "Katende (2026), 'A Unified Matrix-Spectral Framework for Stability and Interpretability in "
    "Deep Learning', arXiv:2602.01136, §6.3 Table 1 (CIFAR-10, standard -> stable), as quoted by "
    "a structured summary of the paper (the course could not read the paper's tables itself). "
    "CIFAR-100: 'shows a similar pattern', no numbers. Unknown: the paper's model, regulariser, "
    "strength, noise scale, SE base (3.10 fits only base 2 for a 10-class Jacobian) and the exact "
    "FD definition, so these numbers are not directly comparable with any run here."
)
DATASETS = ("digits", "mnist", "cifar10", "cifar100")
CACHE_FORMAT = "spectral_lab.study-run/3"


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study (all defaults are choices, not from the paper).

    The ``n_*`` fields keep their names (they key the on-disk cache and the stored studies).

    Example:
        >>> cfg = StudyConfig(epochs=1).replace(seeds=(0,))
        >>> cfg.seeds, cfg.run_key("standard", 0) == cfg.replace(strength=9.0).run_key("standard", 0)
        ((0,), True)
    """

    dataset: str = "digits"
    model: str = "mlp"
    model_kwargs: dict = field(default_factory=lambda: {"width": 128, "depth": 3})
    regularizer: str = "jacobian_frobenius"
    strength: float = 0.01
    seeds: tuple[int, ...] = (0, 1, 2)
    scales: tuple[float, ...] = (0.01, 0.03, 0.1)
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 128
    n_train: int | None = None
    n_eval: int = 300
    n_draws: int = 8
    method: str = "saliency"
    fd_pca_dim: int | None = 32
    fd_normalize: bool = False
    n_boot: int = 200
    entropy_base: float = 2.0
    reg_samples: int | None = 32
    reg_kwargs: dict = field(default_factory=dict)
    data_root: str | None = None
    verify: bool = True

    def replace(self, **kw) -> StudyConfig:
        return dataclasses.replace(self, **kw)

    def run_key(self, variant: str, seed: int) -> str:
        """Hash of everything that changes one (variant, seed) run, including the data root and
        ``verify``; the standard run ignores the regulariser so a strength sweep reuses it.
        (Bump ``CACHE_FORMAT`` when the measurement code changes.)"""
        d = dataclasses.asdict(self)
        d.pop("seeds")  # data_root and verify stay: re-packed test files never alias real data
        if variant == "standard":
            d.update(regularizer="none", strength=0.0, reg_samples=None, reg_kwargs={})
        d.update(variant=variant, seed=int(seed), format=CACHE_FORMAT)
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def study_preset(dataset: str, quick: bool = False) -> StudyConfig:
    """The settings ``spectral-lab reproduce`` uses (choices, not the paper's).

    Full: MNIST — MLP 784-256-256-10, 5 epochs, seeds 0-2; CIFAR — 3-conv CNN (32-64-128), 10
    epochs; digits — MLP 64-128-128-10, 30 epochs. ``quick`` shrinks data, epochs and seeds so the
    MNIST run takes seconds (for CI).

    Example:
        >>> study_preset("mnist").model_kwargs, study_preset("digits", quick=True).seeds
        ({'width': 256, 'depth': 3}, (0, 1))
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset == "digits":
        cfg = StudyConfig(
            dataset="digits", epochs=30, batch_size=64, lr=3e-3, n_eval=360, strength=0.003
        )
        return cfg.replace(epochs=10, seeds=(0, 1), n_draws=4) if quick else cfg
    if dataset == "mnist":
        cfg = StudyConfig(
            dataset="mnist",
            model_kwargs={"width": 256, "depth": 3},
            epochs=5,
            n_eval=500,
            strength=0.001,
        )
        if quick:
            cfg = cfg.replace(
                model_kwargs={"width": 128, "depth": 3},
                n_train=3000,
                epochs=2,
                seeds=(0, 1),
                n_eval=128,
                n_draws=4,
                scales=(0.03, 0.1),
            )
        return cfg
    cfg = StudyConfig(
        dataset=dataset,
        model="cnn",
        model_kwargs={"channels": (32, 64, 128)},
        epochs=10,
        n_eval=500,
        strength=0.001,
        fd_pca_dim=64,
    )
    if quick:
        cfg = cfg.replace(
            model_kwargs={"channels": (8, 16)},
            n_train=2000,
            epochs=1,
            seeds=(0,),
            n_eval=64,
            n_draws=2,
            scales=(0.03,),
        )
    return cfg


# --------------------------------------------------------------------------- running
def _cache_dir(cache_dir) -> Path | None:
    if cache_dir is False:
        return None
    if cache_dir is None:
        cache_dir = os.environ.get("SPECTRAL_LAB_CACHE") or default_cache_dir().parent / "studies"
    p = Path(cache_dir).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p


def _jacobian_entropy(J: torch.Tensor, base: float) -> torch.Tensor:
    """Per-sample spectral entropy of ``J`` (the one call site of ``spectra.spectral_entropy``)."""
    from .spectra import spectral_entropy

    return spectral_entropy(J, base=base)


def load_study_data(cfg: StudyConfig):
    """``(train_set, test_set)`` for ``cfg`` (raises ``DatasetNotFoundError`` when files are absent).
    CPU tensors, as :func:`~spectral_lab.data.load_dataset` returns them.

    Example:
        >>> train_set, test_set = load_study_data(StudyConfig(n_train=100))
        >>> len(train_set), len(test_set)
        (100, 360)
    """
    train_set = load_dataset(cfg.dataset, "train", cfg.data_root, verify=cfg.verify)
    test_set = load_dataset(cfg.dataset, "test", cfg.data_root, verify=cfg.verify)
    if cfg.n_train is not None:
        train_set = train_set.subset(cfg.n_train, seed=0)
    return train_set, test_set


def _run_one(cfg: StudyConfig, variant: str, seed: int, train_set, test_set, progress: bool):
    torch.manual_seed(seed)
    model = build_model(cfg.model, train_set.input_shape, train_set.num_classes, **cfg.model_kwargs)
    reg = None
    if variant == "stable":
        reg = make_regularizer(
            cfg.regularizer, cfg.strength, max_samples=cfg.reg_samples, seed=seed, **cfg.reg_kwargs
        )
    t0 = time.perf_counter()
    hist = train(
        model,
        train_set,
        epochs=cfg.epochs,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        extra_loss=reg,
        seed=seed,
        progress=progress,
    )
    train_s = time.perf_counter() - t0
    model.eval()
    _, acc = evaluate(model, test_set)
    x, y = test_set.subset(cfg.n_eval, seed=1234).tensors()
    J = input_jacobian(model, x, chunk_size=256)
    sigma = torch.linalg.svdvals(J)
    se = _jacobian_entropy(J, cfg.entropy_base)
    acn = sigma[:, 0] / sigma.quantile(0.5, dim=1)
    inst = attribution_instability(
        model,
        x,
        cfg.scales,
        num_draws=cfg.n_draws,
        method=cfg.method,
        fd_pca_dim=cfg.fd_pca_dim,
        fd_normalize=cfg.fd_normalize,
        fd_bootstrap=cfg.n_boot,
        bootstrap_seed=0,  # the same point resamples for every model: paired replicates
        seed=seed,
    )
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).float()
    k = min(8, len(x))
    return {
        "format": CACHE_FORMAT,
        "version": _version,
        "variant": variant,
        "seed": int(seed),
        "accuracy": float(acc),
        "train_seconds": float(train_s),
        "final_train_loss": float(hist.final("train_loss")),
        "se": se.detach().float(),
        "acn": acn.detach().float(),
        "sigma": sigma.detach().float(),
        "delta_grad": inst.delta_grad.float(),
        "cosine": inst.cosine_distance.float(),
        "topk": inst.topk_overlap.float(),
        "agreement": inst.agreement.float(),
        "fd": inst.fd.float(),
        "fd_shape": inst.fd_shape.float(),
        "fd_boot": inst.fd_boot.float() if inst.fd_boot is not None else None,
        "fd_shape_boot": inst.fd_shape_boot.float() if inst.fd_shape_boot is not None else None,
        "correct": correct,
        "labels": y[:k].clone(),
        "images": x[:k].float().clone(),
        "maps_clean": inst.clean[:k].float().clone(),
        "maps_perturbed": inst.perturbed[:, :k].float().clone(),
        "state_dict": {k2: v.detach().clone() for k2, v in model.state_dict().items()},
    }


@dataclass(frozen=True)
class StudyResult(Result):
    """Per-(variant, seed) run records and the tidy table built from them. Returned by
    :func:`run_study`; ``to_dict()`` gives plain Python (tensors become lists)."""

    config: StudyConfig
    runs: dict = field(repr=False)  # (variant, seed) -> record dict
    seconds: float = 0.0
    cached: int = 0

    def record(self, variant: str, seed: int) -> dict:
        return self.runs[(variant, seed)]

    def per_sample(self, variant: str, key: str) -> np.ndarray:
        """``key`` (``se``, ``acn``, ``delta_grad`` ...) stacked over seeds: ``(seeds, ...)``."""
        return np.stack([self.runs[(variant, s)][key].numpy() for s in self.config.seeds])

    def table(self) -> list[dict]:
        """Tidy rows: ``variant, metric, scale, mean, std, values`` (std over seeds, ddof=1)."""
        rows = []
        for variant in ("standard", "stable"):
            recs = [self.runs[(variant, s)] for s in self.config.seeds]
            scalar = {
                "accuracy": [r["accuracy"] for r in recs],
                "SE": [float(r["se"].mean()) for r in recs],
                "ACN": [float(r["acn"].median()) for r in recs],
                "sigma1": [float(r["sigma"][:, 0].median()) for r in recs],
                "train_seconds": [r["train_seconds"] for r in recs],
            }
            for metric, vals in scalar.items():
                rows.append(_row(variant, metric, None, vals))
            for i, s in enumerate(self.config.scales):
                for metric, key, red in (
                    ("FD", "fd", None),
                    ("FD_shape", "fd_shape", None),
                    ("delta_grad", "delta_grad", "mean"),
                    ("cosine", "cosine", "mean"),
                    ("topk", "topk", "mean"),
                    ("agreement", "agreement", "mean"),
                ):
                    vals = [
                        float(r[key][i]) if red is None else float(r[key][i].mean()) for r in recs
                    ]
                    rows.append(_row(variant, metric, s, vals))
        return rows

    def value(self, variant: str, metric: str, scale: float | None = None) -> dict:
        for r in self.table():
            if r["variant"] == variant and r["metric"] == metric and r["scale"] == scale:
                return r
        raise KeyError(f"no row for {variant}/{metric}/{scale}")

    def format_table(self, paper: bool = True) -> str:
        """Plain-text table: metric, scale, standard and stable (mean ± std over seeds), ratio."""
        cfg = self.config
        lines = [
            f"dataset={cfg.dataset}  model={cfg.model} {cfg.model_kwargs}  regulariser="
            f"{cfg.regularizer} (strength {cfg.strength:g})  seeds={list(cfg.seeds)}  "
            f"epochs={cfg.epochs}  n_eval={cfg.n_eval}  SE in base {cfg.entropy_base:g}  "
            f"FD squared, PCA {cfg.fd_pca_dim}",
            f"{'metric':<14}{'scale':>7}  {'standard':>20}  {'stable':>20}  {'stable/std':>10}",
        ]
        std = {(r["metric"], r["scale"]): r for r in self.table() if r["variant"] == "standard"}
        for r in self.table():
            if r["variant"] != "stable" or r["metric"] == "train_seconds":
                continue
            a = std[(r["metric"], r["scale"])]
            ratio = r["mean"] / a["mean"] if a["mean"] else float("nan")
            sc = "" if r["scale"] is None else f"{r['scale']:g}"
            lines.append(f"{r['metric']:<14}{sc:>7}  {_pm(a):>20}  {_pm(r):>20}  {ratio:>10.3f}")
        if paper and cfg.dataset in ("cifar10", "cifar100"):
            lines.append(paper_table(cfg.dataset))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"StudyResult(dataset={self.config.dataset!r}, seeds={list(self.config.seeds)}, "
            f"runs={len(self.runs)}, cached={self.cached}, seconds={self.seconds:.1f})"
        )


def _row(variant, metric, scale, vals) -> dict:
    v = np.asarray(vals, dtype=float)
    return {
        "variant": variant,
        "metric": metric,
        "scale": scale,
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "values": v.tolist(),
    }


def _pm(r: dict) -> str:
    m, s = r["mean"], r["std"]
    return f"{m:.4g} ± {s:.2g}"


def paper_table(dataset: str = "cifar10") -> str:
    """The paper's reported numbers (:data:`PAPER_REPORTED`) as text, with provenance.

    Example:
        >>> paper_table("cifar10").split(". Source")[0]
        'paper (cifar10, reported; definitions unknown): SE 3.101 -> 3.102, FD 220.445 -> 51.165 (FD ratio 0.232)'
    """
    rep = PAPER_REPORTED.get(dataset) or {}
    if not rep:
        return (
            f"paper ({dataset}): no numbers reported ('similar pattern' to CIFAR-10). "
            f"Source: {PAPER_PROVENANCE}"
        )
    return (
        f"paper ({dataset}, reported; definitions unknown): SE {rep['standard']['SE']} -> "
        f"{rep['stable']['SE']}, FD {rep['standard']['FD']} -> {rep['stable']['FD']} "
        f"(FD ratio {rep['stable']['FD'] / rep['standard']['FD']:.3f}). Source: "
        f"{PAPER_PROVENANCE}"
    )


def run_study(
    cfg: StudyConfig,
    *,
    cache_dir: str | os.PathLike | bool | None = None,
    force: bool = False,
    progress: bool = True,
    data=None,
) -> StudyResult:
    """Train and measure the standard and stable models for every seed of ``cfg``.

    ``cache_dir``: where runs are cached (None: ``$SPECTRAL_LAB_CACHE`` or
    ``~/.cache/spectral_lab/studies``; False: no cache). ``force`` retrains even when cached.
    ``data``: ``(train_set, test_set)`` to use instead of loading ``cfg.dataset``.
    Cost: ``2 * len(seeds)`` trainings (the stable one pays the penalty's cost per step, see
    :mod:`spectral_lab.regularizers`) plus the attribution study on ``n_eval`` points. Runs on
    the CPU (the models are built there); the records hold CPU tensors.

    Example: a whole (tiny) study, its claims and its stored summary.
        >>> import tempfile
        >>> cfg = StudyConfig(model_kwargs={"width": 16, "depth": 2}, epochs=1, seeds=(0, 1),
        ...                   scales=(0.05,), n_eval=40, n_draws=2, fd_pca_dim=4, n_boot=20)
        >>> res = run_study(cfg, cache_dir=False, progress=False)
        >>> sorted(res.runs), [r["metric"] for r in res.table()][:3]
        ([('stable', 0), ('stable', 1), ('standard', 0), ('standard', 1)], ['accuracy', 'SE', 'ACN'])
        >>> claims = assess_claims(res)
        >>> all(c.verdict in ("supported", "mixed", "inconclusive", "not supported") for c in claims)
        True
        >>> entropy_instability_relation(res)["n"]
        [40, 40]
        >>> path = tempfile.mkdtemp() + "/study.json"
        >>> _ = save_study_summary(res, path, command="doctest")
        >>> format_summary_table(load_study_summary(path)).split()[:3]
        ['metric', 'scale', 'standard']
    """
    if cfg.dataset not in DATASETS and data is None:
        raise ValueError(f"dataset must be one of {DATASETS}, got {cfg.dataset!r}")
    if not cfg.seeds:
        raise ValueError("seeds must hold at least one seed")
    if cfg.strength <= 0 or cfg.regularizer == "none":
        raise ValueError("the stable model needs a regulariser and a strength > 0")
    folder = _cache_dir(cache_dir)
    t0 = time.perf_counter()
    train_set = test_set = None
    runs, cached = {}, 0
    for seed in cfg.seeds:
        for variant in ("standard", "stable"):
            path = (
                None
                if folder is None
                else folder / f"{cfg.dataset}-{cfg.run_key(variant, seed)}.pt"
            )
            if path is not None and path.is_file() and not force:
                try:
                    runs[(variant, seed)] = torch.load(path, weights_only=True)
                    cached += 1
                    continue
                except Exception:  # a corrupt cache entry is recomputed, not trusted
                    pass
            if train_set is None:
                train_set, test_set = data if data is not None else load_study_data(cfg)
            rec = _run_one(cfg, variant, seed, train_set, test_set, progress)
            if path is not None:
                torch.save(rec, path)
            runs[(variant, seed)] = rec
    return StudyResult(cfg, runs, time.perf_counter() - t0, cached)


def cached_study(
    cfg: StudyConfig, cache_dir: str | os.PathLike | None = None
) -> StudyResult | None:
    """The :class:`StudyResult` of ``cfg`` if *every* run is in the cache, else ``None`` (never
    trains). ``cache_dir`` as in :func:`run_study`. Cost: reading the cached records.

    Example:
        >>> import tempfile
        >>> cached_study(StudyConfig(seeds=(0,)), cache_dir=tempfile.mkdtemp()) is None
        True
    """
    folder = _cache_dir(cache_dir)
    paths = [
        folder / f"{cfg.dataset}-{cfg.run_key(v, s)}.pt"
        for s in cfg.seeds
        for v in ("standard", "stable")
    ]
    if not all(p.is_file() for p in paths):
        return None
    try:
        return run_study(cfg, cache_dir=folder, progress=False, data=((), ()))
    except Exception:  # a corrupt entry would need retraining: report "not cached"
        return None


def strength_sweep(
    cfg: StudyConfig, strengths: Sequence[float], **kwargs
) -> dict[float, StudyResult]:
    """:func:`run_study` at several strengths (standard runs are shared through the cache).

    Cost: ``len(seeds)`` standard trainings (once, if cached) plus ``len(strengths) * len(seeds)``
    stable ones. Example: see :func:`run_study`, which runs a whole tiny study."""
    return {float(s): run_study(cfg.replace(strength=float(s)), **kwargs) for s in strengths}


# --------------------------------------------------------------------------- claims
#: two-sided level of every interval and test below
ALPHA = 0.05
#: Spearman's Fisher-z variance factor: var(atanh rho_s) ~= 1.06 / (n - 3)
#: (Fieller, Hartley & Pearson 1957); 1 for Pearson's r.
SPEARMAN_Z_VARIANCE = 1.06
#: "weak" correlation: the pooled rho's confidence interval lies inside (-WEAK_RHO, WEAK_RHO)
#: (Cohen's conventional small/medium boundary; a convention about size, not about noise)
WEAK_RHO = 0.3
#: "substantially lowers FD": the point ratio stable/standard is at most this (at least halved)
FD_SUBSTANTIAL = 0.5
#: "changes little": |Delta SE| at most this many seed-to-seed standard deviations
SE_SEED_SDS = 2.0
#: "modest": the accuracy cost (points) whose upper confidence bound must stay below it
ACC_POINTS = 1.0


@dataclass(frozen=True)
class Claim(Result):
    """One of the paper's claims, what this run says about it, why, and the statistics behind it.

    ``verdict`` is ``"supported"``, ``"mixed"`` (part of a two-part claim holds),
    ``"inconclusive"`` (the interval straddles the decision value) or ``"not supported"``.
    ``stats`` holds the effect size, its confidence interval and test statistics (JSON-safe).
    """

    claim: str
    verdict: str
    evidence: str
    stats: dict = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        return f"[{self.verdict}] {self.claim} — {self.evidence}"


def _z_se(n: int) -> float:
    """Standard error of the Fisher-z transformed Spearman rho of ``n`` pairs."""
    return float(np.sqrt(SPEARMAN_Z_VARIANCE / (n - 3)))


def rho_heterogeneity(rhos: Sequence[float], ns: Sequence[int]) -> dict:
    """Are several Spearman correlations (one per seed) the same? Cochran's Q on Fisher's z.

    ``z_i = atanh(rho_i)`` with ``se_i = sqrt(1.06 / (n_i - 3))``; weights ``w_i = 1/se_i^2``;
    ``Q = sum w_i (z_i - z_bar)^2`` is chi-square with ``k - 1`` degrees of freedom when all seeds
    share one correlation (p from ``scipy.stats.chi2``). Also returns the pooled (inverse-variance
    weighted) rho with its ``1 - ALPHA`` interval. ``k = 1`` gives ``Q = 0, p = 1``.
    Cost: ``O(k)``; NumPy/SciPy float64.

    Example: equal correlations are perfectly homogeneous.
        >>> h = rho_heterogeneity([0.5, 0.5, 0.5], [100, 100, 100])
        >>> round(h["Q"], 12), round(h["p"], 6), round(h["pooled_rho"], 6)
        (0.0, 1.0, 0.5)
    """
    from scipy.stats import chi2, norm

    r = np.clip(np.asarray(rhos, dtype=float), -0.999999, 0.999999)
    n = np.asarray(ns, dtype=float)
    if r.shape != n.shape or r.size == 0 or (n <= 3).any():
        raise ValueError("rhos and ns must have the same non-zero length, and every n > 3")
    z = np.arctanh(r)
    se = np.array([_z_se(int(k)) for k in n])
    w = 1 / se**2
    zbar = float((w * z).sum() / w.sum())
    q = float((w * (z - zbar) ** 2).sum())
    df = r.size - 1
    p = float(chi2.sf(q, df)) if df > 0 else 1.0
    half = float(norm.ppf(1 - ALPHA / 2)) / np.sqrt(w.sum())
    return {
        "Q": q,
        "df": df,
        "p": p,
        "pooled_rho": float(np.tanh(zbar)),
        "pooled_ci": [float(np.tanh(zbar - half)), float(np.tanh(zbar + half))],
        "z_se": se.tolist(),
    }


def _ci(reps) -> list[float]:
    reps = np.asarray(reps, dtype=float)
    return [float(np.quantile(reps, ALPHA / 2)), float(np.quantile(reps, 1 - ALPHA / 2))]


def entropy_instability_relation(
    res: StudyResult, variant: str = "standard", scale: float | None = None, bins: int = 6
) -> dict:
    """Per seed: Spearman rho of per-sample SE vs Delta_grad (with scipy's p-value), the upper
    envelope's trend, and the heterogeneity test of the rhos (:func:`rho_heterogeneity`).
    Cost: one sort per seed. Example: see :func:`run_study`, which runs a whole tiny study."""
    from scipy.stats import spearmanr

    i = len(res.config.scales) // 2 if scale is None else res.config.scales.index(scale)
    rhos, ps, ns, trends = [], [], [], []
    for s in res.config.seeds:
        r = res.runs[(variant, s)]
        se, dg = r["se"].numpy(), r["delta_grad"][i].numpy()
        t = spearmanr(se, dg)
        rhos.append(float(t.statistic))
        ps.append(float(t.pvalue))
        ns.append(len(se))
        trends.append(upper_envelope(se, dg, bins=bins).trend)
    return {
        "scale": res.config.scales[i],
        "rho": rhos,
        "p": ps,
        "n": ns,
        "envelope_trend": trends,
        "heterogeneity": rho_heterogeneity(rhos, ns),
    }


def envelope_trend_bootstrap(
    x: np.ndarray, y: np.ndarray, idx: np.ndarray, bins: int = 6, q: float = 0.95
) -> np.ndarray:
    """``upper_envelope(x[row], y[row], bins, q).trend`` for every row of the index array ``idx``
    (``(B, n)``), vectorised over rows: the same equal-count bins, medians, quantiles and Spearman
    trend (average ranks) as :func:`spectral_lab.attribution.upper_envelope`.
    Cost: ``O(B n log n)`` for ``B`` rows; NumPy/SciPy float64.

    Example: the vectorised trends equal the one-at-a-time ones.
        >>> from spectral_lab.attribution import upper_envelope
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.random(60), rng.random(60)
        >>> idx = rng.integers(0, 60, (3, 60))
        >>> fast = envelope_trend_bootstrap(x, y, idx)
        >>> bool(np.allclose(fast, [upper_envelope(x[i], y[i], bins=6).trend for i in idx]))
        True
    """
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=float)[idx], np.asarray(y, dtype=float)[idx]
    order = np.argsort(x, axis=1, kind="stable")
    xs, ys = np.take_along_axis(x, order, 1), np.take_along_axis(y, order, 1)
    edges = np.cumsum([0] + [len(p) for p in np.array_split(np.arange(x.shape[1]), bins)])
    centers = np.stack([np.median(xs[:, a:b], axis=1) for a, b in zip(edges, edges[1:])], 1)
    upper = np.stack([np.quantile(ys[:, a:b], q, axis=1) for a, b in zip(edges, edges[1:])], 1)
    rc, ru = rankdata(centers, axis=1), rankdata(upper, axis=1)
    rc, ru = rc - rc.mean(1, keepdims=True), ru - ru.mean(1, keepdims=True)
    den = np.sqrt((rc**2).sum(1) * (ru**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rc * ru).sum(1) / den


def _ratio_stats(res: StudyResult, key: str, i: int) -> dict:
    """Mean-over-seeds ratio stable/standard of a per-run FD, per-seed ratios, and the paired
    bootstrap interval over test points (replicate b: sum_seeds stable_b / sum_seeds standard_b)."""
    seeds = res.config.seeds
    a = np.array([float(res.runs[("standard", s)][key][i]) for s in seeds])
    b = np.array([float(res.runs[("stable", s)][key][i]) for s in seeds])
    ratio = float(b.mean() / a.mean()) if a.mean() > 0 else float("nan")
    boots = [res.runs[(v, s)].get(key + "_boot") for v in ("standard", "stable") for s in seeds]
    if all(x is not None for x in boots):
        ba = np.stack([res.runs[("standard", s)][key + "_boot"][i].numpy() for s in seeds])
        bb = np.stack([res.runs[("stable", s)][key + "_boot"][i].numpy() for s in seeds])
        ci = _ci(bb.sum(0) / ba.sum(0))
    else:  # no replicates stored: the range over seeds, and say so
        ci = [float((b / a).min()), float((b / a).max())]
    return {
        "ratio": ratio,
        "ci": ci,
        "bootstrap": all(x is not None for x in boots),
        "per_seed": (b / a).tolist(),
        "standard": a.tolist(),
        "stable": b.tolist(),
    }


def _fd_verdict(st: dict) -> str:
    lo, hi = st["ci"]
    if hi < 1:
        return "supported" if st["ratio"] <= FD_SUBSTANTIAL else "mixed"
    return "not supported" if lo > 1 else "inconclusive"


def assess_claims(res: StudyResult, scale: float | None = None, seed: int = 0) -> list[Claim]:
    """Which of the paper's claims this run supports: every verdict is a statistic.

    Intervals are ``1 - ALPHA`` (95 %); bootstrap intervals resample the ``n_eval`` test points
    (paired: the same resamples for both models and every seed; ``seed`` seeds those drawn here).
    The claims, in order:

    0. **FD of raw maps drops substantially.** Effect: ratio of mean FD (stable / standard) at the
       middle noise scale, with the bootstrap interval stored in the runs. Supported iff the
       interval lies below 1 (a real drop) *and* the ratio is at most ``FD_SUBSTANTIAL`` = 0.5
       ("substantially"; the paper's CIFAR-10 ratio is 0.23); "mixed" iff it is a real drop but
       smaller; "not supported" iff the interval lies above 1; otherwise "inconclusive".
       Caveat: raw FD is in squared attribution units, ``FD(tA, tB) = t^2 FD(A, B)``, so a
       regulariser that merely shrinks the maps passes this.
    1. **FD of unit-norm maps drops** (the maps get more stable in *shape*): same rule on
       ``FD_shape``; this is the verdict that carries "the explanations are more stable", since
       it cannot be passed by shrinking. The Delta_grad ratio is reported alongside.
    2. **Mean SE changes little.** Effect: Delta SE (stable - standard, mean over seeds), its
       bootstrap interval, and the seed-to-seed standard deviation ``sd`` of mean SE (pooled over
       the two variants) — the noise floor of retraining. Supported iff
       ``|Delta SE| <= SE_SEED_SDS * sd`` (the regulariser moves SE no more than a new seed does);
       with one seed, iff the bootstrap interval contains 0.
    3. **Modest accuracy cost.** Effect: per-seed paired drop in points; ``t`` interval over seeds
       (``scipy.stats.t``, ``k - 1`` degrees of freedom). Supported iff the upper end is below
       ``ACC_POINTS`` = 1 point; not supported iff the lower end is at or above it;
       otherwise (or with one seed) inconclusive.
    4. **Per-sample SE–Delta_grad correlation is weak and seed dependent.** Weak iff the pooled
       Spearman rho's interval lies inside ``(-WEAK_RHO, WEAK_RHO)``; seed dependent iff Cochran's
       Q test of the Fisher-z rhos rejects equality at ``ALPHA`` (:func:`rho_heterogeneity`).
       Supported iff both, "mixed" iff one, else not supported. Sign and p-value of each rho
       are reported.
    5. **Entropy bounds the unstable regime** (falling 95 % envelope of Delta_grad vs SE). Effect:
       the mean over seeds of the envelope trend; bootstrap interval over points. Supported iff
       the interval lies below 0; not supported iff above 0; otherwise inconclusive.

    Cost: a few thousand bootstrap resamples of ``n_eval`` points; NumPy/SciPy float64.
    Example: see :func:`run_study`, which runs a whole tiny study.
    """
    from scipy.stats import t as student_t

    cfg = res.config
    sc = cfg.scales[len(cfg.scales) // 2] if scale is None else float(scale)
    i = cfg.scales.index(sc)
    rng = np.random.default_rng(seed)
    k = len(cfg.seeds)
    out = []

    fd = _ratio_stats(res, "fd", i)
    shp = _ratio_stats(res, "fd_shape", i)
    dg0, dg1 = res.value("standard", "delta_grad", sc), res.value("stable", "delta_grad", sc)
    dg_ratio = dg1["mean"] / dg0["mean"] if dg0["mean"] > 0 else float("nan")
    kind = "bootstrap over test points" if fd["bootstrap"] else "range over seeds"
    out.append(
        Claim(
            "modest spectral regularisation substantially lowers attribution FD (raw maps)",
            _fd_verdict(fd),
            f"FD at s={sc:g}: ratio stable/standard {fd['ratio']:.3f}, 95% CI "
            f"[{fd['ci'][0]:.3f}, {fd['ci'][1]:.3f}] ({kind}); per seed "
            f"{np.round(fd['per_seed'], 3).tolist()}; paper CIFAR-10 ratio 0.23. Raw FD scales "
            "as t^2 when maps shrink by t",
            {"scale": sc, **fd},
        )
    )
    out.append(
        Claim(
            "the maps themselves get more stable: FD of unit-norm maps (FD_shape) drops",
            _fd_verdict(shp),
            f"FD_shape at s={sc:g}: ratio {shp['ratio']:.3f}, 95% CI [{shp['ci'][0]:.3f}, "
            f"{shp['ci'][1]:.3f}]; per seed {np.round(shp['per_seed'], 3).tolist()}; "
            f"Δgrad ratio {dg_ratio:.3f}",
            {"scale": sc, "delta_grad_ratio": dg_ratio, **shp},
        )
    )

    se0, se1 = res.per_sample("standard", "se"), res.per_sample("stable", "se")
    m0, m1 = se0.mean(1), se1.mean(1)
    delta = float((m1 - m0).mean())
    idx = rng.integers(0, se0.shape[1], (cfg.n_boot or 200, se0.shape[1]))
    ci = _ci((se1[:, idx].mean(-1) - se0[:, idx].mean(-1)).mean(0))
    sd = float(np.sqrt((m0.var(ddof=1) + m1.var(ddof=1)) / 2)) if k > 1 else float("nan")
    little = abs(delta) <= SE_SEED_SDS * sd if k > 1 else ci[0] <= 0 <= ci[1]
    rel = delta / float(m0.mean())
    out.append(
        Claim(
            "global spectral summaries (mean SE) change little",
            "supported" if little else "not supported",
            f"SE {m0.mean():.4f} -> {m1.mean():.4f} bits: Δ = {delta:+.4f} ({100 * rel:+.2f} %), "
            f"95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}]; seed-to-seed sd {sd:.4f}, so "
            f"|Δ| = {abs(delta) / sd if sd > 0 else float('inf'):.1f} sd (little: <= "
            f"{SE_SEED_SDS:g} sd); paper CIFAR-10: 3.101 -> 3.102 (+0.03 %)",
            {
                "delta": delta,
                "relative": rel,
                "ci": ci,
                "seed_sd": sd,
                "standard": m0.tolist(),
                "stable": m1.tolist(),
            },
        )
    )

    a0 = np.array(res.value("standard", "accuracy")["values"])
    a1 = np.array(res.value("stable", "accuracy")["values"])
    d = 100 * (a0 - a1)
    if k > 1:
        half = float(student_t.ppf(1 - ALPHA / 2, k - 1) * d.std(ddof=1) / np.sqrt(k))
        aci = [float(d.mean() - half), float(d.mean() + half)]
        v = (
            "supported"
            if aci[1] < ACC_POINTS
            else ("not supported" if aci[0] >= ACC_POINTS else "inconclusive")
        )
    else:
        aci, v = [float("nan"), float("nan")], "inconclusive"
    out.append(
        Claim(
            f"the regularisation is modest (accuracy cost < {ACC_POINTS:g} point)",
            v,
            f"accuracy {100 * a0.mean():.2f}% -> {100 * a1.mean():.2f}%: drop "
            f"{d.mean():+.2f} points, 95% CI [{aci[0]:+.2f}, {aci[1]:+.2f}] (t over {k} seeds)",
            {"drop_points": float(d.mean()), "ci": aci, "per_seed": d.tolist()},
        )
    )

    rel_ = entropy_instability_relation(res, "standard", sc)
    het = rel_["heterogeneity"]
    weak = -WEAK_RHO < het["pooled_ci"][0] and het["pooled_ci"][1] < WEAK_RHO
    dep = het["p"] < ALPHA
    v = "supported" if weak and dep else ("mixed" if weak or dep else "not supported")
    signs = ", ".join(f"{r:+.2f} (p={p:.1g})" for r, p in zip(rel_["rho"], rel_["p"]))
    out.append(
        Claim(
            "per-sample SE–instability correlation is weak and seed dependent",
            v,
            f"Spearman rho(SE, Δgrad) per seed: {signs}; pooled {het['pooled_rho']:+.3f}, 95% CI "
            f"[{het['pooled_ci'][0]:+.3f}, {het['pooled_ci'][1]:+.3f}] (weak: {weak}); "
            f"heterogeneity Q = {het['Q']:.2f} on {het['df']} df, p = {het['p']:.2g} -> "
            + ("seed dependent" if dep else "consistent across seeds"),
            {**rel_, "weak": bool(weak), "seed_dependent": bool(dep)},
        )
    )

    trends = np.array(rel_["envelope_trend"])
    recs = [res.runs[("standard", s)] for s in cfg.seeds]
    reps = np.mean(
        [envelope_trend_bootstrap(r["se"].numpy(), r["delta_grad"][i].numpy(), idx) for r in recs],
        axis=0,
    )
    eci = _ci(reps)
    v = "supported" if eci[1] < 0 else ("not supported" if eci[0] > 0 else "inconclusive")
    out.append(
        Claim(
            "spectral entropy bounds the unstable regime (falling upper envelope)",
            v,
            f"trend of the 95% envelope of Δgrad vs SE per seed: {np.round(trends, 2).tolist()}; "
            f"mean {trends.mean():+.2f}, 95% CI [{eci[0]:+.2f}, {eci[1]:+.2f}] (bootstrap over "
            "points)",
            {"trend": trends.tolist(), "mean": float(trends.mean()), "ci": eci},
        )
    )
    return out


def format_claims(claims: Sequence[Claim]) -> str:
    """One line per claim: ``- [verdict] claim — evidence``.

    Example:
        >>> print(format_claims([Claim("SE bounds typical sensitivity", "supported", "by theorem")]))
        - [supported] SE bounds typical sensitivity — by theorem
    """
    return "\n".join(f"- {c!r}" for c in claims)


# --------------------------------------------------------------------------- stored results
SUMMARY_FORMAT = "spectral_lab.study-summary/1"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return x


def study_summary(res: StudyResult, **claims_kwargs) -> dict:
    """A small JSON-safe record of a study: config, the tidy table and the claims with their
    statistics (no per-sample arrays, no images, no weights). Example: see :func:`run_study`, which runs a whole tiny study."""
    return _jsonable(
        {
            "format": SUMMARY_FORMAT,
            "version": _version,
            "config": dataclasses.asdict(res.config),
            "table": [r for r in res.table() if r["metric"] != "train_seconds"],
            "claims": [
                {"claim": c.claim, "verdict": c.verdict, "evidence": c.evidence, "stats": c.stats}
                for c in assess_claims(res, **claims_kwargs)
            ],
        }
    )


def save_study_summary(res: StudyResult, path: str | os.PathLike, command: str) -> dict:
    """Write :func:`study_summary` with the ``command`` that produced it and today's UTC date.
    Example: see :func:`run_study`, which runs a whole tiny study."""
    import datetime

    d = study_summary(res)
    d["command"] = command
    d["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    d["runs"] = {"n": len(res.runs), "cached": res.cached, "seconds": round(res.seconds, 1)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
    return d


def load_study_summary(path: str | os.PathLike) -> dict:
    """Read a summary written by :func:`save_study_summary` (checks its format tag).
    Example: see :func:`run_study`, which runs a whole tiny study."""
    d = json.loads(Path(path).read_text())
    if d.get("format") != SUMMARY_FORMAT:
        raise ValueError(f"{path} is not a {SUMMARY_FORMAT} file (format {d.get('format')!r})")
    return d


def format_summary_table(summary: dict) -> str:
    """The stored table as text: metric, scale, standard and stable (mean ± std), ratio.
    Example: see :func:`run_study`, which runs a whole tiny study."""
    rows = summary["table"]
    std = {(r["metric"], r["scale"]): r for r in rows if r["variant"] == "standard"}
    lines = [f"{'metric':<14}{'scale':>7}  {'standard':>20}  {'stable':>20}  {'stable/std':>10}"]
    for r in rows:
        if r["variant"] != "stable":
            continue
        a = std[(r["metric"], r["scale"])]
        ratio = r["mean"] / a["mean"] if a["mean"] else float("nan")
        sc = "" if r["scale"] is None else f"{r['scale']:g}"
        lines.append(f"{r['metric']:<14}{sc:>7}  {_pm(a):>20}  {_pm(r):>20}  {ratio:>10.3f}")
    return "\n".join(lines)
