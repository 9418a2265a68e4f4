"""Deployment: the recipes in deploy/ name real options and run, launch() starts and reaches
clusters, TLS refuses clients without the cluster's certificates, and the pins resolve on paper.

Every process started here listens on 127.0.0.1 only and is stopped in a ``finally``.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import shlex
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from cca_scale.errors import CcaScaleError
from cca_scale.runtime import (
    KINDS,
    LOCAL_DASHBOARD,
    SLURM_DEFAULTS,
    LaunchError,
    TLSFiles,
    kubernetes_cluster_spec,
    launch,
    make_tls_certificates,
    slurm_options,
    tls_environment,
    tls_security,
)
from conftest import requires_gpu

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
DASK = str(BIN / "dask")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


# ---------------------------------------------------------------------------------------------
# helpers: real `dask scheduler` / `dask worker` processes on loopback
# ---------------------------------------------------------------------------------------------

def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without Dask settings of the machine, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _stop(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            with contextlib.suppress(ValueError):
                json.loads(path.read_text())
                return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear within {timeout} s")


@contextlib.contextmanager
def dask_processes(tmp: Path, *, tls: TLSFiles | None = None, n_workers: int = 1):
    """A `dask scheduler` and a `dask worker` process on 127.0.0.1; yields the scheduler file."""
    scheduler_file = tmp / "scheduler.json"
    scheduler_args = [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                      "--scheduler-file", str(scheduler_file)]
    worker_args = [DASK, "worker", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
                   "--nthreads", "1", "--nworkers", str(n_workers), "--no-dashboard",
                   "--local-directory", str(tmp), "--death-timeout", "30"]
    if tls is not None:
        scheduler_args += ["--protocol", "tls", "--tls-ca-file", str(tls.ca_file),
                           "--tls-cert", str(tls.scheduler_cert),
                           "--tls-key", str(tls.scheduler_key)]
        worker_args += ["--tls-ca-file", str(tls.ca_file), "--tls-cert", str(tls.worker_cert),
                        "--tls-key", str(tls.worker_key)]
    scheduler = worker = None
    try:
        scheduler = subprocess.Popen(scheduler_args, env=_clean_env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait_for_file(scheduler_file, scheduler)
        worker = subprocess.Popen(worker_args, env=_clean_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        yield scheduler_file, scheduler, worker
    finally:
        _stop(worker)
        _stop(scheduler)


def _address(scheduler_file: Path) -> str:
    return json.loads(scheduler_file.read_text())["address"]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> TLSFiles:
    return make_tls_certificates(tmp_path_factory.mktemp("tls") / "certs")


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, tls_files):
    """A TLS scheduler + worker on loopback, shared by the TLS tests; yields the address."""
    tmp = tmp_path_factory.mktemp("tls-cluster")
    with dask_processes(tmp, tls=tls_files) as (scheduler_file, _, _):
        yield _address(scheduler_file)


# ---------------------------------------------------------------------------------------------
# launch(): kinds, options, errors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gpu", "Local", "slurm-gpu", None, 3])
def test_unknown_kind_lists_the_known_ones(kind):
    with pytest.raises(LaunchError, match=r"must be a str among \['local', 'local-gpu'.*"
                                          r"'scheduler-file'\]\. Got") as info:
        launch(kind)
    assert isinstance(info.value, CcaScaleError)


@pytest.mark.parametrize("kind, options, match", [
    ("address", {}, r"launch\('address'\): missing a required argument: 'address'"),
    ("address", {"address": "tcp://127.0.0.1:1", "n_workers": 2},
     r"unexpected keyword argument 'n_workers'.*options are \['address', 'security', 'timeout'\]"),
    ("scheduler-file", {}, r"missing a required argument: 'scheduler_file'"),
    ("scheduler-file", {"scheduler_file": "/nonexistent/scheduler.json"},
     r"no scheduler file at '/nonexistent/scheduler.json'"),
    ("address", {"address": ""}, r"needs address='tls://HOST:PORT'"),
])
def test_bad_options_are_launch_errors(kind, options, match):
    with pytest.raises(LaunchError, match=match):
        launch(kind, **options)


@pytest.mark.parametrize("kind, module, needs", [
    ("local-gpu", "dask_cuda", r"pip install 'cca-scale\[cuda\]' \(dask-cuda pins dask"),
    ("slurm", "dask_jobqueue", r"pip install 'cca-scale\[slurm\]'"),
    ("kubernetes", "dask_kubernetes.operator", r"pip install 'cca-scale\[kubernetes\]'"),
])
def test_missing_cluster_package_says_what_to_install(monkeypatch, kind, module, needs):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(LaunchError, match=needs):
        launch(kind, image="x") if kind == "kubernetes" else launch(kind)


def test_launch_is_exported_and_its_defaults_keep_dashboards_local():
    import inspect

    import cca_scale
    from cca_scale import launch as exported

    assert "launch" in cca_scale.__all__ and exported is launch
    assert LOCAL_DASHBOARD.startswith("127.0.0.1:")
    starters = sys.modules["cca_scale.runtime.launch"]._STARTERS
    assert tuple(starters) == KINDS
    for kind in ("local", "local-gpu", "slurm"):
        param = inspect.signature(starters[kind]).parameters["dashboard_address"]
        assert param.default == LOCAL_DASHBOARD, kind


@pytest.mark.timeout(60)
def test_launch_local_gives_single_threaded_worker_processes_on_loopback():
    import warnings

    import psutil

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Port 8787 is already in use": another port
        client = launch("local", n_workers=2)
    cluster = client.cluster
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 2
        assert {w["nthreads"] for w in workers.values()} == {1}
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert all(address.startswith("tcp://127.0.0.1:") for address in workers)
        pids = client.run(os.getpid)
        assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
        # Nothing the workers or the dashboard listen on is reachable from other machines.
        for pid in pids.values():
            listening = [c.laddr.ip for c in psutil.Process(pid).net_connections("inet")
                         if c.status == psutil.CONN_LISTEN]
            assert listening and set(listening) == {"127.0.0.1"}, listening
        http = cluster.scheduler.http_server
        assert {s.getsockname()[0] for s in http._sockets.values()} == {"127.0.0.1"}
        assert client.submit(sum, [1, 2, 3]).result() == 6
    finally:
        client.close()
    assert cluster.status.name == "closed"  # closing the client closed the cluster launch made


@pytest.mark.timeout(60)
def test_embedded_cluster_is_threads_in_this_process_with_one_blas_thread_each():
    from threadpoolctl import threadpool_info, threadpool_limits

    from cca_scale.runtime.client import open_client, worker_memory_bytes
    from cca_scale.runtime.embedded import dashboard_link

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    with threadpool_limits(limits=2, user_api="blas"):  # what the caller had is restored after
        client, owned = open_client(n_workers=3)
        cluster = client.cluster
        try:
            assert owned
            (worker,) = client.scheduler_info(n_workers=-1)["workers"].values()
            assert worker["nthreads"] == 3
            assert client.scheduler.address.startswith("inproc://")
            assert set(client.run(os.getpid).values()) == {os.getpid()}
            assert blas_threads() == {1}
            assert client.submit(lambda: blas_threads()).result() == {1}
            # A task's memory: the worker's limit shared by its threads.
            assert worker_memory_bytes(client) == int(worker["memory_limit"]) // 3
            link = dashboard_link(client)
            assert link.startswith("http://127.0.0.1:") and link.endswith("/status")
            http = cluster.scheduler.http_server
            assert {s.getsockname()[0] for s in http._sockets.values()} == {"127.0.0.1"}
        finally:
            client.close()
        assert cluster.status.name == "closed"
        assert blas_threads() == {2}


@requires_gpu
@pytest.mark.gpu
@pytest.mark.timeout(120)
def test_launch_local_gpu_declares_one_gpu_per_worker():
    pytest.importorskip("dask_cuda")
    client = launch("local-gpu", n_workers=1)
    try:
        (worker,) = client.scheduler_info(n_workers=-1)["workers"].values()
        assert worker["resources"] == {"GPU": 1} and worker["nthreads"] == 1

        def on_gpu():
            import cupy

            return float(cupy.arange(10, dtype=cupy.float64).sum())

        assert client.submit(on_gpu, resources={"GPU": 1}).result() == 45.0
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------------

def test_tls_certificates_form_a_private_ca(tmp_path):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    files = make_tls_certificates(tmp_path / "tls", hosts=["node01", "10.0.0.5"], days=10)
    assert files == TLSFiles.from_directory(tmp_path / "tls")
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    for path in files.paths():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.name.endswith("-key.pem") else 0o644), path
    ca = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for role in ("scheduler", "worker", "client"):
        cert = x509.load_pem_x509_certificate(getattr(files, f"{role}_cert").read_bytes())
        cert.verify_directly_issued_by(ca)  # raises if not signed by this CA
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert datetime.timedelta(days=10) < life < datetime.timedelta(days=10, minutes=10)
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if role == "client":
            assert usages == {ExtendedKeyUsageOID.CLIENT_AUTH}
        else:
            assert usages == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert set(sans.get_values_for_type(x509.DNSName)) == {"node01"}
            assert set(sans.get_values_for_type(x509.IPAddress)) == {
                ipaddress.ip_address("10.0.0.5")}
    assert not list(tmp_path.glob("tls/*ca*key*"))  # the CA's key is never written


@pytest.mark.parametrize("kwargs, match", [
    ({"days": 0}, r"'days' parameter of make_tls_certificates must be an int >= 1\. Got 0"),
    ({"days": 1.5}, r"must be an int >= 1\. Got 1\.5"),
    ({"hosts": []}, r"needs one or more non-empty hosts\. Got \[\]"),
    ({"hosts": ["node01", " "]}, r"non-empty hosts"),
])
def test_tls_certificates_refuse_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(LaunchError, match=match):
        make_tls_certificates(tmp_path / "tls", **kwargs)
    assert not (tmp_path / "tls").exists()


def test_tls_certificates_are_not_overwritten_unless_asked(tmp_path):
    first = make_tls_certificates(tmp_path)
    ca = first.ca_file.read_bytes()
    with pytest.raises(LaunchError, match=r"TLS files already exist: .*overwrite=True"):
        make_tls_certificates(tmp_path)
    assert first.ca_file.read_bytes() == ca
    make_tls_certificates(tmp_path, overwrite=True)
    assert first.ca_file.read_bytes() != ca
    first.worker_key.unlink()
    with pytest.raises(LaunchError, match=r"not a complete TLS directory: missing .*worker-key"):
        TLSFiles.from_directory(tmp_path)


def test_tls_environment_names_real_config_keys(tls_files):
    import dask.config
    from distributed.security import Security

    env = tls_environment(tls_files)
    defaults = dask.config.merge(*dask.config.defaults)
    for name in env:
        assert name.startswith("DASK_")
        path = [part.lower().replace("_", "-") for part in name[len("DASK_"):].split("__")]
        node = defaults
        for part in path:
            assert isinstance(node, dict) and part in node, (name, part)
            node = node[part]
    config = dask.config.collect_env(env)  # how Dask itself reads the variables
    with dask.config.set(_dotted(config)):
        from_env = Security()
    want = tls_security(tls_files)
    for role in ("scheduler", "worker", "client"):
        assert from_env.get_tls_config_for_role(role) == want.get_tls_config_for_role(role)
    assert from_env.require_encryption is True


@pytest.mark.timeout(90)
def test_tls_cluster_serves_its_clients_and_refuses_strangers(tmp_path, tls_files, tls_cluster):
    from distributed.security import Security

    address = tls_cluster
    assert address.startswith("tls://127.0.0.1:")
    client = launch("address", address=address, security=tls_files.ca_file.parent, timeout=10)
    try:
        client.wait_for_workers(1, timeout=30)
        assert client.submit(pow, 2, 10).result() == 1024
        (worker,) = client.scheduler_info(n_workers=-1)["workers"]
        assert worker.startswith("tls://127.0.0.1:")
    finally:
        client.close()

    # No certificate at all: refused before a connection is tried, with what to do.
    with pytest.raises(LaunchError, match=r"uses TLS but this client has no certificate"):
        launch("address", address=address, timeout=5)
    # A certificate of another CA, trusting the cluster's CA: the scheduler refuses it.
    other = make_tls_certificates(tmp_path / "other")
    stranger = Security(tls_ca_file=str(tls_files.ca_file),
                        tls_client_cert=str(other.client_cert),
                        tls_client_key=str(other.client_key), require_encryption=True)
    started = time.monotonic()
    with pytest.raises(LaunchError, match=r"Could not connect to the Dask scheduler at"):
        launch("address", address=address, security=stranger, timeout=5)
    assert time.monotonic() - started < 15
    # Plain TCP to the TLS port.
    with pytest.raises(LaunchError, match=r"Could not connect"):
        launch("address", address=address.replace("tls://", "tcp://"), timeout=5)
    # And at the TLS level: a client that trusts the CA but shows no certificate gets nothing.
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(tls_files.ca_file))
    context.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with context.wrap_socket(raw) as tls_socket:
                tls_socket.sendall(b"\x00" * 8)
                if not tls_socket.recv(1):  # closed without a word: refused as well
                    raise ConnectionError("closed by the scheduler")
    # The cluster still serves its own clients afterwards.
    client = launch("address", address=address, security=tls_files, timeout=10)
    try:
        assert client.submit(sum, [1, 1]).result() == 2
    finally:
        client.close()


@pytest.mark.timeout(90)
def test_scheduler_file_and_address_reach_dask_processes(tmp_path):
    with dask_processes(tmp_path, n_workers=2) as (scheduler_file, scheduler, _):
        client = launch("scheduler-file", scheduler_file=scheduler_file, timeout=10)
        try:
            client.wait_for_workers(2, timeout=30)
            workers = client.scheduler_info(n_workers=-1)["workers"]
            assert {w["nthreads"] for w in workers.values()} == {1}
            assert client.submit(lambda x: x * 3, 14).result() == 42
        finally:
            client.close()
        assert scheduler.poll() is None  # disconnecting never shuts the scheduler down
        client = launch("address", address=_address(scheduler_file), timeout=10)
        try:
            assert sum(client.gather(client.map(abs, [-1, -2, -3]))) == 6
        finally:
            client.close()


# ---------------------------------------------------------------------------------------------
# cca-scale tls-certs
# ---------------------------------------------------------------------------------------------

def test_cli_tls_certs_writes_and_prints_exports(tmp_path, capsys):
    from cca_scale.cli.main import main

    assert main(["tls-certs", str(tmp_path / "tls"), "--host", "node01", "--env"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    exported = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert exported == tls_environment(tmp_path / "tls")
    assert main(["tls-certs", str(tmp_path / "tls")]) == 1
    assert "TLS files already exist" in capsys.readouterr().err
    assert main(["tls-certs", str(tmp_path / "tls"), "--overwrite"]) == 0
    assert "DASK_DISTRIBUTED__COMM__TLS__CA_FILE" in capsys.readouterr().out


def test_cli_lists_tls_certs():
    from cca_scale.cli.main import COMMANDS, build_parser

    assert "tls_certs" in COMMANDS
    assert "tls-certs" in build_parser().format_help()


# ---------------------------------------------------------------------------------------------
# deploy/: every YAML parses and names real options
# ---------------------------------------------------------------------------------------------

YAML_FILES = sorted(DEPLOY.rglob("*.yaml"))


def test_deploy_has_the_recipes():
    names = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()}
    assert {"README.md", "SCALE.md", "Dockerfile", "requirements-cuda.lock",
            "requirements-cpu.lock", "dask/cca-scale.yaml", "dask/tls.yaml",
            "slurm/jobqueue.yaml", "slurm/cca-scale.sbatch", "kubernetes/daskcluster.yaml",
            "local-gpu/start-cluster.sh"} <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_parses(path):
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents and all(isinstance(d, dict) for d in documents)


def _dotted(config: dict) -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: dask.config.set replaces whole top-level sections."""
    return {".".join(path): value for path, value in _leaves(config)}


