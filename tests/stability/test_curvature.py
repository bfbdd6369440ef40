"""The curvature form of the attribution bound: the logit Hessian norm against dense autograd, the
check holds and is tight, catches wrong curvatures (mutation tests) and fails for ReLU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral_lab.stability import (
    check_attribution_curvature,
    logit_hessian_norm,
)

from ._helpers import _model


def _dense_logit_hessian_norm(model, x, c):
    """Independent reference: torch.autograd.functional.hessian per sample, numpy eigenvalues."""
    out = []
    for xi, ci in zip(x, c):
        h = torch.autograd.functional.hessian(lambda v, ci=ci: model(v[None])[0, ci], xi)
        out.append(np.abs(np.linalg.eigvalsh(h.numpy())).max())
    return np.array(out)


def test_logit_hessian_norm_matches_dense_autograd(setup):
    model, x, _, _ = setup
    c = model(x).argmax(1)
    ref = _dense_logit_hessian_norm(model, x, c)
    got = logit_hessian_norm(model, x, c).numpy()
    assert np.allclose(got, ref, rtol=1e-10, atol=1e-12) and ref.min() > 0
    # and against central finite differences of the gradient along the top eigenvector
    i = 0
    h = torch.autograd.functional.hessian(lambda v: model(v[None])[0, c[i]], x[i])
    ev, vec = torch.linalg.eigh(h)
    v = vec[:, ev.abs().argmax()]
    grad = lambda z: torch.autograd.functional.jacobian(lambda u: model(u[None])[0, c[i]], z)  # noqa: E731
    fd = (grad(x[i] + 1e-5 * v) - grad(x[i] - 1e-5 * v)) / 2e-5
    assert math.isclose(float(fd.norm()), float(got[i]), rel_tol=1e-6)


def test_curvature_form_of_the_attribution_bound_holds_and_is_tight(setup):
    model, x, _, _ = setup
    chk = check_attribution_curvature(model, x, eps=(1e-3, 1e-2, 1e-1, 0.5), points=9)
    assert chk.holds, chk
    # along the worst direction the first-order bound is attained at small eps: so any curvature
    # measure too small by more than rtol is caught there
    assert chk.ratio[0] > 0.99
    assert all(f == 1.0 for f in chk.curvature_branch)  # the falsifiable branch M eps < 2 Gamma
    rnd = check_attribution_curvature(model, x, eps=(1e-2, 0.5), direction="random")
    assert rnd.holds and max(rnd.ratio) < 1


@pytest.mark.parametrize(
    "mutant",
    [
        "dropped_half",  # M / 2: a dropped factor (e.g. symmetrising without adding the transpose)
        "wrong_logit",  # the Hessian of another logit than the one whose saliency is compared
        "no_segment_sup",  # the Hessian at x only, instead of the sup along the segment
    ],
)
def test_curvature_check_catches_a_wrong_curvature(setup, monkeypatch, mutant):
    from spectral_lab import stability as st

    model, x, _, _ = setup
    orig = st.logit_hessian_norm
    if mutant == "dropped_half":
        monkeypatch.setattr(st, "logit_hessian_norm", lambda m, z, c, **k: 0.5 * orig(m, z, c))
    elif mutant == "wrong_logit":
        monkeypatch.setattr(st, "logit_hessian_norm", lambda m, z, c, **k: orig(m, z, (c + 1) % 3))
    else:
        monkeypatch.setattr(st, "segment_curvature", lambda m, z, d, c, points=9: orig(m, z, c))
    chk = check_attribution_curvature(model, x, eps=(1e-3, 1e-2, 1e-1, 0.5))
    assert not chk.holds, chk


def test_curvature_form_fails_for_relu_where_it_does_not_apply(setup):
    # a genuine failure, no mutant: ReLU's input Hessian is zero almost everywhere but the
    # gradient jumps at kinks, so the curvature form (smooth activations only) is violated
    _, x, _, _ = setup
    chk = check_attribution_curvature(_model("relu"), x, eps=(0.5, 1.0), direction="random")
    assert not chk.holds and chk.curvature.max() == 0
