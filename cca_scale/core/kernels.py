"""Pair kernels: one pair of prepared layers, given their cross product ``Q_a.T @ Q_b``.

Everything here works on (rank x rank) matrices; the only datapoint-sized work of a pair is the GEMM
that forms the cross product, done by the caller (:func:`~cca_scale.core.pairs.compare` for one
pair, the engine's tiles for many at once). The metrics' kernels, batched over pairs, are in
:mod:`cca_scale.core.batched`; here are their shared pieces: the results, the ill-posedness rule,
the per-layer steps run once per layer (``prepare_basis``, ``side``) and the svcca variant's
stable computation of the original implementation's PWCCA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cca_scale.core.backend import array_namespace, r_factor, to_host
from cca_scale.core.basis import Basis

__all__ = [
    "DEFAULT_EPSILON",
    "PairResult",
    "SvccaSide",
    "ill_posed",
    "ill_posed_message",
    "projection_weights",
    "pwcca_side",
    "stable_pwcca_batch",
    "stable_pwcca_similarity",
    "svcca_basis",
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
    its directions onto), formed here once rather than once per pair and direction, and
    ``to_original = wt.T @ diag(shrink) @ u_r.T``, which takes a pair's cross product of bases to
    the matrix whose SVD the original takes (``to_original_x @ cross @ to_original_y.T``).
    """

    kept: np.ndarray  # (n_neurons,) bool
    coords: np.ndarray  # (basis rank, n_kept)
    u_r: np.ndarray  # (basis rank, rank)
    wt: np.ndarray  # (rank, n_kept)
    shrink: np.ndarray  # (rank,)
    mean: np.ndarray  # (n_kept,)
    n_datapoints: int
    neurons: np.ndarray  # (basis rank + 1, n_kept)
    to_original: np.ndarray  # (n_kept, basis rank)

    @property
    def n_kept(self) -> int:
        return int(self.coords.shape[1])

    @property
    def regular(self) -> bool:
        """No null directions: each kept neuron adds a direction above the rank tolerance."""
        return self.rank == self.n_kept

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
        s, u_r, wt = s[good], u_r[:, good], wt[good]
        shrink = s / np.sqrt(s * s + epsilon)
        mean = to_host(basis.mean).astype(np.float64)[kept]
        return cls(kept=kept, coords=coords, u_r=u_r, wt=wt, shrink=shrink, mean=mean,
                   n_datapoints=n, neurons=np.vstack([coords, np.sqrt(n) * mean[None, :]]),
                   to_original=wt.T @ (shrink[:, None] * u_r.T))


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
    cross = to_host(cross).astype(np.float64)
    if x.regular and y.regular:  # no null directions on either side
        sim, rho = _regular_similarities([x], [y], _original_matrices([x], [y], cross[None]))
        return float(sim[0]), x.n_kept, y.n_kept, rho[0]
    core = x.shrink[:, None] * (x.u_r.T @ cross @ y.u_r) * y.shrink[None, :]
    k = min(x.n_kept, y.n_kept)
    x_side = x.n_kept <= y.n_kept
    side = x if x_side else y
    u, rho, vh = np.linalg.svd(core)
    rot = u if x_side else vh.T
    q = rho.shape[0]
    coef = _canonical_signs(side.wt.T @ rot[:, :q])
    if rot.shape[1] > q:  # directions of the weighting side with no partner: correlation 0
        rest = side.wt.T @ rot[:, q:]
        load = rest.T @ (side.coords.T @ (side.coords @ rest))
        _, order = np.linalg.eigh((load + load.T) / 2)
        coef = np.concatenate([coef, _canonical_signs(rest @ order[:, ::-1])], axis=1)
    rho = np.clip(np.abs(np.concatenate([rho, np.zeros(k - q)])[:k]), 0.0, 1.0)
    weights = _original_weights(side, coef[:, :side.rank])
    return float(np.sum(weights * rho)), x.n_kept, y.n_kept, rho


def stable_pwcca_batch(xs, ys, cross, *, both: bool = True) -> tuple[np.ndarray, ...]:
    """:func:`stable_pwcca_similarity` of P pairs, in both directions.

    ``xs``, ``ys``: the pairs' :class:`SvccaSide` (length P); ``cross`` (P, basis rank x, basis
    rank y): ``q_x.T @ q_y`` of each pair. Returns ``(forward, backward, rho_max, rho_min,
    n_kept_x, n_kept_y)``, arrays of shape (P,): ``forward`` the similarity with ``x`` first,
    ``backward`` with ``y`` first (NaN unless ``both``), the canonical correlations of the
    forward direction. Pairs of regular layers (no null directions, the usual case) run as stacks
    of equal shapes, one call of each LAPACK routine per stack; the backward direction takes the
    SVD of the transpose of the forward's matrix, as the original does with its arguments swapped.
    Pairs with null directions go one by one through :func:`stable_pwcca_similarity`.
    """
    cross = to_host(cross).astype(np.float64)
    p_count = len(xs)
    out = np.full((4, p_count), np.nan)
    kept = np.array([[x.n_kept for x in xs], [y.n_kept for y in ys]], dtype=np.int64)
    groups: dict[tuple, list[int]] = {}
    for p, (x, y) in enumerate(zip(xs, ys)):
        if x.regular and y.regular:
            groups.setdefault((x.coords.shape, y.coords.shape), []).append(p)
        else:
            sim, _, _, rho = stable_pwcca_similarity(x, y, cross[p])
            if both:
                out[1, p] = stable_pwcca_similarity(y, x, cross[p].T)[0]
            out[0, p], out[2, p], out[3, p] = sim, rho[0], rho[-1]
    for index in groups.values():
        gx, gy = [xs[p] for p in index], [ys[p] for p in index]
        matrices = _original_matrices(gx, gy, cross[index])
        out[0, index], rho = _regular_similarities(gx, gy, matrices)
        out[2, index], out[3, index] = rho[:, 0], rho[:, -1]
        if both:
            out[1, index] = _regular_similarities(gy, gx, np.matrix_transpose(matrices))[0]
    return out[0], out[1], out[2], out[3], kept[0], kept[1]


