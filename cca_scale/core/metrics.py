"""Public one-pair functions: thin wrappers over :func:`prepare` and :func:`compare`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from cca_scale.core.backend import array_namespace, to_host
from cca_scale.core.basis import Basis, prepare, stored_dtype_of
from cca_scale.core.kernels import (
    DEFAULT_EPSILON,
    SvccaSide,
    ill_posed,
    ill_posed_message,
    projection_weights,
    stable_pwcca_similarity,
)
from cca_scale.core.pairs import compare, original_pwcca_similarity
from cca_scale.core.registry import check_keep, check_metric, get_metric
from cca_scale.core.validation import check_not_constant, check_pair
from cca_scale.errors import IllPosedWarning

__all__ = ["CCAResult", "cca", "cka_distance", "cosine_distance", "euclidean_distance",
           "mean_cca_distance", "procrustes_distance", "pwcca_distance", "svcca_distance"]


@dataclass(frozen=True, eq=False)
class CCAResult:
    """Canonical correlation analysis of two layers over the same datapoints.

    Attributes
    ----------
    rho : array of shape (k,)
        Canonical correlations, descending, in [0, 1]; ``k = min(rank_x, rank_y)``.
    x_basis, y_basis : Basis
        Each layer's factorisation (``q``, kept rank, means).
    x_rotation, y_rotation : arrays of shape (rank_x, k) and (rank_y, k)
        Canonical directions in each basis: the canonical variates are ``x_basis.q @ x_rotation``.
    x_weights, y_weights : arrays of shape (k,)
        The paper's projection weights (sum to 1) of each side's canonical variates:
        ``alpha_i`` proportional to ``sum_j |<h_i, z_j>|`` over that side's centred neurons.
    """

    rho: Any
    x_basis: Basis
    y_basis: Basis
    x_rotation: Any
    y_rotation: Any
    x_weights: Any
    y_weights: Any

    @property
    def rank_x(self) -> int:
        return self.x_basis.rank

    @property
    def rank_y(self) -> int:
        return self.y_basis.rank

    @property
    def kept_x(self):
        """Boolean mask of x's non-constant neurons, shape (n_neurons_x,)."""
        return self.x_basis.kept_neurons

    @property
    def kept_y(self):
        return self.y_basis.kept_neurons

    def x_variates(self):
        """Canonical variates ``h_i`` of x, orthonormal, shape (n_datapoints, k)."""
        return self.x_basis.q @ self.x_rotation

    def y_variates(self):
        return self.y_basis.q @ self.y_rotation


#: The original's value is reported as depending on rounding when it differs from the stable
#: computation of the same formula (the engine's) by more than this, the bound to which the two
#: routes agree on well-conditioned layers.
ORIGINAL_UNSTABLE_TOL = 1e-9


def _prepare_pair(x, y, *, rtol, dtype, allow_underdetermined,
                  metric: str = "pwcca") -> tuple[Basis, Basis]:
    """Check and factor both layers. ``n_datapoints <= n_neurons`` is refused (unless opted in)
    only for the CCA family (``MetricInfo.cca_family`` in :mod:`cca_scale.core.registry`): CKA,
    cosine and Euclidean distance are well defined there."""
    stored = stored_dtype_of(x), stored_dtype_of(y)
    x, y = check_pair(x, y, dtype=dtype, allow_underdetermined=allow_underdetermined,
                      ensure_overdetermined=get_metric(metric).cca_family)
    kw = dict(rtol=rtol, dtype=dtype, allow_underdetermined=True)
    return (prepare(x, name="x", stored_dtype=stored[0], **kw),
            prepare(y, name="y", stored_dtype=stored[1], **kw))


def _warn_ill_posed(rank_x: int, rank_y: int, n_datapoints: int, *, stacklevel: int) -> None:
    """IllPosedWarning, attributed (``stacklevel``) to the caller of the public function."""
    if ill_posed(rank_x, rank_y, n_datapoints):
        warnings.warn(ill_posed_message(rank_x, rank_y, n_datapoints), IllPosedWarning,
                      stacklevel=stacklevel)


