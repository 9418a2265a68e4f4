"""The comparison output: a Zarr group that is written tile by tile and can always be resumed.

Layout of ``OUT`` (a Zarr v3 group)::

    OUT/zarr.json          attributes["cca_scale"]: format, state, parameters, row/column ids and
                           attributes, input fingerprints, package versions, timings
    OUT/distance           (n_rows, n_cols) float64, D[i, j] = d(row i, column j); NaN = not done
    OUT/rank_row           (n_rows, n_cols) int32, directions of the row layer compared (-1 = n/a)
    OUT/rank_col           (n_rows, n_cols) int32, the same for the column layer
    OUT/rho_max, rho_min   (n_rows, n_cols) float64, largest and smallest canonical correlation
    OUT/ill_posed          (n_rows, n_cols) uint8, 1 where rank_row + rank_col > n_datapoints - 1
    OUT/tile_done          (n_row_blocks, n_col_blocks) uint8, 1 once a tile's chunks are written

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

__all__ = ["PAIR_ARRAYS", "ComparisonOutput", "count_done", "read_tile_arrays",
           "write_tile_arrays"]

FORMAT_VERSION = 2  # 2: the ill_posed diagnostic; format-1 outputs read, but do not resume
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
        """Give back the output's lease (held from :meth:`prepare` until the run ends)."""
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

    @classmethod
    def prepare(cls, path, *, params: dict, rows: list[dict], cols: list[dict], square: bool,
                tile: int | None, default_tile: int, overwrite: bool, extra_meta: dict,
                inputs=()) -> tuple["ComparisonOutput", ResumeState, int]:
        """Create ``path``, or reopen it for the same parameters (resume / extension).

        ``rows``/``cols`` are item records with at least ``label`` and ``write_id``. Returns the
        output (holding the output's lease: call :meth:`release` when done), the resume state and
        the tile size in force. Different parameters, or changed or reordered inputs, are refused
        unless ``overwrite``. Another run holding the lease is refused (OutputBusyError).
        Whatever ``overwrite`` says, a path that holds anything but a comparison output, or
        overlaps ``inputs`` (the activation store), is refused with UnsafeOutputError
        (:func:`check_output_target`).
        """
        import zarr

        from cca_scale.engine.lock import OutputLock

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
                    tile_in_force = out._check_compatible(params, rows, cols, tile)
                    resume = out._extend(rows, cols, square, tile_in_force)
                    # This run's versions, input fingerprint and backend; "created" stays.
                    out.update_meta(**{k: v for k, v in extra_meta.items() if k != "created"})
                    return out, resume, tile_in_force
                # New, an interrupted creation (nothing was computed yet), or --overwrite.
                tile = tile or default_tile
                out = cls._create(group, path, params=params, rows=rows, cols=cols,
                                  square=square, tile=tile, extra_meta=extra_meta, lock=lock)
            except BaseException:
                lock.release()
                raise
        total = sum(1 for _ in iter_tiles(len(rows), len(cols), tile, square=square))
        return out, ResumeState(0, total, created=True, extended=False), tile

    @classmethod
    def _create(cls, group, path, *, params, rows, cols, square, tile, extra_meta, lock=None):
        """Lay out a fresh output in ``group`` (an open, writable group that is ours or empty).

        Replaces only the arrays and attributes of the layout: nothing else under ``path`` is
        deleted (the lease in ``lock/`` stays).
        """
        meta = {"format": FORMAT_VERSION, "state": "creating", "params": json_safe(params),
                "tile": tile, "square": square, "rows": rows, "cols": cols,
                **json_safe(extra_meta)}
        group.attrs[ATTR_KEY] = meta
        shape = (len(rows), len(cols))
        for name, (dtype, fill) in PAIR_ARRAYS.items():
            group.create_array(name, shape=shape, chunks=(tile, tile), dtype=dtype,
                               fill_value=fill, overwrite=True)
        group.create_array(DONE, shape=(n_blocks(shape[0], tile), n_blocks(shape[1], tile)),
                           chunks=(1, 1), dtype="uint8", fill_value=0, compressors=None,
                           overwrite=True)
        meta["state"] = "ready"
        group.attrs[ATTR_KEY] = meta
        return cls(path, group, lock)

    def _check_compatible(self, params, rows, cols, tile) -> int:
        meta = self.meta
        if meta.get("format", FORMAT_VERSION) < FORMAT_VERSION:
            raise StoreConflictError(
                f"{self.path!r} was written by an older cca_scale (output format "
                f"{meta.get('format')}, without the per-pair {list(ADDED_IN_FORMAT_2)} "
                "diagnostics); it reads as it is, but cannot be resumed or extended. Pass "
                "--overwrite to recompute it, or write to another --out."
            )
        old = meta["params"]
        new = json_safe(params)
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff)
            raise StoreConflictError(
                f"{self.path!r} holds a comparison with other parameters ({shown}). Use another "
                "--out, or pass --overwrite to discard it."
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

    def _extend(self, rows, cols, square, tile) -> ResumeState:
        """Grow the arrays for networks added since (old positions keep their values)."""
        meta = self.meta
        old_shape = (len(meta["rows"]), len(meta["cols"]))
        new_shape = (len(rows), len(cols))
        extended = new_shape != old_shape
        if extended:
            for name in PAIR_ARRAYS:
                self.group[name].resize(new_shape)
            done = self.group[DONE]
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
        done, total = count_done(self.done_mask(), old_shape, len(rows), len(cols), tile, square)
        return ResumeState(done, total, created=False, extended=extended)

    # -- state ---------------------------------------------------------------------------------
    def done_mask(self) -> np.ndarray:
        """``(n_row_blocks, n_col_blocks)`` bool: tiles that are really done.

        A tile counts as done only when its flag is set AND every per-pair chunk it wrote (and
        its mirror's, in a square comparison) is present, decodes, and holds no NaN distance. A
        chunk lost or damaged after its tile finished (an interrupted copy or sync) makes the
        tile be recomputed, never reported as done with NaN or fill values in it.
        """
        flags = np.asarray(self.group[DONE][...], dtype=bool)
        if not flags.any():
            return flags
        ok = flags.copy()
        old_format = self.meta.get("format", FORMAT_VERSION) < 2
        for name in PAIR_ARRAYS:
            if not (old_format and name in ADDED_IN_FORMAT_2):
                ok &= self._chunks_intact(name, flags)
        if self.meta.get("square"):
            ok &= ok.T
        return ok

    def _chunks_intact(self, name: str, flags: np.ndarray) -> np.ndarray:
        """Which flagged chunks of array ``name`` are present, decode, and (distance) are set."""
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
            intact[bi, bj] = name != "distance" or not np.isnan(block).any()
        return intact

    def resume_state(self, n_rows: int, n_cols: int, square: bool) -> tuple[int, int]:
        """``(tiles done, tiles total)`` for a selection of this size, without writing anything."""
        meta = self.meta
        return count_done(self.done_mask(), (len(meta["rows"]), len(meta["cols"])), n_rows,
                          n_cols, int(meta["tile"]), square)

    def update_meta(self, **fields) -> None:
        meta = self.meta
        meta.update(json_safe(fields))
        with storage_errors(self.path, kind="comparison"):
            self.group.attrs[ATTR_KEY] = meta

    def read(self) -> DistanceMatrix:
        from cca_scale.engine.results import read_matrix

        return read_matrix(self.group, self.path)


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
                      mirrored: dict[str, np.ndarray] | None) -> None:
    """Worker side: write one tile's chunks (and its mirror's), then its done flags.

    A write the file system refuses raises StorageWriteError; the tile stays not done (its flag
    is written last), so a rerun with space recomputes it.
    """
    with storage_errors(path, kind="comparison"):
        _write_tile_chunks(path, tile, blocks, mirrored)


