"""The comparison output: a Zarr group that is written tile by tile and can always be resumed.

Layout of ``OUT`` (a Zarr v3 group, format 3), one sub-group per metric::

    OUT/zarr.json                   attributes["cca_scale"]: format, state, the shared parameters
                                    ("params"), "metrics" (name -> that metric's parameters, in
                                    the order first asked), row/column ids and attributes, input
                                    fingerprints, package versions, timings
    OUT/<metric>/distance           (n_rows, n_cols) float64, D[i, j] = d(row i, column j);
                                    NaN = not done
    OUT/<metric>/rank_row           (n_rows, n_cols) int32, directions of the row layer compared
                                    (-1 = n/a)
    OUT/<metric>/rank_col           (n_rows, n_cols) int32, the same for the column layer
    OUT/<metric>/rho_max, rho_min   (n_rows, n_cols) float64, largest and smallest canonical
                                    correlation
    OUT/<metric>/ill_posed          (n_rows, n_cols) uint8, 1 where rank_row + rank_col >
                                    n_datapoints - 1
    OUT/<metric>/tile_done          (n_row_blocks, n_col_blocks) uint8, 1 once the metric's chunks
                                    of a tile are written

A tile task computes one cross product and writes every metric it was asked for; each metric has
its own done flags, so a rerun that adds a metric computes that metric only. Format 2 (one metric,
the same arrays at the root of ``OUT``) reads, and resumes for its own metric; format 1 only reads.

Every per-pair array is chunked ``(tile, tile)``: exactly one chunk per tile, and each chunk is
written by exactly one task (no sharding, no two writers per chunk; see NOTES on Zarr 3). A tile
writes its diagnostics, then its distances, then its ``tile_done`` flags; a chunk write is an atomic
rename on local disk, so a kill at any moment leaves either the old or the new chunk, and a tile
whose flag is missing is simply recomputed. Attributes are written only by the submitting process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cca_scale._json import json_safe
from cca_scale.engine.tiles import Tile, iter_tiles, n_blocks
from cca_scale.errors import StoreConflictError, StoreError
from cca_scale.matrix import DistanceMatrix
from cca_scale.store.targets import check_output_target, creating, storage_errors

__all__ = ["PAIR_ARRAYS", "ComparisonOutput", "count_done", "metric_prefix", "read_tile_arrays",
           "write_tile_arrays"]

FORMAT_VERSION = 3  # 3: one sub-group per metric; 2: the ill_posed diagnostic
#: The oldest format a run resumes (format 2: its one metric, arrays at the root).
RESUMABLE_FORMAT = 2
#: Per-pair arrays added after format 1 (absent from older outputs, which still read).
ADDED_IN_FORMAT_2 = ("ill_posed",)
ATTR_KEY = "cca_scale"
PAIR_ARRAYS: dict[str, tuple[str, Any]] = {
    "rank_row": ("int32", -1),
    "rank_col": ("int32", -1),
    "rho_max": ("float64", float("nan")),
    "rho_min": ("float64", float("nan")),
    "ill_posed": ("uint8", 0),  # 1: CCA ill-posed (rank_row + rank_col > n_datapoints - 1)
    "distance": ("float64", float("nan")),  # last: a tile's distances land after its diagnostics
}
DONE = "tile_done"


def metric_prefix(meta: dict, metric: str) -> str:
    """Where a metric's arrays are: ``'<metric>/'`` (format 3), or the root (formats 1 and 2)."""
    return f"{metric}/" if meta.get("format", FORMAT_VERSION) >= 3 else ""


def output_metrics(meta: dict) -> list[str]:
    """The metrics an output holds, in the order they were first asked for."""
    if meta.get("format", FORMAT_VERSION) >= 3:
        return list(meta.get("metrics") or {})
    return [meta.get("params", {}).get("metric", "pwcca")]


def _open_group(path, mode: str):
    import zarr

    try:
        return zarr.open_group(store=str(path), mode=mode, zarr_format=3)
    except FileNotFoundError as exc:
        raise StoreError(f"No comparison output at {str(path)!r}.") from exc


