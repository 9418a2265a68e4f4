"""The O(N^2) half: one pair of prepared layers, given their cross product ``Q_a.T @ Q_b``.

Everything here works on (rank x rank) matrices; the only datapoint-sized work of a pair is the GEMM
that forms the cross product, done by the caller (:func:`compare` for one pair, the engine's tiles
for many at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
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
    "ill_posed",
    "ill_posed_message",
    "original_pwcca_similarity",
    "stable_pwcca_similarity",
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
    largest and smallest canonical correlation. ``ill_posed``: the CCA of this pair is ill-posed
    (:func:`ill_posed`); always False for cka, cosine and euclidean.
    """

    forward: float
    backward: float
    rank_a: int
    rank_b: int
    rho_max: float
    rho_min: float
    ill_posed: bool = False


def ill_posed(rank_a: int, rank_b: int, n_datapoints: int) -> bool:
    """CCA is ill-posed when ``rank_a + rank_b > n_datapoints - 1``.

    Centred layers live in the ``n_datapoints - 1`` dimensions orthogonal to the constant, so their
    spans then share at least ``rank_a + rank_b - (n_datapoints - 1)`` directions: that many
    canonical correlations are 1 whatever the data, and PWCCA's weights depend on an arbitrary
    basis inside that block.
    """
    return rank_a + rank_b > n_datapoints - 1


def ill_posed_message(rank_a: int, rank_b: int, n_datapoints: int, what: str = "this pair") -> str:
    forced = rank_a + rank_b - (n_datapoints - 1)
    return (
        f"CCA is ill-posed for {what}: rank_x + rank_y = {rank_a} + {rank_b} = {rank_a + rank_b} "
        f"> n_datapoints - 1 = {n_datapoints - 1}, so at least {forced} canonical "
        f"correlation{'s are' if forced > 1 else ' is'} 1 whatever the data, and PWCCA's weights "
        "depend on an arbitrary basis inside that block. Use more datapoints (many times the "
        "neuron count), fewer neurons, or SVCCA with fewer kept directions (keep=k)."
    )


@dataclass(frozen=True)
class SvccaSide:
    """What the svcca variant needs of one layer, computed once per layer (NumPy float64).

    The original rescales the layer's covariance by its largest |entry| and keeps the neurons whose
    rescaled variance is at least ``epsilon``. Here that block is held factored, from the basis
    (``X - mean = q @ r``): ``coords = r[:, kept]`` (the kept neurons in the basis) and
    ``coords / sqrt((n - 1) * cmax) = u_r @ diag(s) @ wt``, cut at the basis' rank tolerance, so
    ``S_kept = wt.T @ diag(s**2) @ wt`` exactly and its null directions (duplicated or collinear
    neurons) are exact zeros rather than rounding. ``shrink = s / sqrt(s**2 + epsilon)`` is what
    the original's ridge does to each direction.
    """

    kept: np.ndarray  # (n_neurons,) bool
    coords: np.ndarray  # (basis rank, n_kept)
    u_r: np.ndarray  # (basis rank, rank)
    wt: np.ndarray  # (rank, n_kept)
    shrink: np.ndarray  # (rank,)
    mean: np.ndarray  # (n_kept,)
    n_datapoints: int

    @property
    def n_kept(self) -> int:
        return int(self.coords.shape[1])

    @property
    def rank(self) -> int:
        """Directions of the kept neurons above the rank tolerance."""
        return int(self.shrink.shape[0])

    @classmethod
    def of(cls, basis: Basis, epsilon: float = DEFAULT_EPSILON) -> "SvccaSide":
        r = _host(basis.r).astype(np.float64)
        n = basis.n_datapoints
        cmax = np.max(np.abs(r.T @ r)) / (n - 1)
        kept = np.sum(r * r, axis=0) / ((n - 1) * cmax) >= epsilon
        coords = r[:, kept]
        u_r, s, wt = np.linalg.svd(coords / np.sqrt((n - 1) * cmax), full_matrices=False)
        good = s > basis.rtol * s[0]
        s = s[good]
        return cls(kept=kept, coords=coords, u_r=u_r[:, good], wt=wt[good],
                   shrink=s / np.sqrt(s * s + epsilon),
                   mean=_host(basis.mean).astype(np.float64)[kept], n_datapoints=n)


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


