"""The public face: about 40 top-level names and the topic namespaces.

No release was ever published, so the spellings renamed on the way (CHANGES.md, "Renamed before the
first release") are gone, not deprecated: each old name is an AttributeError, each old keyword a
TypeError, and the new spelling named in the table works.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import spectral_lab as sl

TOPICS = (
    "attribution data experiments geometry hessian jacobians linalg models ntk operators plots "
    "regularizers sensitivity spectra stability training widgets"
).split()


def test_face_is_small_and_every_name_resolves_without_warning():
    names = [n for n in sl.__all__ if n not in TOPICS]
    assert 30 <= len(names) <= 50, len(names)
    assert len(set(sl.__all__)) == len(sl.__all__)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in sl.__all__:
            assert getattr(sl, name) is not None, name
    for topic in TOPICS:
        assert isinstance(getattr(sl, topic), type(sys)), topic


def test_face_names_are_the_topic_functions():
    assert sl.spectral_entropy is sl.spectra.spectral_entropy
    assert sl.hessian_eigs is sl.hessian.hessian_eigs
    assert sl.sensitivity_bounds is sl.sensitivity.sensitivity_bounds
    # one meaning per name: the top-level effective_rank is exp(spectral entropy)
    s = torch.tensor([2.0, 1.0, 1.0])
    p = s**2 / (s**2).sum()
    assert float(sl.effective_rank(s, kind="singular")) == pytest.approx(
        float(torch.exp(-(p * p.log()).sum()))
    )


def _moved_names() -> dict[str, str]:
    """``name -> topic`` from CHANGES.md's table of names that left the top level."""
    text = (Path(__file__).resolve().parents[1] / "CHANGES.md").read_text()
    section = text.split("## Renamed before the first release", 1)[1].split("\n## ", 1)[0]
    out = {}
    for row in re.findall(r"^\| `sl\.(\w+)` \| (.+) \|$", section, flags=re.M):
        topic, names = row
        out |= {n: topic for n in re.findall(r"`(\w+)`", names)}
    return out


MOVED = _moved_names()


def test_the_table_of_moved_names_is_read():
    assert len(MOVED) > 80 and MOVED["hutchpp"] == "linalg"


@pytest.mark.parametrize("name", sorted(MOVED))
def test_moved_name_lives_only_in_its_topic(name):
    topic = MOVED[name]
    assert getattr(getattr(sl, topic), name) is not None
    assert name not in sl.__all__
    with pytest.raises(AttributeError, match=f"no attribute {name!r}"):
        getattr(sl, name)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        sl.not_a_name  # noqa: B018


def test_old_namespaces_are_gone():
    assert not callable(sl.attribution)  # the dispatcher is sl.attribution.attribution
    package = Path(sl.__file__).parent
    # spectral_lab.bounds is spectral_lab.sensitivity; no deprecation shims are left
    assert not (package / "bounds.py").exists() and not (package / "_deprecate.py").exists()


def test_import_is_light():
    # geometry (SciPy), plots (Matplotlib) and widgets (ipywidgets) load on first use only
    code = (
        "import sys, spectral_lab as sl\n"
        "heavy = [m for m in ('matplotlib', 'scipy', 'ipywidgets', 'sklearn', 'torchvision',"
        " 'spectral_lab.geometry', 'spectral_lab.plots', 'spectral_lab.widgets') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "sl.geometry.power_law_fit\n"
        "assert 'scipy' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- renamed keywords
def _model():
    torch.manual_seed(0)
    return sl.MLP(4, 3, width=8).eval()


def _calls(tmp: Path):
    """``(function, old keyword, call with new keywords)`` for rows of CHANGES.md's table."""
    from spectral_lab import fakedata, regularizers, sensitivity, stability

    m, x = _model(), torch.randn(3, 4)
    xy = (torch.randn(6, 4), torch.randint(0, 3, (6,)))
    g = torch.Generator().manual_seed(0)
    clean, pert = torch.randn(20, 3, generator=g), torch.randn(2, 20, 3, generator=g)
    return [
        (lambda **k: sl.smoothgrad(m, x, **k), "n_samples", {"num_draws": 2}),
        (lambda **k: sl.integrated_gradients(m, x, **k), "steps", {"num_steps": 3}),
        (lambda **k: sl.attribution_instability(m, x, (0.1,), **k), "n_draws", {"num_draws": 2}),
        (lambda **k: sl.attribution.frechet_distance_bootstrap(clean, pert, **k), "n_boot",
         {"num_resamples": 2}),
        (lambda **k: sensitivity.isotropic_perturbations((3,), 0.1, **k), "n_draws",
         {"num_draws": 2}),
        (lambda **k: regularizers.jacobian_frobenius_norm(m, x, **k), "n_proj", {"num_draws": 2}),
        (lambda **k: regularizers.jacobian_spectral_norm(m, x, **k), "n_iter", {"max_iter": 2}),
        (lambda **k: sl.linalg.hutchpp(torch.eye(6), 6, **k), "block_size", {"chunk_size": 3}),
        (lambda **k: sl.linalg.as_operator(torch.eye(3)).dense(**k), "block_size",
         {"chunk_size": 2}),
        (lambda **k: stability.measure_forward_sensitivity(m, x, 0.1, **k), "draws",
         {"num_draws": 2}),
        (lambda **k: stability.stability_profile(m, xy, **k), "lanczos_steps", {"max_iter": 50}),
        (lambda **k: stability.logit_hessian_norm(m, x, torch.zeros(3), **k), "memory_budget",
         {"chunk_size": 2}),
        (lambda **k: sl.diagnose(m, xy, progress=False, **k), "ntk_samples",
         {"num_ntk_samples": 4}),
        (lambda **k: sl.load_dataset("teacher", **k), "n_samples", {"num_samples": 8}),
        (lambda **k: fakedata.write_fake_cifar(tmp, "cifar100", **k), "n_per_batch",
         {"num_per_batch": 2}),
    ]  # fmt: skip


def test_renamed_keywords_are_refused_and_their_new_spelling_works(tmp_path):
    for call, old, new in _calls(tmp_path):
        with pytest.raises(TypeError, match=old):
            call(**{old: next(iter(new.values()))})
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            call(**new)


def test_cli_takes_only_the_new_flag_spellings():
    from spectral_lab import cli

    parser = cli.build_parser()
    a = parser.parse_args(["diagnose", "--model", "mlp", "--num-ntk-samples", "7",
                           "--num-hessian-samples", "9", "--max-iter", "11"])  # fmt: skip
    assert (a.num_ntk_samples, a.num_hessian_samples, a.max_iter) == (7, 9, 11)
    with pytest.raises(SystemExit):
        parser.parse_args(["diagnose", "--model", "mlp", "--lanczos-steps", "11"])


def test_results_are_frozen_with_to_dict():
    import dataclasses

    b = sl.sensitivity_bounds(torch.diag(torch.tensor([2.0, 1.0, 1.0])), 0.1)
    assert b.to_dict()["typical"] == pytest.approx(0.02)
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.eps = 1.0
    inst = sl.attribution_instability(torch.nn.Linear(4, 3), torch.randn(6, 4), (0.1,), num_draws=2)
    assert inst.to_dict()["scales"] == [0.1]
