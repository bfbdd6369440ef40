"""The exercise mechanism grades the student's cell, never the reference solution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectral_lab import exercises as ex


def _run(capsys, *args, **kwargs):
    assert ex.check(*args, **kwargs) is None  # a notebook shows only the printed line
    out = capsys.readouterr().out.strip()
    return out.endswith(": passed"), out


def test_untouched_stub_is_not_attempted_even_when_the_solution_is_right(capsys):
    judge = ex.close(np.arange(4.0))
    assert _run(capsys, 1, ..., judge, solution=np.arange(4.0)) == (
        False,
        "exercise 1: not yet attempted",
    )
    assert _run(capsys, 1, (..., ...), ex.close((1.0, 2.0)), solution=(1.0, 2.0))[1] == (
        "exercise 1: not yet attempted"
    )


def test_function_stub_raising_not_implemented_is_not_attempted(capsys):
    def stub(x):
        raise NotImplementedError

    ok, out = _run(capsys, 4, stub, lambda f: None if f(3) == 9 else "no", solution=lambda x: x**2)
    assert (ok, out) == (False, "exercise 4: not yet attempted")


def test_wrong_answer_says_what_differs(capsys):
    judge = ex.close((torch.tensor([1.0, 2.0]), 3.0), names=("v", "s"))
    ok, out = _run(capsys, 2, (torch.tensor([1.0, 2.5]), 3.0), judge, solution=([1.0, 2.0], 3.0))
    assert not ok and out.startswith("exercise 2: not yet right: v differs")
    ok, out = _run(capsys, 2, (torch.tensor([1.0, 2.0]), ...), judge, solution=([1.0, 2.0], 3.0))
    assert not ok and "s is still ..." in out
    ok, out = _run(capsys, 2, (np.zeros(3), 3.0), judge, solution=([1.0, 2.0], 3.0))
    assert not ok and "shape (3,), expected (2,)" in out
    ok, out = _run(capsys, 3, 7, ex.equal(8, names="k"), solution=8)
    assert (ok, out) == (False, "exercise 3: not yet right: k is 7, expected another value")


def test_a_student_answer_that_raises_is_reported_not_raised(capsys):
    def judge(f):
        return None if f(2) == 4 else "f(2) != 4"

    ok, out = _run(capsys, 5, lambda x: 1 / 0, judge, solution=lambda x: x * 2)
    assert not ok and "ZeroDivisionError" in out


def test_right_answer_passes(capsys):
    judge = ex.close(np.linspace(0, 1, 5), rtol=1e-8)
    assert _run(
        capsys,
        6,
        torch.linspace(0, 1, 5, dtype=torch.float64),
        judge,
        solution=np.linspace(0, 1, 5),
    ) == (
        True,
        "exercise 6: passed",
    )


def test_a_wrong_reference_solution_fails_loudly(capsys):
    with pytest.raises(ex.ReferenceSolutionError, match="exercise 7: the reference solution"):
        ex.check(7, ..., ex.close(1.0), solution=1.1)
    assert capsys.readouterr().out == ""


def test_judge_names_must_match_the_values():
    with pytest.raises(ValueError, match="names"):
        ex.close((1.0, 2.0), names=("a",))
