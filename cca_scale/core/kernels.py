"""Pair kernels: one pair of prepared layers, given their cross product ``Q_a.T @ Q_b``.

Everything here works on (rank x rank) matrices; the only datapoint-sized work of a pair is the GEMM
that forms the cross product, done by the caller (:func:`~cca_scale.core.pairs.compare` for one
pair, the engine's tiles for many at once). Each metric of the registry
(:mod:`cca_scale.core.registry`) names its kernel here, with the signature
``kernel(cross, a, b, *, <its options>, both) -> PairResult``, and optionally a per-layer step run
once per layer before it (``prepare_basis``, ``side``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace

from cca_scale.core.backend import to_host
from cca_scale.core.basis import Basis

__all__ = [
    "DEFAULT_EPSILON",
    "PairResult",
    "SvccaSide",
    "cka_kernel",
    "cosine_kernel",
    "euclidean_kernel",
    "ill_posed",
    "ill_posed_message",
    "mean_cca_kernel",
    "projection_weights",
    "pwcca_kernel",
    "procrustes_kernel",
    "pwcca_side",
    "stable_pwcca_similarity",
    "svcca_basis",
    "svcca_kernel",
    "svcca_rank",
]

DEFAULT_EPSILON = 1e-10  # what the original implementation's tutorials pass


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
    the original's ridge does to each direction. ``neurons = [coords; sqrt(n) * mean]`` holds the
    uncentred kept neurons ``Z`` in the coordinates ``[q, 1/sqrt(n)]`` (what the original projects
    its directions onto), formed here once rather than once per pair and direction.
    """

    kept: np.ndarray  # (n_neurons,) bool
    coords: np.ndarray  # (basis rank, n_kept)
    u_r: np.ndarray  # (basis rank, rank)
    wt: np.ndarray  # (rank, n_kept)
    shrink: np.ndarray  # (rank,)
    mean: np.ndarray  # (n_kept,)
    n_datapoints: int
    neurons: np.ndarray  # (basis rank + 1, n_kept)

    @property
    def n_kept(self) -> int:
        return int(self.coords.shape[1])

    @property
    def rank(self) -> int:
        """Directions of the kept neurons above the rank tolerance."""
        return int(self.shrink.shape[0])

    @classmethod
    def of(cls, basis: Basis, epsilon: float = DEFAULT_EPSILON) -> "SvccaSide":
        r = to_host(basis.r).astype(np.float64)
        n = basis.n_datapoints
        cmax = np.max(np.abs(r.T @ r)) / (n - 1)
        kept = np.sum(r * r, axis=0) / ((n - 1) * cmax) >= epsilon
        coords = r[:, kept]
        u_r, s, wt = np.linalg.svd(coords / np.sqrt((n - 1) * cmax), full_matrices=False)
        good = s > basis.rtol * s[0]
        s = s[good]
        mean = to_host(basis.mean).astype(np.float64)[kept]
        return cls(kept=kept, coords=coords, u_r=u_r[:, good], wt=wt[good],
                   shrink=s / np.sqrt(s * s + epsilon), mean=mean, n_datapoints=n,
                   neurons=np.vstack([coords, np.sqrt(n) * mean[None, :]]))


def svcca_rank(s, keep) -> int:
    """Number of top SVD directions SVCCA keeps, from singular values ``s`` (descending).

    ``keep`` an int: ``min(keep, len(s))``. A float: the smallest ``k`` whose squared singular
    values (variance) reach that fraction of the total.
    """
    s = to_host(s)
    if isinstance(keep, (int, np.integer)):
        return int(min(keep, s.shape[0]))
    energy = np.cumsum(s.astype(np.float64) ** 2)
    return int(min(np.searchsorted(energy, keep * energy[-1] * (1 - 1e-12)) + 1, s.shape[0]))


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
    core, matrix = _stable_core(x, y, cross)
    return _stable_similarity(x, y, core, matrix)


