"""The O(N^2) half: one pair of prepared layers, given their cross product ``Q_a.T @ Q_b``.

Everything here works on (rank x rank) matrices; the only datapoint-sized work of a pair is the GEMM
that forms the cross product, done by the caller (:func:`compare` for one pair, the engine's tiles
for many at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
from array_api_compat import array_namespace

from cca_scale.core.basis import Basis, _host
from cca_scale.errors import CcaScaleError

__all__ = [
    "METRICS",
    "VARIANTS",
    "PairResult",
    "check_metric",
    "ALIGNED_METRICS",
    "CCA_METRICS",
    "check_aligned",
    "check_epsilon",
    "check_keep",
    "svcca_rank",
    "compare",
    "pair_distances",
    "SvccaSide",
    "original_pwcca_similarity",
    "projection_weights",
]

METRICS = ("pwcca", "mean_cca", "svcca", "cka", "cosine", "euclidean")
#: Metrics built on CCA: degenerate when n_datapoints <= n_neurons (refused unless opted in).
CCA_METRICS = ("pwcca", "mean_cca", "svcca")
#: Metrics that compare neuron by neuron, so both layers need the same number of neurons.
ALIGNED_METRICS = ("cosine", "euclidean")
VARIANTS = ("paper", "svcca")
DEFAULT_EPSILON = 1e-10  # what the original implementation's tutorials pass


def check_metric(metric: str, variant: str = "paper") -> None:
    """Refuse unknown metric or variant names, listing the known ones."""
    if metric not in METRICS:
        raise CcaScaleError(
            f"The 'metric' parameter must be one of {list(METRICS)}. Got {metric!r} instead."
        )
    if variant not in VARIANTS:
        raise CcaScaleError(
            f"The 'variant' parameter must be one of {list(VARIANTS)}. Got {variant!r} instead."
        )


def check_aligned(metric: str, n_neurons_a: int, n_neurons_b: int) -> None:
    """Neuron-by-neuron metrics (cosine, Euclidean) need layers of the same width."""
    if metric in ALIGNED_METRICS and n_neurons_a != n_neurons_b:
        raise CcaScaleError(
            f"metric={metric!r} compares neuron by neuron, so both layers need the same number "
            f"of neurons; got {n_neurons_a} and {n_neurons_b}. CCA-based metrics (pwcca, "
            "mean_cca, svcca) and cka compare layers of any widths."
        )


def check_keep(keep) -> None:
    """SVCCA's ``keep``: an int >= 1 (directions) or a float in (0, 1) (variance fraction)."""
    ok = (
        isinstance(keep, (int, np.integer)) and not isinstance(keep, bool) and keep >= 1
    ) or (isinstance(keep, (float, np.floating)) and 0.0 < keep < 1.0)
    if not ok:
        raise CcaScaleError(
            "The 'keep' parameter must be an int >= 1 (number of SVD directions) or a float in "
            f"(0, 1) (fraction of variance to keep). Got {keep!r} instead."
        )


def check_epsilon(epsilon) -> None:
    """The svcca variant's ``epsilon``: a finite float >= 0 (variance cut-off and ridge)."""
    ok = isinstance(epsilon, (int, float, np.integer, np.floating)) and not isinstance(
        epsilon, bool) and np.isfinite(epsilon) and epsilon >= 0
    if not ok:
        raise CcaScaleError(
            "The 'epsilon' parameter must be a finite number >= 0 (the svcca variant's variance "
            f"cut-off and ridge; default {DEFAULT_EPSILON}). Got {epsilon!r} instead."
        )


def svcca_rank(s, keep) -> int:
    """Number of top SVD directions SVCCA keeps, from singular values ``s`` (descending).

    ``keep`` an int: ``min(keep, len(s))``. A float: the smallest ``k`` whose squared singular
    values (variance) reach that fraction of the total.
    """
    s = _host(s)
    if isinstance(keep, (int, np.integer)):
        return int(min(keep, s.shape[0]))
    energy = np.cumsum(s.astype(np.float64) ** 2)
    return int(min(np.searchsorted(energy, keep * energy[-1] * (1 - 1e-12)) + 1, s.shape[0]))


@dataclass(frozen=True)
class PairResult:
    """Distances between two prepared layers, in both directions, with diagnostics.

    ``forward = d(a, b)`` uses ``a``'s projection weights; ``backward = d(b, a)`` uses ``b``'s.
    Metrics that are symmetric give the same number twice. ``rank_a``/``rank_b`` are the numbers of
    directions compared (SVCCA's kept ``k``, else the kept rank); ``rho_max``/``rho_min`` the
    largest and smallest canonical correlation.
    """

    forward: float
    backward: float
    rank_a: int
    rank_b: int
    rho_max: float
    rho_min: float


@dataclass(frozen=True)
class SvccaSide:
    """What the original implementation's PWCCA needs of one layer: covariance and means.

    ``cov`` is the sample covariance (``ddof=1``) of the neurons, shape (n_neurons, n_neurons), and
    ``mean`` the per-neuron means, both NumPy float64.
    """

    cov: np.ndarray
    mean: np.ndarray

    @classmethod
    def of(cls, basis: Basis) -> "SvccaSide":
        r = _host(basis.r).astype(np.float64)
        return cls(cov=(r.T @ r) / (basis.n_datapoints - 1),
                   mean=_host(basis.mean).astype(np.float64))


