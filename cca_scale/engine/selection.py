"""Which layers one comparison covers: selection of networks, training steps and timesteps.

Pure functions over an :class:`~cca_scale.ActivationStore`; no Dask.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cca_scale.engine.output import info_to_records
from cca_scale.errors import CcaScaleError, LayerNotFoundError

__all__ = ["Item", "StepSpec", "item_records", "open_store", "resolve_axes", "resolve_items"]

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


def resolve_items(store, *, layer: str, networks=None, step: StepSpec = None,
                  timestep=None) -> list[Item]:
    """The layers one axis of a comparison covers, in store order.

    Labels are network ids, with ``@step`` when ``step='all'`` and ``/tT`` when ``timestep='all'``.
    """
    ids = list(store.networks(networks))
    if not ids:
        total = len(store.networks())
        raise CcaScaleError(
            f"The selection {networks!r} matched none of the store's {total} networks. "
            "See 'cca-scale info STORE' for their attributes."
        )
    missing = [n for n in ids if layer not in store.layers(n)]
    if missing:
        known = sorted({name for n in ids for name in store.layers(n)})
        raise LayerNotFoundError(
            f"Layer {layer!r} does not exist in network(s) {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}. Layers in the selection: {known}."
        )
    items = []
    for net in ids:
        for s in _choose_steps(store, net, layer, step):
            for t in _choose_timesteps(store, net, layer, timestep, s):
                label = net
                if step == "all":
                    label += f"@{s}"
                if timestep == "all":
                    label += f"/t{t}"
                items.append(Item(net, layer, s, t, label))
    return items


def item_records(store, items: list[Item], readers: list) -> tuple[list[dict], pd.DataFrame]:
    attrs = store.attributes(sorted({it.network for it in items}))
    records = []
    for it, reader in zip(items, readers):
        row = {"label": it.label, "network": it.network, "layer": it.layer, "step": it.step,
               "timestep": it.timestep, "write_id": reader.write_id}
        if it.network in attrs.index:
            for key, value in attrs.loc[it.network].items():
                row.setdefault(str(key), value)
        records.append(row)
    info = pd.DataFrame.from_records(records).set_index("label")
    return info_to_records(info), info


def resolve_axes(store, *, layer: str, networks=None, against=None, step: StepSpec = None,
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
