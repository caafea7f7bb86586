"""``icm degrade`` and ``icm recognise``: parsing and display only (the work is in
``icm.degrade.files`` and ``icm.degrade.recognise``).

``--seed`` 0 is :class:`~icm.degrade.DegradationRecord`'s own default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from icm.cli.output import MaxPixels, PrintJsonFlag, emit_json, out
from icm.degrade import DegradationRecord, degradation_rows, degrade_file
from icm.degrade.recognise import recognise_file
from icm.errors import IcmError
from icm.limits import DEFAULT_MAX_PIXELS


def degrade_command(
    source: Annotated[Path | None, typer.Argument(help="Clean image file.")] = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Image file to write; the format follows the suffix "
        "(default: IMAGE.TYPE-STRENGTH.png beside the input).")] = None,
    kind: Annotated[str, typer.Option("-t", "--type", help="Degradation (see --list).")
                    ] = "",
    strength: Annotated[float, typer.Option("-s", "--strength", help="0 = clean .. "
                                            "1 = severe.")] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; equal seeds give equal "
                                      "pixels.")] = 0,
    list_all: Annotated[bool, typer.Option("--list", help="List the degradations and how "
                                           "strength maps to their parameters.")] = False,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    as_json: PrintJsonFlag = False,
) -> None:
    """Apply a synthetic camera degradation (noise, blur, haze, rain, low light, JPEG)."""
    if list_all:
        _show_degradations(degradation_rows(), as_json)
        return
    if source is None or not kind:
        raise IcmError("degrade needs an IMAGE and --type (see icm degrade --list)")
    record = DegradationRecord(kind.strip().lower(), strength, seed)
    result = degrade_file(source, output, record, max_pixels)
    if as_json:
        emit_json(result)
        return
    out.print(f"{result['input']} -> {result['output']}  {record} seed {record.seed}  "
              f"{result['width']}x{result['height']}  PSNR {result['psnr_db']:.2f} dB  "
              f"{result['degrade_ms']:.1f} ms", highlight=False, soft_wrap=True)


def _show_degradations(rows: list[dict[str, Any]], as_json: bool) -> None:
    """``icm degrade --list``: the degradations and what a strength maps to."""
    if as_json:
        emit_json(rows)
        return
    table = Table(title="icm degradations (strength s in [0, 1])")
    for column in ("name", "what", "strength s maps to"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["summary"], row["strength"])
    out.print(table)


def recognise_command(
    source: Annotated[Path, typer.Argument(help="Image file.")],
    model: Annotated[Path | None, typer.Option(
        "--model", help="Recogniser model file (.npz from Recogniser.save; default: the "
        "one shipped with icm).")] = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    as_json: PrintJsonFlag = False,
) -> None:
    """Guess which degradation (if any) an image suffered, and how strongly."""
    result = recognise_file(source, model, max_pixels)
    if as_json:
        emit_json(result)
        return
    strength = "" if result["name"] == "clean" else f" at strength ~{result['strength']:.2f}"
    top = ", ".join(f"{row['name']} {row['probability']:.2f}" for row in result["top"])
    out.print(f"{result['input']}: {result['name']}{strength}  (top 3: {top})",
              highlight=False, soft_wrap=True)
