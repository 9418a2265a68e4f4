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

Transport security: multi-host clusters use TLS with a private certificate authority.
:func:`make_tls_certificates` writes one (``cca-scale tls-certs DIR`` on the command line),
:func:`tls_security` turns the files into a :class:`distributed.security.Security`, and
:func:`tls_environment` gives the ``DASK_DISTRIBUTED__COMM__TLS__*`` variables that make every
``dask scheduler``, ``dask worker`` and client process of a job use them. See deploy/README.md.
"""

from __future__ import annotations

import datetime
import gc
import importlib
import inspect
import ipaddress
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import dask

from cca_scale.errors import CcaScaleError

if TYPE_CHECKING:  # distributed is imported lazily: ``import cca_scale`` stays cheap.
    from distributed import Client
    from distributed.security import Security

__all__ = [
    "KINDS",
    "LOCAL_DASHBOARD",
    "SLURM_DEFAULTS",
    "LaunchError",
    "TLSFiles",
    "kubernetes_cluster_spec",
    "launch",
    "local_worker_count",
    "make_tls_certificates",
    "slurm_options",
    "tls_environment",
    "tls_security",
]

#: The kinds :func:`launch` knows, in the order its errors list them.
KINDS: tuple[str, ...] = ("local", "local-gpu", "slurm", "kubernetes", "address", "scheduler-file")

#: Where launched dashboards listen unless asked otherwise: this machine only. Reach one from
#: elsewhere through an SSH tunnel (``ssh -L 8787:127.0.0.1:8787 HOST``) or
#: ``kubectl port-forward``.
LOCAL_DASHBOARD = "127.0.0.1:8787"

#: ``SLURMCluster`` options of ``launch("slurm")``; the same values as the ``jobqueue.slurm``
#: section of deploy/slurm/jobqueue.yaml (tests/test_deploy.py keeps the two equal). One SLURM
#: job per GPU: one single-threaded worker that declares ``GPU=1`` and spills to node-local scratch.
SLURM_DEFAULTS: dict[str, Any] = {
    "job_name": "cca-scale",
    "cores": 1,
    "processes": 1,
    "memory": "64GiB",
    "job_cpu": 8,
    "walltime": "04:00:00",
    "job_extra_directives": ["--gres=gpu:1"],
    "worker_extra_args": ["--resources", "GPU=1"],
    "local_directory": "${TMPDIR:-/tmp}",
    "death_timeout": 120,
    "scheduler_options": {"dashboard_address": LOCAL_DASHBOARD},
}

_PIP_CUDA = ("pip install 'cca-scale[cuda]' (dask-cuda pins dask and distributed exactly; the "
             "extra installs the set that resolves together), or for the exact environment: "
             "pip install --no-deps -r deploy/requirements-cuda.lock")


class LaunchError(CcaScaleError):
    """A cluster that cannot be started or reached: unknown kind, bad options, missing package,
    unreachable or refusing scheduler."""


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
        ``host="127.0.0.1"``, ``security=None``.

        ``"local-gpu"``: ``devices`` (GPU ids or ``"0,1"``; default all visible), ``n_workers``,
        ``threads_per_worker=1``, ``rmm_pool_size=None`` (bytes, ``"40GB"`` or a fraction of the
        device like ``0.8``; CuPy then allocates from the pool), ``device_memory_limit="default"``,
        ``memory_limit="auto"``, ``local_directory``, ``dashboard_address``, ``host``,
        ``security``, ``resources`` (added to ``{"GPU": 1}``).

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


def _owning_client(cluster: Any) -> "Client":
    """A client for ``cluster`` that closes the cluster when it closes (or fails to start)."""
    try:
        client = _cluster_client_class()(cluster, set_as_default=True)
    except BaseException:
        cluster.close()
        raise
    client._cca_scale_cluster = cluster
    return client


_CLUSTER_CLIENT: type | None = None


def _cluster_client_class() -> type:
    global _CLUSTER_CLIENT
    if _CLUSTER_CLIENT is None:
        from distributed import Client

        class ClusterClient(Client):
            """A :class:`distributed.Client` that also closes the cluster ``launch`` started."""

            _cca_scale_cluster = None

            def close(self, *args: Any, **kwargs: Any) -> Any:
                try:
                    return super().close(*args, **kwargs)
                finally:
                    cluster, self._cca_scale_cluster = self._cca_scale_cluster, None
                    if cluster is not None and not sys.is_finalizing():
                        cluster.close()

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


def _slurm_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The ``jobqueue.slurm`` section of a jobqueue YAML file, with ``SLURMCluster`` names."""
    import yaml

    try:
        with open(path) as f:
            document = yaml.safe_load(f) or {}
        section = document["jobqueue"]["slurm"]
    except OSError as exc:
        raise LaunchError(f"launch('slurm'): cannot read config_file {str(path)!r}: {exc}") from exc
    except (KeyError, TypeError):
        raise LaunchError(
            f"launch('slurm'): config_file {str(path)!r} has no 'jobqueue: slurm:' section; "
            "start from deploy/slurm/jobqueue.yaml.") from None
    return slurm_options(section)