def _inv_sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Inverse square root as the original computes it: pseudo-inverse, then eigh square root."""
    w, v = np.linalg.eigh(np.linalg.pinv(a))
    # The original takes sqrt of eigenvalues that rounding can push below 0 (giving NaN); clip.
    # Same association order as the original, so that its SVD signs are reproduced bit for bit.
    return np.dot(v, np.dot(np.diag(np.sqrt(np.clip(w, 0.0, None))), v.T))


def original_pwcca_similarity(x: SvccaSide, y: SvccaSide, cross_cov: np.ndarray, n: int,
                              epsilon: float) -> tuple[float, int, int, np.ndarray]:
    """PWCCA of the original public implementation (google/svcca ``compute_pwcca``), as similarity.

    Works from covariances: ``x.cov``, ``y.cov`` and ``cross_cov`` (shape (n_neurons_x,
    n_neurons_y)), plus the means and the number of datapoints ``n``. Returns ``(similarity,
    n_kept_x, n_kept_y, rho)``. The original's steps, each of which changes its number: covariance
    blocks scaled by their max |entry| (cross block by the geometric mean); neurons of scaled
    variance below ``epsilon`` dropped; ``epsilon * I`` added; pseudo-inverse and eigh square root;
    NumPy SVD of ``Sxx^-1/2 Sxy Syy^-1/2`` in this orientation (its sign convention matters,
    below); weights from the side with fewer kept neurons (ties: x), whose directions are the
    UN-whitened ``(Z - mean) @ c + mean`` (``c`` its singular vectors), orthonormalised (QR) and
    projected onto the UNCENTRED kept neurons ``Z``.

    Because the means are added back after the linear map, flipping the sign of one singular vector
    changes the result: the original's value depends on LAPACK's sign convention. This function
    calls NumPy's SVD on the same matrix, built in the same order, so it gets the same signs. Where
    that choice is unstable (a 1e-14 change of the input flips a sign and moves the value by 1e-3,
    seen on about 1 random case in 80), only bit-identical covariances reproduce the original, which
    the one-pair :func:`cca_scale.pwcca_distance` computes; bases give the value of a neighbouring
    input. That is a property of the original, not of CCA. The QR of the directions is done through
    their Gram matrix (Cholesky): the same up to column signs, to which the weights are blind.

    Fixed here, not copied: the original indexes the FIRST argument's activations when the second
    is the smaller side (upstream PR #9), and broadcasts the means of all neurons against the kept
    ones (a crash when any neuron is dropped); here each side uses its own kept neurons.
    """
    xmax = np.max(np.abs(x.cov))
    ymax = np.max(np.abs(y.cov))
    sxx, syy = x.cov / xmax, y.cov / ymax
    sxy = cross_cov / np.sqrt(xmax * ymax)
    kx = np.abs(np.diag(sxx)) >= epsilon
    ky = np.abs(np.diag(syy)) >= epsilon
    nx, ny = int(kx.sum()), int(ky.sum())
    sxx = sxx[np.ix_(kx, kx)] + epsilon * np.eye(nx)
    syy = syy[np.ix_(ky, ky)] + epsilon * np.eye(ny)
    arr = np.dot(_inv_sqrt_psd(sxx), np.dot(sxy[np.ix_(kx, ky)], _inv_sqrt_psd(syy)))
    u, rho, vh = np.linalg.svd(arr)  # full_matrices=True, as the original: same LAPACK path
    rho = np.abs(rho)
    if nx <= ny:
        side, kept, coef = x, kx, u
    else:
        side, kept, coef = y, ky, vh.T
    gram = side.cov[np.ix_(kept, kept)] * (n - 1)  # (Z - mean).T @ (Z - mean)
    mu = side.mean[kept]
    # M = (Z - mean) @ coef + 1 mean^T (n x k): M^T M and M^T Z need only the Gram matrix and means.
    n_mu = n * np.outer(mu, mu)
    mtm = coef.T @ gram @ coef + n_mu
    mtz = coef.T @ gram + n_mu
    try:
        t = scipy.linalg.cholesky(mtm, lower=False)
        proj = scipy.linalg.solve_triangular(t, mtz, trans="T", lower=False)
    except np.linalg.LinAlgError:
        # Rank-deficient directions: the original's QR completes the basis arbitrarily there;
        # project onto the directions' span instead.
        w, v = np.linalg.eigh(mtm)
        good = w > w.max() * 1e-12
        proj = (v[:, good] / np.sqrt(w[good])).T @ mtz
    weights = np.sum(np.abs(proj), axis=1)
    weights = weights / weights.sum()
    return float(np.sum(weights * rho)), nx, ny, rho


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

    Parameters
    ----------
    cross : array of shape (a.rank, b.rank)
        ``a.q.T @ b.q`` (NumPy or CuPy, the same module as the bases).
    a, b : Basis
    metric, variant, keep, epsilon
        As in :func:`cca_scale.pwcca_distance` and friends; assumed valid (checked at the boundary).
    sides : pair of SvccaSide, optional
        Precomputed Gram matrices for ``variant='svcca'``; computed here when not given.
    both : bool
        Also compute ``d(b, a)``; when False, ``backward`` is NaN for the asymmetric PWCCA.

    Returns
    -------
    PairResult
    """
    xp = array_namespace(cross)
    if metric in ("cka", "cosine", "euclidean"):
        d = _baseline_distance(cross, a, b, metric)
        return PairResult(d, d, a.rank, b.rank, float("nan"), float("nan"))
    if metric == "svcca":
        ka, kb = svcca_rank(a.s, keep), svcca_rank(b.s, keep)
        rho = xp.linalg.svdvals(cross[:ka, :kb])
        d = 1.0 - float(xp.mean(xp.clip(rho, 0.0, 1.0)))
        return PairResult(d, d, ka, kb, float(rho[0]), float(rho[-1]))
    if metric == "mean_cca":
        rho = xp.linalg.svdvals(cross)
        d = 1.0 - float(xp.mean(xp.clip(rho, 0.0, 1.0)))
        return PairResult(d, d, a.rank, b.rank, float(rho[0]), float(rho[-1]))
    if variant == "paper":
        u, rho, vt = xp.linalg.svd(cross, full_matrices=False)
        rho = xp.clip(rho, 0.0, 1.0)
        forward = 1.0 - _weighted_mean(u.T @ a.r, rho)
        backward = 1.0 - _weighted_mean(vt @ b.r, rho) if both else float("nan")
        return PairResult(forward, backward, a.rank, b.rank, float(rho[0]), float(rho[-1]))
    side_a, side_b = sides if sides is not None else (SvccaSide.of(a), SvccaSide.of(b))
    n = a.n_datapoints
    r_a, r_b = (_host(basis.r).astype(np.float64) for basis in (a, b))
    cross_cov = r_a.T @ _host(cross).astype(np.float64) @ r_b / (n - 1)
    sim_ab, nx, ny, rho = original_pwcca_similarity(side_a, side_b, cross_cov, n, epsilon)
    sim_ba = (original_pwcca_similarity(side_b, side_a, cross_cov.T, n, epsilon)[0]
              if both else float("nan"))
    return PairResult(1.0 - sim_ab, 1.0 - sim_ba, nx, ny, float(rho[0]), float(rho[-1]))


def _baseline_distance(cross, a: Basis, b: Basis, metric: str) -> float:
    """Linear CKA, cosine and Euclidean distance from the bases and their cross product.

    With ``X = Q diag(s) vt + 1 mean^T`` (the columns of ``Q`` sum to zero):
    ``||Xc^T Yc||_F = ||diag(s_a) C diag(s_b)||_F`` and
    ``tr(X^T Y) = sum((diag(s_a) C diag(s_b)) * (vt_a vt_b^T)) + n mean_a . mean_b``.
    """
    xp = array_namespace(cross)
    scaled = a.s[:, None] * cross * b.s[None, :]
    if metric == "cka":
        num = xp.sum(scaled**2)
        return 1.0 - float(num / (xp.sqrt(xp.sum(a.s**4)) * xp.sqrt(xp.sum(b.s**4))))
    n = a.n_datapoints
    xy_c = xp.sum(scaled * (a.vt @ b.vt.T))  # tr(Xc^T Yc)
    xx_c, yy_c = xp.sum(a.s**2), xp.sum(b.s**2)
    if metric == "cosine":
        xy = xy_c + n * xp.sum(a.mean * b.mean)
        xx = xx_c + n * xp.sum(a.mean**2)
        yy = yy_c + n * xp.sum(b.mean**2)
        return 1.0 - float(xy / xp.sqrt(xx * yy))
    # ||X - Y||^2 = ||Xc - Yc||^2 + n ||mean_x - mean_y||^2, the mean part as an exact difference.
    # The centred part cancels for nearly equal layers: absolute error ~ sqrt(eps) * ||Xc||.
    sq = xx_c + yy_c - 2 * xy_c
    return float(xp.sqrt((xp.clip(sq, 0.0, None) + n * xp.sum((a.mean - b.mean) ** 2)) / n))


def projection_weights(projections):
    """The paper's weights ``alpha_i``, proportional to ``sum_j |projections[i, j]|``, summing to 1.

    ``projections[i, j] = <h_i, z_j>``: canonical variate ``i`` against centred neuron ``j``.
    """
    xp = array_namespace(projections)
    alpha = xp.sum(xp.abs(projections), axis=1)
    return alpha / xp.sum(alpha)


def _weighted_mean(projections, rho) -> float:
    """``sum_i alpha_i rho_i`` with the :func:`projection_weights` of ``projections``."""
    xp = array_namespace(projections)
    return float(xp.sum(projection_weights(projections) * rho))


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
    check_metric(metric, variant)
    if metric == "svcca":
        check_keep(keep)
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