def _original_matrices(xs, ys, cross) -> np.ndarray:
    """The matrices whose SVD the original takes, ``to_original_x @ cross @ to_original_y.T``:
    shape (P, n_kept x, n_kept y)."""
    to_x = np.stack([x.to_original for x in xs])
    to_y = np.stack([y.to_original for y in ys])
    return np.matmul(np.matmul(to_x, cross), np.matrix_transpose(to_y))


def _regular_similarities(xs, ys, matrices) -> tuple[np.ndarray, np.ndarray]:
    """The original's similarity for a stack of pairs of regular layers with ``x`` first, from
    their :func:`_original_matrices` (shape (P, n_kept x, n_kept y), equal shapes); returns it
    and the canonical correlations, shape (P, min(n_kept x, n_kept y))."""
    u, rho, vh = np.linalg.svd(matrices)  # the original's call: full matrices, its signs
    if matrices.shape[1] <= matrices.shape[2]:  # weights from the side with fewer kept neurons
        sides, coef = xs, u
    else:
        sides, coef = ys, np.matrix_transpose(vh)
    rho = np.clip(np.abs(rho), 0.0, 1.0)
    return np.sum(_original_weights_stacked(sides, coef) * rho, axis=1), rho


def _original_weights_stacked(sides, coef) -> np.ndarray:
    """:func:`_original_weights` of regular layers (every kept neuron a direction, so no null
    ones), stacked: ``coef`` (P, n_kept, n_kept), orthogonal; returns (P, n_kept).

    The projections ``p.T @ Z`` of the neurons ``Z = [coords; sqrt(n) mean]`` onto the QR basis
    ``p`` of the directions ``cols = [coords @ coef; sqrt(n) mean] = p @ r`` need no ``p``:
    ``coef`` is orthogonal, so ``Z = cols @ coef.T + e (m - m @ coef.T)`` with ``m = sqrt(n)
    mean`` and ``e`` the last unit vector, and ``p.T @ Z = r @ coef.T + (p.T e) (m - m @ coef.T)``.
    ``r`` and ``p.T e`` are the R factor of ``[cols, e]``: half the work of forming ``p``.
    """
    neurons = np.stack([side.neurons for side in sides])  # Z in [q, 1/sqrt(n)]
    k = coef.shape[-1]
    mean = neurons[:, -1:, :]
    cols = np.concatenate([np.matmul(neurons[:, :-1, :], coef), mean], axis=1)
    unit = np.zeros(cols.shape[:-1] + (1,))
    unit[:, -1] = 1.0
    r = r_factor(np.concatenate([cols, unit], axis=-1))
    coef_t = np.matrix_transpose(coef)
    projections = np.matmul(r[:, :k, :k], coef_t) + r[:, :k, k:] * (mean - np.matmul(mean, coef_t))
    sums = np.sum(np.abs(projections), axis=-1)
    return sums / np.sum(sums, axis=-1, keepdims=True)


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
    ``targets`` (n, t); result (c, t)).

    NumPy's QR, not SciPy's LAPACK wrappers: SciPy brings its own BLAS, which the engine's
    one-thread-per-task limit (set when the cluster starts) does not reach, so its calls from
    two task threads oversubscribed the cores (1.6x the CPU time for the same tiles)."""
    p, _ = np.linalg.qr(cols)
    return p.T @ targets


def projection_weights(projections):
    """The paper's weights ``alpha_i``, proportional to ``sum_j |projections[..., i, j]|``,
    summing to 1 over ``i``.

    ``projections[..., i, j] = <h_i, z_j>``: canonical variate ``i`` against centred neuron ``j``;
    leading axes are a stack of pairs (the batched kernels).
    """
    xp = array_namespace(projections)
    alpha = xp.sum(xp.abs(projections), axis=-1)
    return alpha / xp.sum(alpha, axis=-1, keepdims=True)


# -- per-layer steps, run once per layer before the pair kernel ----------------------------------

def svcca_basis(basis: Basis, *, keep) -> Basis:
    """SVCCA's per-layer step: the basis cut to its top :func:`svcca_rank` directions.

    The leading directions of ``basis`` (its columns are in descending order of singular value), so
    the cross product of two cut bases is the leading block of the uncut bases' cross product.
    """
    return basis.leading(svcca_rank(basis.s, keep))


def pwcca_side(basis: Basis, *, variant: str, epsilon: float) -> "SvccaSide | None":
    """PWCCA's per-layer factors: a :class:`SvccaSide` for the svcca variant, else None."""
    return SvccaSide.of(basis, epsilon) if variant == "svcca" else None
