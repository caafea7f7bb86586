"""The rate-distortion-optimal QP offset of each block, from the machine's weights.

Derivation
----------
Let block ``i`` have ``n_i`` pixels, weight ``w_i`` (the machine's output distortion per unit
of squared pixel error there, :mod:`icm.importance.fisher`) and QP offset ``d_i`` from the
level's QP. In HEVC, VVC and AV1 the quantiser step doubles every 6 QP, so the squared error
doubles every 3 QP: ``MSE_i(d) = MSE_i(0) * 2^(d/3)``. In the same high-rate model every pixel
saves the same number of bits per QP step, ``R_i(d) = R_i(0) - beta * n_i * d``. The machine
distortion of the picture and the encoder's Lagrangian are::

    J(d) = sum_i w_i n_i MSE_i(0) 2^(d_i/3) + lambda * sum_i R_i(d_i)

Setting ``dJ/dd_i = 0`` gives ``w_i MSE_i(0) 2^(d_i/3) ln2 / 3 = lambda beta``: at the optimum
every block has the same weighted error, and (with ``MSE_i(0)`` the same quantiser's error in
every block) ::

    d_i = 3 * log2(W / w_i)

``W`` collects ``lambda``, ``beta`` and the constants; it is the one free choice, and it is set
to the geometric mean of the positive weights, pixel-weighted, so that the mean offset over the
blocks the machine reads is 0: ``qp37`` still means QP 37 where the machine looks. A block whose
weight is 0 (the machine never reads it) has ``d_i = +inf``: it gets the coarsest QP the codec
allows. Offsets are rounded, then clipped to the codec's QP range; the encoder's own limits
(kvazaar's 25-QP spread, HEVC's delta-QP range) are applied by the codec.

``strength`` multiplies the derived offsets; 1 is the derivation itself and the default
(measured in ``benchmarks/machine_aware.py``, on photos other than the benchmark's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from icm.codecs.rate import encode_to_bpp
from icm.errors import RateControlError
from icm.image.datasets import content_hash
from icm.image.resample import resize
from icm.importance.apply import prefilter
from icm.importance.fisher import DEFAULT_PROBES, machine_block_weights
from icm.importance.maps import DEFAULT_BLOCK, ImportanceMap, grid_shape
from icm.importance.registry import get_importance
from icm.machines import get_machine

if TYPE_CHECKING:
    from icm.codecs import Bitstream, Codec

#: QP steps per doubling of the squared error (6 per doubling of the step size)
QP_PER_ERROR_DOUBLING = 3.0
DEFAULT_STRENGTH = 0.5


def rd_offsets(
    weights: np.ndarray,
    *,
    coarsest: int,
    finest: int,
    strength: float = DEFAULT_STRENGTH,
    pixels: np.ndarray | None = None,
) -> np.ndarray:
    """Integer QP offsets (rows x cols) minimising weighted distortion plus rate.

    ``weights`` are per-block and >= 0; ``coarsest`` and ``finest`` bound the offsets (for a
    QP level ``q`` in 0..51: ``51 - q`` and ``-q``); ``pixels`` counts each block's pixels
    (partial edge blocks weigh less in ``W``), all equal when omitted.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if strength < 0:
        raise ValueError(f"allocation strength must be >= 0, got {strength:g}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("allocation weights must be finite and >= 0")
    read = weights > 0
    offsets = np.full(weights.shape, coarsest, dtype=np.int64)
    if not read.any():
        return offsets
    counts = np.ones_like(weights) if pixels is None else np.asarray(pixels, dtype=np.float64)
    logs = np.log2(weights[read])
    mean_log = float(np.average(logs, weights=counts[read]))
    derived = strength * QP_PER_ERROR_DOUBLING * (mean_log - logs)
    offsets[read] = np.clip(np.rint(derived), finest, coarsest).astype(np.int64)
    return offsets


# -- the for=MACHINE recipe ------------------------------------------------------------------
#: a block a map-based machine's map calls unimportant still counts this much of the most
#: important one: maps miss things, and an offset of 3 * log2(1 / 0.05) = +13 QP is coarse enough
MAP_FLOOR = 0.05
#: blur sigmas (px) of the prefilter route, for unread blocks and for coarsened ones
UNREAD_BLUR, COARSE_BLUR = 6.0, 2.0
#: offsets never go below 0 (finer than the level): measured on CBSD68, the bare two-sided
#: rule spends more on the blocks it refines than it saves (``benchmarks/for_tuning.py``)
ONE_SIDED = True
#: machine families for which ``for`` measured better with other than the default strength
#: (``benchmarks/machine_aware.py``): on the rendered documents, RapidOCR's text-map offsets
#: cost 0.3-7% more bits than the fit alone at equal text agreement (a page is mostly text, and
#: faint strokes the map misses lose more than the paper saves), so ``for=ocr`` is the fit
MEASURED_STRENGTH = {"ocr": 0.0}
#: the coded sizes ``for`` weighs against each other, as fractions of the machine's input size
SCALES = (1.0, 0.75, 0.6, 0.5)
#: real encodes the rate match of a smaller candidate may spend, and how far from the level it
#: looks: 8 QP finer (a 0.75x picture needs about 3-5 QP finer for the same bits), or up to
#: twice the quality on quality knobs
MATCH_ENCODES, MATCH_QP_SPAN = 3, 8
ALLOCATION_VERSION = "rd5"


@dataclass
class Allocation:
    """What the ``for`` tool decided for one image at one level of one codec."""

    weights: np.ndarray  # per block, >= 0 (0 = never read)
    offsets: np.ndarray  # per block, QP units
    route: str  # "delta-qp" (the codec takes the offsets) or "prefilter"
    image: np.ndarray  # the pixels to code (prefiltered on that route)
    record: dict[str, Any] = field(default_factory=dict)
    bitstream: Bitstream | None = None  # the chosen encode, when choosing needed one

    def coding_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The encoder options this plan codes with: ``options`` plus its offsets where the
        codec takes them (the prefilter route has already put them in the pixels)."""
        return {**options, "delta_qp": self.offsets} if self.route == "delta-qp" else options

    def importance(self, block: int, provider: str) -> ImportanceMap:
        """The weights as a map in [0, 1] (ratios kept, 1 = the heaviest block), for records."""
        height, width = self.image.shape[:2]
        peak = float(self.weights.max()) or 1.0
        return ImportanceMap(self.weights / peak, block, width, height, provider)


class MachineAllocator:
    """``for=MACHINE``: fit, the machine's weights, the RD rule, and the coded size.

    Weights (the Fisher diagonal, or a map) are kept per pixel content, so every level of a
    point computes them once per image and scale.
    """

    def __init__(self, machine: str, strength: float | None = None,
                 block: int = DEFAULT_BLOCK, probes: int = DEFAULT_PROBES) -> None:
        self.machine = get_machine(machine)
        default = MEASURED_STRENGTH.get(self.machine.family, DEFAULT_STRENGTH)
        self.strength = default if strength is None else strength
        self.block = block
        self.probes = probes
        self._weights: dict[str, np.ndarray] = {}
        self._pristine: tuple[str, Any] | None = None
        self._ceilings: dict[str, float] = {}

    @property
    def differentiable(self) -> bool:
        return self.machine.torch_parts() is not None

    @property
    def scales(self) -> tuple[float, ...]:
        """Coded sizes to weigh: below the input size only for machines with a fixed one (a
        classifier's 224 px); OCR reads text at its native size and gets the fit alone."""
        return SCALES if self.machine.profile.size is not None else SCALES[:1]

    def source(self) -> str:
        """Where the weights come from: ``fisher8`` or ``map:<provider>+<floor>``."""
        if self.differentiable:
            return f"fisher{self.probes}"
        return f"map:{self.machine.default_importance()}+{MAP_FLOOR:g}"

    def fingerprint(self) -> str:
        scales = ",".join(f"{scale:g}" for scale in self.scales)
        return (f"for={self.machine.fingerprint()}|{self.source()}|{ALLOCATION_VERSION}"
                f"|s{self.strength:g}|b{self.block}|scales{scales}")

    def allocate(self, original: np.ndarray, codec: Codec, level: str | None,
                 options: dict[str, Any]) -> Allocation:
        """The plan for ``original`` at ``level``: at the machine's input size, or smaller
        where that reads better at the same bits (see :meth:`_choose_scale`)."""
        width, height = self.machine.fit_size(original)
        fitted = original if (height, width) == original.shape[:2] else \
            resize(original, width, height)
        first = self.plan(fitted, codec, level, options)
        if level is None or len(self.scales) == 1:
            return first
        return self._choose_scale(original, first, codec, level, options)

    def plan(self, image: np.ndarray, codec: Codec, level: str | None,
             options: dict[str, Any], weights: np.ndarray | None = None) -> Allocation:
        """Offsets for ``image`` (already resampled) coded by ``codec`` at ``level``, from
        the machine's weights for it (computed unless given)."""
        level = level or codec.ladder[len(codec.ladder) // 2]
        if weights is None and self.strength == 0 and not self.differentiable:
            weights = np.ones(grid_shape(*image.shape[:2], self.block))  # nothing to weigh
        elif weights is None:
            weights = self._block_weights(image)
        finest, coarsest = codec.delta_qp_bounds(codec.knob.parse(level, codec.name))
        offsets = rd_offsets(weights, coarsest=coarsest, finest=0 if ONE_SIDED else finest,
                             strength=self.strength,
                             pixels=_block_pixels(image.shape[:2], self.block))
        takes = codec.takes_delta_qp(codec.resolve_options(options))
        read = weights > 0
        coded = blur_unread(image, ~read, self.block)
        if not takes:
            coded = allocation_prefilter(coded, np.where(read, offsets, 0), self.block)
        record = {
            "machine": self.machine.name, "weights": self.source(),
            "strength": self.strength, "route": "delta-qp" if takes else "prefilter",
            "unread_blocks": round(float(1 - read.mean()), 4),
            "offsets": {"min": int(offsets.min()), "max": int(offsets.max()),
                        "mean_read": round(float(offsets[read].mean()), 2) if read.any() else None},
        }
        return Allocation(weights, offsets, record["route"], coded, record)

    def _choose_scale(self, original: np.ndarray, first: Allocation, codec: Codec, level: str,
                      options: dict[str, Any]) -> Allocation:
        """Code a smaller picture when, at the same bits, the machine reads it better.

        At coarse levels a picture below the machine's input size, upsampled by the machine,
        loses less to blur than the full-size picture loses to the coarser quantiser it needs
        at those bits; at fine levels the opposite. Which holds is decided for each image and
        level by the machine itself: the first plan is encoded at the level, each smaller
        candidate is rate-matched to it (the largest file not above its bits, by rate
        control), both are decoded and read by the machine at the original size, and the one
        whose output is closer to the pristine output is kept; ties keep the full size.
        A smaller size whose uncoded picture already reads worse than the first encode (its
        ceiling, one machine pass per photo and size) cannot win and is not tried: at fine
        levels that skips the search.
        """
        key = content_hash(original)
        pristine = self._pristine_output(original, key)
        bitstream = codec.encode(first.image, level, **first.coding_options(options))
        first.bitstream = bitstream
        best, best_fidelity = first, self._fidelity(codec, bitstream, original, pristine)
        tried = [{"scale": 1.0, "level": level, "bytes": len(bitstream.data),
                  "fidelity": round(best_fidelity, 4)}]
        height, width = first.image.shape[:2]
        for scale in self.scales[1:]:
            small = resize(original, max(1, round(width * scale)), max(1, round(height * scale)))
            ceiling = self._ceiling(small, key, pristine)
            if ceiling <= best_fidelity:
                tried.append({"scale": scale, "ceiling": round(ceiling, 4), "skipped": True})
                continue
            candidate = self.plan(small, codec, level, options, weights=_resampled(
                first.weights, grid_shape(*small.shape[:2], self.block)))
            matched = self._rate_matched(codec, candidate, level, len(bitstream.data), options)
            if matched is None:
                continue
            fidelity = self._fidelity(codec, matched, original, pristine)
            tried.append({"scale": scale, "level": matched.level, "bytes": len(matched.data),
                          "fidelity": round(fidelity, 4)})
            if fidelity > best_fidelity:
                candidate.bitstream = matched
                best, best_fidelity = candidate, fidelity
        best.record["scale_choice"] = tried
        return best

    def _rate_matched(self, codec: Codec, plan: Allocation, level: str, size: int,
                      options: dict[str, Any]) -> Bitstream | None:
        """The smaller picture's largest file not above ``size`` bytes, searched from the
        level towards finer ones (a smaller picture at the same level has fewer bits)."""
        height, width = plan.image.shape[:2]
        value = codec.knob.parse(level, codec.name)
        finer = 2 * value + 10 if codec.knob.rate_rises else value - MATCH_QP_SPAN
        window = (value, finer) if codec.knob.integer else None
        try:
            return encode_to_bpp(codec, plan.image, 8 * size / (width * height), window=window,
                                 max_encodes=MATCH_ENCODES,
                                 **plan.coding_options(options)).bitstream
        except RateControlError:  # even its coarsest level is bigger: no candidate
            return None

    def _fidelity(self, codec: Codec, bitstream: Bitstream, original: np.ndarray,
                  pristine: Any) -> float:
        """The machine's primary fidelity on the decoded picture, read at its coded size: the
        machine resamples it to its input itself, and the original-size picture a decoder
        restores differs from that only by the resampling filters; skipping the round trip
        through the original size halves the cost."""
        decoded = codec.decode(bitstream)
        scores = self.machine.fidelity(pristine, self.machine.predict([decoded])[0])
        return float(scores[self.machine.primary])

    def _ceiling(self, small: np.ndarray, original_key: str, pristine: Any) -> float:
        """The machine's fidelity on the uncoded smaller picture, kept per photo and size."""
        key = original_key + str(small.shape)
        if key not in self._ceilings:
            if len(self._ceilings) >= 8:
                self._ceilings.clear()
            scores = self.machine.fidelity(pristine, self.machine.predict([small])[0])
            self._ceilings[key] = float(scores[self.machine.primary])
        return self._ceilings[key]

    def _pristine_output(self, original: np.ndarray, key: str) -> Any:
        if self._pristine is None or self._pristine[0] != key:
            self._pristine = (key, self.machine.predict([original])[0])
        return self._pristine[1]

    def _block_weights(self, image: np.ndarray) -> np.ndarray:
        """Per-block weights: the Fisher diagonal's block means for a differentiable machine,
        the machine's own map (floored) for the others. Kept per pixel content."""
        key = content_hash(image)
        if key not in self._weights:
            if len(self._weights) >= 4:  # one image's scales at a time
                self._weights.clear()
            parts = self.machine.torch_parts()
            if parts is not None:
                self._weights[key] = machine_block_weights(parts, image, self.block,
                                                           self.probes)
            else:
                self._weights[key] = self._map_weights(image)
        return self._weights[key]

    def _map_weights(self, image: np.ndarray) -> np.ndarray:
        provider = get_importance(self.machine.default_importance())
        return MAP_FLOOR + (1 - MAP_FLOOR) * provider.compute(image, self.block).values


def _resampled(weights: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Block weights carried to a smaller picture's grid (area-weighted), unread stays 0:
    the machine reads the same content there, so its Fisher map need not be recomputed."""
    from PIL import Image

    rows, cols = grid
    picture = Image.fromarray(weights.astype(np.float32), mode="F")
    carried = np.asarray(picture.resize((cols, rows), Image.Resampling.BOX), dtype=np.float64)
    unread = np.asarray(Image.fromarray((weights == 0).astype(np.float32), mode="F")
                        .resize((cols, rows), Image.Resampling.BOX)) > 0.5
    return np.where(unread, 0.0, np.maximum(carried, 0.0))


def blur_unread(image: np.ndarray, unread: np.ndarray, block: int) -> np.ndarray:
    """``image`` with the blocks the machine never reads replaced by a 6-px blur, block-exact.

    The coarsest QP alone still codes their texture (at QP 51 a textured strip keeps about a
    fifth of its bits); blurred, it leaves the codec almost nothing there, and the read blocks
    beside it keep every pixel. A viewer still sees a blurred picture there, not a hole.
    """
    from scipy import ndimage

    height, width = image.shape[:2]
    pixels = np.kron(unread, np.ones((block, block), bool))[:height, :width]
    if not pixels.any():
        return image
    blurred = ndimage.gaussian_filter(image.astype(np.float32),
                                      sigma=(UNREAD_BLUR, UNREAD_BLUR, 0), mode="nearest")
    return np.where(pixels[..., None], np.rint(blurred), image).astype(np.uint8)


def allocation_prefilter(image: np.ndarray, offsets: np.ndarray, block: int) -> np.ndarray:
    """The offsets as blur, for codecs without per-block control (VVC through vvenc, WebP...):
    a block asked to quantise ``2^(d/6)`` times coarser keeps ``2^(-d/6)`` of its detail,
    blended towards a 2-px blur (:func:`~icm.importance.apply.prefilter`)."""
    from dataclasses import replace as with_values

    height, width = image.shape[:2]
    keep = np.clip(2.0 ** (-np.maximum(offsets, 0) / 6.0), 0, 1).astype(np.float32)
    base = ImportanceMap(np.ones(offsets.shape, np.float32), block, width, height, "for")
    return prefilter(image, with_values(base, values=keep), COARSE_BLUR)


def _block_pixels(shape: tuple[int, int], block: int) -> np.ndarray:
    """Pixels in each block; partial edge blocks count only their own."""
    height, width = shape
    rows, cols = grid_shape(height, width, block)
    heights = np.minimum(block, height - block * np.arange(rows))
    widths = np.minimum(block, width - block * np.arange(cols))
    return np.outer(heights, widths).astype(np.float64)
