"""Tiling is pure: every pair is covered exactly once, and the default fits its memory budget."""

import itertools

import pytest

from cca_scale.engine.tiles import MIN_TILES_PER_SIDE, iter_tiles, tile_memory_bytes, tile_size


@pytest.mark.parametrize("n,tile", [(1, 1), (5, 1), (5, 2), (7, 3), (8, 4), (9, 9), (10, 64)])
def test_square_tiles_cover_every_directed_pair_exactly_once(n, tile):
    seen = []
    for t in iter_tiles(n, n, tile, square=True):
        assert t.bi <= t.bj
        for i, j in itertools.product(range(t.r0, t.r1), range(t.c0, t.c1)):
            if t.diagonal and j < i:
                continue  # the diagonal tile fills (j, i) from (i, j)
            seen.append((i, j))
            if i != j:
                seen.append((j, i))
    assert sorted(seen) == sorted(itertools.product(range(n), range(n)))
    assert sum(t.n_pairs for t in iter_tiles(n, n, tile, square=True)) == n * (n - 1)


@pytest.mark.parametrize("rows,cols,tile", [(3, 5, 2), (6, 1, 4), (1, 9, 2)])
def test_rectangular_tiles_partition_the_matrix(rows, cols, tile):
    cells = [(i, j) for t in iter_tiles(rows, cols, tile, square=False)
             for i in range(t.r0, t.r1) for j in range(t.c0, t.c1)]
    assert sorted(cells) == sorted(itertools.product(range(rows), range(cols)))


def test_tile_positions_do_not_move_when_networks_are_added():
    before = {(t.bi, t.bj): (t.r0, t.r1, t.c0, t.c1) for t in iter_tiles(8, 8, 4, square=True)}
    after = {(t.bi, t.bj): (t.r0, t.r1, t.c0, t.c1) for t in iter_tiles(13, 13, 4, square=True)}
    assert all(after[k] == v for k, v in before.items())


def test_default_tile_fits_budget_and_keeps_several_tiles():
    kw = dict(max_rank=256, max_neurons=256, chunk_rows=4096)
    budget = 512 << 20
    b = tile_size(1000, memory_bytes=budget, **kw)
    assert tile_memory_bytes(b, **kw) <= budget < tile_memory_bytes(b + 1, **kw)
    assert tile_size(32, memory_bytes=1 << 40, **kw) == 32 // MIN_TILES_PER_SIDE
    assert tile_size(1000, memory_bytes=1, **kw) == 1  # never below one network
