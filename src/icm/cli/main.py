"""``icm``: codecs, encode, importance, decode, info, demo; bench, report, machines (in
``cli.bench``); adapt train/info (in ``cli.adapt``); degrade, recognise (in ``cli.degrade``).

Each command parses, calls ``icm.pipeline`` (or the registry), and prints a rich table or, with
``--json``, one JSON document on stdout. Problems with the user's input are ``IcmError``s: the
entry point prints them as one line and exits 2, never with a traceback.
"""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from icm import __version__
from icm.errors import IcmError
from icm.limits import DEFAULT_MAX_PIXELS, DecodeSide

app = typer.Typer(
    help="icm: image coding for machines. Real bitstreams, exact bits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup on the shared consoles: messages, paths and install hints hold square brackets
# (pip install 'icm[jpegli]') that rich markup would swallow. Style goes in Text objects.
out = Console(markup=False)
err = Console(stderr=True, markup=False)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
MaxPixels = Annotated[
    int, typer.Option("--max-pixels", help="Refuse images larger than this many pixels.")
]
Weights = Annotated[
    list[Path] | None,
    typer.Option("--weights", help="A learned codec's model file to decode with (repeatable); "
                 "a file never names one: each stream is matched to a model by digest."),
]


def decode_side(max_pixels: int, weights: list[Path] | None) -> DecodeSide:
    """The decoding machine's own settings, from its command line (never from the file)."""
    return DecodeSide(max_pixels, tuple(weights or ()))


def run() -> None:
    """Console-script entry point: one-line errors, exit code 2, no traceback."""
    try:
        app()
    except IcmError as exc:
        _fail(str(exc))
    except MemoryError:
        _fail("out of memory (lower --max-pixels, or free memory and run again)")
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise  # anything else is a bug and keeps its traceback
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or errno.errorcode.get(exc.errno, exc)}")
    except KeyboardInterrupt:
        err.print("icm: interrupted")
        sys.exit(130)


#: what a full, read-only or forbidden disk raises from any library: the user's to fix
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
                          errno.EROFS})


def _fail(message: str) -> NoReturn:
    err.print(Text.assemble(("icm: error:", "bold red"), f" {message}"), soft_wrap=True)
    sys.exit(2)


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Show the version.")] = False,
) -> None:
    if version:
        out.print(f"icm {__version__}")
        raise typer.Exit()