def _leaves(node, path=()):
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, path + (key,))
        else:
            yield path + (key,), value


@pytest.mark.parametrize("name", ["cca-scale.yaml", "tls.yaml"])
def test_dask_config_keys_are_distributed_keys(name):
    import dask.config
    import distributed  # noqa: F401  (registers distributed's defaults)

    defaults = dask.config.merge(*dask.config.defaults)
    config = yaml.safe_load((DEPLOY / "dask" / name).read_text())
    assert set(config) == {"distributed"}
    for path, value in _leaves(config):
        node = defaults
        for key in path:
            assert isinstance(node, dict) and key in node, f"{'.'.join(path)} is not a Dask key"
            node = node[key]
        assert type(value) is type(node) or node is None or isinstance(value, (int, float)) \
            and isinstance(node, (int, float)), (path, value, node)


def test_dask_config_values_are_understood():
    import dask.config
    from dask.utils import parse_timedelta
    from distributed.security import Security

    config = yaml.safe_load((DEPLOY / "dask" / "cca-scale.yaml").read_text())["distributed"]
    for key in ("connect", "tcp"):
        assert parse_timedelta(config["comm"]["timeouts"][key]) > 30
    memory = config["worker"]["memory"]
    fractions = [memory[k] for k in ("target", "spill", "pause", "terminate")]
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] < 1
    assert config["scheduler"]["allowed-failures"] >= 1
    with dask.config.set(_dotted(yaml.safe_load((DEPLOY / "dask" / "tls.yaml").read_text()))):
        security = Security()
    assert security.require_encryption is True
    assert security.tls_min_version == ssl.TLSVersion.TLSv1_3
    # The paths are those `cca-scale tls-certs /etc/cca-scale/tls` writes.
    files = TLSFiles.in_directory(Path(security.tls_ca_file).parent)
    assert security.tls_ca_file == str(files.ca_file)
    for role in ("scheduler", "worker", "client"):
        tls = security.get_tls_config_for_role(role)
        assert (tls["cert"], tls["key"]) == (str(getattr(files, f"{role}_cert")),
                                             str(getattr(files, f"{role}_key")))


