"""A recurrent hidden state at sequence timestep t against t' (the paper's appendix A.3, Fig A3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.engine.in_memory import in_memory_distances
from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = ["timestep_distances"]


def timestep_distances(hidden: Any, metric: str = "pwcca", *, variant: str = "paper",
                       timesteps: Sequence[int] | None = None, **kwargs: Any) -> DistanceMatrix:
    """The T x T matrix of a hidden state at timestep t against the same state at t'.

    Parameters
    ----------
    hidden : array of shape (n_datapoints, n_timesteps, n_units)
        One layer's hidden (or cell) state over sequences: datapoint, timestep, unit. NumPy or
        CuPy.
    metric : {'pwcca', 'mean_cca', 'svcca', 'cka', 'cosine', 'euclidean'}
        Cosine and Euclidean, the paper's baselines (Figs A2, A4), work here since every timestep
        has the same units.
    variant : {'paper', 'svcca'}
        For PWCCA.
    timesteps : sequence of int, optional
        The timesteps to compare (default all), in that order.
    **kwargs
        ``keep``, ``epsilon``, ``rtol``, ``dtype``, ``allow_underdetermined``, as in
        :func:`cca_scale.in_memory_distances`.

    Returns
    -------
    DistanceMatrix
        ``values[i, j] = d(state at t_i, state at t_j)``, labels ``'t=0'``, ``'t=1'``, ...,
        ``row_info``/``col_info`` column ``timestep``, ``metadata['kind'] = 'timesteps'``. The
        diagonal is computed, so it is 0 up to rounding for the CCA metrics.

    Examples
    --------
    >>> D = timestep_distances(np.random.default_rng(0).normal(size=(200, 4, 8)))
    >>> D.shape, D.labels[:2]
    ((4, 4), ('t=0', 't=1'))
    """
    shape = getattr(hidden, "shape", None)
    if shape is None or len(shape) != 3:
        raise CcaScaleError(
            f"hidden must be 3-D (n_datapoints, n_timesteps, n_units); got shape {shape}. A "
            "batch-first RNN output (batch, time, units) has this layout; transpose a "
            "time-first one with .transpose(1, 0, 2)."
        )
    n_steps = int(shape[1])
    if timesteps is None:
        chosen = list(range(n_steps))
    else:
        chosen = [int(t) for t in timesteps]
        bad = [t for t in chosen if not 0 <= t < n_steps]
        if bad or not chosen or len(set(chosen)) != len(chosen):
            raise CcaScaleError(
                f"timesteps must be distinct ints in [0, {n_steps - 1}]; got {list(timesteps)}."
            )
    labels = [f"t={t}" for t in chosen]
    info = pd.DataFrame({"timestep": np.asarray(chosen, dtype=np.int64)},
                        index=pd.Index(labels, name="network"))
    acts = {label: hidden[:, t, :] for label, t in zip(labels, chosen, strict=True)}
    D = in_memory_distances(acts, metric=metric, variant=variant, info=info, **kwargs)
    metadata = dict(D.metadata, kind="timesteps",
                    computed_by="cca_scale.analysis.timestep_distances")
    return DistanceMatrix(D.values, D.row_labels, D.col_labels, metadata, D.row_info, D.col_info,
                          D.diagnostics)
