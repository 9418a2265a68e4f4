"""Start or reach a Dask cluster for cca_scale: one function for every place a sweep runs.

``launch(kind, **options)`` returns a connected :class:`distributed.Client` for

====================  ========================================================================
``"local"``           a :class:`distributed.LocalCluster` on this machine: one single-threaded
                      worker process per core, dashboard on 127.0.0.1 only
``"local-gpu"``       dask-cuda's ``LocalCUDACluster``: one worker per GPU, each declaring the
                      resource ``GPU=1``, optionally with an RMM memory pool
``"slurm"``           dask-jobqueue's ``SLURMCluster`` with the options of
                      ``deploy/slurm/jobqueue.yaml`` (one GPU per job, ``GPU=1``, local scratch)
``"kubernetes"``      the Dask Kubernetes operator's ``KubeCluster``; GPU limits on the worker
                      pods only, never on the scheduler
``"address"``         an already running scheduler at ``address=`` (``tcp://`` or ``tls://``)
``"scheduler-file"``  an already running scheduler that wrote ``scheduler_file=``
====================  ========================================================================

Closing the returned client also closes the cluster that ``launch`` started; for ``"address"``
and ``"scheduler-file"`` it only disconnects and never shuts the scheduler down.

TLS lives in :mod:`cca_scale.runtime.tls`, cluster specifications in
:mod:`cca_scale.runtime.specs`, the client a comparison runs on in :mod:`cca_scale.runtime.client`.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import dask

from cca_scale.errors import LaunchError
from cca_scale.runtime.specs import LOCAL_DASHBOARD, SLURM_DEFAULTS, WORKER_PRELOAD, \
    _slurm_config_file, kubernetes_cluster_spec
from cca_scale.runtime.tls import _security

if TYPE_CHECKING:  # distributed is imported lazily: ``import cca_scale`` stays cheap.
    from distributed import Client

__all__ = ["KINDS", "SCHEDULER_SETTINGS", "LaunchError", "launch", "local_worker_count"]

#: The kinds :func:`launch` knows, in the order its errors list them.
KINDS: tuple[str, ...] = ("local", "local-gpu", "slurm", "kubernetes", "address", "scheduler-file")

_PIP_CUDA = ("pip install 'cca-scale[cuda]' (dask-cuda pins dask and distributed exactly; the "
             "extra installs the set that resolves together), or for the exact environment: "
             "pip install --no-deps -r deploy/requirements-cuda.lock")


# --------------------------------------------------------------------------------------------
# launch
# --------------------------------------------------------------------------------------------

def launch(kind: str, /, **options: Any) -> "Client":
    """Start (or connect to) a Dask cluster and return a client connected to it.

    Parameters
    ----------
    kind : {"local", "local-gpu", "slurm", "kubernetes", "address", "scheduler-file"}
        Where to run; see the module docstring and deploy/README.md.
    **options
        Keyword options of that kind, listed below. Options a cluster kind does not name are
        passed on to its cluster class (``LocalCluster``, ``LocalCUDACluster``, ``SLURMCluster``,
        ``KubeCluster``).

        ``"local"``: ``n_workers`` (default: the usable cores), ``threads_per_worker=1``,
        ``memory_limit="auto"``, ``dashboard_address="127.0.0.1:8787"`` (None: no dashboard),
        ``host="127.0.0.1"``, ``security=None``, ``preload=["cca_scale.engine.tasks"]`` (the
        workers import the task module as they start, not in their first task).

        ``"local-gpu"``: ``devices`` (GPU ids or ``"0,1"``; default all visible), ``n_workers``,
        ``threads_per_worker=1``, ``rmm_pool_size=None`` (bytes, ``"40GB"`` or a fraction of the
        device like ``0.8``; CuPy then allocates from the pool), ``device_memory_limit="default"``,
        ``memory_limit="auto"``, ``local_directory``, ``dashboard_address``, ``host``,
        ``security``, ``resources`` (added to ``{"GPU": 1}``), ``preload`` (as ``"local"``).

        ``"slurm"``: ``n_workers=1`` (SLURM jobs, one worker each), ``config_file`` (a YAML in
        the format of deploy/slurm/jobqueue.yaml whose ``jobqueue.slurm`` values replace
        :data:`SLURM_DEFAULTS`), ``dashboard_address``, ``security``; any ``SLURMCluster``
        option (``queue``, ``account``, ``walltime``, ``job_script_prologue``, ...) overrides
        both. Options left unset come from Dask's ``jobqueue.slurm`` configuration.

        ``"kubernetes"``: ``image`` (required: the image built from deploy/Dockerfile),
        ``name="cca-scale"``, ``namespace``, ``n_workers=1``, ``gpus_per_worker=1``,
        ``worker_cpu``, ``worker_memory``, ``scheduler_cpu``, ``scheduler_memory``,
        ``rmm_pool_size``, ``env``; see :func:`kubernetes_cluster_spec`.

        ``"address"``: ``address`` (required), ``security`` (a ``Security``, a
        :class:`TLSFiles` or a directory written by :func:`make_tls_certificates`; default:
        Dask's ``distributed.comm.tls`` configuration), ``timeout`` (seconds to connect;
        default ``distributed.comm.timeouts.connect``).

        ``"scheduler-file"``: ``scheduler_file`` (required), ``security``, ``timeout``.

    Returns
    -------
    distributed.Client
        Connected and set as the default client. ``client.close()`` also closes a cluster that
        ``launch`` started.

    Raises
    ------
    LaunchError
        Unknown kind (the message lists the known ones), an option the kind does not take, a
        missing package (the message says what to ``pip install``), or a scheduler that cannot
        be reached or refuses the connection.

    Examples
    --------
    >>> client = launch("local", n_workers=2)                       # doctest: +SKIP
    >>> client = launch("local-gpu", rmm_pool_size=0.8)              # doctest: +SKIP
    >>> client = launch("address", address="tls://10.0.0.5:8786",
    ...                 security="/etc/cca-scale/tls")               # doctest: +SKIP
    """
    try:
        starter = _STARTERS[kind]
    except (KeyError, TypeError):
        raise LaunchError(
            f"The 'kind' parameter of launch must be a str among {list(KINDS)}. "
            f"Got {kind!r} instead.") from None
    signature = inspect.signature(starter)
    try:
        signature.bind(**options)
    except TypeError as exc:
        named = [p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
        raise LaunchError(f"launch({kind!r}): {exc}; its options are {named}.") from None
    return starter(**options)


#: Scheduler settings for the clusters launch() starts (also in deploy/dask/cca-scale.yaml).
#: Without root-task queuing every ``prepare`` task waits on a worker, where its priority puts
#: it ahead of any tile: all bases are ready early and the largest tiles start first. With
#: queuing, a ready tile overtakes the bases still queued at the scheduler and the largest tile,
#: which needs them all, starts last (measured: 32 s instead of 22 s for 16 networks).
SCHEDULER_SETTINGS = {"distributed.scheduler.worker-saturation": float("inf")}


def _local(*, n_workers: int | None = None, threads_per_worker: int = 1,
           memory_limit: str | int | float | None = "auto",
           dashboard_address: str | None = LOCAL_DASHBOARD, host: str = "127.0.0.1",
           security: Any = None, **cluster_options: Any) -> "Client":
    from distributed import LocalCluster

    _check_workers(n_workers)
    if n_workers is None:
        n_workers = local_worker_count()
    cluster_options.setdefault("processes", True)  # one process each: no GIL contention
    cluster_options.setdefault("preload", [WORKER_PRELOAD])
    with dask.config.set(SCHEDULER_SETTINGS):
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker,
            memory_limit=memory_limit, dashboard_address=dashboard_address, host=host,
            security=_security(security), **cluster_options,
        )
    return _owning_client(cluster)


def _local_gpu(*, devices: str | Iterable[int] | None = None, n_workers: int | None = None,
               threads_per_worker: int = 1, rmm_pool_size: str | int | float | None = None,
               device_memory_limit: str | int | float | None = "default",
               memory_limit: str | int | float | None = "auto",
               local_directory: str | None = None,
               dashboard_address: str | None = LOCAL_DASHBOARD, host: str = "127.0.0.1",
               security: Any = None, resources: Mapping[str, float] | None = None,
               **cluster_options: Any) -> "Client":
    _check_workers(n_workers)
    dask_cuda = _require("dask_cuda", "local-gpu", _PIP_CUDA)
    if rmm_pool_size is not None:
        _require("rmm", "local-gpu with rmm_pool_size",
                 "pip install 'rmm-cu12==26.10.*' (part of the cca-scale[cuda] extra)")
        # A pool only helps if CuPy allocates from it.
        cluster_options.setdefault("rmm_allocator_external_lib_list", ["cupy"])
    cluster_options.setdefault("preload", [WORKER_PRELOAD])
    if devices is not None and not isinstance(devices, str):
        devices = [int(d) for d in devices]
    with dask.config.set(SCHEDULER_SETTINGS):
        cluster = dask_cuda.LocalCUDACluster(
            CUDA_VISIBLE_DEVICES=devices, n_workers=n_workers,
            threads_per_worker=threads_per_worker, rmm_pool_size=rmm_pool_size,
            device_memory_limit=device_memory_limit, memory_limit=memory_limit,
            local_directory=local_directory, dashboard_address=dashboard_address, host=host,
            security=_security(security), resources={"GPU": 1, **(resources or {})},
            **cluster_options,
        )
    return _owning_client(cluster)


def _slurm(*, n_workers: int = 1, config_file: str | os.PathLike | None = None,
           dashboard_address: str | None = LOCAL_DASHBOARD, security: Any = None,
           **cluster_options: Any) -> "Client":
    _check_workers(n_workers)
    dask_jobqueue = _require("dask_jobqueue", "slurm", "pip install 'cca-scale[slurm]'")
    settings = dict(SLURM_DEFAULTS)
    if config_file is not None:
        settings.update(_slurm_config_file(config_file))
    settings.update(cluster_options)
    scheduler_options = dict(settings.pop("scheduler_options", None) or {})
    scheduler_options.setdefault("dashboard_address", dashboard_address)
    cluster = dask_jobqueue.SLURMCluster(
        n_workers=n_workers, security=_security(security), scheduler_options=scheduler_options,
        **{key: value for key, value in settings.items() if value is not None},
    )
    return _owning_client(cluster)


def _kubernetes(*, image: str | None = None, name: str = "cca-scale", namespace: str | None = None,
                n_workers: int = 1, gpus_per_worker: int = 1, worker_cpu: str = "8",
                worker_memory: str = "64Gi", scheduler_cpu: str = "1",
                scheduler_memory: str = "4Gi", rmm_pool_size: str | None = "0.8",
                env: Mapping[str, str] | None = None, security: Any = None,
                **cluster_options: Any) -> "Client":
    _check_workers(n_workers)
    operator = _require("dask_kubernetes.operator", "kubernetes",
                        "pip install 'cca-scale[kubernetes]'")
    if security is not None:
        raise LaunchError(
            "launch('kubernetes') cannot use TLS: dask-kubernetes' KubeCluster always connects "
            "with tcp://. For TLS apply deploy/kubernetes/daskcluster.yaml and connect with "
            "launch('address', address='tls://...', security=...) (see deploy/README.md).")
    if not image:
        raise LaunchError(
            "launch('kubernetes') needs image=, the image built from deploy/Dockerfile and "
            "pushed to a registry the cluster can pull from (see deploy/README.md).")
    spec = kubernetes_cluster_spec(
        name=name, image=image, n_workers=n_workers, gpus_per_worker=gpus_per_worker,
        worker_cpu=worker_cpu, worker_memory=worker_memory, scheduler_cpu=scheduler_cpu,
        scheduler_memory=scheduler_memory, rmm_pool_size=rmm_pool_size, env=env,
    )
    cluster_options.setdefault("quiet", True)  # library code never prints
    cluster = operator.KubeCluster(custom_cluster_spec=spec, namespace=namespace,
                                   **cluster_options)
    return _owning_client(cluster)


def _address(*, address: str, security: Any = None, timeout: float | None = None) -> "Client":
    if not isinstance(address, str) or not address.strip():
        raise LaunchError(f"launch('address') needs address='tls://HOST:PORT'. Got {address!r}.")
    return _connect(address, where=f"the Dask scheduler at {address!r}",
                    security=security, timeout=timeout)


def _scheduler_file(*, scheduler_file: str | os.PathLike, security: Any = None,
                    timeout: float | None = None) -> "Client":
    path = Path(scheduler_file)
    if not path.is_file():
        raise LaunchError(
            f"launch('scheduler-file'): no scheduler file at {str(path)!r}. It is written by "
            f"'dask scheduler --scheduler-file {path}' once the scheduler is up; check the path "
            "(on a shared file system) and that the scheduler started.")
    return _connect(None, scheduler_file=str(path),
                    where=f"the Dask scheduler of scheduler file {str(path)!r}",
                    security=security, timeout=timeout)


_STARTERS: dict[str, Callable[..., "Client"]] = {
    "local": _local,
    "local-gpu": _local_gpu,
    "slurm": _slurm,
    "kubernetes": _kubernetes,
    "address": _address,
    "scheduler-file": _scheduler_file,
}


def _connect(address: str | None, *, where: str, security: Any, timeout: float | None,
             scheduler_file: str | None = None) -> "Client":
    import dask.config
    from dask.utils import parse_timedelta
    from distributed import Client

    security = _security(security)
    if timeout is None:
        timeout = dask.config.get("distributed.comm.timeouts.connect")
    seconds = parse_timedelta(timeout, "s")
    if address is not None and address.startswith("tls://") and not _has_client_tls(security):
        raise LaunchError(
            f"{where} uses TLS but this client has no certificate: pass security= (a directory "
            "written by 'cca-scale tls-certs', or a distributed Security) or set the "
            "DASK_DISTRIBUTED__COMM__TLS__* variables (cca-scale tls-certs DIR --env).")
    try:
        return Client(address, scheduler_file=scheduler_file, security=security,
                      timeout=timeout, set_as_default=True)
    except (OSError, TimeoutError, RuntimeError, TypeError, ValueError) as exc:
        failure = f"{type(exc).__name__}: {exc}"
    # The half-built Client sits in a reference cycle (held by the traceback until here). Collect
    # it now: collected later by chance, inside the next Client's start, its __del__ waits for
    # the LoopRunner lock that start holds, and that start fails after 10 s (distributed
    # 2026.8). For the same reason the error below does not chain the original traceback.
    gc.collect()
    raise LaunchError(
        f"Could not connect to {where} within {seconds:g} s: {failure}. Check that the "
        "scheduler is running and reachable, and for tls:// that this client has the "
        "certificates of the cluster's certificate authority (cca-scale tls-certs, "
        "deploy/README.md).")


def _has_client_tls(security: Any) -> bool:
    """Whether ``security`` (None: Dask's configuration) gives a client TLS context."""
    from distributed.security import Security

    if security is True:
        return True
    if not isinstance(security, Security):
        security = Security()
    return security.get_connection_args("client").get("ssl_context") is not None


def _owning_client(cluster: Any, *, on_close: Callable[[], Any] | None = None) -> "Client":
    """A client for ``cluster`` that closes the cluster when it closes (or fails to start), then
    calls ``on_close`` (once)."""
    try:
        client = _cluster_client_class()(cluster, set_as_default=True)
    except BaseException:
        try:
            cluster.close()
        finally:
            if on_close is not None:
                on_close()
        raise
    client._cca_scale_cluster = cluster
    client._cca_scale_on_close = on_close
    return client


_CLUSTER_CLIENT: type | None = None


def _cluster_client_class() -> type:
    global _CLUSTER_CLIENT
    if _CLUSTER_CLIENT is None:
        from distributed import Client

        class ClusterClient(Client):
            """A :class:`distributed.Client` that also closes the cluster ``launch`` started."""

            _cca_scale_cluster = None
            _cca_scale_on_close = None

            def close(self, *args: Any, **kwargs: Any) -> Any:
                try:
                    return super().close(*args, **kwargs)
                finally:
                    cluster, self._cca_scale_cluster = self._cca_scale_cluster, None
                    on_close, self._cca_scale_on_close = self._cca_scale_on_close, None
                    try:
                        if cluster is not None and not sys.is_finalizing():
                            cluster.close()
                    finally:
                        if on_close is not None:
                            on_close()

        ClusterClient.__module__ = __name__
        _CLUSTER_CLIENT = ClusterClient
    return _CLUSTER_CLIENT


def _require(module: str, kind: str, how: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise LaunchError(
            f"launch({kind!r}) needs the package that provides '{module}', which is not "
            f"installed ({exc}). Install it with: {how}") from exc


def local_worker_count() -> int:
    """Cores this process may use (respects CPU affinity, e.g. under SLURM or taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _check_workers(n_workers: Any) -> None:
    """Worker counts are positive integers (0 or -2 workers would wait for ever)."""
    if n_workers is not None and (not isinstance(n_workers, int) or isinstance(n_workers, bool)
                                  or n_workers < 1):
        raise LaunchError(
            f"The 'n_workers' parameter must be a positive integer. Got {n_workers!r} instead."
        )


