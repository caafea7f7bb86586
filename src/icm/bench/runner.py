"""Running a bench: plan against the ledger, hand the work to an executor, commit as results land.

The parent loads each image once to hash it (the cache key for everything derived from it),
plans only the rows the ledger lacks, and starts an executor only if there is work: re-running
a finished grid does no codec or model work at all. Pristine outputs come first (once per image
and machine, predicted twice to check stability), then one unit per (image, codec). The parent
is the only writer of the ledger and the bitstream cache, whichever executor did the work.
One bench at a time per run folder: the parent holds an OS lock on ``RUN/bench.lock``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from icm.bench.executors import Executor, WorkerLostError, get_executor
from icm.bench.grid import default_machines, load_machines
from icm.bench.ledger import Ledger
from icm.bench.worker import (
    CodecJob,
    WorkerSetup,
    cache_key,
    cache_path,
    coding_version,
    store_files,
)
from icm.codecs import CODECS
from icm.errors import BadImageError, IcmError
from icm.image import DEFAULT_MAX_PIXELS
from icm.image.datasets import SAMPLES, Dataset, content_hash, open_dataset
from icm.pipeline import CodecPoint, parse_points

try:
    import fcntl
except ImportError:  # Windows: no flock; RunFolderLock then locks nothing (docs/bench.md)
    fcntl = None  # type: ignore[assignment]

Progress = Callable[[str, int, int], None]  # (stage, done rows, total rows)
DEFAULT_VIEWS = 6  # crops per bundled photo in the embedded default


@dataclass
class BenchConfig:
    images: str = "samples"
    views: int = 0  # crops per photo (Dataset.views); 0 = DEFAULT_VIEWS for samples, else 1
    degrade: tuple[str, ...] = ()  # each image once per degradation (haze@0.3, clean)
    codecs: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    bpp: tuple[float, ...] = ()
    machines: tuple[str, ...] = ()
    anchor: str = "jpeg"
    out: Path = Path("icm-bench")
    workers: int = 0  # 0 = one per core (local) or every CPU of the cluster (ray)
    limit: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    executor: str = "local"
    address: str = ""  # a Ray cluster to join (--executor ray); empty = a private local one
    actors: int = 0  # copies of each machine on Ray (0 = one per GPU, else one per CPU)

    def to_json(self) -> dict:
        return {key: (str(value) if isinstance(value, Path) else value)
                for key, value in self.__dict__.items()}


@dataclass
class BenchOutcome:
    out: Path
    rows_total: int
    rows_added: int
    pristine_added: int
    wall_s: float
    work_s: float
    skipped: list[str] = field(default_factory=list)
    workers: int = 0
    died: list[str] = field(default_factory=list)  # earlier runs found dead (Ledger.mark_died)

    @property
    def harness_share(self) -> float:
        """Share of worker time spent outside codec and model calls (incl. model loading)."""
        capacity = self.wall_s * max(1, self.workers)
        return 0.0 if capacity == 0 else max(0.0, 1 - self.work_s / capacity)


def views_for(images: str, views: int) -> int:
    """Views per photo: as asked, or by default ``DEFAULT_VIEWS`` for the embedded samples
    (five photos are too few for an interval) and the whole photo for a user's dataset."""
    if views:
        return views
    return DEFAULT_VIEWS if str(images) == SAMPLES else 1


def ledger_path(out: Path) -> Path:
    return Path(out) / "ledger.sqlite"


def lock_path(out: Path) -> Path:
    return Path(out) / "bench.lock"


