"""One pair of prepared layers: :func:`compare` and the registry's dispatch, :func:`pair_distances`.

The pair kernels live in :mod:`cca_scale.core.kernels`, one per metric of the registry
(:mod:`cca_scale.core.registry`); the names below are re-exported for compatibility.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cca_scale.core.basis import Basis
from cca_scale.core.kernels import (
    DEFAULT_EPSILON,
    PairResult,
    SvccaSide,
    ill_posed,
    ill_posed_message,
    projection_weights,
    stable_pwcca_similarity,
    svcca_rank,
)
from cca_scale.core.registry import (
    ALIGNED_METRICS,
    CCA_METRICS,
    VARIANTS,
    check_aligned,
    check_epsilon,
    check_keep,
    check_metric,
    get_metric,
)
from cca_scale.core.registry import METRIC_NAMES as METRICS
from cca_scale.errors import CcaScaleError

__all__ = [
    "METRICS",
    "VARIANTS",
    "PairResult",
    "check_metric",
    "ALIGNED_METRICS",
    "CCA_METRICS",
    "DEFAULT_EPSILON",
    "check_aligned",
    "check_epsilon",
    "check_keep",
    "svcca_rank",
    "compare",
    "pair_distances",
    "SvccaSide",
    "ill_posed",
    "ill_posed_message",
    "original_pwcca_similarity",
    "stable_pwcca_similarity",
    "projection_weights",
]


def original_pwcca_similarity(x: np.ndarray, y: np.ndarray, epsilon: float) -> float | None:
    """PWCCA of the original public implementation (google/svcca ``compute_pwcca``), step by step.

    ``x``, ``y``: float64 NumPy activations of shape (n_datapoints, n_neurons). The original's own
    operations in its own order, so that its SVD signs, and its value, are reproduced bit for bit:
    ``np.cov`` of the stacked neurons; blocks divided by their max |entry| (cross block by the
    geometric mean); neurons of scaled variance below ``epsilon`` dropped; ``epsilon * I`` added;
    pseudo-inverse and eigh square root; full NumPy SVD of ``Sxx^-1/2 Sxy Syy^-1/2``; weights from
    the side with fewer kept neurons (ties: x), whose UN-whitened directions ``(Z - mean) @ c +
    mean`` (``c`` its singular vectors) are orthonormalised by QR and projected onto the UNCENTRED
    kept neurons ``Z``.

    Returns None where the original is undefined: a negative eigenvalue of the pseudo-inverse (the
    original takes its square root: NaN), a LinAlgError, a non-finite result, or a canonical
    correlation above 1 (an impossible value, seen on badly conditioned layers).

    Fixed here, not copied: the original indexes the FIRST argument's activations when the second
    is the smaller side (upstream PR #9), and broadcasts the means of all neurons against the kept
    ones (a crash when any neuron is dropped); here each side uses its own kept neurons.
    """
    acts1, acts2 = x.T, y.T
    numx = acts1.shape[0]
    cov = np.cov(acts1, acts2)
    xmax = np.max(np.abs(cov[:numx, :numx]))
    ymax = np.max(np.abs(cov[numx:, numx:]))
    sxx, syy = cov[:numx, :numx] / xmax, cov[numx:, numx:] / ymax
    sxy = cov[:numx, numx:] / np.sqrt(xmax * ymax)
    kx = np.abs(np.diagonal(sxx)) >= epsilon
    ky = np.abs(np.diagonal(syy)) >= epsilon
    sxx = sxx[kx][:, kx] + epsilon * np.eye(int(kx.sum()))
    syy = syy[ky][:, ky] + epsilon * np.eye(int(ky.sum()))
    try:
        inv_x, inv_y = _original_inv_sqrt(sxx), _original_inv_sqrt(syy)
        if inv_x is None or inv_y is None:
            return None
        u, rho, vh = np.linalg.svd(np.dot(inv_x, np.dot(sxy[kx][:, ky], inv_y)))
    except np.linalg.LinAlgError:
        return None
    rho = np.abs(rho)
    if not np.all(np.isfinite(rho)) or rho.max() > 1.0:
        return None
    if kx.sum() <= ky.sum():
        acts, kept, coef_t = acts1, kx, u.T
    else:
        acts, kept, coef_t = acts2, ky, vh
    means = np.mean(acts, axis=1, keepdims=True)[kept]
    dirns = np.dot(coef_t, acts[kept] - means) + means
    p, _ = np.linalg.qr(dirns.T)
    weights = np.sum(np.abs(np.dot(p.T, acts[kept].T)), axis=1)
    weights = weights / np.sum(weights)
    similarity = float(np.sum(weights * rho))
    return similarity if np.isfinite(similarity) else None


def _original_inv_sqrt(a: np.ndarray) -> np.ndarray | None:
    """The original's inverse square root (pseudo-inverse, eigh, sqrt); None where it takes the
    square root of a negative eigenvalue (the pseudo-inverse is not exactly symmetric)."""
    w, v = np.linalg.eigh(np.linalg.pinv(a))
    if np.any(w < 0):
        return None
    return np.dot(v, np.dot(np.diag(np.sqrt(w)), np.conj(v).T))


def pair_distances(
    cross,
    a: Basis,
    b: Basis,
    *,
    metric: str = "pwcca",
    variant: str = "paper",
    keep: Any = 0.99,
    epsilon: float = DEFAULT_EPSILON,
    sides: tuple[SvccaSide, SvccaSide] | None = None,
    both: bool = True,
) -> PairResult:
    """Distances between two prepared layers from their cross product.

    Runs the metric's per-layer step (``MetricInfo.prepare_basis``, e.g. SVCCA's cut to the top
    directions) and its kernel (:mod:`cca_scale.core.registry`).

    Parameters
    ----------
    cross : array of shape (a.rank, b.rank)
        ``a.q.T @ b.q`` (NumPy or CuPy, the same module as the bases).
    a, b : Basis
    metric, variant, keep, epsilon
        As in :func:`cca_scale.pwcca_distance` and friends; assumed valid (checked at the boundary).
    sides : pair of SvccaSide, optional
        Per-layer factors for ``variant='svcca'`` (``SvccaSide.of(basis, epsilon)``, computed
        once per layer by the engine); computed here when not given.
    both : bool
        Also compute ``d(b, a)``; when False, ``backward`` is NaN for the asymmetric PWCCA.

    Returns
    -------
    PairResult
    """
    info = get_metric(metric)
    options = info.kernel_options(variant=variant, keep=keep, epsilon=epsilon)
    a, b = info.prepare(a, options), info.prepare(b, options)
    return info.pair(cross[:a.rank, :b.rank], a, b, options, sides=sides, both=both)


def compare(
    a: Basis,
    b: Basis,
    *,
    metric: str = "pwcca",
    variant: str = "paper",
    keep: Any = 0.99,
    epsilon: float = DEFAULT_EPSILON,
) -> PairResult:
    """Compare two prepared layers: one GEMM (``n_datapoints * a.rank * b.rank``) plus O(rank^3).

    Both bases must hold ``q`` (from :func:`prepare`) and share the datapoints; for the paper's
    PWCCA both directions come from the one SVD.
    """
    check_metric(metric, variant).check_options(keep=keep, epsilon=epsilon)
    if a.q is None or b.q is None:
        raise CcaScaleError(
            "compare() needs bases with q materialised (from prepare()); a streamed basis is "
            "compared by the engine, which forms q chunk by chunk."
        )
    check_aligned(metric, a.n_neurons, b.n_neurons)
    if a.n_datapoints != b.n_datapoints:
        raise CcaScaleError(
            f"The two bases have different numbers of datapoints: {a.n_datapoints} and "
            f"{b.n_datapoints}."
        )
    return pair_distances(a.q.T @ b.q, a, b, metric=metric, variant=variant, keep=keep,
                          epsilon=epsilon)
