"""Work done on workers (local processes or Ray): pristine outputs, and one image through one
codec in two stages, coding then reading, so an executor can run them in different places.

Workers write nothing: they return rows, bitstream files and notes, and the parent commits them
(files first, then one ledger transaction per unit). So a cluster whose nodes share no disk
still ends with every bitstream in the run folder, and a killed worker leaves nothing half-made.
Pixels come either from the image's file (local workers see the dataset) or with the call
(an executor whose workers may not see it ships them). What travels is always the *reference*,
the clean file content: a degraded dataset image is degraded here, deterministically, and its
machines' pristine outputs and its PSNR are taken on the clean reference, so the benchmark asks
how close the coded (and perhaps restored) image comes to what the machine sees on a clean one.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icm.bench.ledger import BitstreamRow, PristineRow, ResultRow
from icm.codecs import get_codec
from icm.errors import IcmError
from icm.fileio import write_atomic
from icm.image.datasets import DatasetImage, Truth
from icm.machines import Machine, get_machine
from icm.machines.base import THREADS_VARIABLE
from icm.metrics import psnr
from icm.pipeline import CodecPoint, decode_bytes, encode_image, recipe_for


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs, sent once at start-up."""

    machine_names: tuple[str, ...]
    modules: tuple[str, ...]  # modules that register the codecs and machines in use
    truths: tuple[Truth, ...]
    max_pixels: int
    # Math threads per worker process. The runner sets 1: float reductions then add up in one
    # order, so results are bit-identical for any worker count and executor (with 2 threads
    # EfficientNet's KL differed from 1 thread's in the 7th digit), and N workers use N cores.
    threads: int


_state: dict[str, Any] = {}


def init_worker(setup: WorkerSetup) -> None:
    """Bound math threads, import the registering modules, and forget loaded machines.

    Idempotent for the same setup, so a long-lived worker (a Ray worker process runs many tasks)
    pays for it once.
    """
    if _state.get("setup") == setup:
        return
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     THREADS_VARIABLE):
        os.environ[variable] = str(setup.threads)
    if "torch" in sys.modules:  # a reused worker (Ray) may have imported torch already
        sys.modules["torch"].set_num_threads(setup.threads)
    for module in setup.modules:  # a fresh worker only knows what its imports registered
        importlib.import_module(module)
    _state["setup"] = setup
    _state["machines"] = {}


def machine(name: str) -> Machine:
    machines: dict[str, Machine] = _state["machines"]
    if name not in machines:
        instance = get_machine(name)
        instance.prepare(_state["setup"].truths)
        machines[name] = instance
    return machines[name]


def _reference_of(image: DatasetImage, pixels: np.ndarray | None) -> np.ndarray:
    """The image's clean reference: shipped with the call, or read from its file."""
    return image.reference(_state["setup"].max_pixels) if pixels is None else pixels


def pristine_unit(image: DatasetImage, image_sha: str, name: str,
                  pixels: np.ndarray | None = None) -> PristineRow:
    """The machine's output on the pristine image (the clean reference of a degraded one),
    predicted twice to check it is stable."""
    pixels = _reference_of(image, pixels)
    model = machine(name)
    start = time.perf_counter()
    first = model.predict([pixels])[0]
    predict_ms = (time.perf_counter() - start) * 1e3
    second = model.predict([pixels])[0]
    accuracy = model.accuracy(first, image.truth) if image.truth else None
    return PristineRow(
        image_sha=image_sha,
        machine=name,
        fingerprint=model.fingerprint(),
        output_json=json.dumps(first, sort_keys=True),
        predict_ms=predict_ms,
        stable=int(_canonical(first) == _canonical(second)),
        truth_json=json.dumps(_truth_dict(image.truth)) if image.truth else None,
        accuracy_json=json.dumps(accuracy) if accuracy else None,
        created_at=time.time(),
    )


@dataclass(frozen=True)
class CodecJob:
    """One image through one codec's points; ``pending`` maps point -> machines still to run.

    Points travel as the parsed :class:`CodecPoint` objects the run was planned with, so a
    worker never parses one back from its ledger key (``str(point)``)."""

    image: DatasetImage
    image_sha: str
    points: tuple[CodecPoint, ...]
    pending: dict[CodecPoint, tuple[str, ...]]
    pristine: dict[str, dict[str, Any]]  # machine name -> pristine output
    cached: dict[CodecPoint, tuple[BitstreamRow, bytes]]  # bitstreams already coded

    @property
    def readers(self) -> tuple[str, ...]:
        """The machines with something to read in this job, in a stable order."""
        return tuple(dict.fromkeys(n for names in self.pending.values() for n in names))


@dataclass
class CodedPoints:
    """The coding stage's output: what the parent stores, and what the machines read."""

    bitstreams: list[BitstreamRow]  # newly coded, for the ledger
    files: dict[str, bytes]  # cache key -> .icm bytes of the new bitstreams, for the cache
    coded: dict[CodecPoint, BitstreamRow]  # point -> its bitstream, new or cached
    notes: list[tuple[str, str]]  # (subject, message): points that could not be coded
    work_ms: float

    def result(self, reads: list[tuple[list[ResultRow], float]]) -> CodecJobResult:
        """The job's result, given each machine's (rows, prediction ms) on these points."""
        rows = [row for read_rows, _ in reads for row in read_rows]
        work_ms = self.work_ms + sum(predict_ms for _, predict_ms in reads)
        return CodecJobResult(self.bitstreams, self.files, rows, work_ms, self.notes)


