"""Transport security for multi-host clusters: a private certificate authority.

:func:`make_tls_certificates` writes one (``cca-scale tls-certs DIR`` on the command line),
:func:`tls_security` turns the files into a :class:`distributed.security.Security`, and
:func:`tls_environment` gives the ``DASK_DISTRIBUTED__COMM__TLS__*`` variables that make every
``dask scheduler``, ``dask worker`` and client process of a job use them. See deploy/README.md.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from cca_scale.errors import LaunchError

if TYPE_CHECKING:
    from distributed.security import Security

__all__ = ["TLSFiles", "make_tls_certificates", "tls_environment", "tls_security"]

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
