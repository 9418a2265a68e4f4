"""What an activation store holds: its networks, layers and arrays, found and opened with care.

Listings come from the nodes' metadata documents, each checked by :mod:`cca_scale.store.documents`
(writes in progress are left out, damage raises): networks in insertion order (``created_ns``,
ties broken by name), a network's layers in the order they were first written, a layer's arrays
by training step. A name that is not there raises :class:`~cca_scale.errors.NetworkNotFoundError`
or :class:`~cca_scale.errors.LayerNotFoundError` with what the store does hold. The same
:class:`Catalog` opens :class:`~cca_scale.store.reader.LayerReader` objects on what it finds,
checks every array's chunks (``verify``) and fingerprints what a computation read.
"""

from __future__ import annotations

import asyncio
import contextlib

import hashlib
import json
from typing import Any, Iterable

import zarr

from cca_scale.errors import LayerNotFoundError, NetworkNotFoundError, StoreError
from cca_scale.store import documents, layout, zarr_io
from cca_scale.store.location import Location
from cca_scale.store.names import check_name, check_step, check_timesteps_index, listed
from cca_scale.store.reader import LayerReader

__all__ = ["Catalog", "open_root"]


def open_root(location: Location, zstore, mode: str) -> zarr.Group:
    """The root group, after checking its document (FileNotFoundError when there is none)."""
    where = documents.shown(location, "zarr.json")
    doc = documents.read_document(zstore, location, "")
    if doc is None:
        if any(zarr_io.node_exists(zstore, group) for group in (layout.NETWORKS, layout.STAGING)):
            raise documents.damaged(where, "the store's root document is missing, though the "
                                           "folder holds an activation store's groups "
                                           f"({layout.NETWORKS}/, {layout.STAGING}/)")
        raise FileNotFoundError(where)
    documents.root_meta(doc, where, location)
    try:
        return zarr.open_group(zstore, mode="r" if mode == "r" else "r+", zarr_format=3)
    except (FileNotFoundError, zarr.errors.NodeTypeValidationError):
        raise FileNotFoundError(where) from None  # deleted since
    except Exception as exc:
        raise documents.damaged(where, f"Zarr cannot open the group ({type(exc).__name__}: "
                                       f"{exc})") from None


