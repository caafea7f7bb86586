"""``icm``: the root app, its entry point, and the coding commands (codecs, encode, importance,
decode, info, demo). The other commands live in one module per group and are added at the end:
bench, report, machines (``cli.bench``); degrade, recognise (``cli.degrade``); the ``adapt``,
``restore`` and ``learned`` groups (``cli.adapt``, ``cli.restore``, ``cli.learned``).

Each command parses, calls one library function, and prints a rich table or, with ``--json``,
one JSON document on stdout (``cli.output``). Problems with the user's input are
``IcmError``s: the entry point prints them as one line and exits 2, never with a traceback.
"""

from __future__ import annotations

import errno
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.text import Text

from icm import __version__
from icm.bench.demo import run_demo
from icm.cli import adapt, bench, degrade, learned, lmms, preedit, restore
from icm.cli.output import (
    JsonFlag,
    MaxPixels,
    emit_json,
    err,
    out,
    progress_bar,
    stage_reporter,
    titled_reporter,
)
from icm.cli.views import (
    codec_rows,
    codec_table,
    demo_table,
    encode_line,
    info_table,
    parse_options,
    skip_printer,
)
from icm.errors import IcmError
from icm.importance.maps import DEFAULT_BLOCK
from icm.importance.overlay import importance_file
from icm.limits import DEFAULT_MAX_PIXELS, DecodeSide
from icm.pipeline import (
    CodecPoint,
    decode_file,
    describe_file,
    encode_file,
    machine_tools,
    parse_point,
)
from icm.pipeline.batch import encode_folder, plan_folder, single_output

app = typer.Typer(
    help="icm: image coding for machines. Real bitstreams, exact bits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

Weights = Annotated[
    list[Path] | None,
    typer.Option("--weights", help="A learned codec's model file to decode with (repeatable); "
                 "a file never names one: each stream is matched to a model by digest."),
]

#: what a full, read-only or forbidden disk raises from any library: the user's to fix
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
                          errno.EROFS})


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


def _fail(message: str) -> NoReturn:
    err.print(Text.assemble(("icm: error:", "bold red"), f" {message}"), soft_wrap=True)
    sys.exit(2)


def decode_side(max_pixels: int, weights: list[Path] | None) -> DecodeSide:
    """The decoding machine's own settings, from its command line (never from the file)."""
    return DecodeSide(max_pixels, tuple(weights or ()))


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
    rows = codec_rows()
    if as_json:
        emit_json(rows)
        return
    out.print(codec_table(rows))


Source = Annotated[Path, typer.Argument(help="Image file, or a folder for a batch.")]
CodecOption = Annotated[str, typer.Option("-c", "--codec", help="CODEC@LEVEL, or CODEC with "
                                          "--bpp.")]
EncodeOutput = Annotated[Path | None, typer.Option(
    "-o", "--output", help="Output .icm (or the codec's standard suffix); a folder for a batch. "
    "Default: beside the input, as .icm.")]
Bpp = Annotated[float | None, typer.Option("--bpp", help="Rate control: largest file <= this "
                                           "bpp.")]
Raw = Annotated[bool, typer.Option("--raw", help="Also write the plain standard file (.jpg, "
                                   ".265...).")]
EncoderOptions = Annotated[list[str] | None, typer.Option("-O", "--option", help="Encoder "
                                                          "option KEY=VALUE.")]
ForMachine = Annotated[str | None, typer.Option(
    "--for", help="Code for this machine (e.g. classify, ocr:rapidocr): resample to what it "
    "reads and spend bits where it looks.")]
ImportanceOption = Annotated[str | None, typer.Option(
    "--importance", help="Importance map: saliency, sensitivity[=MACHINE], text, "
    "clip-attention[=MODEL], prompt=TEXT, or none. Default with --for: the machine's own; "
    "without: none.")]
Strength = Annotated[float | None, typer.Option(
    "--strength", help="Applier strength: max QP offset (delta-QP codecs) or blur sigma in px "
    "(prefilter).", min=0)]
