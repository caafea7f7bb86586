"""Datasets: the images a benchmark runs over, each with an id, a kind and optional truth.

A dataset is a folder (recursive), a list file (one path per line, relative to the list), a
single image file, or ``samples``: the embedded default, bundled photos plus documents rendered
deterministically with exact ground-truth text. An image's ``kind`` (``photo`` or ``document``)
lets the grid pair machines with the images they are meant for (OCR reads documents).

**Truth from sidecars.** Beside ``scan.png``, a ``scan.txt`` holds the image's exact text (and
makes it a ``document``); a ``scan.json`` may give ``{"text": ..., "captions": [...],
"labels": [...], "kind": ...}``, other keys kept in ``Truth.extra``. A sidecar that cannot be
read, or a ``.txt`` and ``.json`` that disagree on the text, skips that image with a note in
``Dataset.skipped``: a benchmark scored against half-read truth would be silently wrong.

**What listing checks, and what it leaves to loading.** Listing looks only at names: files
with an image suffix (:data:`IMAGE_SUFFIXES`, any case; hidden files and folders, such as
macOS ``._photo.jpg`` droppings, are ignored) and the sidecars beside them. It does not decode
the images, since that would decode every image twice; a truncated or corrupt file surfaces as
:class:`~icm.errors.BadImageError` from :meth:`DatasetImage.load`, which the benchmark catches,
notes and goes on. Listed files that are missing are noted in ``skipped`` the same way; only a
dataset with nothing usable in it at all is an :class:`~icm.errors.IcmError`.

**Degraded images.** :meth:`Dataset.degraded` gives each image synthetic camera damage
(``icm.degrade``), applied on load and written into its id (``kodim01.png~haze@0.3``). The
damage is ``icm.degrade``'s business and that package sits above this one (it loads images),
so this module never imports it: ``icm.degrade`` plugs a :class:`Degrader` in when it is
imported, and a degraded image keeps the record it parsed and hands it back to be applied.

**Views.** A photo can be read as several square crops (:meth:`Dataset.views`), so a handful of
photos gives enough images for an interval to mean something. A view's id carries its window
(``chelsea#224x224+0+76``), which rebuilds it exactly; views of one photo are not independent
draws, so intervals resample whole source photos (:func:`source_group`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from icm.errors import BadImageError, IcmError
from icm.image.documents import RenderedDocument, render_documents
from icm.image.load import DEFAULT_MAX_PIXELS, _check_pixels, load_image
from icm.image.samples import SAMPLE_PHOTOS, sample_photo

PHOTO = "photo"
DOCUMENT = "document"
KINDS = (PHOTO, DOCUMENT)
CLEAN = "clean"  # in a list of degradations: the image as it is
DEGRADED_MARK = "~"  # between an image's id and its degradation (kodim01.png~haze@0.3)
VIEW_MARK = "#"  # between a photo's id and a view's window (kodim01.png#224x224+0+76)
VIEW_SIDE = 224  # the input side of the common ImageNet classifiers and CLIP ViT-B models
SAMPLES = "samples"  # the spec naming the embedded dataset; "./samples" names a folder
LIST_SUFFIXES = (".txt", ".lst")
_SAMPLE_SOURCE = "samples:"
_ID_PREVIEW = 6  # how many ids an "unknown id" message lists
#: the suffixes (any case) of the files a folder or list holds as images
IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".gif",
    ".jp2", ".j2k", ".avif", ".jxl", ".heic", ".heif", ".ppm", ".pgm", ".pnm",
)


@dataclass(frozen=True)
class Truth:
    """Ground truth attached to an image: rendered text, captions, labels."""

    text: str | None = None
    captions: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def content_hash(image: np.ndarray) -> str:
    """SHA-256 of the pixels and shape: the cache key for everything derived from an image."""
    digest = hashlib.sha256(f"{image.shape}|{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


# -- degradations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Degrader:
    """What datasets need from ``icm.degrade``, which registers it on import (:func:`set_degrader`).

    A record is whatever ``parse`` returns (an ``icm.degrade.DegradationRecord``): a frozen
    dataclass with a ``seed`` field whose ``str`` is its spec (``haze@0.3``). This module only
    stores records, writes them into ids and gives each image its own seed.
    """

    #: ``'haze@0.3'`` -> a record with seed 0; an :class:`IcmError` if it is not NAME@STRENGTH
    parse: Callable[[str], Any]
    #: an :class:`IcmError` if a record names no known degradation
    check: Callable[[Any], object]
    #: ``(pixels, record)`` -> the damaged copy of the pixels
    apply: Callable[[np.ndarray, Any], np.ndarray]


_degrader: Degrader | None = None


def set_degrader(degrader: Degrader) -> None:
    """Make ``degrader`` the one datasets use (``icm.degrade`` calls this when imported)."""
    global _degrader
    _degrader = degrader


def get_degrader() -> Degrader:
    """The registered :class:`Degrader`, or an :class:`IcmError` when there is none."""
    if _degrader is None:
        raise IcmError("degraded images need icm.degrade: import it first")
    return _degrader


# -- images and datasets ----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A crop rectangle in pixels, written ``WxH+LEFT+TOP`` (X11 geometry) in view ids."""

    left: int
    top: int
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}+{self.left}+{self.top}"

    @classmethod
    def parse(cls, text: str) -> Window | None:
        """The window ``text`` writes, or None when it is not one."""
        size, plus, offsets = text.partition("+")
        width, times, height = size.partition("x")
        left, plus2, top = offsets.partition("+")
        numbers = (width, height, left, top)
        if not (plus and times and plus2) or not all(n.isdigit() for n in numbers):
            return None
        return cls(int(left), int(top), int(width), int(height))

    def crop(self, pixels: np.ndarray, source: str) -> np.ndarray:
        height, width = pixels.shape[:2]
        if self.left + self.width > width or self.top + self.height > height:
            raise BadImageError(f"view {self} does not fit in a {width}x{height} image",
                                source)
        return np.ascontiguousarray(
            pixels[self.top:self.top + self.height, self.left:self.left + self.width])


def view_windows(width: int, height: int, count: int, side: int = VIEW_SIDE) -> list[Window]:
    """``count`` square windows of ``side`` px (less if the image is smaller) on an even grid.

    The grid has about as many columns per row as the image's aspect ratio asks for, and its
    windows span the image edge to edge, overlapping where the image is too small for them to
    sit apart; a grid with spare cells keeps the first ``count`` in reading order. An image
    with no room for that many distinct windows (as wide as a window, say) gives fewer.
    """
    side = min(side, width, height)
    columns = max(1, math.ceil(math.sqrt(count * width / height)))
    rows = math.ceil(count / columns)
    lefts = np.linspace(0, width - side, columns).round().astype(int)
    tops = np.linspace(0, height - side, rows).round().astype(int)
    windows = [Window(int(left), int(top), side, side) for top in tops for left in lefts]
    return list(dict.fromkeys(windows[:count]))


@dataclass(frozen=True)
class DatasetImage:
    """One image of a dataset, not yet decoded: cheap to list, pickle and send to a worker.

    ``id`` is stable and unique within its dataset (``samples/astronaut``, or the path relative
    to the dataset folder); ``source`` is an absolute file path or ``samples:<name>``.
    """

    id: str
    kind: str
    source: str
    truth: Truth | None = None
    #: synthetic camera damage applied on load, a record of the :class:`Degrader` (an
    #: ``icm.degrade.DegradationRecord``); the file stays the reference
    degradation: Any = None
    #: the crop of the file this image is (``Dataset.views``); None: the whole file
    view: Window | None = None

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """The pixels as ``(H, W, 3)`` uint8 (degraded, for a degraded image);
        :class:`BadImageError` if the file is unusable."""
        return self.degrade(self.reference(max_pixels))

    def reference(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """The clean pixels that quality and machine fidelity are measured against: the
        file's content (the same as :meth:`load` for an image with no degradation)."""
        if self.source.startswith(_SAMPLE_SOURCE):
            pixels = _load_sample(self.source, max_pixels)
        else:
            pixels = load_image(self.source, max_pixels)
        return pixels if self.view is None else self.view.crop(pixels, self.source)

    def degrade(self, reference: np.ndarray) -> np.ndarray:
        """``reference`` with this image's degradation applied (itself when there is none)."""
        if self.degradation is None:
            return reference
        return get_degrader().apply(reference, self.degradation)


@dataclass
class Dataset:
    """The images to run over, in a stable order, and what listing had to leave out.

    ``skipped`` holds one-line notes (``<path>: <problem>``) for the benchmark to print as
    warnings; ``max_pixels`` is the limit to pass to :meth:`DatasetImage.load`.
    """

    name: str
    images: list[DatasetImage]
    skipped: list[str] = field(default_factory=list)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[DatasetImage]:
        return iter(self.images)

    @property
    def ids(self) -> list[str]:
        return [image.id for image in self.images]

    def limit(self, n: int) -> Dataset:
        """The first ``n`` images: a quick run over a prefix of the stable order."""
        if n < 1:
            raise IcmError(f"a dataset limit must be at least 1, not {n}", self.name)
        return replace(self, images=self.images[:n])

    def subset(self, ids: Iterable[str]) -> Dataset:
        """Only the images with these ids, in dataset order; an unknown id is an error."""
        wanted = set(ids)
        unknown = sorted(wanted - set(self.ids))
        if unknown:
            known = ", ".join(self.ids[:_ID_PREVIEW]) + (", ..." if len(self) > _ID_PREVIEW else "")
            raise IcmError(
                f"no image {', '.join(unknown)} in this dataset (ids: {known})", self.name
            )
        return replace(self, images=[image for image in self.images if image.id in wanted])

    def views(self, count: int, side: int = VIEW_SIDE) -> Dataset:
        """Every photo as ``count`` square crops of ``side`` px (:func:`view_windows`), ids
        suffixed ``#WxH+LEFT+TOP``; documents stay whole (a crop would cut their text, and
        their truth with it). ``count`` 1 keeps the dataset as it is."""
        if count < 1:
            raise IcmError(f"the number of views must be at least 1, not {count}", self.name)
        if count == 1:
            return self
        images: list[DatasetImage] = []
        skipped = list(self.skipped)
        for image in self.images:
            if image.kind != PHOTO:
                images.append(image)
                continue
            try:
                height, width = image.reference(self.max_pixels).shape[:2]
            except BadImageError as exc:
                skipped.append(str(exc))
                continue
            images += [viewed_image(image, window)
                       for window in view_windows(width, height, count, side)]
        return replace(self, images=images, skipped=skipped)

    def degraded(self, specs: Sequence[str]) -> Dataset:
        """Every image once per spec (``haze@0.3``; ``clean`` keeps the image as it is), ids
        suffixed ``~haze@0.3`` (see :func:`degraded_image`)."""
        records: list[Any] = []
        for spec in specs:
            if spec.strip().lower() == CLEAN:
                records.append(None)
                continue
            degrader = get_degrader()
            record = degrader.parse(spec)
            degrader.check(record)  # an unknown name fails here, before any work
            records.append(record)
        if not records:
            return self
        images = [image if record is None else degraded_image(image, record)
                  for image in self.images for record in records]
        return replace(self, images=images)

    def of_kind(self, *kinds: str) -> Dataset:
        """Only the images of these kinds (``photo``, ``document``)."""
        return replace(self, images=[image for image in self.images if image.kind in kinds])


def degraded_image(image: DatasetImage, record: Any) -> DatasetImage:
    """``image`` with ``record`` applied on load, its id suffixed ``~haze@0.3``. The seed comes
    from the clean image's id, so a run repeats exactly, two images never share a noise
    pattern, and the id alone rebuilds the image (:func:`split_degraded_id`)."""
    seed = zlib.crc32(image.id.encode()) & 0x7FFFFFFF
    return replace(image, id=f"{image.id}{DEGRADED_MARK}{record}",
                   degradation=replace(record, seed=seed))


def viewed_image(image: DatasetImage, window: Window) -> DatasetImage:
    """``image`` cropped to ``window`` on load, its id suffixed ``#WxH+LEFT+TOP``."""
    return replace(image, id=f"{image.id}{VIEW_MARK}{window}", view=window)


def split_view_id(image_id: str) -> tuple[str, Window | None]:
    """``'kodim01.png#224x224+0+76'`` -> ``('kodim01.png', 224x224+0+76)``; other ids (a file
    whose own name holds a '#') -> ``(id, None)``."""
    base, mark, text = image_id.rpartition(VIEW_MARK)
    window = Window.parse(text) if mark else None
    return (base, window) if window is not None else (image_id, None)


def source_group(image_id: str) -> str:
    """The source photo an image was made from: the id less its degradation and its view.

    Views and degradations of one photo share its content, so a bootstrap over images must
    draw whole groups: counting each view as an independent image would make intervals too
    narrow.
    """
    return split_view_id(split_degraded_id(image_id)[0])[0]


def image_from_id(image_id: str, kind: str, source: str) -> DatasetImage:
    """Rebuild a listed image from what the ledger keeps (id, kind, source): its view and its
    degradation are both written in the id."""
    base_id, degradation = split_degraded_id(image_id)
    file_id, window = split_view_id(base_id)
    image = DatasetImage(file_id, kind, source)
    if window is not None:
        image = viewed_image(image, window)
    return image if degradation is None else degraded_image(image, degradation)


def split_degraded_id(image_id: str) -> tuple[str, Any]:
    """``'kodim01.png~haze@0.3'`` -> ``('kodim01.png', haze@0.3)``; other ids -> ``(id, None)``."""
    base, mark, spec = image_id.rpartition(DEGRADED_MARK)
    if not mark:
        return image_id, None
    parse = get_degrader().parse
    try:
        return base, parse(spec)
    except IcmError:  # a file whose own name holds a '~'
        return image_id, None


def open_dataset(spec: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
    """List the dataset ``spec`` names: ``"samples"``, a folder, a list file or an image file.

    Raises :class:`IcmError` (one line naming the path) when ``spec`` does not exist, is not a
    dataset, or holds no usable image; lesser problems go to ``Dataset.skipped``.
    """
    if isinstance(spec, str) and spec == SAMPLES:
        return Dataset(SAMPLES, _sample_images(), max_pixels=max_pixels)
    path = Path(spec).expanduser()
    if not path.exists():
        raise IcmError("no such folder or file (a dataset is a folder, a list or 'samples')", path)
    if path.is_dir():
        images, skipped = _list_folder(path)
        if not images and not skipped:
            raise IcmError("no image files in this folder", path)
    elif path.suffix.lower() in LIST_SUFFIXES:
        images, skipped = _list_file(path)
    elif _has_image_suffix(path):
        images, skipped = _with_truth([(path, path.name)])
    else:
        raise IcmError(
            "not a dataset: give a folder, a list file (.txt, .lst), an image or 'samples'",
            path,
        )
    if not images:
        raise IcmError(f"no usable image ({len(skipped)} skipped, first: {skipped[0]})", path)
    return Dataset(_dataset_name(path), images, skipped, max_pixels)


def _dataset_name(path: Path) -> str:
    if path.is_dir():
        return path.absolute().name or str(path.absolute())
    return path.stem


# -- samples ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _rendered_documents() -> dict[str, RenderedDocument]:
    """The rendered documents, once per process; read-only so no caller can edit the cache."""
    documents = render_documents()
    for document in documents:
        document.image.setflags(write=False)
    return {document.name: document for document in documents}


def _sample_images() -> list[DatasetImage]:
    images = [
        DatasetImage(f"{SAMPLES}/{name}", PHOTO, f"{_SAMPLE_SOURCE}{name}")
        for name in SAMPLE_PHOTOS
    ]
    for document in _rendered_documents().values():
        extra = {"font_size": document.font_size, "layout": document.layout}
        truth = Truth(text=document.text, extra=extra)
        source = f"{_SAMPLE_SOURCE}{document.name}"
        images.append(DatasetImage(f"{SAMPLES}/{document.name}", DOCUMENT, source, truth))
    return images


def _load_sample(source: str, max_pixels: int) -> np.ndarray:
    name = source.removeprefix(_SAMPLE_SOURCE)
    documents = _rendered_documents()
    if name in SAMPLE_PHOTOS:
        pixels = sample_photo(name)
    elif name in documents:
        pixels = documents[name].image.copy()
    else:
        raise BadImageError("no embedded sample by this name", source)
    _check_pixels((pixels.shape[1], pixels.shape[0]), source, max_pixels)
    return pixels


# -- folders and list files -------------------------------------------------------------------


def _has_image_suffix(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def image_files(root: Path) -> tuple[list[Path], list[str]]:
    """Every image file under ``root`` by its name (nothing is opened), sorted by relative
    path, hidden files and folders ignored; and a note for each folder that cannot be listed.
    The one folder scan: datasets and batch encoding see the same files."""
    skipped: list[str] = []

    def note(error: OSError) -> None:
        skipped.append(f"{error.filename}: cannot list this folder ({error.strerror})")

    found: list[Path] = []
    for folder, subfolders, files in os.walk(root, onerror=note):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            path = Path(folder, name)
            if not name.startswith(".") and _has_image_suffix(path):
                found.append(path)
    return sorted(found, key=lambda path: path.relative_to(root).as_posix()), skipped


def _list_folder(root: Path) -> tuple[list[DatasetImage], list[str]]:
    """Every image file under ``root`` with its truth, sorted by relative path."""
    paths, skipped = image_files(root)
    images, problems = _with_truth([(path, path.relative_to(root).as_posix())
                                    for path in paths])
    return images, skipped + problems


def _list_file(list_path: Path) -> tuple[list[DatasetImage], list[str]]:
    """The images a list file names, one per line, relative to the list's folder.

    Blank lines and lines starting with ``#`` are ignored (a ``#`` later in a line is part of
    the path). Missing, repeated and folder entries are noted in ``skipped``.
    """
    try:
        lines = list_path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise IcmError("list file is not UTF-8 text", list_path) from None
    except OSError as exc:
        raise IcmError(f"cannot read list file ({exc.strerror or exc})", list_path) from None
    entries = [(number, line.strip()) for number, line in enumerate(lines, 1)]
    entries = [(number, entry) for number, entry in entries if entry and entry[0] != "#"]
    if not entries:
        raise IcmError("empty list file: it names no image", list_path)
    skipped: list[str] = []
    found: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for number, entry in entries:
        where = f"line {number} of {list_path.name}"
        path = list_path.parent / Path(entry).expanduser()
        image_id = Path(os.path.normpath(entry)).as_posix()
        if image_id in seen:
            skipped.append(f"{path}: listed twice ({where})")
        elif not path.exists():
            skipped.append(f"{path}: listed image not found ({where})")
        elif path.is_dir():
            skipped.append(f"{path}: is a folder, not an image file ({where})")
        else:
            found.append((path, image_id))
        seen.add(image_id)
    images, problems = _with_truth(found)
    return images, skipped + problems


def _with_truth(found: list[tuple[Path, str]]) -> tuple[list[DatasetImage], list[str]]:
    """Attach each image's sidecar truth and kind; an unreadable sidecar skips its image."""
    images: list[DatasetImage] = []
    skipped: list[str] = []
    for path, image_id in found:
        try:
            kind, truth = _sidecar_truth(path)
        except _SidecarError as exc:
            skipped.append(f"{path}: {exc}; image skipped")
            continue
        images.append(DatasetImage(image_id, kind, str(path.absolute()), truth))
    return images, skipped


class _SidecarError(Exception):
    """A sidecar beside an image cannot be used; the message names the sidecar."""


def _sidecar_truth(image: Path) -> tuple[str, Truth | None]:
    """Kind and truth from ``<stem>.txt`` and ``<stem>.json`` beside ``image``, if present."""
    text_path, json_path = image.with_suffix(".txt"), image.with_suffix(".json")
    text = _normalise_text(_read_sidecar(text_path)) if text_path.is_file() else None
    fields = _parse_json_sidecar(json_path) if json_path.is_file() else {}
    json_text = fields.pop("text", None)
    if text is not None and json_text is not None and text != json_text:
        raise _SidecarError(f"{text_path.name} and {json_path.name} give different text")
    text = text if text is not None else json_text
    kind = fields.pop("kind", DOCUMENT if text is not None else PHOTO)
    captions, labels = fields.pop("captions", ()), fields.pop("labels", ())
    if text is None and not captions and not labels and not fields:
        return kind, None
    return kind, Truth(text=text, captions=captions, labels=labels, extra=fields)


def _read_sidecar(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise _SidecarError(f"sidecar {path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise _SidecarError(f"cannot read sidecar {path.name} ({exc.strerror or exc})") from None


def _normalise_text(text: str) -> str:
    """Line endings to ``\\n`` and the file's leading and trailing blank space dropped."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _parse_json_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar's fields, checked: text a string, captions and labels lists of strings."""
    try:
        data = json.loads(_read_sidecar(path))
    except json.JSONDecodeError as exc:
        problem = f"sidecar {path.name} is not valid JSON ({exc.msg}, line {exc.lineno})"
        raise _SidecarError(problem) from None
    if not isinstance(data, dict):
        raise _SidecarError(f"sidecar {path.name} must hold a JSON object")
    fields = dict(data)
    if fields.get("text") is not None:
        if not isinstance(fields["text"], str):
            raise _SidecarError(f'sidecar {path.name}: "text" must be a string')
        fields["text"] = _normalise_text(fields["text"])
    else:
        fields.pop("text", None)
    for key in ("captions", "labels"):
        value = fields.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _SidecarError(f'sidecar {path.name}: "{key}" must be a list of strings')
        fields[key] = tuple(value)
    if "kind" in fields and fields["kind"] not in KINDS:
        raise _SidecarError(f'sidecar {path.name}: "kind" must be one of {", ".join(KINDS)}')
    return fields
