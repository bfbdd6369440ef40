"""One call that diagnoses a model: :func:`diagnose` -> :class:`StabilityReport`.

The report holds the Matrix Stability Profile, the Global Matrix Stability Index at the supremum
(``q = 1``, what the bounds need) and at a robust quantile (``q = 0.95`` by default), and the
consequences of Theorem 4.2 of "A Unified Matrix-Spectral Framework for Stability and
Interpretability in Deep Learning" evaluated as numbers: how much the output, the parameters' effect and
the saliency can move per unit of perturbation, the NTK condition number against its bound, and
the largest step size the index certifies. It prints as text, renders as HTML in a notebook,
serialises to a dict / JSON and draws a one-figure summary with :meth:`StabilityReport.plot`.

Example:
    >>> from spectral_lab import MLP, load_dataset
    >>> report = diagnose(MLP(64, 10, width=32), load_dataset("digits", "test"), max_samples=64,
    ...                   progress=False)
    >>> sorted(report.index.terms)
    ['hessian', 'input_jacobian', 'ntk', 'parameter_jacobian']
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ._checks import check_logits, check_model
from ._data import DataLike, iter_batches
from ._deprecate import renamed_kwargs
from ._losses import resolve_loss
from .stability import (
    OPERATORS,
    StabilityIndex,
    StabilityProfile,
    attribution_change_bound,
    forward_sensitivity_bound,
    ntk_condition_bound,
    parameter_sensitivity_bound,
    stability_index,
    stability_profile,
    stable_step_size,
)
from .stability._common import LossFn

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_LABELS = {
    "input_jacobian": "input Jacobian  Q_q sigma_1(J_f)",
    "parameter_jacobian": "param. Jacobian Q_q sigma_1(J_theta)",
    "ntk": "NTK             sqrt(lambda_max(K)/n)",
    "hessian": "loss Hessian    sqrt(lambda_max(H))",
}


def _finite(v):
    """JSON-safe numbers: non-finite floats become ``None``; containers recurse."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{digits}g}"


