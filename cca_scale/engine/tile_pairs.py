"""The pair phase of a tile: one metric's distances for the tile's pairs still to do, from the
tile's stacked cross product, in batches (:mod:`cca_scale.core.batched`).

Pairs are grouped by the shapes of their two prepared layers (one group in a sweep of equal
widths and full ranks), and each group is cut into batches of at most :data:`MAX_BATCH_BYTES`
of working memory. Everything a pair needs is gathered on the device with index arrays; the
decisions that need numbers (ranks kept by a per-layer step, the svcca variant's factors) are
taken on the float64 host bases, so the whole phase makes one device-to-host transfer per metric
and tile (plus, for the svcca variant, one per batch), never one per pair.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from cca_scale.core.basis import Basis
from cca_scale.core.batched import Layers, gather_results
from cca_scale.core.registry import MetricInfo

__all__ = ["MAX_BATCH_BYTES", "tile_pairs"]

#: Working memory of one batched kernel call (stacked cross products, bases and SVD factors).
MAX_BATCH_BYTES = 64 << 20


def _prepared(info: MetricInfo, options, host: Sequence[Basis], dev: Sequence[Basis]):
    """Each layer's prepared basis on the device (a truncation decided on its float64 host
    basis, so no transfer) and its per-layer host factors (``side``)."""
    out, sides = [], []
    for b64, b in zip(host, dev):
        p64 = info.prepare(b64, options)
        out.append(b.leading(p64.rank))
        sides.append(info.side_of(p64, options))
    return out, sides


def tile_pairs(xp, cross, info: MetricInfo, options: Mapping[str, Any], *,
               row_host: Sequence[Basis], col_host: Sequence[Basis],
               row_dev: Sequence[Basis], col_dev: Sequence[Basis],
               row_offsets: np.ndarray, col_offsets: np.ndarray, todo: np.ndarray,
               both: bool) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Distances of the pairs ``todo[i, j]`` of a tile.

    Parameters
    ----------
    xp : array module of ``cross`` and the ``*_dev`` bases
    cross : array of shape (sum of row ranks, sum of column ranks)
        ``[Q_rows]^T [Q_cols]`` of the tile, float64; network ``i``'s rows start at
        ``row_offsets[i]`` (its leading directions first).
    row_host, col_host : the tile's bases, NumPy float64
    row_dev, col_dev : the same bases in ``xp``
    todo : bool array of shape (n_rows, n_cols)
    both : bool
        Also compute ``d(col, row)`` (``backward``).

    Returns
    -------
    rows, cols : int arrays of shape (P,)
        The pairs computed, tile-local positions.
    results : dict of str to array of shape (P,)
        ``forward``, ``backward``, ``rho_max``, ``rho_min``, ``rank_a``, ``rank_b``,
        ``ill_posed`` (host arrays).
    """
    same = row_dev is col_dev
    r_prep, r_sides = _prepared(info, options, row_host, row_dev)
    c_prep, c_sides = (r_prep, r_sides) if same else _prepared(info, options, col_host, col_dev)
    r_keys = [(b.rank, b.n_neurons) for b in r_prep]
    c_keys = r_keys if same else [(b.rank, b.n_neurons) for b in c_prep]
    use_sides = info.needs_sides and r_sides[0] is not None
    done_i, done_j, results = [], [], []
    for rk in sorted(set(r_keys)):
        r_group = np.array([i for i, k in enumerate(r_keys) if k == rk])
        r_layers = Layers.of([r_prep[i] for i in r_group], xp,
                             [r_sides[i] for i in r_group] if use_sides else None)
        for ck in sorted(set(c_keys)):
            c_group = np.array([j for j, k in enumerate(c_keys) if k == ck])
            gi, gj = np.nonzero(todo[np.ix_(r_group, c_group)])
            if gi.size == 0:
                continue
            c_layers = Layers.of([c_prep[j] for j in c_group], xp,
                                 [c_sides[j] for j in c_group] if use_sides else None)
            per_pair = 8 * 4 * (rk[0] * ck[0] + rk[0] * rk[1] + ck[0] * ck[1])
            step = max(1, MAX_BATCH_BYTES // per_pair)
            for s in range(0, gi.size, step):
                bi, bj = gi[s:s + step], gj[s:s + step]
                sub = _gather(xp, cross, row_offsets[r_group[bi]], col_offsets[c_group[bj]],
                              rk[0], ck[0])
                results.append(info.batch(sub, r_layers.take(bi, xp), c_layers.take(bj, xp),
                                          options, both=both))
                done_i.append(r_group[bi])
                done_j.append(c_group[bj])
    if not results:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, gather_results([])
    return np.concatenate(done_i), np.concatenate(done_j), gather_results(results)


def _gather(xp, cross, r_starts: np.ndarray, c_starts: np.ndarray, ka: int, kb: int):
    """The pairs' leading blocks ``cross[r:r+ka, c:c+kb]``, stacked: shape (P, ka, kb)."""
    rows = xp.asarray(r_starts[:, None] + np.arange(ka)[None, :])
    cols = xp.asarray(c_starts[:, None] + np.arange(kb)[None, :])
    return cross[rows[:, :, None], cols[:, None, :]]