@pytest.mark.timeout(60)
def test_dask_config_file_is_picked_up_through_DASK_CONFIG():
    code = ("import dask, distributed; "
            "print(dask.config.get('distributed.scheduler.allowed-failures'), "
            "dask.config.get('distributed.comm.timeouts.connect'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=_clean_env(DASK_CONFIG=str(DEPLOY / "dask" / "cca-scale.yaml")),
                         timeout=60).stdout.split()
    assert out == ["2", "60s"]


# dask-jobqueue 0.9.0, read from its installed jobqueue.yaml and signatures (checked below when
# dask-jobqueue is installed): the keys of the `jobqueue.slurm` configuration section ...
JOBQUEUE_SLURM_CONFIG_KEYS = {
    "name", "cores", "memory", "processes", "python", "interface", "death-timeout",
    "local-directory", "shared-temp-directory", "extra", "worker-command", "worker-extra-args",
    "shebang", "queue", "account", "walltime", "env-extra", "job-script-prologue", "job-cpu",
    "job-mem", "job-extra", "job-extra-directives", "job-directives-skip", "log-directory",
    "scheduler-options",
}
# ... and the keyword arguments SLURMCluster accepts (its own, JobQueueCluster's, Job's and
# SLURMJob's).
SLURM_CLUSTER_PARAMETERS = {
    "n_workers", "job_cls", "loop", "security", "shared_temp_directory", "silence_logs", "name",
    "asynchronous", "dashboard_address", "host", "scheduler_options", "scheduler_cls",
    "interface", "protocol", "config_name", "scheduler", "cores", "memory", "processes", "nanny",
    "death_timeout", "local_directory", "extra", "worker_command", "worker_extra_args",
    "job_extra", "job_extra_directives", "env_extra", "job_script_prologue", "header_skip",
    "job_directives_skip", "log_directory", "shebang", "python", "job_name", "queue", "project",
    "account", "walltime", "job_cpu", "job_mem",
}


