"""pyproject.toml and environment.yml install the same packages; ``pip install spectral_lab`` is the
library only (torch, NumPy, SciPy, tqdm) and works without the course's packages; the console script
exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _meta() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pyproject_names() -> set[str]:
    meta = _meta()
    reqs = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs += extra
    return {_name(r) for r in reqs} - {"spectral-lab"}  # an extra may include another


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


def _extra(name: str, seen: frozenset = frozenset()) -> set[str]:
    """The package names extra ``name`` installs, other extras it includes resolved."""
    out = set()
    for req in _meta()["optional-dependencies"][name]:
        if _name(req) == "spectral-lab":
            for inner in re.search(r"\[(.*)\]", req).group(1).split(","):
                assert inner.strip() not in seen, f"extra {name} includes itself"
                out |= _extra(inner.strip(), seen | {name})
        else:
            out.add(_name(req))
    return out


def test_the_library_alone_is_torch_numpy_scipy_tqdm_and_the_rest_are_extras():
    assert {_name(r) for r in _meta()["dependencies"]} == {"torch", "numpy", "scipy", "tqdm"}
    course = _extra("course")
    assert {"matplotlib", "ipywidgets", "scikit-learn", "torchvision", "jupytext"} <= course
    assert course | {"sphinx", "myst-nb", "sphinx-book-theme"} <= _extra("book")
    assert course | {"jupyterlab"} <= _extra("lab")
    assert _extra("book") | {"pytest", "nbval", "ruff", "timm", "transformers", "peft"} <= _extra(
        "test"
    )


def test_every_optional_import_names_an_extra_that_installs_it():
    from spectral_lab._extras import BOOK, EXTRA_OF, check_installed

    for module, (package, extra) in EXTRA_OF.items():
        if module != "jupyter_client":  # nbclient's own dependency
            assert _name(package) in _extra(extra), (module, package, extra)
    assert all(m in EXTRA_OF for m in BOOK)
    # the import names are right: in this (test) environment every one of them is installed
    # (sphinx-mathjax-offline's folder keeps its dashes)
    check_installed(BOOK, "the test environment")


COURSE_ONLY = ("matplotlib", "ipywidgets", "sklearn", "torchvision", "jupytext", "nbformat",
               "nbclient", "sphinx", "myst_nb")  # fmt: skip

_WITHOUT_COURSE = f"""
import sys
for name in {COURSE_ONLY!r}:
    sys.modules[name] = None  # importing any of them now raises ImportError
import torch
from torch import nn
import spectral_lab as sl

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()
x = torch.randn(12, 4, dtype=torch.float64)
y = torch.randint(0, 3, (12,))
J = sl.input_jacobian(model, x[:2])
assert J.shape == (2, 3, 4), J.shape
# against autograd's Jacobian of one sample
ref = torch.autograd.functional.jacobian(model, x[:1]).reshape(3, 4)
assert torch.allclose(J[0], ref, atol=1e-12)
lam = float(sl.hessian_eigs(model, (x, y), tol=1e-10))
H = sl.hessian.dense_hessian(model, (x, y))
assert abs(lam - float(torch.linalg.eigvalsh(H)[-1])) < 1e-8 * abs(lam), lam
assert sl.ntk_eigs(model, x[:6], k=3).eigenvalues.numel() == 3
report = sl.diagnose(model, (x, y), progress=False)
assert "Gamma" in report.summary() or report.summary()
sl.load_dataset("teacher", num_samples=16)  # built-in data needs nothing extra
for call in (lambda: sl.load_dataset("digits"), lambda: sl.plots, lambda: sl.widgets,
             lambda: report.plot()):
    try:
        call()
    except ImportError as err:
        assert 'pip install "spectral_lab[course]"' in str(err), err
    else:
        raise AssertionError("a course-only call worked without the course's packages")
assert not any(sys.modules.get(n) for n in {COURSE_ONLY!r})
print("ok")
"""


def test_the_library_works_without_the_course_packages():
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_COURSE], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_cli_names_the_extra_when_the_book_packages_are_missing():
    code = (
        "import sys\n"
        "sys.modules['sphinx'] = None\n"
        "from spectral_lab.cli import main\n"
        "sys.exit(main(['book', '--out', sys.argv[1]]))\n"
    )
    import tempfile

    out = subprocess.run(
        [sys.executable, "-c", code, tempfile.mkdtemp()], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert 'needs sphinx, which is not installed: pip install "spectral_lab[book]"' in out.stderr