class RunFolderLock:
    """One bench per run folder: an exclusive, non-blocking ``flock`` on ``RUN/bench.lock``,
    held by the parent for the whole run; a second bench is refused with the holder's pid.

    An OS lock, not a pid file alone, because the kernel drops it however its process ends
    (``kill -9`` included): a free lock proves that no bench runs here, so a run-table entry
    still marked running belongs to a dead process. The file is never deleted (unlinking a lock
    file races with a process that has just opened it); its pid and start time mean something
    only while it is locked. The descriptor is not inheritable and workers are spawned, so an
    orphaned worker never keeps the lock. Without ``fcntl`` (Windows), or on a filesystem that
    refuses locks, nothing is locked and ``held`` is False: the run goes on as before.
    """

    def __init__(self, out: Path) -> None:
        self.path = lock_path(out)
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> RunFolderLock:
        if fcntl is None:
            return self
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise IcmError(f"in use by another icm bench ({holder}); wait for it to end or "
                           "use another --out", self.path.parent) from None
        except OSError:  # no lock support here (some network filesystems): run unlocked
            os.close(fd)
            return self
        self.fd = fd
        os.ftruncate(fd, 0)  # the holder's record, for the message a second bench gets
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started_at": time.time(),
                                  "host": socket.gethostname()}).encode(), 0)
        return self

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise IcmError(f"cannot open the run folder's lock file ({exc.strerror})",
                           self.path) from None

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor releases the lock
            self.fd = None


def _lock_holder(fd: int) -> str:
    """``pid 123, started 2025-01-02 03:04:05`` from a held lock file; the holder may not have
    written it yet (it locks first), so an unreadable record says so instead of failing."""
    try:
        record = json.loads(os.pread(fd, 4096, 0))
        pid, started = int(record["pid"]), float(record["started_at"])
    except (OSError, ValueError, TypeError, KeyError):
        return "pid unknown"
    text = f"pid {pid}, started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}"
    host = record.get("host")
    return text if host in (None, socket.gethostname()) else f"{text} on {host}"


def run_bench(config: BenchConfig, progress: Progress | None = None) -> BenchOutcome:
    """Plan, run what is missing, and return what was done."""
    started = time.perf_counter()
    executor_class = get_executor(config.executor)  # an unknown name fails before any work
    points = parse_points(config.codecs, config.levels, config.bpp)
    machines = load_machines(config.machines or default_machines())
    dataset = open_dataset(config.images).views(views_for(config.images, config.views))
    if config.limit:
        dataset = dataset.limit(config.limit)
    dataset = dataset.degraded(config.degrade)
    out = Path(config.out)
    with RunFolderLock(out) as lock, Ledger(ledger_path(out)) as ledger:
        died = ledger.mark_died() if lock.held else []  # unlocked, a running entry may be live
        run_id = ledger.start_run(config.to_json())
        images = _register_images(dataset, ledger, config.max_pixels)
        plan = _Plan(images, points, machines, ledger, out / "cache" / "bitstreams")
        ledger.label_machines({fp: name for name, fp in plan.fingerprints.items()})
        setup = WorkerSetup(
            machine_names=tuple(m.name for m in machines),
            modules=_registering_modules(points, machines),
            truths=tuple(image.truth for image, _ in images if image.truth),
            max_pixels=config.max_pixels,
            threads=1,  # one core per worker process (see WorkerSetup.threads)
        )
        added = pristine_added = workers = 0
        work_ms = 0.0
        status = "interrupted"
        try:
            if plan.unit_count():
                # Never more slots than units; 0 lets the executor size itself once started.
                workers = config.workers or executor_class.default_workers()
                with executor_class(setup, min(workers, plan.unit_count()) if workers else 0,
                                    config.address, config.actors) as executor:
                    workers = executor.workers
                    pristine_added, added, work_ms = _execute(plan, executor, ledger, run_id,
                                                              progress)
            status = "finished"
        finally:
            wall = time.perf_counter() - started
            ledger.finish_run(run_id, wall, work_ms / 1e3, added, status, workers)
        total = ledger.count("results")
    return BenchOutcome(out, total, added, pristine_added, wall, work_ms / 1e3,
                        dataset.skipped, workers, died)


def _registering_modules(points, machines) -> tuple[str, ...]:
    """Modules whose import registers every codec and machine in use (plugins included)."""
    classes = [CODECS[p.codec] for p in points] + [type(m) for m in machines]
    return tuple(dict.fromkeys(cls.__module__ for cls in classes))


def _register_images(dataset: Dataset, ledger: Ledger, max_pixels: int):
    """Load and hash each image once; unreadable ones are noted and skipped, the rest go on."""
    images = []
    for subject in dataset.skipped:
        ledger.note(dataset.name, subject)
    for image in dataset.images:
        try:
            pixels = image.load(max_pixels)
        except BadImageError as exc:
            ledger.note(image.id, f"skipped: {exc}")
            dataset.skipped.append(str(exc))
            continue
        sha = content_hash(pixels)
        ledger.add_image(sha, image.id, image.kind, pixels.shape[1], pixels.shape[0],
                         image.source)
        images.append((image, sha))
    if not images:
        raise IcmError("no readable images in the dataset", dataset.name)
    return images


