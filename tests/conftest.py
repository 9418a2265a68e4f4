"""Shared fixtures. Each test uses its own seeded ``numpy.random.Generator``."""

import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    return np.random.default_rng(20181203)


def make_pair(rng, n=600, dx=12, dy=9, shared=4, noise=0.5, offset=True):
    """Two layers driven by ``shared`` common latent factors plus independent noise."""
    z = rng.normal(size=(n, shared))
    x = z @ rng.normal(size=(shared, dx)) + noise * rng.normal(size=(n, dx))
    y = z @ rng.normal(size=(shared, dy)) + noise * rng.normal(size=(n, dy))
    if offset:
        x += rng.uniform(-2, 4, size=dx)
        y += rng.uniform(-2, 4, size=dy)
    return x, y


def counting_tsqr(monkeypatch) -> list:
    """Counts the chunks that reach the TSQR (``BasisAccumulator.update``) from now on."""
    from cca_scale.core.basis import BasisAccumulator

    seen = []
    update = BasisAccumulator.update
    monkeypatch.setattr(BasisAccumulator, "update",
                        lambda self, chunk: (seen.append(1), update(self, chunk))[1])
    return seen


def gpu_available() -> bool:
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:
        return False


requires_gpu = pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA device")


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster for one test module: 2 single-threaded worker processes, no
    dashboard (test_output_paths.py overrides it with an in-process one)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def flatten_to_format_2(out) -> None:
    """Rewrite a one-metric format-3 output in the format-2 layout (arrays at the root, the
    metric's parameters among the shared ones), as cca_scale wrote it before format 3."""
    import json
    import shutil

    doc = json.loads((out / "zarr.json").read_text())
    meta = doc["attributes"]["cca_scale"]
    (metric, own), = meta.pop("metrics").items()
    meta["params"] = {**own, **meta["params"]}
    meta["format"] = 2
    for entry in os.listdir(out / metric):
        if entry != "zarr.json":
            shutil.move(str(out / metric / entry), str(out / entry))
    shutil.rmtree(out / metric)
    (out / "zarr.json").write_text(json.dumps(doc))
