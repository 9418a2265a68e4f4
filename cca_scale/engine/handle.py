"""A comparison in flight: the handle :func:`cca_scale.submit` returns."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cca_scale.engine.output import ComparisonOutput, ResumeState
from cca_scale.engine.tasks import TileSummary
from cca_scale.matrix import DistanceMatrix, ill_posed_line

__all__ = ["Comparison", "RunSummary"]

logger = logging.getLogger("cca_scale.engine.compare")


@dataclass(frozen=True)
class RunSummary:
    """What one run of :func:`cca_scale.compare` did (also ``matrix.metadata["run_summary"]``,
    as a dict, and one block on stderr in ``cca-scale compare``).

    Pairs are ordered pairs ``(row, column)`` of distinct items (a square comparison's diagonal
    is 0 by definition and not counted), per metric: ``pairs_computed`` by this run,
    ``pairs_resumed`` found done in the output (earlier runs), ``ill_posed`` flagged by the
    ``ill_posed`` diagnostic in the whole matrix. ``bytes_read``: activation bytes this run read
    from the store, as decoded arrays: each layer once when the workers hold the layers'
    coordinates, else once to factor it (twice for an ill-conditioned layer: a second pass or
    the TSQR) plus once per tile that needs it. ``data_bytes``: the
    activations this run needed, each once; ``passes = bytes_read / data_bytes``. ``out``: the
    output group, or None when it was a temporary one (``out=None``).
    """

    out: str | None
    metrics: tuple[str, ...]
    pairs_total: int
    pairs_computed: dict
    pairs_resumed: dict
    ill_posed: dict
    tiles_computed: int
    tiles_resumed: int
    wall_seconds: float
    bytes_read: int
    data_bytes: int = 0

    @property
    def passes(self) -> float:
        """Passes over the activations this run needed (1.0: each network read once)."""
        return self.bytes_read / self.data_bytes if self.data_bytes else 0.0

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "metrics": list(self.metrics), "passes": self.passes}

    def lines(self) -> list[str]:
        """The block ``cca-scale compare`` prints on stderr."""
        width = max(len(m) for m in self.metrics)
        out = [f"run summary: {len(self.metrics)} metric(s), {self.pairs_total} pairs each, "
               f"{self.tiles_computed} tiles computed, {self.tiles_resumed} already done"]
        for m in self.metrics:
            out.append(f"  {m:<{width}}  computed {self.pairs_computed[m]:>8}  resumed "
                       f"{self.pairs_resumed[m]:>8}  ill-posed {self.ill_posed[m]:>6}")
        mib = self.bytes_read / 2**20
        passes = f" ({self.passes:.2f} passes over the data)" if self.data_bytes else ""
        out.append(f"  wall {self.wall_seconds:.2f} s, {mib:,.1f} MiB read from the store"
                   f"{passes}")
        out.append(f"  output: {self.out if self.out is not None else '(temporary, removed)'}")
        return out


@dataclass
class Comparison:
    """A comparison in flight on a Dask cluster (from :func:`submit`).

    ``progress()`` counts tiles; ``result()`` waits and returns the DistanceMatrix (``wait()``
    only the :class:`RunSummary`); ``cancel()`` stops it (what was written stays, and the same
    call later resumes). ``shape``: the matrix's (rows, columns).
    """

    out: ComparisonOutput
    resume: ResumeState
    tile: int
    client: Any
    owned: bool
    futures: list = field(default_factory=list)
    pairs_total: int = 0
    started: float = field(default_factory=time.perf_counter)
    summaries: list[TileSummary] = field(default_factory=list)
    _completed: set = field(default_factory=set)
    _cluster_closed: bool = False
    temporary_dir: str | None = None  # out=None: removed once the matrix is read
    metrics: tuple = ("pwcca",)  # the metrics this run computes
    many: bool = False  # metric was a list: result() returns a dict of matrices
    pairs_per_matrix: int = 0  # ordered pairs of distinct items in one metric's matrix
    shape: tuple[int, int] = (0, 0)
    data_bytes: int = 0  # the activations the remaining tiles need, each network once
    prepared_bytes: int = 0  # what the prepare and coords tasks read (tiles add their own)
    run_summary: RunSummary | None = None  # set by result() and wait()

    @property
    def path(self) -> str:
        return self.out.path

    def progress(self) -> tuple[int, int]:
        """``(tiles done, tiles total)``, counting tiles done by earlier runs."""
        finished = self._completed | {f.key for f in self.futures if f.status == "finished"}
        return self.resume.done + len(finished), self.resume.total

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def result(self, *, on_tile: Callable[[TileSummary], None] | None = None
               ) -> DistanceMatrix | dict[str, DistanceMatrix]:
        """Wait for every tile, record timings in the output, and return the matrix (a dict
        ``{metric: DistanceMatrix}`` in the order asked when ``metric`` was a list).

        ``on_tile`` is called with each tile's summary as it completes (progress bars). The run's
        :class:`RunSummary` is then ``self.run_summary`` and each matrix's
        ``metadata["run_summary"]``.
        """
        try:
            summary = self._complete(on_tile)
            matrices = {m: self.out.read(m) for m in self.metrics}
            for matrix in matrices.values():
                matrix.metadata["run_summary"] = summary.as_dict()
            return matrices if self.many else matrices[self.metrics[0]]
        finally:
            self._end()

    def wait(self, *, on_tile: Callable[[TileSummary], None] | None = None) -> RunSummary:
        """What :meth:`result` does, without reading the matrices back: wait for every tile,
        record timings in the output, and return the run's :class:`RunSummary` (also
        ``self.run_summary``). For callers that only need the output written, as
        ``cca-scale compare``: no matrix is built (nor pandas imported)."""
        try:
            return self._complete(on_tile)
        finally:
            self._end()

    def _complete(self, on_tile) -> RunSummary:
        from distributed import as_completed

        for future in as_completed(self.futures):
            summary = future.result()  # raises the task's own error
            self.summaries.append(summary)
            self._completed.add(future.key)
            future.release()  # the result is saved in the output; let the cluster forget it
            if on_tile is not None:
                on_tile(summary)
        self._finish()
        ill = {m: self.out.n_ill_posed(m) for m in self.metrics}
        self.run_summary = self._summary(ill)
        for m, n in ill.items():
            if n:
                line = ill_posed_line(n, self.shape[0] * self.shape[1])
                logger.warning(f"{m}: {line}" if self.many else line)
        return self.run_summary

    def _end(self) -> None:
        self.out.release()
        self._close()
        self._remove_temporary()

    def cancel(self) -> None:
        """Stop the remaining tiles. Finished tiles stay in the output; rerunning resumes."""
        try:
            if self.futures:
                self.client.cancel(self.futures)
        finally:
            self._end()

    @property
    def bytes_read(self) -> int:
        """Activation bytes this run read so far: its prepare/coords tasks (with the second
        passes over ill-conditioned layers that their finished tiles report, each layer once),
        and its finished tiles (streaming ones)."""
        extra: dict = {}
        for s in self.summaries:
            extra.update(s.prepare_extra_bytes)
        return (self.prepared_bytes + sum(extra.values())
                + sum(s.bytes_read for s in self.summaries))

    def _finish(self) -> None:
        wall = time.perf_counter() - self.started
        totals: dict[str, float] = {}
        for s in self.summaries:
            for k, v in s.seconds.items():
                totals[k] = totals.get(k, 0.0) + v
        flops = sum(s.gemm_flops for s in self.summaries)
        pairs = sum(s.pairs for s in self.summaries)
        pair_phase = (max(s.finished for s in self.summaries)
                      - min(s.started for s in self.summaries)) if self.summaries else 0.0
        self.out.update_meta(
            state="ready", complete=True,
            timings={"wall_seconds": wall, "task_seconds": totals, "pairs_computed": pairs,
                     "tiles_computed": len(self.summaries),
                     "gemm_gflop": flops / 1e9, "pair_phase_seconds": pair_phase,
                     "pairs_per_second": pairs / wall if wall > 0 else None,
                     "bytes_read": self.bytes_read},
        )

    def _summary(self, ill_posed: dict) -> RunSummary:
        computed = {m: sum(s.pairs_by_metric.get(m, 0) for s in self.summaries)
                    for m in self.metrics}
        return RunSummary(
            out=None if self.temporary_dir is not None else self.path,
            metrics=tuple(self.metrics), pairs_total=self.pairs_per_matrix,
            pairs_computed=computed,
            pairs_resumed={m: self.pairs_per_matrix - computed[m] for m in self.metrics},
            ill_posed=ill_posed,
            tiles_computed=len(self.summaries), tiles_resumed=self.resume.done,
            wall_seconds=time.perf_counter() - self.started,
            bytes_read=self.bytes_read,
            data_bytes=self.data_bytes)

    def _remove_temporary(self) -> None:
        if self.temporary_dir is not None:
            shutil.rmtree(self.temporary_dir, ignore_errors=True)
            self.temporary_dir = None

    def _close(self) -> None:
        if self.owned and not self._cluster_closed:
            self._cluster_closed = True
            self.client.close()  # also closes a cluster launch() started
