"""Deprecation shims: old spellings keep working for one release, with a ``DeprecationWarning``.

Policy (CONTRIBUTING.md): a renamed keyword or a changed argument order is accepted for one release;
the warning names the new spelling and points at the caller's line (``stacklevel``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def warn_deprecated(message: str, stacklevel: int = 3) -> None:
    """Emit a ``DeprecationWarning``; ``stacklevel=3`` points past the wrapper at the caller."""
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel)


def rename_kwargs(
    kwargs: dict[str, Any], renames: dict[str, str], where: str, stacklevel: int = 4
) -> dict[str, Any]:
    """Move ``kwargs[old]`` to ``kwargs[new]`` for each ``old -> new`` in ``renames``, warning once
    per old spelling; passing both spellings raises ``TypeError``."""
    for old, new in renames.items():
        if old in kwargs:
            if new in kwargs:
                raise TypeError(
                    f"{where}() got both {old!r} (deprecated) and {new!r}; pass only {new!r}"
                )
            warn_deprecated(
                f"{where}(): the keyword {old!r} is deprecated and will be removed in the next "
                f"release; use {new!r}",
                stacklevel,
            )
            kwargs[new] = kwargs.pop(old)
    return kwargs


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: accept ``old=`` keywords as ``new=`` for one release (``@renamed_kwargs(old="new")``).

    Example:
        >>> @renamed_kwargs(n_draws="num_draws")
        ... def f(*, num_draws=1):
        ...     return num_draws
        >>> import warnings
        >>> with warnings.catch_warnings(record=True):
        ...     warnings.simplefilter("always")
        ...     f(n_draws=3)
        3
    """

    def deco(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            rename_kwargs(kwargs, renames, func.__name__)
            return func(*args, **kwargs)

        wrapper.__renamed_kwargs__ = dict(renames)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco
