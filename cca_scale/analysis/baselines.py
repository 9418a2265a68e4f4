"""PWCCA against the paper's baselines (cosine, Euclidean; Figs A5, A8) and linear CKA.

For a handful of in-memory layers, :func:`compare_activations` computes a full distance matrix with
the core (each layer factored once, each pair compared once in both directions); for a store, the
engine (``cca_scale.compare``) does the same at scale. :func:`compare_metrics` runs a list of
metrics either way and returns one tidy table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.analysis._common import check_distance_matrix
from cca_scale.core.registry import DEFAULT_EPSILON, METRICS, check_metric
from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = ["BASELINE_METRICS", "METRIC_COLUMNS", "compare_activations", "compare_metrics",
           "metrics_table"]

#: The default metrics of :func:`compare_metrics`: PWCCA and the baselines (every metric of the
#: registry outside the CCA family, shape metrics such as procrustes excepted: ask for them).
BASELINE_METRICS = ("pwcca",) + tuple(name for name, m in METRICS.items()
                                      if not m.cca_family and name != "procrustes")
#: Columns of :func:`metrics_table`, in order.
METRIC_COLUMNS = ("metric", "row", "column", "distance")


def compare_activations(activations: Mapping[str, Any], *, metric: str = "pwcca",
                        variant: str = "paper", keep: int | float = 0.99,
                        epsilon: float | None = None, rtol: float | None = None,
                        dtype: Any = None, info: pd.DataFrame | None = None,
                        allow_underdetermined: bool = False) -> DistanceMatrix:
    """All-pairs distances between a few in-memory layers, with the core one-pair math.

    Parameters
    ----------
    activations : mapping of str to array of shape (n_datapoints, n_neurons)
        Layers by name (network id, ``'t=3'``, ...), all over the same datapoints; NumPy or CuPy.
    metric : {'pwcca', 'mean_cca', 'svcca', 'cka', 'cosine', 'euclidean'}
    variant : {'paper', 'svcca'}
        For PWCCA (see :func:`cca_scale.pwcca_distance`).
    keep : int or float
        For SVCCA (see :func:`cca_scale.svcca_distance`).
    epsilon : float, optional
        For ``variant='svcca'`` (default 1e-10).
    rtol, dtype, allow_underdetermined
        As in :func:`cca_scale.prepare`.
    info : pandas.DataFrame, optional
        Attributes of each layer, indexed by name; become ``row_info`` and ``col_info``.

    Returns
    -------
    DistanceMatrix
        Square, ``values[i, j] = d(layer i, layer j)`` (PWCCA with layer i's weights), with
        diagnostics ``rank_row``, ``rank_col``, ``rho_max``, ``rho_min``.

    Notes
    -----
    Each layer is factored once (:func:`cca_scale.prepare`) and each unordered pair compared once
    (:func:`cca_scale.compare_bases`, both directions from one SVD); the diagonal is computed too,
    not set, so it is 0 only up to rounding (about 1e-15). ``variant='svcca'`` calls
    :func:`cca_scale.pwcca_distance` for every ordered pair, the route that reproduces the
    original implementation bit for bit. For many networks use the engine, ``cca_scale.compare``.
    """
    from cca_scale.core import compare, prepare, pwcca_distance

    metric_info = check_metric(metric, variant)
    metric_info.check_options(keep=keep)
    if not isinstance(activations, Mapping) or not activations:
        raise CcaScaleError(
            "activations must be a non-empty mapping from name to (n_datapoints, n_neurons) "
            f"array. Got {type(activations).__name__} instead."
        )
    eps = DEFAULT_EPSILON if epsilon is None else float(epsilon)
    labels = [str(k) for k in activations]
    if len(set(labels)) != len(labels):
        raise CcaScaleError(f"The layer names {labels} repeat once converted to text.")
    arrays = list(activations.values())
    n = len(arrays)
    values = np.full((n, n), np.nan)
    diag = {k: np.full((n, n), np.nan) for k in ("rank_row", "rank_col", "rho_max", "rho_min")}
    if metric == "pwcca" and variant == "svcca":
        for i in range(n):
            for j in range(n):
                values[i, j] = pwcca_distance(arrays[i], arrays[j], variant="svcca", epsilon=eps,
                                              allow_underdetermined=allow_underdetermined)
        diag = {}
    else:
        bases = [prepare(a, rtol=rtol, dtype=dtype, name=label, network=label,
                         allow_underdetermined=allow_underdetermined or not metric_info.cca_family)
                 for a, label in zip(arrays, labels, strict=True)]
        for i in range(n):
            for j in range(i, n):
                res = compare(bases[i], bases[j], metric=metric, variant=variant, keep=keep,
                              epsilon=eps)
                values[i, j], values[j, i] = res.forward, res.backward
                for (a, b), rank_a, rank_b in (((i, j), res.rank_a, res.rank_b),
                                               ((j, i), res.rank_b, res.rank_a)):
                    diag["rank_row"][a, b], diag["rank_col"][a, b] = rank_a, rank_b
                    diag["rho_max"][a, b], diag["rho_min"][a, b] = res.rho_max, res.rho_min
    metadata: dict[str, Any] = {"metric": metric, "variant": variant,
                                "computed_by": "cca_scale.analysis.compare_activations"}
    used = metric_info.used_options(variant=variant, keep=keep, epsilon=eps)
    metadata.update({k: used[k] for k in ("keep", "epsilon") if used[k] is not None})
    return DistanceMatrix(values, labels, labels, metadata, info, info, diag)


def metrics_table(distances: Mapping[str, DistanceMatrix], *,
                  include_self: bool = False) -> pd.DataFrame:
    """One tidy table of several metrics' matrices over the same networks.

    Parameters
    ----------
    distances : mapping of str to DistanceMatrix
        Metric name to its matrix.
    include_self : bool
        Keep the pairs of a network with itself (dropped by default).

    Returns
    -------
    pandas.DataFrame
        Columns ``metric, row, column, distance``: one line per metric and directed pair, in the
        matrices' row-major order. Join ``D.row_info`` on ``row`` for attributes.
    """
    if not isinstance(distances, Mapping) or not distances:
        raise CcaScaleError("distances must be a non-empty mapping from metric name to "
                            "DistanceMatrix.")
    frames = []
    for metric, D in distances.items():
        check_distance_matrix(D, name=f"distances[{metric!r}]")
        rows = np.repeat(np.asarray(D.row_labels, dtype=object), len(D.col_labels))
        cols = np.tile(np.asarray(D.col_labels, dtype=object), len(D.row_labels))
        frame = pd.DataFrame({"metric": str(metric), "row": rows, "column": cols,
                              "distance": D.values.ravel()})
        if not include_self:
            frame = frame[frame["row"] != frame["column"]]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[list(METRIC_COLUMNS)]


def compare_metrics(source: Any, *, metrics: Sequence[str] = BASELINE_METRICS,
                    out: str | None = None, include_self: bool = False,
                    **kwargs: Any) -> pd.DataFrame:
    """Run several metrics on the same networks and combine them into one tidy table.

    For the paper's comparison of PWCCA with cosine and Euclidean distance (Figs A5, A8) and with
    linear CKA, the modern reference.

    Parameters
    ----------
    source : mapping of str to array, or an activation store
        In-memory layers by name (computed with :func:`compare_activations`), or a store (path or
        object) handed to the engine in ONE run, ``cca_scale.compare(source,
        metric=list(metrics), out=out, **kwargs)``: every metric from the same cross products.
    metrics : sequence of str
        Default ``('pwcca', 'cka', 'cosine', 'euclidean')``. Cosine and Euclidean compare neuron by
        neuron, so they need layers of equal width (one network across steps or timesteps).
    out : str, optional
        Only with a store: the engine output holding every metric (``OUT/<metric>/``; rerunning
        resumes it, and adding a metric computes that one only). A template with ``{metric}``
        (the one-output-per-metric form of earlier versions) is still accepted: one run per
        metric. None: a temporary output on the embedded local cluster (see
        :func:`cca_scale.compare`).
    include_self : bool
        Keep the pairs of a network with itself.
    **kwargs
        Passed on: ``layer=...`` etc. for the engine; ``variant``, ``keep``, ``rtol``... for
        :func:`compare_activations`.

    Returns
    -------
    pandas.DataFrame
        Columns ``metric, row, column, distance`` (see :func:`metrics_table`).

    Examples
    --------
    >>> table = compare_metrics({"a": xa, "b": xb, "c": xc})             # doctest: +SKIP
    >>> table.pivot_table(index=["row", "column"], columns="metric")   # doctest: +SKIP
    >>> compare_metrics("acts.zarr", layer="fc1", out="fc1_metrics.zarr")  # doctest: +SKIP
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics or len(set(metrics)) != len(metrics):
        raise CcaScaleError(f"metrics must be a non-empty list of distinct names; got {metrics}.")
    if isinstance(source, Mapping):
        if out is not None:
            raise CcaScaleError("out= is for a store (engine outputs); in-memory activations are "
                                "compared in memory.")
        matrices = {m: compare_activations(source, metric=m, **kwargs) for m in metrics}
    else:
        from cca_scale.engine import compare

        if isinstance(out, str) and "{metric}" in out:  # one output per metric, as before
            matrices = {m: compare(source, metric=m, out=out.format(metric=m), **kwargs)
                        for m in metrics}
        else:
            matrices = compare(source, metric=list(metrics), out=out, **kwargs)
    return metrics_table(matrices, include_self=include_self)
