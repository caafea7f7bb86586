"""The icm part of an lmms-eval ``--model_args`` string, parsed once.

``--model icm --model_args inner=llava_hf,pretrained=...,point=hevc@qp37`` names an inner
lmms-eval model, its own arguments (every key icm does not claim), and the icm operating
point(s). lmms-eval splits the string on commas, so a list of points is written with ``;``
(``points=jpeg@q30;hevc@qp37``). Nothing here imports lmms-eval: ``icm lmms`` checks its
arguments before loading any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icm.errors import IcmError
from icm.pipeline.point import CodecPoint
from icm.pipeline.recipe import parse_points

#: the keys the wrapper keeps; every other key goes to the inner model
ICM_KEYS = ("inner", "point", "points", "icm_cache", "icm_record")
#: a point list separator lmms-eval's comma split leaves alone
POINT_SEPARATOR = ";"


class LmmsArgsError(IcmError):
    """The wrapper's model_args do not name an inner model or a usable point."""


@dataclass(frozen=True)
class WrapperArgs:
    """What the ``icm`` lmms-eval model was asked for."""

    inner: str
    points: tuple[CodecPoint, ...]
    inner_args: dict[str, Any] = field(default_factory=dict)
    cache_dir: Path | None = None  # the bench's content-addressed bitstream cache
    record: Path | None = None  # a JSON file of the bits of every image of every document


def points_of(text: str) -> tuple[CodecPoint, ...]:
    """``'jpeg@q30;hevc@0.1bpp'`` -> points, in order, as ``icm bench --codecs`` takes them
    (:func:`icm.pipeline.recipe.parse_points`: a bare codec runs its ladder; an unknown codec,
    level or tool fails here, naming itself, before any model loads)."""
    items = [item.strip() for item in str(text).split(POINT_SEPARATOR) if item.strip()]
    return tuple(parse_points(items))


def parse_wrapper_args(args: dict[str, Any]) -> WrapperArgs:
    """Split parsed model_args into icm's keys and the inner model's."""
    inner = str(args.get("inner") or "").strip()
    if not inner:
        raise LmmsArgsError("model_args need inner=<an lmms-eval model>, e.g. "
                            "inner=qwen2_5_vl,pretrained=Qwen/Qwen2.5-VL-3B-Instruct")
    if inner == "icm":
        raise LmmsArgsError("inner=icm would wrap the wrapper: name the model that reads")
    if args.get("point") and args.get("points"):
        raise LmmsArgsError("give point= or points=, not both")
    text = args.get("point") or args.get("points") or ""
    if not str(text).strip():
        raise LmmsArgsError("model_args need point=<codec@level> (e.g. point=hevc@qp37) or "
                            "points=<p1>;<p2>")
    return WrapperArgs(
        inner=inner,
        points=points_of(str(text)),
        inner_args={k: v for k, v in args.items() if k not in ICM_KEYS},
        cache_dir=Path(args["icm_cache"]) if args.get("icm_cache") else None,
        record=Path(args["icm_record"]) if args.get("icm_record") else None,
    )