@dataclass
class ResumeState:
    """What a run found in its output before starting: ``done`` of ``total`` tiles complete."""

    done: int
    total: int
    created: bool
    extended: bool

    def line(self) -> str:
        return f"resuming: {self.done} of {self.total} tiles already done"


class ComparisonOutput:
    """An output group, opened by the submitting process (the only one writing attributes)."""

    def __init__(self, path, group, lock=None):
        self.path = str(path)
        self.group = group
        self._lock = lock

    def release(self) -> None:
        """Give back the output's lease (held from :meth:`open_for_run` until the run ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path) -> "ComparisonOutput":
        group = _open_group(path, "r")
        if ATTR_KEY not in group.attrs:
            raise StoreError(
                f"{str(path)!r} is a Zarr group but not a cca_scale comparison output.")
        return cls(path, group)

    @property
    def meta(self) -> dict:
        return dict(self.group.attrs[ATTR_KEY])

    @property
    def metrics(self) -> list[str]:
        """The metrics this output holds."""
        return output_metrics(self.meta)

    def prefix(self, metric: str) -> str:
        """The path prefix of ``metric``'s arrays in the group."""
        return metric_prefix(self.meta, metric)

    @classmethod
    def open_for_run(cls, path, *, params: dict, rows: list[dict], cols: list[dict], square: bool,
                tile: int | None, default_tile: int, overwrite: bool, extra_meta: dict,
                inputs=(), metrics: dict | None = None, add_metrics: bool = False
                ) -> tuple["ComparisonOutput", ResumeState, int]:
        """Create ``path``, or reopen it for the same parameters (resume / extension).

        ``params`` are the shared parameters, ``metrics`` maps each metric asked for to its own
        (``{"metric": name, "variant": ..., ...}``). ``rows``/``cols`` are item records with at
        least ``label`` and ``write_id``. Returns the output (holding the output's lease: call
        :meth:`release` when done), the resume state (tiles with every asked metric done) and the
        tile size in force. Different parameters (shared, or of a metric the output holds), or
        changed or reordered inputs, are refused unless ``overwrite``; a metric the output does
        not hold yet is added when ``add_metrics`` (a list of metrics was asked for; format 3),
        and refused as another ``metric`` parameter otherwise (a plain name, as before). Another
        run holding the lease is refused (OutputBusyError). Whatever ``overwrite`` says, a
        path that holds anything but a comparison output, or overlaps ``inputs`` (the
        activation store), is refused with UnsafeOutputError (:func:`check_output_target`).
        """
        import zarr

        from cca_scale.engine.lock import OutputLock

        if metrics is None:  # one metric, its parameters among the shared ones (as format 2)
            metrics = {params.get("metric", "pwcca"): {
                k: params.get(k) for k in ("metric", "variant", "keep", "epsilon")}}
            params = {k: v for k, v in params.items()
                      if k not in ("metric", "variant", "keep", "epsilon")}
        state = check_output_target(path, kind="comparison", inputs=inputs)
        # Writes into an output that is already ours only convert storage errors; a new one is
        # removed again if the file system refuses part of it.
        guard = storage_errors if state == "ours" else creating
        with guard(path, kind="comparison"):
            group = zarr.open_group(store=str(path), mode="a", zarr_format=3)
            lock = OutputLock.acquire(group.store, where=repr(str(path)))
            try:
                meta = group.attrs.get(ATTR_KEY)  # read now that no other run can change it
                if meta is not None and meta.get("state") != "creating" and not overwrite:
                    out = cls(path, group, lock)
                    missing = [m for m in metrics if m not in out.metrics]
                    if missing and not add_metrics:
                        raise StoreConflictError(
                            f"{out.path!r} holds a comparison with other parameters (metric: "
                            f"{out.metrics[0]!r} -> {missing[0]!r}). Use another --out, pass "
                            "--overwrite to discard it, or ask for a list of metrics (--metric "
                            f"{','.join(out.metrics + missing)}) to add it."
                        )
                    tile_in_force = out._check_compatible(params, metrics, rows, cols, tile)
                    resume = out._extend(rows, cols, square, tile_in_force, list(metrics))
                    out._add_metrics(metrics, tile_in_force)
                    # This run's versions, input fingerprint and backend; "created" stays.
                    out.update_meta(**{k: v for k, v in extra_meta.items() if k != "created"})
                    return out, resume, tile_in_force
                # New, an interrupted creation (nothing was computed yet), or --overwrite.
                tile = tile or default_tile
                out = cls._create(group, path, params=params, metrics=metrics, rows=rows,
                                  cols=cols, square=square, tile=tile, extra_meta=extra_meta,
                                  lock=lock)
            except BaseException:
                lock.release()
                raise
        total = sum(1 for _ in iter_tiles(len(rows), len(cols), tile, square=square))
        return out, ResumeState(0, total, created=True, extended=False), tile

    @staticmethod
    def _create_arrays(group, prefix: str, shape: tuple[int, int], tile: int) -> None:
        for name, (dtype, fill) in PAIR_ARRAYS.items():
            group.create_array(f"{prefix}{name}", shape=shape, chunks=(tile, tile), dtype=dtype,
                               fill_value=fill, overwrite=True)
        group.create_array(f"{prefix}{DONE}",
                           shape=(n_blocks(shape[0], tile), n_blocks(shape[1], tile)),
                           chunks=(1, 1), dtype="uint8", fill_value=0, compressors=None,
                           overwrite=True)

    @classmethod
    def _create(cls, group, path, *, params, metrics, rows, cols, square, tile, extra_meta,
                lock=None):
        """Lay out a fresh output in ``group`` (an open, writable group that is ours or empty).

        Replaces only the arrays and attributes of the layout: nothing else under ``path`` is
        deleted (the lease in ``lock/`` stays; so do the arrays of a format-2 output, unread).
        """
        meta = {"format": FORMAT_VERSION, "state": "creating", "params": json_safe(params),
                "metrics": json_safe(metrics), "tile": tile, "square": square, "rows": rows,
                "cols": cols, **json_safe(extra_meta)}
        group.attrs[ATTR_KEY] = meta
        shape = (len(rows), len(cols))
        for metric in metrics:
            group.require_group(metric)
            cls._create_arrays(group, f"{metric}/", shape, tile)
        meta["state"] = "ready"
        group.attrs[ATTR_KEY] = meta
        return cls(path, group, lock)

    def _add_metrics(self, metrics: dict, tile: int) -> None:
        """Lay out the arrays of the metrics asked for that the output does not hold yet."""
        meta = self.meta
        new = {m: p for m, p in metrics.items() if m not in self.metrics}
        if not new:
            return
        shape = (len(meta["rows"]), len(meta["cols"]))
        with storage_errors(self.path, kind="comparison"):
            for metric in new:
                self.group.require_group(metric)
                self._create_arrays(self.group, f"{metric}/", shape, tile)
            meta["metrics"] = {**meta["metrics"], **json_safe(new)}
            self.group.attrs[ATTR_KEY] = meta

    def _check_compatible(self, params, metrics, rows, cols, tile) -> int:
        meta = self.meta
        fmt = meta.get("format", FORMAT_VERSION)
        if fmt < RESUMABLE_FORMAT:
            raise StoreConflictError(
                f"{self.path!r} was written by an older cca_scale (output format "
                f"{meta.get('format')}, without the per-pair {list(ADDED_IN_FORMAT_2)} "
                "diagnostics); it reads as it is, but cannot be resumed or extended. Pass "
                "--overwrite to recompute it, or write to another --out."
            )
        new = json_safe(params)
        if fmt < 3:  # one metric, its parameters among the shared ones
            if list(metrics) != self.metrics:
                raise StoreConflictError(
                    f"{self.path!r} is a format-{fmt} output holding the metric "
                    f"{self.metrics[0]!r} only; it resumes for that metric alone, and cannot "
                    f"take {sorted(set(metrics) - set(self.metrics))}. Pass --overwrite to "
                    "recompute it in the current format, or write to another --out."
                )
            new = {**new, **json_safe(next(iter(metrics.values())))}
            old_sets = [(meta["params"], new)]
        else:
            old_metrics = meta.get("metrics", {})
            old_sets = [(meta["params"], new)] + [
                (old_metrics[m], json_safe(p)) for m, p in metrics.items() if m in old_metrics]
        for old, new in old_sets:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if diff == ["rank_floor"] and old.get("rank_floor") is None:
                raise StoreConflictError(
                    f"{self.path!r} was computed by an older cca_scale, which kept directions "
                    "of float32 activations that rounding to float32 could make out of null ones "
                    "(the sum-to-1 direction of softmax rows, a unit stored as the sum of others); "
                    "they are dropped now, so its values and the new ones would not match. Pass "
                    "--overwrite to recompute it, or write to another --out."
                )
            if diff:
                shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
                raise StoreConflictError(
                    f"{self.path!r} holds a comparison with other parameters ({shown}). Use "
                    "another --out, or pass --overwrite to discard it."
                )
        if tile is not None and tile != meta["tile"]:
            raise StoreConflictError(
                f"{self.path!r} was computed with --tile {meta['tile']}; resuming needs the same "
                "tile size. Omit --tile, or pass --overwrite to start again."
            )
        for axis, old_items, new_items in (("row", meta["rows"], rows),
                                           ("column", meta["cols"], cols)):
            old_labels = [r["label"] for r in old_items]
            new_labels = [r["label"] for r in new_items]
            if new_labels[:len(old_labels)] != old_labels:
                raise StoreConflictError(
                    f"The {axis} networks of {self.path!r} are no longer a prefix of the selection "
                    "(networks were removed or reordered). Pass --overwrite to recompute."
                )
            changed = [o["label"] for o, n in zip(old_items, new_items)
                       if o.get("write_id") != n.get("write_id")]
            if changed:
                raise StoreConflictError(
                    f"The activations of {changed[:5]} changed since {self.path!r} was computed. "
                    "Pass --overwrite to recompute."
                )
        return int(meta["tile"])

    def _extend(self, rows, cols, square, tile, metrics: list[str]) -> ResumeState:
        """Grow the arrays (of every metric held) for networks added since (old positions keep
        their values)."""
        meta = self.meta
        old_shape = (len(meta["rows"]), len(meta["cols"]))
        new_shape = (len(rows), len(cols))
        extended = new_shape != old_shape
        if extended:
            for metric in self.metrics:
                prefix = self.prefix(metric)
                for name in PAIR_ARRAYS:  # format 1 never gets here (refused above)
                    self.group[f"{prefix}{name}"].resize(new_shape)
                done = self.group[f"{prefix}{DONE}"]
                done_before = done[...]
                new_blocks = (n_blocks(new_shape[0], tile), n_blocks(new_shape[1], tile))
                done.resize(new_blocks)
                # A block that was partial before now has new positions: it is no longer done.
                for axis, (old_n, new_n) in enumerate(zip(old_shape, new_shape)):
                    if old_n != new_n and old_n % tile:
                        edge = old_n // tile
                        if axis == 0 and edge < done_before.shape[0]:
                            done[edge, :] = 0
                        elif axis == 1 and edge < done_before.shape[1]:
                            done[:, edge] = 0
            meta["rows"], meta["cols"] = rows, cols
            self.group.attrs[ATTR_KEY] = meta
        held = [m for m in metrics if m in self.metrics]
        mask = self.done_mask(held) if len(held) == len(metrics) else None
        if mask is None:  # a metric to add: no tile is done for it
            return ResumeState(0, count_done(np.zeros((0, 0), bool), old_shape, len(rows),
                                             len(cols), tile, square)[1], created=False,
                               extended=extended)
        done, total = count_done(mask, old_shape, len(rows), len(cols), tile, square)
        return ResumeState(done, total, created=False, extended=extended)

    # -- state ---------------------------------------------------------------------------------
    def done_mask(self, metrics=None) -> np.ndarray:
        """``(n_row_blocks, n_col_blocks)`` bool: tiles that are really done for every metric of
        ``metrics`` (default: every metric the output holds; a metric it does not hold has no
        tile done).

        A tile counts as done only when its flag is set AND every per-pair chunk it wrote (and
        its mirror's, in a square comparison) is present, decodes, and holds no NaN distance. A
        chunk lost or damaged after its tile finished (an interrupted copy or sync) makes the
        tile be recomputed, never reported as done with NaN or fill values in it.
        """
        metrics = self.metrics if metrics is None else list(metrics)
        masks = [self.metric_done_mask(m) for m in metrics]
        mask = masks[0]
        for m in masks[1:]:
            mask = mask & m
        return mask

    def metric_done_mask(self, metric: str) -> np.ndarray:
        """:meth:`done_mask` of one metric."""
        meta = self.meta
        if metric not in self.metrics:
            tile = int(meta["tile"])
            return np.zeros((n_blocks(len(meta["rows"]), tile),
                             n_blocks(len(meta["cols"]), tile)), dtype=bool)
        prefix = self.prefix(metric)
        flags = np.asarray(self.group[f"{prefix}{DONE}"][...], dtype=bool)
        if not flags.any():
            return flags
        ok = flags.copy()
        old_format = meta.get("format", FORMAT_VERSION) < 2
        for name in PAIR_ARRAYS:
            if not (old_format and name in ADDED_IN_FORMAT_2):
                ok &= self._chunks_intact(f"{prefix}{name}", flags)
        if meta.get("square"):
            ok &= ok.T
        return ok

    def _chunks_intact(self, name: str, flags: np.ndarray) -> np.ndarray:
        """Which flagged chunks of array ``name`` (its path in the group) are present, decode,
        and (distance) are set."""
        from cca_scale.store import zarr_io

        arr = self.group[name]
        tile = int(self.meta["tile"])
        present = set(zarr_io.list_prefix(self.group.store, f"{arr.path}/"))
        try:
            values = np.asarray(arr[...])
        except Exception:  # some chunk does not decode: look chunk by chunk
            values = None
        intact = np.zeros_like(flags)
        for bi, bj in zip(*np.nonzero(flags)):
            if f"{arr.path}/{arr.metadata.encode_chunk_key((int(bi), int(bj)))}" not in present:
                continue
            rows = slice(bi * tile, (bi + 1) * tile)
            cols = slice(bj * tile, (bj + 1) * tile)
            try:
                block = values[rows, cols] if values is not None else np.asarray(arr[rows, cols])
            except Exception:
                continue
            intact[bi, bj] = not name.endswith("distance") or not np.isnan(block).any()
        return intact

    def resume_state(self, n_rows: int, n_cols: int, square: bool,
                     metrics=None) -> tuple[int, int]:
        """``(tiles done, tiles total)`` for a selection of this size, without writing anything."""
        meta = self.meta
        return count_done(self.done_mask(metrics), (len(meta["rows"]), len(meta["cols"])),
                          n_rows, n_cols, int(meta["tile"]), square)

    def update_meta(self, **fields) -> None:
        meta = self.meta
        meta.update(json_safe(fields))
        with storage_errors(self.path, kind="comparison"):
            self.group.attrs[ATTR_KEY] = meta

    def n_ill_posed(self, metric: str) -> int:
        """Pairs of ``metric``'s matrix flagged ill-posed (its ``ill_posed`` array)."""
        return int(np.count_nonzero(self.group[f"{self.prefix(metric)}ill_posed"][...]))

    def read(self, metric: str | None = None) -> DistanceMatrix:
        from cca_scale.engine.results import read_matrix

        return read_matrix(self.group, self.path, metric=metric)


