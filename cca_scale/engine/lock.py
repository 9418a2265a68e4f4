"""One writer per comparison output: a lease kept in the output itself.

Two ``compare`` runs on one output would race (both submit the same tiles, one rewrites the
metadata under the other). The submitting process therefore holds a lease, a small document at
``OUT/lock/zarr.json`` (a Zarr group document, so the output stays a valid Zarr hierarchy),
created with the store's create-if-absent and refreshed by a heartbeat thread while the run
lasts. A second run refuses with :class:`~cca_scale.errors.OutputBusyError`. A lease left by a
run that died is stale: at once when its process is gone from this machine, otherwise once its
heartbeat is older than :data:`LEASE_SECONDS`; a stale lease is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

from cca_scale.errors import OutputBusyError

__all__ = ["LEASE_SECONDS", "OutputLock"]

#: A lease whose heartbeat is older than this is stale (the run died on another machine).
LEASE_SECONDS = 120.0
KEY = "lock/zarr.json"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


class OutputLock:
    """A held lease on one output. Get one with :meth:`acquire`; :meth:`release` it when done."""

    def __init__(self, zstore, where: str, doc: dict, *, refresh_seconds: float):
        self._store = zstore
        self._where = where
        self._doc = doc
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(refresh_seconds,),
                                        name="cca-scale-lease", daemon=True)
        self._thread.start()

    # -- store access -------------------------------------------------------------------------
    @staticmethod
    def _read(zstore) -> dict | None:
        from cca_scale.store import zarr_io

        raw = zarr_io.get_bytes(zstore, KEY)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            return dict(doc["attributes"]["cca_scale_lock"])
        except (ValueError, KeyError, TypeError):
            return {}  # unreadable: treated as stale

    @staticmethod
    def _encode(doc: dict) -> bytes:
        payload = {"zarr_format": 3, "node_type": "group", "attributes": {"cca_scale_lock": doc}}
        return json.dumps(payload).encode()

    # -- public ---------------------------------------------------------------------------------
    @classmethod
    def acquire(cls, zstore, *, where: str, lease_seconds: float = LEASE_SECONDS) -> "OutputLock":
        """Take the lease on the output in ``zstore`` (its root), or raise OutputBusyError."""
        from cca_scale.store import zarr_io

        now = time.time()
        doc = {"owner": uuid.uuid4().hex, "host": socket.gethostname(), "pid": os.getpid(),
               "acquired": now, "heartbeat": now, "lease_seconds": float(lease_seconds)}
        for _ in range(2):  # second try after removing a stale lease
            zarr_io.set_bytes_if_not_exists(zstore, KEY, cls._encode(doc))
            held = cls._read(zstore)
            if held is not None and held.get("owner") == doc["owner"]:
                return cls(zstore, where, doc, refresh_seconds=max(0.05, lease_seconds / 4))
            if held is not None and not cls._stale(held, now):
                raise cls._busy(where, held, now)
            if held is not None:
                zarr_io.delete(zstore, KEY)
        raise cls._busy(where, cls._read(zstore) or {}, now)

    def release(self) -> None:
        """Give the lease back (only if it is still ours). Safe to call more than once."""
        from cca_scale.store import zarr_io

        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            held = self._read(self._store)
            if held is not None and held.get("owner") == self._doc["owner"]:
                zarr_io.delete(self._store, KEY)
        except OSError:
            pass  # a lease we cannot remove goes stale on its own

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _stale(held: dict, now: float) -> bool:
        try:
            if held.get("host") == socket.gethostname() and not _process_alive(int(held["pid"])):
                return True
            return now - float(held["heartbeat"]) > float(held.get("lease_seconds",
                                                                    LEASE_SECONDS))
        except (KeyError, TypeError, ValueError):
            return True

    @staticmethod
    def _busy(where: str, held: dict, now: float) -> OutputBusyError:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(held.get("acquired",
                                                                                 now))))
        seen = now - float(held.get("heartbeat", now))
        lease = float(held.get("lease_seconds", LEASE_SECONDS))
        return OutputBusyError(
            f"{where} is being written by another cca-scale run (pid {held.get('pid')} on host "
            f"{held.get('host')!r}, since {since}, last seen {seen:.0f} s ago). Wait for it to "
            "finish, or write to another --out. A lock left by a run that died is taken over "
            f"automatically: at once on the same machine, after {lease:.0f} s elsewhere."
        )

    def _beat(self, every: float) -> None:
        from cca_scale.store import zarr_io

        while not self._stop.wait(every):
            try:
                held = self._read(self._store)
                if held is None or held.get("owner") != self._doc["owner"]:
                    return  # taken over (we were presumed dead): stop claiming it
                self._doc["heartbeat"] = time.time()
                zarr_io.set_bytes(self._store, KEY, self._encode(self._doc))
            except Exception:  # a missed beat only shortens the lease
                continue
