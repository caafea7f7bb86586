"""``icm encode`` of one file or of a folder: where the files go, and a batch that goes on.

A folder is read with the same scan as a dataset (:func:`icm.image.image_files`), its tree
mirrored under the output folder. A file that cannot be encoded is noted and skipped and the
rest goes on: one broken photo must not cost the hours spent on the others, and the caller
still learns of it (``icm encode`` exits 2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icm.codecs import get_codec
from icm.errors import IcmError
from icm.image import DEFAULT_MAX_PIXELS, image_files
from icm.pipeline.files import ICM_SUFFIX, EncodeResult, encode_file
from icm.pipeline.point import CodecPoint

#: ``(stage, done, total)``, the shape every long job in icm reports progress in
BatchProgress = Callable[[str, int, int], None]
#: told each skipped file's problem as it happens, so it can be shown beside the progress
SkipNote = Callable[[str], None]


@dataclass
class FolderEncode:
    """What a folder encode wrote, and what it skipped (one line per problem)."""

    results: list[EncodeResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def written_bytes(self) -> int:
        return sum(result.written_bytes for result in self.results)

    def to_json(self) -> dict[str, Any]:
        return {"results": [result.to_json() for result in self.results],
                "skipped": self.skipped}


def single_output(source: Path, output: Path | None) -> Path:
    """Where encoding one file writes: ``output``; inside it, when it is a folder, as
    ``NAME.icm``; by default ``NAME.icm`` beside the input."""
    target = output or source.with_suffix(ICM_SUFFIX)
    if target.is_dir():
        target = target / (source.stem + ICM_SUFFIX)
    return target


@dataclass(frozen=True)
class FolderJob:
    """A folder encode checked before any file is read: the images found, the folders that
    could not be listed, where the outputs go, and the point and encoder options."""

    source: Path
    target_root: Path
    images: list[Path]
    unlisted: list[str]
    point: CodecPoint
    options: dict[str, str]


def plan_folder(source: Path, output: Path | None, point: CodecPoint,
                options: dict[str, str] | None = None) -> FolderJob:
    """List ``source``'s images and check the options and the output folder (default:
    ``SOURCE-icm`` beside it): a batch that cannot work fails here, before any progress."""
    options = options or {}
    images, unlisted = image_files(source)
    if not images:
        raise IcmError("no image files in this folder", source)
    get_codec(point.codec).resolve_options(options)  # fail before the loop, not per file
    target_root = output or source.with_name(source.name + "-icm")
    if target_root.exists() and not target_root.is_dir():
        raise IcmError("batch output must be a folder", target_root)
    return FolderJob(source, target_root, images, unlisted, point, options)


def encode_folder(
    job: FolderJob,
    *,
    raw: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: BatchProgress | None = None,
    on_skip: SkipNote | None = None,
) -> FolderEncode:
    """Encode every image of ``job`` as ``.icm`` files in the same tree under its output
    folder; a file that fails is skipped (and ``on_skip`` told) and the rest goes on."""
    batch = FolderEncode()
    for problem in job.unlisted:
        _skip(batch, problem, on_skip)
    stage, total = f"encode {job.point}", len(job.images)
    for done, image in enumerate(job.images):
        if progress is not None:
            progress(stage, done, total)
        target = job.target_root / image.relative_to(job.source).with_suffix(ICM_SUFFIX)
        try:
            batch.results.append(encode_file(image, target, job.point, raw=raw,
                                             max_pixels=max_pixels, **job.options))
        except IcmError as exc:
            _skip(batch, str(exc), on_skip)
    if progress is not None:
        progress(stage, total, total)
    return batch


def _skip(batch: FolderEncode, problem: str, on_skip: SkipNote | None) -> None:
    batch.skipped.append(problem)
    if on_skip is not None:
        on_skip(problem)