NoFit = Annotated[bool, typer.Option("--no-fit", help="With --for: keep the full resolution.")]
Tags = Annotated[int, typer.Option("--tags", help="Store this many semantic tags (label ids) "
                                   "from the machine (or the classifier) in the .icm header.",
                                   min=0)]


@app.command("encode")
def encode_command(
    source: Source,
    codec: CodecOption,
    output: EncodeOutput = None,
    bpp: Bpp = None,
    raw: Raw = False,
    option: EncoderOptions = None,
    for_machine: ForMachine = None,
    importance: ImportanceOption = None,
    strength: Strength = None,
    no_fit: NoFit = False,
    tags: Tags = 0,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    as_json: JsonFlag = False,
) -> None:
    """Encode an image (or every image in a folder) with a codec, optionally for a machine."""
    point = parse_point(codec, bpp)
    extra = machine_tools(for_machine, importance, strength, fit=not no_fit, tags=tags)
    point = replace(point, tools=point.tools + extra)
    options = parse_options(option or [])
    if source.is_dir():
        raise typer.Exit(_encode_folder(source, output, point, raw, max_pixels, options,
                                        as_json))
    result = encode_file(source, single_output(source, output), point, raw=raw,
                         max_pixels=max_pixels, **options)
    if as_json:
        emit_json(result.to_json())
        return
    out.print(encode_line(result), highlight=False, markup=False)


def _encode_folder(source: Path, output: Path | None, point: CodecPoint, raw: bool,
                   max_pixels: int, options: dict[str, str], as_json: bool) -> int:
    """Encode a folder under a progress bar, noting skipped files as they happen; return the
    exit code, 2 when anything was skipped (scripts must notice)."""
    job = plan_folder(source, output, point, options)  # a batch that cannot start: no bar
    with progress_bar(err) as progress:
        batch = encode_folder(job, raw=raw, max_pixels=max_pixels,
                              progress=stage_reporter(progress), on_skip=skip_printer(progress))
    if as_json:
        emit_json(batch.to_json())
    else:
        for result in batch.results:
            out.print(encode_line(result), highlight=False, markup=False)
        out.print(f"{len(batch.results)} encoded, {len(batch.skipped)} skipped, "
                  f"{batch.written_bytes} bytes in all")
    return 2 if batch.skipped else 0


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
    block: Annotated[
        int, typer.Option("--block", help="Block side in pixels.", min=1)
    ] = DEFAULT_BLOCK,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Overlay PNG to write (default: IMAGE.map.png)."),
    ] = None,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
    as_json: JsonFlag = False,
) -> None:
    """Show where a machine looks: an importance map, as an overlay image and numbers."""
    record = importance_file(source, provider, for_machine, block, output, max_pixels)
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
    info = describe_file(source, decode_side(max_pixels, weights))
    if as_json:
        emit_json(info)
        return
    out.print(info_table(str(source), info))


@app.command("demo")
def demo_command(
    codecs: Annotated[
        str, typer.Option("--codecs", help="Comma-separated codecs (default: a spread).")
    ] = "",
    bpp: Annotated[float, typer.Option("--bpp", help="Rate-control target per image.")] = 0.4,
    as_json: JsonFlag = False,
) -> None:
    """Encode the bundled sample photos with several codecs at one bpp; print a table."""
    chosen = [name.strip() for name in codecs.split(",") if name.strip()] or None
    with progress_bar(err, disable=as_json) as progress:
        rows = run_demo(chosen, bpp, titled_reporter(progress, "demo"))
    if as_json:
        emit_json(rows)
        return
    out.print(demo_table(rows, bpp))


# The commands of the other modules, in the order ``icm --help`` lists them.
app.command("bench")(bench.bench_command)
app.command("report")(bench.report_command)
app.command("machines")(bench.machines_command)
app.command("lmms")(lmms.lmms_command)
app.command("degrade")(degrade.degrade_command)
app.command("recognise")(degrade.recognise_command)
app.add_typer(adapt.app, name="adapt")
app.add_typer(restore.app, name="restore")
app.add_typer(preedit.app, name="preedit")
app.add_typer(learned.app, name="learned")


if __name__ == "__main__":  # pragma: no cover
    run()