def stable_pwcca_similarity(x: SvccaSide, y: SvccaSide,
                            cross) -> tuple[float, int, int, np.ndarray]:
    """The original's PWCCA (see :func:`original_pwcca_similarity`), computed stably from bases.

    ``cross`` is ``q_x.T @ q_y`` of the two bases (shape (basis rank x, basis rank y)). Returns
    ``(similarity, n_kept_x, n_kept_y, rho)`` with ``rho`` of length ``min(n_kept_x, n_kept_y)``,
    the weights' length. The same quantity as the original in exact arithmetic, without its
    unstable steps: the ridged inverse square root is applied in the eigenbasis of each side's
    kept covariance (``(s**2 + epsilon)**-1/2``, never a pseudo-inverse of a nearly singular
    matrix), null directions of a side (duplicated or collinear neurons, below the basis' rank
    tolerance) are exact zeros on both sides, so ``rho = svd(diag(shrink_x) u_rx.T cross u_ry
    diag(shrink_y))`` lies in [0, 1], and the directions are orthonormalised by a QR in the
    (rank + 1)-dimensional span of the centred neurons and the constant, not through a Gram matrix.

    Where neither side has null directions this matches the original to about 1e-12 (its SVD is
    taken of the same matrix in the same neuron coordinates, so LAPACK gives the same signs).
    Where one has, the original's value depends on rounding (its SVD's signs are decided by
    rounding noise in the null rows): here each singular vector's largest entry is made positive,
    correlations beyond ``min(rank_x, rank_y)`` are exactly 0, the canonical directions of the
    weighting side with correlation 0 are ordered by the variance they carry, and a null direction
    ``c`` contributes only its added mean (``(Z - mean) @ c = 0``), so after the first one they are
    linearly dependent and get weight 0, as they do in exact arithmetic.
    """
    cross = _host(cross).astype(np.float64)
    core = x.shrink[:, None] * (x.u_r.T @ cross @ y.u_r) * y.shrink[None, :]
    k = min(x.n_kept, y.n_kept)
    x_side = x.n_kept <= y.n_kept
    side = x if x_side else y
    if x.rank == x.n_kept and y.rank == y.n_kept:
        u, rho, vh = np.linalg.svd(x.wt.T @ core @ y.wt)  # the original's matrix and signs
        coef = u if x_side else vh.T
    else:
        u, rho, vh = np.linalg.svd(core)
        rot = u if x_side else vh.T
        q = rho.shape[0]
        coef = _canonical_signs(side.wt.T @ rot[:, :q])
        if rot.shape[1] > q:  # directions of the weighting side with no partner: correlation 0
            rest = side.wt.T @ rot[:, q:]
            load = rest.T @ (side.coords.T @ (side.coords @ rest))
            _, order = np.linalg.eigh((load + load.T) / 2)
            coef = np.concatenate([coef, _canonical_signs(rest @ order[:, ::-1])], axis=1)
        rho = np.concatenate([rho, np.zeros(k - q)])
    rho = np.clip(np.abs(rho[:k]), 0.0, 1.0)
    weights = _original_weights(side, coef[:, :side.rank])
    return float(np.sum(weights * rho)), x.n_kept, y.n_kept, rho


def _canonical_signs(v: np.ndarray) -> np.ndarray:
    """Each column's largest-magnitude entry made positive."""
    pick = v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])]
    return v * np.where(pick < 0, -1.0, 1.0)[None, :]


def _original_weights(side: SvccaSide, coef: np.ndarray) -> np.ndarray:
    """The original's projection weights, length ``side.n_kept``, from its directions ``coef``.

    ``coef`` (n_kept, m) holds the directions that carry variance, in the original's order; the
    original's direction ``i`` is ``M_i = (Z - mean) @ coef_i + mean_i`` (the MEAN OF NEURON ``i``
    added, as the original does). With ``Z - mean = q @ coords`` and ``q`` orthogonal to the
    constant, ``M = [q, 1/sqrt(n)] @ S`` with ``S = [coords @ coef; sqrt(n) mean]``, so the
    original's ``QR(M)`` and projections onto ``Z`` are a QR of the small ``S``. Directions ``i >=
    m`` (null: ``(Z - mean) @ c = 0``) are ``mean_i`` times the constant: the first with a non-zero
    mean adds the constant's direction, the others are dependent and get weight 0.
    """
    n = side.n_datapoints
    root_n = np.sqrt(n)
    m = coef.shape[1]
    cols = np.vstack([side.coords @ coef, root_n * side.mean[None, :m]])
    nonzero = np.flatnonzero(side.mean[m:] != 0)
    extra = None
    if nonzero.size:
        extra = m + int(nonzero[0])
        constant = np.zeros((cols.shape[0], 1))
        constant[-1, 0] = root_n * side.mean[extra]
        cols = np.hstack([cols, constant])
    p, _ = np.linalg.qr(cols)
    neurons = np.vstack([side.coords, root_n * side.mean[None, :]])  # Z in [q, 1/sqrt(n)]
    sums = np.sum(np.abs(p.T @ neurons), axis=1)
    weights = np.zeros(side.n_kept)
    weights[:m] = sums[:m]
    if extra is not None:
        weights[extra] = sums[m]
    return weights / weights.sum()


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
        Per-layer factors for ``variant='svcca'`` (``SvccaSide.of(basis, epsilon)``, computed
        once per layer by the engine); computed here when not given.
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
    n = a.n_datapoints
    if metric == "svcca":
        ka, kb = svcca_rank(a.s, keep), svcca_rank(b.s, keep)
        rho = xp.linalg.svdvals(cross[:ka, :kb])
        d = 1.0 - float(xp.mean(xp.clip(rho, 0.0, 1.0)))
        return PairResult(d, d, ka, kb, float(rho[0]), float(rho[-1]), ill_posed(ka, kb, n))
    if metric == "mean_cca":
        rho = xp.linalg.svdvals(cross)
        d = 1.0 - float(xp.mean(xp.clip(rho, 0.0, 1.0)))
        return PairResult(d, d, a.rank, b.rank, float(rho[0]), float(rho[-1]),
                          ill_posed(a.rank, b.rank, n))
    if variant == "paper":
        u, rho, vt = xp.linalg.svd(cross, full_matrices=False)
        rho = xp.clip(rho, 0.0, 1.0)
        forward = 1.0 - _weighted_mean(u.T @ a.r, rho)
        backward = 1.0 - _weighted_mean(vt @ b.r, rho) if both else float("nan")
        return PairResult(forward, backward, a.rank, b.rank, float(rho[0]), float(rho[-1]),
                          ill_posed(a.rank, b.rank, n))
    side_a, side_b = sides if sides is not None else (SvccaSide.of(a, epsilon),
                                                       SvccaSide.of(b, epsilon))
    sim_ab, nx, ny, rho = stable_pwcca_similarity(side_a, side_b, cross)
    sim_ba = (stable_pwcca_similarity(side_b, side_a, _host(cross).T)[0]
              if both else float("nan"))
    return PairResult(1.0 - sim_ab, 1.0 - sim_ba, nx, ny, float(rho[0]), float(rho[-1]),
                      ill_posed(a.rank, b.rank, n))


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
