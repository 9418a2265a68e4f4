"""Small helpers shared by CLI commands."""

from __future__ import annotations

import argparse
import re
import sys

_ID_LIST = re.compile(r"^[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*$")

#: Help of every option that selects networks (--networks, --against, --query).
SELECTION_HELP = ("ids a,b,c or a query: comparisons, and/or/not, in [...], e.g. \"lr == 0.01 and "
                  "labels == 'true'\"; see README 'Selecting networks'")


def selection_epilog() -> str:
    """The query grammar, for the descriptions of commands that select networks."""
    import textwrap

    from cca_scale.store.query import QUERY_GRAMMAR  # light: no Zarr, no pandas

    return textwrap.fill(f"Selecting networks: {QUERY_GRAMMAR}.", width=90)


def parse_selection(text: str | None):
    """``--networks`` values: None (all), ``"a,b,c"`` (ids), or a query like ``"lr == 0.01"``.

    A query is checked against the grammar here, so a bad one fails before any cluster starts;
    the library parses it again where it is applied to the store.
    """
    if text is None:
        return None
    text = text.strip()
    if _ID_LIST.match(text):
        return text.split(",")
    from cca_scale.store.query import parse_query

    parse_query(text)
    return text


class _MetricLists(tuple):
    """argparse ``choices`` for ``--metric a,b``: iterates the metric names, and contains every
    comma-separated list of them (duplicates are refused later by the request, with a message)."""

    def __contains__(self, value) -> bool:
        return isinstance(value, str) and all(
            tuple.__contains__(self, part) for part in value.split(","))


def add_metric_argument(parser, *, default: str = "pwcca", many: bool = False) -> None:
    """``--metric``: its choices and help, one clause per metric, from the metric registry.
    ``many``: a comma-separated list is accepted too (checked by the engine's request)."""
    from cca_scale.core.registry import METRICS

    described = "; ".join(f"{name}: {m.description}" for name, m in METRICS.items())
    if many:
        parser.add_argument(
            "--metric", default=default, metavar="NAME[,NAME...]",
            choices=_MetricLists(METRICS),
            help=(f"distance (default: {default}), or a comma-separated list such as "
                  "pwcca,cka,mean_cca: every metric from one pass over the activations, one "
                  "matrix each in OUT/<metric>/; a list adds its new metrics to an existing "
                  f"OUT. {described}").replace("%", "%%"))
        return
    parser.add_argument("--metric", default=default, choices=list(METRICS),
                        help=f"distance (default: {default}). {described}".replace("%", "%%"))


def positive_int(text: str) -> int:
    """argparse type for counts (``--workers``, ``--tile``): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """argparse type for tolerances (``--epsilon``): a finite number >= 0."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def parse_timestep(text: str | None):
    """``--timestep`` values: an int or ``all``."""
    if text is None or text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        from cca_scale.errors import CcaScaleError

        raise CcaScaleError(f"--timestep must be an int or 'all'. Got {text!r} instead.") from None


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


#: Help of ``--layer`` on the commands that read a distance matrix (cluster, groups, export).
LAYER_HELP = ("on a multi-layer output (items are network/layer pairs): use this layer's "
              "network-by-network matrix (DistanceMatrix.for_layer); refused on a matrix "
              "without layers")


def add_matrix_arguments(parser) -> None:
    """``--metric NAME`` and ``--layer L``: one matrix of a multi-metric, multi-layer output
    (:func:`read_matrix`)."""
    parser.add_argument("--metric", metavar="NAME",
                        help="which matrix of a multi-metric output (compare --metric a,b); "
                             "default: its only metric, or the first one computed")
    parser.add_argument("--layer", metavar="L", help=LAYER_HELP)


def read_matrix(path, layer: str | None = None, *, metric: str | None = None):
    """The distance matrix at ``path`` (compare output or export): one ``metric`` of a
    multi-metric output, cut to ``layer`` of a multi-layer one, when given."""
    from cca_scale.analysis import load_distances

    D = load_distances(path, metric=metric)
    return D if layer is None else D.for_layer(layer)


class TileProgress:
    """Progress over tiles on stderr (a tqdm bar with pairs/s), silent off a terminal or with
    ``--quiet``; call it with each finished tile's summary, ``close()`` at the end."""

    def __init__(self, total: int, done: int, *, quiet: bool):
        import time

        self.pairs = 0
        self._clock = time.perf_counter
        self.started = self._clock()
        self._bar = None
        if show_progress(quiet):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=done, unit="tile", file=sys.stderr,
                             dynamic_ncols=True, smoothing=0.1)

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def __call__(self, summary) -> None:
        self.pairs += summary.pairs
        if self._bar is not None:
            rate = self.pairs / max(self.elapsed, 1e-9)
            self._bar.set_postfix_str(f"{rate:,.0f} pairs/s", refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