def _stable_pair(x: SvccaSide, y: SvccaSide, cross,
                 both: bool = True) -> tuple[float, float, np.ndarray]:
    """``(similarity(x, y), similarity(y, x), rho)``: two :func:`stable_pwcca_similarity` calls
    (``rho`` of the first; ``both=False``: ``similarity(y, x)`` is NaN).

    Nothing of the SVD is shared between the directions, and the backward matrices are formed
    from ``cross.T``, not transposed: the original's value depends on the signs LAPACK gives the
    singular vectors, and those of ``svd(A.T)`` are not those of ``svd(A)`` with ``u`` and ``v``
    swapped (about half of them differ at 64 to 256 neurons). Where correlations coincide (a layer
    against itself, ill-posed pairs) even a rounding-level change of the matrix moves the value by
    up to 1e-5, so each direction's matrix is kept exactly as :func:`stable_pwcca_similarity`
    forms it.
    """
    sim_xy, _, _, rho = stable_pwcca_similarity(x, y, cross)
    sim_yx = float("nan")
    if both:
        sim_yx = stable_pwcca_similarity(y, x, to_host(cross).T)[0]
    return sim_xy, sim_yx, rho


def _stable_core(x: SvccaSide, y: SvccaSide, cross) -> tuple[np.ndarray, np.ndarray | None]:
    """``core = diag(shrink_x) u_rx.T cross u_ry diag(shrink_y)``, shape (x.rank, y.rank), and,
    where neither side has null directions, the original's matrix in neuron coordinates
    ``wt_x.T core wt_y`` (shape (n_kept_x, n_kept_y)), else None."""
    cross = to_host(cross).astype(np.float64)
    core = x.shrink[:, None] * (x.u_r.T @ cross @ y.u_r) * y.shrink[None, :]
    full = x.rank == x.n_kept and y.rank == y.n_kept
    return core, (x.wt.T @ core @ y.wt if full else None)


def _stable_similarity(x: SvccaSide, y: SvccaSide, core: np.ndarray,
                       matrix: np.ndarray | None) -> tuple[float, int, int, np.ndarray]:
    """:func:`stable_pwcca_similarity` from :func:`_stable_core`'s ``(core, matrix)``."""
    k = min(x.n_kept, y.n_kept)
    x_side = x.n_kept <= y.n_kept
    side = x if x_side else y
    if matrix is not None:
        u, rho, vh = np.linalg.svd(matrix)  # the original's matrix and signs
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
    neurons = side.neurons  # Z in [q, 1/sqrt(n)]
    m = coef.shape[1]
    cols = np.vstack([side.coords @ coef, neurons[-1:, :m]])
    nonzero = np.flatnonzero(side.mean[m:] != 0)
    extra = None
    if nonzero.size:
        extra = m + int(nonzero[0])
        constant = np.zeros((cols.shape[0], 1))
        constant[-1, 0] = neurons[-1, extra]
        cols = np.hstack([cols, constant])
    sums = np.sum(np.abs(_project_on_span(cols, neurons)), axis=1)
    weights = np.zeros(side.n_kept)
    weights[:m] = sums[:m]
    if extra is not None:
        weights[extra] = sums[m]
    return weights / weights.sum()


