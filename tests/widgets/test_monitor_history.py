"""The monitor-history scrubber: markers at the chosen step, 2/eta beside the sharpness."""

from __future__ import annotations

import contextlib
import io

import matplotlib.pyplot as plt
import pytest

from spectral_lab.plots import monitor_history_draw, monitor_steps
from spectral_lab.widgets import monitor_history_explorer

H = {
    "a": [{"step": s, "sharpness": 10.0 + s, "two_over_lr": 20.0, "loss": 1.0 / (1 + s)} for s in (0, 5, 10)],
    "b": [{"step": s, "sharpness": 2.0 * s + 1, "loss": 2.0 / (1 + s)} for s in (0, 10)],
}  # fmt: skip


def test_markers_sit_on_each_runs_last_record_at_or_before_the_step():
    fig = monitor_history_draw(H)(step=7)
    ax = fig.axes[0]
    markers = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert [list(m.get_ydata()) for m in markers] == [[15.0], [1.0]]
    dashed = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert [list(d.get_ydata()) for d in dashed] == [[20.0, 20.0, 20.0]]  # 2/eta of run a only
    assert fig.axes[1].get_yscale() == "log"
    plt.close(fig)


def test_steps_and_explorer_slider():
    assert monitor_steps(H) == [0, 5, 10]
    with contextlib.redirect_stdout(io.StringIO()):
        ui = monitor_history_explorer(H, keys=("sharpness",))
    assert list(ui.children[0].options) == [0, 5, 10] and ui.children[0].value == 10
    plt.close("all")


def test_unknown_keys_and_empty_histories_are_refused():
    with pytest.raises(ValueError, match="recorded"):
        monitor_history_draw(H, keys=("ntk_drift",))
    with pytest.raises(ValueError, match="no records"):
        monitor_history_draw({"a": []})
