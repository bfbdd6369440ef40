"""One way to turn ``generator=`` / ``seed=`` into a ``torch.Generator``.

Rule (CONTRIBUTING.md): every randomised function takes ``generator: torch.Generator | None = None``
and ``seed: int | None = None``; pass at most one. With neither, a fresh generator seeded with 0 is
used, so every call is reproducible; pass a ``generator`` to draw a different stream each call.
"""

from __future__ import annotations

import torch


def resolve_generator(
    generator: torch.Generator | None = None,
    seed: int | None = None,
    device: torch.device | str | None = None,
) -> torch.Generator:
    """``generator`` itself, else a new generator on ``device`` seeded with ``seed`` (default 0).

    Raises ``ValueError`` when both are given (which one should win is ambiguous) and
    ``TypeError`` for a non-generator.

    Example:
        >>> g = resolve_generator(seed=3)
        >>> bool(torch.equal(torch.rand(2, generator=g), torch.rand(2, generator=resolve_generator(seed=3))))
        True
    """
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either generator= or seed=, not both")
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    g = torch.Generator(device=device if device is not None else "cpu")
    g.manual_seed(0 if seed is None else int(seed))
    return g
