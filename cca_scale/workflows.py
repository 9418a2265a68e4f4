"""Workflows that drive the engine for one of the paper's analyses: above the engine and the
analysis modules, which never import this one.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import Any, Sequence

from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = ["training_dynamics"]


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