def _doc(text: str):
    """Set a docstring built from shared pieces (a concatenation is not a docstring literal)."""
    def decorate(fn):
        fn.__doc__ = text
        return fn
    return decorate


_SHARED_DOC = """
    x, y : arrays of shape (n_datapoints, n_neurons_x) and (n_datapoints, n_neurons_y)
        Two layers' activations over the same datapoints in the same order; NumPy or CuPy.
    rtol : float, optional
        Relative rank tolerance for null directions (see :func:`prepare`).
    dtype : {None, 'float32', 'float64'}
        Working precision: float64 by default. float32 agrees with float64 to about 1e-4 on
        well-conditioned data."""

_GUARD_DOC = """
    allow_underdetermined : bool
        Accept ``n_datapoints <= n_neurons``, where CCA is degenerate (every rho tends to 1)."""

_ILL_POSED_DOC = """
    Warns
    -----
    IllPosedWarning
        When ``rank_x + rank_y > n_datapoints - 1`` (ranks of the compared directions): that many
        canonical correlations beyond ``n_datapoints - 1`` are 1 whatever the data."""

_NO_GUARD_DOC = """
    allow_underdetermined : bool
        Accepted for a uniform signature and ignored: this metric is well defined for any
        ``n_datapoints >= 2``, including ``n_datapoints <= n_neurons``."""


@_doc("""Canonical correlation analysis between two layers.

    Parameters
    ----------""" + _SHARED_DOC + _GUARD_DOC + """

    Returns
    -------
    CCAResult
    """ + _ILL_POSED_DOC + """
    """)
def cca(x, y, *, rtol: float | None = None, dtype: Any = None,
        allow_underdetermined: bool = False) -> CCAResult:
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    _warn_ill_posed(a.rank, b.rank, a.n_datapoints, stacklevel=3)
    xp = array_namespace(a.q)
    u, rho, vt = xp.linalg.svd(a.q.T @ b.q, full_matrices=False)
    rho = xp.clip(rho, 0.0, 1.0)
    return CCAResult(rho=rho, x_basis=a, y_basis=b, x_rotation=u, y_rotation=vt.T,
                     x_weights=projection_weights(u.T @ a.r),
                     y_weights=projection_weights(vt @ b.r))


@_doc("""Projection weighted CCA distance ``d(x, y) = 1 - sum_i alpha_i rho_i`` (Morcos 2018).

    Not symmetric: the weights ``alpha`` are those of the FIRST argument's canonical variates.

    Parameters
    ----------""" + _SHARED_DOC + _GUARD_DOC + """
    variant : {'paper', 'svcca'}
        ``'paper'`` (default): Section 2.2 exactly. Centre both layers; ``h_i`` the orthonormal
        canonical variates of x; ``alpha_i`` proportional to ``sum_j |<h_i, z_j>|`` over x's
        centred neurons ``z_j``, normalised to sum 1, over the ``min(rank_x, rank_y)``
        correlations. Exact: no ridge, no rescaling.
        ``'svcca'``: the value the original public implementation (google/svcca,
        ``pwcca.compute_pwcca``) returns, to compare with published numbers. It differs from the
        paper's formula (by 1e-3 to 1e-1 on typical data): covariances rescaled and ridged by
        ``epsilon``, weights from the side with FEWER kept neurons, built from un-whitened
        directions with the means added back and projected onto uncentred neurons. Because of that
        last step its value depends on the signs LAPACK gives singular vectors; the original's own
        steps (``np.cov``, pseudo-inverse, NumPy's SVD, QR) are run, so the signs, and the value,
        match the original wherever it is defined.
        Where the original is undefined (its pseudo-inverse of a nearly singular covariance is not
        exactly symmetric, eigh finds a negative eigenvalue and the square root gives NaN, or it
        returns a correlation above 1: two or more duplicated or collinear units, exact low rank
        plus tiny noise), the value is the same formula computed stably from the layers' bases
        (:func:`~cca_scale.core.kernels.stable_pwcca_similarity`): in [0, 1], and what
        ``cca_scale.compare`` returns for the pair. Where the original is defined but its value
        depends on rounding (it differs from the stable value by more than 1e-9: a duplicated or
        collinear unit makes its SVD's signs arbitrary; rarely, a sign choice on good data), the
        original's value is returned with a RuntimeWarning that gives the stable value.
    epsilon : float
        Only for ``variant='svcca'``: the original's variance cut-off and ridge (default 1e-10, as
        in its tutorials). That variant always computes in float64 NumPy, as the original does.

    Returns
    -------
    float in [0, 1]
    """ + _ILL_POSED_DOC + """
    """)
