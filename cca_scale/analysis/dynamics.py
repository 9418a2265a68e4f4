"""Training dynamics: convergence of each layer to its final representation (the paper's Fig 6)
and the signal/noise split of CCA directions (Fig 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.analysis._common import check_finite, named_matrices
from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = [
    "CURVE_COLUMNS",
    "ConvergenceOrder",
    "SignalNoiseSplit",
    "convergence_curves",
    "convergence_order",
    "rho_over_training",
    "signal_noise_split",
]

#: Columns of :func:`convergence_curves`' table, in order.
CURVE_COLUMNS = ("layer", "network", "step", "distance")


# -- convergence curves ------------------------------------------------------------------------
def _network_and_step(info: pd.DataFrame, labels: Sequence[str], side: str,
                      need_step: bool) -> tuple[list[str], list[float | None]]:
    networks, steps = [], []
    for pos, label in enumerate(labels):
        net, step = label, None
        if "@" in label:
            net, _, tail = label.rpartition("@")
            try:
                step = float(tail)
            except ValueError:
                pass
        if "network" in info.columns and pd.notna(info["network"].iloc[pos]):
            net = str(info["network"].iloc[pos])
        if "step" in info.columns and pd.notna(info["step"].iloc[pos]):
            step = float(info["step"].iloc[pos])
        if step is None and need_step:
            raise CcaScaleError(
                f"The {side} {label!r} has no training step: give the matrix a row_info column "
                "'step' (cca_scale.compare(..., step='all') does) or label rows 'net@step'."
            )
        networks.append(net)
        steps.append(step)
    return networks, steps


def _curves_from_matrix(layer: str, D: DistanceMatrix) -> pd.DataFrame:
    row_nets, row_steps = _network_and_step(D.row_info, D.row_labels, "row", need_step=True)
    col_nets, col_steps = _network_and_step(D.col_info, D.col_labels, "column", need_step=False)
    n_cols = len(D.col_labels)
    records = []
    for i, (net, step) in enumerate(zip(row_nets, row_steps, strict=True)):
        if n_cols == 1:
            j = 0
        else:
            candidates = [j for j in range(n_cols) if col_nets[j] == net]
            if not candidates:
                raise CcaScaleError(
                    f"Layer {layer!r}: no column of network {net!r} to compare row "
                    f"{D.row_labels[i]!r} against; columns are {list(D.col_labels)[:10]}."
                )
            if len(candidates) > 1:
                if any(col_steps[j] is None for j in candidates):
                    raise CcaScaleError(
                        f"Layer {layer!r}: network {net!r} has several columns without steps; "
                        "cannot tell which is the final step."
                    )
                candidates = [max(candidates, key=lambda j: col_steps[j])]
            j = candidates[0]
        records.append((layer, net, step, float(D.values[i, j])))
    return pd.DataFrame(records, columns=list(CURVE_COLUMNS))


def convergence_curves(data: Any, *, layers: Sequence[str] | None = None,
                       normalise: bool = False) -> pd.DataFrame:
    """Distance of each layer at each training step to the same layer at the final step.

    Parameters
    ----------
    data : DataFrame, DistanceMatrix, sequence or mapping of DistanceMatrix
        Either a tidy table with columns ``layer``, ``step``, ``distance`` (and optionally
        ``network``), or one DistanceMatrix per layer whose rows are the layer at each step (a
        row_info column ``step``, or labels ``'net@step'``, as ``cca_scale.compare(store,
        layer=..., step='all', against_step=final)`` gives) and whose columns are the final
        step. With one column every row is compared with it; with several, each row with the
        column of its own network (the latest step when a network has several columns).
    layers : sequence of str, optional
        Layer names (for matrices: one per matrix; default their ``metadata['layer']``).
    normalise : bool
        Divide each network's curve by its distance at the first recorded step, so that layers
        that start further from their final state are not counted as converging later (the
        paper's Fig 6 is in raw distance; both views are worth a look).

    Returns
    -------
    pandas.DataFrame
        Columns ``layer, network, step, distance``, sorted by layer (in the given order), network
        and step. ``network`` is empty text when the input had none.

    Notes
    -----
    The value used is ``D[row, column] = d(layer at step t, layer at the final step)``: for PWCCA
    the weights are those of the layer at step ``t``.
    """
    if isinstance(data, pd.DataFrame):
        missing = [c for c in ("layer", "step", "distance") if c not in data.columns]
        if missing:
            raise CcaScaleError(
                f"The curves table needs columns ['layer', 'step', 'distance']; missing {missing}."
            )
        table = data.copy()
        if "network" not in table.columns:
            table["network"] = ""
        table = table[list(CURVE_COLUMNS)]
        table["layer"] = table["layer"].astype(str)
        table["network"] = table["network"].astype(str)
        order = list(pd.unique(table["layer"])) if layers is None else [str(x) for x in layers]
        unknown = sorted(set(table["layer"]) - set(order))
        if unknown:
            raise CcaScaleError(f"Layers {unknown} of the table are not in layers={order}.")
        table = table[table["layer"].isin(order)]
    else:
        frames = [_curves_from_matrix(name, D) for name, D in named_matrices(data, names=layers)]
        table = pd.concat(frames, ignore_index=True)
        order = list(pd.unique(table["layer"]))
    table["step"] = pd.to_numeric(table["step"])
    table["distance"] = table["distance"].astype(np.float64)
    check_finite(table["distance"].to_numpy(), what="The convergence curves")
    rank = {name: i for i, name in enumerate(order)}
    table = table.assign(_rank=table["layer"].map(rank))
    table = table.sort_values(["_rank", "network", "step"], kind="stable").drop(columns="_rank")
    if normalise:
        first = table.groupby(["layer", "network"], sort=False)["distance"].transform("first")
        if (first <= 0).any():
            raise CcaScaleError("Cannot normalise: a curve starts at distance 0 (the first step "
                                "already equals the final one).")
        table["distance"] = table["distance"] / first
    return table.reset_index(drop=True)


@dataclass(frozen=True)
class ConvergenceOrder:
    """When each layer converged, and whether layers converged bottom-up.

    Attributes
    ----------
    steps : pandas.Series of float, indexed by layer (bottom to top)
        First step from which the layer's distance stays below ``threshold``; NaN if it never
        does by the last step.
    threshold : float
    bottom_up : bool
        Every layer converged no later than the layer above it (see :func:`convergence_order`).
    curves : pandas.DataFrame
        The per-layer curve used (mean over networks): columns ``layer, step, distance``.
    """

    steps: pd.Series
    threshold: float
    bottom_up: bool
    curves: pd.DataFrame

    @property
    def layer_order(self) -> tuple[str, ...]:
        return tuple(self.steps.index)

    def to_frame(self) -> pd.DataFrame:
        """``layer, converged_step, converged`` in layer order."""
        return pd.DataFrame({"layer": list(self.steps.index),
                             "converged_step": self.steps.to_numpy(),
                             "converged": self.steps.notna().to_numpy()})


def _converged_step(steps: np.ndarray, distance: np.ndarray, threshold: float) -> float:
    above = np.flatnonzero(~(distance < threshold))
    if above.size == 0:
        return float(steps[0])
    last = int(above[-1])
    return float(steps[last + 1]) if last + 1 < steps.size else float("nan")


def convergence_order(data: Any, *, threshold: float, layer_order: Sequence[str] | None = None,
                      strict: bool = False) -> ConvergenceOrder:
    """The step at which each layer converges, and whether the layers converge bottom-up.

    Parameters
    ----------
    data : DataFrame or DistanceMatrices
        Convergence curves, as taken by :func:`convergence_curves`. With several networks the
        curves are averaged over networks at each step first.
    threshold : float
        A layer has converged at the first step from which its distance to the final step is
        below ``threshold`` (strictly) at that step and at every later stored step.
    layer_order : sequence of str, optional
        Layers from the input (bottom) to the output (top); default their order in ``data``.
        Every layer in ``data`` must be listed.
    strict : bool
        Require each layer to converge strictly before the layer above it (no ties).

    Returns
    -------
    ConvergenceOrder
        ``bottom_up`` is True when at least one layer converged and the converged steps never
        decrease from bottom to top (strictly increase with ``strict=True``), a layer that never
        converged counting as converging after the last step.
    """
    threshold = float(threshold)
    if not np.isfinite(threshold):
        raise CcaScaleError(f"The 'threshold' must be finite. Got {threshold!r} instead.")
    curves = convergence_curves(data)
    present = list(pd.unique(curves["layer"]))
    if layer_order is None:
        order = present
    else:
        order = [str(x) for x in layer_order]
        missing = [x for x in order if x not in present]
        extra = [x for x in present if x not in order]
        if missing or extra or len(set(order)) != len(order):
            raise CcaScaleError(
                f"layer_order must list each layer of the curves once; the curves have "
                f"{present}, layer_order is {order}."
            )
    mean = (curves.groupby(["layer", "step"], sort=False)["distance"].mean().reset_index())
    result = {}
    for layer in order:
        part = mean[mean["layer"] == layer].sort_values("step")
        result[layer] = _converged_step(part["step"].to_numpy(dtype=float),
                                        part["distance"].to_numpy(), threshold)
    steps = pd.Series(result, name="converged_step", dtype=float)
    steps.index.name = "layer"
    ordered = steps.fillna(np.inf).to_numpy()  # never converged: after every stored step
    lower, upper = ordered[:-1], ordered[1:]
    monotone = np.all(upper > lower) if strict else np.all(upper >= lower)
    bottom_up = bool(steps.notna().any() and monotone)
    rank = {name: i for i, name in enumerate(order)}
    mean = mean.assign(_r=mean["layer"].map(rank)).sort_values(["_r", "step"]).drop(columns="_r")
    return ConvergenceOrder(steps=steps, threshold=threshold, bottom_up=bottom_up,
                            curves=mean.reset_index(drop=True))


# -- signal and noise (Fig 1) ------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SignalNoiseSplit:
    """CCA similarity over training of the most and least converged directions (Fig 1d-f).

    Attributes
    ----------
    steps : tuple
        Label of each later step, in the order given.
    signal, noise : ndarray of shape (n_steps,)
        Mean canonical correlation of S (the ``n_directions`` directions of the mid-training
        layer best correlated with the early layer) and of B (the least correlated ones) with
        the layer at each step.
    rho : ndarray of shape (k,)
        Canonical correlations between the early and the mid-training layer, descending.
    n_directions : int
    """

    steps: tuple
    signal: np.ndarray
    noise: np.ndarray
    rho: np.ndarray
    n_directions: int

    def to_frame(self) -> pd.DataFrame:
        """Columns ``step, signal, noise``."""
        return pd.DataFrame({"step": list(self.steps), "signal": self.signal,
                             "noise": self.noise})


def _to_host(a) -> np.ndarray:
    from cca_scale.core.backend import to_host

    return to_host(a).astype(np.float64, copy=False)


def _mean_rho(a, b, **kwargs) -> float:
    from cca_scale.core import cca

    return float(np.mean(_to_host(cca(a, b, **kwargs).rho)))


def _steps_and_arrays(later: Any, steps: Sequence[Any] | None) -> tuple[tuple, list]:
    if isinstance(later, Mapping):
        labels, arrays = tuple(later.keys()), list(later.values())
    else:
        arrays = list(later)
        labels = tuple(range(len(arrays)))
    if steps is not None:
        if len(steps) != len(arrays):
            raise CcaScaleError(f"Got {len(steps)} step labels for {len(arrays)} layers.")
        labels = tuple(steps)
    if not arrays:
        raise CcaScaleError("No later steps given.")
    return labels, arrays


def signal_noise_split(early: Any, mid: Any, later_list: Any, *, n_directions: int,
                       steps: Sequence[Any] | None = None, rtol: float | None = None,
                       dtype: Any = None) -> SignalNoiseSplit:
    """Split a layer's CCA directions into stable (signal) and unstable (noise) ones (Fig 1).

    CCA between the layer early in training (``early``) and at mid-training (``mid``) gives the
    mid-training layer's canonical variates, sorted by correlation. The top ``n_directions``
    form S (converged early: signal), the bottom ``n_directions`` form B (not converged: noise).
    Each is then compared by CCA with the layer at every later step; the paper finds S stays
    similar while B quickly decorrelates (it used 100 directions, ``mid`` at T/2).

    Parameters
    ----------
    early, mid : arrays of shape (n_datapoints, n_neurons)
        The layer at ``t_early`` and at mid-training, over the same datapoints.
    later_list : sequence of arrays, or mapping of step to array
        The layer at later steps, each ``(n_datapoints, n_neurons)``.
    n_directions : int
        Size of S and of B; ``2 * n_directions`` must not exceed the number of canonical
        correlations ``min(rank_early, rank_mid)``, so that S and B do not overlap.
    steps : sequence, optional
        Labels of the later steps (default: the mapping's keys, or 0, 1, ...).
    rtol, dtype
        As in :func:`cca_scale.cca`.

    Returns
    -------
    SignalNoiseSplit
        ``signal[t]`` and ``noise[t]`` are the mean canonical correlation (CCA similarity,
        ``1 - mean_cca_distance``) of S and B with the layer at step ``t``.
    """
    from cca_scale.core import cca

    labels, arrays = _steps_and_arrays(later_list, steps)
    if not isinstance(n_directions, (int, np.integer)) or isinstance(n_directions, bool) \
            or n_directions < 1:
        raise CcaScaleError(
            f"The 'n_directions' parameter must be an int >= 1. Got {n_directions!r} instead."
        )
    kw = dict(rtol=rtol, dtype=dtype)
    res = cca(early, mid, **kw)
    c = int(res.rho.shape[0])
    k = int(n_directions)
    if 2 * k > c:
        raise CcaScaleError(
            f"n_directions={k} needs at least {2 * k} canonical directions for disjoint top and "
            f"bottom sets; early vs mid gives {c} (min of their ranks). Use n_directions <= "
            f"{c // 2}."
        )
    variates = res.y_variates()  # the mid-training layer's, descending correlation
    top, bottom = variates[:, :k], variates[:, c - k:]
    signal = np.array([_mean_rho(top, arr, **kw) for arr in arrays])
    noise = np.array([_mean_rho(bottom, arr, **kw) for arr in arrays])
    return SignalNoiseSplit(steps=labels, signal=signal, noise=noise, rho=_to_host(res.rho),
                            n_directions=k)


def rho_over_training(layers: Any, final: Any, *, steps: Sequence[Any] | None = None,
                      rtol: float | None = None, dtype: Any = None) -> pd.DataFrame:
    """Sorted canonical correlations of a layer at each step with the layer at the final step.

    The paper's Fig 1a-c: many correlations keep changing after performance has converged.

    Parameters
    ----------
    layers : sequence of arrays, or mapping of step to array
        The layer at each step, ``(n_datapoints, n_neurons)``.
    final : array of shape (n_datapoints, n_neurons)
        The layer at the final step.
    steps : sequence, optional
        Step labels (default: the mapping's keys, or 0, 1, ...).

    Returns
    -------
    pandas.DataFrame
        Index ``step``; columns ``1..k`` (canonical correlation number), descending along each
        row; NaN where a step has fewer correlations.
    """
    from cca_scale.core import cca

    labels, arrays = _steps_and_arrays(layers, steps)
    rhos = [_to_host(cca(arr, final, rtol=rtol, dtype=dtype).rho) for arr in arrays]
    width = max(r.shape[0] for r in rhos)
    table = np.full((len(rhos), width), np.nan)
    for i, r in enumerate(rhos):
        table[i, :r.shape[0]] = r
    return pd.DataFrame(table, index=pd.Index(labels, name="step"),
                        columns=pd.RangeIndex(1, width + 1, name="rho"))