def _write_tile_chunks(path, tile, blocks, mirrored) -> None:
    import zarr

    group = zarr.open_group(store=path, mode="r+", zarr_format=3)
    # Every chunk is written, also one equal to the fill value (an all-NaN rho of CKA, no pair
    # ill-posed): a missing chunk then always means a lost one (see done_mask).
    with zarr.config.set({"array.write_empty_chunks": True}):
        for name in PAIR_ARRAYS:  # diagnostics first, distance last
            arr = group[name]
            arr[tile.r0:tile.r1, tile.c0:tile.c1] = blocks[name]
            if mirrored is not None and not tile.diagonal:
                arr[tile.c0:tile.c1, tile.r0:tile.r1] = mirrored[name]
    done = group[DONE]
    done[tile.bi, tile.bj] = 1
    if tile.mirrored:
        done[tile.bj, tile.bi] = 1


def read_tile_arrays(path: str, tile: Tile) -> tuple[dict, dict | None]:
    """Worker side: a tile's current chunks of every per-pair array (and its mirror's).

    NaN distances mark the pairs still to do (a fresh tile, or new positions after an extension).
    """
    import zarr

    group = zarr.open_group(store=path, mode="r", zarr_format=3)

    def read(rows: slice, cols: slice) -> dict:
        out, damaged = {}, False
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        for name, (dtype, fill) in PAIR_ARRAYS.items():
            try:
                out[name] = np.asarray(group[name][rows, cols])
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
