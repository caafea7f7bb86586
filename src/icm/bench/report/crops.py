"""Worst-case crops: the pristine image beside what the codec made of it, as one PNG.

A crop is rebuilt from the run folder, not stored by the bench: the pristine pixels are
reloaded from the image's source (and checked against the benchmarked hash) and the decoded
ones come from the cached bitstream the row was measured on. Either can be gone by the time a
report is written; that is a :class:`CropSkipped` with its reason, which the report shows.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from icm.bench.report.document import Figure, slug
from icm.bench.report.output import ReportFolder
from icm.bench.report.run_data import RunData
from icm.bench.worker import cache_path
from icm.errors import IcmError
from icm.image.datasets import content_hash, image_from_id
from icm.pipeline import read_coded

#: Side of the square centre crop shown for worst cases (the whole image when it is smaller).
CROP_SIDE = 256


class CropSkipped(Exception):
    """Why a crop cannot be shown; the report says so and goes on."""


class Crops:
    """Side-by-side crops, made once per (image, point) and shared by every machine."""

    def __init__(self, run: RunData, out: ReportFolder) -> None:
        self.run, self.out = run, out
        self.cache_dir = run.folder / "cache" / "bitstreams"
        self.pristine: dict[str, np.ndarray | CropSkipped] = {}
        self.made: dict[tuple[str, str], Figure | CropSkipped] = {}
        self.problems: list[str] = []

    def crop(self, row: dict[str, Any]) -> Figure | CropSkipped:
        """The crop for a result row, or why there is none (also kept in ``problems``)."""
        key = (row["image_sha"], row["point"])
        if key not in self.made:
            try:
                self.made[key] = self._make(row)
            except CropSkipped as skipped:
                self.made[key] = skipped
                self.problems.append(
                    f"crop of {row['image_id']} at {row['point']} skipped: {skipped}"
                )
        return self.made[key]

    def _make(self, row: dict[str, Any]) -> Figure:
        pristine = self._pristine(row["image_sha"])
        decoded = self._decoded(row, pristine.shape)
        side = f"{min(pristine.shape[1], CROP_SIDE)}x{min(pristine.shape[0], CROP_SIDE)}"
        right = f"decoded {row['point']}, {row['bpp']:.3f} bpp, {row['psnr']:.1f} dB"
        png = side_by_side(pristine, decoded, "pristine", right)
        name = f"crops/{slug(row['image_id'])}-{row['image_sha'][:8]}-{slug(row['point'])}.png"
        self.out.crops[(row["image_sha"], row["point"])] = self.out.write(name, png)
        caption = (
            f"{row['image_id']} at {row['point']}: pristine (left), decoded (right), "
            f"{side} centre crop"
        )
        return Figure(name, png, caption)

    def _pristine(self, image_sha: str) -> np.ndarray:
        """The reloaded image, or its failure, remembered: each source is read at most once."""
        if image_sha not in self.pristine:
            try:
                self.pristine[image_sha] = load_pristine(self.run, image_sha)
            except CropSkipped as skipped:
                self.pristine[image_sha] = skipped
        found = self.pristine[image_sha]
        if isinstance(found, CropSkipped):
            raise found
        return found

    def _decoded(self, row: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
        """Decode the cached bitstream the row was measured on."""
        path = cache_path(self.cache_dir, row["cache_key"])
        if not path.is_file():
            where = path.relative_to(self.run.folder)
            raise CropSkipped(f"bitstream not in the cache ({where})")
        try:
            image = read_coded(path).decode()
        except IcmError as exc:
            raise CropSkipped(f"cannot decode {path.name}: {exc.problem}") from None
        if image.shape != shape:
            raise CropSkipped(f"decoded size {image.shape[:2]} is not the image's {shape[:2]}")
        return image


def load_pristine(run: RunData, image_sha: str) -> np.ndarray:
    """Reload an image from its ``images.source`` and check it is the benchmarked one; a
    view or a degraded image is rebuilt from its id, and a degraded one is shown by its clean
    reference, which is what its rows were scored against."""
    row = run.images.get(image_sha)
    if row is None:
        raise CropSkipped("image not in the images table")
    source = row["source"]
    image = image_from_id(row["image_id"], row["kind"], source)
    try:
        reference = image.reference(run.max_pixels())
        pixels = image.degrade(reference)
    except (IcmError, KeyError) as exc:
        problem = exc.problem if isinstance(exc, IcmError) else str(exc.args[0])
        raise CropSkipped(f"cannot reload {source}: {problem}") from None
    if content_hash(pixels) != image_sha:
        raise CropSkipped(f"{source} no longer holds the benchmarked pixels")
    return reference


def side_by_side(pristine: np.ndarray, decoded: np.ndarray, left: str, right: str) -> bytes:
    """``pristine | decoded`` centre crops, exactly 2 x crop wide, under a label band."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = pristine.shape[:2]
    crop_h, crop_w = min(height, CROP_SIDE), min(width, CROP_SIDE)
    top, edge = (height - crop_h) // 2, (width - crop_w) // 2
    window = (slice(top, top + crop_h), slice(edge, edge + crop_w))
    band = 20
    canvas = Image.new("RGB", (2 * crop_w, crop_h + band), (34, 38, 46))
    canvas.paste(Image.fromarray(np.ascontiguousarray(pristine[window])), (0, band))
    canvas.paste(Image.fromarray(np.ascontiguousarray(decoded[window])), (crop_w, band))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    for x, text in ((0, left), (crop_w, right)):
        draw.text((x + 4, 3), _fit(draw, text, font, crop_w - 8), fill="white", font=font)
    draw.line([(crop_w, 0), (crop_w, band - 1)], fill=(120, 126, 138))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis until it fits ``width`` pixels in ``font``."""
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 1 else ""
    return text
