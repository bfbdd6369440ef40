"""Running a study: train the standard and stable models per seed, measure them, cache each run,
and tabulate the results (:class:`StudyResult`); the paper's reported numbers for comparison."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__ as _version
from .._results import Result
from ..attribution import attribution_instability
from ..data import default_cache_dir, load_dataset
from ..jacobians import input_jacobian
from ..models import build_model
from ..regularizers import make_regularizer
from ..training import evaluate, train
from .cache import run_stamp
from .config import CACHE_FORMAT, DATASETS, StudyConfig

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
    from ..spectra import spectral_entropy

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
                # the median of an even count is the mean of the middle two (NumPy's, not
                # torch.median's lower one)
                "ACN": [float(np.median(r["acn"].double().numpy())) for r in recs],
                "sigma1": [float(np.median(r["sigma"][:, 0].double().numpy())) for r in recs],
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
    A cache entry is keyed on the configuration (:meth:`StudyConfig.run_key`), the SHA-256 of the
    data's bytes, of the ``spectral_lab`` package's ``.py`` sources and the torch version
    (:func:`~spectral_lab.experiments.cache.run_stamp`): a changed library, other data or
    another torch recompute the run (the data are loaded and hashed first, even when every run
    is cached).
    ``data``: ``(train_set, test_set)`` to use instead of loading ``cfg.dataset``.
    Cost: ``2 * len(seeds)`` trainings (the stable one pays the penalty's cost per step, see
    :mod:`spectral_lab.regularizers`) plus the attribution study on ``n_eval`` points. Runs on
    the CPU (the models are built there); the records hold CPU tensors.

    Example: a whole (tiny) study, its claims and its stored summary.
        >>> import tempfile
        >>> from spectral_lab.experiments import (assess_claims, entropy_instability_relation,
        ...     format_summary_table, load_study_summary, save_study_summary)
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
    stamp = None
    if folder is not None:  # the key needs the data's identity: load it first
        train_set, test_set = data if data is not None else load_study_data(cfg)
        stamp = run_stamp(train_set, test_set)
    runs, cached = {}, 0
    for seed in cfg.seeds:
        for variant in ("standard", "stable"):
            path = None if folder is None else _run_path(folder, cfg, variant, seed, stamp)
            rec = None if path is None or force else _load_run(path, stamp)
            if rec is not None:
                runs[(variant, seed)] = rec
                cached += 1
                continue
            if train_set is None:
                train_set, test_set = data if data is not None else load_study_data(cfg)
            rec = _run_one(cfg, variant, seed, train_set, test_set, progress)
            if path is not None:
                rec["stamp"] = stamp
                torch.save(rec, path)
            runs[(variant, seed)] = rec
    return StudyResult(cfg, runs, time.perf_counter() - t0, cached)


def _run_path(folder: Path, cfg: StudyConfig, variant: str, seed: int, stamp: str) -> Path:
    """The cache entry of one run: keyed on the configuration (:meth:`StudyConfig.run_key`) and
    on :func:`~spectral_lab.experiments.cache.run_stamp` (library source, data bytes, torch)."""
    return folder / f"{cfg.dataset}-{cfg.run_key(variant, seed)}-{stamp}.pt"


def _load_run(path: Path, stamp: str) -> dict | None:
    """The cached record at ``path``, or ``None`` when absent, corrupt or stamped otherwise (a
    stale or broken entry is recomputed, never trusted)."""
    if not path.is_file():
        return None
    try:
        rec = torch.load(path, weights_only=True)
    except Exception:
        return None
    return rec if isinstance(rec, dict) and rec.get("stamp") == stamp else None


def cached_study(
    cfg: StudyConfig, cache_dir: str | os.PathLike | None = None, data=None
) -> StudyResult | None:
    """The :class:`StudyResult` of ``cfg`` if *every* run is in the cache for this library source,
    these data and this torch version, else ``None`` (never trains). ``cache_dir`` and ``data`` as
    in :func:`run_study`; the data are loaded (their bytes key the cache). Cost: loading and
    hashing the data, then reading the cached records.

    Example:
        >>> import tempfile
        >>> cached_study(StudyConfig(seeds=(0,)), cache_dir=tempfile.mkdtemp()) is None
        True
    """
    folder = _cache_dir(cache_dir)
    try:
        train_set, test_set = data if data is not None else load_study_data(cfg)
    except FileNotFoundError:  # DatasetNotFoundError: nothing can be cached for absent data
        return None
    t0 = time.perf_counter()
    stamp = run_stamp(train_set, test_set)
    runs = {}
    for seed in cfg.seeds:
        for variant in ("standard", "stable"):
            rec = _load_run(_run_path(folder, cfg, variant, seed, stamp), stamp)
            if rec is None:
                return None
            runs[(variant, seed)] = rec
    return StudyResult(cfg, runs, time.perf_counter() - t0, len(runs))


def strength_sweep(
    cfg: StudyConfig, strengths: Sequence[float], **kwargs
) -> dict[float, StudyResult]:
    """:func:`run_study` at several strengths (standard runs are shared through the cache).

    Cost: ``len(seeds)`` standard trainings (once, if cached) plus ``len(strengths) * len(seeds)``
    stable ones. Example: see :func:`run_study`, which runs a whole tiny study."""
    return {float(s): run_study(cfg.replace(strength=float(s)), **kwargs) for s in strengths}
