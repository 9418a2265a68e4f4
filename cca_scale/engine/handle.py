"""A comparison in flight: the handle :func:`cca_scale.submit` returns."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cca_scale.engine.output import ComparisonOutput, ResumeState
from cca_scale.engine.tasks import TileSummary
from cca_scale.matrix import DistanceMatrix

__all__ = ["Comparison"]

logger = logging.getLogger("cca_scale.engine.compare")


@dataclass
class Comparison:
    """A comparison in flight on a Dask cluster (from :func:`submit`).

    ``progress()`` counts tiles; ``result()`` waits and returns the DistanceMatrix; ``cancel()``
    stops it (what was written stays, and the same call later resumes).
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

    @property
    def path(self) -> str:
        return self.out.path

    def progress(self) -> tuple[int, int]:
        """``(tiles done, tiles total)``, counting tiles done by earlier runs."""
        finished = self._completed | {f.key for f in self.futures if f.status == "finished"}
        return self.resume.done + len(finished), self.resume.total

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def result(self, *, on_tile: Callable[[TileSummary], None] | None = None) -> DistanceMatrix:
        """Wait for every tile, record timings in the output, and return the matrix.

        ``on_tile`` is called with each tile's summary as it completes (progress bars).
        """
        from distributed import as_completed

        try:
            for future in as_completed(self.futures):
                summary = future.result()  # raises the task's own error
                self.summaries.append(summary)
                self._completed.add(future.key)
                future.release()  # the result is saved in the output; let the cluster forget it
                if on_tile is not None:
                    on_tile(summary)
            self._finish()
            matrix = self.out.read()
            if matrix.n_ill_posed:
                logger.warning(matrix.ill_posed_line())
            return matrix
        finally:
            self.out.release()
            self._close()
            self._remove_temporary()

    def cancel(self) -> None:
        """Stop the remaining tiles. Finished tiles stay in the output; rerunning resumes."""
        try:
            if self.futures:
                self.client.cancel(self.futures)
        finally:
            self.out.release()
            self._close()
            self._remove_temporary()

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
                     "pairs_per_second": pairs / wall if wall > 0 else None},
        )

    def _remove_temporary(self) -> None:
        if self.temporary_dir is not None:
            shutil.rmtree(self.temporary_dir, ignore_errors=True)
            self.temporary_dir = None

    def _close(self) -> None:
        if self.owned and not self._cluster_closed:
            self._cluster_closed = True
            self.client.close()  # also closes a cluster launch() started