def count_done(mask: np.ndarray, old_shape: tuple[int, int], n_rows: int, n_cols: int,
               tile: int, square: bool) -> tuple[int, int]:
    """Tiles of an ``n_rows x n_cols`` comparison already done: flagged in ``mask`` and lying
    within the ``old_shape`` the output had (a block that was partial then has new positions now).
    """
    tiles = list(iter_tiles(n_rows, n_cols, tile, square=square))
    done = sum(1 for t in tiles
               if t.bi < mask.shape[0] and t.bj < mask.shape[1] and mask[t.bi, t.bj]
               and t.r1 <= old_shape[0] and t.c1 <= old_shape[1])
    return done, len(tiles)


def write_tile_arrays(path: str, tile: Tile, blocks: dict[str, np.ndarray],
                      mirrored: dict[str, np.ndarray] | None, prefix: str | None = None
                      ) -> None:
    """Worker side: write one tile's chunks (and its mirror's) of one metric (its arrays under
    ``prefix``; default: the output's first metric), then its done flags.

    A write the file system refuses raises StorageWriteError; the tile stays not done (its flag
    is written last), so a rerun with space recomputes it.
    """
    with storage_errors(path, kind="comparison"):
        _write_tile_chunks(path, tile, blocks, mirrored, prefix)


