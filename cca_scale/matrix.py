"""``DistanceMatrix``: the engine's result and the analysis' input.

PWCCA is directional, so the matrix is stored full, like ``scipy.spatial.distance.cdist``:
``values[i, j] = d(row i, column j)``. The condensed vector of ``pdist``/``squareform`` exists only
through an explicit ``.symmetric(how=...).condensed()``; nothing is symmetrised silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cca_scale.errors import CcaScaleError, LayerNotFoundError, NetworkNotFoundError

if TYPE_CHECKING:  # pandas is imported where a matrix is made: the engine's runs need none
    import pandas as pd

__all__ = ["DistanceMatrix", "SYMMETRIZE"]

SYMMETRIZE = ("mean", "min", "max")


@dataclass(frozen=True, eq=False)
class DistanceMatrix:
    """Distances between row networks and column networks.

    Attributes
    ----------
    values : ndarray of shape (n_rows, n_cols), float64
        ``values[i, j] = d(row i, column j)``; NaN where a pair was not computed.
    row_labels, col_labels : tuple of str
        Network ids of the rows and columns.
    metadata : dict
        Metric, variant, parameters, input fingerprint, versions, timings (JSON-compatible).
    row_info, col_info : pandas.DataFrame
        Network attributes (learning rate, seed, ...), indexed by network id, in row/column order.
    diagnostics : dict of str to ndarray (n_rows, n_cols)
        Per-pair ``rank_row``, ``rank_col``, ``rho_max``, ``rho_min`` and ``ill_posed`` (1 where
        ``rank_row + rank_col > n_datapoints - 1``: CCA forces some correlations to 1) where
        available.
    """

    values: np.ndarray
    row_labels: tuple[str, ...]
    col_labels: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    row_info: pd.DataFrame | None = None
    col_info: pd.DataFrame | None = None
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        import pandas as pd

        values = np.asarray(self.values, dtype=np.float64)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "row_labels", tuple(str(v) for v in self.row_labels))
        object.__setattr__(self, "col_labels", tuple(str(v) for v in self.col_labels))
        if values.shape != (len(self.row_labels), len(self.col_labels)):
            raise CcaScaleError(
                f"DistanceMatrix values have shape {values.shape} but there are "
                f"{len(self.row_labels)} row and {len(self.col_labels)} column labels."
            )
        for name, labels in (("row_info", self.row_labels), ("col_info", self.col_labels)):
            info = getattr(self, name)
            info = pd.DataFrame(index=pd.Index(labels, name="network")) if info is None else \
                info.reindex(pd.Index(labels, name="network"))
            object.__setattr__(self, name, info)

    # -- shape ---------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape

    @property
    def is_square(self) -> bool:
        """Rows and columns are the same networks in the same order."""
        return self.row_labels == self.col_labels

    @property
    def labels(self) -> tuple[str, ...]:
        """The network ids of a square matrix (rows == columns)."""
        if not self.is_square:
            raise CcaScaleError(
                "This matrix is rectangular (rows and columns are different networks): use "
                ".row_labels and .col_labels."
            )
        return self.row_labels

    @property
    def info(self) -> pd.DataFrame:
        """Network attributes of a square matrix, indexed by network id."""
        _ = self.labels
        return self.row_info

    @property
    def n_ill_posed(self) -> int:
        """Pairs whose CCA is ill-posed (``diagnostics['ill_posed']``; 0 when not recorded)."""
        flags = self.diagnostics.get("ill_posed")
        return 0 if flags is None else int(np.count_nonzero(flags))

    def ill_posed_line(self) -> str:
        """One line for logs: how many pairs are ill-posed, and what to do."""
        return ill_posed_line(self.n_ill_posed, self.values.size)

    @property
    def complete(self) -> bool:
        """Every pair has a value (no NaN)."""
        return bool(np.all(np.isfinite(self.values)))

    # -- conversions ---------------------------------------------------------------------------
    def symmetric(self, how: str = "mean") -> "DistanceMatrix":
        """A symmetric copy: ``(D + D.T) / 2`` (``how='mean'``), or the elementwise min or max.

        The diagonal is set to exactly 0. Only for square matrices.
        """
        if how not in SYMMETRIZE:
            raise CcaScaleError(
                f"The 'how' parameter must be one of {list(SYMMETRIZE)}. Got {how!r} instead."
            )
        _ = self.labels
        d, dt = self.values, self.values.T
        sym = {"mean": (d + dt) / 2.0, "min": np.minimum(d, dt), "max": np.maximum(d, dt)}[how]
        np.fill_diagonal(sym, 0.0)
        meta = dict(self.metadata, symmetrized=how)
        return DistanceMatrix(sym, self.row_labels, self.col_labels, meta, self.row_info,
                              self.col_info, {})

    def condensed(self) -> np.ndarray:
        """The condensed vector of SciPy's ``pdist``/``squareform`` convention, length n(n-1)/2.

        Entry for ``i < j`` sits at ``n*i + j - ((i + 2) * (i + 1)) // 2``. Refuses a matrix that is
        not symmetric with a zero diagonal: PWCCA is directional, so call ``.symmetric()`` first.
        """
        from scipy.spatial.distance import squareform

        _ = self.labels
        d = self.values
        if not self.complete:
            raise CcaScaleError("The matrix has missing (NaN) pairs; finish the comparison first.")
        if not (np.allclose(d, d.T, rtol=0, atol=1e-12) and np.all(np.diag(d) == 0)):
            raise CcaScaleError(
                "condensed() needs a symmetric matrix with a zero diagonal, and PWCCA distances "
                "are directional. Call .symmetric(how='mean') (or 'min'/'max') first."
            )
        return squareform(d, checks=False)

    def to_pandas(self) -> pd.DataFrame:
        """A DataFrame with row network ids as index and column network ids as columns."""
        import pandas as pd

        return pd.DataFrame(self.values, index=pd.Index(self.row_labels, name="row"),
                            columns=pd.Index(self.col_labels, name="column"))

    def to_xarray(self):
        """An ``xarray.DataArray`` ``distance`` with dims ``(row, column)``, metadata as attrs.

        Network attributes become coordinates ``row_<attr>`` / ``column_<attr>``.
        """
        import json

        import xarray as xr

        coords: dict[str, Any] = {"row": list(self.row_labels), "column": list(self.col_labels)}
        for prefix, dim, info in (("row", "row", self.row_info),
                                  ("column", "column", self.col_info)):
            for col in info.columns:
                values = info[col].to_numpy()
                if values.dtype == object:
                    values = values.astype(str)
                coords[f"{prefix}_{col}"] = (dim, values)
        attrs = {k: (v if isinstance(v, (str, int, float)) else json.dumps(v, default=str))
                 for k, v in self.metadata.items()}
        return xr.DataArray(self.values, dims=("row", "column"), coords=coords, name="distance",
                            attrs=attrs)

    def subset(self, rows=None, cols=None) -> "DistanceMatrix":
        """The sub-matrix of the given row and column network ids (all when None), in that order."""
        rows = list(self.row_labels) if rows is None else [str(r) for r in rows]
        cols = list(self.col_labels) if cols is None else [str(c) for c in cols]
        ri = _positions(self.row_labels, rows, "row")
        ci = _positions(self.col_labels, cols, "column")
        diag = {k: v[np.ix_(ri, ci)] for k, v in self.diagnostics.items()}
        return DistanceMatrix(self.values[np.ix_(ri, ci)], rows, cols, dict(self.metadata),
                              self.row_info.iloc[ri], self.col_info.iloc[ci], diag)

    # -- multi-layer matrices: items are (network, layer) pairs -------------------------------
    def for_layer(self, layer: str, against_layer: str | None = None) -> "DistanceMatrix":
        """The network-by-network matrix of one layer of a multi-layer matrix.

        Parameters
        ----------
        layer : str
            Rows: the items whose ``row_info['layer']`` is ``layer``.
        against_layer : str, optional
            Columns: the items of this layer (``col_info['layer']``); ``layer`` when None.

        Returns
        -------
        DistanceMatrix
            Labelled by network id (``row_info['network']``), with the networks' attributes as
            ``row_info``/``col_info``, ``metadata['layer']`` (and ``'against_layer'``) set: the
            input of :func:`cca_scale.cluster`, :func:`cca_scale.group_statistics` and export. A
            single-layer engine output (it has a ``layer`` column) gives itself, relabelled.

        Raises
        ------
        CcaScaleError
            The matrix has no ``network``/``layer`` columns (not a multi-layer matrix), or a
            network has several items in the layer (steps, timesteps).
        LayerNotFoundError
            No item of that layer; the message lists the matrix's layers.
        """
        layer = str(layer)
        against = layer if against_layer is None else str(against_layer)
        return self._select("layer", layer, against,
                            dict(self.metadata, layer=layer, against_layer=against_layer))

    def layer_block(self, network_a: str, network_b: str | None = None) -> "DistanceMatrix":
        """The layer-by-layer matrix of two networks of a multi-layer matrix.

        Parameters
        ----------
        network_a : str
            Rows: the items whose ``row_info['network']`` is ``network_a``, labelled by layer.
        network_b : str, optional
            Columns: the items of this network (``col_info['network']``); ``network_a`` when None
            (a network's layers against each other).

        Returns
        -------
        DistanceMatrix
            ``values[i, j] = d(layer i of network_a, layer j of network_b)``, labelled by layer
            name; ``metadata['network_a']``/``['network_b']`` set.

        Raises
        ------
        CcaScaleError
            The matrix has no ``network``/``layer`` columns, or a layer has several items of the
            network (steps, timesteps).
        NetworkNotFoundError
            No item of that network; the message lists the matrix's networks.
        """
        network_a = str(network_a)
        network_b = network_a if network_b is None else str(network_b)
        return self._select("network", network_a, network_b,
                            dict(self.metadata, network_a=network_a, network_b=network_b))

    def _select(self, column: str, row_value: str, col_value: str,
                metadata: dict[str, Any]) -> "DistanceMatrix":
        """The items whose ``column`` ('layer' or 'network') is ``row_value`` (rows) and
        ``col_value`` (columns), relabelled by the other of the two columns."""
        import pandas as pd

        by = "network" if column == "layer" else "layer"
        rows = _items_where(self.row_info, column, row_value, "row", other=by)
        cols = _items_where(self.col_info, column, col_value, "column", other=by)
        labels = []
        for positions, info, what in ((rows, self.row_info, "row"),
                                      (cols, self.col_info, "column")):
            names = [str(v) for v in info[by].iloc[positions]]
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise CcaScaleError(
                    f"The selected {what} items repeat the {by}(s) {repeated[:5]} (several steps "
                    f"or timesteps of one {by}), so they cannot be labelled by {by}. Select one "
                    "step per network when comparing, or use .subset() on the full labels."
                )
            labels.append(names)
        ri, ci = np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp)
        row_info, col_info = self.row_info.iloc[ri].copy(), self.col_info.iloc[ci].copy()
        row_info.index, col_info.index = pd.Index(labels[0]), pd.Index(labels[1])
        diag = {k: v[np.ix_(ri, ci)] for k, v in self.diagnostics.items()}
        return DistanceMatrix(self.values[np.ix_(ri, ci)], labels[0], labels[1], metadata,
                              row_info, col_info, diag)

    def __repr__(self) -> str:
        meta = ", ".join(f"{k}={self.metadata[k]!r}" for k in ("metric", "variant", "layer")
                         if k in self.metadata)
        return f"DistanceMatrix({self.shape[0]} x {self.shape[1]}{', ' + meta if meta else ''})"


def ill_posed_line(n_ill_posed: int, n_pairs: int) -> str:
    """One line for logs: ``n_ill_posed`` of a matrix's ``n_pairs`` pairs are ill-posed CCA, and
    what to do."""
    return (f"{n_ill_posed} of {n_pairs} pairs are ill-posed CCA (rank_row + rank_col > "
            "n_datapoints - 1, so some correlations are 1 whatever the data; see "
            "diagnostics['ill_posed']): use more datapoints or fewer neurons.")


def _positions(labels: tuple[str, ...], wanted: list[str], what: str) -> list[int]:
    index = {label: i for i, label in enumerate(labels)}
    missing = [w for w in wanted if w not in index]
    if missing:
        raise NetworkNotFoundError(
            f"{what} network(s) {missing[:5]} are not in this matrix; it has {list(labels)[:10]}"
            f"{' ...' if len(labels) > 10 else ''}."
        )
    return [index[w] for w in wanted]


def _items_where(info: pd.DataFrame, column: str, value: str, what: str, *,
                 other: str) -> list[int]:
    """Positions of the items whose ``info[column] == value``, refusing a matrix without the
    ``network`` and ``layer`` columns of a multi-layer matrix and listing the known values on a
    miss."""
    missing = [c for c in (column, other) if c not in info.columns]
    if missing:
        raise CcaScaleError(
            f"This matrix has no {missing} column(s) in its {what} info, so it is not a "
            "multi-layer matrix (items of (network, layer) pairs, with row_info/col_info columns "
            "'network' and 'layer'). A matrix of one layer needs no layer selection."
        )
    found = (info[column].astype(str) == value).to_numpy()
    if not found.any():
        known = list(info[column].astype(str).unique())
        error = LayerNotFoundError if column == "layer" else NetworkNotFoundError
        raise error(
            f"{column.capitalize()} {value!r} is not among this matrix's {what} {column}s: "
            f"{known[:10]}{' ...' if len(known) > 10 else ''}."
        )
    return [int(i) for i in np.flatnonzero(found)]
