"""Several processes writing different networks into one pre-created store at the same time."""

import multiprocessing

import numpy as np
import pytest
import zarr

from cca_scale import ActivationStore

N, WIDTHS, WORKERS = 96, {"fc1": 5, "fc2": 3}, 3


def _acts(worker: int, layer: str, step: int | None = None) -> np.ndarray:
    rng = np.random.default_rng([worker, WIDTHS[layer], step or 0])
    return rng.normal(size=(N, WIDTHS[layer])).astype(np.float32)


def _write_network(path: str, worker: int, barrier) -> None:
    store = ActivationStore.open(path, mode="a")
    barrier.wait(timeout=60)  # everyone writes at once
    for layer in WIDTHS:
        x = _acts(worker, layer)
        # Small batches and chunks: many chunk writes interleaved across processes.
        store.add(f"net{worker}", layer, (x[i:i + 7] for i in range(0, N, 7)), chunk_rows=8,
                  attrs={"worker": worker, "lr": 10.0 ** -worker})
    for step in (0, 5):
        store.add(f"net{worker}", "fc1", _acts(worker, "fc1", step) + 1, step=step, chunk_rows=8)
    store.set_attrs(f"net{worker}", done=True)


@pytest.mark.timeout(120)
def test_concurrent_writers_of_different_networks(tmp_path):
    path = str(tmp_path / "acts.zarr")
    ActivationStore.create(path, n_datapoints=N)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=_write_network, args=(path, w, barrier)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=100)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    store = ActivationStore.open(path)
    assert sorted(store.networks()) == [f"net{w}" for w in range(WORKERS)]
    # Insertion order comes from each network's own creation time.
    created = [zarr.open_group(path, mode="r")[f"networks/{n}"].attrs["cca_scale"]["created_ns"]
               for n in store.networks()]
    assert created == sorted(created)
    table = store.attributes()
    for w in range(WORKERS):
        name = f"net{w}"
        assert table.loc[name, "worker"] == w and table.loc[name, "done"] == True  # noqa: E712
        assert table.loc[name, "lr"] == 10.0 ** -w
        assert store.layers(name) == list(WIDTHS)
        for layer in WIDTHS:
            np.testing.assert_array_equal(store.read(name, layer), _acts(w, layer))
        assert store.steps(name, "fc1") == [0, 5]
        for step in (0, 5):
            np.testing.assert_array_equal(store.read(name, "fc1", step=step),
                                          _acts(w, "fc1", step) + 1)
    assert list(zarr.open_group(path, mode="r")["_staging"].keys()) == []  # nothing left over