def _write_tile_chunks(path, tile, blocks, mirrored, prefix) -> None:
    import zarr

    group = zarr.open_group(store=path, mode="r+", zarr_format=3)
    prefix = _default_prefix(group, prefix)
    # Every chunk is written, also one equal to the fill value (an all-NaN rho of CKA, no pair
    # ill-posed): a missing chunk then always means a lost one (see done_mask). Set on each
    # array, never with zarr.config.set: that is process-wide, and tile tasks run side by side
    # in threads of one worker, where one task's exit from the setting dropped another's
    # all-fill chunks (tiles flagged done without their ill_posed chunk, recomputed on resume).
    for name in PAIR_ARRAYS:  # diagnostics first, distance last
        arr = group[f"{prefix}{name}"].with_config({"write_empty_chunks": True})
        arr[tile.r0:tile.r1, tile.c0:tile.c1] = blocks[name]
        if mirrored is not None and not tile.diagonal:
            arr[tile.c0:tile.c1, tile.r0:tile.r1] = mirrored[name]
    done = group[f"{prefix}{DONE}"]
    done[tile.bi, tile.bj] = 1
    if tile.mirrored:
        done[tile.bj, tile.bi] = 1


def _default_prefix(group, prefix: str | None) -> str:
    if prefix is not None:
        return prefix
    meta = dict(group.attrs.get(ATTR_KEY) or {})
    return metric_prefix(meta, output_metrics(meta)[0]) if meta else ""


