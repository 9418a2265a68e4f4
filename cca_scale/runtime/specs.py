"""Cluster specifications on paper: SLURM job options and the Kubernetes ``DaskCluster``.

Pure data and small functions (no cluster is started here); :func:`cca_scale.launch` and the
recipes in the top-level ``deploy/`` folder use them, and tests/test_deploy.py keeps them equal.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from cca_scale.errors import LaunchError

__all__ = ["LOCAL_DASHBOARD", "SLURM_DEFAULTS", "WORKER_PRELOAD", "kubernetes_cluster_spec",
           "slurm_options"]

#: The module the engine's tasks live in, preloaded by the workers we start (``--preload``):
#: imported while a worker starts rather than by its first task. Measured on a cold 2-process
#: LocalCluster (2 cores, 3 rounds): first tasks 1.3-2.2 s -> 0.05 s after the workers joined,
#: start plus first tasks 0.34-0.42 s shorter in all.
WORKER_PRELOAD = "cca_scale.engine.tasks"

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
    "worker_extra_args": ["--resources", "GPU=1", "--preload", WORKER_PRELOAD],
    "local_directory": "${TMPDIR:-/tmp}",
    "death_timeout": 120,
    "scheduler_options": {"dashboard_address": LOCAL_DASHBOARD},
}


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
    single-threaded ``dask worker`` without GPU limits or resources. Both ``--preload``
    :data:`WORKER_PRELOAD`. Dashboards listen on 127.0.0.1 inside their pods (``kubectl
    port-forward`` reaches them); readiness is probed on the scheduler's comm port.

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
    worker_args += ["--preload", WORKER_PRELOAD, "--name", "$(DASK_WORKER_NAME)",
                    "--dashboard-address", "127.0.0.1:8788", "--local-directory", "/scratch"]
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
