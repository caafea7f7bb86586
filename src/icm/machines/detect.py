"""ncnn models from a local folder: the NanoDet-m COCO detector and the SqueezeNet classifier.

No detector's weights ship inside a PyPI wheel, but ncnn's converted model files are small and
run on any CPU through the ``ncnn`` wheel, so a folder holding them (``@variant``,
``$ICM_MODELS_DIR/ncnn`` or the checkout's sibling ``shared/models/ncnn``) is all a machine
needs. Pre- and post-processing follow ncnn's own examples (``examples/nanodet.cpp``,
``examples/squeezenet.cpp``), so the numbers mean what those models mean upstream.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import icm
from icm.fileio import file_digest
from icm.machines.base import (
    InputProfile,
    Machine,
    MachineSpec,
    Output,
    Scores,
    math_threads,
)
from icm.machines.classify import (
    Classifier,
    importable,
    package_version,
    register_classifier,
)
from icm.machines.registry import register_machine
from icm.machines.scoring import box_iou, map50

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


def coco_name(class_id: int) -> str:
    """COCO-80 class name of a NanoDet class id (``0`` -> ``person``)."""
    return COCO_CLASSES[int(class_id)]


# -- finding and loading ncnn models --------------------------------------------------------------
def ncnn_search_dirs(variant: str | None) -> list[Path]:
    """Where an ncnn model is looked for: the ``@variant`` folder alone when one is named, else
    ``$ICM_MODELS_DIR/ncnn`` and then ``shared/models/ncnn`` beside the checkout."""
    if variant is not None:
        return [Path(variant).expanduser()]
    dirs = []
    if os.environ.get("ICM_MODELS_DIR"):
        dirs.append(Path(os.environ["ICM_MODELS_DIR"]).expanduser() / "ncnn")
    dirs.append(Path(icm.__file__).resolve().parents[3] / "shared" / "models" / "ncnn")
    return dirs


def find_ncnn_model(variant: str | None, stem: str) -> Path | None:
    """The first search folder holding both ``<stem>.param`` and ``<stem>.bin``."""
    for folder in ncnn_search_dirs(variant):
        if (folder / f"{stem}.param").is_file() and (folder / f"{stem}.bin").is_file():
            return folder
    return None


def require_ncnn_model(variant: str | None, stem: str) -> Path:
    """The folder holding ``stem``'s ncnn files; unavailability was checked at construction."""
    folder = find_ncnn_model(variant, stem)
    if folder is None:
        raise RuntimeError(ncnn_unavailable_reason(variant, stem))
    return folder


def ncnn_unavailable_reason(variant: str | None, stem: str) -> str | None:
    if not importable("ncnn"):
        return "the Python package 'ncnn' is not installed"
    if find_ncnn_model(variant, stem) is None:
        places = ", ".join(str(folder) for folder in ncnn_search_dirs(variant))
        return f"{stem}.param/.bin not found (looked in {places})"
    return None


def load_ncnn_net(folder: Path, stem: str) -> Any:
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False  # CPU only: identical numbers on every machine
    if (threads := math_threads()) is not None:
        net.opt.num_threads = threads
    for suffix, load in ((".param", net.load_param), (".bin", net.load_model)):
        if load(str(folder / f"{stem}{suffix}")) != 0:
            raise RuntimeError(f"ncnn could not load {folder / (stem + suffix)}")
    return net


def ncnn_fingerprint(folder: Path, stem: str) -> str:
    return "+".join(file_digest(str(folder / f"{stem}{s}")) for s in (".param", ".bin"))