def test_slurm_recipe_names_real_jobqueue_options():
    section = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert set(section) <= JOBQUEUE_SLURM_CONFIG_KEYS, set(section) - JOBQUEUE_SLURM_CONFIG_KEYS
    options = slurm_options(section)
    assert set(options) <= SLURM_CLUSTER_PARAMETERS
    assert options["job_extra_directives"] == ["--gres=gpu:1"]
    assert options["worker_extra_args"] == ["--resources", "GPU=1",
                                            "--preload", "cca_scale.engine.tasks"]
    assert options["local_directory"].startswith("${TMPDIR")
    assert options["scheduler_options"] == {"dashboard_address": LOCAL_DASHBOARD}
    assert isinstance(options["walltime"], str)  # unquoted, YAML reads 04:00:00 as a number
    # launch("slurm") uses exactly the recipe's values.
    assert {k: v for k, v in options.items() if v not in (None, [])} == SLURM_DEFAULTS


def test_jobqueue_lists_match_the_installed_dask_jobqueue():
    import inspect

    jobqueue = pytest.importorskip("dask_jobqueue")
    import dask.config
    from dask_jobqueue.core import Job, JobQueueCluster
    from dask_jobqueue.slurm import SLURMJob

    assert set(dask.config.get("jobqueue.slurm")) == JOBQUEUE_SLURM_CONFIG_KEYS
    parameters = set()
    for cls in (jobqueue.SLURMCluster, JobQueueCluster, Job, SLURMJob):
        parameters |= {p.name for p in inspect.signature(cls.__init__).parameters.values()
                       if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY}
    assert parameters - {"self"} == SLURM_CLUSTER_PARAMETERS


@pytest.mark.timeout(60)
def test_launch_slurm_builds_gpu_jobs_with_tls(tmp_path, tls_files):
    import warnings

    pytest.importorskip("dask_jobqueue")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Port 8787 is already in use": another port
        client = launch("slurm", n_workers=0, security=tls_files, queue="gpu", account="lab",
                        scheduler_options={"host": "127.0.0.1"})
    try:
        script = client.cluster.job_script()
        assert client.cluster.scheduler_address.startswith("tls://127.0.0.1:")
        http = client.cluster.scheduler.http_server
        assert {s.getsockname()[0] for s in http._sockets.values()} == {"127.0.0.1"}
    finally:
        client.close()
    for line in ("#SBATCH -J cca-scale", "#SBATCH -p gpu", "#SBATCH -A lab",
                 "#SBATCH --cpus-per-task=8", "#SBATCH -t 04:00:00", "#SBATCH --gres=gpu:1"):
        assert line in script.splitlines(), line
    command = script.strip().splitlines()[-1]
    for part in ("--nthreads 1", "--resources GPU=1", "--local-directory ${TMPDIR:-/tmp}",
                 f"--tls-ca-file {tls_files.ca_file}", f"--tls-cert {tls_files.worker_cert}"):
        assert part in command, part


