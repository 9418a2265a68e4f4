"""Codecs for the activation store's arrays: bytes on disk, write time, read+decode time.

Each candidate codec writes the same activations as a Zarr 3 array on local disk with the store's
layout (float32, chunks ``(default_chunk_rows, n_neurons)`` = about 8 MiB, unsharded, fill value
NaN), then the array is read back the way the engine reads (``LayerReader.read(start, stop)`` per
stored chunk: ``np.asarray(array[start:stop, :])`` on an array opened once). Files are in the page
cache (the engine reads each network many times), so a read is decode-bound. Every figure is the
minimum over ``--repeats`` runs; this machine is shared by several people, so timings are noisy.

Columns: MB on disk; ratio = raw / disk; write s (whole array); read ms per block (~8 MiB);
MB/s read (raw MB decoded per second); "ms/MB saved" = extra read time per block against no
codec, divided by MB saved per block (lower is better; <= 0 means faster than no codec at all).

Measured on this 2-core machine shared with other sessions (load average 12-14 during the run,
so absolute times are noisy; three runs of 5-9 repeats gave the same ranking), zarr 3.1.6,
numcodecs 0.16.6, 50,000 x 256 float32 (51.2 MB raw; 7 chunks of 8,192 rows; an uncompressed
array stores its last, partial chunk padded to full size: 58.72 MB), min of 9 repeats; ReLU data
50% exact zeros::

    data   codec                MB disk  ratio  write s  read ms/blk  MB/s read  ms/MB saved
    relu   none                   58.72   0.87     0.14         2.68       2725            -
    relu   crc32c                 58.72   0.87     0.19         3.55       2061            -
    relu   zstd-0 (old)           27.97   1.83     1.99        25.90        282         5.28
    relu   blosc-lz4-shuffle      44.34   1.15     0.35         6.23       1175         1.72
    relu   blosc-lz4-bitshuf      44.39   1.15     0.26         7.66        955         2.43
    relu   blosc-zstd1-shuffle    29.95   1.71     1.01        42.97        170         9.80
    relu   blosc-lz4-noshuf-9     34.46   1.49     0.49         7.54        970         1.40
    relu   zstd-1                 29.03   1.76     0.53        18.28        400         3.68
    relu   zstd--3 (fast)         37.51   1.37     0.56        10.82        676         2.69
    relu   lz4                    34.44   1.49     0.35         5.90       1239         0.93
    gauss  none                   58.72   0.87     0.06         2.77       2642            -
    gauss  crc32c                 58.72   0.87     0.17         3.89       1881            -
    gauss  zstd-0 (old)           47.32   1.08     0.27        11.85        617         5.58
    gauss  blosc-lz4-shuffle      47.94   1.07     0.15         5.13       1426         1.53
    gauss  blosc-lz4-bitshuf      46.10   1.11     0.16         6.72       1089         2.19
    gauss  blosc-zstd1-shuffle    47.27   1.08     0.32        17.45        419         8.97
    gauss  blosc-lz4-noshuf-9     51.23   1.00     0.14         3.61       2029         0.78
    gauss  zstd-1                 47.32   1.08     0.21        12.51        584         5.98
    gauss  zstd--3 (fast)         51.20   1.00     0.13         4.90       1492         1.99
    gauss  lz4                    51.43   1.00     0.09         3.70       1977         0.89

Choice: read speed decides (each network is read many times; disk is cheap). The cheapest codec
per byte saved, LZ4, costs ~0.9-1.5 ms of extra decode per MB saved; reading that MB uncompressed
from the page cache costs ~0.3-0.4 ms, so no compressor pays for itself unless the store is read
from storage slower than ~1 GB/s per reader. Zstandard (Zarr's default, used before) read 3-9x
slower than uncompressed for 1.08x (dense) to 1.83x (ReLU) less disk. New activation arrays are
therefore uncompressed with a CRC-32C checksum ("crc32c": ~0.1-1 ms per 8 MiB block over "none"),
so that a corrupt chunk of the right size fails to decode instead of reading as numbers. Shuffle
hurts LZ4 on ReLU data (1.15x against 1.49x without): it scatters a zero float's four zero bytes.
On dense data LZ4 and zstd -3 save only the last chunk's padding.

Run::

    PYTHONPATH=. python benchmarks/store_codecs.py --n 50000 --d 256 --repeats 5
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from cca_scale.bench import synthetic_activations
from cca_scale.store.writer import default_chunk_rows


def candidates() -> dict[str, list | None]:
    """Codec name -> Zarr ``compressors`` argument (None: no compression)."""
    out = {
        "none": None,
        "crc32c": [Crc32cCodec()],  # uncompressed, with a checksum: corruption never reads
        "zstd-0 (old)": [ZstdCodec(level=0, checksum=False)],  # Zarr 3's default, used until now
        "blosc-lz4-shuffle": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
        "blosc-lz4-bitshuf": [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")],
        "blosc-zstd1-shuffle": [BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")],
        "blosc-lz4-noshuf-9": [BloscCodec(cname="lz4", clevel=9, shuffle="noshuffle")],
        "zstd-1": [ZstdCodec(level=1, checksum=False)],
        "zstd--3 (fast)": [ZstdCodec(level=-3, checksum=False)],
    }
    try:  # numcodecs' LZ4 through Zarr's numcodecs adapters (zarr >= 3.1.3)
        from zarr.codecs.numcodecs import LZ4
        out["lz4"] = [LZ4()]
    except ImportError:
        pass
    return out


def disk_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (chunks and the array's document)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_array(path: Path, data: np.ndarray, chunk_rows: int, compressors) -> float:
    """Write ``data`` (n, d) as a fresh array at ``path``; returns seconds (create + write)."""
    if path.exists():
        shutil.rmtree(path)
    t = time.perf_counter()
    arr = zarr.create_array(zarr.storage.LocalStore(path), shape=data.shape,
                            chunks=(chunk_rows, data.shape[1]), dtype=data.dtype,
                            fill_value=float("nan"), compressors=compressors)
    arr[:] = data
    return time.perf_counter() - t


def read_blocks(path: Path, n: int, chunk_rows: int, check: np.ndarray | None = None) -> float:
    """Mean seconds to read and decode one chunk-aligned block (``LayerReader``'s way)."""
    arr = zarr.open_array(zarr.storage.LocalStore(path, read_only=True), mode="r")
    blocks = range(0, n, chunk_rows)
    t = time.perf_counter()
    for start in blocks:
        block = np.asarray(arr[start:min(n, start + chunk_rows), :])
        if check is not None:
            assert np.array_equal(block, check[start:start + block.shape[0]])
    return (time.perf_counter() - t) / len(blocks)


def measure(data: np.ndarray, root: Path, repeats: int) -> list[dict]:
    """One row per codec; reads interleaved across codecs (repeat by repeat) so that a burst of
    load from other users of the machine does not land on one codec only."""
    n, d = data.shape
    chunk_rows = default_chunk_rows(d, data.dtype.itemsize, n)
    rows = []
    for name, compressors in candidates().items():
        path = root / str(len(rows))
        write_s = min(write_array(path, data, chunk_rows, compressors) for _ in range(repeats))
        read_blocks(path, n, chunk_rows, check=data)  # round trip exact; warms the page cache
        rows.append({"codec": name, "path": path, "disk": disk_bytes(path), "write_s": write_s,
                     "read_s": float("inf"), "n_blocks": -(-n // chunk_rows)})
    for _ in range(repeats):
        for row in rows:
            row["read_s"] = min(row["read_s"], read_blocks(row["path"], n, chunk_rows))
    base = rows[0]
    raw_block = data.nbytes / base["n_blocks"]
    for row in rows:
        row["ratio"] = data.nbytes / row["disk"]
        row["mb_s"] = raw_block / row["read_s"] / 1e6
        saved_mb = (base["disk"] - row["disk"]) / base["n_blocks"] / 1e6
        extra_ms = (row["read_s"] - base["read_s"]) * 1e3
        row["ms_per_mb_saved"] = extra_ms / saved_mb if saved_mb > 0 else None
    return rows


def datasets(n: int, d: int, seed: int) -> dict[str, np.ndarray]:
    """ReLU activations (many exact zeros) and dense Gaussian float32, both (n, d)."""
    _, relu = next(synthetic_activations(1, n, d, seed=seed))
    gauss = np.random.default_rng(seed + 1).standard_normal((n, d), dtype=np.float32)
    return {"relu": np.ascontiguousarray(relu, dtype=np.float32), "gauss": gauss}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="datapoints")
    parser.add_argument("--d", type=int, default=256, help="neurons")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    print(f"zarr {zarr.__version__}; {args.n} x {args.d} float32; "
          f"chunk rows {default_chunk_rows(args.d, 4, args.n)}; min of {args.repeats}")
    print(f"{'data':6} {'codec':19} {'MB disk':>8} {'ratio':>6} {'write s':>8} "
          f"{'read ms/blk':>12} {'MB/s read':>10} {'ms/MB saved':>12}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for label, data in datasets(args.n, args.d, args.seed).items():
            zero = float(np.mean(data == 0))
            for row in measure(data, Path(tmp) / label, args.repeats):
                per = row["ms_per_mb_saved"]
                print(f"{label:6} {row['codec']:19} {row['disk'] / 1e6:8.2f} {row['ratio']:6.2f} "
                      f"{row['write_s']:8.2f} {row['read_s'] * 1e3:12.2f} {row['mb_s']:10.0f} "
                      f"{'-' if per is None else f'{per:.2f}':>12}")
            print(f"# {label}: {zero:.0%} exact zeros")


if __name__ == "__main__":
    main()
