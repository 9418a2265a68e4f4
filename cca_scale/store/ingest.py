"""Filling a store from files: one ``.npy``/``.npz`` file, or a CSV manifest of many.

A manifest has the columns ``network, layer, path`` and optionally ``step``; every further column
is a network attribute (numbers where every value of the column is a number, text otherwise;
empty cells are left out). Relative paths are relative to the manifest's directory. A manifest is
ingested all or nothing: every row is checked and staged, then all rows are committed together.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from cca_scale.core.conv import check_conv_mode, flatten_conv
from cca_scale.errors import ActivationError, CcaScaleError, StoreConflictError, StoreError
from cca_scale.store.activation_store import ActivationStore
from cca_scale.store.names import check_attrs, check_name, check_step
from cca_scale.store.targets import check_output_target
from cca_scale.store.writer import default_chunk_rows

__all__ = [
    "ManifestRow",
    "ingest_file",
    "ingest_manifest",
    "open_or_create",
    "parse_attr",
    "parse_value",
    "read_activations",
    "read_manifest",
]

REQUIRED_COLUMNS = ("network", "layer", "path")
OPTIONAL_COLUMNS = ("step",)


def parse_value(text: str) -> int | float | str:
    """A command-line or CSV value: an int or a finite float when it reads as one, else text."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def parse_attr(item: str) -> tuple[str, Any]:
    """``'lr=0.01'`` -> ``('lr', 0.01)``."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise StoreError(f"An attribute must be given as key=value (e.g. lr=0.01); got {item!r}.")
    return key.strip(), parse_value(value)


def read_activations(path: str, *, key: str | None = None, load: bool = True):
    """Open activations saved with NumPy: ``.npy`` memory-mapped (never loaded whole), or one
    array of an ``.npz`` (``key`` names it when the archive holds several).

    With ``load=False`` only check that the file can be read (header, archive members) and
    return None.

    Raises
    ------
    ActivationError
        Missing, unreadable or unsupported file (the message gives the path).
    """
    shown = repr(str(path))
    if not os.path.exists(path):
        raise ActivationError(f"cannot read activations from {shown}: no such file.")
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix not in (".npy", ".npz"):
        raise ActivationError(
            f"cannot read activations from {shown}: unsupported file type {suffix or '(none)'!r}. "
            "Save activations with numpy.save (.npy) or numpy.savez (.npz)."
        )
    try:
        if suffix == ".npy":
            acts = np.load(path, mmap_mode="r", allow_pickle=False)
            return acts if load else None
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None and len(names) == 1:
                key = names[0]
            if key not in names:
                raise ActivationError(
                    f"cannot read activations from {shown}: "
                    + (f"it has no array {key!r}; " if key is not None else "")
                    + f"it holds arrays {names}; name one with --key (key=)."
                )
            return archive[key] if load else None
    except ActivationError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise ActivationError(f"cannot read activations from {shown}: {exc}") from exc


def _conv_blocks(acts, mode: str, rows: int) -> Iterator[Any]:
    """flatten_conv applied block by block (the same rows, in the same order, as on the whole)."""
    for start in range(0, acts.shape[0], rows):
        yield flatten_conv(np.asarray(acts[start:start + rows]), mode)


def _source(acts, conv: str | None):
    if conv is None or acts.ndim <= 2:
        return acts
    check_conv_mode(conv, name="conv", where=None)
    width = int(np.prod(acts.shape[1:]))
    rows = default_chunk_rows(width, acts.dtype.itemsize if acts.dtype.kind in "biuf" else 8)
    return _conv_blocks(acts, conv, rows)


def open_or_create(path, *, n_datapoints: int | None = None, fingerprint: str | None = None,
                   storage_options: dict | None = None) -> tuple[ActivationStore, bool]:
    """Open the store at ``path`` for writing, creating it if nothing is there yet.

    Returns ``(store, created)``. An existing store must agree with ``n_datapoints`` and
    ``fingerprint`` when they are given. Anything else at ``path`` is refused with
    :class:`~cca_scale.errors.UnsafeOutputError` (see
    :func:`cca_scale.store.targets.check_output_target`).
    """
    if check_output_target(path, kind="activations", storage_options=storage_options) == "absent":
        return ActivationStore.create(path, n_datapoints=n_datapoints, fingerprint=fingerprint,
                                      storage_options=storage_options), True
    store = ActivationStore.open(path, mode="a", storage_options=storage_options)
    if n_datapoints is not None and store.n_datapoints is None:
        store.record_datapoints(n_datapoints, fingerprint)
    if n_datapoints is not None and store.n_datapoints != n_datapoints:
        raise StoreConflictError(
            f"The store at {store.location} holds {store.n_datapoints} datapoints per layer, not "
            f"{n_datapoints}."
        )
    if fingerprint is not None and store.fingerprint not in (None, fingerprint):
        raise StoreConflictError(
            f"The store at {store.location} has dataset fingerprint {store.fingerprint!r}, not "
            f"{fingerprint!r}."
        )
    return store, False


def ingest_file(store: ActivationStore, network: str, layer: str, path: str, *,
                step: int | None = None, attrs: dict | None = None, overwrite: bool = False,
                key: str | None = None, conv: str | None = None, timesteps: bool = False,
                chunk_rows: int | None = None, dtype: Any = None,
                fingerprint: str | None = None) -> None:
    """Add one layer from a ``.npy``/``.npz`` file, streamed in row blocks.

    ``conv`` (``'mean'`` or ``'positions'``) reduces channels-last convolutional activations
    ``(n, *spatial, channels)`` with :func:`cca_scale.flatten_conv`, block by block.
    """
    check_name(network, kind="network")
    check_name(layer, kind="layer")
    check_conv_mode(conv, name="conv", where=None, allow_none=True)
    acts = read_activations(path, key=key)
    with store.transaction(fingerprint=fingerprint) as tx:
        tx.add(network, layer, _source(acts, conv), step=step, attrs=attrs, overwrite=overwrite,
               chunk_rows=chunk_rows, dtype=dtype, timesteps=timesteps, source=str(path))


@dataclass
class ManifestRow:
    """One checked manifest row (``line`` is its line number in the file, header = 1)."""

    line: int
    network: str
    layer: str
    path: str
    step: int | None
    attrs: dict = field(default_factory=dict)


def read_manifest(manifest: str) -> list[ManifestRow]:
    """Read and check a manifest CSV; nothing is opened but the CSV itself.

    Raises
    ------
    StoreError
        Missing columns, no rows, a bad step, conflicting attribute values for one network.
    InvalidNameError
        A network, layer or attribute name outside the allowed form (the line is given).
    StoreConflictError
        The same (network, layer, step) on two lines.
    """
    import pandas as pd

    shown = repr(str(manifest))
    if not os.path.isfile(manifest):
        raise StoreError(f"cannot read the manifest {shown}: no such file.")
    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read the manifest {shown}: {exc}") from exc
    table = table.fillna("")  # short lines
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise StoreError(
            f"the manifest {shown} lacks the column(s) {missing}; it needs 'network', 'layer' and "
            f"'path' (optionally 'step', then attribute columns). Found columns: "
            f"{list(table.columns)}."
        )
    if table.empty:
        raise StoreError(f"the manifest {shown} has no rows.")
    base = os.path.dirname(os.path.abspath(manifest))
    extra = [c for c in table.columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    # Type each attribute column once: numbers if every non-empty value is one, text otherwise.
    typed: dict[str, list[Any]] = {}
    for column in extra:
        values = [v.strip() for v in table[column]]
        parsed = [parse_value(v) if v else None for v in values]
        numeric = all(isinstance(p, (int, float)) for p in parsed if p is not None)
        typed[column] = parsed if numeric else [v if v else None for v in values]
    rows, seen, network_attrs = [], {}, {}
    for i in range(len(table)):
        line = i + 2
        try:
            record = table.iloc[i]
            network = check_name(record["network"].strip(), kind="network")
            layer = check_name(record["layer"].strip(), kind="layer")
            step_text = record["step"].strip() if "step" in table.columns else ""
            step = None
            if step_text:
                value = parse_value(step_text)
                step = check_step(value if isinstance(value, int) else step_text)
            path = record["path"].strip()
            if not path:
                raise StoreError("the 'path' cell is empty.")
            path = os.path.join(base, os.path.expanduser(path))
            attrs = check_attrs({c: typed[c][i] for c in extra if typed[c][i] is not None})
        except CcaScaleError as exc:
            raise type(exc)(f"manifest {shown}, line {line}: {exc}") from exc
        key = (network, layer, step)
        if key in seen:
            raise StoreConflictError(
                f"manifest {shown}: network {network!r}, layer {layer!r}"
                + (f", step {step}" if step is not None else "")
                + f" is on line {seen[key]} and again on line {line}."
            )
        seen[key] = line
        for name, value in attrs.items():
            before = network_attrs.setdefault(network, {})
            if name in before and before[name][0] != value:
                raise StoreError(
                    f"manifest {shown}: network {network!r} has {name}={before[name][0]!r} on line "
                    f"{before[name][1]} but {name}={value!r} on line {line}; a network's "
                    "attributes must agree on every line."
                )
            before.setdefault(name, (value, line))
        rows.append(ManifestRow(line, network, layer, path, step, attrs))
    return rows


def ingest_manifest(store: ActivationStore, manifest: str, *, overwrite: bool = False,
                    conv: str | None = None, timesteps: bool = False,
                    chunk_rows: int | None = None, dtype: Any = None,
                    fingerprint: str | None = None,
                    progress: Callable[[ManifestRow | None, int, int], None] | None = None,
                    ) -> list[ManifestRow]:
    """Ingest every row of a manifest, all or nothing; returns the rows.

    The manifest is checked first (columns, names, duplicates, attributes, that every file can be
    opened). Each file is then checked and staged in turn: ``progress(row, done, total)`` is
    called once before the first (``row`` None, ``done`` 0) and after each.
    If any row fails, everything staged is deleted and the store is left as it was; otherwise
    all rows are committed together.
    """
    check_conv_mode(conv, name="conv", where=None, allow_none=True)
    rows = read_manifest(manifest)

    def opened(row, load):
        try:
            return read_activations(row.path, load=load)
        except ActivationError as exc:
            raise ActivationError(f"manifest {str(manifest)!r}, line {row.line}: {exc}") from exc

    for row in rows:  # check that every file can be read before writing anything
        opened(row, load=False)
    if progress is not None:
        progress(None, 0, len(rows))
    with store.transaction(fingerprint=fingerprint) as tx:
        for done, row in enumerate(rows, start=1):
            tx.add(row.network, row.layer, _source(opened(row, load=True), conv), step=row.step,
                   attrs=row.attrs, overwrite=overwrite, chunk_rows=chunk_rows, dtype=dtype,
                   timesteps=timesteps, source=row.path)
            if progress is not None:
                progress(row, done, len(rows))
    return rows