def _pod_containers(document):
    spec = document["spec"]
    if document["kind"] == "DaskCluster":
        return {"scheduler": spec["scheduler"]["spec"]["containers"],
                "worker": spec["worker"]["spec"]["containers"]}
    return {"job": spec["template"]["spec"]["containers"]}


def check_daskcluster(resource: dict) -> None:
    """The operator's DaskCluster schema, GPU limits on workers only, k8s-valid strings."""
    assert resource["apiVersion"] == "kubernetes.dask.org/v1"
    assert resource["kind"] == "DaskCluster"
    spec = resource["spec"]
    assert set(spec) <= {"idleTimeout", "scheduler", "worker"}
    assert {"spec", "service"} <= set(spec["scheduler"]) <= {"metadata", "spec", "service"}
    assert {"spec"} <= set(spec["worker"]) <= {"replicas", "metadata", "spec"}
    name = resource["metadata"]["name"]
    assert spec["scheduler"]["service"]["selector"] == {"dask.org/cluster-name": name,
                                                        "dask.org/component": "scheduler"}
    assert {p["name"] for p in spec["scheduler"]["service"]["ports"]} == {"tcp-comm",
                                                                          "http-dashboard"}
    containers = _pod_containers(resource)
    for container in containers["scheduler"]:
        for kind in ("limits", "requests"):
            assert not any("gpu" in key for key in container["resources"].get(kind, {})), container
        args = container["args"]
        assert args[args.index("--dashboard-address") + 1].startswith("127.0.0.1:")
        assert "httpGet" not in container.get("readinessProbe", {})  # dashboard is on loopback
    for container in containers["worker"]:
        limits = container["resources"]["limits"]
        if "nvidia.com/gpu" in limits:
            assert limits["nvidia.com/gpu"] >= 1
            args = container["args"]
            assert args[:3] == ["dask", "cuda", "worker"]
            assert args[args.index("--resources") + 1] == "GPU=1"
        assert container["args"][container["args"].index("--nthreads") + 1] == "1"
    for group in containers.values():
        for container in group:
            assert all(isinstance(a, str) for a in container["args"]), container["args"]
            assert all(isinstance(e["value"], str) for e in container.get("env", []))


def test_kubernetes_manifest_gpu_limits_on_workers_only_and_tls_everywhere():
    import dask.config

    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text()))
    cluster = next(d for d in documents if d["kind"] == "DaskCluster")
    job = next(d for d in documents if d["kind"] == "Job")
    check_daskcluster(cluster)
    workers = cluster["spec"]["worker"]["spec"]["containers"]
    assert all(w["resources"]["limits"]["nvidia.com/gpu"] == 1 for w in workers)
    name = cluster["metadata"]["name"]
    images = set()
    for role, containers in {**_pod_containers(cluster), **_pod_containers(job)}.items():
        for container in containers:
            images.add(container["image"])
            env = {e["name"]: e["value"] for e in container.get("env", [])}
            assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
            mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
            assert mounts["tls"]["readOnly"] is True
            if "activations" in mounts:
                assert mounts["activations"]["readOnly"] is True
            if role in ("scheduler", "worker"):
                args = container["args"]
                for flag in ("--tls-ca-file", "--tls-cert", "--tls-key"):
                    assert args[args.index(flag) + 1].startswith(mounts["tls"]["mountPath"])
            if role == "worker":
                # Set in the pod, the operator keeps it: workers dial the scheduler over TLS.
                assert env["DASK_SCHEDULER_ADDRESS"] == f"tls://{name}-scheduler:8786"
            if role == "job":
                defaults = dask.config.merge(*dask.config.defaults)
                for variable in env:
                    if variable.startswith("DASK_"):
                        node = defaults
                        for part in variable[5:].lower().replace("_", "-").split("--"):
                            assert part in node, variable
                            node = node[part]
                assert env["CCA_SCHEDULER"] == f"tls://{name}-scheduler:8786"
    version = PYPROJECT["version"]
    assert images == {f"cca-scale:{version}-cuda12"}
    for document in (cluster, job):
        pods = ([document["spec"]["scheduler"]["spec"], document["spec"]["worker"]["spec"]]
                if document["kind"] == "DaskCluster" else [document["spec"]["template"]["spec"]])
        for pod in pods:
            assert pod["securityContext"]["runAsNonRoot"] is True
            claims = [v for v in pod.get("volumes", []) if v["name"] == "activations"]
            assert all(v["persistentVolumeClaim"]["readOnly"] is True for v in claims)


@pytest.mark.parametrize("gpus", [1, 2, 0])
def test_kubernetes_cluster_spec_puts_gpus_on_workers_only(gpus):
    spec = kubernetes_cluster_spec(image="registry.example/cca-scale:1", n_workers=3,
                                   gpus_per_worker=gpus)
    check_daskcluster(spec)
    (worker,) = spec["spec"]["worker"]["spec"]["containers"]
    assert spec["spec"]["worker"]["replicas"] == 3
    if gpus:
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == gpus
        assert worker["args"][worker["args"].index("--resources") + 1] == "GPU=1"
    else:
        assert "nvidia.com/gpu" not in worker["resources"]["limits"]
        assert "--resources" not in worker["args"]
    assert yaml.safe_load(yaml.safe_dump(spec)) == spec  # plain data, ready for KubeCluster


def test_launch_kubernetes_refuses_tls_it_cannot_do(monkeypatch):
    class Operator:  # stands in for dask_kubernetes.operator; must not be reached
        def KubeCluster(self, **kwargs):
            raise AssertionError("no cluster should be created")

    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", Operator())
    with pytest.raises(LaunchError, match=r"cannot use TLS: dask-kubernetes' KubeCluster"):
        launch("kubernetes", image="x", security="/some/tls")
    with pytest.raises(LaunchError, match=r"needs image="):
        launch("kubernetes")


