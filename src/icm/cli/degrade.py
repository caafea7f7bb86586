"""``icm degrade`` and ``icm recognise``: parsing and display only (the work is in
``icm.degrade.files`` and ``icm.degrade.recognise``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from icm.errors import IcmError


def register(app: typer.Typer, out: Console, err: Console) -> None:
    """Add the ``degrade`` and ``recognise`` commands to the ``icm`` app."""

    def emit_json(payload: object) -> None:
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")

    @app.command("degrade")
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
        max_pixels: Annotated[int, typer.Option("--max-pixels", help="Refuse images larger "
                                                "than this many pixels.")] = 100_000_000,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Apply a synthetic camera degradation (noise, blur, haze, rain, low light, JPEG)."""
        from icm.degrade import DegradationRecord, degrade_file, list_degradations

        if list_all:
            rows = [{"name": c.name, "summary": c.summary, "strength": c.mapping,
                     "random": c.random} for c in list_degradations()]
            if as_json:
                emit_json(rows)
                return
            table = Table(title="icm degradations (strength s in [0, 1])")
            for column in ("name", "what", "strength s maps to"):
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(row["name"], row["summary"], row["strength"])
            out.print(table)
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

    @app.command("recognise")
    def recognise_command(
        source: Annotated[Path, typer.Argument(help="Image file.")],
        model: Annotated[Path | None, typer.Option(
            "--model", help="Recogniser model file (.npz from Recogniser.save; default: the "
            "one shipped with icm).")] = None,
        max_pixels: Annotated[int, typer.Option("--max-pixels", help="Refuse images larger "
                                                "than this many pixels.")] = 100_000_000,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Guess which degradation (if any) an image suffered, and how strongly."""
        from icm.degrade.recognise import recognise_file

        result = recognise_file(source, model, max_pixels)
        if as_json:
            emit_json(result)
            return
        strength = "" if result["name"] == "clean" else f" at strength ~{result['strength']:.2f}"
        top = ", ".join(f"{row['name']} {row['probability']:.2f}" for row in result["top"])
        out.print(f"{result['input']}: {result['name']}{strength}  (top 3: {top})",
                  highlight=False, soft_wrap=True)