def pwcca_distance(x, y, *, variant: str = "paper", epsilon: float = DEFAULT_EPSILON,
                   rtol: float | None = None, dtype: Any = None,
                   allow_underdetermined: bool = False) -> float:
    check_metric("pwcca", variant).check_options(epsilon=epsilon)
    if variant == "svcca":
        return _original_pwcca_distance(x, y, epsilon=epsilon,
                                        allow_underdetermined=allow_underdetermined)
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    return _one_way(a, b, metric="pwcca", variant=variant, epsilon=epsilon)


def _original_pwcca_distance(x, y, *, epsilon: float, allow_underdetermined: bool) -> float:
    """``variant='svcca'`` for one pair: the original's own steps where they are defined.

    Runs :func:`~cca_scale.core.pairs.original_pwcca_similarity` (``np.cov`` of the stacked
    neurons, in float64 on the host, so that the matrix whose SVD signs decide the original's value
    is bit-identical to the original's), and the stable computation from the layers' bases, which
    the engine uses and which stands in where the original is undefined.
    """
    stored = stored_dtype_of(x), stored_dtype_of(y)
    x, y = check_pair(x, y, dtype="float64", allow_underdetermined=allow_underdetermined)
    x, y = to_host(x), to_host(y)
    for arr, name in ((x, "x"), (y, "y")):
        check_not_constant(arr, name=name)
    kw = dict(allow_underdetermined=True)
    a, b = (prepare(x, name="x", stored_dtype=stored[0], **kw),
            prepare(y, name="y", stored_dtype=stored[1], **kw))
    _warn_ill_posed(a.rank, b.rank, a.n_datapoints, stacklevel=4)
    stable = stable_pwcca_similarity(SvccaSide.of(a, epsilon), SvccaSide.of(b, epsilon),
                                     a.q.T @ b.q)[0]
    if a.n_rounding or b.n_rounding:
        # Directions that rounding to the stored precision could make out of null ones were
        # dropped (as the engine drops them); the original, blind to storage, would whiten them.
        return 1.0 - stable
    original = original_pwcca_similarity(x, y, epsilon)
    if original is None:
        return 1.0 - stable
    if abs(original - stable) > ORIGINAL_UNSTABLE_TOL:
        warnings.warn(
            f"pwcca_distance(variant='svcca'): the original implementation's value on this input, "
            f"{1.0 - original:.12g}, depends on rounding (its SVD's sign choice, typically made "
            f"arbitrary by a duplicated or collinear unit): the same formula computed stably "
            f"gives {1.0 - stable:.12g} (a difference of {abs(original - stable):.2g}), which is "
            "what cca_scale.compare returns for this pair. variant='paper' has no such "
            "dependence.", RuntimeWarning, stacklevel=3)
    return 1.0 - original


@_doc("""``1 - mean(rho)`` over all ``min(rank_x, rank_y)`` canonical correlations. Symmetric.

    Parameters
    ----------""" + _SHARED_DOC + _GUARD_DOC + """
    """ + _ILL_POSED_DOC + """
    """)
def mean_cca_distance(x, y, *, rtol: float | None = None, dtype: Any = None,
                      allow_underdetermined: bool = False) -> float:
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    return _one_way(a, b, metric="mean_cca")


@_doc("""SVCCA distance (Raghu et al. 2017): top SVD directions of each centred layer, then mean
    CCA.

    Parameters
    ----------""" + _SHARED_DOC + _GUARD_DOC + """
    keep : int or float
        An int: keep that many top directions of each layer. A float in (0, 1): keep the smallest
        number of directions whose squared singular values (variance) reach that fraction.
    """ + _ILL_POSED_DOC + """ (Here the ranks are the kept directions.)
    """)
