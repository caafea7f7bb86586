"""Coded views: the samples adapters are trained, validated and tested on.

Each photo gives ``views`` square windows at several scales of the machine's input side
(1x: the machine reads the crop pixel for pixel; 2x: it shrinks the crop by two, as it shrinks
a photo twice its input size), placed at random but reproducibly. Every window is coded as an
image of its own by every (codec, level), decoded, and prepared for the model beside the
pristine window. Why windows and not whole photos: a machine reads a shrunken centre of a
whole photo, so a photo gives one sample per coding; windows give several, at the scales test
images will show artefacts at, and a photo's views can be kept together when folds and
intervals are drawn (they share its content). Scale 0 means the whole photo at its own size.

What is stored per sample is what the adapted model consumes: the prepared input, or, for a
CNN adapter whose first stages are plain (``cut``), those frozen stages' output
(:func:`icm.adapt.encoders.frozen_prefix`): smaller than the input and most of the compute.
The plain machine's outputs (logits, or the embedding of a machine without classes) are
computed here from the very tensors stored, so every later comparison (adapted vs plain,
either vs pristine) reads identical tensors. With a cache folder, each photo's views are
stored there (float32, memory-mapped on reuse) under a key of everything they depend on, so
folds and settings that share photos share the coding.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icm.adapt.conditioning import Condition
from icm.adapt.config import ViewPlan
from icm.adapt.encoders import from_prefix, frozen_prefix
from icm.codecs import get_codec
from icm.fileio import write_atomic
from icm.image.datasets import DatasetImage, Window

Progress = Callable[[str, int, int], None]
CACHE_VERSION = 2


def windows(photo_id: str, height: int, width: int, input_side: int, plan: ViewPlan
            ) -> list[Window | None]:
    """The plan's windows on one photo (None: the whole photo), the same on every run."""
    digest = hashlib.sha256(f"{plan.seed}|{photo_id}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    found: list[Window | None] = []
    for index in range(plan.views):
        scale = plan.scales[index % len(plan.scales)]
        if not scale:
            found.append(None)
            continue
        side = min(round(scale * input_side), height, width)
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        found.append(Window(left, top, side, side))
    return found


@dataclass
class Views:
    """Samples of many photos: pristine and decoded views, prepared, with the plain machine's
    outputs. Columns are per sample; ``pristine[i]`` is the row of sample i's pristine view."""

    #: the block whose output is stored (None: prepared inputs are)
    cut: int | None = None
    photos: list[str] = field(default_factory=list)
    photo: list[int] = field(default_factory=list)
    codec: list[str | None] = field(default_factory=list)
    level: list[str | None] = field(default_factory=list)
    bpp: list[float | None] = field(default_factory=list)
    size: list[tuple[int, int]] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    pristine: list[int] = field(default_factory=list)
    _inputs: list[np.ndarray] = field(default_factory=list)
    _outputs: list[np.ndarray] = field(default_factory=list)
    _where: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.photo)

    def add_photo(self, name: str, rows: list[dict], inputs: np.ndarray,
                  outputs: np.ndarray) -> None:
        """Append one photo's samples (``rows`` in the order of ``inputs``)."""
        base, photo = len(self), len(self.photos)
        self.photos.append(name)
        self._inputs.append(inputs)
        self._outputs.append(outputs)
        for local, row in enumerate(rows):
            self.photo.append(photo)
            self.codec.append(row["codec"])
            self.level.append(row["level"])
            self.bpp.append(row["bpp"])
            self.size.append(tuple(row["size"]))
            self.scale.append(row["scale"])
            self.pristine.append(base + row["pristine"])
            self._where.append((photo, local))

    def inputs(self, rows: Sequence[int]) -> Any:
        """What is stored for ``rows`` (inputs or prefixes), as one float32 tensor."""
        import torch

        stacked = np.stack([self._inputs[p][i] for p, i in (self._where[r] for r in rows)])
        return torch.from_numpy(stacked.astype(np.float32))

    def forward(self, encoder: Any, rows: Sequence[int], run: Callable[[Any, Any], Any]
                ) -> Any:
        """``run(encoder, input)`` on ``rows``: the full pass, from their stored inputs or
        prefixes."""
        return forward(encoder, self.inputs(rows), run, self.cut)

    def outputs(self, rows: Sequence[int]) -> Any:
        """The plain machine's outputs on ``rows``."""
        import torch

        return torch.from_numpy(np.stack([self._outputs[p][i] for p, i in
                                          (self._where[r] for r in rows)]))

    def condition(self, row: int) -> Condition:
        return Condition(self.codec[row], self.bpp[row], self.size[row])

    def rows(self, photos: Sequence[str] | None = None, decoded: bool = True,
             jobs: Sequence[tuple[str, str]] | None = None) -> list[int]:
        """Sample rows of the named photos (all, for None): decoded ones (only those coded by
        one of ``jobs``, when given), or pristine ones."""
        wanted = None if photos is None else {self.photos.index(p) for p in photos}
        coded = None if jobs is None else set(map(tuple, jobs))
        return [r for r in range(len(self)) if (wanted is None or self.photo[r] in wanted)
                and (self.codec[r] is not None) == decoded
                and (coded is None or not decoded or (self.codec[r], self.level[r]) in coded)]


