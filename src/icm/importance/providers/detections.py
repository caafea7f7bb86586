"""``detections[=MACHINE]``: where the detector itself finds objects, so those keep their bits.

A detector's fidelity (``detect:nanodet``: mAP@0.5 of the decoded image's boxes against the
pristine image's boxes at the machine's threshold, 0.4) depends on the pixels of its objects and
on little else, and the detector is not differentiable (ncnn), so no gradient can say so. The
map asks the machine itself: run its own detector on the image and mark the boxes.

**A lower threshold (0.2).** Every pristine box is an object the decoded image must reproduce,
and a missed one costs recall, the expensive half of AP. Candidates just under the machine's
threshold are marked too: the map is often computed on the image after resampling to the
machine's input size (``fit_size``), where a 0.42 box of the original may score 0.38, and an
object coded coarsely can also cross 0.4 the other way and become a false positive. Sub-
threshold boxes come from :meth:`NanoDetMachine.detect`'s ``threshold``; lowering it only adds
boxes (NMS runs best first), so the boxes above 0.4 are exactly the machine's own.

**Value = min(1, score / machine threshold).** AP counts every ground-truth box once, whatever
its score, so every box the machine reports (>= 0.4) keeps the full quality of the level, and the
weakest of them (0.4-0.5) are the ones most likely to drop out under coding noise, not the ones
to spare. Candidates below ramp down linearly (0.3 -> 0.75, 0.2 -> 0.5): they matter only if
they are near the line. The block value is the maximum over the boxes covering it (any pixel of
the block); blocks outside every box get 0 (the allocator's floor, 0.05, still codes them, about
13 QP coarser).

**A margin of 15 % of each box's width / height on every side.** The box regression and the
classification read context beyond the object (NanoDet's cells see several strides around
them, and a box's edges are judged where object meets background). Measured on the 14 of the
24 Kodak photos where NanoDet finds something: everything outside the marked boxes, enlarged by
a margin ``m`` of their own size, was blurred (Gaussian, sigma 6 px) and the detections compared
with the pristine ones. With the boxes of this map (score >= 0.2) mAP@0.5 was 0.87, 0.91, 0.88,
0.99, 0.98 and 0.99 for ``m`` = 0, 0.05, 0.10, 0.15, 0.20 and 0.30; with the machine's own
boxes only (>= 0.4) 0.80, 0.90, 0.81, 0.94, 0.94 and 0.92. The curve is noisy on so few photos
but flat from 0.15, and the sub-threshold candidates are worth their blocks (0.99 against 0.94
at 0.15). A margin proportional to the box suits big and small objects alike, as DB's unclip
does for text lines (``text``).

**What it leaves.** On those 24 Kodak photos (768x512, 16-px blocks) 45 % of the blocks are 0
on average (median 25 %; 6 photos have no candidate at all and map to all zeros, a uniform
allocation; with the 0.4 boxes alone 63 % would be 0); 42 % are 1 and 13 % in between. One
detector pass at 320 px: about 0.03-0.05 s per photo on a CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from icm.importance.maps import DEFAULT_BLOCK, ImportanceMap, grid_shape
from icm.importance.providers.base import MachineProvider
from icm.importance.registry import register_importance

DEFAULT_MACHINE = "detect:nanodet"
#: lowest detector score that marks a box (the machine's own threshold is 0.4)
SCORE_THRESHOLD = 0.2
#: each side of a box is pushed out by this share of the box's width (left/right) or height
MARGIN = 0.15


@register_importance
class DetectionsProvider(MachineProvider):
    name = "detections"
    summary = "boxes of a detector's own detections (score >= 0.2, +15 % margin), by score"
    argument_help = "MACHINE (a detector, e.g. detect:nanodet)"
    default_argument = DEFAULT_MACHINE
    install_hint = "pip install 'icm[detect]' and put nanodet_m.param/.bin in $ICM_MODELS_DIR/ncnn"

    @classmethod
    def lacks(cls, family: type, spec: Any) -> str | None:
        if not callable(getattr(family, "detect", None)):
            return f"machine {spec} is not a detector (it has no detect())"
        return None

    def compute(self, image: np.ndarray, block: int = DEFAULT_BLOCK) -> ImportanceMap:
        height, width = image.shape[:2]
        grid_shape(height, width, block)  # reject a bad block size before running the network
        machine = self.machine()
        boxes = machine.detect(np.asarray(image, dtype=np.uint8), threshold=SCORE_THRESHOLD)
        full = float(machine.score_threshold)
        values = box_map(boxes, height, width, block, MARGIN, full)
        params = {
            "machine": machine.name,
            "threshold": SCORE_THRESHOLD,
            "full_at": full,
            "margin": MARGIN,
            "boxes": len(boxes),
        }
        return ImportanceMap(values, block, width, height, self.full_name, params)

    def fingerprint(self) -> str:
        machine = self.machine()
        return (
            f"{self.full_name}|{machine.fingerprint()}|thr={SCORE_THRESHOLD}"
            f"|value=min(1,score/{machine.score_threshold:g})|margin={MARGIN}|block max"
        )


def box_value(score: float, full_at: float) -> float:
    """A box's importance: its score relative to the machine's threshold, capped at 1."""
    return float(min(1.0, max(0.0, score / full_at)))


def enlarge(box: Any, margin: float, height: int, width: int) -> tuple[float, float, float, float]:
    """``[x0, y0, x1, y1, ...]`` pushed out by ``margin`` of its own size, clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    return (
        max(0.0, x0 - dx),
        max(0.0, y0 - dy),
        min(width - 1.0, x1 + dx),
        min(height - 1.0, y1 + dy),
    )


def box_map(
    boxes: Any, height: int, width: int, block: int, margin: float, full_at: float
) -> np.ndarray:
    """Per-block maximum of :func:`box_value` over the enlarged boxes touching each block.

    A box covers pixel columns ``x0..x1`` (inclusive, in pixel coordinates), so it touches the
    blocks ``floor(x0 / block)`` to ``floor(x1 / block)``; likewise for rows.
    """
    rows, cols = grid_shape(height, width, block)
    values = np.zeros((rows, cols), dtype=np.float32)
    for box in boxes:
        x0, y0, x1, y1 = enlarge(box, margin, height, width)
        if x1 < x0 or y1 < y0:
            continue
        c0, c1 = int(x0 // block), min(cols - 1, int(x1 // block))
        r0, r1 = int(y0 // block), min(rows - 1, int(y1 // block))
        region = values[r0 : r1 + 1, c0 : c1 + 1]
        np.maximum(region, box_value(float(box[4]), full_at), out=region)
    return values
