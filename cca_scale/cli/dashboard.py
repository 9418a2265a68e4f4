"""The Dask dashboard's address, printed on stderr once a ``cca-scale compare`` run is long.

Long means many tiles left (:data:`MANY_TILES`) or, otherwise, still running after
``CCA_SCALE_DASHBOARD_AFTER`` seconds (default :data:`DEFAULT_AFTER`); short runs stay quiet,
and ``--quiet`` never prints it.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable

__all__ = ["DEFAULT_AFTER", "MANY_TILES", "DashboardNotice", "client_dashboard"]

#: Seconds a run may take before its dashboard address is printed.
DEFAULT_AFTER = 5.0
#: A run with at least this many tiles left prints the address at once.
MANY_TILES = 64


class DashboardNotice:
    """Print ``dashboard: URL`` on stderr once, when the run proves long; ``cancel()`` at the end.

    ``link`` is called (in a timer thread) only when the line is due; it returns the URL or None
    (no dashboard: nothing is printed).
    """

    def __init__(self, link: Callable[[], str | None], *, tiles_left: int, quiet: bool,
                 after: float | None = None):
        self._link = link
        self._timer: threading.Timer | None = None
        if quiet or tiles_left <= 0:
            return
        after = _after_seconds() if after is None else after
        if tiles_left >= MANY_TILES or after <= 0:
            self._print()
            return
        self._timer = threading.Timer(after, self._print)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _print(self) -> None:
        try:
            url = self._link()
        except Exception:  # a closing client: the run is ending anyway
            return
        if url:
            _write(f"dashboard: {url}")


def _write(line: str) -> None:
    """One line on stderr, above a progress bar if one is drawn."""
    if "tqdm" in sys.modules:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def _after_seconds() -> float:
    text = os.environ.get("CCA_SCALE_DASHBOARD_AFTER", "")
    try:
        return float(text) if text.strip() else DEFAULT_AFTER
    except ValueError:
        return DEFAULT_AFTER


def client_dashboard(client: Any) -> Callable[[], str | None]:
    """A ``link`` for :class:`DashboardNotice`: ``client``'s dashboard as reached from here."""
    def link() -> str | None:
        from cca_scale.runtime.embedded import dashboard_link

        return dashboard_link(client)

    return link
