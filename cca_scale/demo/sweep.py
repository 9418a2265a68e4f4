"""The demo's sweep: small MLPs trained on scikit-learn's bundled digits, and their activations.

Everything here is plain NumPy and scikit-learn. :func:`train_network` is what a Dask worker runs
(one network per task, one BLAS/OpenMP thread); :func:`write_network` puts a trained network's
activations into an :class:`~cca_scale.ActivationStore` through its public API.

Activations are computed from the fitted weights (``coefs_``, ``intercepts_``) of
``sklearn.neural_network.MLPClassifier`` on the *training* inputs, as the paper does: one array of
shape ``(n_datapoints, n_neurons)`` per hidden layer (after the ReLU), and the output layer
before (``logits``) and after (``softmax``) the softmax.
"""

from __future__ import annotations

import functools
import hashlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Dataset",
    "NetworkSpec",
    "SweepConfig",
    "TrainedNetwork",
    "layer_activations",
    "hidden_layer_names",
    "layer_names",
    "load_dataset",
    "experiments",
    "network_name",
    "sweep_specs",
    "train_network",
    "write_network",
]

#: The output layer before and after the softmax (the paper compares the softmax).
OUTPUT_LAYERS = ("logits", "softmax")


@dataclass(frozen=True)
class Dataset:
    """Digits split once into train and test, plus one fixed random labelling of the train set.

    Attributes
    ----------
    x_train : ndarray of shape (n_train, 64)
        Pixel intensities scaled to [0, 1]; the datapoints of every comparison.
    y_train, y_test : ndarray of int
        True labels.
    y_random : ndarray of shape (n_train,)
        ``y_train`` shuffled across examples once, with a fixed seed: the memorizing networks'
        labels (the same permutation for all of them, as in the paper).
    fingerprint : str
        sha256 of the training inputs (the store's dataset fingerprint).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    y_random: np.ndarray
    fingerprint: str

    def labels(self, kind: str) -> np.ndarray:
        return self.y_train if kind == "true" else self.y_random


@functools.lru_cache(maxsize=4)
def load_dataset(*, test_size: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's bundled digits (1797 images, 8 x 8), split and labelled deterministically.

    Cached per process, so that each worker loads it once.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y)
    y_random = np.random.default_rng(seed + 1).permutation(y_train)
    digest = hashlib.sha256(np.ascontiguousarray(x_train).tobytes()).hexdigest()
    return Dataset(x_train, y_train, x_test, y_test, y_random, f"digits-train-sha256:{digest}")


@dataclass(frozen=True)
class NetworkSpec:
    """One network of the sweep: its hyper-parameters and how long to train it.

    Training runs epoch by epoch (``partial_fit``) for at least ``min_epochs``; after that it stops
    at the first check (every ``check_every`` epochs) where the train accuracy reaches
    ``target_accuracy``, or at ``max_epochs``. Activations are kept at each epoch in ``snapshots``
    that training reaches, and at the final epoch.
    """

    name: str
    width: int
    lr: float
    seed: int
    labels: str = "true"  # "true" or "random"
    depth: int = 3
    batch_size: int = 64
    min_epochs: int = 100
    max_epochs: int = 300
    check_every: int = 10
    target_accuracy: float = 0.999
    snapshots: tuple[int, ...] = ()

    def attrs(self) -> dict[str, Any]:
        """The network's attributes in the store (queryable, e.g. ``"labels == 'random'"``)."""
        return {"width": self.width, "depth": self.depth, "lr": self.lr, "seed": self.seed,
                "labels": self.labels, "regime": "generalizing" if self.labels == "true"
                else "memorizing", "batch_size": self.batch_size}


@dataclass
class TrainedNetwork:
    """A trained network's activations and accuracies.

    Attributes
    ----------
    spec : NetworkSpec
    activations : dict of int to dict of str to ndarray
        ``activations[epoch][layer]``, each ``(n_datapoints, n_neurons)`` float32, for every
        snapshot epoch reached and the final epoch.
    final_epoch : int
    train_accuracy, test_accuracy : float
        At the final epoch (train accuracy on the labels it was trained on; test accuracy on the
        true test labels).
    history : dict of int to float
        Train accuracy at each snapshot epoch and at the final one.
    seconds : float
        Training time.
    """

    spec: NetworkSpec
    activations: dict[int, dict[str, np.ndarray]]
    final_epoch: int
    train_accuracy: float
    test_accuracy: float
    history: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0


def hidden_layer_names(depth: int) -> list[str]:
    """``['h1', ..., 'h<depth>']``."""
    return [f"h{i + 1}" for i in range(depth)]


