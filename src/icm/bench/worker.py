"""Work done in the worker processes: pristine outputs, and one image through one codec.

Workers never write the ledger; they return rows and the parent commits them, one unit per
transaction. They do write bitstream cache files, atomically and content-addressed, so two
workers writing the same key write the same bytes.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from icm.bench.ledger import BitstreamRow, PristineRow, ResultRow
from icm.codecs import CodecPoint, get_codec, parse_point
from icm.coding import decode_bytes, encode_image
from icm.errors import IcmError
from icm.fileio import write_atomic
from icm.image.datasets import DatasetImage, Truth
from icm.machines import Machine, get_machine
from icm.metrics import psnr
from icm.recipe import recipe_for


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker needs, sent once at start-up."""

    machine_names: tuple[str, ...]
    modules: tuple[str, ...]  # modules that register the codecs and machines in use
    truths: tuple[Truth, ...]
    cache_dir: str
    max_pixels: int
    threads: int


_state: dict[str, Any] = {}


def init_worker(setup: WorkerSetup) -> None:
    """Process initialiser: bound math threads, then build (but do not load) the machines."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(setup.threads)
    for module in setup.modules:  # a spawned worker only knows what its imports registered
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


def pristine_unit(image: DatasetImage, image_sha: str, name: str) -> PristineRow:
    """The machine's output on the pristine image, predicted twice to check it is stable."""
    pixels = image.load(_state["setup"].max_pixels)
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
    """One image through one codec's points; ``pending`` maps point -> machines still to run."""

    image: DatasetImage
    image_sha: str
    points: tuple[CodecPoint, ...]
    pending: dict[str, tuple[str, ...]]
    pristine: dict[str, dict[str, Any]]  # machine name -> pristine output
    cached: dict[str, BitstreamRow]  # point -> bitstream already in the ledger and cache


@dataclass
class CodecJobResult:
    bitstreams: list[BitstreamRow]
    rows: list[ResultRow]
    work_ms: float
    notes: list[tuple[str, str]]  # (subject, message): points that could not be coded


def codec_unit(job: CodecJob) -> CodecJobResult:
    """Encode (or reuse) each point, decode, and let every pending machine read the result."""
    pixels = job.image.load(_state["setup"].max_pixels)
    decoded: dict[str, np.ndarray] = {}
    coded: dict[str, BitstreamRow] = {}
    new_bitstreams, notes = [], []
    for point in job.points:
        key = str(point)
        row = job.cached.get(key)
        try:
            image, fresh = _code_point(pixels, point, job.image_sha, row)
        except IcmError as exc:  # e.g. a bpp target this codec cannot reach on this image
            notes.append((f"{job.image.id} {key}", exc.problem))
            continue
        decoded[key] = image
        coded[key] = fresh
        if row is None:
            new_bitstreams.append(fresh)
    rows, predict_total = _read_decoded(job, decoded, coded) if decoded else ([], 0.0)
    work_ms = predict_total + sum(b.encode_ms + b.decode_ms for b in new_bitstreams)
    return CodecJobResult(new_bitstreams, rows, work_ms, notes)


def _code_point(pixels, point, image_sha, cached: BitstreamRow | None):
    """Decode the cached bitstream, or encode now and cache it; return (decoded, row)."""
    version = coding_version(point)
    key = cache_key(image_sha, point, version)
    path = cache_path(Path(_state["setup"].cache_dir), key)
    if cached is not None and path.exists():
        return decode_bytes(path.read_bytes(), path), cached
    start = time.perf_counter()
    encoded = encode_image(pixels, point)  # the tools' maps and models count in encode time
    encode_ms = (time.perf_counter() - start) * 1e3
    bitstream, data = encoded.bitstream, encoded.data
    start = time.perf_counter()
    image = decode_bytes(data)
    decode_ms = (time.perf_counter() - start) * 1e3
    write_atomic(path, data)
    row = BitstreamRow(
        cache_key=key, image_sha=image_sha, point=str(point), level=bitstream.level,
        bytes=len(data), payload_bytes=len(bitstream.data), psnr=psnr(pixels, image),
        encode_ms=encode_ms, decode_ms=decode_ms, codec_version=version,
        created_at=time.time(),
    )
    return image, row


def _read_decoded(job: CodecJob, decoded, coded) -> tuple[list[ResultRow], float]:
    """Batch each machine over the points it still has to read."""
    height, width = next(iter(decoded.values())).shape[:2]
    pixels = width * height
    rows, predict_total = [], 0.0
    by_machine: dict[str, list[str]] = {}
    for point, names in job.pending.items():
        if point not in decoded:
            continue
        for name in names:
            by_machine.setdefault(name, []).append(point)
    for name, points in by_machine.items():
        model = machine(name)
        start = time.perf_counter()
        provenance = [(parse_point(p).codec, 8 * coded[p].bytes / pixels) for p in points]
        outputs = model.predict_coded([decoded[p] for p in points], provenance)
        predict_ms = (time.perf_counter() - start) * 1e3 / len(points)
        predict_total += predict_ms * len(points)
        for point, output in zip(points, outputs, strict=True):
            fidelity = model.fidelity(job.pristine[name], output)
            accuracy = model.accuracy(output, job.image.truth) if job.image.truth else None
            bitstream = coded[point]
            target = next(p.bpp for p in job.points if str(p) == point)
            rows.append(ResultRow(
                image_sha=job.image_sha, point=point, fingerprint=model.fingerprint(),
                image_id=job.image.id, kind=job.image.kind, machine=name,
                codec=_curve(point), level=bitstream.level, target_bpp=target,
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


def coding_version(point: CodecPoint) -> str:
    """The encoder's version, plus the fingerprint of the point's tools (their models and
    weights), so a changed importance model never reuses a stale bitstream."""
    codec = get_codec(point.codec)
    version = codec.library_version()
    return f"{version}|{recipe_for(point.tools).fingerprint(codec)}" if point.tools else version


def _curve(point: str) -> str:
    return parse_point(point).curve


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