# -- SqueezeNet v1.1 (a classify back-end) --------------------------------------------------------
@register_classifier("squeezenet")
class NcnnSqueezeNet(Classifier):
    """SqueezeNet v1.1 through ncnn, as in ncnn's ``examples/squeezenet.cpp``: the whole image
    stretched to 227x227 (bilinear), BGR, mean 104/117/123 subtracted, no scaling; the ``prob``
    blob is the 1000-way softmax (Caffe's ImageNet order, the same as torchvision's)."""

    stem = "squeezenet_v1.1"
    profile = InputProfile(227, "stretch", notes="BGR, mean 104/117/123 (Caffe)")

    def __init__(self, spec: MachineSpec) -> None:
        super().__init__(spec)
        self._net: Any = None

    @classmethod
    def unavailable_reason(cls, spec: MachineSpec) -> str | None:
        return ncnn_unavailable_reason(spec.variant, cls.stem)

    @property
    def folder(self) -> Path:
        return require_ncnn_model(self.spec.variant, self.stem)

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        import ncnn

        if self._net is None:
            self._net = load_ncnn_net(self.folder, self.stem)
        height, width = rgb.shape[:2]
        mat = ncnn.Mat.from_pixels_resize(
            np.ascontiguousarray(rgb), ncnn.Mat.PixelType.PIXEL_RGB2BGR, width, height, 227, 227
        )
        mat.substract_mean_normalize([104.0, 117.0, 123.0], [])
        extractor = self._net.create_extractor()
        extractor.input("data", mat)
        _, prob = extractor.extract("prob")
        return np.array(prob, dtype=np.float64).reshape(-1)

    def fingerprint(self) -> str:
        return (
            f"classify:squeezenet|ncnn={ncnn_fingerprint(self.folder, self.stem)}|227 stretch BGR"
        )

    def versions(self) -> dict[str, str]:
        return {"ncnn": package_version("ncnn")}


# -- NanoDet-m ------------------------------------------------------------------------------------
def nms(boxes: np.ndarray, labels: np.ndarray, threshold: float) -> list[int]:
    """Greedy per-class NMS over boxes already sorted by descending score (ncnn's
    ``nms_sorted_bboxes`` with ``agnostic = false``): indices of the boxes kept."""
    picked: list[int] = []
    for i in range(len(boxes)):
        same = [j for j in picked if labels[j] == labels[i]]
        if same and np.any(box_iou(boxes[same], boxes[i]) > threshold):
            continue
        picked.append(i)
    return picked