def layer_names(depth: int) -> list[str]:
    """``['h1', ..., 'h<depth>', 'logits', 'softmax']``."""
    return hidden_layer_names(depth) + list(OUTPUT_LAYERS)


def layer_activations(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Each layer's activations of a fitted ``MLPClassifier`` (ReLU hidden layers) on ``x``.

    Returns ``{'h1': ..., 'h2': ..., 'logits': ..., 'softmax': ...}``, each
    ``(n_datapoints, n_neurons)`` float32: hidden layers after the ReLU, the output before and
    after the softmax.
    """
    if getattr(model, "activation", "relu") != "relu":
        raise ValueError(f"layer_activations computes ReLU layers; the model uses "
                         f"{model.activation!r}.")
    names = layer_names(len(model.coefs_) - 1)
    out = {}
    h = np.asarray(x, dtype=np.float64)
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        h = h @ w + b
        if i < len(model.coefs_) - 1:
            h = np.maximum(h, 0.0)
        out[names[i]] = h.astype(np.float32)
    z = np.exp(h - h.max(axis=1, keepdims=True))
    out[names[-1]] = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def train_network(spec: NetworkSpec, *, test_size: float = 0.25,
                  data_seed: int = 0) -> TrainedNetwork:
    """Train one network on digits with one BLAS/OpenMP thread and record its activations.

    Meant to run in a worker process: it loads the (bundled, cached) dataset itself, and limits
    BLAS to one thread with threadpoolctl, since several trainings share the machine's cores
    (an oversubscribed BLAS made single fits 100x slower).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    data = load_dataset(test_size=test_size, seed=data_seed)
    y = data.labels(spec.labels)
    classes = np.unique(data.y_train)
    started = time.perf_counter()
    snapshots: dict[int, dict[str, np.ndarray]] = {}
    history: dict[int, float] = {}
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden_layer_sizes=(spec.width,) * spec.depth,
                              learning_rate_init=spec.lr, batch_size=spec.batch_size,
                              random_state=spec.seed)
        epoch = 0
        while True:
            epoch += 1
            model.partial_fit(data.x_train, y, classes=classes)
            if epoch in spec.snapshots:
                snapshots[epoch] = layer_activations(model, data.x_train)
                history[epoch] = float(model.score(data.x_train, y))
            if epoch >= spec.max_epochs:
                break
            if epoch >= spec.min_epochs and (epoch - spec.min_epochs) % spec.check_every == 0:
                acc = history.get(epoch)
                if acc is None:
                    acc = history[epoch] = float(model.score(data.x_train, y))
                if acc >= spec.target_accuracy:
                    break
        if epoch not in snapshots:
            snapshots[epoch] = layer_activations(model, data.x_train)
        train_acc = float(model.score(data.x_train, y))
        history[epoch] = train_acc
        test_acc = float(model.score(data.x_test, data.y_test))
    return TrainedNetwork(spec=spec, activations=snapshots, final_epoch=epoch,
                          train_accuracy=train_acc, test_accuracy=test_acc,
                          history=dict(sorted(history.items())),
                          seconds=time.perf_counter() - started)


def write_network(store, trained: TrainedNetwork, *, subsample: dict[str, int] | None = None,
                  subsample_seed: int = 0) -> int:
    """Write a trained network's activations (every recorded epoch) into ``store``.

    Each layer is stored per training step (the epoch). The network's attributes are its
    hyper-parameters plus ``final_epoch``, ``train_accuracy`` and ``test_accuracy``.
    ``subsample`` maps a new layer name to ``(source layer, n_neurons)``: a fixed random subset
    of the source layer's neurons at the final epoch (the paper's fixed-size comparison across
    widths). Returns the number of arrays written.
    """
    from cca_scale.analysis import subsample_neurons

    attrs = dict(trained.spec.attrs(), final_epoch=trained.final_epoch,
                 train_accuracy=round(trained.train_accuracy, 6),
                 test_accuracy=round(trained.test_accuracy, 6))
    written = 0
    for epoch, layers in sorted(trained.activations.items()):
        for layer, acts in layers.items():
            store.add(trained.spec.name, layer, acts, step=epoch, attrs=attrs, overwrite=True)
            written += 1
    final = trained.activations[trained.final_epoch]
    for new_layer, (source, n) in (subsample or {}).items():
        rng = np.random.default_rng([subsample_seed, trained.spec.seed, trained.spec.width])
        acts = subsample_neurons(final[source], int(n), rng=rng)
        store.add(trained.spec.name, new_layer, acts, step=trained.final_epoch, overwrite=True)
        written += 1
    return written


