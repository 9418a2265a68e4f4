"""The all-pairs engine: Dask tasks over a Zarr store, results into a Zarr output."""

from cca_scale.engine.compare import Comparison, compare, plan, submit
from cca_scale.engine.results import load_distances, save_distances
from cca_scale.engine.selection import Item, resolve_axes, resolve_items
from cca_scale.engine.tiles import Tile, iter_tiles, tile_size

__all__ = ["Comparison", "Item", "Tile", "compare", "iter_tiles", "load_distances", "plan",
           "resolve_axes", "resolve_items", "save_distances", "submit", "tile_size"]
