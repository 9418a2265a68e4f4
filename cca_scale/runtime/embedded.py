"""The cluster a comparison starts for itself when given no client and no scheduler.

An in-process, threaded :class:`distributed.LocalCluster`: one worker in this process with one
thread per core (``n_threads``), the in-process transport, and its dashboard on a free port of
127.0.0.1. While it runs, BLAS/LAPACK libraries already loaded in this process are limited to
one thread per call (threadpoolctl), so that ``n_threads`` tasks use ``n_threads`` cores;
closing the client closes the cluster and restores the previous limits.

Why threads rather than one single-threaded worker process per core (what ``launch("local")``
still starts): the tasks spend their time in NumPy's BLAS/LAPACK and in Zarr/numcodecs decoding,
which release the GIL, and a comparison started from a command is short-lived, so the fixed
costs of worker processes dominate small runs. Measured on a shared 2-core machine (load ~2,
whole ``cca-scale compare`` processes, 7 interleaved rounds, min): starting the cluster 0.05 s
instead of 0.67 s, closing it 0.01 s instead of 0.45 s, no package import in fresh worker
processes before the first task, no serialization of bases between processes; 64 networks x
5,000 x 64 took 5.2 s instead of 7.4 s, 32 x 10,000 x 128 7.2 s instead of 8.7 s, with the
engine's own wall time unchanged and results bit-identical to single-threaded worker processes.
A dead task thread cannot be restarted as a dead process can, but a killed run
resumes from its output like any other (the output, not the cluster, holds the progress).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import dask

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["EMBEDDED_DASHBOARD", "dashboard_link", "embedded_client"]

#: Where the embedded cluster's dashboard listens: a free port, this machine only.
EMBEDDED_DASHBOARD = "127.0.0.1:0"


def embedded_client(*, n_threads: int, dashboard: bool = True,
                    memory_limit: str | int | float | None = "auto") -> "Client":
    """A client of a new in-process threaded cluster with ``n_threads`` task threads.

    ``client.close()`` closes the cluster and restores the BLAS thread limits it changed.
    """
    from distributed import LocalCluster
    from threadpoolctl import threadpool_limits

    from cca_scale.runtime.launch import SCHEDULER_SETTINGS, _check_workers, _owning_client

    _check_workers(n_threads)
    importlib.import_module("numpy")  # its BLAS must be loaded for the limit to reach it

    limits = threadpool_limits(limits=1)
    try:
        with dask.config.set(SCHEDULER_SETTINGS):
            cluster = LocalCluster(
                processes=False, n_workers=1, threads_per_worker=n_threads,
                memory_limit=memory_limit,
                dashboard_address=EMBEDDED_DASHBOARD if dashboard else None)
    except BaseException:
        limits.restore_original_limits()
        raise
    return _owning_client(cluster, on_close=limits.restore_original_limits)


def dashboard_link(client: Any) -> str | None:
    """The address of ``client``'s dashboard as a browser on this machine reaches it, or None.

    For an in-process cluster Dask's own ``client.dashboard_link`` names this machine's network
    address, where the dashboard (bound to 127.0.0.1) does not listen; this names 127.0.0.1.
    """
    cluster = getattr(client, "_cca_scale_cluster", None)
    scheduler = getattr(cluster, "scheduler", None)
    if scheduler is not None and str(scheduler.address).startswith("inproc://"):
        server = scheduler.services.get("dashboard")
        port = getattr(server, "port", None)
        return f"http://127.0.0.1:{port}/status" if port else None
    try:
        return client.dashboard_link
    except Exception:  # no dashboard (e.g. a scheduler started with --no-dashboard)
        return None

