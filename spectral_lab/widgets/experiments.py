"""Explorers for experiments: controls only; the drawing functions live in :mod:`spectral_lab.plots.experiments`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..plots.experiments import study_draw
from ._core import explorer

if TYPE_CHECKING:
    from ipywidgets import interactive


def study_explorer(sweep: dict) -> interactive:
    """A slider over the regularisation strengths of a sweep (see :func:`study_draw`).

    Cost: that of its draw function (see :mod:`spectral_lab.plots`), once per change of a control.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> from spectral_lab.experiments import StudyConfig, strength_sweep
        >>> cfg = StudyConfig(model_kwargs={"width": 16, "depth": 2}, epochs=1, seeds=(0,), n_eval=40,
        ...                   n_draws=2, scales=(0.1,), fd_pca_dim=6)
        >>> import contextlib, io
        >>> with contextlib.redirect_stdout(io.StringIO()):  # display() prints outside a notebook
        ...     ui = study_explorer(strength_sweep(cfg, [0.01, 0.1], cache_dir=False, progress=False))
        >>> fig = ui.draw(0.1)
        >>> len(fig.axes)
        2
        >>> plt.close(fig)
    """
    import ipywidgets as w

    strengths = sorted(sweep)
    scales = list(next(iter(sweep.values())).config.scales)
    return explorer(
        study_draw(sweep),
        strength=w.SelectionSlider(
            options=strengths, value=strengths[len(strengths) // 2], description="strength λ"
        ),
        scale=w.Dropdown(options=scales, value=scales[len(scales) // 2], description="noise s"),
    )
