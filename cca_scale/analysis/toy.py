"""Synthetic layers with a known answer, for checking metrics (the paper's Fig 2)."""

from __future__ import annotations

import numpy as np

__all__ = ["signal_noise_layers"]


def signal_noise_layers(rng: np.random.Generator, *, n_signal: int, noise_std: float,
                        n_datapoints: int = 1000,
                        n_neurons: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Two layers that share a signal subspace and each have their own noise dimensions.

    Each layer is ``[signal, noise] @ rotation``: ``n_signal`` unit-variance signal dimensions (a
    different random linear map of the same latent in each layer), ``n_neurons - n_signal``
    independent noise dimensions of standard deviation ``noise_std``, and a random rotation. The
    shared part is identical up to a linear map, so a metric's ideal distance for the shared
    structure is 0.

    Returns
    -------
    x, y : ndarrays of shape (n_datapoints, n_neurons)
    """
    z = rng.normal(size=(n_datapoints, n_signal))

    def one():
        signal = z @ rng.normal(size=(n_signal, n_signal)) / np.sqrt(n_signal)
        noise = noise_std * rng.normal(size=(n_datapoints, n_neurons - n_signal))
        rotation = np.linalg.qr(rng.normal(size=(n_neurons, n_neurons)))[0]
        return np.hstack([signal, noise]) @ rotation

    return one(), one()
