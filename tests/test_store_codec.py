"""The activation arrays' codec: new arrays are uncompressed with a CRC-32C checksum; arrays of
older stores (Zstandard, Zarr's default) still read, verify and fingerprint as before; a corrupt
chunk of the right size is refused, never read as numbers.
"""

import numpy as np
import pytest
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec

from cca_scale import ActivationStore
from cca_scale.errors import DamagedStoreError
from cca_scale.store import writer

N, ROWS = 40, 8  # five chunks per array


def _acts(seed: int, d: int = 5) -> np.ndarray:
    """(N, d) float32 ReLU-like activations: many exact zeros, no NaN."""
    x = np.random.default_rng(seed).normal(size=(N, d)).astype(np.float32)
    return np.maximum(x, 0.0)


def _codecs(store, network, layer="fc1"):
    return store.reader(network, layer).open().metadata.codecs


def test_new_arrays_are_uncompressed_with_a_checksum(tmp_path):
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=N)
    store.add("a", "fc1", _acts(0), chunk_rows=ROWS)
    store.add("a", "fc2", _acts(1).astype(np.float64), step=3, chunk_rows=ROWS)
    codecs = _codecs(store, "a")
    assert [type(c) for c in codecs] == [BytesCodec, Crc32cCodec]
    step = store.reader("a", "fc2", step=3).open().metadata.codecs
    assert [type(c) for c in step] == [BytesCodec, Crc32cCodec]
    np.testing.assert_array_equal(store.read("a", "fc1"), _acts(0))
    # one full chunk on disk: the raw float32 bytes plus the 4-byte checksum
    chunk = tmp_path / "s.zarr" / "networks/a/fc1/acts/c/0/0"
    assert chunk.stat().st_size == ROWS * 5 * 4 + 4


@pytest.fixture
def old_store(tmp_path, monkeypatch):
    """A store whose arrays were written with the codec used before (Zstandard, level 0)."""
    with monkeypatch.context() as patch:
        patch.setattr(writer, "activation_compressors",
                      lambda: [ZstdCodec(level=0, checksum=False)])
        store = ActivationStore.create(tmp_path / "old.zarr", n_datapoints=N)
        store.add("old", "fc1", _acts(2), chunk_rows=ROWS)
    return tmp_path / "old.zarr"


def test_old_zstd_arrays_still_read_and_fingerprint_unchanged(old_store):
    store = ActivationStore.open(old_store, mode="a")
    assert [type(c) for c in _codecs(store, "old")] == [BytesCodec, ZstdCodec]
    before = store.content_fingerprint([("old", "fc1")])
    # the current code adds a network beside it: the new array gets the new codec
    store.add("new", "fc1", _acts(3), chunk_rows=ROWS)
    assert [type(c) for c in _codecs(store, "new")] == [BytesCodec, Crc32cCodec]
    again = ActivationStore.open(old_store)
    np.testing.assert_array_equal(again.read("old", "fc1"), _acts(2))
    np.testing.assert_array_equal(again.read("new", "fc1"), _acts(3))
    assert again.verify(read=True) == 2
    # the fingerprint keys on names and write_id, not on the codec: unchanged data, same value
    assert again.content_fingerprint([("old", "fc1")]) == before
    mixed = again.content_fingerprint([("old", "fc1"), ("new", "fc1")])
    assert mixed != before and len(mixed) == 64


def test_corrupt_chunk_of_the_right_size_is_refused(tmp_path):
    store = ActivationStore.create(tmp_path / "s.zarr", n_datapoints=N)
    store.add("a", "fc1", _acts(4), chunk_rows=ROWS)
    chunk = tmp_path / "s.zarr" / "networks/a/fc1/acts/c/2/0"
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0x01  # one flipped bit in a value: still a finite float32, same file size
    chunk.write_bytes(bytes(data))
    reader = ActivationStore.open(tmp_path / "s.zarr").reader("a", "fc1")
    np.testing.assert_array_equal(reader.read(0, 16), _acts(4)[:16])  # other chunks still read
    with pytest.raises(DamagedStoreError, match="datapoints 16 to 23 cannot be read"):
        reader.read()
