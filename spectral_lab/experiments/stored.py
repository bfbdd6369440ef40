"""A study stored as a small JSON summary (config, table, claims): write, read and print it."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from .. import __version__ as _version
from .claims import assess_claims
from .study import StudyResult, _pm

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
