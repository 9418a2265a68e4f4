"""Hierarchical clustering of networks by their distances (the paper's Fig 5, Section 3.3)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from cca_scale.analysis._common import attribute_values as _attribute_values
from cca_scale.analysis._common import check_finite
from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = ["Agreement", "ClusterResult", "LINKAGE_METHODS", "cluster", "cluster_agreement"]

#: SciPy linkage methods that are valid on arbitrary (non-Euclidean) distances.
LINKAGE_METHODS = ("average", "complete", "single", "weighted")
_EUCLIDEAN_ONLY = ("ward", "centroid", "median")
_NEGATIVE_TOLERANCE = 1e-12  # rounding below 0 that is clipped; anything lower is refused


class Agreement(NamedTuple):
    """Agreement of a clustering with a reference labelling (both 1 for identical partitions)."""

    ari: float
    """Adjusted Rand index: 1 identical, about 0 for chance, can be negative."""
    nmi: float
    """Normalised mutual information (arithmetic normalisation), in [0, 1]."""


def cluster_agreement(labels: Any, truth: Any) -> Agreement:
    """Adjusted Rand index and normalised mutual information between two labellings.

    Parameters
    ----------
    labels, truth : array-like of shape (n_networks,), or pandas.Series
        Cluster labels and reference values (any hashable values: learning rates, regimes, ...).
        Two Series are aligned on their index (network ids); otherwise both are taken in order.

    Returns
    -------
    Agreement
        ``(ari, nmi)``, a named tuple. Both are invariant to renaming the clusters.

    Examples
    --------
    >>> cluster_agreement([1, 1, 2, 2], ["a", "a", "b", "b"])
    Agreement(ari=1.0, nmi=1.0)
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    if isinstance(labels, pd.Series) and isinstance(truth, pd.Series):
        missing = labels.index.difference(truth.index)
        if len(missing):
            raise CcaScaleError(
                f"truth has no value for {len(missing)} network(s), e.g. {list(missing[:5])}."
            )
        truth = truth.reindex(labels.index)
    a, b = np.asarray(labels), np.asarray(truth)
    if a.ndim != 1 or a.shape != b.shape:
        raise CcaScaleError(
            f"labels and truth must be 1-D of the same length; got shapes {a.shape} and {b.shape}."
        )
    if pd.isna(b).any():
        raise CcaScaleError(f"truth has {int(pd.isna(b).sum())} missing value(s).")
    # Compare values as strings so that mixed types (1 and '1') and floats behave as categories.
    b = np.array([repr(v) if isinstance(v, float) else str(v) for v in b.tolist()])
    return Agreement(float(adjusted_rand_score(b, a)), float(normalized_mutual_info_score(b, a)))


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """Flat clusters of networks and the hierarchy they were cut from.

    Attributes
    ----------
    labels : pandas.Series of int, indexed by network id
        Cluster of each network, ``1..k`` (SciPy's ``fcluster`` convention), numbered in
        dendrogram leaf order so that cluster 1 is the first block of the ordered heatmap.
    linkage : ndarray of shape (n_networks - 1, 4)
        SciPy linkage matrix of the symmetrised distances.
    k : int
        Number of clusters.
    silhouette : float
        Mean silhouette of ``labels`` on the symmetrised distances (``metric='precomputed'``);
        NaN when ``k == 1`` or ``k == n_networks``, where it is undefined.
    method : str
        The linkage method.
    distances : DistanceMatrix
        The symmetrised matrix that was clustered, with the networks' attributes.
    silhouette_by_k : pandas.Series
        Silhouette of each candidate ``k`` when ``k`` was chosen by silhouette, else empty.
    chosen_by : str
        ``'n_clusters'``, ``'distance_threshold'`` or ``'silhouette'``.
    """

    labels: pd.Series
    linkage: np.ndarray
    k: int
    silhouette: float
    method: str
    distances: DistanceMatrix
    silhouette_by_k: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    chosen_by: str = "n_clusters"

    @property
    def order(self) -> np.ndarray:
        """Positions of the networks in dendrogram leaf order, shape (n_networks,)."""
        from scipy.cluster.hierarchy import leaves_list

        return leaves_list(self.linkage)

    @property
    def ordered_labels(self) -> list[str]:
        """Network ids in dendrogram leaf order."""
        return [self.distances.row_labels[i] for i in self.order]

    def members(self) -> dict[int, list[str]]:
        """``{cluster: [network ids in leaf order]}``."""
        ordered = self.labels.loc[self.ordered_labels]
        return {int(c): list(ordered.index[ordered == c]) for c in sorted(ordered.unique())}

    def agreement(self, attribute_values: Any) -> Agreement:
        """ARI and NMI of the clusters against an attribute.

        Parameters
        ----------
        attribute_values : str, mapping, Series or sequence
            An attribute name of the networks (e.g. ``'lr'``), or the values per network id, or a
            sequence in the matrix's order.
        """
        truth = _attribute_values(self.distances, attribute_values, name="attribute_values")
        return cluster_agreement(self.labels, truth)

    def to_frame(self) -> pd.DataFrame:
        """One row per network in leaf order: ``network``, ``cluster`` and its attributes."""
        info = self.distances.row_info.loc[self.ordered_labels]
        frame = pd.DataFrame({"network": self.ordered_labels,
                              "cluster": self.labels.loc[self.ordered_labels].to_numpy()})
        extra = info.reset_index(drop=True).drop(columns=["network", "cluster"], errors="ignore")
        return pd.concat([frame, extra], axis=1)

    def __repr__(self) -> str:
        sil = "nan" if np.isnan(self.silhouette) else f"{self.silhouette:.3f}"
        return (f"ClusterResult(k={self.k}, n_networks={len(self.labels)}, method={self.method!r}, "
                f"silhouette={sil}, chosen_by={self.chosen_by!r})")


