"""Where cca_scale may write: the one rule every output path goes through.

Every writer (``compare``/``save_distances`` outputs, ``export``, ``ingest`` and
``ActivationStore.create``) calls :func:`check_output_target` before writing anything. A path is
written only when nothing is there, or when what is there was written by cca_scale as the same
kind of output ("ours"); ``overwrite`` options only lift a writer's own "same parameters" check,
never this rule. Refused, whatever the options:

- a symbolic link at the path itself (it would be written through or renamed over);
- anything that is not a regular file or a folder (a device such as ``/dev/null``, a FIFO, a
  socket);
- the current working directory, or a folder that contains it;
- an input: the same path, a path inside it, or a folder that contains it;
- a file or folder cca_scale did not write as this kind of output: a non-empty folder, a foreign
  Zarr node, an activation store as a distance output (and the reverse), a file without the
  export's signature.

What counts as ours:

=============  ==============================================================================
kind           signature
=============  ==============================================================================
comparison     a Zarr group whose ``attributes["cca_scale"]`` has ``format`` and ``state`` (an
               interrupted creation, ``state == "creating"``, or a bare group document and
               nothing else, counts as ours)
activations    a Zarr group whose ``attributes["cca_scale"]["kind"] == "activation_store"``
csv            a regular UTF-8 file whose header line starts with the ``row`` column, as
               ``export_distances`` writes it (the weakest signature: CSV has no place for
               metadata, so any CSV whose first column is named ``row`` passes)
npy            a ``.npy`` file (NumPy magic) with, beside it, ``FILE.labels.json`` whose
               ``"format"`` is :data:`NPY_SIDECAR_FORMAT` (the labels file alone, left by an
               interrupted export, also counts)
netcdf         an HDF5/netCDF4 file whose variable ``distance`` has the attribute
               ``cca_scale_metadata``
parquet        a Parquet file whose pandas ``attrs`` hold ``cca_scale_metadata``
=============  ==============================================================================

An empty folder counts as absent for the folder kinds (nothing there can be lost). Local paths get
every check; fsspec URLs (``s3://``, ``memory://``) and ``zarr.storage.MemoryStore`` get the
overlap and signature checks (symbolic links, devices and the working directory do not exist
there).

The module also turns the file system's refusals while writing (disk full, read-only, no
permission) into one :class:`~cca_scale.errors.StorageWriteError` (:func:`storage_errors`), and
removes what a failed creation wrote (:func:`creating`, :func:`remove_written`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from typing import Any, Iterable, Iterator

from cca_scale.errors import CcaScaleError, StorageWriteError, UnsafeOutputError
from cca_scale.store import layout, zarr_io
from cca_scale.store.location import Location
from cca_scale.store.names import listed

__all__ = ["EXPORT_META_ATTR", "NPY_SIDECAR", "NPY_SIDECAR_FORMAT", "OUTPUT_KINDS",
           "check_output_target", "creating", "remove_written", "storage_errors"]

#: Kinds of output: two Zarr groups, then the export formats (one file each; npy two).
OUTPUT_KINDS = ("comparison", "activations", "csv", "npy", "netcdf", "parquet")
_FOLDER_KINDS = ("comparison", "activations")

#: netCDF attribute / pandas ``attrs`` key that every netCDF and Parquet export carries.
EXPORT_META_ATTR = "cca_scale_metadata"
#: The labels file written beside an ``.npy`` export, and its ``"format"`` string.
NPY_SIDECAR = ".labels.json"
NPY_SIDECAR_FORMAT = "cca_scale distance matrix, values in the .npy beside this file"

_THING = {"comparison": "comparison output", "activations": "activation store",
          "csv": "CSV export", "npy": "npy export", "netcdf": "netCDF export",
          "parquet": "Parquet export"}
_ADVICE = {"comparison": "choose another --out", "activations": "choose another store path",
           **dict.fromkeys(("csv", "npy", "netcdf", "parquet"), "choose another -o FILE")}
_MAGIC = {"npy": b"\x93NUMPY", "netcdf": b"\x89HDF\r\n\x1a\n", "parquet": b"PAR1"}


def check_output_target(path: Any, *, kind: str, inputs: Iterable[Any] = (),
                        storage_options: dict | None = None) -> str:
    """Check that cca_scale may write an output of ``kind`` at ``path``; nothing is written.

    Parameters
    ----------
    path : str, os.PathLike, zarr.storage.MemoryStore or Location
        The output. Export kinds are local files; the others may also be fsspec URLs.
    kind : {'comparison', 'activations', 'csv', 'npy', 'netcdf', 'parquet'}
        What will be written there (see the module docstring for each signature).
    inputs : iterable of str, os.PathLike or None
        Paths the writer reads (e.g. the activation store): the output may not be one of them,
        lie inside one, or contain one. None entries (in-memory inputs) are skipped.
    storage_options : dict, optional
        fsspec options for a URL ``path``.

    Returns
    -------
    str
        ``'absent'`` (nothing there, or an empty folder for the folder kinds) or ``'ours'`` (an
        output of this kind written by cca_scale, which the caller may reuse or replace).

    Raises
    ------
    UnsafeOutputError
        Anything else is there (see the module docstring); the message says what, that it was
        not touched, and what to do.
    """
    if kind not in OUTPUT_KINDS:
        raise CcaScaleError(f"The 'kind' parameter must be one of {list(OUTPUT_KINDS)}. "
                            f"Got {kind!r} instead.")
    if kind in _FOLDER_KINDS:
        location = path if isinstance(path, Location) else Location.from_user(path,
                                                                              storage_options)
    else:
        location = Location("local", os.path.abspath(os.fspath(path)))
    if location.kind == "local":
        _check_place(location.path, kind)
    _check_overlap(location, inputs, kind)
    if kind in _FOLDER_KINDS:
        return _group_state(location, kind)
    if kind == "npy":
        return _npy_state(location.path)
    return _file_state(location.path, kind)


# -- refusals -------------------------------------------------------------------------------------
def _refuse(shown: str, what: str, kind: str) -> UnsafeOutputError:
    return UnsafeOutputError(
        f"{shown!r} {what}; refusing to write the {_THING[kind]} there. Nothing there was "
        f"touched; {_ADVICE[kind]}."
    )


def _check_place(path: str, kind: str) -> None:
    """Symbolic link, special file, working directory: refused whatever is behind them."""
    if os.path.islink(path):
        raise _refuse(path, f"is a symbolic link (to {os.readlink(path)!r})", kind)
    if os.path.lexists(path):
        mode = os.lstat(path).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            raise _refuse(path, f"is a {_special(mode)}, not a regular file or folder", kind)
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:  # the working directory was deleted: nothing of it to protect
        return
    real = os.path.realpath(path)
    if real == cwd:
        raise _refuse(path, "is the current working directory", kind)
    if _inside(cwd, real, os.sep):
        raise _refuse(path, "contains the current working directory", kind)


def _special(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def _inside(child: str, parent: str, sep: str) -> bool:
    return child != parent and child.startswith(parent.rstrip(sep) + sep)


def _check_overlap(location: Location, inputs: Iterable[Any], kind: str) -> None:
    """The output may not be an input, lie inside one, or contain one."""
    for item in inputs:
        if item is None:
            continue
        other = item if isinstance(item, Location) else Location.from_user(item)
        if location.kind != other.kind:
            continue
        if location.kind == "memory":  # one in-memory store, or two unrelated ones
            out, inp, sep = location.memory_token, other.memory_token, "/"
        elif location.kind == "local":
            out, inp, sep = os.path.realpath(location.path), os.path.realpath(other.path), os.sep
        else:
            out, inp, sep = location.path.rstrip("/"), other.path.rstrip("/"), "/"
        shown = str(location)
        if out == inp:
            raise _refuse(shown, f"is the input {str(other)!r} itself", kind)
        if _inside(out, inp, sep):
            raise _refuse(shown, f"is inside the input {str(other)!r}", kind)
        if _inside(inp, out, sep):
            raise _refuse(shown, f"contains the input {str(other)!r}", kind)


# -- Zarr groups ----------------------------------------------------------------------------------
def _group_state(location: Location, kind: str) -> str:
    shown, thing = str(location), _THING[kind]
    if location.kind == "local":
        if not os.path.lexists(location.path):
            return "absent"
        if not os.path.isdir(location.path):
            raise _refuse(shown, f"is a file, not a cca_scale {thing}", kind)
        names = sorted(os.listdir(location.path))  # the top level is enough
    zstore = location.zarr_store(read_only=True)
    try:
        if location.kind != "local":
            names = sorted(zarr_io.list_prefix(zstore, "", limit=2))
        raw = zarr_io.get_bytes(zstore, "zarr.json") if names else None
        doc = None if raw is None else json.loads(raw)
    except (OSError, ValueError) as exc:  # unreadable, or not JSON
        raise _refuse(shown, f"holds a zarr.json that cannot be read ({exc}), so it is not a "
                             f"cca_scale {thing}", kind) from exc
    if not names:
        return "absent"
    if doc is None:
        where = "is a folder" if location.kind == "local" else "holds keys"
        raise _refuse(shown, f"{where} ({listed(names, 3)}) holding data that is not a cca_scale "
                             f"{thing}", kind)
    if not isinstance(doc, dict) or doc.get("node_type") != "group":
        raise _refuse(shown, f"is a Zarr node that is not a cca_scale {thing}", kind)
    attributes = doc.get("attributes") or {}
    meta = attributes.get(layout.KEY) if isinstance(attributes, dict) else None
    found = _marker(meta)
    if found == kind:
        return "ours"
    if found is not None:
        raise _refuse(shown, f"is a cca_scale {_THING[found]}, not {_a(thing)}", kind)
    if kind == "comparison" and not attributes and set(names) <= {"zarr.json", "lock",
                                                                  "lock/zarr.json"}:
        # An interrupted creation: the group document (and maybe the run's lease) was written,
        # nothing else.
        return "ours"
    raise _refuse(shown, f"is a Zarr group holding data that is not a cca_scale {thing}", kind)


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _marker(meta: Any) -> str | None:
    """The kind of cca_scale output an ``attributes["cca_scale"]`` entry marks, if any."""
    if not isinstance(meta, dict):
        return None
    if meta.get("kind") == "activation_store":
        return "activations"
    if "kind" not in meta and "format" in meta and "state" in meta:
        return "comparison"
    return None


# -- exported files -------------------------------------------------------------------------------
def _file_state(path: str, kind: str, *, signature: str | None = None) -> str:
    if not os.path.lexists(path):
        return "absent"
    thing = _THING[kind]
    if os.path.isdir(path):
        raise _refuse(path, f"is a folder, not a cca_scale {thing}", kind)
    reason = _not_ours(path, signature or kind)
    if reason is not None:
        raise _refuse(path, f"is a file that is not a cca_scale {thing} ({reason})", kind)
    return "ours"


def _npy_state(path: str) -> str:
    sidecar = path + NPY_SIDECAR
    _check_place(sidecar, "npy")
    values = _file_state(path, "npy")
    labels = _file_state(sidecar, "npy", signature="npy-labels")
    if values == "ours" and labels == "absent":
        raise _refuse(path, f"is a .npy file without the {NPY_SIDECAR} file cca_scale export "
                            "writes beside it", "npy")
    return "absent" if values == labels == "absent" else "ours"


def _not_ours(path: str, signature: str) -> str | None:
    """None when ``path`` carries the export's signature, else why not."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if signature in _MAGIC and not head.startswith(_MAGIC[signature]):
        return f"not a {signature} file"
    if signature == "csv":
        try:
            first = head.decode("utf-8").splitlines()[0] if head else ""
        except UnicodeDecodeError:
            return "not UTF-8 text"
        if first != "row" and not first.startswith("row,"):
            return "its header does not start with the 'row' column"
        return None
    if signature == "npy-labels":
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as exc:
            return f"not a JSON labels file: {exc}"
        if not isinstance(doc, dict) or doc.get("format") != NPY_SIDECAR_FORMAT:
            return "its 'format' is not cca_scale's"
        return None
    if signature == "netcdf":
        return _netcdf_reason(path)
    if signature == "parquet":
        return _parquet_reason(path)
    return None  # npy: the magic is the signature, with the labels file beside it


