"""Every refused write names the problem and leaves the store byte-for-byte as it was."""

import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from cca_scale import ActivationStore
from cca_scale.errors import (
    ActivationError,
    InvalidNameError,
    StoreConflictError,
    StoreError,
)
from cca_scale.store import zarr_io

N = 100


def snapshot(zstore) -> dict[str, bytes]:
    """Every key of a Zarr store with its bytes."""
    async def collect():
        out = {}
        async for key in zstore.list():
            out[key] = (await zstore.get(key, prototype=default_buffer_prototype())).to_bytes()
        return out

    return sync(collect())


def _filled(kind, tmp_path):
    rng = np.random.default_rng(7)
    if kind == "local":
        where = tmp_path / "acts.zarr"
        zstore = zarr.storage.LocalStore(str(where))
    else:
        where = zstore = zarr.storage.MemoryStore()
    store = ActivationStore.create(where, n_datapoints=N, fingerprint="set-A")
    store.add("net0", "fc1", rng.normal(size=(N, 6)), attrs={"lr": 0.1})
    store.add("net0", "fc2", rng.normal(size=(N, 4)), step=3)
    store.add("Net1", "fc1", rng.normal(size=(N, 6)).astype(np.float32), chunk_rows=16)

    def state():
        listing = [(n, store.layers(n), [store.steps(n, l) for l in store.layers(n)])
                   for n in store.networks()]
        return listing, store.attributes().to_json(), snapshot(zstore)

    return store, state


@pytest.fixture(params=["local", "memory"])
def filled(request, tmp_path):
    """A store with two networks, and a function returning its full contents."""
    return _filled(request.param, tmp_path)


@pytest.fixture
def filled_memory(tmp_path):
    """The same, in memory only (for checks that never reach the storage layer)."""
    return _filled("memory", tmp_path)


def _with_nan(x, where=(5, 2), value=np.nan):
    x = x.copy()
    x[where] = value
    return x


RNG = np.random.default_rng(3)
GOOD = RNG.normal(size=(N, 6))

# (description, add() arguments, error class, message regex)
REFUSALS = [
    ("NaN", dict(network="n", layer="l", acts=_with_nan(GOOD)), ActivationError, "1 NaN value"),
    ("Inf", dict(network="n", layer="l", acts=_with_nan(GOOD, value=-np.inf)), ActivationError,
     "1 Inf value"),
    ("NaN in a late batch, after chunks were written",
     dict(network="n", layer="l", acts=[GOOD[:48], _with_nan(GOOD, (90, 1))[48:]], chunk_rows=8),
     ActivationError, r"network 'n', layer 'l'.*NaN"),
    ("NaN in a single-row batch",
     dict(network="n", layer="l", acts=[GOOD[:50], _with_nan(GOOD, (50, 0))[50:51], GOOD[51:]]),
     ActivationError, "NaN"),
    ("too few datapoints", dict(network="n", layer="l", acts=GOOD[:90]), StoreConflictError,
     r"network 'n', layer 'l': 90 datapoints, but .* has 100 datapoints"),
    ("too few datapoints, streamed",
     dict(network="n", layer="l", acts=[GOOD[:60], GOOD[60:90]], chunk_rows=16),
     StoreConflictError, r"90 datapoints, but .* 100 datapoints"),
    ("too many datapoints, streamed", dict(network="n", layer="l", acts=[GOOD, GOOD[:10]]),
     StoreConflictError, r"more than 100 datapoints \(at least 110 received\)"),
    ("3-D without flattening", dict(network="n", layer="l", acts=np.ones((N, 4, 4, 3))),
     ActivationError, r"2-D.*flatten_conv"),
    ("1-D", dict(network="n", layer="l", acts=np.ones(N)), ActivationError, "2-D"),
    ("1-D batch", dict(network="n", layer="l", acts=[GOOD[:50], np.ones(50)]),
     ActivationError, "2-D"),
    ("strings", dict(network="n", layer="l", acts=np.full((N, 3), "a")), ActivationError,
     "non-numeric"),
    ("complex", dict(network="n", layer="l", acts=GOOD * 1j), ActivationError, "complex"),
    ("a string instead of an array", dict(network="n", layer="l", acts="x.npy"),
     ActivationError, "an array or an iterable"),
    ("neuron count changes between batches",
     dict(network="n", layer="l", acts=[GOOD[:50], GOOD[50:, :5]]), ActivationError,
     "same number of neurons"),
    ("empty stream", dict(network="n", layer="l", acts=[]), ActivationError,
     "no datapoints"),
    ("one datapoint", dict(network="n", layer="l", acts=[GOOD[:1]]), ActivationError,
     "at least 2 datapoints"),
    ("2-D with timesteps=True", dict(network="n", layer="l", acts=GOOD, timesteps=True),
     ActivationError, r"3-D array of shape \(n_datapoints, n_timesteps, n_neurons\)"),
    ("existing layer", dict(network="net0", layer="fc1", acts=GOOD), StoreConflictError,
     r"network 'net0', layer 'fc1' already exists.*overwrite=True"),
    ("existing layer at a step", dict(network="net0", layer="fc2", acts=GOOD[:, :4], step=3),
     StoreConflictError, r"layer 'fc2', step 3 already exists"),
    ("bad data with overwrite keeps the old layer",
     dict(network="net0", layer="fc1", acts=_with_nan(GOOD), overwrite=True), ActivationError,
     "NaN"),
    ("wrong fingerprint", dict(network="n", layer="l", acts=GOOD, fingerprint="set-B"),
     StoreConflictError, "fingerprint 'set-A', but this write is for 'set-B'"),
    ("negative step", dict(network="n", layer="l", acts=GOOD, step=-1), StoreError,
     "'step' parameter must be None or an integer >= 0. Got -1"),
    ("bool step", dict(network="n", layer="l", acts=GOOD, step=True), StoreError, "'step'"),
    ("bad dtype", dict(network="n", layer="l", acts=GOOD, dtype="int8"), ActivationError,
     "'dtype' parameter must be 'float32' or 'float64'"),
    ("bad chunk_rows", dict(network="n", layer="l", acts=GOOD, chunk_rows=0), StoreError,
     "'chunk_rows'"),
    ("network differing only by case", dict(network="NET0", layer="fc1", acts=GOOD),
     InvalidNameError, "'NET0' differs from the existing network 'net0' only by case"),
    ("layer differing only by case", dict(network="net0", layer="FC1", acts=GOOD),
     InvalidNameError, "existing layer 'fc1' only by case"),
    ("attribute name with a space", dict(network="n", layer="l", acts=GOOD, attrs={"a b": 1}),
     InvalidNameError, r"invalid name for an attribute: 'a b'.*Python identifier"),
    ("attribute named network", dict(network="n", layer="l", acts=GOOD, attrs={"network": 1}),
     InvalidNameError, "invalid name for an attribute"),
    ("NaN attribute", dict(network="n", layer="l", acts=GOOD, attrs={"acc": float("nan")}),
     StoreError, "attribute 'acc' is nan"),
    ("dict attribute", dict(network="n", layer="l", acts=GOOD, attrs={"cfg": {"a": 1}}),
     StoreError, "attribute 'cfg' must be a number"),
]

