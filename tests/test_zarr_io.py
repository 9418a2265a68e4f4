"""``cca_scale.store.zarr_io`` is the one place that touches Zarr internals, and it works."""

import ast
from pathlib import Path

import zarr

from cca_scale.store import zarr_io

PACKAGE = Path(__file__).resolve().parents[1] / "cca_scale"


def _imports_zarr_core(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(alias.name == "zarr.core" or alias.name.startswith("zarr.core.")
                   for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "zarr.core" or node.module.startswith("zarr.core."):
                return True
            if node.module == "zarr" and any(alias.name == "core" for alias in node.names):
                return True
    return False


def test_only_zarr_io_imports_zarr_internals():
    importers = sorted(str(path.relative_to(PACKAGE.parent))
                       for path in PACKAGE.rglob("*.py")
                       if _imports_zarr_core(ast.parse(path.read_text())))
    assert importers == ["cca_scale/store/zarr_io.py"]


def test_keys_round_trip_on_a_memory_store():
    zstore = zarr.storage.MemoryStore()
    assert zarr_io.get_bytes(zstore, "a/b") is None
    zarr_io.set_bytes(zstore, "a/b", b"one")
    zarr_io.set_bytes_if_not_exists(zstore, "a/b", b"two")  # already there: unchanged
    zarr_io.set_bytes_if_not_exists(zstore, "a/c", b"three")
    assert zarr_io.get_bytes(zstore, "a/b") == b"one"
    assert zarr_io.exist_many(zstore, ["a/b", "a/c", "a/d"]) == [True, True, False]
    assert sorted(zarr_io.list_prefix(zstore, "a/")) == ["a/b", "a/c"]
    assert len(zarr_io.list_prefix(zstore, "", limit=1)) == 1
    zarr_io.delete(zstore, "a/c")
    assert not zarr_io.exists(zstore, "a/c")
    zarr_io.delete_dir(zstore, "a")
    assert zarr_io.list_prefix(zstore, "") == []


def test_nodes_move_with_their_chunks():
    zstore = zarr.storage.MemoryStore()
    root = zarr.open_group(zstore, mode="w", zarr_format=3)
    root.create_array("src/x", shape=(4,), chunks=(2,), dtype="f8")[:] = [1.0, 2.0, 3.0, 4.0]
    assert zarr_io.child_names(zstore, "src") == ["x"]
    zarr_io.move_node(zstore, "src/x", "dst/x")
    assert not zarr_io.node_exists(zstore, "src/x") and zarr_io.node_exists(zstore, "dst/x")
    assert zarr.open_array(zstore, path="dst/x", mode="r")[:].tolist() == [1.0, 2.0, 3.0, 4.0]
    zarr_io.delete_node(zstore, "dst")
    assert not zarr_io.node_exists(zstore, "dst/x")