class _Plan:
    """What the ledger lacks: pristine outputs, and rows grouped into (image, codec) units."""

    def __init__(self, images, points, machines, ledger: Ledger, cache_dir: Path) -> None:
        self.images, self.points, self.machines, self.ledger = images, points, machines, ledger
        self.cache_dir = cache_dir
        self.fingerprints = {m.name: m.fingerprint() for m in machines}  # once, not per row
        self.versions = {point: coding_version(point) for point in points}
        done = ledger.done_keys()
        self.pristine_todo = [
            (index, machine.name)
            for index, (image, sha) in enumerate(images)
            for machine in machines
            if image.kind in machine.kinds
            and ledger.pristine_output(sha, self.fingerprints[machine.name]) is None
        ]
        self.units: list[tuple[int, str, dict[CodecPoint, tuple[str, ...]]]] = []
        for index, (image, sha) in enumerate(images):
            readers = [m for m in machines if image.kind in m.kinds]
            for curve in dict.fromkeys(p.curve for p in points):
                pending: dict[CodecPoint, tuple[str, ...]] = {}
                for point in (p for p in points if p.curve == curve):
                    key = cache_key(sha, point, self.versions[point])
                    names = tuple(m.name for m in readers
                                  if done.get((sha, str(point), self.fingerprints[m.name])) != key)
                    if names:
                        pending[point] = names
                if pending:
                    self.units.append((index, curve, pending))

    def unit_count(self) -> int:
        return len(self.pristine_todo) + len(self.units)

    def row_count(self) -> int:
        return sum(len(names) for _, _, pending in self.units for names in pending.values())

    def job(self, unit) -> CodecJob:
        index, _curve, pending = unit
        image, sha = self.images[index]
        points = tuple(p for p in self.points if p in pending)
        pristine = {}
        for name in {n for names in pending.values() for n in names}:
            output = self.ledger.pristine_output(sha, self.fingerprints[name])
            if output is not None:
                pristine[name] = output
        pending = {point: tuple(n for n in names if n in pristine)
                   for point, names in pending.items()}
        cached = {}
        for point in points:  # reuse a bitstream only when both its row and its file are here
            row = self.ledger.bitstream(cache_key(sha, point, self.versions[point]))
            path = None if row is None else cache_path(self.cache_dir, row.cache_key)
            if path is not None and path.is_file():
                cached[point] = (row, path.read_bytes())
        return CodecJob(image, sha, points, pending, pristine, cached)


def _execute(plan: _Plan, executor: Executor, ledger: Ledger, run_id: int,
             progress: Progress | None) -> tuple[int, int, float]:
    added = pristine_added = 0
    work_ms = 0.0
    report = progress or (lambda stage, done, total: None)
    try:
        total = len(plan.pristine_todo)
        report("pristine", 0, total)
        calls = ((plan.images[i][0], plan.images[i][1], name) for i, name in plan.pristine_todo)
        for done, row in enumerate(executor.pristine(calls), 1):
            ledger.add_pristine(row)
            if not row.stable:
                ledger.note(row.machine, f"unstable pristine output on {row.image_sha[:12]}")
            pristine_added += 1
            work_ms += row.predict_ms * 2
            report("pristine", done, total)
        total_rows, done_rows = plan.row_count(), 0
        report("codecs", 0, total_rows)
        for result in executor.codec_units(plan.job(unit) for unit in plan.units):
            store_files(plan.cache_dir, result.files)  # files first: a row never lacks its file
            added += ledger.add_unit(result.bitstreams, result.rows, run_id)
            for subject, message in result.notes:
                ledger.note(subject, message)
            work_ms += result.work_ms
            done_rows += len(result.rows)
            report("codecs", done_rows, total_rows)
    except WorkerLostError as lost:
        raise IcmError(f"{lost.problem}; every finished row is in the ledger: run the same "
                       "command again to resume", ledger.path) from None
    return pristine_added, added, work_ms