def _netcdf_reason(path: str) -> str | None:
    try:
        import netCDF4
    except ImportError:
        return "netCDF4 is not installed, so it cannot be checked"
    try:
        with netCDF4.Dataset(path, "r") as ds:
            variable = ds.variables.get("distance")
            if variable is None or EXPORT_META_ATTR not in variable.ncattrs():
                return f"no variable 'distance' with the attribute {EXPORT_META_ATTR!r}"
    except OSError as exc:
        return f"cannot be read as netCDF: {exc}"
    return None


def _parquet_reason(path: str) -> str | None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return "pyarrow is not installed, so it cannot be checked"
    try:
        metadata = pq.read_schema(path).metadata or {}
        attrs = json.loads(metadata.get(b"PANDAS_ATTRS", b"{}"))
    except (OSError, ValueError) as exc:  # pyarrow's errors are OSError/ValueError subclasses
        return f"cannot be read as Parquet: {exc}"
    if not isinstance(attrs, dict) or EXPORT_META_ATTR not in attrs:
        return f"its pandas attrs do not hold {EXPORT_META_ATTR!r}"
    return None


# -- failed writes --------------------------------------------------------------------------------
_STORAGE_ERRNOS = {
    errno.ENOSPC: ("no space left on device", "free space or "),
    errno.EDQUOT: ("disk quota exceeded", "free space or "),
    errno.EROFS: ("read-only file system", ""),
    errno.EACCES: ("permission denied", "check the permissions or "),
    errno.EPERM: ("operation not permitted", "check the permissions or "),
}