def slurm_options(section: Mapping[str, Any]) -> dict[str, Any]:
    """``SLURMCluster`` keyword arguments from a ``jobqueue.slurm`` configuration section.

    The configuration spells keys with hyphens, and its ``name`` (the SLURM job name) is the
    ``job_name`` argument (``SLURMCluster(name=...)`` names the cluster object instead).
    """
    options = {key.replace("-", "_"): value for key, value in section.items()}
    if "name" in options:
        options["job_name"] = options.pop("name")
    return options


# --------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------

def kubernetes_cluster_spec(*, name: str = "cca-scale", image: str, n_workers: int = 1,
                            gpus_per_worker: int = 1, worker_cpu: str = "8",
                            worker_memory: str = "64Gi", scheduler_cpu: str = "1",
                            scheduler_memory: str = "4Gi", rmm_pool_size: str | None = "0.8",
                            env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Dask operator ``DaskCluster`` resource with GPU limits on the workers only.

    ``KubeCluster(resources=...)`` would put the same limits on the scheduler pod too, which then
    holds a GPU it never uses; this spec sets ``nvidia.com/gpu`` on the worker container alone.
    Each worker runs ``dask cuda worker`` (one process per GPU of the pod) with
    ``--resources GPU=1`` and ``--nthreads 1``; with ``gpus_per_worker=0`` it runs a plain
    single-threaded ``dask worker`` without GPU limits or resources. Dashboards listen on
    127.0.0.1 inside their pods (``kubectl port-forward`` reaches them); readiness is probed on
    the scheduler's comm port.

    Returns
    -------
    dict
        The resource, ready for ``KubeCluster(custom_cluster_spec=...)`` or ``yaml.safe_dump``.
    """
    env_list = [{"name": key, "value": str(value)}
                for key, value in {"OMP_NUM_THREADS": "1", **(env or {})}.items()]
    worker_resources: dict[str, dict[str, Any]] = {
        "requests": {"cpu": worker_cpu, "memory": worker_memory},
        "limits": {"cpu": worker_cpu, "memory": worker_memory},
    }
    if gpus_per_worker:
        worker_resources["limits"]["nvidia.com/gpu"] = int(gpus_per_worker)
        worker_args = ["dask", "cuda", "worker", "--nthreads", "1", "--resources", "GPU=1"]
        if rmm_pool_size is not None:
            worker_args += ["--rmm-pool-size", str(rmm_pool_size),
                            "--set-rmm-allocator-for-libs", "cupy"]
    else:
        worker_args = ["dask", "worker", "--nthreads", "1", "--nworkers", "1"]
    worker_args += ["--name", "$(DASK_WORKER_NAME)", "--dashboard-address", "127.0.0.1:8788",
                    "--local-directory", "/scratch"]
    worker_pod: dict[str, Any] = {
        "containers": [{
            "name": "worker", "image": image, "args": worker_args, "env": env_list,
            "resources": worker_resources,
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        }],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    }
    if gpus_per_worker:
        worker_pod["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    scheduler_pod = {
        "containers": [{
            "name": "scheduler", "image": image,
            "args": ["dask", "scheduler", "--host", "0.0.0.0", "--port", "8786",
                     "--dashboard-address", LOCAL_DASHBOARD],
            "env": env_list,
            "resources": {"requests": {"cpu": scheduler_cpu, "memory": scheduler_memory},
                          "limits": {"cpu": scheduler_cpu, "memory": scheduler_memory}},
            "ports": [{"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
                      {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"}],
            "readinessProbe": {"tcpSocket": {"port": "tcp-comm"}, "periodSeconds": 5},
            "livenessProbe": {"tcpSocket": {"port": "tcp-comm"}, "initialDelaySeconds": 15,
                              "periodSeconds": 20},
        }],
    }
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": {"name": name},
        "spec": {
            "idleTimeout": 0,
            "worker": {"replicas": int(n_workers), "spec": worker_pod},
            "scheduler": {
                "spec": scheduler_pod,
                "service": {
                    "type": "ClusterIP",
                    "selector": {"dask.org/cluster-name": name,
                                 "dask.org/component": "scheduler"},
                    "ports": [{"name": "tcp-comm", "protocol": "TCP", "port": 8786,
                               "targetPort": "tcp-comm"},
                              {"name": "http-dashboard", "protocol": "TCP", "port": 8787,
                               "targetPort": "http-dashboard"}],
                },
            },
        },
    }


# --------------------------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TLSFiles:
    """The PEM files of a cluster's private certificate authority, as written by
    :func:`make_tls_certificates`.

    Every role (scheduler, worker, client) has a certificate signed by the CA and its own key;
    each process needs ``ca_file`` plus its own role's pair. The CA's private key is never
    written: to add a host, make a new set and hand it to every process.
    """

    ca_file: Path
    scheduler_cert: Path
    scheduler_key: Path
    worker_cert: Path
    worker_key: Path
    client_cert: Path
    client_key: Path

    #: File names inside the directory.
    NAMES = {"ca_file": "ca.pem",
             "scheduler_cert": "scheduler.pem", "scheduler_key": "scheduler-key.pem",
             "worker_cert": "worker.pem", "worker_key": "worker-key.pem",
             "client_cert": "client.pem", "client_key": "client-key.pem"}

    @classmethod
    def in_directory(cls, directory: str | os.PathLike) -> "TLSFiles":
        """The files :func:`make_tls_certificates` writes into ``directory`` (not checked)."""
        d = Path(directory)
        return cls(**{field: d / name for field, name in cls.NAMES.items()})

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> "TLSFiles":
        """The files of ``directory``; raises :class:`LaunchError` if any is missing."""
        files = cls.in_directory(directory)
        missing = [str(p) for p in files.paths() if not p.is_file()]
        if missing:
            raise LaunchError(
                f"{str(directory)!r} is not a complete TLS directory: missing {missing}. "
                f"Make one with: cca-scale tls-certs {directory}")
        return files

    def paths(self) -> list[Path]:
        return [getattr(self, f.name) for f in fields(self)]


def make_tls_certificates(directory: str | os.PathLike, *,
                          hosts: Iterable[str] = ("localhost", "127.0.0.1"), days: int = 365,
                          overwrite: bool = False) -> TLSFiles:
    """Write a self-signed certificate authority and scheduler, worker and client certificates.

    Parameters
    ----------
    directory : path
        Created (mode 0700) if missing. Receives ``ca.pem`` and ``<role>.pem`` /
        ``<role>-key.pem`` for the roles scheduler, worker and client; keys are mode 0600.
    hosts : iterable of str, default ("localhost", "127.0.0.1")
        Host names and IP addresses written as subject alternative names of the scheduler and
        worker certificates. Distributed authenticates peers by the CA alone (it does not check
        host names), so these are informative; list the cluster's hosts anyway.
    days : int, default 365
        Validity of every certificate, counted from five minutes ago (clock skew).
    overwrite : bool, default False
        Replace existing files. Without it, an existing file is an error and nothing is written.

    Returns
    -------
    TLSFiles

    Raises
    ------
    LaunchError
        ``days`` below 1, no or an empty host, or files that exist without ``overwrite``.

    Notes
    -----
    ECDSA P-256 keys, SHA-256 signatures. Scheduler and worker certificates allow both server
    and client authentication (each connects to the other); the client's allows client
    authentication only. The CA's private key exists only in memory while this runs, so nobody
    can mint further certificates for the cluster from these files. Needs ``cryptography``.

    Examples
    --------
    >>> files = make_tls_certificates("tls", hosts=["node01", "10.0.0.5"])   # doctest: +SKIP
    >>> client = launch("address", address="tls://10.0.0.5:8786",
    ...                 security=tls_security(files))                          # doctest: +SKIP
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if isinstance(hosts, str):
        hosts = [hosts]
    hosts = list(dict.fromkeys(hosts))
    if not hosts or any(not isinstance(h, str) or not h.strip() for h in hosts):
        raise LaunchError(
            f"make_tls_certificates needs one or more non-empty hosts. Got {hosts!r}.")
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise LaunchError(f"The 'days' parameter of make_tls_certificates must be an int >= 1. "
                          f"Got {days!r} instead.")
    directory = Path(directory)
    files = TLSFiles.in_directory(directory)
    existing = [str(p) for p in files.paths() if p.exists()]
    if existing and not overwrite:
        raise LaunchError(f"TLS files already exist: {existing}. Pass overwrite=True "
                          "(cca-scale tls-certs --overwrite) to replace them.")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cca_scale cluster"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("cca_scale cluster CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host.strip())))
        except ValueError:
            alt_names.append(x509.DNSName(host.strip()))

    outputs: dict[Path, bytes] = {files.ca_file: ca_cert.public_bytes(serialization.Encoding.PEM)}
    for role in ("scheduler", "worker", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if role == "client"
                  else [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
        sans = (alt_names if role != "client" else [x509.DNSName("cca-scale-client")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(f"cca_scale {role}")).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        outputs[getattr(files, f"{role}_cert")] = cert.public_bytes(serialization.Encoding.PEM)
        outputs[getattr(files, f"{role}_key")] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())

    for path, data in outputs.items():
        _write_private(path, data, mode=0o600 if path.name.endswith("-key.pem") else 0o644)
    return files


def _write_private(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the start (no window with wider access)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def tls_security(files: TLSFiles | str | os.PathLike, *,
                 require_encryption: bool = True) -> "Security":
    """A :class:`distributed.security.Security` for every role from a :class:`TLSFiles` set.

    Parameters
    ----------
    files : TLSFiles or path
        The files, or the directory :func:`make_tls_certificates` wrote.
    require_encryption : bool, default True
        Refuse any unencrypted (``tcp://``) connection.

    Returns
    -------
    distributed.security.Security
        Usable by a client, a scheduler and workers alike (each picks its role's pair).
    """
    from distributed.security import Security

    if not isinstance(files, TLSFiles):
        files = TLSFiles.from_directory(files)
    return Security(
        tls_ca_file=str(files.ca_file),
        tls_scheduler_cert=str(files.scheduler_cert), tls_scheduler_key=str(files.scheduler_key),
        tls_worker_cert=str(files.worker_cert), tls_worker_key=str(files.worker_key),
        tls_client_cert=str(files.client_cert), tls_client_key=str(files.client_key),
        require_encryption=require_encryption,
    )


def tls_environment(files: TLSFiles | str | os.PathLike, *,
                    require_encryption: bool = True) -> dict[str, str]:
    """Environment variables that give every Dask process of a job the TLS settings of ``files``.

    Dask reads ``DASK_<SECTION>__<KEY>`` variables into its configuration, so exporting these
    before ``dask scheduler``, ``dask worker``, ``dask cuda worker`` or ``cca-scale compare
    --scheduler tls://...`` makes each use its role's certificate (see deploy/slurm).

    Returns
    -------
    dict of str to str
        Absolute paths. ``DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION`` and the
        ``DASK_DISTRIBUTED__COMM__TLS__*`` variables (the keys of the ``distributed.comm``
        configuration section).
    """
    if not isinstance(files, TLSFiles):
        files = TLSFiles.from_directory(files)
    prefix = "DASK_DISTRIBUTED__COMM__"
    env = {f"{prefix}REQUIRE_ENCRYPTION": str(bool(require_encryption)),
           f"{prefix}TLS__CA_FILE": str(Path(files.ca_file).absolute())}
    for role in ("scheduler", "worker", "client"):
        for part in ("cert", "key"):
            path = Path(getattr(files, f"{role}_{part}")).absolute()
            env[f"{prefix}TLS__{role.upper()}__{part.upper()}"] = str(path)
    return env


def _security(security: Any) -> Any:
    """Accept a Security (or its keyword dict), a TLSFiles set, a TLS directory, or None/False
    (Dask's configuration); ``True`` stays (distributed's in-memory temporary certificates)."""
    if security is None or security is False:
        return None
    if isinstance(security, TLSFiles | str | os.PathLike):
        return tls_security(security)
    if isinstance(security, Mapping):
        from distributed.security import Security

        return Security(**security)
    return security
