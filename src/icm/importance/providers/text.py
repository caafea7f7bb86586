"""``text``: where the OCR machine's text detector sees text, so that text keeps its bits.

The map is the probability map of RapidOCR's DBNet detector (PP-OCRv4 det, the ONNX file inside
the ``rapidocr_onnxruntime`` 1.4.x wheel), the same network and the same geometry that
``ocr:rapidocr`` runs before it reads anything: text the detector misses is never read, so these
are the pixels an OCR benchmark depends on.

**Which map.** DB's network outputs a "shrink map": the probability that a pixel lies in a text
line's core, a band about a third of the line's height through its middle. Used as it is, it
leaves ascenders, descenders and the tops of capitals outside the map (on the rendered documents
only 40-60 % of ink pixels score over 0.5). DB itself recovers the line by "unclipping" each
region by ``area * 1.6 / perimeter``, a distance proportional to the region's own thickness (on
the rendered documents about 12 px for a 48 px sign, 5 px for 14 px print). That is the dilation
used here: the detector's own post-processing turns the map into boxes (its unclip ratio; the
box threshold lowered to the binarisation threshold, so weak candidates count too, by their
score), each box is filled with its mean probability, and the maximum is taken with the raw map
so sub-threshold hints still count a little. A dilation by a fixed number of pixels, or by one
scaled with the image size, would be too small for a big sign on a small photo or too big for
small print on a large page; the boxes are the crops the recogniser reads.

**Scaling.** The values are probabilities already, in [0, 1], so each block takes the maximum of
the map over its pixels (a block that holds part of one glyph matters as much as the glyph) and
no percentile stretching is applied: a page is mostly paper, and when text covers less than 2 %
of the blocks :func:`~icm.importance.maps.normalise` would find its 98th percentile on blank
paper and either flatten the map to ones or push every faint response to 1. A blank page gives
a map of (near) zeros: there is nothing to protect, which is an answer, not an error.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from icm.fileio import file_digest
from icm.importance.maps import DEFAULT_BLOCK, ImportanceMap, grid_shape
from icm.importance.providers.base import ImportanceProvider
from icm.importance.registry import register_importance
from icm.machines.classify import package_version
from icm.machines.ocr import RapidOcrEngine

#: the detector's input sides are rounded to multiples of 32; shorter sides round to 0 and the
#: library gives up, so small images are padded (edge-replicated) to this first
MIN_SIDE = 32
#: as ``ocr:rapidocr``: native resolution, only a side over 2000 px is scaled down
LIMIT_TYPE = "max"


@register_importance
class TextProvider(ImportanceProvider):
    name = "text"
    summary = "OCR text probability (RapidOCR PP-OCRv4 DBNet), unclipped to whole lines"
    install_hint = "pip install 'icm[bench]' (RapidOCR's text detector)"

    def __init__(self, argument: str | None = None) -> None:
        super().__init__(argument)
        self._detector: Any = None

    @classmethod
    def unavailable_reason(cls, argument: str | None) -> str | None:
        return RapidOcrEngine.unavailable_reason()

    def compute(self, image: np.ndarray, block: int = DEFAULT_BLOCK) -> ImportanceMap:
        height, width = image.shape[:2]
        grid_shape(height, width, block)  # reject a bad block size before running the network
        detector = self._load()
        dense = text_probability(detector, np.asarray(image, dtype=np.uint8))
        values = block_max(dense, block)
        return ImportanceMap(values, block, width, height, self.name, self._params(detector))

    def fingerprint(self) -> str:
        path = detector_model_path()
        return (
            f"{self.full_name}|rapidocr_onnxruntime {package_version('rapidocr_onnxruntime')}"
            f"|{path.name} sha256:{file_digest(path, digits=16)}|limit={LIMIT_TYPE}"
            "|DB boxes (box_thresh=thresh) max raw probability|block max"
        )

    def _load(self) -> Any:
        """The detector alone (not recognition or angle models): built once, on first use."""
        if self._detector is None:
            self._detector = build_detector()
        return self._detector

    def _params(self, detector: Any) -> dict[str, Any]:
        post = detector.postprocess_op
        return {
            "model": detector_model_path().name,
            "rapidocr_onnxruntime": package_version("rapidocr_onnxruntime"),
            "thresh": float(post.thresh),
            "unclip_ratio": float(post.unclip_ratio),
            "pool": "max",
        }


def detector_config() -> dict[str, Any]:
    """The library's own ``Det`` configuration (model path resolved), with ``LIMIT_TYPE``."""
    from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
    from rapidocr_onnxruntime.utils import read_yaml, update_model_path

    config = dict(update_model_path(read_yaml(DEFAULT_CFG_PATH))["Det"])
    config["limit_type"] = LIMIT_TYPE
    return config


