"""The one-way arrows of the layout: chapters -> plots/widgets -> analysis modules -> linalg/jacobians
-> torch. An analysis module never imports ``plots`` or ``widgets`` when it is imported (a lazy
import inside a function, such as ``StabilityReport.plot``, is allowed); ``plots`` never imports
``widgets``; and every widget module takes its drawing function from ``plots``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "spectral_lab"
VIEW = ("plots", "widgets")


def _module_level_imports(path: Path) -> set[str]:
    """Absolute dotted names of the modules ``path`` imports at import time (not in functions)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    package = parts if path.name == "__init__.py" else parts[:-1]
    out = set()
    for node in ast.parse(path.read_text()).body:  # top-level statements only
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *([node.module] if node.module else [])])
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _modules(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def _layer(path: Path) -> str:
    first = path.relative_to(PKG).parts[0].removesuffix(".py")
    return first if first in (*VIEW, "__init__", "cli", "book") else "analysis"


@pytest.mark.parametrize("path", _modules(PKG), ids=lambda p: str(p.relative_to(PKG)))
def test_arrows_point_one_way(path):
    layer = _layer(path)
    imports = _module_level_imports(path)
    if layer == "analysis":
        bad = {m for m in imports if m.split(".")[:2] in (["spectral_lab", v] for v in VIEW)}
        assert not bad, f"{path.name} imports {bad} at import time; import it inside the function"
    if layer == "plots":
        bad = {m for m in imports if m.startswith("spectral_lab.widgets")}
        assert not bad, f"plots must not import widgets: {path.name} imports {bad}"


def test_widgets_take_their_draw_functions_from_plots():
    for path in _modules(PKG / "widgets"):
        if path.name in ("__init__.py", "_core.py"):
            continue
        tree = ast.parse(path.read_text())
        drawn = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not any(d.endswith("_draw") or d == "draw" for d in drawn), (
            f"{path.name} defines a drawing function; it belongs in spectral_lab/plots"
        )
        assert any(m.startswith("spectral_lab.plots") for m in _module_level_imports(path)), path


def test_hessian_reexports_the_gradient_descent_tail_of_sharpness():
    import spectral_lab as sl
    from spectral_lab import sharpness

    for name in sharpness.__all__:
        assert getattr(sl.hessian, name) is getattr(sharpness, name), name
        assert name in sl.hessian.__all__, name