def _as_square_matrix(D: Any) -> DistanceMatrix:
    if isinstance(D, DistanceMatrix):
        _ = D.labels  # refuses rectangular matrices with an explanation
        return D
    arr = np.asarray(D, dtype=np.float64)
    if arr.ndim == 1:
        from scipy.spatial.distance import squareform

        n = int(round((1 + np.sqrt(1 + 8 * arr.size)) / 2))
        if n * (n - 1) // 2 != arr.size:
            raise CcaScaleError(
                f"A 1-D input must be a condensed distance vector of length n(n-1)/2; got "
                f"length {arr.size}."
            )
        check_finite(arr, what="The condensed distance vector")
        arr = squareform(arr, checks=False)
    elif arr.ndim == 2 and arr.shape[0] == arr.shape[1]:
        warnings.warn(
            "cluster() got a bare square array; it looks like an uncondensed distance matrix and "
            "is treated as one (values[i, j] = d(i, j)), symmetrised as (D + D.T) / 2. Pass a "
            "cca_scale.DistanceMatrix to keep network ids and attributes, or a condensed vector.",
            _cluster_warning(), stacklevel=3,
        )
    else:
        raise CcaScaleError(
            f"cluster() needs a square DistanceMatrix (or a condensed vector); got an array of "
            f"shape {arr.shape}."
        )
    labels = [str(i) for i in range(arr.shape[0])]
    return DistanceMatrix(arr, labels, labels)


def _cluster_warning():
    from scipy.cluster.hierarchy import ClusterWarning

    return ClusterWarning


def _check_options(method: str, n_clusters: Any, distance_threshold: Any, n: int) -> None:
    if method in _EUCLIDEAN_ONLY:
        raise CcaScaleError(
            f"method={method!r} is only valid for Euclidean distances (SciPy's linkage assumes "
            f"them), and CCA distances are not. Use one of {list(LINKAGE_METHODS)}."
        )
    if method not in LINKAGE_METHODS:
        raise CcaScaleError(
            f"The 'method' parameter must be one of {list(LINKAGE_METHODS)}. Got {method!r} "
            "instead."
        )
    if n_clusters is not None and distance_threshold is not None:
        raise CcaScaleError(
            "Give at most one of n_clusters and distance_threshold (neither: k is chosen by "
            "silhouette)."
        )
    if n_clusters is not None:
        if not isinstance(n_clusters, (int, np.integer)) or isinstance(n_clusters, bool) \
                or not 1 <= n_clusters <= n:
            raise CcaScaleError(
                f"The 'n_clusters' parameter must be an int in [1, {n}] (the number of "
                f"networks). Got {n_clusters!r} instead."
            )
    if distance_threshold is not None:
        t = float(distance_threshold)
        if not np.isfinite(t) or t < 0:
            raise CcaScaleError(
                f"The 'distance_threshold' parameter must be a finite number >= 0. Got "
                f"{distance_threshold!r} instead."
            )
    if n_clusters is None and distance_threshold is None and n < 3:
        raise CcaScaleError(
            f"Choosing k by silhouette needs at least 3 networks; got {n}. Pass n_clusters."
        )