@dataclass(frozen=True, repr=False)
class StabilityReport:
    """What :func:`diagnose` found. ``bounds`` (all at the supremum index ``Gamma`` unless named
    ``*_operator``, which use the single operator's own term):

    * ``forward_gain``: ``||f(x+delta) - f(x)|| <= forward_gain * ||delta||`` (first order)
    * ``parameter_gain``: ``||f_{theta+Delta}(x) - f(x)|| <= parameter_gain * ||Delta||``
    * ``attribution_change``: ``||a(x') - a(x)|| <= 2 Gamma`` (the triangle inequality: true for
      every model by construction)
    * ``ntk_condition`` (measured ``kappa(K)`` of the scalar NTK) and ``ntk_condition_bound``
      (``Gamma^2 n / lambda_min(K)``: an identity whenever the NTK term sets ``Gamma``)
    * ``stable_lr``: ``2 / Gamma^2``; ``stable_lr_operator``: ``2 / lambda_max(H)``

    These are the bounds' values, not checks: :func:`~spectral_lab.verify_consequences` measures
    the consequences that can fail.

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> rep = diagnose(MLP(4, 3, width=8), (x, y), progress=False, operators=("input_jacobian", "hessian"))
        >>> math.isclose(rep.bounds["stable_lr"], 2 / rep.index.value**2), "Gamma" in rep.summary()
        (True, True)
        >>> sorted(rep.to_dict())[:3]
        ['bounds', 'data', 'format']
    """

    profile: StabilityProfile
    index: StabilityIndex
    robust_index: StabilityIndex
    bounds: Mapping[str, float | None]
    model: Mapping[str, object] = field(default_factory=dict)
    data: Mapping[str, object] = field(default_factory=dict)
    seconds: float = 0.0

    # ------------------------------------------------------------------ representations
    def summary(self) -> str:
        """A short multi-line text summary (what the CLI prints)."""
        p, i, r, b = self.profile, self.index, self.robust_index, self.bounds
        lines = [
            f"Stability report: {self.model.get('name', 'model')} ({p.num_params:,} parameters) on "
            f"{self.data.get('name', 'data')} (n={p.n}; NTK on {p.n_ntk}, Hessian on {p.n_hess})",
            f"  Global Matrix Stability Index  Gamma(sup) = {_fmt(i.value)}   "
            f"Gamma(q={r.q:g}) = {_fmt(r.value)}   [agg={i.agg}; dominant: {i.dominant}]",
        ]
        for k in OPERATORS:
            if k in i.terms:
                lines.append(
                    f"    {_LABELS[k]:<38} sup {_fmt(i.terms[k]):>10}   q={r.q:g} {_fmt(r.terms[k]):>10}"
                )
        base = float(p.settings.get("entropy_base", math.e))
        unit = "nats" if abs(base - math.e) < 1e-12 else "bits" if base == 2 else f"base {base:g}"
        lines += [
            f"  mean spectral entropy SE(J_f) = {_fmt(p.jac_entropy, 3)} {unit} "
            f"(flat spectrum: {_fmt(math.log(max(min(p.num_classes, p.input_dim), 1)) / math.log(base), 3)})",
            "  consequences (Theorem 4.2, first order, on the sample):",
            f"    ||f(x+d)-f(x)|| <= {_fmt(b['forward_gain'])} ||d||   "
            f"(input term alone: {_fmt(b['forward_gain_operator'])})",
            f"    ||f_(theta+D)(x)-f(x)|| <= {_fmt(b['parameter_gain'])} ||D||   "
            f"(param. term alone: {_fmt(b['parameter_gain_operator'])})",
            f"    saliency change <= {_fmt(b['attribution_change'])}   (2 Gamma: triangle inequality)",
            f"    scalar-NTK condition number {_fmt(b['ntk_condition'])} <= bound "
            f"{_fmt(b['ntk_condition_bound'])}   (by construction)",
            f"    stable GD step eta < {_fmt(b['stable_lr'])}  "
            f"(2/lambda_max(H) = {_fmt(b['stable_lr_operator'])})",
        ]
        if self.data.get("accuracy") is not None:
            lines.append(
                f"  accuracy on these samples: {self.data['accuracy']:.3f}   "
                f"loss: {_fmt(self.data.get('loss'))}"
            )
        lines.append(f"  ({self.seconds:.1f} s)")
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        p, i, r, b = self.profile, self.index, self.robust_index, self.bounds
        e = html.escape
        rows = "".join(
            f"<tr><td>{e(k.replace('_', ' '))}</td><td style='text-align:right'>{_fmt(i.terms[k])}</td>"
            f"<td style='text-align:right'>{_fmt(r.terms[k])}</td>"
            f"<td>{'&#9664; sets Gamma' if k == i.dominant else ''}</td></tr>"
            for k in OPERATORS
            if k in i.terms
        )
        cons = [
            ("forward: ||f(x+&delta;) &minus; f(x)|| &le; c ||&delta;||", b["forward_gain"], b["forward_gain_operator"]),
            ("parameters: ||f<sub>&theta;+&Delta;</sub>(x) &minus; f(x)|| &le; c ||&Delta;||", b["parameter_gain"], b["parameter_gain_operator"]),
            ("saliency change &le; (2&Gamma;: by construction)", b["attribution_change"], b["attribution_change_operator"]),
            ("scalar-NTK condition number &le; (by construction)", b["ntk_condition_bound"], b["ntk_condition"]),
            ("stable GD step &eta; &lt;", b["stable_lr"], b["stable_lr_operator"]),
        ]  # fmt: skip
        crows = "".join(
            f"<tr><td>{name}</td><td style='text-align:right'>{_fmt(v)}</td>"
            f"<td style='text-align:right'>{_fmt(w)}</td></tr>"
            for name, v, w in cons
        )
        acc = self.data.get("accuracy")
        return (
            "<div style='font-family:sans-serif;font-size:13px'>"
            f"<b>Stability report</b> &mdash; {e(str(self.model.get('name', 'model')))} "
            f"({p.num_params:,} parameters) on {e(str(self.data.get('name', 'data')))} "
            f"(n={p.n}; NTK on {p.n_ntk}, Hessian on {p.n_hess})"
            + (f"; accuracy {acc:.3f}" if acc is not None else "")
            + f"<br><b>&Gamma;(sup) = {_fmt(i.value)}</b>, &Gamma;(q={r.q:g}) = {_fmt(r.value)} "
            f"[agg={e(i.agg)}]"
            "<table><tr><th>operator term</th><th>sup</th>"
            f"<th>q={r.q:g}</th><th></th></tr>{rows}</table>"
            f"mean spectral entropy SE(J<sub>f</sub>) = {_fmt(p.jac_entropy, 3)}"
            "<table><tr><th>consequence (Theorem 4.2)</th><th>with &Gamma;</th>"
            f"<th>operator alone / measured</th></tr>{crows}</table>"
            "<small>Index construction: the largest of the four operator terms, a choice of this "
            "library (not the paper's formula).</small></div>"
        )

    def to_dict(self, samples: bool = False) -> dict:
        """JSON-ready dict; ``samples=True`` includes the per-sample values."""
        return _finite(
            {
                "format": "spectral_lab.stability_report/1",
                "model": dict(self.model),
                "data": dict(self.data),
                "profile": self.profile.to_dict(samples=samples),
                "index": self.index.to_dict(),
                "robust_index": self.robust_index.to_dict(),
                "bounds": dict(self.bounds),
                "seconds": self.seconds,
            }
        )

    def to_json(self, path: str | os.PathLike | None = None, samples: bool = True) -> str:
        """The report as JSON text (non-finite numbers as ``null``); written to ``path`` if given."""
        text = json.dumps(self.to_dict(samples=samples), indent=2, allow_nan=False)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        return text

    def plot(self, **kwargs) -> Figure:
        """A one-figure summary (see :func:`spectral_lab.plots.plot_stability_report`)."""
        from .plots import plot_stability_report  # drawing lives in plots; imported on demand

        return plot_stability_report(self, **kwargs)