def _project_on_span(cols: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``p.T @ targets`` where ``cols = p @ r`` is the thin QR of ``cols`` (shape (n, c), c <= n;
    ``targets`` (n, t); result (c, t)), up to the signs of its rows.

    LAPACK's Householder QR (``geqrf``) with ``Q.T`` applied to ``targets`` (``ormqr``): the rows
    of ``Q.T @ targets`` for the first ``c`` columns of ``Q`` are ``p.T @ targets``. ``p`` is never
    formed, which saves ``numpy.linalg.qr``'s ``orgqr`` and a GEMM (about half the time at 256).
    """
    from scipy.linalg import lapack  # here: importing scipy.linalg costs ~0.5 s at start-up

    c = cols.shape[1]
    qr, tau, _, info = lapack.dgeqrf(cols)
    if info != 0:
        raise np.linalg.LinAlgError(f"QR failed (LAPACK dgeqrf info={info})")
    out, _, info = lapack.dormqr("L", "T", qr, tau, targets, max(1, 64 * targets.shape[1]))
    if info != 0:
        raise np.linalg.LinAlgError(f"QR failed (LAPACK dormqr info={info})")
    return out[:c]


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


# -- per-layer steps, run once per layer before the pair kernel ----------------------------------

def svcca_basis(basis: Basis, *, keep) -> Basis:
    """SVCCA's per-layer step: the basis cut to its top :func:`svcca_rank` directions.

    The leading directions of ``basis`` (its columns are in descending order of singular value), so
    the cross product of two cut bases is the leading block of the uncut bases' cross product.
    """
    k = svcca_rank(basis.s, keep)
    return Basis(q=None if basis.q is None else basis.q[:, :k], s=basis.s[:k], vt=basis.vt[:k],
                 mean=basis.mean, n_datapoints=basis.n_datapoints, rtol=basis.rtol)


def pwcca_side(basis: Basis, *, variant: str, epsilon: float) -> "SvccaSide | None":
    """PWCCA's per-layer factors: a :class:`SvccaSide` for the svcca variant, else None."""
    return SvccaSide.of(basis, epsilon) if variant == "svcca" else None


# -- pair kernels: (cross, a, b, *, options, both) -> PairResult, on prepared bases --------------

def pwcca_kernel(cross, a: Basis, b: Basis, *, variant: str = "paper",
                 epsilon: float = DEFAULT_EPSILON, sides=None, both: bool = True) -> PairResult:
    """PWCCA in both directions: the paper's (one SVD) or the original implementation's.

    ``sides``: the two layers' :func:`pwcca_side` (computed here when not given); ``both=False``
    leaves ``backward`` NaN.
    """
    n = a.n_datapoints
    if variant == "paper":
        xp = array_namespace(cross)
        u, rho, vt = xp.linalg.svd(cross, full_matrices=False)
        rho = xp.clip(rho, 0.0, 1.0)
        forward = 1.0 - _weighted_mean(u.T @ a.r, rho)
        backward = 1.0 - _weighted_mean(vt @ b.r, rho) if both else float("nan")
        return PairResult(forward, backward, a.rank, b.rank, float(rho[0]), float(rho[-1]),
                          ill_posed(a.rank, b.rank, n))
    side_a, side_b = sides if sides is not None else (SvccaSide.of(a, epsilon),
                                                       SvccaSide.of(b, epsilon))
    sim_ab, sim_ba, rho = _stable_pair(side_a, side_b, cross, both)
    return PairResult(1.0 - sim_ab, 1.0 - sim_ba, side_a.n_kept, side_b.n_kept, float(rho[0]),
                      float(rho[-1]),
                      ill_posed(a.rank, b.rank, n))


def mean_cca_kernel(cross, a: Basis, b: Basis, *, both: bool = True) -> PairResult:
    """``1 - mean(rho)`` over all canonical correlations."""
    xp = array_namespace(cross)
    rho = xp.linalg.svdvals(cross)
    d = 1.0 - float(xp.mean(xp.clip(rho, 0.0, 1.0)))
    return PairResult(d, d, a.rank, b.rank, float(rho[0]), float(rho[-1]),
                      ill_posed(a.rank, b.rank, a.n_datapoints))


def svcca_kernel(cross, a: Basis, b: Basis, *, keep, both: bool = True) -> PairResult:
    """SVCCA on bases already cut to their top directions (:func:`svcca_basis`, where ``keep``
    applies): the mean CCA of those directions."""
    return mean_cca_kernel(cross, a, b, both=both)


# Linear CKA, cosine and Euclidean distance from the bases and their cross product. With
# ``X = Q diag(s) vt + 1 mean^T`` (the columns of ``Q`` sum to zero):
# ``||Xc^T Yc||_F = ||diag(s_a) C diag(s_b)||_F`` and
# ``tr(X^T Y) = sum((diag(s_a) C diag(s_b)) * (vt_a vt_b^T)) + n mean_a . mean_b``.

def cka_kernel(cross, a: Basis, b: Basis, *, both: bool = True) -> PairResult:
    """``1 - linear CKA``: ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``."""
    xp = array_namespace(cross)
    num = xp.sum((a.s[:, None] * cross * b.s[None, :]) ** 2)
    return _symmetric(1.0 - float(num / (xp.sqrt(xp.sum(a.s**4)) * xp.sqrt(xp.sum(b.s**4)))),
                      a, b)


def cosine_kernel(cross, a: Basis, b: Basis, *, both: bool = True) -> PairResult:
    """``1 - tr(X^T Y) / (||X||_F ||Y||_F)`` on the uncentred activations."""
    xp = array_namespace(cross)
    n = a.n_datapoints
    xy = _centred_inner(cross, a, b) + n * xp.sum(a.mean * b.mean)
    xx = xp.sum(a.s**2) + n * xp.sum(a.mean**2)
    yy = xp.sum(b.s**2) + n * xp.sum(b.mean**2)
    return _symmetric(1.0 - float(xy / xp.sqrt(xx * yy)), a, b)


def euclidean_kernel(cross, a: Basis, b: Basis, *, both: bool = True) -> PairResult:
    """``sqrt(||X - Y||_F^2 / n_datapoints)``.

    ``||X - Y||^2 = ||Xc - Yc||^2 + n ||mean_x - mean_y||^2``, the mean part as an exact difference.
    The centred part cancels for nearly equal layers: absolute error ~ sqrt(eps) * ||Xc||.
    """
    xp = array_namespace(cross)
    n = a.n_datapoints
    sq = xp.sum(a.s**2) + xp.sum(b.s**2) - 2 * _centred_inner(cross, a, b)
    d = float(xp.sqrt((xp.clip(sq, 0.0, None) + n * xp.sum((a.mean - b.mean) ** 2)) / n))
    return _symmetric(d, a, b)


def procrustes_kernel(cross, a: Basis, b: Basis, *, both: bool = True) -> PairResult:
    """Angular Procrustes distance (Williams et al. 2021): ``arccos(||Xc^T Yc||_* / (||Xc||_F
    ||Yc||_F))``, in [0, pi/2].

    ``||Xc^T Yc||_* = ||diag(s_a) C diag(s_b)||_*`` (the nuclear norm, a sum of singular values) and
    ``||Xc||_F = ||s_a||``. The ratio is clipped to [0, 1] before the arccos; near 0 the arccos
    turns a rounding error ``eps`` of the ratio into ``sqrt(2 eps)`` (about 1e-8 in float64).
    """
    xp = array_namespace(cross)
    nuclear = xp.sum(xp.linalg.svdvals(a.s[:, None] * cross * b.s[None, :]))
    ratio = float(nuclear / (xp.sqrt(xp.sum(a.s**2)) * xp.sqrt(xp.sum(b.s**2))))
    return _symmetric(float(np.arccos(min(max(ratio, 0.0), 1.0))), a, b)


def _centred_inner(cross, a: Basis, b: Basis):
    """``tr(Xc^T Yc)``."""
    xp = array_namespace(cross)
    return xp.sum(a.s[:, None] * cross * b.s[None, :] * (a.vt @ b.vt.T))


def _symmetric(d: float, a: Basis, b: Basis) -> PairResult:
    """A symmetric metric without canonical correlations: ``d`` both ways."""
    return PairResult(d, d, a.rank, b.rank, float("nan"), float("nan"))
