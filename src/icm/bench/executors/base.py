"""The executor interface and registry.

An executor takes the runner's lazily built calls (pristine outputs, then one codec job per
image and codec) and yields their results as they finish, keeping a bounded number in flight
so memory stays flat however large the grid is. It never touches the ledger.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import ClassVar

from icm.bench.ledger import PristineRow
from icm.bench.worker import CodecJob, CodecJobResult, WorkerSetup
from icm.errors import IcmError
from icm.image.datasets import DatasetImage
from icm.registry import Registry

PristineCall = tuple[DatasetImage, str, str]  # (image, its content hash, machine name)


class UnknownExecutorError(IcmError):
    """An executor name that is not registered, or whose library is not installed."""


class WorkerLostError(IcmError):
    """A worker died and could not be replaced; the runner reports how to resume."""


class Executor(ABC):
    """Runs bench work somewhere; use as a context manager so workers are always released."""

    name: ClassVar[str]

    def __init__(self, setup: WorkerSetup, workers: int, address: str = "",
                 actors: int = 0) -> None:
        """``workers``: parallel slots (0 = all cores); ``address``: a cluster to join;
        ``actors``: copies of each machine (0 = the executor's default)."""
        self.setup = setup
        self.workers = workers  # parallel slots, for the harness-share figure

    @classmethod
    def default_workers(cls) -> int:
        """Slots when ``--workers`` is 0, or 0 when only the started executor can tell (a Ray
        cluster's CPUs)."""
        return 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this executor cannot run here (a library missing), or None."""
        return None

    @abstractmethod
    def pristine(self, calls: Iterable[PristineCall]) -> Iterator[PristineRow]:
        """Each machine's output on each pristine image, in any order."""

    @abstractmethod
    def codec_units(self, jobs: Iterable[CodecJob]) -> Iterator[CodecJobResult]:
        """Each job's bitstreams and rows, one result per job, in any order."""

    @abstractmethod
    def close(self) -> None:
        """Release workers, dropping queued work (an interrupted run resumes from the ledger)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EXECUTORS: Registry[type[Executor]] = Registry("executor", UnknownExecutorError,
                                               UnknownExecutorError)
#: class decorator: make an executor reachable by its ``name`` (``--executor NAME``)
register_executor = EXECUTORS.register


def get_executor(name: str) -> type[Executor]:
    cls = EXECUTORS.lookup(name)
    return EXECUTORS.require(cls, f"the {cls.name} executor")