# Options of the Dask command lines the recipes use, per command.
DASK_CUDA_WORKER_OPTIONS = {  # dask-cuda 26.10.0's `dask cuda worker` (checked below if installed)
    "--host", "--worker-port", "--listen-address", "--contact-address", "--nthreads", "--name",
    "--memory-limit", "--device-memory-limit", "--enable-cudf-spill", "--disable-cudf-spill",
    "--cudf-spill-stats", "--rmm-pool-size", "--rmm-maximum-pool-size", "--rmm-managed-memory",
    "--no-rmm-managed-memory", "--rmm-async", "--no-rmm-async", "--set-rmm-allocator-for-libs",
    "--rmm-release-threshold", "--rmm-log-directory", "--rmm-track-allocations",
    "--no-rmm-track-allocations", "--pid-file", "--resources", "--dashboard", "--no-dashboard",
    "--dashboard-address", "--local-directory", "--scheduler-file", "--protocol", "--interface",
    "--preload", "--death-timeout", "--dashboard-prefix", "--enable-tcp-over-ucx",
    "--disable-tcp-over-ucx", "--enable-infiniband", "--disable-infiniband", "--enable-nvlink",
    "--disable-nvlink", "--enable-rdmacm", "--disable-rdmacm", "--worker-class", "--pre-import",
    "--multiprocessing-method", "--tls-ca-file", "--tls-cert", "--tls-key",
}


def _click_options(command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


def _dask_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, its --options) for every dask scheduler / worker / cuda worker in a script."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        match = re.search(r"\bdask (cuda worker|scheduler|worker)\b(.*)", line.split("#")[0])
        if match:
            found.append((match[1], re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", match[2])))
    return found


def test_recipes_use_real_dask_command_line_options():
    from distributed.cli import dask_scheduler, dask_worker

    known = {"scheduler": _click_options(dask_scheduler.main),
             "worker": _click_options(dask_worker.main),
             "cuda worker": DASK_CUDA_WORKER_OPTIONS}
    commands = []
    for script in ("slurm/cca-scale.sbatch", "local-gpu/start-cluster.sh"):
        commands += _dask_commands((DEPLOY / script).read_text())
    manifests = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text()))
    spec = kubernetes_cluster_spec(image="x")
    for document in [*manifests, spec, kubernetes_cluster_spec(image="x", gpus_per_worker=0)]:
        for containers in _pod_containers(document).values():
            for c in containers:
                if c.get("args", [""])[0] == "dask":
                    commands += _dask_commands(" ".join(c["args"]))
    assert {c for c, _ in commands} == {"scheduler", "worker", "cuda worker"}
    for command, options in commands:
        assert set(options) <= known[command], (command, set(options) - known[command])


def test_workers_we_start_preload_the_task_module():
    from cca_scale.runtime.specs import WORKER_PRELOAD

    workers = []
    for script in ("slurm/cca-scale.sbatch", "local-gpu/start-cluster.sh"):
        text = (DEPLOY / script).read_text().replace("\\\n", " ")
        workers += [line for line in text.splitlines()
                    if re.search(r"\bdask (cuda )?worker\b", line.split("#")[0])]
    manifests = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text()))
    for document in [*manifests, kubernetes_cluster_spec(image="x"),
                     kubernetes_cluster_spec(image="x", gpus_per_worker=0)]:
        for c in _pod_containers(document).get("worker", []):
            workers.append(" ".join(c["args"]))
    workers.append(" ".join(SLURM_DEFAULTS["worker_extra_args"]))
    assert len(workers) == 8  # 2 + 2 shell commands, 1 + 2 pod specs, the SLURM defaults
    for command in workers:
        assert f"--preload {WORKER_PRELOAD}" in " ".join(command.split()), command
    assert WORKER_PRELOAD == "cca_scale.engine.tasks"  # the module the tasks live in
    from cca_scale.engine import tasks

    assert tasks.tile_task.__module__ == tasks.prepare_task.__module__ == WORKER_PRELOAD


def test_dask_cuda_worker_options_match_the_installed_dask_cuda():
    pytest.importorskip("dask_cuda")
    from dask_cuda.cli import worker

    assert _click_options(worker) == DASK_CUDA_WORKER_OPTIONS


def test_shell_recipes_are_valid_bash():
    for script in ("slurm/cca-scale.sbatch", "local-gpu/start-cluster.sh"):
        path = DEPLOY / script
        subprocess.run(["bash", "-n", str(path)], check=True)
        assert os.access(path, os.X_OK), f"{script} is not executable"
    sbatch = (DEPLOY / "slurm" / "cca-scale.sbatch").read_text()
    directives = re.findall(r"^#SBATCH (\S+)", sbatch, flags=re.M)
    assert "--gres=gpu:4" in directives and "--ntasks-per-node=1" in directives


# ---------------------------------------------------------------------------------------------
# the shell recipes, run for real on loopback
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from cca_scale import ActivationStore

    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("store") / "acts.zarr"
    store = ActivationStore.create(path, n_datapoints=120)
    z = rng.normal(size=(120, 3))
    for k in range(3):
        store.add(f"net{k}", "fc1", z @ rng.normal(size=(3, 6)) + 0.3 * rng.normal(size=(120, 6)))
    return path


