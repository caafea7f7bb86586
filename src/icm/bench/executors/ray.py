"""Ray: coding as tasks spread over the cluster, machines as pools of long-lived actors.

Why actors for machines: a model is loaded once per actor and then reads many images, where a
task would reload it every time; an actor asks for a GPU when its machine can use one and the
cluster has them. Coding is stateless, so it is plain tasks, one CPU each. A codec job becomes
one coding task whose decoded images go straight (through the object store) to each machine's
pool; the driver fetches only the small rows and bitstreams and commits them like the local
executor does, so the ledger cannot tell the executors apart.

Pixels travel with the calls (one object per image), because cluster nodes need not see the
dataset's files. Tasks are retried when their worker dies and actors are restarted and their
calls retried, so a lost node or a killed actor costs only the work it had in flight.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from icm.bench.executors.base import (
    Executor,
    PristineCall,
    UnknownExecutorError,
    WorkerLostError,
    register_executor,
)
from icm.bench.ledger import PristineRow
from icm.bench.worker import (
    CodecJob,
    CodecJobResult,
    CodedPoints,
    WorkerSetup,
    code_points,
    init_worker,
    pristine_unit,
    read_points,
)
from icm.errors import IcmError
from icm.image.datasets import DatasetImage
from icm.machines import get_machine
from icm.pipeline import CodecPoint

RETRIES = 3  # restarts of a dead actor, and re-runs of a task or call whose worker died
INSTALL_HINT = "pip install 'icm[ray]'"


def _ray():
    try:
        import ray
    except ImportError:
        raise UnknownExecutorError(f"the ray executor needs Ray: {INSTALL_HINT}") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, not minutes, on a cluster address nothing listens at (Ray itself
    retries for a long while, printing warnings)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # 'auto', or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise IcmError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start "
                       "one with 'ray start --head' or leave out --address") from None


def _code_task(setup: WorkerSetup, job: CodecJob, pixels: np.ndarray):
    init_worker(setup)
    return code_points(job, pixels)


class MachineActor:
    """One loaded machine; its methods run one at a time, so the model is never shared."""

    def __init__(self, setup: WorkerSetup, name: str, device: str | None) -> None:
        if device:
            os.environ["ICM_DEVICE"] = device  # torch machines pick their device from it
        init_worker(setup)
        self.name = name

    def pristine(self, image: DatasetImage, image_sha: str, pixels: np.ndarray) -> PristineRow:
        return pristine_unit(image, image_sha, self.name, pixels)

    def read(self, job: CodecJob, coded: CodedPoints, decoded: dict[CodecPoint, np.ndarray]):
        return read_points(job, coded.coded, decoded, self.name)


@register_executor
class RayExecutor(Executor):
    name = "ray"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            _ray()
        except UnknownExecutorError:
            return f"Ray is not installed ({INSTALL_HINT})"
        return None

    def __init__(self, setup: WorkerSetup, workers: int, address: str = "",
                 actors: int = 0) -> None:
        ray = _ray()
        if address:
            _check_reachable(address)
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "logging_level": "ERROR"}
            if address:
                options["address"] = address
            else:  # a private local instance; --workers sets its CPUs
                options["num_cpus"] = workers or os.cpu_count() or 1
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise IcmError(f"cannot start or join Ray: {exc}", address or None) from None
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        self.gpus = int(resources.get("GPU", 0))
        super().__init__(setup, cpus)
        self.actors_per_machine = actors
        self._code = ray.remote(num_cpus=1, num_returns=2, max_retries=RETRIES)(_code_task)
        self._actor_class = ray.remote(MachineActor)
        self.pools: dict[str, list[Any]] = {}
        self._next: dict[str, int] = {}
        self._pixels: tuple[str, Any] | None = None  # (image id, ObjectRef): the current image

    # -- machine actor pools -------------------------------------------------------------------
    def pool(self, name: str) -> list[Any]:
        """The actors of one machine, started on first use."""
        if name not in self.pools:
            gpu = get_machine(name).wants_gpu and self.gpus > 0
            # As many copies as the local executor would hold (one per worker), or one per GPU.
            count = self.actors_per_machine or (self.gpus if gpu else self.workers)
            # A CPU machine's actor reserves no CPU: it would otherwise starve the coding tasks
            # on a small cluster (Ray's own default for a running actor is 0 CPUs, too).
            options = {"num_cpus": 0, "num_gpus": 1 if gpu else 0,
                       "max_restarts": RETRIES, "max_task_retries": RETRIES}
            self.pools[name] = [
                self._actor_class.options(**options).remote(self.setup, name,
                                                            "cuda" if gpu else None)
                for _ in range(count)
            ]
            self._next[name] = 0
        return self.pools[name]

    def _actor(self, name: str) -> Any:
        actors = self.pool(name)
        index = self._next[name]
        self._next[name] = (index + 1) % len(actors)
        return actors[index]

    def _pixels_ref(self, image: DatasetImage) -> Any:
        """The image's clean reference in the object store, put once for all the calls on
        that image (workers degrade it themselves when the image is a degraded one)."""
        if self._pixels is None or self._pixels[0] != image.id:
            self._pixels = (image.id, self._ray.put(image.reference(self.setup.max_pixels)))
        return self._pixels[1]

    # -- work ------------------------------------------------------------------------------
    def pristine(self, calls: Iterable[PristineCall]) -> Iterator[PristineRow]:
        def submit(call: PristineCall) -> list[Any]:
            image, sha, name = call
            return [self._actor(name).pristine.remote(image, sha, self._pixels_ref(image))]

        for refs in self._bounded(submit(call) for call in calls):
            yield self._get(refs[0])

    def codec_units(self, jobs: Iterable[CodecJob]) -> Iterator[CodecJobResult]:
        def submit(job: CodecJob) -> list[Any]:
            """The coding task's ref, then one read per machine of its decoded images."""
            coded, decoded = self._code.remote(self.setup, job, self._pixels_ref(job.image))
            return [coded, *(self._actor(name).read.remote(job, coded, decoded)
                             for name in job.readers)]

        for coded, *reads in self._bounded(submit(job) for job in jobs):
            yield self._get(coded).result([self._get(read) for read in reads])

    def _bounded(self, submissions: Iterable[list[Any]]) -> Iterator[list[Any]]:
        """Each submission's refs once all of them are ready, two per CPU in flight at most."""
        in_flight: list[list[Any]] = []
        for refs in submissions:
            in_flight.append(refs)
            if len(in_flight) >= 2 * self.workers:
                yield from self._finished(in_flight)
        while in_flight:
            yield from self._finished(in_flight)

    def _finished(self, in_flight: list[list[Any]]) -> Iterator[list[Any]]:
        """Wait until at least one submission is complete; yield (and drop) the complete ones."""
        flat = [ref for refs in in_flight for ref in refs]
        self._ray.wait(flat, num_returns=1)
        ready = set(self._ray.wait(flat, num_returns=len(flat), timeout=0)[0])
        for refs in [r for r in in_flight if all(ref in ready for ref in r)]:
            in_flight.remove(refs)
            yield refs

    def _get(self, ref: Any) -> Any:
        """``ray.get`` with Ray's failures turned into icm errors (an IcmError stays one)."""
        exceptions = self._ray.exceptions
        try:
            return self._ray.get(ref)
        except exceptions.RayTaskError as exc:
            if isinstance(exc.cause, IcmError):
                raise exc.cause from None
            raise
        except exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WorkerLostError(f"a Ray worker died beyond {RETRIES} retries ({first})") from None

    def close(self) -> None:
        for actors in self.pools.values():
            for actor in actors:
                self._ray.kill(actor)
        self.pools.clear()
        self._pixels = None
        if self._owns_ray:
            self._ray.shutdown()
