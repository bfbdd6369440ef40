"""The public face: about 40 top-level names, topic namespaces, and one release of old spellings.

Every name that left the top level still resolves, to the very same object, with a
DeprecationWarning that names the new spelling and points at the caller's line.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

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


@pytest.mark.parametrize("name", sorted(sl._MOVED))
def test_moved_name_warns_and_is_the_same_object(name):
    topic = sl._MOVED[name]
    with pytest.warns(DeprecationWarning, match=rf"use spectral_lab\.{topic}\.{name}\b") as rec:
        obj = getattr(sl, name)
    assert rec[0].filename == __file__  # points at the caller
    assert obj is getattr(getattr(sl, topic), name)
    assert name not in sl.__all__


def test_from_import_of_moved_name_warns_once_at_the_import():
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        from spectral_lab import hutchpp  # noqa: F401
    dep = [w for w in rec if issubclass(w.category, DeprecationWarning)]
    assert len(dep) == 1 and dep[0].filename == __file__
    assert "spectral_lab.linalg.hutchpp" in str(dep[0].message)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        sl.not_a_name  # noqa: B018


def test_calling_the_attribution_namespace_warns_and_dispatches():
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with pytest.warns(DeprecationWarning, match=r"spectral_lab\.attribution\.attribution") as rec:
        old = sl.attribution(lin, x, "saliency", 1)
    assert rec[0].filename == __file__
    assert torch.equal(old, sl.attribution.attribution(lin, x, "saliency", 1))


def test_bounds_module_is_a_warning_alias_of_sensitivity():
    bounds = importlib.import_module("spectral_lab.bounds")
    with pytest.warns(DeprecationWarning, match=r"spectral_lab\.sensitivity\.norm_bounds") as rec:
        fn = bounds.norm_bounds
    assert rec[0].filename == __file__
    assert fn is sl.sensitivity.norm_bounds


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


def test_smoothgrad_n_samples_is_num_draws():
    m, x = _model(), torch.randn(3, 4)
    with pytest.warns(DeprecationWarning, match="'num_draws'") as rec:
        old = sl.smoothgrad(m, x, n_samples=3, seed=1)
    assert rec[0].filename == __file__
    assert torch.equal(old, sl.smoothgrad(m, x, num_draws=3, seed=1))
    with pytest.raises(TypeError, match="pass only 'num_draws'"):
        sl.smoothgrad(m, x, n_samples=3, num_draws=3)


def test_integrated_gradients_steps_is_num_steps():
    m, x = _model(), torch.randn(3, 4)
    with pytest.warns(DeprecationWarning, match="'num_steps'") as rec:
        old = sl.integrated_gradients(m, x, steps=5)
    assert rec[0].filename == __file__
    assert torch.equal(old, sl.integrated_gradients(m, x, num_steps=5))


def test_attribution_instability_n_draws_is_num_draws():
    m, x = _model(), torch.randn(4, 4)
    with pytest.warns(DeprecationWarning, match="'num_draws'") as rec:
        old = sl.attribution_instability(m, x, scales=(0.1,), n_draws=2)
    assert rec[0].filename == __file__
    new = sl.attribution_instability(m, x, scales=(0.1,), num_draws=2)
    assert torch.equal(old.delta_grad, new.delta_grad)


def test_frechet_distance_bootstrap_n_boot_is_num_resamples():
    g = torch.Generator().manual_seed(0)
    clean, pert = torch.randn(20, 3, generator=g), torch.randn(2, 20, 3, generator=g)
    with pytest.warns(DeprecationWarning, match="'num_resamples'") as rec:
        old = sl.attribution.frechet_distance_bootstrap(clean, pert, n_boot=4)
    assert rec[0].filename == __file__
    assert torch.equal(old, sl.attribution.frechet_distance_bootstrap(clean, pert, num_resamples=4))


def test_sensitivity_n_draws_is_num_draws():
    J = torch.randn(2, 3, 4)
    with pytest.warns(DeprecationWarning, match="'num_draws'") as rec:
        old = sl.sensitivity.monte_carlo_sensitivity(
            J, None, 0.1, n_draws=50, generator=torch.Generator().manual_seed(1)
        )
    assert rec[0].filename == __file__
    new = sl.sensitivity.monte_carlo_sensitivity(
        J, None, 0.1, num_draws=50, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(old, new)
    with pytest.warns(DeprecationWarning, match="'num_draws'"):
        d = sl.sensitivity.isotropic_perturbations((3,), 0.1, n_draws=5)
    assert d.shape == (5, 3)


def test_results_are_frozen_with_to_dict():
    import dataclasses

    b = sl.sensitivity_bounds(torch.diag(torch.tensor([2.0, 1.0, 1.0])), 0.1)
    assert b.to_dict()["typical"] == pytest.approx(0.02)
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.eps = 1.0
    inst = sl.attribution_instability(torch.nn.Linear(4, 3), torch.randn(6, 4), (0.1,), num_draws=2)
    assert inst.to_dict()["scales"] == [0.1]


def test_fakedata_n_keywords_are_num(tmp_path):
    from spectral_lab.fakedata import write_fake_cifar, write_fake_mnist

    with pytest.warns(DeprecationWarning, match="'num_train'") as rec:
        write_fake_mnist(tmp_path / "a", n_train=3, num_test=2)
    assert rec[0].filename == __file__
    assert len(sl.load_dataset("mnist", "train", root=tmp_path / "a")) == 3
    with pytest.warns(DeprecationWarning, match="'num_per_batch'"):
        write_fake_cifar(tmp_path / "b", "cifar100", n_per_batch=2)
    assert len(sl.load_dataset("cifar100", "test", root=tmp_path / "b", verify=False)) == 2
