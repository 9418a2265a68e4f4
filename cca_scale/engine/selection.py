"""Which layers one comparison covers: selection of networks, training steps and timesteps.

Pure functions over an :class:`~cca_scale.ActivationStore`; no Dask.
"""

from __future__ import annotations

from dataclasses import dataclass

from cca_scale.core.registry import check_aligned, get_metric
from cca_scale.core.validation import check_overdetermined
from cca_scale._json import json_safe
from cca_scale.errors import CcaScaleError, LayerNotFoundError

__all__ = ["Item", "Resolved", "StepSpec", "item_records", "open_store", "resolve_axes",
           "resolve_items", "resolve_request"]

StepSpec = int | str | None


@dataclass(frozen=True)
class Item:
    """One compared layer: a network's layer at an optional training step and sequence timestep."""

    network: str
    layer: str
    step: int | None
    timestep: int | None
    label: str


def open_store(store):
    from cca_scale.store import ActivationStore

    if isinstance(store, ActivationStore):
        return store
    return ActivationStore.open(store, mode="r")


def _choose_steps(store, network: str, layer: str, step: StepSpec) -> list[int | None]:
    steps = list(store.steps(network, layer))
    if step is None:
        if store.has_layer(network, layer):
            return [None]
        raise CcaScaleError(
            f"network {network!r}, layer {layer!r} is stored by training step ({steps}); pass "
            "step=S (--step S), step='last' or step='all'."
        )
    if step in ("last", "final"):
        if not steps:
            return [None]
        return [max(steps)]
    if step == "all":
        return steps or [None]
    if isinstance(step, str):
        raise CcaScaleError(f"step must be an int, 'last' or 'all'. Got {step!r} instead.")
    if int(step) not in steps:
        raise CcaScaleError(
            f"network {network!r}, layer {layer!r} has no step {step}; its steps are {steps}."
        )
    return [int(step)]


def _choose_timesteps(store, network: str, layer: str, timestep,
                      step: int | None = None) -> list[int | None]:
    timesteps = list(store.timesteps(network, layer, step))
    if timestep is None:
        if timesteps:
            raise CcaScaleError(
                f"network {network!r}, layer {layer!r} holds {len(timesteps)} sequence timesteps; "
                "pass timestep=T or timestep='all'."
            )
        return [None]
    if timestep == "all":
        return timesteps
    if int(timestep) not in timesteps:
        raise CcaScaleError(
            f"network {network!r}, layer {layer!r} has no timestep {timestep}; it has "
            f"{timesteps[:3]}...{timesteps[-1:] if timesteps else ''}."
        )
    return [int(timestep)]


def _layer_list(store, ids: list[str], layer) -> list[str]:
    """``'all'``: the layers every selected network holds, in the first network's order."""
    if layer != "all":
        return list(layer)
    common = set(store.layers(ids[0]))
    for net in ids[1:]:
        common &= set(store.layers(net))
    layers = [name for name in store.layers(ids[0]) if name in common]
    if not layers:
        raise LayerNotFoundError(f"layer='all': the networks {ids[:5]} share no layer.")
    return layers


def resolve_items(store, *, layer, networks=None, step: StepSpec = None,
                  timestep=None) -> list[Item]:
    """The layers one axis of a comparison covers, in store order.

    ``layer`` is one name, a tuple of names or ``'all'``. Label grammar::

        NETWORK[/LAYER][@STEP][/tT]

    ``/LAYER`` when ``layer`` is a list or ``'all'`` (items network by network, each network's
    layers in the order asked), ``@STEP`` when ``step='all'``, ``/tT`` when ``timestep='all'``.
    Network and layer names never contain ``'/'``.
    """
    ids = list(store.networks(networks))
    if not ids:
        total = len(store.networks())
        raise CcaScaleError(
            f"The selection {networks!r} matched none of the store's {total} networks. "
            "See 'cca-scale info STORE' for their attributes."
        )
    store.prefetch(ids)  # one round trip for every network's documents (within a snapshot)
    many = not isinstance(layer, str) or layer == "all"
    layers = _layer_list(store, ids, layer) if many else [layer]
    for name in layers:
        missing = [n for n in ids if name not in store.layers(n)]
        if missing:
            known = sorted({x for n in ids for x in store.layers(n)})
            raise LayerNotFoundError(
                f"Layer {name!r} does not exist in network(s) {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}. Layers in the selection: {known}."
            )
    store.prefetch(ids, layers)  # every layer is there: its arrays, in one round trip too
    chosen = [(net, name, s) for net in ids for name in layers
              for s in _choose_steps(store, net, name, step)]
    store.prefetch_arrays(chosen)  # and each array opened, all in one more
    items = []
    for net, name, s in chosen:
        for t in _choose_timesteps(store, net, name, timestep, s):
            label = f"{net}/{name}" if many else net
            if step == "all":
                label += f"@{s}"
            if timestep == "all":
                label += f"/t{t}"
            items.append(Item(net, name, s, t, label))
    return items


