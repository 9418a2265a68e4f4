"""Workflows that drive the engine for one of the paper's analyses: above the engine and the
analysis modules, which never import this one.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from cca_scale.analysis.baselines import BASELINE_METRICS, metrics_table
from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = ["compare_metrics", "training_dynamics"]


def training_dynamics(store: Any, *, layers: Sequence[str], metric: str = "pwcca",
                      networks: Any = None, out: str | None = None, client: Any = None,
                      **options: Any) -> dict[str, DistanceMatrix]:
    """Every recorded training step of each layer against that layer's last step (Fig 6).

    Parameters
    ----------
    store : ActivationStore or str
        Layers stored by training step (``store.add(..., step=S)``).
    layers : sequence of str
        The layers; each is one comparison, all in flight together on one cluster.
    metric, networks, **options
        As in :func:`cca_scale.compare` (``overwrite``, ``dtype``, ``n_workers``, ...).
    out : str, optional
        The engine output of each layer, a template with ``{layer}`` (e.g.
        ``'dynamics_{layer}.zarr'``); rerunning resumes each. None: temporary outputs on an
        embedded local cluster.
    client : distributed.Client, optional
        Default: one embedded LocalCluster for all the layers, closed at the end.

    Returns
    -------
    dict of str to DistanceMatrix
        Per layer, rows ``network@step`` (every step), columns the networks at their last step:
        what :func:`cca_scale.analysis.convergence_curves` reads.
    """
    from cca_scale.engine import submit
    from cca_scale.runtime.client import open_client

    layers = list(layers)
    if not layers or not all(isinstance(name, str) for name in layers):
        raise CcaScaleError(f"layers must be a non-empty list of layer names. Got {layers!r}.")
    if out is not None and (not isinstance(out, str) or "{layer}" not in out):
        raise CcaScaleError("out= must be a path template with '{layer}' (e.g. "
                            f"'dynamics_{{layer}}.zarr'): one output per layer. Got {out!r}.")
    if out is None and client is not None:
        raise CcaScaleError("With client=, pass out= (a template with '{layer}') at a location "
                            "every worker can reach.")
    with contextlib.ExitStack() as stack:
        if out is None:  # temporary outputs, reachable by the local cluster started below
            out = stack.enter_context(tempfile.TemporaryDirectory(prefix="cca-scale-")) + \
                "/{layer}.zarr"
        if client is None:
            client, _ = open_client(n_workers=options.pop("n_workers", None))
            stack.callback(client.close)  # also closes the cluster it started
        handles = {layer: submit(store, layer=layer, step="all", against_step="last",
                                 metric=metric, networks=networks, client=client,
                                 out=out.format(layer=layer), **options)
                   for layer in layers}
        return {layer: handle.result() for layer, handle in handles.items()}


def compare_metrics(source: Any, *, metrics: Sequence[str] = BASELINE_METRICS,
                    out: str | None = None, include_self: bool = False,
                    **kwargs: Any) -> pd.DataFrame:
    """Run several metrics on the same networks and combine them into one tidy table.

    For the paper's comparison of PWCCA with cosine and Euclidean distance (Figs A5, A8) and with
    linear CKA, the modern reference.

    Parameters
    ----------
    source : mapping of str to array, or an activation store
        In-memory layers by name (computed with :func:`cca_scale.in_memory_distances`), or a
        store (path or object) handed to the engine in ONE run, ``cca_scale.compare(source,
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
        :func:`cca_scale.in_memory_distances`.

    Returns
    -------
    pandas.DataFrame
        Columns ``metric, row, column, distance`` (see :func:`cca_scale.analysis.metrics_table`).

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
        from cca_scale.engine.in_memory import in_memory_distances

        matrices = {m: in_memory_distances(source, metric=m, **kwargs) for m in metrics}
    else:
        from cca_scale.engine import compare

        if isinstance(out, str) and "{metric}" in out:  # one output per metric, as before
            matrices = {m: compare(source, metric=m, out=out.format(metric=m), **kwargs)
                        for m in metrics}
        else:
            matrices = compare(source, metric=list(metrics), out=out, **kwargs)
    return metrics_table(matrices, include_self=include_self)
