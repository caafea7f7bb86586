"""What the commands show: tables, result lines and option parsing shared by several commands.
No coding logic: the work is in the library (``icm.pipeline``, ``icm.bench.demo``...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.progress import Progress
from rich.table import Table
from rich.text import Text

# Re-exported (see __all__): tests import codec_rows from here, and cli.adapt imports
# progress_bar and stage_reporter from here until it moves to cli.output like the others.
from icm.cli.output import progress_bar, stage_reporter
from icm.codecs import codec_rows
from icm.errors import IcmError
from icm.pipeline import EncodeResult


def status_cell(row: dict[str, Any]) -> Text:
    """A codec or machine row's status: ok, or the reason and install hint, verbatim (a Text,
    so brackets as in pip install 'icm[jpegli]' are never read as markup)."""
    if row["available"]:
        return Text("ok", style="green")
    return Text.assemble(("unavailable:", "red"), f" {row['reason']}")


def skipped_line(problem: object) -> Text:
    """``icm: skipped: <problem>``, the problem verbatim."""
    return Text.assemble(("icm: skipped:", "yellow"), f" {problem}")


def skip_printer(progress: Progress) -> Callable[[str], None]:
    """A callback that prints each skipped file's problem above the progress bar, as the batch
    meets it, rather than all of them at the end."""
    return lambda problem: progress.console.print(skipped_line(problem))


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``-O KEY=VALUE`` options as a dict; anything else is a one-line error."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise IcmError(f"option {pair!r} is not KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def codec_table(rows: list[dict[str, Any]]) -> Table:
    """``icm codecs``: one row per family, its library version where it runs."""
    table = Table(title="icm codecs", show_lines=False)
    for column in ("codec", "levels", "file", "library", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        library = row["library_version"] or row["library"]
        table.add_row(row["codec"], row["levels"], row["raw_suffix"], library, status_cell(row))
    return table


def encode_line(result: EncodeResult) -> str:
    """One encode as one line: files, point, bytes, bpp, PSNR, time (and rate control)."""
    line = (
        f"{result.source} -> {result.output}  {result.bitstream.point}  "
        f"{result.written_bytes} B  {result.bpp:.4f} bpp  {result.psnr_db:.2f} dB  "
        f"{result.encode_ms:.0f} ms"
    )
    if result.rate is not None:
        line += f"  ({result.rate.encodes} encodes for {result.rate.target_bpp:g} bpp)"
    return line


def info_table(title: str, info: dict[str, Any]) -> Table:
    """``icm info``: key and value per line, floats to 4 places, the file name as the title."""
    table = Table(show_header=False, title=title)
    for key, value in info.items():
        if key != "file":
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


def demo_table(rows: list[dict[str, Any]], bpp: float) -> Table:
    """``icm demo``: a row per codec and photo; a codec that failed shows its error."""
    table = Table(title=f"bundled photos at <= {bpp:g} bpp (.icm files, every byte counted)")
    for column in ("codec", "image", "level", "bpp", "PSNR dB", "MS-SSIM", "decode ms"):
        table.add_column(column, justify="left" if column in ("codec", "image", "level")
                         else "right")
    for row in rows:
        if "error" in row:
            table.add_row(row["codec"], row["image"], "-", "-", "-", "-", Text(row["error"]))
            continue
        table.add_row(
            row["codec"], row["image"], row["point"].split("@")[1], f"{row['bpp']:.3f}",
            f"{row['psnr_db']:.2f}", f"{row['ms_ssim']:.4f}", f"{row['decode_ms']:.1f}",
        )
    return table


__all__ = ["codec_rows", "codec_table", "demo_table", "encode_line", "info_table",
           "parse_options", "progress_bar", "skip_printer", "skipped_line", "stage_reporter",
           "status_cell"]
