"""Tiling of the all-pairs computation: pure functions, no Dask.

Tiles are fixed blocks of ``tile`` positions per side. Positions never move: networks added to a
store later get new positions after the old ones, so every old tile keeps its meaning on a rerun.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

from cca_scale.errors import CcaScaleError

__all__ = ["Tile", "block_rows", "choose_tile", "iter_tiles", "tile_size", "tile_memory_bytes",
           "MIN_TILES_PER_SIDE"]

#: The default tile keeps at least this many blocks per side, so even a small sweep is split into
#: several tiles (and a killed run has something to resume).
MIN_TILES_PER_SIDE = 2
#: Share of a worker's memory limit one tile task may plan to use (the default tile size).
TILE_MEMORY_FRACTION = 0.25
#: A tile size asked for explicitly is refused above this share of a worker's memory limit
#: (Dask pauses a worker at 80% and restarts it at 95%).
TILE_MEMORY_LIMIT = 0.6
#: The memory the default tile plans for when the workers' limit is unknown.
FALLBACK_TILE_MEMORY = 1 << 30


@dataclass(frozen=True)
class Tile:
    """Block ``(bi, bj)`` of the output: rows ``[r0, r1)``, columns ``[c0, c1)``.

    ``mirrored`` tiles of a square comparison also fill the transposed block ``(bj, bi)`` from the
    same cross products (PWCCA's two directions come from one SVD).
    """

    bi: int
    bj: int
    r0: int
    r1: int
    c0: int
    c1: int
    mirrored: bool

    @property
    def diagonal(self) -> bool:
        return self.mirrored and self.bi == self.bj

    @property
    def n_pairs(self) -> int:
        """Directed pairs this tile fills (diagonal entries excluded)."""
        rows, cols = self.r1 - self.r0, self.c1 - self.c0
        if self.diagonal:
            return rows * (rows - 1)
        return rows * cols * (2 if self.mirrored else 1)


def n_blocks(n: int, tile: int) -> int:
    return max(1, math.ceil(n / tile))


def iter_tiles(n_rows: int, n_cols: int, tile: int, *, square: bool) -> Iterator[Tile]:
    """All tiles, row-major. ``square``: rows and columns are the same items, only ``bi <= bj``.

    >>> [(t.bi, t.bj) for t in iter_tiles(5, 5, 2, square=True)]
    [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    for bi in range(n_blocks(n_rows, tile)):
        for bj in range(bi if square else 0, n_blocks(n_cols, tile)):
            yield Tile(bi, bj, bi * tile, min((bi + 1) * tile, n_rows),
                       bj * tile, min((bj + 1) * tile, n_cols), mirrored=square)


def tile_memory_bytes(tile: int, *, max_rank: int, max_neurons: int, chunk_rows: int,
                      itemsize: int = 8) -> int:
    """Peak working memory of one tile task, in bytes.

    Stacked orthonormal blocks of both sides (``2 * tile * rank * chunk_rows``), one raw block
    (``chunk_rows * n_neurons``), the cross product (``(tile * rank)^2``) and the bases
    (``2 * tile * (rank * n_neurons + n_neurons^2)``, the second term for the svcca variant).
    """
    per_side = tile * max_rank
    return itemsize * (2 * per_side * chunk_rows + chunk_rows * max_neurons + per_side**2
                       + 2 * tile * (max_rank * max_neurons + max_neurons**2))


def tile_size(n_items: int, *, max_rank: int, max_neurons: int, chunk_rows: int,
              memory_bytes: int, itemsize: int = 8) -> int:
    """Default networks per tile side: the largest that fits ``memory_bytes``, never below 1, and
    small enough that each side has at least :data:`MIN_TILES_PER_SIDE` blocks when it can.
    """
    cap = max(1, math.ceil(n_items / MIN_TILES_PER_SIDE))
    best = 1
    for b in range(1, cap + 1):
        if tile_memory_bytes(b, max_rank=max_rank, max_neurons=max_neurons,
                             chunk_rows=chunk_rows, itemsize=itemsize) <= memory_bytes:
            best = b
        else:
            break
    return best


def block_rows(stored_chunk_rows: Iterable[int], preferred: int) -> int:
    """Datapoints per streamed block: a multiple of the stored chunk rows near ``preferred``.

    A block that is not aligned to the store's chunks decodes some chunks twice.
    """
    stored = max((int(r or 0) for r in stored_chunk_rows), default=0)
    if not stored:
        return preferred
    return max(stored, (preferred // stored) * stored)


def choose_tile(requested: int | None, *, n_items: int, max_neurons: int, chunk_rows: int,
                itemsize: int, memory: int, n_pair_arrays: int) -> int:
    """The tile size in force: ``requested`` (checked against the workers' memory) or the default.

    ``memory`` is a worker's memory limit in bytes (0: unknown). A tile larger than the
    comparison is the whole comparison (its output chunks are never larger than the matrix). A
    requested tile whose task would need more than :data:`TILE_MEMORY_LIMIT` of ``memory``
    (working set plus ``n_pair_arrays`` output blocks and their mirrors) is refused, naming one
    that fits.
    """
    sizes = dict(max_rank=max_neurons, max_neurons=max_neurons, chunk_rows=chunk_rows,
                 itemsize=itemsize)
    if requested is None:
        budget = int(memory * TILE_MEMORY_FRACTION) if memory else FALLBACK_TILE_MEMORY
        return tile_size(n_items, memory_bytes=budget, **sizes)
    tile = min(requested, n_items)
    need = tile_memory_bytes(tile, **sizes) + 2 * tile * tile * 8 * n_pair_arrays
    if memory and need > TILE_MEMORY_LIMIT * memory:
        fits = tile_size(n_items, memory_bytes=int(TILE_MEMORY_LIMIT * memory), **sizes)
        raise CcaScaleError(
            f"tile={requested} needs about {need / 2**30:.1f} GiB per tile task, more than "
            f"{TILE_MEMORY_LIMIT:.0%} of a worker's {memory / 2**30:.1f} GiB memory limit. Use "
            f"tile={fits} or less (--tile {fits}), or leave it out: the default fits the workers."
        )
    return tile
