"""Public one-pair functions: thin wrappers over :func:`prepare` and :func:`compare`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

import numpy as np

from cca_scale.core.basis import Basis, _host, prepare
from cca_scale.core.pairs import (
    DEFAULT_EPSILON,
    SvccaSide,
    check_epsilon,
    check_keep,
    check_metric,
    compare,
    original_pwcca_similarity,
    projection_weights,
)
from cca_scale.core.validation import check_not_constant, check_pair

__all__ = ["CCAResult", "cca", "cka_distance", "cosine_distance", "euclidean_distance",
           "mean_cca_distance", "pwcca_distance", "svcca_distance"]


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


def _prepare_pair(x, y, *, rtol, dtype, allow_underdetermined) -> tuple[Basis, Basis]:
    x, y = check_pair(x, y, dtype=dtype, allow_underdetermined=allow_underdetermined)
    kw = dict(rtol=rtol, dtype=dtype, allow_underdetermined=True)
    return prepare(x, name="x", **kw), prepare(y, name="y", **kw)


_SHARED_DOC = """
    x, y : arrays of shape (n_datapoints, n_neurons_x) and (n_datapoints, n_neurons_y)
        Two layers' activations over the same datapoints in the same order; NumPy or CuPy.
    rtol : float, optional
        Relative rank tolerance for null directions (see :func:`prepare`).
    dtype : {None, 'float32', 'float64'}
        Working precision: float64 by default. float32 agrees with float64 to about 1e-4 on
        well-conditioned data.
    allow_underdetermined : bool
        Accept ``n_datapoints <= n_neurons``, where CCA is degenerate (every rho tends to 1)."""


def cca(x, y, *, rtol: float | None = None, dtype: Any = None,
        allow_underdetermined: bool = False) -> CCAResult:
    """Canonical correlation analysis between two layers.

    Parameters
    ----------""" + _SHARED_DOC + """

    Returns
    -------
    CCAResult
    """
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    xp = array_namespace(a.q)
    u, rho, vt = xp.linalg.svd(a.q.T @ b.q, full_matrices=False)
    rho = xp.clip(rho, 0.0, 1.0)
    return CCAResult(rho=rho, x_basis=a, y_basis=b, x_rotation=u, y_rotation=vt.T,
                     x_weights=projection_weights(u.T @ a.r),
                     y_weights=projection_weights(vt @ b.r))


def pwcca_distance(x, y, *, variant: str = "paper", epsilon: float = DEFAULT_EPSILON,
                   rtol: float | None = None, dtype: Any = None,
                   allow_underdetermined: bool = False) -> float:
    """Projection weighted CCA distance ``d(x, y) = 1 - sum_i alpha_i rho_i`` (Morcos et al. 2018).

    Not symmetric: the weights ``alpha`` are those of the FIRST argument's canonical variates.

    Parameters
    ----------""" + _SHARED_DOC + """
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
        last step its value depends on the signs LAPACK gives singular vectors; NumPy's SVD is used
        so the signs, and the value, match the original.
    epsilon : float
        Only for ``variant='svcca'``: the original's variance cut-off and ridge (default 1e-10, as
        in its tutorials). That variant always computes in float64 NumPy, as the original does.

    Returns
    -------
    float in [0, 1]
    """
    check_metric("pwcca", variant)
    check_epsilon(epsilon)
    if variant == "svcca":
        return _original_pwcca_distance(x, y, epsilon=epsilon,
                                        allow_underdetermined=allow_underdetermined)
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    return compare_one_way(a, b, metric="pwcca", variant=variant, epsilon=epsilon)


def _original_pwcca_distance(x, y, *, epsilon: float, allow_underdetermined: bool) -> float:
    """``variant='svcca'`` for one pair: covariances exactly as the original forms them.

    ``np.cov`` of the stacked neurons, in float64 on the host, so that the matrix whose SVD signs
    decide the original's value is bit-identical to the original's (see
    :func:`~cca_scale.core.pairs.original_pwcca_similarity`); every later step is shared with the
    engine's basis route.
    """
    x, y = check_pair(x, y, dtype="float64", allow_underdetermined=allow_underdetermined)
    x, y = _host(x), _host(y)
    for arr, name in ((x, "x"), (y, "y")):
        check_not_constant(arr, name=name)
    dx = x.shape[1]
    cov = np.cov(x.T, y.T)
    sides = [SvccaSide(cov=cov[:dx, :dx], mean=x.mean(axis=0)),
             SvccaSide(cov=cov[dx:, dx:], mean=y.mean(axis=0))]
    similarity = original_pwcca_similarity(sides[0], sides[1], cov[:dx, dx:], x.shape[0], epsilon)
    return 1.0 - similarity[0]


def mean_cca_distance(x, y, *, rtol: float | None = None, dtype: Any = None,
                      allow_underdetermined: bool = False) -> float:
    """``1 - mean(rho)`` over all ``min(rank_x, rank_y)`` canonical correlations. Symmetric.

    Parameters
    ----------""" + _SHARED_DOC + """
    """
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    return compare_one_way(a, b, metric="mean_cca")


def svcca_distance(x, y, *, keep: int | float = 0.99, rtol: float | None = None,
                   dtype: Any = None, allow_underdetermined: bool = False) -> float:
    """SVCCA distance (Raghu et al. 2017): top SVD directions of each centred layer, then mean CCA.

    Parameters
    ----------""" + _SHARED_DOC + """
    keep : int or float
        An int: keep that many top directions of each layer. A float in (0, 1): keep the smallest
        number of directions whose squared singular values (variance) reach that fraction.
    """
    check_keep(keep)
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    return compare_one_way(a, b, metric="svcca", keep=keep)


def cka_distance(x, y, *, rtol: float | None = None, dtype: Any = None,
                 allow_underdetermined: bool = False) -> float:
    """``1 - linear CKA`` (Kornblith et al. 2019), the modern reference metric. Symmetric.

    ``CKA = ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` on centred activations. Invariant
    to orthogonal maps and isotropic scaling, not to general invertible maps (unlike CCA).

    Parameters
    ----------""" + _SHARED_DOC + """
    """
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    return compare_one_way(a, b, metric="cka")


def cosine_distance(x, y, *, rtol: float | None = None, dtype: Any = None,
                    allow_underdetermined: bool = False) -> float:
    """``1 - cos`` between the two (uncentred) activation matrices, neuron by neuron.

    A baseline of the paper (Figs A5, A8): it needs the same neurons in both layers (same width,
    e.g. one network at two training steps) and, unlike CCA, is not invariant to linear maps.

    Parameters
    ----------""" + _SHARED_DOC + """
    """
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    return compare_one_way(a, b, metric="cosine")


def euclidean_distance(x, y, *, rtol: float | None = None, dtype: Any = None,
                       allow_underdetermined: bool = False) -> float:
    """Root-mean-square Euclidean distance between datapoints' activation vectors.

    ``sqrt(||X - Y||_F^2 / n_datapoints)``. A baseline of the paper (Figs A5, A8); needs layers of
    the same width, in the layer's own units (not in [0, 1]).

    Parameters
    ----------""" + _SHARED_DOC + """
    """
    a, b = _prepare_pair(x, y, rtol=rtol, dtype=dtype, allow_underdetermined=allow_underdetermined)
    return compare_one_way(a, b, metric="euclidean")


def compare_one_way(a: Basis, b: Basis, **kwargs) -> float:
    return compare(a, b, **kwargs).forward
