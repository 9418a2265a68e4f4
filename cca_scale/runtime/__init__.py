"""Where comparisons run: starting or reaching Dask clusters (:mod:`.launch`), their
specifications on paper (:mod:`.specs`), transport security (:mod:`.tls`) and the client a
comparison uses (:mod:`.client`). The math (``cca_scale.core``) never imports this package.
"""

from cca_scale.errors import LaunchError
from cca_scale.runtime.launch import KINDS, SCHEDULER_SETTINGS, launch, local_worker_count
from cca_scale.runtime.specs import (
    LOCAL_DASHBOARD,
    SLURM_DEFAULTS,
    kubernetes_cluster_spec,
    slurm_options,
)
from cca_scale.runtime.tls import TLSFiles, make_tls_certificates, tls_environment, tls_security

__all__ = [
    "KINDS",
    "LOCAL_DASHBOARD",
    "SCHEDULER_SETTINGS",
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