def svcca_distance(x, y, *, keep: int | float = 0.99, rtol: float | None = None,
                   dtype: Any = None, allow_underdetermined: bool = False) -> float:
    check_keep(keep)
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    return _one_way(a, b, metric="svcca", keep=keep)


@_doc("""``1 - linear CKA`` (Kornblith et al. 2019), the modern reference metric. Symmetric.

    ``CKA = ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` on centred activations. Invariant
    to orthogonal maps and isotropic scaling, not to general invertible maps (unlike CCA).

    Parameters
    ----------""" + _SHARED_DOC + _NO_GUARD_DOC + """
    """)
def cka_distance(x, y, *, rtol: float | None = None, dtype: Any = None,
                 allow_underdetermined: bool = False) -> float:
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined,
                         metric="cka")
    return _one_way(a, b, metric="cka")


@_doc("""Angular Procrustes distance (Williams et al. 2021), a shape metric. Symmetric.

    ``d = arccos(||Xc^T Yc||_* / (||Xc||_F ||Yc||_F))`` on centred activations, with ``||.||_*`` the
    nuclear norm (sum of singular values): the angle between the two centred layers after the best
    rotation of one onto the other, the narrower one zero-padded. Equal to netrep's
    ``LinearMetric(alpha=1, center_columns=True, score_method="angular")``.

    A true metric: symmetric, satisfies the triangle inequality, and 0 exactly when one layer is
    the other up to a rotation (orthogonal map), an isotropic scaling and a translation. Not
    invariant to general invertible maps (unlike CCA), so the layers may have any widths and
    ``n_datapoints <= n_neurons`` is fine.

    Parameters
    ----------""" + _SHARED_DOC + _NO_GUARD_DOC + """

    Returns
    -------
    float in [0, pi/2], in radians
        ``pi/2`` when the layers' centred activations are orthogonal. Near 0 the arccos turns
        rounding of the ratio into an error of about ``sqrt(2 eps)``: about 1e-8 in float64.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(50, 4))
    >>> q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    >>> bool(procrustes_distance(x, 3 * x @ q + 1) < 1e-6)
    True
    """)
def procrustes_distance(x, y, *, rtol: float | None = None, dtype: Any = None,
                        allow_underdetermined: bool = False) -> float:
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined,
                         metric="procrustes")
    return _one_way(a, b, metric="procrustes")


@_doc("""``1 - cos`` between the two (uncentred) activation matrices, neuron by neuron.

    A baseline of the paper (Figs A5, A8): it needs the same neurons in both layers (same width,
    e.g. one network at two training steps) and, unlike CCA, is not invariant to linear maps.

    Parameters
    ----------""" + _SHARED_DOC + _NO_GUARD_DOC + """
    """)
def cosine_distance(x, y, *, rtol: float | None = None, dtype: Any = None,
                    allow_underdetermined: bool = False) -> float:
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined,
                         metric="cosine")
    return _one_way(a, b, metric="cosine")


@_doc("""Root-mean-square Euclidean distance between datapoints' activation vectors.

    ``sqrt(||X - Y||_F^2 / n_datapoints)``. A baseline of the paper (Figs A5, A8); needs layers of
    the same width, in the layer's own units (not in [0, 1]).

    Parameters
    ----------""" + _SHARED_DOC + _NO_GUARD_DOC + """
    """)
def euclidean_distance(x, y, *, rtol: float | None = None, dtype: Any = None,
                       allow_underdetermined: bool = False) -> float:
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined,
                         metric="euclidean")
    return _one_way(a, b, metric="euclidean")


def _one_way(a: Basis, b: Basis, **kwargs) -> float:
    """``d(a, b)``, warning (to the public function's caller) when the CCA is ill-posed."""
    res = compare(a, b, **kwargs)
    if res.ill_posed:
        _warn_ill_posed(res.rank_a, res.rank_b, a.n_datapoints, stacklevel=4)
    return res.forward