@app.command("codecs")
def codecs_command(as_json: JsonFlag = False) -> None:
    """List codec families, their level knob, library versions and availability."""
    from icm.cli.views import codec_rows, status_cell

    rows = codec_rows()
    if as_json:
        emit_json(rows)
        return
    table = Table(title="icm codecs", show_lines=False)
    for column in ("codec", "levels", "file", "library", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        library = row["library_version"] or row["library"]
        table.add_row(row["codec"], row["levels"], row["raw_suffix"], library, status_cell(row))
    out.print(table)


@app.command("encode")
def encode_command(
    source: Annotated[Path, typer.Argument(help="Image file, or a folder for a batch.")],
    codec: Annotated[str, typer.Option("-c", "--codec", help="CODEC@LEVEL, or CODEC with --bpp.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Output .icm (or the codec's standard suffix); "
                     "a folder for a batch. Default: beside the input, as .icm."),
    ] = None,
    bpp: Annotated[
        float | None, typer.Option("--bpp", help="Rate control: largest file <= this bpp.")
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Also write the plain standard file (.jpg, .265...).")
    ] = False,
    option: Annotated[
        list[str] | None, typer.Option("-O", "--option", help="Encoder option KEY=VALUE.")
    ] = None,
    for_machine: Annotated[
        str | None,
        typer.Option("--for", help="Code for this machine (e.g. classify, ocr:rapidocr): "
                     "resample to what it reads and spend bits where it looks."),
    ] = None,
    importance: Annotated[
        str | None,
        typer.Option("--importance", help="Importance map: saliency, sensitivity[=MACHINE], "
                     "text, clip-attention[=MODEL], prompt=TEXT, or none. Default with --for: "
                     "the machine's own; without: none."),
    ] = None,
    strength: Annotated[
        float | None,
        typer.Option("--strength", help="Applier strength: max QP offset (delta-QP codecs) "
                     "or blur sigma in px (prefilter).", min=0),
    ] = None,
    no_fit: Annotated[
        bool, typer.Option("--no-fit", help="With --for: keep the full resolution.")
    ] = False,
    tags: Annotated[
        int, typer.Option("--tags", help="Store this many semantic tags (label ids) from the "
                          "machine (or the classifier) in the .icm header.", min=0)
    ] = 0,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    as_json: JsonFlag = False,
) -> None:
    """Encode an image (or every image in a folder) with a codec, optionally for a machine."""
    from dataclasses import replace

    from icm.cli.views import encode_many, encode_one, parse_options
    from icm.pipeline import machine_tools, parse_point

    point = parse_point(codec, bpp)
    extra = machine_tools(for_machine, importance, strength, fit=not no_fit, tags=tags)
    point = replace(point, tools=point.tools + extra)
    options = parse_options(option or [])
    if source.is_dir():
        code = encode_many(source, output, point, raw, max_pixels, options, as_json, out, err)
        raise typer.Exit(code)
    encode_one(source, output, point, raw, max_pixels, options, as_json, out)


@app.command("importance")
def importance_command(
    source: Annotated[Path, typer.Argument(help="Image file.")],
    provider: Annotated[
        str | None,
        typer.Option("-p", "--importance", help="Provider: saliency (default), "
                     "sensitivity[=MACHINE], text, clip-attention[=MODEL], prompt=TEXT."),
    ] = None,
    for_machine: Annotated[
        str | None, typer.Option("--for", help="Use this machine's own provider.")
    ] = None,
    block: Annotated[int, typer.Option("--block", help="Block side in pixels.", min=1)] = 16,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Overlay PNG to write (default: IMAGE.map.png)."),
    ] = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    as_json: JsonFlag = False,
) -> None:
    """Show where a machine looks: an importance map, as an overlay image and numbers."""
    from icm.cli.views import importance_map

    record = importance_map(source, provider, for_machine, block, output, max_pixels)
    if as_json:
        emit_json(record)
        return
    out.print(f"{record['input']} -> {record['output']}  {record['provider']}  "
              f"{record['grid']} blocks of {record['block']} px  mean {record['mean']:.3f}  "
              f"{record['compute_ms']:.0f} ms")


@app.command("decode")
def decode_command(
    source: Annotated[Path, typer.Argument(help=".icm file or standard bitstream (.265...).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Image file to write (default .png).")
    ] = None,
    weights: Weights = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    as_json: JsonFlag = False,
) -> None:
    """Decode an .icm or standard bitstream file to an image file."""
    from icm.pipeline import decode_file

    result = decode_file(source, output or source.with_suffix(".png"),
                         decode_side(max_pixels, weights))
    if as_json:
        emit_json(result.to_json())
        return
    out.print(
        f"{result.source} -> {result.output}  {result.point}  {result.width}x{result.height}"
        f"  {result.decode_ms:.1f} ms"
    )


@app.command("info")
def info_command(
    source: Annotated[Path, typer.Argument(help=".icm file or standard bitstream.")],
    weights: Weights = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    as_json: JsonFlag = False,
) -> None:
    """Show what a coded file holds: codec point, size, bytes, bpp, side information."""
    from icm.pipeline import describe_file

    info = describe_file(source, decode_side(max_pixels, weights))
    if as_json:
        emit_json(info)
        return
    table = Table(show_header=False, title=str(source))
    for key, value in info.items():
        if key != "file":
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)


@app.command("demo")
def demo_command(
    codecs: Annotated[
        str, typer.Option("--codecs", help="Comma-separated codecs (default: a spread).")
    ] = "",
    bpp: Annotated[float, typer.Option("--bpp", help="Rate-control target per image.")] = 0.4,
    as_json: JsonFlag = False,
) -> None:
    """Encode the bundled sample photos with several codecs at one bpp; print a table."""
    from icm.cli.views import demo_table, run_demo

    chosen = [name.strip() for name in codecs.split(",") if name.strip()] or None
    rows = run_demo(chosen, bpp, quiet=as_json, console=err)
    if as_json:
        emit_json(rows)
        return
    out.print(demo_table(rows, bpp))


def _register_groups() -> None:
    from icm.cli import adapt, bench, degrade, learned, restore

    bench.register(app, out, err)
    adapt.register(app, out, err)
    degrade.register(app, out, err)
    restore.register(app, out, err)
    learned.register(app, out, err)


_register_groups()


if __name__ == "__main__":  # pragma: no cover
    run()