def _bounds(profile: StabilityProfile, index: StabilityIndex) -> dict[str, float | None]:
    def safe(fn, *a, **k):
        try:
            return float(fn(*a, **k))
        except ValueError:
            return None

    ntk_min = profile.ntk_min
    return {
        "gamma": index.value,
        "forward_gain": safe(forward_sensitivity_bound, index, 1.0),
        "forward_gain_operator": safe(forward_sensitivity_bound, index, 1.0, scale="operator"),
        "parameter_gain": safe(parameter_sensitivity_bound, index, 1.0),
        "parameter_gain_operator": safe(parameter_sensitivity_bound, index, 1.0, scale="operator"),
        "attribution_change": safe(attribution_change_bound, index),
        "attribution_change_operator": safe(attribution_change_bound, index, scale="operator"),
        "ntk_condition": profile.ntk_condition,
        "ntk_condition_bound": None
        if ntk_min is None
        else safe(ntk_condition_bound, index, ntk_min),
        "stable_lr": safe(stable_step_size, index),
        "stable_lr_operator": None
        if profile.hess_top is None
        else safe(stable_step_size, index, scale="operator"),
    }


@torch.no_grad()
def _accuracy(model, data, loss, max_samples, batch_size):
    p = next(model.parameters())
    fn = resolve_loss(loss)
    total = correct = 0.0
    n = 0
    have_y = True
    for x, y in iter_batches(data, batch_size, max_samples, p.device, p.dtype):
        out = check_logits(model(x))
        if y is None:
            have_y = False
            continue
        total += float(fn(out, y)) * len(x)
        if loss == "cross_entropy":
            correct += float((out.argmax(1) == y).sum())
        n += len(x)
    if not have_y or n == 0:
        return None, None
    return (correct / n if loss == "cross_entropy" else None), total / n


