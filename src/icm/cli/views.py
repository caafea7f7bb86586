"""What the commands show: tables, batch loops with progress, the demo. No coding logic."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from icm.codecs import CODECS, get_codec
from icm.errors import IcmError
from icm.image import IMAGE_SUFFIXES, sample_photos
from icm.metrics import ms_ssim, psnr
from icm.pipeline import ICM_SUFFIX, CodecPoint, encode_file, encode_image

DEMO_CODECS = ("jpeg", "webp", "jpeg2000", "avif", "jxl", "heic", "hevc", "av1", "vvc")


def codec_rows() -> list[dict[str, Any]]:
    rows = []
    for name, cls in CODECS.items():
        reason = cls.unavailable_reason()
        rows.append({
            "codec": name,
            "levels": cls.knob.describe(),
            "raw_suffix": cls.raw_suffix,
            "library": cls.library,
            "library_version": cls.library_version() if reason is None else "",
            "available": reason is None,
            "reason": None if reason is None else f"{reason}. {cls.install_hint}".strip(),
            "options": {key: opt.default for key, opt in cls.options.items()},
            "summary": cls.summary,
        })
    return rows


def status_cell(row: dict[str, Any]) -> Text:
    """A codec or machine row's status: ok, or the reason and install hint, verbatim (a Text,
    so brackets as in pip install 'icm[jpegli]' are never read as markup)."""
    if row["available"]:
        return Text("ok", style="green")
    return Text.assemble(("unavailable:", "red"), f" {row['reason']}")


def skipped_line(problem: object) -> Text:
    """``icm: skipped: <problem>``, the problem verbatim."""
    return Text.assemble(("icm: skipped:", "yellow"), f" {problem}")


def parse_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise IcmError(f"option {pair!r} is not KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def encode_one(source, output, point, raw, max_pixels, options, as_json, console) -> None:
    target = output or source.with_suffix(ICM_SUFFIX)
    if target.is_dir():
        target = target / (source.stem + ICM_SUFFIX)
    result = encode_file(source, target, point, raw=raw, max_pixels=max_pixels, **options)
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
        return
    console.print(_encode_line(result), highlight=False, markup=False)


def _encode_line(result) -> str:
    line = (
        f"{result.source} -> {result.output}  {result.bitstream.point}  "
        f"{result.written_bytes} B  {result.bpp:.4f} bpp  {result.psnr_db:.2f} dB  "
        f"{result.encode_ms:.0f} ms"
    )
    if result.rate is not None:
        line += f"  ({result.rate.encodes} encodes for {result.rate.target_bpp:g} bpp)"
    return line


def find_images(folder: Path) -> list[Path]:
    """Image files below ``folder``, recursively, in a stable order."""
    return sorted(
        path for path in folder.rglob("*")
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )


def encode_many(source, output, point, raw, max_pixels, options, as_json, out, err) -> int:
    """Encode a folder; a bad file is reported and skipped, the rest goes on. Exit code back."""
    images = find_images(source)
    if not images:
        raise IcmError("no image files in this folder", source)
    get_codec(point.codec).resolve_options(options)  # fail before the loop, not per file
    target_root = output or source.with_name(source.name + "-icm")
    if target_root.exists() and not target_root.is_dir():
        raise IcmError("batch output must be a folder", target_root)
    results, failures = [], []
    with progress_bar(err, disable=False) as progress:
        task = progress.add_task(f"encode {point}", total=len(images))
        for image in images:
            target = target_root / image.relative_to(source).with_suffix(ICM_SUFFIX)
            try:
                results.append(encode_file(image, target, point, raw=raw,
                                           max_pixels=max_pixels, **options))
            except IcmError as exc:
                failures.append(str(exc))
                progress.console.print(skipped_line(exc))
            progress.advance(task)
    if as_json:
        payload = {"results": [r.to_json() for r in results], "skipped": failures}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        for result in results:
            out.print(_encode_line(result), highlight=False, markup=False)
        total_bytes = sum(r.written_bytes for r in results)
        out.print(f"{len(results)} encoded, {len(failures)} skipped, {total_bytes} bytes in all")
    return 2 if failures else 0


def progress_bar(console: Console, disable: bool = False) -> Progress:
    """The one progress bar style: description, bar, n/total, elapsed, ETA."""
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # names hold [ ]
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


def stage_reporter(progress: Progress):
    """A ``(stage, done, total)`` callback that keeps one bar per stage, for long jobs that
    report in stages (bench: pristine, codecs; adapter training: coding, training)."""
    tasks: dict[str, Any] = {}

    def show(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return show


def run_demo(codecs: list[str] | None, bpp: float, quiet: bool, console: Console) -> list[dict]:
    """Every bundled photo x every available codec at ``bpp``: real bytes, PSNR, MS-SSIM."""
    names = codecs or [n for n in DEMO_CODECS if n in CODECS and not CODECS[n].unavailable_reason()]
    photos = sample_photos()
    rows = []
    with progress_bar(console, disable=quiet) as progress:
        task = progress.add_task("demo", total=len(names) * len(photos))
        for name in names:
            codec = get_codec(name)
            for photo_name, image in photos.items():
                progress.update(task, description=f"{name} on {photo_name}")
                rows.append(_demo_row(codec, photo_name, image, bpp))
                progress.advance(task)
    return rows


def _demo_row(codec, photo_name, image, bpp) -> dict[str, Any]:
    import time

    start = time.perf_counter()
    try:
        encoded = encode_image(image, CodecPoint(codec.name, bpp=bpp))
        bitstream, data, rate = encoded.bitstream, encoded.data, encoded.rate
    except IcmError as exc:
        return {"codec": codec.name, "image": photo_name, "error": exc.problem}
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = codec.decode(bitstream)
    decode_ms = (time.perf_counter() - start) * 1e3
    pixels = image.shape[0] * image.shape[1]
    return {
        "codec": codec.name,
        "image": photo_name,
        "point": bitstream.point,
        "bytes": len(data),
        "bpp": 8 * len(data) / pixels,
        "psnr_db": psnr(image, decoded),
        "ms_ssim": ms_ssim(image, decoded),
        "rate_control_s": encode_s,
        "encodes": rate.encodes if rate else 1,
        "decode_ms": decode_ms,
    }


def demo_table(rows: list[dict[str, Any]], bpp: float) -> Table:
    table = Table(title=f"bundled photos at <= {bpp:g} bpp (.icm files, every byte counted)")
    for column in ("codec", "image", "level", "bpp", "PSNR dB", "MS-SSIM", "decode ms"):
        table.add_column(column, justify="left" if column in ("codec", "image", "level")
                         else "right")
    for row in rows:
        if "error" in row:
            table.add_row(row["codec"], row["image"], "-", "-", "-", "-", Text(row["error"]))
            continue
        table.add_row(
            row["codec"], row["image"], row["point"].split("@")[1], f"{row['bpp']:.3f}",
            f"{row['psnr_db']:.2f}", f"{row['ms_ssim']:.4f}", f"{row['decode_ms']:.1f}",
        )
    return table


def importance_map(
    source: Path,
    provider: str | None,
    for_machine: str | None,
    block: int,
    output: Path | None,
    max_pixels: int,
) -> dict[str, Any]:
    """Compute a map and write it over the image as a heat overlay (red = keep bits)."""
    import time

    from icm.fileio import refuse_overwriting_input, write_atomic
    from icm.image import load_image
    from icm.importance import get_importance
    from icm.machines import get_machine

    if provider is None:
        provider = get_machine(for_machine).default_importance() if for_machine else "saliency"
    output = output or source.with_suffix(".map.png")
    refuse_overwriting_input(source, output)
    image = load_image(source, max_pixels=max_pixels)
    start = time.perf_counter()
    importance = get_importance(provider).compute(image, block)
    compute_ms = (time.perf_counter() - start) * 1e3
    write_atomic(output, _png_bytes(overlay(image, importance.to_pixels())))
    return {"input": str(source), "output": str(output), "compute_ms": compute_ms,
            **importance.describe(), "values": np.round(importance.values, 3).tolist()}


def overlay(image: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The image in grey, tinted from blue (no bits needed) to red (keep every bit)."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True)
    heat = np.stack([dense, 0.25 * np.ones_like(dense), 1.0 - dense], axis=2) * 255.0
    return np.clip(0.55 * grey + 0.45 * heat, 0, 255).astype(np.uint8)


def _png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
