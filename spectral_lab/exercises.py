"""Exercises that grade the student's cell: stub, hidden reference solution, check.

The pattern (Neuromatch's, adapted so that *Run All* cannot grade the solution):

1. **Stub cell** (tag ``exercise``): defines the student's names with ``...`` placeholders
   (``rank = ...``), or a function whose body raises ``NotImplementedError``.
2. **Reference solution** (tags ``solution``, ``hide-input``; collapsed): a function
   ``_solution_N()`` that computes the answer in its *own* local names and returns it. It never
   assigns the student's names, so running it under *Run All* leaves the stub untouched.
3. **Check cell** (tag ``nbval-check-output``): :func:`check` first grades the reference solution
   against an *independent* computation (NumPy, a closed form, autograd) and raises when they
   disagree, so a wrong solution fails the chapter; then it grades the student's answer with the
   same judge and prints one line: ``exercise N: not yet attempted`` (a stub still holding ``...``
   or raising ``NotImplementedError``), ``exercise N: passed``, or ``exercise N: not yet right:
   <what differs>``. A wrong or unfinished answer never raises: *Run All* goes on.

A *judge* is a function ``judge(answer) -> str | None``: ``None`` when the answer is right, else
one sentence saying what is wrong. :func:`close` and :func:`equal` build the usual ones.

Example:
    >>> import numpy as np
    >>> judge = close(np.arange(3.0), names="v")
    >>> check(1, ..., judge, solution=np.arange(3.0))
    exercise 1: not yet attempted
    >>> check(1, np.ones(3), judge, solution=np.arange(3.0))
    exercise 1: not yet right: v differs from the reference (largest difference 1 at index 0)
    >>> check(1, [0.0, 1.0, 2.0], judge, solution=np.arange(3.0))
    exercise 1: passed
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Judge = Callable[[Any], "str | None"]

__all__ = ["Judge", "ReferenceSolutionError", "attempted", "check", "close", "equal"]


class ReferenceSolutionError(AssertionError):
    """The chapter's own reference solution disagrees with the independent computation."""


def _is_stub(value: Any) -> bool:
    return value is Ellipsis


def attempted(answer: Any) -> bool:
    """Whether the student has touched the stub: ``False`` for ``...``, for a tuple/list/dict all
    of whose entries are ``...``, and for a function whose body still raises
    ``NotImplementedError`` (tested by calling it is the judge's job: see :func:`check`).

    Example:
        >>> attempted(...), attempted((..., ...)), attempted((1, ...)), attempted(0)
        (False, False, True, True)
    """
    if _is_stub(answer):
        return False
    if isinstance(answer, dict):
        return not answer or not all(_is_stub(v) for v in answer.values())
    if isinstance(answer, (tuple, list)):
        return not answer or not all(_is_stub(v) for v in answer)
    return True


