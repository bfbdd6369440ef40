"""Matrix-free symmetric eigen-solvers and estimators on torch tensors.

Everything here takes a symmetric operator ``A`` known only through products ``v -> A v``:

* a :class:`LinearOperator` (what :func:`~spectral_lab.hessian.hessian_operator` and
  :func:`~spectral_lab.ntk.ntk_operator` return; it counts its products),
* a plain callable ``matvec(v)`` on 1-D tensors together with ``dim=`` (and ``dtype``/``device``),
* or a dense symmetric ``torch.Tensor`` (handy for tests and toy problems).

Public functions: :func:`power_iteration` (with deflation), :func:`lanczos` (thick-restart, full
reorthogonalisation, a basis capped by :func:`default_basis_cap`; top-k largest, smallest algebraic
or largest-magnitude eigenpairs), :func:`hutchinson` and :func:`hutchpp` (trace),
:func:`spectral_density` (stochastic Lanczos quadrature, probes in memory-bounded blocks). Long
float32 reductions (dots, norms) use cascade summation, not BLAS, so their error does not grow with
the dimension. Randomness comes
from ``generator`` or ``seed`` (pass at most one; default seed 0, so results are reproducible);
vectors live on the operator's device in its dtype (a dense tensor or callable defines them; a
mismatched ``v0`` is cast). Results are frozen dataclasses with ``to_dict()``;
``float(TraceResult)`` is the estimate, ``float(EigResult)`` the eigenvalue when ``k=1``.

Example:
    >>> A = torch.diag(torch.arange(1.0, 101.0, dtype=torch.float64))
    >>> r = lanczos(A, k=3)
    >>> [round(x) for x in r.eigenvalues.tolist()]
    [100, 99, 98]

One algorithm per file: ``operator`` (:class:`LinearOperator`, :func:`as_operator`), ``power``
(:func:`power_iteration`), ``krylov`` (:func:`lanczos`, :func:`default_basis_cap`), ``eigen``
(:class:`EigResult`), ``trace`` (:func:`hutchinson`, :func:`hutchpp`, :class:`TraceResult`) and ``slq``
(:func:`spectral_density`, :class:`SpectralDensity`, ``slq.SLQ_BASIS_BYTES``); every public name is
re-exported here. A test that swaps a private helper patches it in the submodule that looks it up.
"""

from __future__ import annotations

import torch  # noqa: F401  (the doctest above uses it)

from .eigen import EigResult
from .krylov import default_basis_cap, lanczos
from .operator import LinearOperator, as_operator
from .power import power_iteration
from .slq import SpectralDensity, spectral_density
from .trace import TraceResult, hutchinson, hutchpp

__all__ = [
    "EigResult",
    "LinearOperator",
    "SpectralDensity",
    "TraceResult",
    "as_operator",
    "default_basis_cap",
    "hutchinson",
    "hutchpp",
    "lanczos",
    "power_iteration",
    "spectral_density",
]