class Catalog:
    """The networks, layers and arrays of the store ``zstore`` at ``location`` (read only)."""

    def __init__(self, zstore, location: Location):
        self.zstore = zstore
        self.location = location
        self._memo: dict | None = None  # a snapshot's documents and arrays, while one is open

    @contextlib.contextmanager
    def snapshot(self):
        """Within the block, each document and array is read once and remembered: one
        consistent view of the store, and one round trip per node instead of one per question
        (resolving a comparison asks about each network several times). Nested blocks share
        the outer one's view."""
        if self._memo is not None:
            yield self
            return
        self._memo = {}
        try:
            yield self
        finally:
            self._memo = None

    def _remembered(self, key: tuple, read):
        if self._memo is None:
            return read()
        if key not in self._memo:
            self._memo[key] = read()
        return self._memo[key]

    def prefetch(self, networks: list[str], layers: list[str] | None = None) -> None:
        """Within a :meth:`snapshot`, read the documents of ``networks`` (their nodes and layer
        lists) and, with ``layers``, of those layers (their array lists), all concurrently in
        one round trip, instead of one network after another. Anything that fails to read is
        left out, to be read (and reported) where it is asked for."""
        if self._memo is None:
            return
        networks = [check_name(n, kind="network") for n in networks]
        layers = None if layers is None else [check_name(la, kind="layer") for la in layers]
        z, where = self.zstore, self.location
        wanted = {("node", layout.network_path(n)): (documents.anode_document, z, where,
                                                      layout.network_path(n), "network")
                  for n in networks}
        if layers is None:
            wanted.update({("children", layout.network_path(n), "layer"): (
                documents.achild_documents, z, where, layout.network_path(n), "layer")
                for n in networks})
        else:
            wanted.update({("children", layout.layer_path(n, la), "array"): (
                documents.achild_documents, z, where, layout.layer_path(n, la), "array")
                for n in networks for la in layers})
        keys = [key for key in wanted if key not in self._memo]
        if not keys:
            return

        async def all_of():
            return await asyncio.gather(*(wanted[k][0](*wanted[k][1:]) for k in keys),
                                        return_exceptions=True)

        for key, found in zip(keys, zarr_io.run(all_of())):
            if not isinstance(found, BaseException):
                self._memo[key] = found

    def prefetch_arrays(self, arrays: list[tuple[str, str, int | None]]) -> None:
        """Within a :meth:`snapshot`, open the activation arrays ``(network, layer, step)`` all
        concurrently, in one round trip (each after its network's, layer's and own documents,
        as :meth:`open_array` does one by one; the first two as this snapshot read them, if it
        did). Anything that fails is left out, to be opened (and reported) where it is asked
        for."""
        if self._memo is None:
            return
        keys = [("array", check_name(n, kind="network"), check_name(la, kind="layer"),
                 check_step(s)) for n, la, s in arrays]  # the keys open_array looks up
        keys = [key for key in dict.fromkeys(keys) if key not in self._memo]
        if not keys:
            return

        async def all_of():
            return await asyncio.gather(*(self._aopen_array(*key[1:]) for key in keys),
                                        return_exceptions=True)

        for key, found in zip(keys, zarr_io.run(all_of())):
            if found is not None and not isinstance(found, BaseException):
                self._memo[key] = found

    def _children(self, prefix: str, kind: str) -> dict[str, dict]:
        """{name: attributes} of the child nodes of ``prefix``, each checked as a ``kind``
        ('network', 'layer', 'array'). Writes in progress are left out; damage raises."""
        return self._remembered(("children", prefix, kind), lambda: documents.child_documents(
            self.zstore, self.location, prefix, kind))

    # -- networks --------------------------------------------------------------------------------
    def network_docs(self) -> list[tuple[str, dict]]:
        """(network, attributes) of every network, in insertion order."""
        entries = []
        for name, doc in self._children(layout.NETWORKS, "network").items():
            info = doc[layout.KEY]
            entries.append((info["created_ns"], name, dict(doc.get("attrs") or {})))
        entries.sort(key=lambda e: (e[0], e[1]))
        return [(name, attrs) for _, name, attrs in entries]

    def network_names(self) -> list[str]:
        return [name for name, _ in self.network_docs()]

    def not_found(self, network: str, names: list[str] | None = None) -> NetworkNotFoundError:
        """The error for a network that is not in the store (``names``: the networks it holds,
        when the caller has them)."""
        names = self.network_names() if names is None else names
        held = (f"It holds {len(names)} networks: {listed(names, 10)}." if names
                else "It holds no networks yet.")
        return NetworkNotFoundError(
            f"network {network!r} is not in the activation store at {self.location}. {held}"
        )

    def select(self, wanted) -> list[str]:
        """The networks named in ``wanted`` (each must exist), in insertion order."""
        wanted = [check_name(n, kind="network") for n in list(wanted)]
        names = self.network_names()
        known = set(names)
        for name in wanted:
            if name not in known:
                raise self.not_found(name, names)
        wanted_set = set(wanted)
        return [name for name in names if name in wanted_set]

    def check_network(self, network: str) -> str:
        """``network``, checked to be a name the store holds."""
        network = check_name(network, kind="network")
        path = layout.network_path(network)
        if self._remembered(("node", path), lambda: documents.node_document(
                self.zstore, self.location, path, "network")) is None:
            raise self.not_found(network)
        return network

    def network_group(self, root: zarr.Group, network: str) -> zarr.Group:
        """The network's group, opened from the store's ``root`` group."""
        network = self.check_network(network)
        try:
            group = root[layout.network_path(network)]
        except KeyError:
            raise self.not_found(network) from None
        if not isinstance(group, zarr.Group):
            raise self.not_found(network)
        return group

    # -- layers and arrays -----------------------------------------------------------------------
    def layer_names(self, network: str) -> list[str]:
        """The network's layer names, in the order they were first written."""
        network = self.check_network(network)
        entries = [(doc[layout.KEY]["created_ns"], name)
                   for name, doc in self._children(layout.network_path(network), "layer").items()]
        return [name for _, name in sorted(entries)]

    def arrays(self, network: str, layer: str) -> tuple[list[int], bool]:
        """(steps, has an array without step) of a layer; raises if there is no such layer."""
        layer = check_name(layer, kind="layer")
        names = self.layer_names(network)
        if layer not in names:
            held = f"Its layers are: {listed(names, 50)}." if names else "It has no layers yet."
            raise LayerNotFoundError(f"network {network!r} has no layer {layer!r}. {held}")
        found = [layout.parse_array_name(name)
                 for name in self._children(layout.layer_path(network, layer), "array")]
        steps = sorted(step for ok, step in found if ok and step is not None)
        return steps, any(ok and step is None for ok, step in found)

    def has_array(self, network: str, layer: str, step: int | None) -> bool:
        network = check_name(network, kind="network")
        layer = check_name(layer, kind="layer")
        step = check_step(step)
        if self._memo is not None:  # within a snapshot: the layer's array list, read once
            try:
                steps, unstepped = self.arrays(network, layer)
            except (LayerNotFoundError, NetworkNotFoundError):
                return False
            return unstepped if step is None else step in steps
        return zarr_io.node_exists(self.zstore, layout.array_path(network, layer, step))

    def open_array(self, network: str, layer: str, step: int | None) -> zarr.Array:
        """The activation array of a layer at a step; the errors say which steps exist."""
        network = check_name(network, kind="network")
        layer = check_name(layer, kind="layer")
        step = check_step(step)
        return self._remembered(("array", network, layer, step),
                                lambda: self._open_array(network, layer, step))

    async def _aopen_array(self, network: str, layer: str,
                           step: int | None) -> zarr.Array | None:
        """The activation array, opened after its network's, layer's and own documents (read at
        once; within a snapshot the first two as it read them, if it did): damage there is
        reported, the first in that order, not read past. None if any of them is missing."""
        z, where = self.zstore, self.location
        memo = self._memo or {}
        nodes = []
        if memo.get(("node", layout.network_path(network))) is None:
            nodes.append((layout.network_path(network), "network"))
        if (memo.get(("children", layout.network_path(network), "layer")) or {}).get(layer) is None:
            nodes.append((layout.layer_path(network, layer), "layer"))
        path = layout.array_path(network, layer, step)
        nodes.append((path, "array"))
        found = await asyncio.gather(*(documents.anode_document(z, where, node, kind)
                                       for node, kind in nodes), return_exceptions=True)
        for item in found:
            if isinstance(item, BaseException):
                raise item
        if any(doc is None for doc in found):
            return None
        return await documents.aopen_activation_array(z, where, path)

    def _open_array(self, network: str, layer: str, step: int | None) -> zarr.Array:
        array = zarr_io.run(self._aopen_array(network, layer, step))
        if array is not None:
            return array
        steps, unstepped = self.arrays(network, layer)  # raises for a missing network or layer
        who = f"network {network!r}, layer {layer!r}"
        if step is None and steps:
            raise LayerNotFoundError(
                f"{who} is stored by training step (steps {steps}); pass step= one of them."
            )
        if step is not None and steps:
            raise LayerNotFoundError(f"{who} has no step {step}; its steps are {steps}.")
        if step is not None and unstepped:
            raise LayerNotFoundError(
                f"{who} is stored without training steps; pass step=None."
            )
        raise LayerNotFoundError(f"{who} holds no activations.")

    def timesteps(self, network: str, layer: str, step: int | None) -> list[int]:
        """Sequence timesteps of a recurrent layer (``[0, ..., T-1]``); empty for a 2-D layer."""
        array = self.open_array(network, layer, step)
        info = array.attrs.get(layout.KEY) or {}
        return list(range(array.shape[1])) if info.get("timesteps") else []

    def write_id(self, network: str, layer: str, step: int | None) -> str:
        """The id of the array's current version (new whenever it is rewritten)."""
        info = self.open_array(network, layer, step).attrs.get(layout.KEY) or {}
        return str(info.get("write_id", ""))

    # -- readers ---------------------------------------------------------------------------------
    def reader(self, network: str, layer: str, step: int | None, timestep: int | None, *,
               n_datapoints: int | None) -> LayerReader:
        """A reader of one layer (at one step / timestep), its shape checked against the
        store's ``n_datapoints``."""
        array = self.open_array(network, layer, step)
        step = check_step(step)
        timestep = check_timesteps_index(timestep)
        info = array.attrs.get(layout.KEY) or {}
        who = f"network {network!r}, layer {layer!r}"
        if step is not None:
            who += f", step {step}"
        if info.get("timesteps"):
            n_timesteps = int(array.shape[1])
            if timestep is None:
                raise StoreError(
                    f"{who} is a recurrent layer stored with {n_timesteps} timesteps, shape "
                    f"(n_datapoints, n_timesteps, n_neurons) = {tuple(array.shape)}; pass "
                    f"timestep= (0 to {n_timesteps - 1})."
                )
            if not -n_timesteps <= timestep < n_timesteps:
                raise StoreError(
                    f"{who}: timestep {timestep} is out of range; it has {n_timesteps} timesteps "
                    f"(0 to {n_timesteps - 1})."
                )
            timestep %= n_timesteps
            shape = (int(array.shape[0]), int(array.shape[2]))
        else:
            if timestep is not None:
                raise StoreError(f"{who} has no timesteps (it is stored 2-D); pass timestep=None.")
            shape = (int(array.shape[0]), int(array.shape[1]))
        path = layout.array_path(network, layer, step)
        if n_datapoints is not None and shape[0] != n_datapoints:
            raise documents.damaged(
                documents.shown(self.location, f"{path}/zarr.json"),
                f"the array has {shape[0]} datapoints, but the store's root document records "
                f"{n_datapoints}")
        return LayerReader(
            self.location, path, network=network, layer=layer, step=step, timestep=timestep,
            shape=shape, dtype=array.dtype, chunk_rows=max(1, min(int(array.chunks[0]), shape[0])),
            write_id=str(info.get("write_id", "")), array=array,
        )

    def verify(self, networks: list[str], *, read: bool, n_datapoints: int | None) -> int:
        """Check every array of ``networks`` (see :meth:`ActivationStore.verify`); returns how
        many were checked."""
        present = set(zarr_io.list_prefix(self.zstore, f"{layout.NETWORKS}/"))
        count = 0
        for network in networks:
            for layer in self.layer_names(network):
                steps, unstepped = self.arrays(network, layer)
                for step in ([None] if unstepped else []) + steps:
                    timesteps = self.timesteps(network, layer, step) or [None]
                    self.reader(network, layer, step, timesteps[0],
                                n_datapoints=n_datapoints).check_complete(present)
                    for timestep in timesteps if read else []:
                        for _ in self.reader(network, layer, step, timestep,
                                             n_datapoints=n_datapoints).iter_chunks():
                            pass
                    count += 1
        return count

    def content_fingerprint(self, items: Iterable[Any], *, n_datapoints: int | None) -> str:
        """sha256 hex of ``n_datapoints`` and each item's ``(network, layer, step, write_id)``
        (see :meth:`ActivationStore.content_fingerprint`)."""
        parts = []
        for item in items:
            if isinstance(item, LayerReader):
                part = [item.network, item.layer, item.step, item.write_id]
                if item.timestep is not None:
                    part.append(item.timestep)
            else:
                network, layer, *rest = item
                step = check_step(rest[0] if rest else None)
                part = [network, layer, step, self.write_id(network, layer, step)]
            parts.append(part)
        payload = json.dumps({"n_datapoints": n_datapoints, "items": parts},
                             separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()
