"""Per-network preparation: the O(N) half of all-pairs CCA.

Each layer is factored once, ``X - mean = Q @ R`` with ``Q`` orthonormal and rank-revealing, so that
every pair afterwards costs one GEMM ``Q_a.T @ Q_b`` plus small (rank x rank) work. ``Q`` holds the
left singular vectors of the centred activations in descending order of singular value, which also
serves SVCCA (its top-``k`` directions are the first ``k`` columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from cca_scale.core.backend import array_namespace

from cca_scale.core.backend import r_factor, to_host
from cca_scale.core.validation import (
    check_activations,
    constant_layer_error,
    describe,
    rounding_layer_error,
    resolve_dtype,
)
from cca_scale.errors import ActivationError

__all__ = ["Basis", "BasisAccumulator", "FLOORED_LIVE_CLEARANCE", "GramAccumulator", "GramSpectrum",
           "GRAM_MAX_CONDITION", "NULL_NOISE_MARGIN", "REFINE_MAX_CONDITION", "default_rtol",
           "factor_chunks", "prepare", "stored_noise", "stored_roundoff"]

#: The largest ``lambda_max / lambda_min`` of a layer's centred Gram matrix (its condition number
#: squared) that :class:`GramAccumulator` factors itself, constant units set aside. Above it
#: (badly scaled or nearly collinear units) the eigenvalues of the Gram matrix no longer resolve
#: the small directions to full accuracy. At this bound the orthonormal coordinates built from the
#: Gram path are orthonormal to about ``1e6 * eps = 2e-10`` (float64).
GRAM_MAX_CONDITION = 1e6
#: Up to this ``lambda_max / lambda_min`` (condition number 1e6), :func:`factor_chunks` refines an
#: ill-conditioned Gram path with a second pass (CholeskyQR2 with the eigendecomposition as its
#: first factor), as accurate as the TSQR and about 1.7x faster. Directions of the Gram matrix
#: below ``lambda_max / REFINE_MAX_CONDITION`` (collinear or duplicated units, where the Gram
#: matrix is singular to rounding, or live directions beyond condition 1e6) are scaled by that
#: floor in the same pass and resolved there: null ones are dropped, as the TSQR would drop them,
#: and live ones kept where they stand clear of the pass' noise (:data:`FLOORED_LIVE_CLEARANCE`).
REFINE_MAX_CONDITION = 1e12
#: A layer with null directions stays off the TSQR only where its rank tolerance is at least this
#: many times the refined pass' noise on them (``sqrt(k * eps * lambda_max / REFINE_MAX_CONDITION)``
#: for ``k`` units; measured noise is 1e-3 of that or less): from about 1,100 datapoints at 16
#: units, 4,300 at 256.
NULL_NOISE_MARGIN = 4.0
#: A floored direction that comes out live (a condition number above 1e6: float32 rounding of an
#: exact dependency, as in softmax rows stored as float32, or a nearly silent unit) is kept from
#: the refined pass where its singular value is at least this many times the pass' noise, so
#: resolved to 1e-3 or better; nearer the noise (a condition number near ``1 / rtol``) the layer
#: takes the TSQR.
FLOORED_LIVE_CLEARANCE = 1e3


def default_rtol(n_datapoints: int, n_neurons: int, dtype: Any) -> float:
    """Relative rank tolerance: singular values below ``rtol * s_max`` are null directions.

    The convention of ``numpy.linalg.matrix_rank``: ``max(n_datapoints, n_neurons) * eps(dtype)``,
    about 1e-12 for float64 and 1e-3 for float32 at 10,000 datapoints.
    """
    return float(max(n_datapoints, n_neurons) * np.finfo(np.dtype(dtype)).eps)


def stored_roundoff(dtype: Any) -> float:
    """Unit roundoff of the precision activations were stored in: ``eps / 2`` of a float dtype
    (float32 6.0e-8, float64 1.1e-16), 0 for integers (exact)."""
    dt = np.dtype(dtype)
    return float(np.finfo(dt).eps) / 2 if dt.kind == "f" else 0.0


def stored_noise(vt, column_norms2, roundoff: float):
    """Per direction, the largest singular value that rounding the activations to their stored
    precision can give a direction that is null in the exact values, shape (rank,).

    Rounding changes each stored value by at most ``roundoff`` times itself, so neuron ``j``
    (column ``x_j`` as stored, uncentred) by at most ``roundoff * ||x_j||``; a direction ``v``
    that is null in the exact values comes out with singular value at most ``||E v|| <= roundoff
    * sum_j |v_j| ||x_j||``. ``vt`` (rank, n_neurons): the directions; ``column_norms2`` (n_neurons,):
    ``||x_j||^2``, the centred squared norm plus ``n_datapoints * mean_j^2``. A direction made of
    neurons stored to full precision relative to itself (a unit firing once, far below the others)
    is not noise however small; a direction in which exactly dependent neurons (softmax rows summing
    to 1, one unit the sum of others) differ only by their rounding is.
    """
    xp = array_namespace(vt)
    return roundoff * (xp.abs(vt) @ xp.sqrt(column_norms2))


def stored_dtype_of(x) -> np.dtype:
    """The dtype ``x`` holds its activations in (what :func:`check_activations` converts from)."""
    try:
        return np.dtype(x.dtype)
    except (AttributeError, TypeError):  # a list, or a torch dtype
        pass
    try:
        return np.asarray(x).dtype
    except Exception:  # noqa: BLE001 - check_activations says what is wrong with it
        return np.dtype(np.float64)


@dataclass(frozen=True, eq=False)
class Basis:
    """One layer, factored once: ``X - mean = Q @ diag(s) @ vt`` with null directions dropped.

    Attributes
    ----------
    q : array of shape (n_datapoints, rank) or None
        Orthonormal basis of the centred activations' column span (left singular vectors, by
        descending singular value). None for a basis built by streaming, whose ``q`` is formed
        chunk by chunk with :meth:`project`.
    s : array of shape (rank,)
        Singular values of the centred activations, descending, all above ``rtol * s[0]``.
    vt : array of shape (rank, n_neurons)
        Right singular vectors.
    mean : array of shape (n_neurons,)
        Per-neuron mean over datapoints.
    n_datapoints : int
    rtol : float
        The relative rank tolerance that was applied.
    n_rounding : int
        Directions above ``rtol`` dropped because rounding to the activations' stored precision
        could make them out of null ones (:func:`stored_noise`).
    """

    q: Any
    s: Any
    vt: Any
    mean: Any
    n_datapoints: int
    rtol: float
    n_rounding: int = 0

    @property
    def rank(self) -> int:
        """Number of kept (non-null) directions."""
        return int(self.s.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.vt.shape[1])

    @property
    def r(self):
        """Centred neurons in the basis: ``X - mean = q @ r``, shape (rank, n_neurons)."""
        return self.s[:, None] * self.vt

    @property
    def whitener(self):
        """``q = (X - mean) @ whitener``, shape (n_neurons, rank)."""
        return self.vt.T / self.s[None, :]

    @property
    def neuron_norms(self):
        """Euclidean norm of each centred neuron over the datapoints, shape (n_neurons,)."""
        xp = array_namespace(self.s)
        return xp.sqrt(xp.sum(self.r**2, axis=0))

    @property
    def kept_neurons(self):
        """Mask of the neurons that are not constant (to the rank tolerance), shape (n_neurons,)."""
        norms = self.neuron_norms
        xp = array_namespace(norms)
        return norms > self.rtol * xp.max(norms)

    def leading(self, k: int) -> "Basis":
        """The basis cut to its ``k`` leading directions (itself when it has no more)."""
        if k >= self.rank:
            return self
        return Basis(q=None if self.q is None else self.q[:, :k], s=self.s[:k], vt=self.vt[:k],
                     mean=self.mean, n_datapoints=self.n_datapoints, rtol=self.rtol,
                     n_rounding=self.n_rounding)

    def project(self, x):
        """Orthonormal coordinates of datapoints: ``(x - mean) @ whitener``, shape (n, rank)."""
        return (x - self.mean[None, :]) @ self.whitener

    def to(self, xp) -> "Basis":
        """The same basis with every array moved to the array module ``xp`` (e.g. NumPy -> CuPy)."""
        # xp.asarray does not copy an array already in xp; NumPy needs CuPy arrays brought home.
        move = (lambda a: np.asarray(to_host(a))) if xp is np else xp.asarray
        return Basis(
            q=None if self.q is None else move(self.q), s=move(self.s), vt=move(self.vt),
            mean=move(self.mean), n_datapoints=self.n_datapoints, rtol=self.rtol,
            n_rounding=self.n_rounding,
        )



def _truncate(u, s, vt, rtol: float, who: str, noise=None):
    """Keep the singular triplets above ``rtol * s_max`` and, where given, above their
    :func:`stored_noise` ``noise`` (shape (len(s),)); a layer with none above the first is
    constant, one with none above the second varies only within its rounding (both refused).
    Returns ``u, s, vt`` cut, and how many directions ``noise`` dropped."""
    xp = array_namespace(s)
    s_max = float(s[0]) if s.shape[0] else 0.0
    rank = int(xp.sum(s > rtol * s_max)) if s_max > 0 else 0
    if rank == 0:
        raise constant_layer_error(who)
    if noise is not None:
        keep = s[:rank] > noise[:rank]
        n_kept = int(to_host(xp.sum(keep)))
        if n_kept == 0:
            raise rounding_layer_error(who)
        if n_kept < rank:
            index = xp.nonzero(keep)[0]
            return ((None if u is None else xp.take(u, index, axis=1)), xp.take(s, index),
                    xp.take(vt, index, axis=0), rank - n_kept)
    return (None if u is None else u[:, :rank]), s[:rank], vt[:rank, :], 0


def _svd_noise(s, vt, mean, n: int, roundoff: float):
    """:func:`stored_noise` of the directions of a centred layer's full SVD ``s``, ``vt`` (every
    direction, before any cut; ``||x_j||^2 = sum_k s_k^2 vt_kj^2 + n mean_j^2``), or None where
    ``roundoff`` is 0."""
    if not roundoff:
        return None
    return stored_noise(vt, (s * s) @ (vt * vt) + n * (mean * mean), roundoff)


def prepare(
    x,
    *,
    rtol: float | None = None,
    dtype: Any = None,
    allow_underdetermined: bool = False,
    name: str = "x",
    network: str | None = None,
    layer: str | None = None,
    stored_dtype: Any = None,
) -> Basis:
    """Validate and factor one layer's activations, once per network.

    Parameters
    ----------
    x : array of shape (n_datapoints, n_neurons)
        NumPy or CuPy; the basis lives in the same array module.
    rtol : float, optional
        Relative rank tolerance. Directions of the centred activations with singular value
        below ``rtol * s_max`` are null and dropped, so dead (constant) units and exactly
        collinear neurons do not count. By default :func:`default_rtol` of the working
        precision, and directions no larger than rounding ``x`` to its own dtype could make a
        null direction (:func:`stored_noise`: float32 softmax rows, whose sum-to-1 direction
        float32 rounding leaves at about 1e-8 of the largest) are dropped as well, so float32
        activations give the rank, and to about 1e-6 the distances, of the same activations in
        float64. A given ``rtol`` is the whole cut.
    dtype : {None, 'float32', 'float64'}
        Working precision, float64 by default (whatever ``x`` is stored in).
    allow_underdetermined : bool
        Accept ``n_datapoints <= n_neurons`` (degenerate CCA; see :func:`check_activations`).
    name, network, layer : str
        Used in error messages only.
    stored_dtype : numpy dtype, optional
        The precision the activations were stored in, where ``x`` was already converted from it
        (default: ``x``'s own dtype).

    Returns
    -------
    Basis
        With ``q`` materialised, shape (n_datapoints, rank).

    Notes
    -----
    A thin SVD of the centred activations is rank-revealing, unlike an unpivoted QR, which keeps the
    wrong span when a dead unit is not the last column.
    """
    stored = stored_dtype_of(x) if stored_dtype is None else np.dtype(stored_dtype)
    roundoff = stored_roundoff(stored) if rtol is None else 0.0
    x = check_activations(x, name=name, network=network, layer=layer, dtype=dtype,
                          allow_underdetermined=allow_underdetermined)
    xp = array_namespace(x)
    n, d = x.shape
    rtol = default_rtol(n, d, x.dtype) if rtol is None else float(rtol)
    mean = xp.mean(x, axis=0)
    u, s, vt = xp.linalg.svd(x - mean[None, :], full_matrices=False)
    noise = _svd_noise(s, vt, mean, n, roundoff)
    u, s, vt, dropped = _truncate(u, s, vt, rtol, describe(name, network=network, layer=layer),
                                  noise)
    return Basis(q=u, s=s, vt=vt, mean=mean, n_datapoints=int(n), rtol=rtol, n_rounding=dropped)


class _CentredChunks:
    """Chunks merged exactly with running means (Chan et al.): each chunk is centred on its own
    mean and reduced to a summary (``_summary``); two partial results combine through
    ``_merged(summary_a, summary_b, weight, delta)`` with ``weight = n_a n_b / (n_a + n_b)`` and
    ``delta = mean_b - mean_a``. Subclasses say what the summary is."""

    def __init__(self, *, rtol: float | None = None, who: str = "layer",
                 stored_dtype: Any = None):
        self.rtol = rtol
        self.who = who
        self.stored_dtype = None if stored_dtype is None else np.dtype(stored_dtype)
        self.n = 0
        self.mean = None
        self.state = None

    @property
    def roundoff(self) -> float:
        """:func:`stored_roundoff` of the activations' stored precision (``stored_dtype``, else
        the first chunk's dtype), where the default tolerance applies; 0 under a given ``rtol``."""
        if self.rtol is not None or self.stored_dtype is None:
            return 0.0
        return stored_roundoff(self.stored_dtype)

    def _cast(self, chunk):
        return chunk

    def _summary(self, centred):
        raise NotImplementedError

    def _merged(self, state, summary, weight: float, delta):
        raise NotImplementedError

    def update(self, chunk) -> None:
        """Add a chunk of shape (n_chunk, n_neurons); chunks must arrive with the same neurons."""
        xp = array_namespace(chunk)
        if self.stored_dtype is None:
            self.stored_dtype = np.dtype(chunk.dtype)
        chunk = self._cast(chunk)
        b = int(chunk.shape[0])
        if b == 0:
            return
        mu_b = xp.mean(chunk, axis=0)
        summary = self._summary(chunk - mu_b[None, :])
        if self.n == 0:
            self.n, self.mean, self.state = b, mu_b, summary
            return
        n = self.n + b
        delta = mu_b - self.mean
        self.state = self._merged(self.state, summary, self.n * b / n, delta)
        self.mean = self.mean + (b / n) * delta
        self.n = n

    def _check_count(self) -> None:
        if self.n < 2:
            raise ActivationError(f"{self.who}: need at least 2 datapoints, got {self.n}.")


class BasisAccumulator(_CentredChunks):
    """Build a :class:`Basis` from datapoint chunks without holding the whole layer in memory.

    A tall-skinny QR with running means: each chunk is centred on its own mean and reduced to its
    ``R`` factor; two partial results combine exactly through
    ``qr([R_a; R_b; sqrt(n_a n_b / (n_a + n_b)) (mean_a - mean_b)])``. Memory is
    O(n_neurons^2 + chunk). The result has ``q=None``; :meth:`Basis.project` forms ``q`` chunk
    by chunk.

    Examples
    --------
    >>> acc = BasisAccumulator()
    >>> for chunk in chunks:          # doctest: +SKIP
    ...     acc.update(chunk)
    >>> basis = acc.finalize()        # doctest: +SKIP
    """

    def __init__(self, *, dtype: Any = None, rtol: float | None = None, who: str = "layer",
                 stored_dtype: Any = None):
        super().__init__(rtol=rtol, who=who, stored_dtype=stored_dtype)
        self.dtype = resolve_dtype(dtype)

    @property
    def r(self):
        """The ``R`` factor of everything added so far, shape (n_neurons, n_neurons) at most."""
        return self.state

    def _cast(self, chunk):
        return array_namespace(chunk).astype(chunk, self.dtype, copy=False)

    def _summary(self, centred):
        return r_factor(centred)

    def _merged(self, r_a, r_b, weight: float, delta):
        xp = array_namespace(r_a)
        return r_factor(xp.concat([r_a, r_b, ((weight ** 0.5) * delta)[None, :]], axis=0))

    def finalize(self) -> Basis:
        """The basis of everything added so far (``q=None``)."""
        self._check_count()
        xp = array_namespace(self.r)
        d = int(self.r.shape[1])
        rtol = default_rtol(self.n, d, self.dtype) if self.rtol is None else float(self.rtol)
        _, s, vt = xp.linalg.svd(self.r, full_matrices=False)
        noise = _svd_noise(s, vt, self.mean, self.n, self.roundoff)
        _, s, vt, dropped = _truncate(None, s, vt, rtol, self.who, noise)
        return Basis(q=None, s=s, vt=vt, mean=self.mean, n_datapoints=self.n, rtol=rtol,
                     n_rounding=dropped)


class GramAccumulator(_CentredChunks):
    """The fast half of :func:`factor_chunks`: a layer's centred Gram matrix, streamed.

    Each chunk adds its own centred Gram ``(X_b - mean_b)^T (X_b - mean_b)`` (a SYRK, about half
    the flops of a QR and several times faster) and the exact between-chunk correction
    ``n_a n_b / (n_a + n_b) (mean_a - mean_b)(mean_a - mean_b)^T``, so no cancellation against a
    large mean occurs. Memory O(n_neurons^2).

    Constant units (dead ReLUs: a centred norm at most ``rtol`` times the largest, as
    :attr:`Basis.kept_neurons` says, with ``rtol`` no coarser than :func:`default_rtol`) are
    exact null directions, not ill-conditioning: they are set aside and the rest is factored
    here, so a trained layer with dead units stays on this path rather than paying for the TSQR
    (about 6x the time, and a second read of a streamed layer).
    """

    _spectrum = None

    @property
    def m2(self):
        """The centred Gram matrix of everything added so far, shape (n_neurons, n_neurons)."""
        return self.state

    def update(self, chunk) -> None:
        self._spectrum = None
        super().update(chunk)

    def _summary(self, centred):
        return centred.T @ centred  # a SYRK

    def _merged(self, m2_a, m2_b, weight: float, delta):
        return m2_a + m2_b + weight * (delta[:, None] * delta[None, :])

    def spectrum(self) -> "GramSpectrum | None":
        """The eigendecomposition of the non-constant units' centred Gram matrix (computed once
        when everything is added), or None where every unit is constant."""
        if self._spectrum is None:
            self._check_count()
            xp = array_namespace(self.m2)
            d = int(self.m2.shape[0])
            default = default_rtol(self.n, d, np.float64)
            rtol = default if self.rtol is None else float(self.rtol)
            # Only units constant to rounding are set aside: a coarser rtol asked for is a cut of
            # singular values (made later), not licence to drop small live units.
            aside = min(rtol, default)
            m2 = (self.m2 + self.m2.T) / 2
            norms2 = xp.diagonal(m2)
            live = norms2 > (aside * aside) * xp.max(norms2)
            n_live = int(to_host(xp.sum(live)))
            if n_live == 0:
                return None  # a constant layer: the TSQR route raises the error that says so
            lam, v = xp.linalg.eigh(m2 if n_live == d else m2[live][:, live])
            self._spectrum = GramSpectrum(lam=lam, v=v, live=None if n_live == d else live,
                                          n_neurons=d, rtol=rtol)
        return self._spectrum

    def finalize(self) -> Basis | None:
        """The basis (``q=None``), or None where the Gram matrix of the non-constant units is
        too ill-conditioned to resolve every direction (condition number squared above
        :data:`GRAM_MAX_CONDITION`) or where every unit is constant."""
        spec = self.spectrum()
        if spec is None or not spec.within(GRAM_MAX_CONDITION):
            return None
        xp = array_namespace(spec.lam)
        descending = xp.arange(spec.lam.shape[0] - 1, -1, -1)
        s = xp.sqrt(xp.take(spec.lam, descending))
        # A new C-contiguous array, as the SVD's: a strided view would become contiguous when
        # the basis is sent to another worker, and BLAS sums in another order on other layouts.
        vt = spec.embed(xp.take(spec.v.T, descending, axis=0))
        _, s, vt, dropped = _truncate(None, s, vt, spec.rtol, self.who, self.noise(vt))
        return Basis(q=None, s=s, vt=vt, mean=self.mean, n_datapoints=self.n, rtol=spec.rtol,
                     n_rounding=dropped)

    def noise(self, vt):
        """:func:`stored_noise` of directions ``vt`` (shape (r, n_neurons)), or None where it
        does not apply (a given ``rtol``, or exact input)."""
        roundoff = self.roundoff
        return stored_noise(vt, self.column_norms2, roundoff) if roundoff else None

    @property
    def column_norms2(self):
        """``||x_j||^2`` of each unit as stored (uncentred), shape (n_neurons,)."""
        return array_namespace(self.m2).diagonal(self.m2) + self.n * (self.mean * self.mean)


@dataclass(frozen=True, eq=False)
class GramSpectrum:
    """``lam`` (ascending, shape (k,)) and ``v`` (k, k): the eigendecomposition of the centred
    Gram matrix of a layer's ``k`` non-constant units; ``live`` marks them among the
    ``n_neurons`` (None: all of them)."""

    lam: Any
    v: Any
    live: Any
    n_neurons: int
    rtol: float

    def beyond(self, condition: float):
        """Mask of the directions with ``lambda_max > condition * lambda``, shape (k,)."""
        return self.lam * condition < self.lam[-1]

    def within(self, condition: float) -> bool:
        """Whether ``0 < lambda_max <= condition * lambda_min``: no direction :meth:`beyond`."""
        xp = array_namespace(self.lam)
        beyond = bool(to_host(xp.any(self.beyond(condition))))
        return float(to_host(self.lam[-1])) > 0 and not beyond

    def embed(self, rows):
        """``rows`` over the non-constant units (shape (r, k)) as rows over all the units, the
        constant ones exactly 0 (they take no part in any direction): shape (r, n_neurons)."""
        if self.live is None:
            return rows
        xp = array_namespace(rows)
        full = xp.zeros((rows.shape[0], self.n_neurons), dtype=rows.dtype)
        full[:, self.live] = rows
        return full


def factor_chunks(chunks, *, rtol: float | None = None, who: str = "layer",
                  stored_dtype: Any = None) -> Basis:
    """One layer's :class:`Basis` (float64, ``q=None``) from its datapoint chunks.

    ``chunks()`` returns a fresh iterable of float64 arrays of shape (n_chunk, n_neurons), in the
    array module the basis should live in; ``stored_dtype`` is the precision the activations were
    stored in (default: the chunks' own), whose rounding the default tolerance discounts as
    :func:`prepare` does. Well-conditioned layers are factored from their centred
    Gram matrix (:class:`GramAccumulator`, one pass, GEMM speed; constant units such as dead
    ReLUs are set aside first). Layers with a condition number above
    ``sqrt(GRAM_MAX_CONDITION)`` (1e3) take a second pass that refines the Gram path to the
    TSQR's accuracy (CholeskyQR2, GEMM speed); in the same pass, null directions (collinear or
    duplicated units) are certified null and dropped, and live ones beyond condition 1e6 are
    resolved (:func:`_refined`). The rest (null directions where the rank tolerance is too fine to
    certify them: small layers; live ones too near the pass' noise) takes the rank-revealing
    streamed TSQR (:class:`BasisAccumulator`), exactly as before the Gram path existed.
    Deterministic: the same chunks give the same bits.
    """
    gram = GramAccumulator(rtol=rtol, who=who, stored_dtype=stored_dtype)
    for chunk in chunks():
        gram.update(chunk)
    basis = gram.finalize()
    if basis is None:
        basis = _refined(gram, chunks)
    if basis is not None:
        return basis
    acc = BasisAccumulator(dtype="float64", rtol=rtol, who=who,
                           stored_dtype=gram.stored_dtype)
    for chunk in chunks():
        acc.update(chunk)
    return acc.finalize()


def _null_cut(gram: GramAccumulator, spec: GramSpectrum) -> float:
    """A singular value below which every direction of the layer is dropped: ``rtol * s_max``,
    or, where the activations' stored precision applies (:func:`stored_noise`), the least any
    direction's rounding bound can be, ``roundoff * min_j ||x_j||`` over the non-constant units
    (a unit direction has ``sum_j |v_j| >= 1``), if larger: float32 layers too small for the
    rank tolerance alone to certify their null directions are certified by it."""
    cut = spec.rtol * float(np.sqrt(to_host(spec.lam[-1])))
    roundoff = gram.roundoff
    if not roundoff:
        return cut
    norms2 = gram.column_norms2
    if spec.live is not None:
        norms2 = norms2[spec.live]
    return max(cut, roundoff * float(np.sqrt(to_host(array_namespace(norms2).min(norms2)))))


def _refined(gram: GramAccumulator, chunks) -> Basis | None:
    """The basis of a layer too ill-conditioned for the Gram path alone, from a second pass:
    CholeskyQR2 with the Gram matrix's eigendecomposition as the first factor.

    ``q1 = (X - mean) @ w`` with ``w = v lam^-1/2`` is orthonormal to about ``eps * condition``,
    so its Gram matrix ``v2 lam2 v2^T`` is resolved to full accuracy; then ``X - mean = (q1 v2
    lam2^-1/2) @ m`` with ``m = lam2^1/2 v2^T lam^1/2 v^T``, and the SVD of the small ``m`` gives
    ``s`` and ``vt`` as accurate as the TSQR's.

    Directions with ``lam`` below ``lam_max / REFINE_MAX_CONDITION`` (a collinear or duplicated
    unit, or a live direction beyond condition 1e6: the Gram matrix no longer resolves them, its
    eigenvectors there are noise) are scaled by that floor instead, so their columns of ``q1``
    have norm at most about 1 and their true singular values come out of ``m`` to about
    ``noise = sqrt(k * eps * floor)``: null ones far below the rank tolerance (its cut at least
    :data:`NULL_NOISE_MARGIN` times the noise, :func:`_null_cut`), dropped as the TSQR drops
    them; live ones kept where they stand :data:`FLOORED_LIVE_CLEARANCE` times clear of the noise. None (the TSQR)
    where the tolerance is too fine for that noise, a kept floored direction is nearer to it, or
    the first factor did not make the other columns of ``q1`` near-orthonormal.
    """
    spec = gram.spectrum()
    if spec is None:
        return None
    xp = array_namespace(spec.lam)
    lam_max = float(to_host(spec.lam[-1]))
    floored = spec.beyond(REFINE_MAX_CONDITION)
    n_floored = int(to_host(xp.sum(floored)))
    k = int(spec.lam.shape[0])
    floor = lam_max / REFINE_MAX_CONDITION
    noise = float(np.sqrt(k * np.finfo(np.float64).eps * floor))
    if not lam_max > 0 or (n_floored and NULL_NOISE_MARGIN * noise > _null_cut(gram, spec)):
        return None
    root = xp.sqrt(xp.where(floored, floor, spec.lam))
    w = xp.ascontiguousarray(spec.embed((spec.v / root[None, :]).T).T)  # (n_neurons, k)
    g2 = None
    for chunk in chunks():
        q1 = (chunk - gram.mean[None, :]) @ w
        g2 = q1.T @ q1 if g2 is None else g2 + q1.T @ q1
    lam2, v2 = xp.linalg.eigh((g2 + g2.T) / 2)
    if not (float(to_host(lam2[n_floored])) > 0.5 and float(to_host(lam2[-1])) < 2.0):
        return None
    m = (xp.sqrt(xp.maximum(lam2, 0.0))[:, None] * v2.T) @ (root[:, None] * spec.v.T)
    _, s, vt = xp.linalg.svd(m, full_matrices=False)
    vt = spec.embed(vt)
    rounding = gram.noise(vt)
    if n_floored:
        kept = s > spec.rtol * s[0]
        if rounding is not None:
            kept &= s > rounding
        n_kept = int(to_host(xp.sum(kept)))
        smallest = float(to_host(xp.min(xp.where(kept, s, xp.inf)))) if n_kept else 0.0
        if n_kept > k - n_floored and smallest < FLOORED_LIVE_CLEARANCE * noise:
            return None  # a floored direction is live but not clear of the noise
    _, s, vt, dropped = _truncate(None, s, vt, spec.rtol, gram.who, rounding)
    return Basis(q=None, s=s, vt=vt, mean=gram.mean, n_datapoints=gram.n, rtol=spec.rtol,
                 n_rounding=dropped)
