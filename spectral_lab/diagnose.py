"""One call that diagnoses a model: :func:`diagnose` -> :class:`StabilityReport`.

The report holds the Matrix Stability Profile, the Global Matrix Stability Index at the supremum
(``q = 1``, what the bounds need) and at a robust quantile (``q = 0.95`` by default), and the
course's reconstruction of the consequences that "A Unified Matrix-Spectral Framework for
Stability and Interpretability in Deep Learning" is summarised as deriving in its Theorem 4.2 (its
statement was not available), evaluated as numbers: how much the output, the parameters' effect and
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
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ._data import DataLike
from .distributed import resolve_group  # dist (issue 25)
from .prepared import Prepared
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
from .stability._common import _check_q

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
        ['bound_status', 'bounds', 'data']
    """

    profile: StabilityProfile
    index: StabilityIndex
    robust_index: StabilityIndex
    bounds: Mapping[str, float | None]
    bound_status: Mapping[str, str] = field(default_factory=dict)
    model: Mapping[str, object] = field(default_factory=dict)
    data: Mapping[str, object] = field(default_factory=dict)
    seconds: float = 0.0

    # ------------------------------------------------------------------ representations
    def summary(self) -> str:
        """A short multi-line text summary (what the CLI prints)."""
        p, i, r = self.profile, self.index, self.robust_index
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
        bv = self._bound_text
        lines += [
            f"  mean spectral entropy SE(J_f) = {_fmt(p.jac_entropy, 3)} {unit} "
            f"(flat spectrum: {_fmt(math.log(max(min(p.num_classes, p.input_dim), 1)) / math.log(base), 3)})",
            "  consequences (the course's reconstruction of Theorem 4.2; first order, on the sample):",
            f"    ||f(x+d)-f(x)|| <= {bv('forward_gain')} ||d||   "
            f"(input term alone: {bv('forward_gain_operator')})",
            f"    ||f_(theta+D)(x)-f(x)|| <= {bv('parameter_gain')} ||D||   "
            f"(param. term alone: {bv('parameter_gain_operator')})",
            f"    saliency change <= {bv('attribution_change')}   (2 Gamma: triangle inequality)",
            f"    scalar-NTK condition number {bv('ntk_condition')} <= bound "
            f"{bv('ntk_condition_bound')}   (by construction)",
            f"    stable GD step eta < {bv('stable_lr')}  "
            f"(2/lambda_max(H) = {bv('stable_lr_operator')})",
        ]
        lines.append("  " + self._metrics_text())
        lines += self._note_lines()
        lines.append(f"  ({self.seconds:.1f} s)")
        return "\n".join(lines)

    def _note_lines(self) -> list[str]:
        """Which output, input space and precision were used; bounds not computed/certified."""
        out: list[str] = []
        for key, label in (("output", "output used"), ("input_space", "input space"),
                           ("precision", "precision")):  # fmt: skip
            note = self.data.get("notes", {}).get(key)
            if note and note not in ("the output tensor", "the inputs"):
                out.append(f"  {label}: {note}")
        note = self.data.get("notes", {}).get("batch")
        if note:
            out.append(f"  per-sample route: {note}")
        st = self.bound_status
        budget = self.profile.settings.get("budget") or {}
        skipped = budget.get("skipped", {})
        for k, why in skipped.items():
            out.append(f"  skipped: {k} ({why})")
        for k, why in budget.get("capped", {}).items():
            out.append(f"  stopped early: {k} ({why})")
        out += _phase_lines(budget)
        left = [
            k for k in OPERATORS
            if k not in skipped and any(f"needs {k}," in v for v in st.values())
        ]  # fmt: skip
        if left:
            out.append(
                f"  not computed: the bounds that need {', '.join(left)} (left out of "
                "operators=; Gamma is over the operators computed only)"
            )
        if skipped:
            out.append(
                f"  not computed: the bounds that need {', '.join(skipped)} (skipped by the "
                "budget; Gamma is over the operators computed only)"
            )
        uncert = sorted({v for v in st.values() if v.startswith("not certified")})
        out += [
            f"  not certified: the step-size bounds {v[len('not certified ') :]}" for v in uncert
        ]
        return out

    def _bound_text(self, key: str) -> str:
        st = self.bound_status.get(key, "computed")
        return _fmt(self.bounds.get(key)) if st == "computed" else st.split(" (")[0]

    def _metrics_text(self) -> str:
        d = self.data
        loss = f"loss ({d.get('loss_fn', '?')}): {_fmt(d.get('loss'))}"
        if d.get("loss_fn") == "mse":
            return f"{loss}   MSE {_fmt(d.get('mse'))}   R^2 {_fmt(d.get('r2'))}"
        if d.get("accuracy") is not None:
            return f"{loss}   accuracy on these samples: {d['accuracy']:.3f}"
        return loss if d.get("loss") is not None else f"{loss} (no labels)"

    __str__ = summary

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        p, i, r = self.profile, self.index, self.robust_index
        e = html.escape
        rows = "".join(
            f"<tr><td>{e(k.replace('_', ' '))}</td><td style='text-align:right'>{_fmt(i.terms[k])}</td>"
            f"<td style='text-align:right'>{_fmt(r.terms[k])}</td>"
            f"<td>{'&#9664; sets Gamma' if k == i.dominant else ''}</td></tr>"
            for k in OPERATORS
            if k in i.terms
        )
        cons = [
            ("forward: ||f(x+&delta;) &minus; f(x)|| &le; c ||&delta;||", "forward_gain", "forward_gain_operator"),
            ("parameters: ||f<sub>&theta;+&Delta;</sub>(x) &minus; f(x)|| &le; c ||&Delta;||", "parameter_gain", "parameter_gain_operator"),
            ("saliency change &le; (2&Gamma;: by construction)", "attribution_change", "attribution_change_operator"),
            ("scalar-NTK condition number &le; (by construction)", "ntk_condition_bound", "ntk_condition"),
            ("stable GD step &eta; &lt;", "stable_lr", "stable_lr_operator"),
        ]  # fmt: skip
        crows = "".join(
            f"<tr><td>{name}</td><td style='text-align:right'>{e(self._bound_text(v))}</td>"
            f"<td style='text-align:right'>{e(self._bound_text(w))}</td></tr>"
            for name, v, w in cons
        )
        return (
            "<div style='font-family:sans-serif;font-size:13px'>"
            f"<b>Stability report</b> &mdash; {e(str(self.model.get('name', 'model')))} "
            f"({p.num_params:,} parameters) on {e(str(self.data.get('name', 'data')))} "
            f"(n={p.n}; NTK on {p.n_ntk}, Hessian on {p.n_hess})"
            + f"<br>{e(self._metrics_text())}"
            + "".join(f"<br>{e(line.strip())}" for line in self._note_lines())
            + f"<br><b>&Gamma;(sup) = {_fmt(i.value)}</b>, &Gamma;(q={r.q:g}) = {_fmt(r.value)} "
            f"[agg={e(i.agg)}]"
            "<table><tr><th>operator term</th><th>sup</th>"
            f"<th>q={r.q:g}</th><th></th></tr>{rows}</table>"
            f"mean spectral entropy SE(J<sub>f</sub>) = {_fmt(p.jac_entropy, 3)}"
            "<table><tr><th>consequence (reconstructed, Theorem 4.2)</th><th>with &Gamma;</th>"
            f"<th>operator alone / measured</th></tr>{crows}</table>"
            f"<small>Index: the {e(i.agg)} of the operator terms (a choice of this library, not a "
            "formula from the papers).</small></div>"
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
                "bound_status": dict(self.bound_status),
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


_NEEDS = {
    "forward_gain": ("input_jacobian",),
    "forward_gain_operator": ("input_jacobian",),
    "parameter_gain": ("parameter_jacobian",),
    "parameter_gain_operator": ("parameter_jacobian",),
    "attribution_change": ("input_jacobian",),
    "attribution_change_operator": ("input_jacobian",),
    "ntk_condition": ("ntk",),
    "ntk_condition_bound": ("ntk",),
    "stable_lr": ("hessian",),
    "stable_lr_operator": ("hessian",),
}
"""The operators each bound needs: without them (or with them unconverged) it is not a bound."""


def _phase_lines(budget: Mapping) -> list[str]:
    """Per phase: what was computed, what was cut, seconds, gradient-equivalents, overrun."""
    out = []
    for name, p in (budget.get("phases") or {}).items():
        ge = "" if p.get("ge") is None else f", {p['ge']:.3g} gradient-equivalents"
        over = (
            f", a piece overran the budget by {p['overrun_s']:.3g} s" if p.get("overrun_s") else ""
        )
        cut = f"; cut: {p['cut']}" if p.get("cut") else ""
        out.append(
            f"  phase {name}: {p.get('computed') or 'nothing'} ({p['seconds']:.3g} s{ge}{over}){cut}"
        )
    mem = budget.get("memory")
    if budget.get("phases") and mem:
        out.append(
            f"  work: {budget.get('ge') or 0:.3g} gradient-equivalents in "
            f"{budget.get('wall_s', 0):.3g} s ({budget.get('other_s', 0):.3g} s outside the "
            f"phases' pieces); peak memory "
            f"{mem['peak_bytes'] / 2**30:.3g} GiB ({mem['peak_how']})"
        )
    return out


def _bound_status(profile: StabilityProfile, index: StabilityIndex) -> dict[str, str]:
    """``"computed"``, ``"not computed (...)"`` or ``"not certified (...)"`` for every bound:
    an operator left out of ``operators=`` or skipped by the budget is "not computed" (with the
    reason); an unconverged solver, or one the budget stopped early, is "not certified"."""
    budget = profile.settings.get("budget") or {}
    skipped, capped = budget.get("skipped", {}), budget.get("capped", {})
    out = {}
    for key, needs in _NEEDS.items():
        missing = [k for k in needs if k not in index.terms]
        if missing:
            why = [
                f"needs {k}, skipped: {skipped[k]}" if k in skipped
                else f"needs {k}, left out of operators="
                for k in missing
            ]  # fmt: skip
            out[key] = f"not computed ({'; '.join(why)})"
        elif "hessian" in needs and profile.settings.get("hessian_converged") is False:
            out[key] = (
                f"not certified ({capped['hessian']}, and Lanczos had not converged: "
                "lambda_max(H) is only a lower estimate; raise the budget)"
                if "hessian" in capped
                else f"not certified (Lanczos did not converge in "
                f"{profile.settings.get('max_iter')} products: lambda_max(H) is only a lower "
                "estimate; raise max_iter)"
            )
        else:
            out[key] = "computed"
    out["gamma"] = (
        "computed"
        if all(k in index.terms for k in OPERATORS)
        else "partial (the index over the operators computed only)"
    )
    return out


def _bounds(
    profile: StabilityProfile, index: StabilityIndex, status: Mapping[str, str] | None = None
) -> dict[str, float | None]:
    """The bounds' values; ``None`` for every bound whose status is not ``"computed"`` (a bound
    that needs an operator that was left out, or an unconverged solver, is no bound)."""

    def safe(fn, *a, **k):
        try:
            return float(fn(*a, **k))
        except ValueError:
            return None

    status = _bound_status(profile, index) if status is None else status
    ntk_min = profile.ntk_min
    values = {
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
    return {
        k: (v if k not in _NEEDS or status.get(k, "computed") == "computed" else None)
        for k, v in values.items()
    }


@torch.no_grad()
def _metrics(
    prep: Prepared, data, max_samples, batch_size, progress, process_group=None
) -> dict[str, float | None]:
    """The loss on the samples, with accuracy for classification and MSE / R^2 for regression
    (never an accuracy for a regression loss)."""
    from ._budget import Budget

    bar = Budget(progress=progress).bar("loss", max_samples, "sample")
    fn = prep.loss_fn
    total = correct = 0.0
    n = 0
    sse = sy = sy2 = None
    for _, x, y in prep.batches(data, batch_size, max_samples):
        if y is None:
            bar.close()
            return {"loss": None, "accuracy": None}
        out = prep.model(x)
        total += float(fn(out, y)) * len(x)
        n += len(x)
        bar.update(len(x))
        if prep.loss == "cross_entropy":
            correct += float((out.argmax(1) == y).sum())
        elif prep.loss == "mse":
            d, yd = (out - y).double(), y.double()
            sse = (0 if sse is None else sse) + d.square().sum(0)
            sy = (0 if sy is None else sy) + yd.sum(0)
            sy2 = (0 if sy2 is None else sy2) + yd.square().sum(0)
    bar.close()
    if process_group:  # dist (issue 25): the sums over every rank's shard
        from .distributed._profile import sum_over_ranks

        total, correct, n, sse, sy, sy2 = sum_over_ranks(
            process_group, total, correct, n, sse, sy, sy2
        )
        n = int(n)
    if n == 0:
        return {"loss": None, "accuracy": None}
    res: dict[str, float | None] = {"loss": total / n}
    res["accuracy"] = correct / n if prep.loss == "cross_entropy" else None
    if sse is not None:
        sst = (sy2 - sy.square() / n).sum()
        res["mse"] = float(sse.sum()) / (n * prep.num_outputs)
        res["r2"] = float(1 - sse.sum() / sst) if float(sst) > 0 else None
    return res


def diagnose(
    model: nn.Module | Prepared,
    data: DataLike,
    *,
    robust_q: float = 0.95,
    weights: Mapping[str, float] | None = None,
    agg: str | Callable = "max",
    name: str | None = None,
    data_name: str | None = None,
    **profile_options,
) -> StabilityReport:
    """Diagnose ``model`` on ``data``: :func:`~spectral_lab.stability.stability_profile`, the index
    at ``q`` and at the robust quantile ``robust_q``, the bounds, and the loss.

    ``diagnose`` **is** the profile plus its report: every keyword other than those below
    (``q``, ``loss``, ``operators``, ``max_samples``, ``num_ntk_samples``, ``ntk_kind``,
    ``num_hessian_samples``, ``max_iter``, ``tol``, ``batch_size``, ``chunk_size``, ``seed``,
    ``progress``, ``output``, ``embedding``, ``time_budget``, ``matvec_budget``,
    ``memory_budget``) goes to
    :func:`~spectral_lab.stability.stability_profile` with its defaults, so ``report.profile``
    equals ``stability_profile(model, data, ...)`` on the same settings, to the last digit. The
    model is validated once, by :func:`~spectral_lab.prepare`.

    The index is :func:`~spectral_lab.stability.stability_index`, ``Gamma_q = max{Q_q
    sigma_1(J_f(x_i)), Q_q sigma_1(J_theta(x_i)), sqrt(lambda_max(K)/n), sqrt(lambda_max(H))}``
    (a choice of this library, not the paper's formula; swap it with ``agg=``/``weights=``).

    Honest bounds: a bound that needs an operator left out of ``operators=``, skipped by a
    budget, or the Hessian when Lanczos did not converge, is ``None`` in ``bounds`` and "not
    computed" / "not certified" in ``bound_status`` and in the printed report, never a number.

    Progress and budgets: every phase shows a progress bar (``progress=False`` or
    ``SPECTRAL_LAB_HEADLESS=1`` switch them off). ``time_budget`` (seconds of wall time),
    ``matvec_budget`` (operator products: one Hessian-vector product, or one NTK-vector product,
    a dense Gram on ``n`` samples costing ``n``) and ``memory_budget`` (bytes of the chunks held
    at once) cap the run. Every phase times a probe (one sample, one product), predicts each
    piece (an output row, a chunk, a product) from the pieces done and starts none that would end
    past the budget: the input Jacobian keeps the rows that fit (a lower estimate, reported), the
    NTK the largest complete Gram on its first samples, Lanczos the products that fit (capped and
    unconverged: "not certified"). What each phase computed and cut, its seconds, any overrun,
    its gradient-equivalents and the peak memory are in the report
    (``settings["budget"]``, ``bound_status`` and the printed notes).

    Args:
        model: any ``nn.Module`` (tuple/dict outputs, token ids, regression, bfloat16, compiled,
            left in train mode: see :func:`~spectral_lab.prepare`) or a ``Prepared``.
        data: tensors, ``(x, y)``, a Dataset or a DataLoader.
        robust_q: the quantile of the robust index.
        weights: the terms' weights in the index (see ``stability_index``).
        agg: how the index pools its terms (``"max"``, ``"geomean"`` or a callable).
        name: the model's label in the report.
        data_name: the data's label in the report.
        **profile_options: :func:`~spectral_lab.stability.stability_profile`'s keywords.

    Returns:
        A :class:`StabilityReport`.

    Cost: that of :func:`~spectral_lab.stability.stability_profile` plus one forward pass over
    the samples for the loss. Runs on the device and dtype of the model's parameters.

    Example:
        >>> import torch
        >>> from spectral_lab import MLP
        >>> _ = torch.manual_seed(0)
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> rep = diagnose(MLP(4, 3, width=8), (x, y), progress=False)
        >>> rep.index.value >= rep.robust_index.value, rep.profile.n, rep.index.dominant in rep.index.terms
        (True, 16, True)

        A budget of 16 products pays for the NTK Gram on 16 samples and nothing else:

        >>> rep = diagnose(MLP(4, 3, width=8), (x, y), progress=False, matvec_budget=16)
        >>> sorted(rep.profile.settings["budget"]["skipped"]), rep.bounds["stable_lr"]
        (['hessian'], None)
    """
    from .prepared import prepare

    t0 = time.perf_counter()
    known = set(inspect.signature(stability_profile).parameters) - {"model", "data"}
    unknown = set(profile_options) - known
    if unknown:
        raise TypeError(
            f"diagnose() got unexpected keyword(s) {sorted(unknown)}; it takes robust_q, weights, "
            f"agg, name, data_name and stability_profile's keywords {sorted(known)}"
        )
    _check_q(robust_q)
    opts = {k: v for k, v in profile_options.items() if k in ("loss", "output", "embedding")}
    prep = prepare(model, data, **opts)
    if prep.loss is None:
        prep = prepare(prep, loss="cross_entropy" if prep.num_outputs > 1 else "mse")
    rest = {k: v for k, v in profile_options.items() if k not in ("loss", "output", "embedding")}
    prof = stability_profile(prep, data, **rest)
    index = stability_index(prof, weights=weights, agg=agg)
    robust = stability_index(prof.with_q(robust_q), weights=weights, agg=agg)
    defaults = inspect.signature(stability_profile).parameters
    max_samples = rest.get("max_samples", defaults["max_samples"].default)
    batch_size = rest.get("batch_size", defaults["batch_size"].default)
    progress = rest.get("progress", defaults["progress"].default)
    group = resolve_group(rest.get("process_group"))  # dist (issue 25): prof.n is all ranks'
    cap = (max_samples or None) if group is not None else min(prof.n, max_samples or prof.n)
    metrics = _metrics(prep, data, cap, batch_size, progress, group)
    dname = (
        data_name
        or getattr(data, "name", None)
        or getattr(getattr(data, "dataset", None), "name", None)
    )
    if dname is None and isinstance(data, (tuple, list)):
        dname = "(x, y) tensors"
    status = _bound_status(prof, index)
    source = prep.source
    return StabilityReport(
        profile=prof,
        index=index,
        robust_index=robust,
        bounds=_bounds(prof, index, status),
        bound_status=status,
        model={
            "name": name or type(source).__name__,
            "num_params": prof.num_params,
            "input_dim": prof.input_dim,
            "num_classes": prof.num_classes,
        },
        data={
            "name": dname or type(data).__name__,
            "n": prof.n,
            "loss_fn": prep.loss_name,
            **metrics,
            "notes": dict(prep.notes),
        },
        seconds=time.perf_counter() - t0,
    )


__all__ = ["StabilityReport", "diagnose"]
