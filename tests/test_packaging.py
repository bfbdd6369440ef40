"""pyproject.toml and environment.yml install the same packages; the console script exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs += extra
    return {_name(r) for r in reqs}


def _environment_names() -> set[str]:
    names, in_pip = set(), False
    text = (ROOT / "environment.yml").read_text().split("dependencies:", 1)[1]
    for line in text.splitlines():
        item = line.strip()
        if not item.startswith("- "):
            continue
        item = item[2:].strip()
        if item.startswith("pip:"):
            in_pip = True
            continue
        if item.startswith("-e") or item in ("pip",) or item.startswith("python"):
            continue
        names.add(_name(item))
    assert in_pip or names
    return names


def test_environment_yml_matches_pyproject():
    env, py = _environment_names(), _pyproject_names()
    assert env == py, f"only in environment.yml: {env - py}; only in pyproject: {py - env}"


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "spectral_lab.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "book" in out.stdout and "info" in out.stdout
