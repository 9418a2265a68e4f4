"""Within- and between-group distances (the paper's Figs 3 and 4), and neuron subsampling."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cca_scale.analysis._common import (
    attribute_values,
    check_distance_matrix,
    check_finite,
    named_matrices,
)
from cca_scale.errors import CcaScaleError
from cca_scale.matrix import DistanceMatrix

__all__ = [
    "GROUP_COLUMNS",
    "GroupCorrelation",
    "group_correlation",
    "group_statistics",
    "mean_distance_to_group",
    "subsample_neurons",
]

#: Columns of :func:`group_statistics`' table, in order.
GROUP_COLUMNS = ("layer", "group_a", "group_b", "kind", "mean", "std", "n_pairs")


def _sorted_groups(values: Sequence[Any]) -> list[Any]:
    unique = list(pd.unique(pd.Series(list(values), dtype=object)))
    try:
        return sorted(unique)
    except TypeError:  # mixed types: order by their text
        return sorted(unique, key=str)


def _one_layer(layer: str, D: DistanceMatrix, by: Any, ddof: int) -> list[dict[str, Any]]:
    rows = attribute_values(D, by, side="row").to_numpy(dtype=object)
    cols = attribute_values(D, by, side="col").to_numpy(dtype=object)
    distinct = np.asarray(D.row_labels, dtype=object)[:, None] != \
        np.asarray(D.col_labels, dtype=object)[None, :]
    values = D.values
    groups = _sorted_groups(list(rows) + list(cols))
    in_row = {g: np.array([v == g for v in rows]) for g in groups}
    in_col = {g: np.array([v == g for v in cols]) for g in groups}

    def block(ga, gb) -> np.ndarray:
        mask = in_row[ga][:, None] & in_col[gb][None, :]
        if ga != gb:
            mask |= in_row[gb][:, None] & in_col[ga][None, :]
        picked = values[mask & distinct]
        check_finite(picked, what=f"Layer {layer!r}, groups {ga!r}/{gb!r},")
        return picked

    out = []
    for i, ga in enumerate(groups):
        for gb in groups[i:]:
            picked = block(ga, gb)
            n = int(picked.size)
            out.append({
                "layer": layer, "group_a": ga, "group_b": gb,
                "kind": "within" if ga == gb else "between",
                "mean": float(picked.mean()) if n else float("nan"),
                "std": float(picked.std(ddof=ddof)) if n > ddof else float("nan"),
                "n_pairs": n,
            })
    return out


def group_statistics(distances: Any, by: Any, *, layers: Sequence[str] | None = None,
                     ddof: int = 0) -> pd.DataFrame:
    """Mean and spread of the distances within each group and between each pair of groups.

    The paper's Fig 3 (generalizing vs memorizing networks, per layer) and Fig 4a (groups of
    networks of one width).

    Parameters
    ----------
    distances : DistanceMatrix, sequence of DistanceMatrix, or mapping of str to DistanceMatrix
        One matrix per layer. Layer names come from ``layers``, the mapping's keys, each matrix's
        ``metadata['layer']``, or the position, in that order.
    by : str, mapping or sequence
        The grouping attribute: a column of the matrices' ``row_info``/``col_info`` (e.g.
        ``'regime'``, ``'width'``), or the group of each network id.
    layers : sequence of str, optional
        Layer names, one per matrix.
    ddof : int
        Delta degrees of freedom of ``std`` (0: the spread of the pairs themselves).

    Returns
    -------
    pandas.DataFrame
        Tidy, one row per layer and group pair, columns ``layer, group_a, group_b, kind, mean,
        std, n_pairs``. ``kind`` is ``'within'`` (``group_a == group_b``) or ``'between'``
        (``group_a < group_b`` in sorted order). Layers keep the given order.

    Notes
    -----
    Every off-diagonal *directed* pair counts once: ``d(i, j)`` for row network ``i`` and column
    network ``j`` with ``i != j`` (different network ids). PWCCA is not symmetric, so a group of
    ``m`` networks contributes ``m (m - 1)`` within-group values (both ``d(i, j)`` and
    ``d(j, i)``), and groups ``a`` and ``b`` contribute ``2 m_a m_b`` between-group values
    (``a``'s rows against ``b``'s columns and ``b``'s rows against ``a``'s columns). Nothing is
    symmetrised. A group of one network has ``n_pairs = 0`` within and NaN mean and std. A
    rectangular matrix works the same way, its rows and columns grouped by their own attributes.

    Raises
    ------
    CcaScaleError
        An unknown attribute, networks without a value, or a needed pair that is NaN/Inf.
    """
    if not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise CcaScaleError(f"The 'ddof' parameter must be an int >= 0. Got {ddof!r} instead.")
    rows: list[dict[str, Any]] = []
    for layer, D in named_matrices(distances, names=layers):
        rows.extend(_one_layer(layer, D, by, int(ddof)))
    table = pd.DataFrame(rows, columns=list(GROUP_COLUMNS))
    table["n_pairs"] = table["n_pairs"].astype(np.int64)
    return table


def mean_distance_to_group(D: DistanceMatrix, by: Any) -> pd.Series:
    """Each network's mean distance to the other members of its group.

    Parameters
    ----------
    D : DistanceMatrix
        Square.
    by : str, mapping or sequence
        The grouping attribute (see :func:`group_statistics`).

    Returns
    -------
    pandas.Series of float, indexed by network id
        For network ``i`` of group ``g``: the mean of ``d(i, j)`` and ``d(j, i)`` over the other
        members ``j`` of ``g`` (both directions, ``2 (m - 1)`` values). NaN for a group of one.
    """
    D = check_distance_matrix(D)
    labels = D.labels
    groups = attribute_values(D, by).to_numpy(dtype=object)
    same = np.array([[a == b for b in groups] for a in groups], dtype=bool)
    np.fill_diagonal(same, False)
    check_finite(D.values[same], what="The within-group distances")
    both = D.values + D.values.T
    counts = same.sum(axis=1)
    sums = np.where(same, both, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / (2.0 * counts), np.nan)
    return pd.Series(mean, index=pd.Index(labels, name="network"), name="mean_distance")


@dataclass(frozen=True)
class GroupCorrelation:
    """Pearson correlation of the mean within-group distance with a numeric attribute (Fig 4b).

    Attributes
    ----------
    r, p : float
        Pearson's r and its two-sided p-value (``scipy.stats.pearsonr``).
    n : int
        Number of points correlated (networks, or groups with ``level='group'``).
    table : pandas.DataFrame
        The points: ``mean_distance`` and the attribute, indexed by network id (or group).
    """

    r: float
    p: float
    n: int
    table: pd.DataFrame = field(repr=False)


def group_correlation(D: DistanceMatrix, *, by: Any, attribute: Any,
                      level: str = "network") -> GroupCorrelation:
    """Correlate how close networks are to their group with a numeric attribute (Fig 4b).

    The paper found that groups whose members converge to more similar solutions reach higher
    test accuracy (r = -0.96 between CCA distance and test accuracy).

    Parameters
    ----------
    D : DistanceMatrix
        Square.
    by : str, mapping or sequence
        The grouping attribute (e.g. ``'width'``).
    attribute : str, mapping or sequence
        A numeric attribute of each network (e.g. ``'test_accuracy'``).
    level : {'network', 'group'}
        ``'network'``: one point per network, its :func:`mean_distance_to_group` against its own
        attribute value. ``'group'``: one point per group, the mean over its members of both.

    Returns
    -------
    GroupCorrelation
    """
    from scipy.stats import pearsonr

    if level not in ("network", "group"):
        raise CcaScaleError(
            f"The 'level' parameter must be one of ['network', 'group']. Got {level!r} instead."
        )
    distance = mean_distance_to_group(D, by)
    values = attribute_values(D, attribute, name="attribute")
    try:
        numeric = values.astype(np.float64)
    except (TypeError, ValueError):
        raise CcaScaleError(
            f"The attribute {values.name or 'attribute'!r} must be numeric to correlate; got "
            f"values like {list(values.iloc[:3])}."
        ) from None
    name = str(values.name) if isinstance(values.name, str) else "attribute"
    table = pd.DataFrame({"group": attribute_values(D, by).to_numpy(dtype=object),
                          "mean_distance": distance, name: numeric})
    if level == "group":
        table = table.groupby("group", sort=True)[["mean_distance", name]].mean()
    table = table.dropna(subset=["mean_distance"])
    if len(table) < 3:
        raise CcaScaleError(
            f"A correlation needs at least 3 {level}s with a within-group distance; got "
            f"{len(table)} (groups of one network have none)."
        )
    x, y = table["mean_distance"].to_numpy(), table[name].to_numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise CcaScaleError(
            f"The correlation is undefined: the {'distances' if np.ptp(x) == 0 else name!r} are "
            "constant."
        )
    r, p = pearsonr(x, y)
    return GroupCorrelation(r=float(r), p=float(p), n=len(table), table=table)


def subsample_neurons(acts: Any, n: int, *, rng: Any, return_indices: bool = False):
    """A random subset of ``n`` neurons (columns), for fair comparisons across widths.

    The paper compares networks of different widths on a random subset of 128 filters of each
    (Section 3.2, footnote 8), so that the distance does not change with the number of neurons.

    Parameters
    ----------
    acts : array of shape (n_datapoints, n_neurons)
        NumPy or CuPy activations (convolutional maps flattened first, see
        :func:`cca_scale.flatten_conv`).
    n : int
        Number of neurons to keep, ``1 <= n <= n_neurons``.
    rng : numpy.random.Generator or int
        The source of randomness (an int seeds ``numpy.random.default_rng``). Required, so that
        the subset is reproducible.
    return_indices : bool
        Also return the chosen column indices.

    Returns
    -------
    subset : array of shape (n_datapoints, n)
        The chosen columns, in increasing column order.
    indices : ndarray of shape (n,), only with ``return_indices=True``

    Examples
    --------
    >>> acts = np.arange(12.0).reshape(2, 6)
    >>> subsample_neurons(acts, 3, rng=np.random.default_rng(0)).shape
    (2, 3)
    """
    from cca_scale.core.backend import array_namespace

    if rng is None:
        raise CcaScaleError(
            "subsample_neurons needs rng: pass numpy.random.default_rng(seed) (or an int seed) so "
            "the subset is reproducible."
        )
    if not isinstance(rng, np.random.Generator):
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
            rng = np.random.default_rng(int(rng))
        else:
            raise CcaScaleError(
                f"The 'rng' parameter must be a numpy.random.Generator or an int seed. Got "
                f"{type(rng).__name__} instead."
            )
    shape = getattr(acts, "shape", None)
    if shape is None or len(shape) != 2:
        raise CcaScaleError(
            f"acts must be 2-D (n_datapoints, n_neurons); got shape {shape}. Flatten "
            "convolutional maps first with cca_scale.flatten_conv."
        )
    width = int(shape[1])
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 1 <= n <= width:
        raise CcaScaleError(
            f"The 'n' parameter must be an int in [1, {width}] (the layer's number of neurons). "
            f"Got {n!r} instead; narrower layers cannot be subsampled to {n}."
        )
    idx = np.sort(rng.choice(width, size=int(n), replace=False))
    xp = array_namespace(acts)
    subset = xp.take(acts, xp.asarray(idx), axis=1)
    return (subset, idx) if return_indices else subset
