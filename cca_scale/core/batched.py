"""Batched pair kernels: P pairs of prepared layers at once, from their stacked cross products.

Every metric of the registry (:mod:`cca_scale.core.registry`) has one kernel here, with the
signature ``kernel(cross, a, b, *, <its options>, both) -> BatchResult``: ``cross`` of shape
(P, rank_a, rank_b) holds ``a.q.T @ b.q`` of each pair, ``a`` and ``b`` are :class:`Layers`
(the P pairs' prepared layers, stacked). One call per batch, no Python loop and no device
synchronisation per pair: NumPy's and CuPy's linear algebra both take stacks of matrices. The
one-pair functions are batches of one (:meth:`cca_scale.core.registry.MetricInfo.pair`), so a pair
gets the same numbers alone or in a tile of the engine.

The svcca variant of PWCCA reproduces the original implementation's steps on the host (NumPy
float64, LAPACK's signs): its kernel brings the batch's cross products to the host once and runs
them as stacks there (:func:`~cca_scale.core.kernels.stable_pwcca_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from cca_scale.core.backend import array_namespace, to_host
from cca_scale.core.basis import Basis
from cca_scale.core.kernels import (
    DEFAULT_EPSILON,
    PairResult,
    SvccaSide,
    ill_posed,
    projection_weights,
    stable_pwcca_batch,
)

__all__ = ["BatchResult", "Layers", "cka_batch", "cosine_batch", "euclidean_batch",
           "gather_results", "mean_cca_batch", "procrustes_batch", "pwcca_batch",
           "svcca_batch"]


@dataclass(frozen=True)
class Layers:
    """Prepared layers of one shape, stacked along a leading axis of length P.

    Attributes
    ----------
    s : array of shape (P, rank)
        Singular values of each centred layer, descending.
    vt : array of shape (P, rank, n_neurons)
        Right singular vectors.
    mean : array of shape (P, n_neurons)
    n_datapoints : int
    rtol : float
        The rank tolerance the bases were cut with.
    sides : tuple, optional
        Per-layer host factors of a metric with a ``side`` hook (the svcca variant's
        :class:`~cca_scale.core.kernels.SvccaSide`), one per layer.
    """

    s: Any
    vt: Any
    mean: Any
    n_datapoints: int
    rtol: float
    sides: tuple | None = None

    @classmethod
    def of(cls, bases: Sequence[Basis], xp, sides: Sequence | None = None) -> "Layers":
        """Stack bases of equal rank and width (already in the array module ``xp``)."""
        b0 = bases[0]
        return cls(s=xp.stack([b.s for b in bases]), vt=xp.stack([b.vt for b in bases]),
                   mean=xp.stack([b.mean for b in bases]), n_datapoints=b0.n_datapoints,
                   rtol=b0.rtol, sides=None if sides is None else tuple(sides))

    def take(self, index: np.ndarray, xp) -> "Layers":
        """The layers at host positions ``index`` (shape (P',)), in that order."""
        dev = xp.asarray(index)
        return Layers(s=self.s[dev], vt=self.vt[dev], mean=self.mean[dev],
                      n_datapoints=self.n_datapoints, rtol=self.rtol,
                      sides=None if self.sides is None else tuple(self.sides[i] for i in index))

    @property
    def size(self) -> int:
        return int(self.s.shape[0])

    @property
    def rank(self) -> int:
        return int(self.s.shape[1])

    @property
    def r(self):
        """Centred neurons in each basis (``s[:, None] * vt``), shape (P, rank, n_neurons)."""
        return self.s[:, :, None] * self.vt

    def basis(self, p: int) -> Basis:
        """Layer ``p`` as a :class:`Basis` (``q=None``)."""
        return Basis(q=None, s=self.s[p], vt=self.vt[p], mean=self.mean[p],
                     n_datapoints=self.n_datapoints, rtol=self.rtol)


@dataclass(frozen=True)
class BatchResult:
    """The distances of P pairs in both directions, with diagnostics (see :class:`PairResult`).

    ``forward``, ``backward``, ``rho_max``, ``rho_min``: arrays of shape (P,) in the kernel's
    array module (on the device for CuPy); ``rank_a``, ``rank_b``, ``ill_posed``: host arrays.
    """

    forward: Any
    backward: Any
    rho_max: Any
    rho_min: Any
    rank_a: np.ndarray
    rank_b: np.ndarray
    ill_posed: np.ndarray

    def values(self):
        """``forward, backward, rho_max, rho_min`` stacked, shape (4, P), in the kernel's module."""
        xp = array_namespace(self.forward)
        return xp.stack([self.forward, self.backward, self.rho_max, self.rho_min])

    def pair(self, p: int = 0) -> PairResult:
        """Pair ``p`` as a :class:`PairResult` (one device-to-host transfer)."""
        f, b, hi, lo = (float(v) for v in to_host(self.values())[:, p])
        return PairResult(f, b, int(self.rank_a[p]), int(self.rank_b[p]), hi, lo,
                          bool(self.ill_posed[p]))


def gather_results(results: Sequence[BatchResult]) -> dict[str, np.ndarray]:
    """Host arrays of several batches, concatenated in order: ``forward``, ``backward``,
    ``rho_max``, ``rho_min`` (one device-to-host transfer in all), ``rank_a``, ``rank_b``,
    ``ill_posed``."""
    if not results:
        return {k: np.empty(0) for k in ("forward", "backward", "rho_max", "rho_min", "rank_a",
                                         "rank_b", "ill_posed")}
    stacked = [r.values() for r in results]
    xp = array_namespace(*stacked)
    values = to_host(xp.concat(stacked, axis=1))
    out = dict(zip(("forward", "backward", "rho_max", "rho_min"), values))
    for key in ("rank_a", "rank_b", "ill_posed"):
        out[key] = np.concatenate([getattr(r, key) for r in results])
    return out


def _result(forward, backward, rho_max, rho_min, a: Layers, b: Layers, *,
            cca: bool) -> BatchResult:
    p = a.size
    ill = np.full(p, cca and ill_posed(a.rank, b.rank, a.n_datapoints))
    return BatchResult(forward, backward, rho_max, rho_min, np.full(p, a.rank),
                       np.full(p, b.rank), ill)


def _nan(xp, like):
    return xp.full(like.shape, float("nan"), dtype=like.dtype)


def _weighted_mean(xp, projections, rho):
    """``sum_i alpha_i rho_i`` per pair, with the paper's weights ``alpha_i`` proportional to
    ``sum_j |projections[p, i, j]|`` (canonical variate ``i`` against centred neuron ``j``)."""
    return xp.sum(projection_weights(projections) * rho, axis=-1)


def pwcca_batch(cross, a: Layers, b: Layers, *, variant: str = "paper",
                epsilon: float = DEFAULT_EPSILON, both: bool = True) -> BatchResult:
    """PWCCA in both directions: the paper's (one batched SVD) or the original implementation's
    (``variant='svcca'``, on the host, from each layer's :class:`SvccaSide` in ``a.sides``/
    ``b.sides``, computed here when absent). ``both=False`` leaves ``backward`` NaN."""
    xp = array_namespace(cross)
    if variant == "paper":
        u, rho, vt = xp.linalg.svd(cross, full_matrices=False)
        rho = xp.clip(rho, 0.0, 1.0)
        forward = 1.0 - _weighted_mean(xp, xp.matmul(xp.matrix_transpose(u), a.r), rho)
        backward = (1.0 - _weighted_mean(xp, xp.matmul(vt, b.r), rho)) if both else \
            _nan(xp, forward)
        return _result(forward, backward, rho[:, 0], rho[:, -1], a, b, cca=True)
    sides_a, sides_b = (_sides(layers, epsilon) for layers in (a, b))
    forward, backward, rho_max, rho_min, n_a, n_b = stable_pwcca_batch(sides_a, sides_b, cross,
                                                                       both=both)
    ill = np.full(a.size, ill_posed(a.rank, b.rank, a.n_datapoints))
    return BatchResult(*(xp.asarray(v) for v in (1.0 - forward, 1.0 - backward, rho_max,
                                                  rho_min)), n_a, n_b, ill)


def _sides(layers: Layers, epsilon: float) -> tuple:
    if layers.sides is not None:
        return layers.sides
    return tuple(SvccaSide.of(layers.basis(p), epsilon) for p in range(layers.size))


def mean_cca_batch(cross, a: Layers, b: Layers, *, both: bool = True) -> BatchResult:
    """``1 - mean(rho)`` over all canonical correlations of each pair."""
    xp = array_namespace(cross)
    rho = xp.linalg.svdvals(cross)
    d = 1.0 - xp.mean(xp.clip(rho, 0.0, 1.0), axis=-1)
    return _result(d, d, rho[:, 0], rho[:, -1], a, b, cca=True)


def svcca_batch(cross, a: Layers, b: Layers, *, keep, both: bool = True) -> BatchResult:
    """SVCCA on layers already cut to their top directions (``svcca_basis``, where ``keep``
    applies): the mean CCA of those directions."""
    return mean_cca_batch(cross, a, b, both=both)


# Linear CKA, cosine and Euclidean distance from the bases and their cross product. With
# ``X = Q diag(s) vt + 1 mean^T`` (the columns of ``Q`` sum to zero):
# ``||Xc^T Yc||_F = ||diag(s_a) C diag(s_b)||_F`` and
# ``tr(X^T Y) = sum((diag(s_a) C diag(s_b)) * (vt_a vt_b^T)) + n mean_a . mean_b``.

def _scaled(cross, a: Layers, b: Layers):
    """``diag(s_a) C diag(s_b)`` per pair: ``Xc^T Yc`` in the two bases."""
    return a.s[:, :, None] * cross * b.s[:, None, :]


def _symmetric(xp, d, a: Layers, b: Layers) -> BatchResult:
    """A symmetric metric without canonical correlations: ``d`` both ways, NaN correlations."""
    nan = _nan(xp, d)
    return _result(d, d, nan, nan, a, b, cca=False)


def cka_batch(cross, a: Layers, b: Layers, *, both: bool = True) -> BatchResult:
    """``1 - linear CKA``: ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``."""
    xp = array_namespace(cross)
    num = xp.sum(_scaled(cross, a, b) ** 2, axis=(-2, -1))
    den = xp.sqrt(xp.sum(a.s**4, axis=-1)) * xp.sqrt(xp.sum(b.s**4, axis=-1))
    return _symmetric(xp, 1.0 - num / den, a, b)


def _centred_inner(xp, cross, a: Layers, b: Layers):
    """``tr(Xc^T Yc)`` per pair."""
    return xp.sum(_scaled(cross, a, b) * xp.matmul(a.vt, xp.matrix_transpose(b.vt)),
                  axis=(-2, -1))


def cosine_batch(cross, a: Layers, b: Layers, *, both: bool = True) -> BatchResult:
    """``1 - tr(X^T Y) / (||X||_F ||Y||_F)`` on the uncentred activations."""
    xp = array_namespace(cross)
    n = a.n_datapoints
    xy = _centred_inner(xp, cross, a, b) + n * xp.sum(a.mean * b.mean, axis=-1)
    xx = xp.sum(a.s**2, axis=-1) + n * xp.sum(a.mean**2, axis=-1)
    yy = xp.sum(b.s**2, axis=-1) + n * xp.sum(b.mean**2, axis=-1)
    return _symmetric(xp, 1.0 - xy / xp.sqrt(xx * yy), a, b)


def euclidean_batch(cross, a: Layers, b: Layers, *, both: bool = True) -> BatchResult:
    """``sqrt(||X - Y||_F^2 / n_datapoints)``.

    ``||X - Y||^2 = ||Xc - Yc||^2 + n ||mean_x - mean_y||^2``, the mean part as an exact
    difference. The centred part cancels for nearly equal layers: absolute error ~ sqrt(eps) *
    ||Xc||.
    """
    xp = array_namespace(cross)
    n = a.n_datapoints
    sq = (xp.sum(a.s**2, axis=-1) + xp.sum(b.s**2, axis=-1)
          - 2 * _centred_inner(xp, cross, a, b))
    mean_part = n * xp.sum((a.mean - b.mean) ** 2, axis=-1)
    return _symmetric(xp, xp.sqrt((xp.clip(sq, 0.0, None) + mean_part) / n), a, b)


def procrustes_batch(cross, a: Layers, b: Layers, *, both: bool = True) -> BatchResult:
    """Angular Procrustes distance (Williams et al. 2021): ``arccos(||Xc^T Yc||_* / (||Xc||_F
    ||Yc||_F))``, in [0, pi/2].

    ``||Xc^T Yc||_* = ||diag(s_a) C diag(s_b)||_*`` (the nuclear norm, a sum of singular values)
    and ``||Xc||_F = ||s_a||``. The ratio is clipped to [0, 1] before the arccos; near 0 the arccos
    turns a rounding error ``eps`` of the ratio into ``sqrt(2 eps)`` (about 1e-8 in float64).
    """
    xp = array_namespace(cross)
    nuclear = xp.sum(xp.linalg.svdvals(_scaled(cross, a, b)), axis=-1)
    ratio = nuclear / (xp.sqrt(xp.sum(a.s**2, axis=-1)) * xp.sqrt(xp.sum(b.s**2, axis=-1)))
    return _symmetric(xp, xp.acos(xp.clip(ratio, 0.0, 1.0)), a, b)