@contextlib.contextmanager
def storage_errors(where: Any, *, kind: str) -> Iterator[None]:
    """Turn a file system refusal inside the block into one :class:`StorageWriteError`.

    Disk full (ENOSPC, EDQUOT), read-only (EROFS) and permission (EACCES, EPERM) errors become
    ``"cannot write to WHERE: no space left on device (ENOSPC); free space or choose another
    --out"``, chained to the original ``OSError``. Other errors pass through unchanged. Cleaning
    up what was half-written is the caller's job (in an ``except`` outside this block).
    """
    try:
        yield
    except OSError as exc:
        found = _STORAGE_ERRNOS.get(exc.errno)
        if found is None:
            raise
        reason, fix = found
        raise StorageWriteError(
            f"cannot write to {str(where)}: {reason} ({errno.errorcode[exc.errno]}); "
            f"{fix}{_ADVICE[kind]}."
        ) from exc


@contextlib.contextmanager
def creating(path: Any, *, kind: str, storage_options: dict | None = None) -> Iterator[bool]:
    """Create a new output at ``path`` inside the block, all or nothing.

    Yields whether the local folder is absent now (the block will make it). When the file
    system refuses a write in the block, what the block wrote is removed (the folder too if the
    block made it) and one :class:`StorageWriteError` is raised (see :func:`storage_errors`).
    """
    location = path if isinstance(path, Location) else Location.from_user(path, storage_options)
    made_root = location.kind == "local" and not os.path.lexists(location.path)
    try:
        with storage_errors(location, kind=kind):
            yield made_root
    except StorageWriteError:
        remove_written(location, keep_root=not made_root)
        raise


def remove_written(location: Location, *, keep_root: bool) -> None:
    """Delete a Zarr node that cca_scale created at ``location`` and that is to be discarded.

    On local disk only the files the Zarr store lists are removed, then the folders left empty;
    the root folder only when ``keep_root`` is False (it did not exist before). Best effort:
    errors (a read-only file system) are ignored, so the caller's own error stays the one shown.
    """
    try:
        if location.kind != "local":
            zarr_io.delete_dir(location.zarr_store(read_only=False), "")
            return
        root = location.path
        if not os.path.isdir(root) or os.path.islink(root):
            return
        zstore = location.zarr_store(read_only=True)
        for key in zarr_io.list_prefix(zstore, ""):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(root, key))
        for folder, _, _ in os.walk(root, topdown=False):
            if folder != root or not keep_root:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only succeeds on an empty folder
    except (OSError, CcaScaleError):
        pass
