"""The default executor: spawned worker processes on this machine, each loading every machine
it needs once and running both stages of a codec job (coding, then reading) in one call."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from icm.bench.executors.base import Executor, PristineCall, WorkerLostError, register_executor
from icm.bench.ledger import PristineRow
from icm.bench.worker import (
    CodecJob,
    CodecJobResult,
    WorkerSetup,
    codec_unit,
    init_worker,
    pristine_unit,
)


@register_executor
class LocalExecutor(Executor):
    name = "local"

    @classmethod
    def default_workers(cls) -> int:
        return os.cpu_count() or 1

    def __init__(self, setup: WorkerSetup, workers: int, address: str = "",
                 actors: int = 0) -> None:
        """Every worker process holds its own copy of each machine, so ``actors`` is unused."""
        workers = workers or self.default_workers()
        super().__init__(setup, workers, address)
        self.pool = ProcessPoolExecutor(workers,
                                        mp_context=multiprocessing.get_context("spawn"),
                                        initializer=init_worker, initargs=(setup,))

    def pristine(self, calls: Iterable[PristineCall]) -> Iterator[PristineRow]:
        return self._bounded((pristine_unit, *call) for call in calls)

    def codec_units(self, jobs: Iterable[CodecJob]) -> Iterator[CodecJobResult]:
        return self._bounded((codec_unit, job) for job in jobs)

    def close(self) -> None:
        # On an error or Ctrl-C, drop queued units instead of waiting for them to run.
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _bounded(self, calls: Iterable[tuple]) -> Iterator:
        """Results of ``calls`` as they finish, with at most two per worker submitted at once.

        Calls are built lazily (a codec job carries its image's pristine outputs), so memory
        stays flat however large the grid, and an interrupted run has little queued to drop.
        """
        pending: set[Future] = set()
        try:
            for call in calls:
                pending.add(self.pool.submit(*call))
                if len(pending) >= 2 * self.workers:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in finished)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in finished)
        except BrokenProcessPool:
            raise WorkerLostError("a worker process died") from None
