"""OCR machines: ``ocr:rapidocr`` (PP-OCRv4 through ONNX Runtime) and ``ocr:tesseract``.

Text is where compression hurts machines first (thin strokes, small glyphs), and rendered
documents carry exact ground truth, so OCR gets both scores: agreement with its own reading of
the pristine image and accuracy against the rendered text. Both engines read the image at its
native resolution and return lines (text, box, confidence) plus the page text in reading order.

Text is compared after ``normalize_whitespace`` (runs of whitespace inside a line collapse to one
space, blank lines go, line breaks stay). PP-OCRv4's recogniser often drops a narrow space
("2026 total" -> "2026total") and can drop or restore it between two encodes of the same page,
so a space-insensitive variant of each text score is reported beside it.
"""

from __future__ import annotations

import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from icm.image.datasets import Truth
from icm.machines.base import (
    InputProfile,
    Machine,
    MachineSpec,
    Output,
    Scores,
    math_threads,
)
from icm.machines.classify import importable, package_version
from icm.machines.registry import register_machine
from icm.machines.scoring import cer, normalize_whitespace, text_agreement

Line = dict[str, Any]
_WHITESPACE = re.compile(r"\s+")


# -- reading order --------------------------------------------------------------------------------
def _extent(box: Sequence[Any]) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a 4-point polygon or an ``[x0, y0, x1, y1]`` box."""
    if np.ndim(box) == 2:
        xs = [float(p[0]) for p in box]
        ys = [float(p[1]) for p in box]
        return min(xs), min(ys), max(xs), max(ys)
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0, y0, x1, y1


def reading_rows(lines: Sequence[Line]) -> list[list[Line]]:
    """Lines grouped into visual rows, top to bottom, each row left to right.

    Lines are taken by top edge (then left); a line joins the current row when its vertical
    centre is within half a line height (the mean of its height and the row's) of the row's
    centre, so a line the detector split in two, or side-by-side fields, read as one row.
    """
    boxes = sorted(
        ((_extent(line["box"]), index) for index, line in enumerate(lines)),
        key=lambda item: (item[0][1], item[0][0], item[1]),
    )
    rows: list[list[tuple[tuple[float, float, float, float], int]]] = []
    for extent, index in boxes:
        centre, height = (extent[1] + extent[3]) / 2, extent[3] - extent[1]
        if rows:
            row = rows[-1]
            row_centre = np.mean([(e[1] + e[3]) / 2 for e, _ in row])
            row_height = np.mean([e[3] - e[1] for e, _ in row])
            if abs(centre - row_centre) <= 0.5 * (height + row_height) / 2:
                row.append((extent, index))
                continue
        rows.append([(extent, index)])
    return [
        [lines[i] for _, i in sorted(row, key=lambda item: (item[0][0], item[1]))] for row in rows
    ]


def page_text(rows: Sequence[Sequence[Line]]) -> str:
    """Rows joined with line breaks, the lines of one row with a space."""
    return "\n".join(" ".join(line["text"] for line in row) for row in rows)


def ocr_output(lines: Sequence[Line]) -> Output:
    rows = reading_rows(lines)
    return {"lines": [line for row in rows for line in row], "text": page_text(rows)}


def _squeeze(text: str) -> str:
    return _WHITESPACE.sub("", text)


# -- engines --------------------------------------------------------------------------------------
class OcrEngine(ABC):
    """One OCR library; built on first use."""

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None: ...

    @abstractmethod
    def read(self, rgb: np.ndarray) -> list[Line]:
        """The lines found in one (H, W, 3) uint8 RGB image, in any order."""

    @abstractmethod
    def fingerprint(self) -> str: ...

    @abstractmethod
    def versions(self) -> dict[str, str]: ...


class RapidOcrEngine(OcrEngine):
    """PP-OCRv4 detection + recognition from ``rapidocr_onnxruntime`` 1.4.x (models in the wheel;
    2.x and later download their models, so they cannot run offline).

    The 180-degree angle classifier is off: documents here are upright, and it flipped whole
    rendered lines upside down (whose garbled reading then fell under the 0.5 score filter), losing
    8 of 20 lines on a test page. The detector reads the native resolution (RapidOCR's ``max``
    limit: only a side over 2000 px is scaled down) instead of the default of scaling the short
    side up to 736, which made a 640x120 strip a 3900x736 input, 10x slower for the same text.
    Everything else is the library default (box threshold 0.5, text score 0.5).
    """

    def __init__(self) -> None:
        self._engine: Any = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if not importable("rapidocr_onnxruntime"):
            return "the Python package 'rapidocr_onnxruntime' (1.4.x) is not installed"
        return None

    def read(self, rgb: np.ndarray) -> list[Line]:
        if self._engine is None:
            from rapidocr_onnxruntime import RapidOCR

            threads = math_threads()
            budget = {} if threads is None else {"intra_op_num_threads": threads,
                                                 "inter_op_num_threads": 1}
            self._engine = RapidOCR(use_cls=False, det_limit_type="max", **budget)
        # an ndarray goes in as BGR (OpenCV order)
        result, _ = self._engine(np.ascontiguousarray(rgb[..., ::-1]), use_cls=False)
        return [
            {
                "text": str(text),
                "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
                "score": round(float(score), 6),
            }
            for box, text, score in result or []
        ]

    def fingerprint(self) -> str:
        version = package_version("rapidocr_onnxruntime")
        return f"rapidocr_onnxruntime {version} PP-OCRv4 det(native, max 2000)+rec, no cls"

    def versions(self) -> dict[str, str]:
        return {
            "rapidocr_onnxruntime": package_version("rapidocr_onnxruntime"),
            "onnxruntime": package_version("onnxruntime"),
        }


class TesseractEngine(OcrEngine):
    """Tesseract 5 (LSTM, ``eng``, automatic page segmentation) through ``pytesseract``; words
    are gathered into Tesseract's own lines, a line's score is its mean word confidence / 100."""

    lang = "eng"

    def __init__(self) -> None:
        self._version: str | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if not importable("pytesseract"):
            return "the Python package 'pytesseract' is not installed"
        if shutil.which("tesseract") is None:
            return "the tesseract binary is not installed"
        return None

    def read(self, rgb: np.ndarray) -> list[Line]:
        import pytesseract
        from PIL import Image

        data = pytesseract.image_to_data(
            Image.fromarray(np.ascontiguousarray(rgb)),
            lang=self.lang,
            output_type=pytesseract.Output.DICT,
        )
        grouped: dict[tuple[int, int, int, int], list[int]] = {}
        for i, word in enumerate(data["text"]):
            if word.strip() and float(data["conf"][i]) >= 0:
                key = (
                    data["page_num"][i],
                    data["block_num"][i],
                    data["par_num"][i],
                    data["line_num"][i],
                )
                grouped.setdefault(key, []).append(i)
        lines = []
        for words in grouped.values():
            x0 = min(data["left"][i] for i in words)
            y0 = min(data["top"][i] for i in words)
            x1 = max(data["left"][i] + data["width"][i] for i in words)
            y1 = max(data["top"][i] + data["height"][i] for i in words)
            confidence = float(np.mean([float(data["conf"][i]) for i in words])) / 100
            lines.append(
                {
                    "text": " ".join(data["text"][i].strip() for i in words),
                    "box": [x0, y0, x1, y1],
                    "score": round(confidence, 6),
                }
            )
        return lines

    def tesseract_version(self) -> str:
        if self._version is None:
            import pytesseract

            self._version = str(pytesseract.get_tesseract_version())
        return self._version

    def fingerprint(self) -> str:
        return f"tesseract {self.tesseract_version()} lang={self.lang} psm=3"

    def versions(self) -> dict[str, str]:
        return {
            "tesseract": self.tesseract_version(),
            "pytesseract": package_version("pytesseract"),
        }


ENGINES: dict[str, type[OcrEngine]] = {"rapidocr": RapidOcrEngine, "tesseract": TesseractEngine}


#: the text-line height (px) that ``fit`` keeps: half the 48-px line crops PP-OCR's recogniser
#: reads, where glyph strokes are still 2 px or more
LEGIBLE_LINE_PX = 24


# -- the machine ----------------------------------------------------------------------------------
@register_machine("ocr:rapidocr", "ocr:tesseract")
class OcrMachine(Machine):
    """Text reading at native resolution. Output: ``lines`` (text, box, score) in reading order
    and ``text`` (rows joined by line breaks).

    fidelity: ``text_agreement_nospace`` = max(0, 1 - CER(decoded text, pristine text)) with all
    whitespace removed (primary: RapidOCR drops and inserts spaces from one encode to the next,
    which caps the with-spaces score near 0.95 even at high quality and would measure the engine's
    jitter rather than the codec), ``text_agreement`` (with spaces), ``line_count_ratio`` =
    min / max of the numbers of text rows (1.0 when both are empty; rows, not engine lines,
    because Tesseract splits one printed line into blocks differently from encode to encode).
    accuracy (when ``truth.text`` is set): ``text_accuracy`` = max(0, 1 - CER vs truth),
    ``cer`` (unclipped, lower is better), ``text_accuracy_nospace``.
    """

    family = "ocr"
    primary = "text_agreement_nospace"
    kinds = frozenset({"document"})
    summary = "text agreement (1 - CER) and accuracy against rendered text (PP-OCRv4, Tesseract)"
    install_hint = (
        "rapidocr: pip install 'icm[bench]'; tesseract: pip install 'icm[tesseract]' and "
        "apt-get install tesseract-ocr tesseract-ocr-eng"
    )
    default_batch = 4

    def __init__(self, spec: MachineSpec) -> None:
        super().__init__(spec)
        self.engine = ENGINES[spec.model]()

    @classmethod
    def unavailable_reason(cls, spec: MachineSpec) -> str | None:
        engine = ENGINES.get(spec.model)
        if engine is None:
            return f"unknown OCR engine {spec.model!r} (known: {', '.join(ENGINES)})"
        return engine.unavailable_reason()

    @property
    def profile(self) -> InputProfile:
        return InputProfile(None, "native", notes="the engine resizes internally")

    def predict(self, images: Sequence[np.ndarray]) -> list[Output]:
        return [ocr_output(self.engine.read(image)) for image in images]

    def fidelity(self, pristine: Output, decoded: Output) -> Scores:
        reference = normalize_whitespace(pristine["text"])
        text = normalize_whitespace(decoded["text"])
        counts = len(reading_rows(pristine["lines"])), len(reading_rows(decoded["lines"]))
        return {
            "text_agreement_nospace": text_agreement(_squeeze(text), _squeeze(reference)),
            "text_agreement": text_agreement(text, reference),
            "line_count_ratio": 1.0 if max(counts) == 0 else min(counts) / max(counts),
        }

    def accuracy(self, output: Output, truth: Truth) -> Scores | None:
        if truth.text is None:
            return None
        reference = normalize_whitespace(truth.text)
        text = normalize_whitespace(output["text"])
        error = cer(text, reference)
        return {
            "text_accuracy": max(0.0, 1.0 - error),
            "cer": error,
            "text_accuracy_nospace": text_agreement(_squeeze(text), _squeeze(reference)),
        }

    def default_importance(self) -> str:
        return "text"

    def fit_size(self, image: np.ndarray) -> tuple[int, int]:
        """Downscale only as far as keeps the median text line ``LEGIBLE_LINE_PX`` tall.

        OCR reads at native resolution, so the profile alone allows no resampling; but text
        printed larger than the recogniser needs (PP-OCR reads line crops 48 px tall) carries
        pixels it never uses. Line heights come from reading the image once.
        """
        height, width = image.shape[:2]
        lines = self.predict([image])[0]["lines"]
        heights = [_extent(line["box"])[3] - _extent(line["box"])[1] for line in lines]
        if not heights:
            return width, height
        scale = min(1.0, LEGIBLE_LINE_PX / float(np.median(heights)))
        return max(1, round(width * scale)), max(1, round(height * scale))

    def fingerprint(self) -> str:
        return (f"{self.name}|{self.engine.fingerprint()}|native|rows: centre within half a "
                f"line|primary={self.primary}")

    def versions(self) -> Mapping[str, str]:
        return self.engine.versions()
