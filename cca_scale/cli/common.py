"""Small helpers shared by CLI commands."""

from __future__ import annotations

import re
import sys

_ID_LIST = re.compile(r"^[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*$")


def parse_selection(text: str | None):
    """``--networks`` values: None (all), ``"a,b,c"`` (ids), or a query like ``"lr == 0.01"``."""
    if text is None:
        return None
    text = text.strip()
    if _ID_LIST.match(text):
        return text.split(",")
    return text


def parse_step(text: str | None):
    """``--step`` values: an int, ``last`` or ``all``."""
    if text is None:
        return None
    if text in ("last", "all", "final"):
        return text
    try:
        return int(text)
    except ValueError:
        from cca_scale.errors import CcaScaleError

        raise CcaScaleError(f"--step must be an int, 'last' or 'all'. Got {text!r} instead.")


def show_progress(quiet: bool) -> bool:
    """Progress bars go to stderr, only on a terminal and without --quiet."""
    return not quiet and sys.stderr.isatty()