@functools.cache
def detector_model_path() -> Path:
    """The detector's ONNX file inside the installed wheel (read from the library's config)."""
    return Path(detector_config()["model_path"])


def build_detector() -> Any:
    """RapidOCR's ``TextDetector`` (its preprocessing, ONNX session and DB post-processing).

    Its box threshold is lowered to the binarisation threshold: every region the detector
    binarises becomes a box, weighted by its score, rather than being dropped under 0.5.
    """
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector

    detector = TextDetector(detector_config())
    detector.postprocess_op.box_thresh = detector.postprocess_op.thresh
    return detector


def text_probability(detector: Any, rgb: np.ndarray) -> np.ndarray:
    """Per-pixel text importance in [0, 1] at the image's own ``H x W``.

    The raw DB probability map, resized back from the detector's multiple-of-32 input to the
    image, maximum-combined with DB's unclipped boxes filled with their scores.
    """
    height, width = rgb.shape[:2]
    bgr = _pad_to_min_side(np.ascontiguousarray(rgb[..., ::-1]))  # the library works in BGR
    padded_h, padded_w = bgr.shape[:2]
    inputs = detector.get_preprocess(max(padded_h, padded_w))(bgr)
    prediction = detector.infer(inputs)[0]  # (1, 1, h, w): sigmoid probabilities
    probability = _resize(prediction[0, 0], padded_h, padded_w)
    boxes, scores = detector.postprocess_op(prediction, (padded_h, padded_w))
    regions = _fill_boxes(boxes, scores, padded_h, padded_w)
    dense = np.maximum(probability, regions)[:height, :width]
    return np.clip(dense, 0.0, 1.0)


def block_max(dense: np.ndarray, block: int) -> np.ndarray:
    """Maximum of each block (partial edge blocks over their own pixels only)."""
    height, width = dense.shape
    rows, cols = grid_shape(height, width, block)
    padded = np.zeros((rows * block, cols * block), dtype=np.float32)  # values are >= 0
    padded[:height, :width] = dense
    return padded.reshape(rows, block, cols, block).max(axis=(1, 3))


def _pad_to_min_side(bgr: np.ndarray) -> np.ndarray:
    import cv2

    height, width = bgr.shape[:2]
    bottom, right = max(0, MIN_SIDE - height), max(0, MIN_SIDE - width)
    if not (bottom or right):
        return bgr
    return cv2.copyMakeBorder(bgr, 0, bottom, 0, right, cv2.BORDER_REPLICATE)


def _resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    values = np.asarray(values, dtype=np.float32)
    if values.shape == (height, width):
        return values
    return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)


def _fill_boxes(boxes: np.ndarray, scores: list[float], height: int, width: int) -> np.ndarray:
    """DB's boxes (image coordinates) painted with their scores; the higher wins on overlap."""
    import cv2

    regions = np.zeros((height, width), dtype=np.float32)
    for index in np.argsort(scores, kind="stable"):
        cv2.fillPoly(regions, [np.asarray(boxes[index], dtype=np.int32)], float(scores[index]))
    return regions
