"""Record a PyTorch model's layer outputs straight into an activation store.

PyTorch is an optional dependency (``pip install 'cca-scale[torch]'``); it is imported only when
:func:`capture` runs.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence


from cca_scale.core.conv import check_conv_mode, flatten_conv
from cca_scale.errors import ActivationError, LayerNotFoundError
from cca_scale.store.activation_store import ActivationStore
from cca_scale.store.ingest import open_or_create
from cca_scale.store.names import check_name

__all__ = ["capture"]


def _default_forward(model, batch):
    """Run the model on one batch: a tensor, or the first element of an ``(inputs, targets)``
    pair such as a ``DataLoader`` yields. Inputs are moved to the model's device."""
    inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
    param = next(iter(model.parameters()), None)
    if param is not None and hasattr(inputs, "to"):
        inputs = inputs.to(param.device)
    return model(inputs)


def _resolve_layers(model, layers) -> dict[str, Any]:
    """``{store layer name: module}`` from a list of module names or a mapping."""
    modules = dict(model.named_modules(remove_duplicate=False))
    if isinstance(layers, str) or not isinstance(layers, (Sequence, Mapping)) or not layers:
        raise ActivationError(
            "The 'layers' parameter of capture must be a non-empty list of module names (as in "
            "model.named_modules(), e.g. ['fc1', 'features.3']) or a dict {layer name: module "
            f"name or module}}. Got {layers!r} instead."
        )
    pairs = layers.items() if isinstance(layers, Mapping) else ((name, name) for name in layers)
    resolved = {}
    for store_name, target in pairs:
        if isinstance(target, str):
            if target not in modules or target == "":
                names = [n for n in modules if n]
                shown = ", ".join(repr(n) for n in names[:40]) + (" ..." if len(names) > 40 else "")
                raise LayerNotFoundError(
                    f"the model has no module {target!r}. Its modules are: {shown}."
                )
            module = modules[target]
        else:
            module = target
            if not any(module is m for m in modules.values()):
                raise LayerNotFoundError(
                    f"layer {store_name!r}: the module given is not part of the model."
                )
        resolved[check_name(store_name, kind="layer")] = module
    return resolved


def _to_layer(output, *, name: str, network: str, conv: str | None, timesteps: bool):
    """One hooked output -> a NumPy batch ``(n, n_neurons)`` (or ``(n, T, n_neurons)``)."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]  # e.g. nn.LSTM returns (output, (h, c))
    if not hasattr(output, "detach"):
        raise ActivationError(
            f"network {network!r}, layer {name!r}: the module returned a "
            f"{type(output).__name__}, not a tensor; capture the module that produces the tensor."
        )
    tensor = output.detach()
    if tensor.is_floating_point() and tensor.element_size() < 4:
        tensor = tensor.float()
    if timesteps or tensor.ndim <= 2:
        return tensor.cpu().numpy()
    if conv is None:
        raise ActivationError(
            f"network {network!r}, layer {name!r}: the module outputs shape "
            f"{tuple(tensor.shape)}, not 2-D (n_datapoints, n_neurons). For convolutional "
            "layers pass conv='mean' (average over positions, the paper's choice; see "
            "cca_scale.flatten_conv) or conv='positions' (every position is a datapoint); for "
            "recurrent layers (batch_first outputs) pass timesteps=True."
        )
    # PyTorch is channels-first (n, c, *spatial); flatten_conv wants channels last.
    channels_last = tensor.movedim(1, -1).cpu().numpy()
    return flatten_conv(channels_last, conv)


def capture(model, batches: Iterable[Any], layers, *, store, network: str,
            attrs: dict | None = None, conv: str | None = None, step: int | None = None,
            timesteps: bool = False, overwrite: bool = False, dtype: Any = None,
            chunk_rows: int | None = None, fingerprint: str | None = None,
            forward: Callable[[Any, Any], Any] | None = None,
            eval_mode: bool = True) -> ActivationStore:
    """Record chosen modules' outputs with forward hooks, batch by batch, into a store.

    Every batch runs once through the model (under ``torch.no_grad()``); each chosen module's
    output is checked and streamed into the store as it comes, so the activations never have
    to fit in memory. All layers are committed together at the end: if anything fails (NaN,
    a datapoint count that disagrees with the store, an exception in the model), the store is
    left as it was.

    Parameters
    ----------
    model : torch.nn.Module
    batches : iterable
        Model inputs in the store's datapoint order: tensors, or ``(inputs, targets)`` pairs as
        a ``DataLoader`` yields (the first element goes to the model; see ``forward``).
    layers : list of str, or dict
        Module names as in ``model.named_modules()`` (``['fc1', 'features.3']``), stored under
        the same names; or ``{layer name: module name or module}``.
    store : ActivationStore, path, URL or zarr.storage.MemoryStore
        Where to write; a path is opened for writing (created if absent).
    network : str
        Network id; ``attrs`` are merged into its metadata.
    conv : {None, 'mean', 'positions'}
        How outputs with spatial axes ``(n, c, *spatial)`` become 2-D, via
        :func:`cca_scale.flatten_conv` (channels moved last first). None refuses them.
    step : int, optional
        Training step (checkpoint) of this model.
    timesteps : bool, default False
        Modules output ``(n, T, n_neurons)`` sequences (``batch_first=True``); stored per
        timestep (see :meth:`ActivationStore.add`). Tuple outputs (``nn.LSTM``) use element 0.
    overwrite, dtype, chunk_rows, fingerprint :
        As for :meth:`ActivationStore.add`.
    forward : callable, optional
        ``forward(model, batch)`` runs one batch (default: ``model(inputs)`` with the inputs
        moved to the model's device).
    eval_mode : bool, default True
        Put the model in eval mode while capturing (dropout off, batch-norm statistics fixed);
        its previous mode is restored afterwards.

    Returns
    -------
    ActivationStore
        The store written to.
    """
    import torch

    check_conv_mode(conv, name="conv", where="capture", allow_none=True)
    network = check_name(network, kind="network")
    if not isinstance(store, ActivationStore):
        store, _ = open_or_create(store)
    targets = _resolve_layers(model, layers)
    forward = forward or _default_forward
    captured: dict[str, Any] = {}

    def make_hook(name):
        def hook(module, inputs, output):
            if name in captured:
                raise ActivationError(
                    f"network {network!r}, layer {name!r}: the module ran more than once in one "
                    "forward pass; capture records one output per batch. Capture a module that "
                    "runs once, or record the activations yourself and use ActivationStore.add."
                )
            captured[name] = output
        return hook

    was_training = model.training
    handles = [module.register_forward_hook(make_hook(name)) for name, module in targets.items()]
    try:
        if eval_mode:
            model.eval()
        with store.transaction(fingerprint=fingerprint) as tx:
            writers = {
                name: tx.writer(network, name, step=step, attrs=attrs, overwrite=overwrite,
                                chunk_rows=chunk_rows, dtype=dtype, timesteps=timesteps,
                                source=f"capture:{type(model).__name__}")
                for name in targets
            }
            with torch.no_grad():
                for batch in batches:
                    captured.clear()
                    forward(model, batch)
                    for name, writer in writers.items():
                        if name not in captured:
                            raise ActivationError(
                                f"network {network!r}, layer {name!r}: the module did not run "
                                "during the forward pass of a batch."
                            )
                        writer.push(_to_layer(captured[name], name=name, network=network,
                                              conv=conv, timesteps=timesteps))
                    captured.clear()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return store