def forward(encoder: Any, stored: Any, run: Callable[[Any, Any], Any], cut: int | None) -> Any:
    return run(encoder, stored) if cut is None else from_prefix(encoder, cut, run, stored)


def build_views(parts: Any, images: Sequence[tuple[str, DatasetImage]],
                jobs: Sequence[tuple[str, str]], plan: ViewPlan, input_side: int,
                machine_key: str, cut: int | None = None, cache: Path | None = None,
                progress: Progress | None = None) -> Views:
    """Views of named photos, each coded by every (codec, level) of ``jobs``, storing the
    output of block ``cut`` (or, for None, the prepared input); read from or written to
    ``cache`` when one is given."""
    views = Views(cut=cut)
    for done, (name, image) in enumerate(images, 1):
        key = _key(image, jobs, plan, input_side, f"{machine_key}|cut={cut}")
        stored = _read_cache(cache, key) if cache else None
        if stored is None:
            stored = code_photo(parts, name, image, jobs, plan, input_side, cut)
            if cache:
                _write_cache(cache, key, *stored)
        views.add_photo(name, *stored)
        if progress:
            progress("coding views", done, len(images))
    return views


def code_photo(parts: Any, name: str, image: DatasetImage, jobs: Sequence[tuple[str, str]],
               plan: ViewPlan, input_side: int, cut: int | None = None
               ) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """One photo's rows, stored tensors and plain outputs (float32)."""
    pixels = image.load()
    height, width = pixels.shape[:2]
    rows: list[dict] = []
    prepared = []
    for window in windows(name, height, width, input_side, plan):
        crop = pixels if window is None else window.crop(pixels, image.source)
        scale = min(crop.shape[:2]) / input_side
        pristine = len(rows)
        rows.append({"codec": None, "level": None, "bpp": None, "size": crop.shape[:2],
                     "scale": scale, "pristine": pristine})
        prepared.append(parts.prepare_image(crop)[0])
        for codec_name, level in jobs:
            codec = get_codec(codec_name)
            bitstream = codec.encode(crop, level)
            rows.append({"codec": codec_name, "level": level, "bpp": float(bitstream.bpp),
                         "size": crop.shape[:2], "scale": scale, "pristine": pristine})
            prepared.append(parts.prepare_image(codec.decode(bitstream))[0])
    stored = _stored(parts, np.stack([p.numpy() for p in prepared]).astype(np.float32), cut)
    return rows, stored, plain_outputs(parts, stored, cut)


def head(parts: Any) -> Callable[[Any, Any], Any]:
    """What a machine's outputs are compared by: its logits, or (no classes) its features."""
    return parts.logits if parts.logits is not None else parts.features


def _stored(parts: Any, inputs: np.ndarray, cut: int | None, batch: int = 16) -> np.ndarray:
    """What to keep per sample: the inputs, or their frozen prefix up to block ``cut``."""
    if cut is None:
        return inputs
    import torch

    with torch.no_grad():
        return np.concatenate([
            frozen_prefix(parts.module, cut, head(parts),
                          torch.from_numpy(inputs[start:start + batch])).numpy()
            for start in range(0, len(inputs), batch)])


def plain_outputs(parts: Any, stored: np.ndarray, cut: int | None = None, batch: int = 16
                  ) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(stored), batch):
            x = torch.from_numpy(np.asarray(stored[start:start + batch], dtype=np.float32))
            out.append(forward(parts.module, x, head(parts), cut).float()
                       .reshape(len(x), -1).numpy())
    return np.concatenate(out)


def _key(image: DatasetImage, jobs: Sequence[tuple[str, str]], plan: ViewPlan,
         input_side: int, machine_key: str) -> str:
    source = Path(image.source)
    stamp = (source.stat().st_size, source.stat().st_mtime_ns) if source.is_file() else ()
    text = json.dumps([CACHE_VERSION, image.id, image.source, stamp, list(map(list, jobs)),
                       plan.views, list(plan.scales), plan.seed, input_side, machine_key])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_cache(cache: Path, key: str) -> tuple[list[dict], np.ndarray, np.ndarray] | None:
    paths = [cache / f"{key}.{suffix}" for suffix in ("json", "inputs.npy", "outputs.npy")]
    if not all(p.is_file() for p in paths):
        return None
    rows = json.loads(paths[0].read_text())
    return rows, np.load(paths[1], mmap_mode="r"), np.load(paths[2])


def _write_cache(cache: Path, key: str, rows: list[dict], inputs: np.ndarray,
                 outputs: np.ndarray) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for suffix, array in (("inputs.npy", inputs), ("outputs.npy", outputs)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        write_atomic(cache / f"{key}.{suffix}", buffer.getvalue())
    write_atomic(cache / f"{key}.json", json.dumps(rows).encode())  # last: marks it complete