def item_records(store, items: list[Item], readers: list) -> list[dict]:
    """One JSON-safe record per item: ``label``, ``network``, ``layer``, ``step``, ``timestep``,
    ``write_id``, then its network's attributes. Every record has the same keys, in order of
    first appearance: an attribute only some of the networks have is None for the others."""
    attrs = store.attribute_records(sorted({it.network for it in items}))
    rows = []
    for it, reader in zip(items, readers):
        row = {"label": it.label, "network": it.network, "layer": it.layer, "step": it.step,
               "timestep": it.timestep, "write_id": reader.write_id}
        for key, value in attrs.get(it.network, {}).items():
            row.setdefault(str(key), value)
        rows.append(row)
    keys = list(dict.fromkeys(key for row in rows for key in row))
    return [json_safe({key: row.get(key) for key in keys}) for row in rows]


def resolve_axes(store, *, layer, networks=None, against=None, step: StepSpec = None,
                 against_step: StepSpec = "same", against_layer: str | None = None,
                 timestep=None) -> tuple[list[Item], list[Item], bool]:
    """Rows, columns, and whether the comparison is square (columns are the rows)."""
    rows = resolve_items(store, layer=layer, networks=networks, step=step, timestep=timestep)
    square = against is None and against_layer is None and against_step == "same"
    if square:
        return rows, rows, True
    cols = resolve_items(
        store, layer=against_layer or layer, networks=networks if against is None else against,
        step=step if against_step == "same" else against_step, timestep=timestep)
    return rows, cols, False


@dataclass(frozen=True)
class Resolved:
    """A request applied to a store: the compared layers, their readers, and their sizes."""

    rows: list
    cols: list
    square: bool
    row_readers: list
    col_readers: list
    n_datapoints: int

    @property
    def readers(self) -> list:
        return self.row_readers + ([] if self.square else self.col_readers)

    @property
    def max_neurons(self) -> int:
        return max(int(r.shape[1]) for r in self.readers)

    @property
    def side(self) -> int:
        return max(len(self.rows), len(self.cols))


def _who(reader) -> str:
    who = f"network {reader.network!r}, layer {reader.layer!r}"
    if reader.step is not None:
        who += f", step {reader.step}"
    if getattr(reader, "timestep", None) is not None:
        who += f", timestep {reader.timestep}"
    return who


def resolve_request(store, req) -> Resolved:
    """Select the layers of a :class:`~cca_scale.engine.request.ComparisonRequest` and check them
    as the one-pair functions would, before any work.

    Refuses, naming network and layer: different datapoint counts, ``n_datapoints <=
    n_neurons`` for CCA metrics (unless ``allow_underdetermined``), different widths for the
    neuron-aligned metrics.
    """
    with store.snapshot():
        rows, cols, square = resolve_axes(store, layer=req.layer, networks=req.networks,
                                          against=req.against, step=req.step,
                                          against_step=req.against_step,
                                          against_layer=req.against_layer,
                                          timestep=req.timestep)
        row_readers = [store.reader(i.network, i.layer, step=i.step, timestep=i.timestep)
                       for i in rows]
        col_readers = row_readers if square else [
            store.reader(i.network, i.layer, step=i.step, timestep=i.timestep) for i in cols]
    counts = {int(r.shape[0]) for r in row_readers + col_readers}
    if len(counts) != 1:
        raise CcaScaleError(f"The selected layers have different numbers of datapoints: "
                            f"{sorted(counts)}.")
    resolved = Resolved(rows, cols, square, row_readers, col_readers, counts.pop())
    if req.needs_overdetermined:
        for reader in resolved.readers:
            check_overdetermined(int(reader.shape[0]), int(reader.shape[1]), who=_who(reader))
    aligned = [m for m in req.metrics if get_metric(m).aligned]
    if aligned:
        widths = {}
        for reader in resolved.readers:
            widths.setdefault(int(reader.shape[1]), reader.layer)
        if len(widths) > 1 and req.many_layers:
            shown = ", ".join(f"{layer!r} ({w} neurons)" for w, layer in sorted(widths.items()))
            raise CcaScaleError(
                f"metric(s) {aligned} compare neuron by neuron, so every layer needs the same "
                f"number of neurons; the layers {shown} differ. Drop {aligned} from the metrics "
                "or compare these layers one at a time."
            )
        check_aligned(aligned[0], min(widths), max(widths))
    return resolved
