"""Running a bench: plan against the ledger, hand the work to an executor, commit as results land.

The parent loads each image once to hash it (the cache key for everything derived from it),
plans only the rows the ledger lacks, and starts an executor only if there is work: re-running
a finished grid does no codec or model work at all. Pristine outputs come first (once per image
and machine, predicted twice to check stability), then one unit per (image, codec). The parent
is the only writer of the ledger and the bitstream cache, whichever executor did the work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from icm.bench.executors import Executor, WorkerLostError, get_executor
from icm.bench.grid import expand_points, load_machines
from icm.bench.ledger import Ledger
from icm.bench.worker import (
    CodecJob,
    WorkerSetup,
    cache_key,
    cache_path,
    coding_version,
    store_files,
)
from icm.errors import BadImageError, IcmError
from icm.image import DEFAULT_MAX_PIXELS
from icm.image.datasets import SAMPLES, Dataset, content_hash, open_dataset

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


def run_bench(config: BenchConfig, progress: Progress | None = None) -> BenchOutcome:
    """Plan, run what is missing, and return what was done."""
    from icm.bench.grid import default_machines

    started = time.perf_counter()
    executor_class = get_executor(config.executor)  # an unknown name fails before any work
    points = expand_points(config.codecs, config.levels, config.bpp)
    machines = load_machines(config.machines or default_machines())
    dataset = open_dataset(config.images).views(views_for(config.images, config.views))
    if config.limit:
        dataset = dataset.limit(config.limit)
    dataset = dataset.degraded(config.degrade)
    out = Path(config.out)
    with Ledger(ledger_path(out)) as ledger:
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
                    pristine_added, added, work_ms = _execute(plan, executor, ledger, progress)
            status = "finished"
        finally:
            wall = time.perf_counter() - started
            ledger.finish_run(run_id, wall, work_ms / 1e3, added, status, workers)
        total = ledger.count("results")
    return BenchOutcome(out, total, added, pristine_added, wall, work_ms / 1e3,
                        dataset.skipped, workers)


def _registering_modules(points, machines) -> tuple[str, ...]:
    """Modules whose import registers every codec and machine in use (plugins included)."""
    from icm.codecs import CODECS

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
        self.versions = {str(p): coding_version(p) for p in points}
        done = ledger.done_keys()
        self.pristine_todo = [
            (index, machine.name)
            for index, (image, sha) in enumerate(images)
            for machine in machines
            if image.kind in machine.kinds
            and ledger.pristine_output(sha, self.fingerprints[machine.name]) is None
        ]
        self.units: list[tuple[int, str, dict[str, tuple[str, ...]]]] = []
        for index, (image, sha) in enumerate(images):
            readers = [m for m in machines if image.kind in m.kinds]
            for curve in dict.fromkeys(p.curve for p in points):
                pending = {}
                for point in (p for p in points if p.curve == curve):
                    key = cache_key(sha, point, self.versions[str(point)])
                    names = tuple(m.name for m in readers
                                  if done.get((sha, str(point), self.fingerprints[m.name])) != key)
                    if names:
                        pending[str(point)] = names
                if pending:
                    self.units.append((index, curve, pending))

    def unit_count(self) -> int:
        return len(self.pristine_todo) + len(self.units)

    def row_count(self) -> int:
        return sum(len(names) for _, _, pending in self.units for names in pending.values())

    def job(self, unit) -> CodecJob:
        index, _curve, pending = unit
        image, sha = self.images[index]
        points = tuple(p for p in self.points if str(p) in pending)
        pristine = {}
        for name in {n for names in pending.values() for n in names}:
            output = self.ledger.pristine_output(sha, self.fingerprints[name])
            if output is not None:
                pristine[name] = output
        pending = {point: tuple(n for n in names if n in pristine)
                   for point, names in pending.items()}
        cached = {}
        for point in points:  # reuse a bitstream only when both its row and its file are here
            row = self.ledger.bitstream(cache_key(sha, point, self.versions[str(point)]))
            path = None if row is None else cache_path(self.cache_dir, row.cache_key)
            if path is not None and path.is_file():
                cached[str(point)] = (row, path.read_bytes())
        return CodecJob(image, sha, points, pending, pristine, cached)


def _execute(plan: _Plan, executor: Executor, ledger: Ledger,
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
            added += ledger.add_unit(result.bitstreams, result.rows)
            for subject, message in result.notes:
                ledger.note(subject, message)
            work_ms += result.work_ms
            done_rows += len(result.rows)
            report("codecs", done_rows, total_rows)
    except WorkerLostError as lost:
        raise IcmError(f"{lost.problem}; every finished row is in the ledger: run the same "
                       "command again to resume", ledger.path) from None
    return pristine_added, added, work_ms