@pytest.mark.timeout(120)
def test_sbatch_script_runs_compare_over_tls(tmp_path, tiny_store):
    """The batch script end to end, with `srun` standing in for SLURM (CPU workers, loopback)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "srun").write_text("#!/bin/bash\n# srun stand-in: drop srun's options, run once\n"
                                'while [[ $# -gt 0 && "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (stubs / "srun").chmod(0o755)
    out = tmp_path / "fc1.zarr"
    env = _clean_env(
        PATH=f"{stubs}{os.pathsep}{BIN}{os.pathsep}/usr/bin:/bin", TMPDIR=str(tmp_path),
        SLURM_JOB_ID="4242", SLURM_SUBMIT_DIR=str(tmp_path), SLURM_JOB_NUM_NODES="1",
        SLURM_CPUS_PER_TASK="1", CCA_WORKERS="cpu", CCA_INTERFACE="lo", CCA_WAIT_TIMEOUT="60",
        CCA_STORE=str(tiny_store), CCA_LAYER="fc1", CCA_OUT=str(out),
        CCA_COMPARE_ARGS="--quiet")
    proc = subprocess.Popen(["bash", str(DEPLOY / "slurm" / "cca-scale.sbatch")], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=100)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    run_dir = tmp_path / "cca-scale-4242"
    logs = "".join(p.read_text() for p in run_dir.glob("*.log")) if run_dir.exists() else ""
    assert proc.returncode == 0, stdout + stderr + logs
    assert re.search(r"scheduler at tls://127\.0\.0\.1:\d+", stdout)
    assert f"wrote {out}: 3 x 3 pwcca distances" in stdout
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert "tls://127.0.0.1" in (run_dir / "workers.log").read_text()
    from cca_scale import load_distances

    distances = load_distances(out)
    assert distances.shape == (3, 3) and np.isfinite(distances.values).all()


@pytest.mark.timeout(90)
def test_local_cluster_script_serves_until_stopped(tmp_path):
    env = _clean_env(CCA_WORKERS="cpu", CCA_PORT="0", CCA_RUN_DIR=str(tmp_path / "run"),
                     TMPDIR=str(tmp_path))
    proc = subprocess.Popen(["bash", str(DEPLOY / "local-gpu" / "start-cluster.sh")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        scheduler_file = tmp_path / "run" / "scheduler.json"
        _wait_for_file(scheduler_file, proc)
        address = _address(scheduler_file)
        assert address.startswith("tcp://127.0.0.1:")
        client = launch("scheduler-file", scheduler_file=scheduler_file, timeout=10)
        try:
            client.wait_for_workers(1, timeout=30)
            assert all(a.startswith("tcp://127.0.0.1:") for a in client.scheduler_info()["workers"])
            assert client.submit(max, [3, 9, 4]).result() == 9
        finally:
            client.close()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
        assert f"cluster at {address}" in output
        assert not scheduler_file.exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.timeout(90)
def test_kubernetes_job_script_waits_for_workers_then_compares(tmp_path, tls_files, tls_cluster):
    """The Job's shell script, against the loopback TLS cluster, with a recording cca-scale."""
    documents = yaml.safe_load_all((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    job = next(d for d in documents if d["kind"] == "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "tls")
    env = {k: v.replace(mount, str(tls_files.ca_file.parent)) for k, v in env.items()}
    env.update(CCA_SCHEDULER=tls_cluster, CCA_MIN_WORKERS="1")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "cca-scale").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path}/argv\n')
    (stubs / "cca-scale").chmod(0o755)
    result = subprocess.run(container["command"], env=_clean_env(
        **env, PATH=f"{stubs}{os.pathsep}{BIN}{os.pathsep}/usr/bin:/bin"),
        capture_output=True, text=True, timeout=80)
    assert result.returncode == 0, result.stdout + result.stderr
    argv = (tmp_path / "argv").read_text().split("\n")[:-1]
    assert argv == ["compare", env["CCA_STORE"], "--layer", env["CCA_LAYER"], "--out",
                    env["CCA_OUT"], "--scheduler", tls_cluster, "--gpu"]


# ---------------------------------------------------------------------------------------------
# container build (docker cannot run here: checked statically)
# ---------------------------------------------------------------------------------------------

def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_builds_the_locked_environment_as_non_root():
    instructions = _dockerfile_instructions()
    args = dict(value.split("=", 1) for op, value in instructions if op == "ARG" and "=" in value)
    base = args["BASE_IMAGE"]
    assert re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-(base|runtime)-ubuntu\d\d\.\d\d", base), base
    assert [v for op, v in instructions if op == "FROM"] == ["${BASE_IMAGE}"]
    assert args["LOCK"] == "deploy/requirements-cuda.lock"
    runs = " ".join(v for op, v in instructions if op == "RUN")
    assert "pip install --no-deps -r /tmp/requirements.lock" in runs and "pip check" in runs
    assert "python3.11 -m venv" in runs  # the Python the locks were resolved for
    assert "pip install --no-deps --no-build-isolation /src" in runs
    user = [v for op, v in instructions if op == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    # cupy for CUDA 12 on a CUDA 12 base.
    assert "cupy-cuda12x" in (DEPLOY / "requirements-cuda.lock").read_text()
    # Every COPY source exists and is let through by the build's ignore list.
    ignore = [line for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    allowed = [p[1:] for p in ignore if p.startswith("!")]
    for op, value in instructions:
        if op != "COPY":
            continue
        sources = shlex.split(value.replace("${LOCK}", args["LOCK"]))[:-1]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert any(source == a or a.startswith(source + "/") for a in allowed), source


def test_build_commands_use_one_tag_everywhere():
    tag = f"cca-scale:{PYPROJECT['version']}-cuda12"
    assert f"-t {tag} ." in (DEPLOY / "Dockerfile").read_text()
    assert f"-t {tag} ." in (DEPLOY / "README.md").read_text()
    assert f"image: {tag}" in (DEPLOY / "kubernetes" / "daskcluster.yaml").read_text()


# ---------------------------------------------------------------------------------------------
# pins and locks
# ---------------------------------------------------------------------------------------------

def _lock(name: str) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (DEPLOY / name).read_text().splitlines():
        if line and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
            assert match, f"{name}: {line!r} is not an exact pin"
            key = canonicalize_name(match[1])
            assert key not in pins, f"{name}: {key} twice"
            pins[key] = match[2]
    return pins


def _requirements(names) -> list:
    from packaging.requirements import Requirement

    return [Requirement(r) for r in names]


def _exact(requirement) -> str:
    (spec,) = requirement.specifier
    assert spec.operator == "==" and "*" not in spec.version, requirement
    return spec.version


# What dask-cuda's metadata requires, read from the wheels on PyPI (re-read live below):
# dask-cuda 26.10.0 -> rapids-dask-dependency==26.10.*; rapids-dask-dependency 26.10.0 ->
# dask>=2026.7.1,<2026.7.2 and distributed>=2026.7.1,<2026.7.2.
RAPIDS_DASK_PINS = {"26.10": ">=2026.7.1,<2026.7.2"}


def test_cuda_extra_pins_dask_exactly_as_dask_cuda_requires():
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    extra = {canonicalize_name(r.name): r for r in
             _requirements(PYPROJECT["optional-dependencies"]["cuda"])}
    dask_cuda = _exact(extra["dask-cuda"])
    dask, distributed = _exact(extra["dask"]), _exact(extra["distributed"])
    assert dask == distributed
    series = ".".join(dask_cuda.split(".")[:2])
    assert dask in SpecifierSet(RAPIDS_DASK_PINS[series])
    assert extra["rmm-cu12"].specifier == SpecifierSet(f"=={series}.*")  # RAPIDS releases in step
    core = {canonicalize_name(r.name): r for r in _requirements(PYPROJECT["dependencies"])}
    assert dask in core["dask"].specifier  # the core range admits the CUDA set
    for name in ("slurm", "kubernetes"):
        assert PYPROJECT["optional-dependencies"][name]


@pytest.mark.parametrize("lock, extras", [("requirements-cuda.lock", ("cuda", "slurm")),
                                          ("requirements-cpu.lock", ("slurm",))])
def test_locks_satisfy_pyproject(lock, extras):
    from packaging.utils import canonicalize_name

    pins = _lock(lock)
    wanted = list(PYPROJECT["dependencies"])
    for extra in extras:
        wanted += PYPROJECT["optional-dependencies"][extra]
    for requirement in _requirements(wanted):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} lacks {name}"
        assert pins[name] in requirement.specifier, (lock, str(requirement), pins[name])
    cuda = {canonicalize_name(r.name): r for r in
            _requirements(PYPROJECT["optional-dependencies"]["cuda"])}
    assert pins["dask"] == pins["distributed"] == _exact(cuda["dask"])


def test_locks_agree_on_every_shared_package():
    cuda, cpu = _lock("requirements-cuda.lock"), _lock("requirements-cpu.lock")
    assert set(cpu) < set(cuda)
    assert {name: cpu[name] for name in cpu} == {name: cuda[name] for name in cpu}
    assert not [n for n in cpu if "cuda" in n or n.startswith(("nvidia-", "rmm", "cupy"))]


def _index_reachable() -> bool:
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", "dask-cuda", "--timeout", "10",
             "--retries", "0", "--disable-pip-version-check"],
            capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "dask-cuda" in result.stdout


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    return [line.split(":", 1)[1].strip() for line in metadata.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


@pytest.mark.timeout(180)
def test_dask_cuda_metadata_on_the_index_agrees_with_the_pins(tmp_path):
    """Live check of RAPIDS_DASK_PINS: download the two small wheels' metadata (~130 kB)."""
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    if not _index_reachable():
        pytest.skip("package index not reachable")
    extra = {canonicalize_name(r.name): r for r in
             _requirements(PYPROJECT["optional-dependencies"]["cuda"])}
    dask_cuda = _exact(extra["dask-cuda"])
    series = ".".join(dask_cuda.split(".")[:2])
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
                    "--timeout", "30", "--disable-pip-version-check", "--quiet", "-d",
                    str(tmp_path), f"dask-cuda=={dask_cuda}",
                    f"rapids-dask-dependency=={series}.*"], check=True, timeout=170)
    (cuda_wheel,) = tmp_path.glob("dask_cuda-*.whl")
    (rapids_wheel,) = tmp_path.glob("rapids_dask_dependency-*.whl")
    needs = {canonicalize_name(r.name): r for r in _requirements(_requires_dist(cuda_wheel))}
    assert str(needs["rapids-dask-dependency"].specifier) == f"=={series}.*"
    rapids = {canonicalize_name(r.name): r for r in _requirements(_requires_dist(rapids_wheel))}
    for name in ("dask", "distributed"):
        assert _exact(extra[name]) in rapids[name].specifier, (name, str(rapids[name]))
    assert rapids["dask"].specifier == SpecifierSet(RAPIDS_DASK_PINS[series])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cuda_lock_resolves_to_itself(tmp_path):
    """`pip install --dry-run --report` of the CUDA lock *with* dependencies adds nothing and
    changes nothing: the lock is a complete, consistent environment (metadata only, no CUDA
    download). Set CCA_SCALE_RESOLVE_TESTS=1 to run it (network, ~15 s)."""
    from packaging.utils import canonicalize_name

    if os.environ.get("CCA_SCALE_RESOLVE_TESTS") != "1":
        pytest.skip("set CCA_SCALE_RESOLVE_TESTS=1 to resolve the lock against the index")
    if not _index_reachable():
        pytest.skip("package index not reachable")
    report = tmp_path / "report.json"
    import runpy

    platform = runpy.run_path(str(DEPLOY / "update_locks.py"))["PLATFORM_ARGS"]
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report",
                    str(report), "--target", str(tmp_path / "t"), *platform, "-r",
                    str(DEPLOY / "requirements-cuda.lock")], check=True, timeout=280)
    resolved = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    assert resolved == _lock("requirements-cuda.lock")