@register_machine("detect:nanodet")
class NanoDetMachine(Machine):
    """NanoDet-m (COCO-80, 320 px) through ncnn, decoded as ncnn's ``examples/nanodet.cpp``.

    The longer side is resized to 320 (bilinear), the other padded with zeros to a multiple of
    32 (centred), BGR normalised with the model's mean/std. Each of the three heads (strides 8,
    16, 32; blobs 792/795, 814/817, 836/839 in ``nanodet_m.param``) gives per-cell sigmoid class
    scores (80) and GFL distance distributions (4 sides x reg_max+1 = 8 bins); a cell whose best
    class scores >= 0.4 becomes a box whose sides are the softmax expectations times the stride.
    Per-class NMS at IoU 0.5, boxes mapped back to the original pixels and clipped.

    Fidelity treats the pristine detections (all above the 0.4 threshold) as ground truth:
    ``map50`` (primary) and ``count_ratio`` = min(n, m) / max(n, m) (1.0 when both are empty).
    """

    family = "detect"
    primary = "map50"
    kinds = frozenset({"photo"})
    summary = "COCO-80 detection mAP@0.5 against the pristine detections (NanoDet-m, ncnn)"
    install_hint = "pip install 'icm[detect]' and put nanodet_m.param/.bin in $ICM_MODELS_DIR/ncnn"
    default_batch = 16

    stem = "nanodet_m"
    target_size = 320
    score_threshold = 0.4
    nms_threshold = 0.5
    heads = ((8, "792", "795"), (16, "814", "817"), (32, "836", "839"))
    mean = (103.53, 116.28, 123.675)
    norm = (0.017429, 0.017507, 0.017125)

    def __init__(self, spec: MachineSpec) -> None:
        super().__init__(spec)
        self._net: Any = None

    @classmethod
    def unavailable_reason(cls, spec: MachineSpec) -> str | None:
        if spec.model not in ("nanodet", "nanodet-m"):
            return f"unknown detector {spec.model!r} (known: nanodet)"
        return ncnn_unavailable_reason(spec.variant, cls.stem)

    @property
    def profile(self) -> InputProfile:
        return InputProfile(
            self.target_size, "letterbox", notes="longer side 320, zero-pad to a multiple of 32"
        )

    @property
    def folder(self) -> Path:
        return require_ncnn_model(self.spec.variant, self.stem)

    def predict(self, images: Sequence[np.ndarray]) -> list[Output]:
        return [{"boxes": self.detect(image)} for image in images]

    def detect(self, rgb: np.ndarray, threshold: float | None = None) -> list[list[float]]:
        """Boxes ``[x0, y0, x1, y1, score, class]`` in ``rgb``'s pixels, best first.

        ``threshold`` (default: the machine's ``score_threshold``) is the lowest class score a
        cell may have to become a box; a lower one only adds boxes (greedy NMS runs in
        descending score order, so it never removes one that scores above the default).
        """
        import ncnn

        if self._net is None:
            self._net = load_ncnn_net(self.folder, self.stem)
        threshold = self.score_threshold if threshold is None else float(threshold)

        height, width = rgb.shape[:2]
        if width > height:
            scale = self.target_size / width
            new_w, new_h = self.target_size, max(1, int(height * scale))
        else:
            scale = self.target_size / height
            new_w, new_h = max(1, int(width * scale)), self.target_size
        mat = ncnn.Mat.from_pixels_resize(
            np.ascontiguousarray(rgb), ncnn.Mat.PixelType.PIXEL_RGB2BGR, width, height, new_w, new_h
        )
        wpad, hpad = (new_w + 31) // 32 * 32 - new_w, (new_h + 31) // 32 * 32 - new_h
        mat = ncnn.copy_make_border(
            mat, hpad // 2, hpad - hpad // 2, wpad // 2, wpad - wpad // 2,
            ncnn.BorderType.BORDER_CONSTANT, 0.0,
        )  # fmt: skip
        mat.substract_mean_normalize(list(self.mean), list(self.norm))
        extractor = self._net.create_extractor()
        extractor.input("input.1", mat)

        proposals = []
        for stride, cls_blob, dis_blob in self.heads:
            _, cls_mat = extractor.extract(cls_blob)
            _, dis_mat = extractor.extract(dis_blob)
            proposals.append(
                self._decode(
                    np.array(cls_mat), np.array(dis_mat), stride, new_w + wpad, threshold
                )
            )
        found = np.concatenate(proposals)
        if len(found) == 0:
            return []
        found = found[np.argsort(-found[:, 4], kind="stable")]
        found = found[nms(found[:, :4], found[:, 5], self.nms_threshold)]
        # back to the original image: remove the padding offset, undo the scale, clip
        found[:, [0, 2]] = (found[:, [0, 2]] - wpad // 2) / scale
        found[:, [1, 3]] = (found[:, [1, 3]] - hpad // 2) / scale
        found[:, [0, 2]] = np.clip(found[:, [0, 2]], 0, width - 1)
        found[:, [1, 3]] = np.clip(found[:, [1, 3]], 0, height - 1)
        return [
            [*(round(float(v), 2) for v in row[:4]), round(float(row[4]), 6), int(row[5])]
            for row in found
        ]

    def _decode(
        self, cls: np.ndarray, dis: np.ndarray, stride: int, padded_w: int, threshold: float
    ) -> np.ndarray:
        """Proposals ``[x0, y0, x1, y1, score, class]`` of one head in padded-input pixels,
        from the cells whose best class scores at least ``threshold``."""
        grid_w = padded_w // stride
        scores = cls.max(axis=1)
        cells = np.nonzero(scores >= threshold)[0]
        if len(cells) == 0:
            return np.zeros((0, 6))
        bins = dis[cells].reshape(len(cells), 4, -1).astype(np.float64)
        bins = np.exp(bins - bins.max(axis=2, keepdims=True))
        bins /= bins.sum(axis=2, keepdims=True)
        ltrb = (bins * np.arange(bins.shape[2])).sum(axis=2) * stride
        cx = (cells % grid_w + 0.5) * stride
        cy = (cells // grid_w + 0.5) * stride
        return np.stack(
            [cx - ltrb[:, 0], cy - ltrb[:, 1], cx + ltrb[:, 2], cy + ltrb[:, 3],
             scores[cells], cls[cells].argmax(axis=1)],
            axis=1,
        )  # fmt: skip

    def fidelity(self, pristine: Output, decoded: Output) -> Scores:
        truth = [box for box in pristine["boxes"] if box[4] >= self.score_threshold]
        found = decoded["boxes"]
        most = max(len(truth), len(found))
        return {
            "map50": map50(found, truth),
            "count_ratio": 1.0 if most == 0 else min(len(truth), len(found)) / most,
        }

    def default_importance(self) -> str:
        """Where this detector itself finds objects (at a lower threshold, with a margin)."""
        return f"detections={self.name}"

    def fingerprint(self) -> str:
        return (
            f"{self.name}|ncnn={ncnn_fingerprint(self.folder, self.stem)}"
            f"|{self.target_size} letterbox/32|thr={self.score_threshold} nms={self.nms_threshold}"
        )

    def versions(self) -> Mapping[str, str]:
        return {"ncnn": package_version("ncnn")}