def _silhouette(square: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    k = len(np.unique(labels))
    if k < 2 or k >= len(labels):
        return float("nan")
    return float(silhouette_score(square, labels, metric="precomputed"))


def _leaf_ordered(raw: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Renumber clusters 1..k by first appearance in dendrogram leaf order."""
    mapping: dict[int, int] = {}
    for pos in order:
        mapping.setdefault(int(raw[pos]), len(mapping) + 1)
    return np.array([mapping[int(c)] for c in raw], dtype=np.int64)


def cluster(D: Any, *, n_clusters: int | None = None, distance_threshold: float | None = None,
            method: str = "average") -> ClusterResult:
    """Cluster networks hierarchically on their symmetrised distances.

    Parameters
    ----------
    D : DistanceMatrix
        A square matrix (rows and columns the same networks). It is symmetrised explicitly with
        ``D.symmetric(how='mean')`` (PWCCA is directional) and handed to SciPy's ``linkage`` in
        condensed form. A bare square ndarray is accepted with a ``ClusterWarning`` (as SciPy's
        "looks like an uncondensed distance matrix"); a condensed 1-D vector is accepted as is.
    n_clusters : int, optional
        Cut the tree into exactly this many clusters.
    distance_threshold : float, optional
        Cut the tree at this height: networks whose cophenetic distance is at most the threshold
        share a cluster (``fcluster(..., criterion='distance')``).
    method : {'average', 'complete', 'single', 'weighted'}
        SciPy linkage method. ``'ward'``, ``'centroid'`` and ``'median'`` are refused: they assume
        Euclidean distances.

    Returns
    -------
    ClusterResult

    Raises
    ------
    CcaScaleError
        A rectangular matrix, NaN/Inf distances (pairs not computed yet), negative distances,
        both ``n_clusters`` and ``distance_threshold``, or an unknown method.

    Notes
    -----
    With neither ``n_clusters`` nor ``distance_threshold``, ``k`` is the number in
    ``2 .. n_networks - 1`` whose cut has the largest mean silhouette on the precomputed
    symmetrised distances (the smallest such ``k`` on ties). Silhouette never proposes ``k = 1``:
    a low best silhouette (below about 0.25) means there is little cluster structure.

    Examples
    --------
    >>> result = cca_scale.cluster(D)                      # doctest: +SKIP
    >>> result.k, result.agreement("lr")                   # doctest: +SKIP
    (5, Agreement(ari=0.97, nmi=0.96))
    """
    from scipy.cluster.hierarchy import cut_tree, fcluster, leaves_list, linkage

    D = _as_square_matrix(D)
    n = len(D.row_labels)
    _check_options(method, n_clusters, distance_threshold, n)
    off = D.values[~np.eye(n, dtype=bool)]  # the diagonal is set to 0 by symmetric()
    check_finite(off, what=f"The {n} x {n} distance matrix (off the diagonal)")
    low = float(off.min()) if off.size else 0.0
    if low < -_NEGATIVE_TOLERANCE:
        raise CcaScaleError(
            f"Distances must be >= 0; the matrix has a minimum of {low!r}."
        )
    sym = D.symmetric(how="mean")  # (D + D.T) / 2 with the diagonal set to 0
    square = np.clip(sym.values, 0.0, None)
    sym = DistanceMatrix(square, sym.row_labels, sym.col_labels, sym.metadata, sym.row_info,
                         sym.col_info)
    if n == 1:
        labels = pd.Series([1], index=pd.Index(sym.row_labels, name="network"), name="cluster")
        return ClusterResult(labels, np.zeros((0, 4)), 1, float("nan"), method, sym,
                             chosen_by="n_clusters" if distance_threshold is None
                             else "distance_threshold")
    Z = linkage(sym.condensed(), method=method)
    order = leaves_list(Z)
    by_k = pd.Series(dtype=float, name="silhouette")
    if distance_threshold is not None:
        raw = fcluster(Z, t=float(distance_threshold), criterion="distance")
        chosen_by = "distance_threshold"
    else:
        if n_clusters is None:
            candidates = list(range(2, n))
            cuts = cut_tree(Z, n_clusters=candidates)
            scores = {k: _silhouette(square, cuts[:, i]) for i, k in enumerate(candidates)}
            by_k = pd.Series(scores, name="silhouette", dtype=float)
            by_k.index.name = "k"
            best = by_k.max()
            k_best = int(by_k.index[by_k >= best - 1e-12][0])
            chosen_by = "silhouette"
        else:
            k_best = int(n_clusters)
            chosen_by = "n_clusters"
        raw = cut_tree(Z, n_clusters=k_best).ravel()
    flat = _leaf_ordered(np.asarray(raw), order)
    k = int(flat.max())
    labels = pd.Series(flat, index=pd.Index(sym.row_labels, name="network"), name="cluster")
    return ClusterResult(labels=labels, linkage=Z, k=k, silhouette=_silhouette(square, flat),
                         method=method, distances=sym, silhouette_by_k=by_k, chosen_by=chosen_by)
