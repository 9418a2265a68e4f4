"""Which Dask client a comparison runs on: the caller's, an address, or an embedded LocalCluster,
and what the workers of that client offer (memory, GPUs)."""

from __future__ import annotations

from typing import Any

__all__ = ["command_line_client", "open_client", "worker_memory_bytes", "workers_with_gpus"]


def open_client(*, client=None, scheduler: str | None = None, n_workers: int | None = None,
                gpu: bool = False):
    """Return ``(client, owned)``; ``owned`` clients (and their clusters) are closed by the caller.

    No client and no address: an embedded in-process cluster with ``n_workers`` task threads
    (default: one per usable core) and BLAS limited to one thread per task while it runs; see
    :mod:`cca_scale.runtime.embedded` for why threads and not worker processes. Its dashboard
    listens on a free port of 127.0.0.1. ``gpu=True`` starts a dask-cuda ``LocalCUDACluster``
    instead.
    """
    if client is not None:
        return client, False
    from cca_scale.runtime.launch import launch, local_worker_count

    if scheduler:
        return launch("address", address=scheduler), True
    if gpu:
        return launch("local-gpu"), True
    from cca_scale.runtime.embedded import embedded_client

    return embedded_client(n_threads=n_workers or local_worker_count()), True


def command_line_client(*, cluster: str | None = None, scheduler: str | None = None,
                        n_workers: int | None = None, wait_workers: int | None = None,
                        gpu: bool = False) -> Any:
    """The client a command (``--cluster``/``--scheduler``/``--wait-workers``) asks for, or None
    when the engine should open its own. The caller closes a returned client (which also closes a
    cluster it started)."""
    from cca_scale.runtime.launch import launch

    client = None
    if cluster:
        client = launch(cluster, **({"n_workers": n_workers}
                                    if n_workers and cluster == "local" else {}))
    if wait_workers:
        embedded = client is None and not scheduler and not gpu
        client, _ = open_client(client=client, scheduler=scheduler,
                                n_workers=n_workers or wait_workers, gpu=gpu)
        # The embedded cluster's task threads all live in its one worker, there once started.
        client.wait_for_workers(1 if embedded else wait_workers, timeout=600)
    return client


def worker_memory_bytes(client) -> int:
    """The smallest memory one task may use: a worker's memory limit shared by its threads, the
    smallest among the workers (0 when unlimited or unknown)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    limits = [int(w.get("memory_limit") or 0) // max(1, int(w.get("nthreads") or 1))
              for w in workers]
    limits = [m for m in limits if m > 0]
    return min(limits) if limits else 0


def workers_with_gpus(client) -> int:
    """How many workers declare the resource ``GPU=1``."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return sum(1 for w in workers if (w.get("resources") or {}).get("GPU", 0) >= 1)