def _as_array(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _parts(answer: Any, n: int) -> list[Any]:
    if n == 1:
        return [answer]
    if isinstance(answer, dict):
        answer = list(answer.values())
    if not isinstance(answer, (tuple, list)) or len(answer) != n:
        raise _Wrong(f"expected {n} values, got {type(answer).__name__}")
    return list(answer)


class _Wrong(Exception):
    pass


def _names(names: str | Sequence[str] | None, n: int) -> list[str]:
    if names is None:
        return ["the answer"] if n == 1 else [f"value {i + 1}" for i in range(n)]
    names = [names] if isinstance(names, str) else list(names)
    if len(names) != n:
        raise ValueError(f"names: give one name per expected value ({n}), got {len(names)}")
    return names


def close(
    expected: Any,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    names: str | Sequence[str] | None = None,
) -> Judge:
    """A judge that accepts an answer equal to ``expected`` within ``|a - e| <= atol + rtol |e|``
    elementwise (NumPy's ``allclose``), same shape. ``expected`` is one value (array, tensor,
    number) or a tuple of them, one per name in ``names``. Cost: one comparison.

    Example:
        >>> judge = close((1.0, [2.0, 3.0]), names=("a", "b"))
        >>> judge((1.0, [2.0, 3.0])) is None
        True
        >>> judge((1.0, [2.0]))
        'b has shape (1,), expected (2,)'
        >>> judge((..., [2.0, 3.0]))
        'a is still ...: replace it with your answer'
    """
    many = isinstance(expected, tuple)
    wanted = list(expected) if many else [expected]
    labels = _names(names, len(wanted))
    refs = [_as_array(e).astype(float) for e in wanted]

    def judge(answer: Any) -> str | None:
        try:
            parts = _parts(answer, len(refs)) if many else [answer]
        except _Wrong as err:
            return str(err)
        for label, got, ref in zip(labels, parts, refs, strict=True):
            if _is_stub(got):
                return f"{label} is still ...: replace it with your answer"
            try:
                arr = _as_array(got).astype(float)
            except (TypeError, ValueError):
                return f"{label} is a {type(got).__name__}, not a number or an array of numbers"
            if arr.shape != ref.shape:
                return f"{label} has shape {arr.shape}, expected {ref.shape}"
            if not np.all(np.isfinite(arr)):
                return f"{label} holds NaN or infinite values"
            if not np.allclose(arr, ref, rtol=rtol, atol=atol):
                gap = np.abs(arr - ref)
                where = np.unravel_index(int(np.argmax(gap)), gap.shape) if gap.ndim else ()
                at = f" at index {where[0] if len(where) == 1 else where}" if where else ""
                return (
                    f"{label} differs from the reference (largest difference {gap.max():.3g}{at})"
                )
        return None

    return judge


def equal(expected: Any, *, names: str | Sequence[str] | None = None) -> Judge:
    """A judge that accepts an answer ``==`` to ``expected`` (ints, strings, booleans; one value
    or a tuple of them, one per name in ``names``).

    Example:
        >>> equal(3, names="k")(4)
        'k is 4, expected another value'
        >>> equal(3)(3) is None
        True
    """
    many = isinstance(expected, tuple)
    wanted = list(expected) if many else [expected]
    labels = _names(names, len(wanted))

    def judge(answer: Any) -> str | None:
        try:
            parts = _parts(answer, len(wanted)) if many else [answer]
        except _Wrong as err:
            return str(err)
        for label, got, ref in zip(labels, parts, wanted, strict=True):
            if _is_stub(got):
                return f"{label} is still ...: replace it with your answer"
            if hasattr(got, "item") and getattr(got, "ndim", 0) == 0:
                got = got.item()
            if got != ref:
                return f"{label} is {got!r}, expected another value"
        return None

    return judge


def check(number: int, answer: Any, judge: Judge, *, solution: Any) -> None:
    """Grade exercise ``number``: the reference ``solution`` first (it must pass ``judge``, else
    :class:`ReferenceSolutionError`), then the student's ``answer``; print one line (nothing is returned, so
    a notebook shows only that line). Never raises for the student's answer: an untouched
    stub prints ``not yet attempted``, a wrong one ``not yet right: <why>``, and an answer that
    makes the judge raise is reported the same way. Cost: two calls of ``judge``.

    Example:
        >>> def stub(x):
        ...     raise NotImplementedError
        >>> check(2, stub, lambda f: None if f(2) == 4 else "f(2) != 4", solution=lambda x: x * x)
        exercise 2: not yet attempted
        >>> check(2, lambda x: 2 * x, lambda f: None, solution=lambda x: x + 1)
        exercise 2: passed
        >>> check(3, 1, equal(2), solution=1)
        Traceback (most recent call last):
        ...
        spectral_lab.exercises.ReferenceSolutionError: exercise 3: the reference solution fails its own check (the answer is 1, expected another value); the chapter is wrong, not you
    """
    if not isinstance(number, int):
        raise TypeError(f"number: the exercise's number as an int, got {number!r}")
    problem = judge(solution)
    if problem is not None:
        raise ReferenceSolutionError(
            f"exercise {number}: the reference solution fails its own check ({problem}); "
            "the chapter is wrong, not you"
        )
    if not attempted(answer):
        print(f"exercise {number}: not yet attempted")
        return
    try:
        problem = judge(answer)
    except NotImplementedError:
        print(f"exercise {number}: not yet attempted")
        return
    except Exception as err:  # the student's code raised: report it, keep Run All going
        problem = f"checking it raised {type(err).__name__}: {err}"
    if problem is not None:
        print(f"exercise {number}: not yet right: {problem}")
        return
    print(f"exercise {number}: passed")