# -- the sweep ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepConfig:
    """What the demo trains. :meth:`full` is ``cca-scale demo``; :meth:`quick` is ``--quick``.

    The experiments share networks: the generalizing group (``base_width``, ``base_lr``, true
    labels) is also the ``base_lr`` group of the learning-rate sweep and the ``base_width`` group
    of the width sweep, and records its activations over training for the dynamics.
    """

    seeds: tuple[int, ...]
    memorizing_seeds: tuple[int, ...]
    lrs: tuple[float, ...]
    lr_seeds: tuple[int, ...]
    widths: tuple[int, ...]
    snapshots: tuple[int, ...]
    early_epoch: int
    base_width: int = 64
    base_lr: float = 3e-3
    depth: int = 3
    min_epochs: int = 60
    max_epochs: int = 300
    subsample_neurons: int | None = None  # default: the narrowest width
    toy_repeats: int = 3
    toy_signal_fractions: tuple[float, ...] = (0.1, 0.2, 0.4, 0.6, 0.8, 0.9)
    toy_noise_scales: tuple[float, ...] = (0.3, 1.0, 3.0)

    @classmethod
    def full(cls) -> "SweepConfig":
        return cls(seeds=(0, 1, 2, 3, 4), memorizing_seeds=(10, 11, 12, 13, 14),
                   lrs=(1e-3, 3e-3, 1e-2), lr_seeds=(0, 1, 2, 3), widths=(16, 32, 64, 128),
                   snapshots=(1, 2, 3, 5, 8, 13, 20, 30, 45), early_epoch=2)

    @classmethod
    def quick(cls) -> "SweepConfig":
        return cls(seeds=(0, 1, 2), memorizing_seeds=(10, 11, 12), lrs=(3e-3, 1e-2),
                   lr_seeds=(0, 1, 2), widths=(16, 64), snapshots=(1, 2, 5, 13, 25),
                   early_epoch=2, min_epochs=40, toy_repeats=1,
                   toy_signal_fractions=(0.1, 0.4, 0.8), toy_noise_scales=(0.3, 3.0))

    @property
    def n_subsample(self) -> int:
        return int(self.subsample_neurons or min(self.widths))


def network_name(width: int, lr: float, seed: int, labels: str) -> str:
    """``mlp-w64-lr0.003-s0-true``: a valid store name."""
    return f"mlp-w{width}-lr{lr:g}-s{seed}-{labels}"


def experiments(config: SweepConfig) -> dict[str, list[str]]:
    """Network names of each experiment: ``generalizing``, ``memorizing``, ``lr_sweep``,
    ``width`` and ``dynamics`` (the generalizing networks, recorded over training)."""
    bw, blr = config.base_width, config.base_lr
    gen = [network_name(bw, blr, s, "true") for s in config.seeds]
    return {
        "generalizing": gen,
        "memorizing": [network_name(bw, blr, s, "random") for s in config.memorizing_seeds],
        "lr_sweep": [network_name(bw, lr, s, "true") for lr in config.lrs
                     for s in config.lr_seeds],
        "width": [network_name(w, blr, s, "true") for w in config.widths for s in config.seeds],
        "dynamics": list(gen),
    }


def sweep_specs(config: SweepConfig) -> list[NetworkSpec]:
    """Every network of the sweep, each once (networks shared by experiments appear once)."""
    specs: dict[str, NetworkSpec] = {}

    def add(width, lr, seed, labels, snapshots=()):
        name = network_name(width, lr, seed, labels)
        old = specs.get(name)
        snaps = tuple(sorted(set(snapshots) | set(old.snapshots if old else ())))
        specs[name] = NetworkSpec(name=name, width=width, lr=lr, seed=seed, labels=labels,
                                  depth=config.depth, min_epochs=config.min_epochs,
                                  max_epochs=config.max_epochs, snapshots=snaps)

    for seed in config.seeds:  # generalizing, with the training dynamics
        add(config.base_width, config.base_lr, seed, "true", config.snapshots)
    for seed in config.memorizing_seeds:
        add(config.base_width, config.base_lr, seed, "random")
    for lr in config.lrs:
        for seed in config.lr_seeds:
            add(config.base_width, lr, seed, "true", (config.early_epoch,))
    for width in config.widths:
        for seed in config.seeds:
            add(width, config.base_lr, seed, "true")
    # Longest trainings first, so the last task to finish is a short one.
    return sorted(specs.values(), key=lambda s: (s.labels != "random", -s.width, s.name))