@dataclass
class CodecJobResult:
    bitstreams: list[BitstreamRow]
    files: dict[str, bytes]
    rows: list[ResultRow]
    work_ms: float
    notes: list[tuple[str, str]] = field(default_factory=list)


def codec_unit(job: CodecJob, pixels: np.ndarray | None = None) -> CodecJobResult:
    """Both stages in one place: code every point, then let each pending machine read it."""
    coded, decoded = code_points(job, pixels)
    return coded.result([read_points(job, coded.coded, decoded, name) for name in job.readers])


def code_points(job: CodecJob, pixels: np.ndarray | None = None
                ) -> tuple[CodedPoints, dict[CodecPoint, np.ndarray]]:
    """Encode (or decode the cached bitstream of) each point: (what to store, decoded images)."""
    reference = _reference_of(job.image, pixels)
    pixels = job.image.degrade(reference)
    decoded: dict[CodecPoint, np.ndarray] = {}
    coded: dict[CodecPoint, BitstreamRow] = {}
    bitstreams, files, notes = [], {}, []
    for point in job.points:
        try:
            if point in job.cached:
                row, data = job.cached[point]
                decoded[point] = decode_bytes(data)
            else:
                decoded[point], row, data = _code_point(pixels, reference, point, job.image_sha)
                bitstreams.append(row)
                files[row.cache_key] = data
        except IcmError as exc:  # e.g. a bpp target this codec cannot reach on this image
            notes.append((f"{job.image.id} {point}", exc.problem))
            continue
        coded[point] = row
    work_ms = sum(b.encode_ms + b.decode_ms for b in bitstreams)
    return CodedPoints(bitstreams, files, coded, notes, work_ms), decoded


def _code_point(pixels, reference, point, image_sha) -> tuple[np.ndarray, BitstreamRow, bytes]:
    version = coding_version(point)
    start = time.perf_counter()
    encoded = encode_image(pixels, point)  # the tools' maps and models count in encode time
    encode_ms = (time.perf_counter() - start) * 1e3
    bitstream, data = encoded.bitstream, encoded.data
    start = time.perf_counter()
    image = decode_bytes(data)
    decode_ms = (time.perf_counter() - start) * 1e3
    row = BitstreamRow(
        cache_key=cache_key(image_sha, point, version), image_sha=image_sha, point=str(point),
        level=bitstream.level, bytes=len(data), payload_bytes=len(bitstream.data),
        psnr=psnr(reference, image), encode_ms=encode_ms, decode_ms=decode_ms,
        codec_version=version, created_at=time.time(),
    )
    return image, row, data


def read_points(job: CodecJob, coded: dict[CodecPoint, BitstreamRow],
                decoded: dict[CodecPoint, np.ndarray], name: str
                ) -> tuple[list[ResultRow], float]:
    """One machine reads, in one batch, every decoded point it still has to: (rows, ms)."""
    points = [p for p, names in job.pending.items() if name in names and p in decoded]
    if not points:
        return [], 0.0
    height, width = decoded[points[0]].shape[:2]
    pixels = width * height
    model = machine(name)
    start = time.perf_counter()
    provenance = [(p.codec, 8 * coded[p].bytes / pixels) for p in points]
    outputs = model.predict_coded([decoded[p] for p in points], provenance)
    predict_total = (time.perf_counter() - start) * 1e3
    predict_ms = predict_total / len(points)
    rows = []
    for point, output in zip(points, outputs, strict=True):
        fidelity = model.fidelity(job.pristine[name], output)
        accuracy = model.accuracy(output, job.image.truth) if job.image.truth else None
        bitstream = coded[point]
        rows.append(ResultRow(
            image_sha=job.image_sha, point=str(point), fingerprint=model.fingerprint(),
            image_id=job.image.id, kind=job.image.kind, machine=name,
            codec=point.curve, level=bitstream.level, target_bpp=point.bpp,
            bytes=bitstream.bytes, bpp=8 * bitstream.bytes / pixels, psnr=bitstream.psnr,
            primary_name=model.primary, primary_value=float(fidelity[model.primary]),
            fidelity_json=json.dumps(fidelity), accuracy_json=json.dumps(accuracy)
            if accuracy else None, encode_ms=bitstream.encode_ms,
            decode_ms=bitstream.decode_ms, predict_ms=predict_ms,
            versions_json=json.dumps({"codec": bitstream.codec_version,
                                      **model.versions()}, sort_keys=True),
            cache_key=bitstream.cache_key, created_at=time.time(),
        ))
    return rows, predict_total


def store_files(cache_dir: Path, files: dict[str, bytes]) -> None:
    """Write new bitstreams into the content-addressed cache (the parent does, before commit)."""
    for key, data in files.items():
        write_atomic(cache_path(cache_dir, key), data)


def coding_version(point: CodecPoint) -> str:
    """The encoder's version, plus the fingerprint of the point's tools (their models and
    weights), so a changed importance model never reuses a stale bitstream."""
    codec = get_codec(point.codec)
    version = codec.library_version()
    return f"{version}|{recipe_for(point.tools).fingerprint(codec)}" if point.tools else version


def cache_key(image_sha: str, point: CodecPoint, codec_version: str) -> str:
    """Content address of a bitstream: image pixels, codec point and encoder version."""
    import hashlib

    return hashlib.sha256(f"{image_sha}|{point}|{codec_version}".encode()).hexdigest()


def cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.icm"


def _canonical(output: dict[str, Any]) -> str:
    return json.dumps(output, sort_keys=True)


def _truth_dict(truth: Truth) -> dict[str, Any]:
    return {"text": truth.text, "captions": list(truth.captions), "labels": list(truth.labels)}
