"""The Fréchet (2-Wasserstein) distance between Gaussians fitted to two clouds of attribution maps,
and its bootstrap over points.

Two exact routes from samples: ``"gram"`` works through the ``n_A x n_B`` cross-Gram matrix of the
centred samples (cost ``O(n_A n_B d)``, no ``d x d`` matrix ever formed: what makes 224 x 224 maps
affordable), ``"dense"`` through the ``d x d`` covariances (``O(n d^2 + d^3)``); ``"auto"`` takes
the cheaper one. Both compute the same number.
"""

from __future__ import annotations

import torch

from .._checks import check_tensor


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root by eigendecomposition, negative eigenvalues clipped to 0."""
    m = 0.5 * (m + m.T)
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def gaussian_frechet_distance(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor
) -> torch.Tensor:
    """Squared Fréchet (2-Wasserstein) distance between ``N(mu1, cov1)`` and ``N(mu2, cov2)``:

        ||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1^{1/2} cov2 cov1^{1/2})^{1/2}).

    Computed in float64 with two symmetric eigendecompositions (negative eigenvalues from round-off
    clipped to 0), which is stable where ``scipy.linalg.sqrtm`` of the non-symmetric ``cov1 cov2``
    can return complex noise. Cost ``O(k^3)`` for dimension ``k``. Returns a 0-d float64 tensor
    on the device of its inputs.

    Example: for equal covariances only the means count.
        >>> I = torch.eye(2)
        >>> float(gaussian_frechet_distance(torch.zeros(2), I, torch.tensor([3.0, 4.0]), I))
        25.0
    """
    mu1, mu2 = mu1.double(), mu2.double()
    cov1, cov2 = cov1.double(), cov2.double()
    s1 = _sqrt_psd(cov1)
    inner = s1 @ cov2 @ s1
    inner = 0.5 * (inner + inner.T)
    tr_sqrt = torch.linalg.eigvalsh(inner).clamp_min(0).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * tr_sqrt
    return fd.clamp_min(0)


_FD_METHODS = ("auto", "gram", "dense")


def _check_fd_method(method: str) -> None:
    if method not in _FD_METHODS:
        raise ValueError(f"method must be one of {_FD_METHODS}, got {method!r}")


def _pick(method: str, na: int, nb: int, d: int) -> str:
    """``"auto"``: the cheaper exact route by its flop count (a choice, not from a paper)."""
    if method != "auto":
        return method
    gram = na * nb * d + min(na, nb) ** 2 * max(na, nb)
    dense = (na + nb) * d * d + 2 * d**3
    return "gram" if gram <= dense else "dense"


def _frechet_gram(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """Squared FD of the Gaussians fitted to the rows of ``A`` (n_A, d) and ``B`` (n_B, d), exactly,
    through the cross-Gram matrix: with ``X_A = (A - mu_A) / sqrt(n_A - 1)`` (so
    ``Sigma_A = X_A^T X_A``) the nonzero eigenvalues of ``Sigma_A Sigma_B`` are those of
    ``M M^T``, ``M = X_A X_B^T`` (n_A x n_B), hence
    ``tr (Sigma_A^{1/2} Sigma_B Sigma_A^{1/2})^{1/2} = ||M||_*`` (sum of singular values) and
    ``tr Sigma_A = ||X_A||_F^2``."""
    mu_a, mu_b = A.mean(0), B.mean(0)
    Xa = (A - mu_a) / (len(A) - 1) ** 0.5
    Xb = (B - mu_b) / (len(B) - 1) ** 0.5
    nuclear = torch.linalg.svdvals(Xa @ Xb.T).sum()
    fd = (mu_a - mu_b).pow(2).sum() + Xa.pow(2).sum() + Xb.pow(2).sum() - 2 * nuclear
    return fd.clamp_min(0)


def _frechet_samples(A: torch.Tensor, B: torch.Tensor, method: str) -> torch.Tensor:
    if _pick(method, len(A), len(B), A.shape[1]) == "gram":
        return _frechet_gram(A, B)
    return gaussian_frechet_distance(
        A.mean(0),
        torch.cov(A.T).reshape(A.shape[1], -1),
        B.mean(0),
        torch.cov(B.T).reshape(B.shape[1], -1),
    )


def frechet_distance(
    A: torch.Tensor,
    B: torch.Tensor,
    *,
    normalize: bool = False,
    pca_dim: int | None = None,
    squared: bool = True,
    method: str = "auto",
) -> torch.Tensor:
    """Fréchet distance between the Gaussians fitted to two clouds of attributions.

    ``A`` (clean) and ``B`` (perturbed) are ``(n, ...)`` samples, flattened to ``(n, d)``. Steps:

    1. ``normalize=True``: divide every sample by its L2 norm (compares *shapes* of maps, not scale);
    2. ``pca_dim=k``: project both clouds on the top-``k`` principal directions of the *clean* cloud
       ``A`` (an optional summary; not needed for cost: see ``method``);
    3. fit ``mu, Sigma`` (unbiased covariance, ``n - 1``) to each and return the distance between
       the two Gaussians.

    ``method`` -- two exact routes to the same number:

    * ``"gram"``: ``Sigma_A = X_A^T X_A`` with ``X_A = (A - mu_A) / sqrt(n_A - 1)`` has rank
      ``< n_A``; the nonzero eigenvalues of ``Sigma_A Sigma_B`` are those of ``M M^T`` with the
      ``n_A x n_B`` cross-Gram ``M = X_A X_B^T``, so
      ``tr (Sigma_A^{1/2} Sigma_B Sigma_A^{1/2})^{1/2} = ||M||_*`` (the sum of its singular values)
      and ``tr Sigma_A = ||X_A||_F^2``. Cost ``O(n_A n_B d)``, memory ``O(n d)``: no ``d x d``
      matrix is formed (``d = 3 x 224 x 224`` with a few dozen samples takes well under a second).
    * ``"dense"``: the ``d x d`` covariances and :func:`gaussian_frechet_distance`, cost
      ``O(n d^2 + d^3)``, memory ``O(d^2)`` (181 GB at ``d = 3 x 224 x 224``); when ``n < d`` its
      singular square root carries a round-off floor of order ``sqrt(eps)`` per zero eigenvalue.
    * ``"auto"`` (default): the route with the smaller flop count (``"gram"`` whenever ``n < d``
      roughly); a choice, not from the paper.

    **What is returned.** By default the *squared* distance
    ``FD = ||mu_A - mu_B||^2 + tr(Sigma_A + Sigma_B - 2 (Sigma_A^{1/2} Sigma_B Sigma_A^{1/2})^{1/2})``
    (the quantity FID reports), in squared attribution units; ``squared=False`` returns its square
    root. Defaults (no normalisation, no projection) are choices, not from the paper.
    Cost: see ``method`` (``d`` -> ``k`` after projection, plus an ``O(n^2 d)`` thin SVD). Returns
    a 0-d float64 tensor on the device of its inputs.

    Example: two samples of ``N(0, I_2)`` and ``N(m, I_2)`` give ``FD ≈ ||m||^2 = 25``.
        >>> g = torch.Generator().manual_seed(0)
        >>> A = torch.randn(4000, 2, generator=g)
        >>> B = torch.randn(4000, 2, generator=g) + torch.tensor([3.0, 4.0])
        >>> round(float(frechet_distance(A, B)))
        25

    The Gram route equals the dense one (here 60 samples of 5 features):
        >>> A, B = torch.randn(60, 5, generator=g), torch.randn(70, 5, generator=g)
        >>> fg, fd = frechet_distance(A, B, method="gram"), frechet_distance(A, B, method="dense")
        >>> bool(abs(fg - fd) < 1e-8 * fd)
        True
    """
    _check_fd_method(method)
    A = check_tensor(A, "A", min_dim=2).flatten(1).double()
    B = check_tensor(B, "B", min_dim=2).flatten(1).double()
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"A and B must have the same number of features, got {A.shape[1]} and {B.shape[1]}"
        )
    if len(A) < 2 or len(B) < 2:
        raise ValueError("A and B need at least 2 samples each to estimate a covariance")
    if normalize:
        A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
        B = B / B.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if pca_dim is not None:
        if not 1 <= int(pca_dim) <= A.shape[1]:
            raise ValueError(f"pca_dim must be between 1 and {A.shape[1]}, got {pca_dim}")
        mean = A.mean(0)
        _, _, vh = torch.linalg.svd(A - mean, full_matrices=False)
        k = min(int(pca_dim), vh.shape[0])
        P = vh[:k].T
        A, B = (A - mean) @ P, (B - mean) @ P
    fd = _frechet_samples(A, B, method)
    return fd if squared else fd.sqrt()


def frechet_distance_bootstrap(
    clean: torch.Tensor,
    perturbed: torch.Tensor,
    num_resamples: int = 200,
    *,
    normalize: bool = False,
    pca_dim: int | None = None,
    seed: int = 0,
    method: str = "auto",
) -> torch.Tensor:
    """Bootstrap replicates of :func:`frechet_distance` over the *points* of a perturbation study.

    ``clean`` is ``(n, ...)``; ``perturbed`` is ``(m, n, ...)``: ``m`` noisy copies of each point
    (the cloud :func:`attribution_instability` pools). One replicate draws ``n`` point indices with
    replacement (``torch.Generator`` seeded by ``seed``, so two studies on the same ``n`` points get
    the *same* index sets: replicates are paired across models) and recomputes the squared FD of
    ``clean[idx]`` against ``perturbed[:, idx]``. The principal directions (``pca_dim``) are those of
    the full clean cloud, fixed across replicates (a bootstrap conditional on the basis; cheap,
    ``O(num_resamples (n m k^2 + k^3))``); ``method`` as in :func:`frechet_distance` (the Gram
    route costs ``O(num_resamples n^2 m d)`` and never forms a ``d x d`` matrix). Returns a float64 tensor of ``num_resamples`` values on the
    CPU (the index draws are made on the CPU, so the replicates do not depend on the device).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> clean = torch.randn(50, 3, generator=g)
        >>> reps = frechet_distance_bootstrap(clean, clean + 0.1 * torch.randn(4, 50, 3, generator=g), 20)
        >>> reps.shape, bool((reps >= 0).all())
        (torch.Size([20]), True)
    """
    _check_fd_method(method)
    A = check_tensor(clean, "clean", min_dim=2).flatten(1).double()
    if perturbed.dim() < 3 or perturbed.shape[1] != A.shape[0]:
        raise ValueError(
            f"perturbed must be (m, n, ...) with n = {A.shape[0]}, got {tuple(perturbed.shape)}"
        )
    B = perturbed.flatten(2).double()
    if normalize:
        A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
        B = B / B.norm(dim=2, keepdim=True).clamp_min(1e-12)
    if pca_dim is not None:
        mean = A.mean(0)
        vh = torch.linalg.svd(A - mean, full_matrices=False).Vh
        P = vh[: min(int(pca_dim), vh.shape[0])].T
        A, B = (A - mean) @ P, (B - mean) @ P
    n = A.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    out = torch.empty(int(num_resamples), dtype=torch.float64)
    for b in range(int(num_resamples)):
        idx = torch.randint(0, n, (n,), generator=g).to(A.device)
        a, p = A[idx], B[:, idx].reshape(-1, A.shape[1])
        out[b] = _frechet_samples(a, p, method)
    return out