BAD_NAMES = ["..", ".", "", "a/b", "/abs", "../escape", "a\\b", "tab\there", "nul\x00", "new\nline",
             "bell\x07", "with space", "-leading-dash", "__reserved", "é", "x" * 201, 3, None]


def _expect_unchanged(filled, call, error, match):
    store, state = filled
    before = state()
    with pytest.raises(error, match=match):
        call(store)
    assert state() == before


@pytest.mark.parametrize("case", REFUSALS, ids=[c[0] for c in REFUSALS])
def test_refused_add_leaves_store_unchanged(filled, case):
    _, kwargs, error, match = case
    kwargs = dict(kwargs)
    _expect_unchanged(filled, lambda s: s.add(kwargs.pop("network"), kwargs.pop("layer"),
                                              kwargs.pop("acts"), **kwargs), error, match)


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
@pytest.mark.parametrize("kind", ["network", "layer"])
def test_hostile_names_refused(filled_memory, name, kind):
    args = ("n", name) if kind == "layer" else (name, "l")
    _expect_unchanged(filled_memory, lambda s: s.add(*args, GOOD), InvalidNameError,
                      rf"invalid name for a {kind}.*letters A-Z a-z, digits, '_', '-' and '\.'")


@pytest.mark.parametrize("name", ["..", "a/b", ""], ids=repr)
def test_hostile_names_refused_on_read(filled_memory, name):
    store, _ = filled_memory
    for call in (lambda: store.layers(name), lambda: store.reader("net0", name),
                 lambda: store.has_layer(name, "fc1")):
        with pytest.raises(InvalidNameError, match="invalid name"):
            call()


def test_failed_overwrite_keeps_old_values_and_write_id(filled):
    store, _ = filled
    old = store.reader("net0", "fc1")
    with pytest.raises(StoreConflictError):
        store.add("net0", "fc1", [GOOD[:50], GOOD[50:80]], overwrite=True)
    new = store.reader("net0", "fc1")
    assert new.write_id == old.write_id
    np.testing.assert_array_equal(new.read(), old.read())


def test_failure_while_committing_rolls_back(filled, monkeypatch):
    """An I/O error while moving the staged array into place undoes the new network."""
    def broken_move(zstore, src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(zarr_io, "move_node", broken_move)
    _expect_unchanged(filled, lambda s: s.add("brand_new", "l", GOOD, attrs={"lr": 1}),
                      OSError, "disk full")


def test_generator_error_mid_stream_leaves_nothing(filled):
    def batches():
        yield GOOD[:40]
        yield GOOD[40:80]
        raise RuntimeError("data loader crashed")

    _expect_unchanged(filled, lambda s: s.add("n", "l", batches(), chunk_rows=8),
                      RuntimeError, "data loader crashed")


def test_first_write_on_uncounted_store_is_refused_cleanly(tmp_path):
    store = ActivationStore.create(tmp_path / "s.zarr")
    zstore = zarr.storage.LocalStore(str(tmp_path / "s.zarr"))
    before = snapshot(zstore)
    with pytest.raises(ActivationError, match="NaN"):
        store.add("a", "l", [GOOD[:50], _with_nan(GOOD, (70, 1))[50:]])
    assert snapshot(zstore) == before and store.n_datapoints is None