def read_tile_arrays(path: str, tile: Tile, prefix: str | None = None
                     ) -> tuple[dict, dict | None]:
    """Worker side: a tile's current chunks of every per-pair array of one metric (its arrays
    under ``prefix``; default: the output's first metric), and its mirror's.

    NaN distances mark the pairs still to do (a fresh tile, or new positions after an extension).
    """
    import zarr

    group = zarr.open_group(store=path, mode="r", zarr_format=3)
    prefix = _default_prefix(group, prefix)

    def read(rows: slice, cols: slice) -> dict:
        out, damaged = {}, False
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        for name, (dtype, fill) in PAIR_ARRAYS.items():
            try:
                out[name] = np.asarray(group[f"{prefix}{name}"][rows, cols])
            except Exception:  # a chunk that no longer decodes (codecs raise many types)
                out[name] = np.full(shape, fill, dtype=dtype)
                damaged = True
        if damaged:  # recompute and rewrite the whole block
            out["distance"] = np.full(shape, np.nan)
        return out

    block = read(slice(tile.r0, tile.r1), slice(tile.c0, tile.c1))
    mirror = None
    if tile.mirrored and not tile.diagonal:
        mirror = read(slice(tile.c0, tile.c1), slice(tile.r0, tile.r1))
    return block, mirror
