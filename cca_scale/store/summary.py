"""The human-readable description of a store that ``cca-scale info STORE`` prints."""

from __future__ import annotations

__all__ = ["describe_store"]


def _steps_text(steps: list[int]) -> str:
    if len(steps) <= 6:
        return "steps " + ", ".join(str(s) for s in steps)
    shown = ", ".join(str(s) for s in steps[:3]) + ", ..., " + ", ".join(str(s) for s in steps[-2:])
    return f"{len(steps)} steps {shown}"


def describe_store(store, *, query: str | list[str] | None = None) -> str:
    """Networks, attributes and layers (shapes, dtypes, steps, timesteps) of ``store``, as text."""
    import pandas as pd

    networks = store.networks(query)
    where = store.path if store.path is not None else "(in memory)"
    lines = [
        f"Activation store {where}",
        f"  datapoints:  {'(not set yet)' if store.n_datapoints is None else store.n_datapoints}",
        f"  fingerprint: {store.fingerprint if store.fingerprint is not None else '(none)'}",
        f"  networks:    {len(networks)}" + (f" matching {query!r}" if query else ""),
    ]
    if not networks:
        return "\n".join(lines)
    table = store.attributes(networks)
    lines += ["", "Networks and attributes:"]
    if table.shape[1]:
        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 200):
            lines += ["  " + line for line in table.to_string().splitlines()]
    else:
        lines += [f"  {name}" for name in networks] + ["  (no attributes)"]
    lines += ["", "Layers:"]
    rows = []
    for network in networks:
        for layer in store.layers(network):
            steps = store.steps(network, layer)
            has_plain = store.has_layer(network, layer)
            step = None if has_plain else (steps[0] if steps else None)
            if not has_plain and not steps:
                rows.append((network, layer, "(empty)", "", ""))
                continue
            timesteps = store.timesteps(network, layer, step)
            reader = store.reader(network, layer, step=step, timestep=0 if timesteps else None)
            shape = f"{reader.shape[0]} x {reader.shape[1]}"
            extra = []
            if timesteps:
                extra.append(f"{len(timesteps)} timesteps")
            if steps:
                extra.append(_steps_text(steps) + (" (and without step)" if has_plain else ""))
            rows.append((network, layer, shape, str(reader.dtype), "; ".join(extra)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        text = "  " + "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths))
        lines.append((text + "  " + row[4]).rstrip())
    return "\n".join(lines)