@renamed_kwargs(
    ntk_samples="num_ntk_samples", hessian_samples="num_hessian_samples", lanczos_steps="max_iter"
)
def diagnose(
    model: nn.Module,
    data: DataLike,
    *,
    q: float = 1.0,
    robust_q: float = 0.95,
    loss: str | LossFn = "cross_entropy",
    max_samples: int | None = 512,
    num_ntk_samples: int = 128,
    ntk_kind: str = "scalar",
    num_hessian_samples: int = 512,
    max_iter: int = 20,
    operators: Sequence[str] = OPERATORS,
    weights: Mapping[str, float] | None = None,
    agg: str | Callable = "max",
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = True,
    name: str | None = None,
    data_name: str | None = None,
) -> StabilityReport:
    """Diagnose ``model`` on ``data``: profile, index (sup and robust quantile) and bounds.

    Streams ``data`` (tensors, ``(x, y)``, a Dataset or a DataLoader) in batches of ``batch_size``
    with a progress bar; ``max_samples`` caps the per-sample statistics, ``num_ntk_samples`` the dense
    NTK Gram (``O(n^2 p)``), ``num_hessian_samples`` and ``max_iter`` (Lanczos steps) the
    matrix-free Hessian eigen-solve (the old spellings ``ntk_samples``, ``hessian_samples`` and
    ``lanczos_steps`` are deprecated for one release); ``ntk_kind`` picks the scalar (default) or block NTK. The index is
    :func:`~spectral_lab.stability.stability_index`, ``Gamma_q = max{Q_q sigma_1(J_f(x_i)),
    Q_q sigma_1(J_theta(x_i)), sqrt(lambda_max(K)/n), sqrt(lambda_max(H))}`` (a choice of this
    library, not the paper's formula; swap it with ``agg=``/``weights=``).

    Cost: that of :func:`~spectral_lab.stability.stability_profile` plus one forward pass. Runs on
    the device and dtype of the model's parameters; inputs are cast to them.

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> rep = diagnose(MLP(4, 3, width=8), (x, y), progress=False)
        >>> rep.index.value >= rep.robust_index.value, rep.profile.n, rep.index.dominant in rep.index.terms
        (True, 16, True)
    """
    check_model(model)
    t0 = time.perf_counter()
    prof = stability_profile(
        model,
        data,
        q=q,
        loss=loss,
        operators=operators,
        max_samples=max_samples,
        num_ntk_samples=num_ntk_samples,
        ntk_kind=ntk_kind,
        num_hessian_samples=num_hessian_samples,
        max_iter=max_iter,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
    )
    index = stability_index(prof, weights=weights, agg=agg)
    robust = stability_index(prof.with_q(robust_q), weights=weights, agg=agg)
    acc, loss_value = _accuracy(model, data, loss, max_samples, batch_size)
    dname = (
        data_name
        or getattr(data, "name", None)
        or getattr(getattr(data, "dataset", None), "name", None)
    )
    return StabilityReport(
        profile=prof,
        index=index,
        robust_index=robust,
        bounds=_bounds(prof, index),
        model={
            "name": name or type(model).__name__,
            "num_params": prof.num_params,
            "input_dim": prof.input_dim,
            "num_classes": prof.num_classes,
        },
        data={
            "name": dname or type(data).__name__,
            "n": prof.n,
            "loss": loss_value,
            "loss_fn": loss if isinstance(loss, str) else getattr(loss, "__name__", "custom"),
            "accuracy": acc,
        },
        seconds=time.perf_counter() - t0,
    )


__all__ = ["StabilityReport", "diagnose"]
