"""``icm bench``, ``icm report`` and ``icm machines``: parsing and display only (the work is in
``icm.bench``; the machine listing in ``icm.machines``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from icm.bench import BenchConfig, BenchOutcome, run_bench
from icm.bench.analysis import with_interval
from icm.bench.grid import default_codecs, with_adapters
from icm.bench.report import require_plotting, write_report
from icm.bench.summary import run_summary
from icm.cli.output import (
    PrintJsonFlag,
    defaults_of,
    emit_json,
    err,
    out,
    progress_bar,
    stage_reporter,
)
from icm.cli.views import skipped_line, status_cell
from icm.errors import IcmError
from icm.machines import machine_rows

# typer renders help texts as rich markup: brackets in them must be escaped.
RAY_HINT = escape("pip install 'icm[ray]'")

__all__ = ["bench_command", "machine_rows", "machines_command", "report_command",
           "summary_view"]


def _split(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in _split(text))
    except ValueError:
        raise IcmError(f"--bpp takes comma-separated numbers, got {text!r}") from None


# -- bench ----------------------------------------------------------------------------------

#: the library's defaults, shown and used as the options' own
BENCH = defaults_of(BenchConfig)

BenchImages = Annotated[str, typer.Option("--images", help="Folder, list file, or 'samples' "
                                          "(bundled photos + rendered documents).")]
BenchViews = Annotated[int, typer.Option("--views", min=0, help="Read each photo as this many "
                                         "224 px crops; intervals resample whole photos (0: 6 "
                                         "for 'samples', else the whole photo).")]
BenchCodecs = Annotated[str, typer.Option("--codecs", help="Comma-separated codecs (their "
                                          "ladders) or points like hevc@qp37 (default: five "
                                          "codecs at levels that span both machines' "
                                          "ranges).")]
BenchLevels = Annotated[str, typer.Option("--levels", help="Levels for every bare codec, e.g. "
                                          "q20,q40.")]
BenchBpp = Annotated[str, typer.Option("--bpp", help="Rate-control targets for every bare "
                                       "codec, e.g. 0.1,0.2,0.4.")]
BenchMachines = Annotated[str, typer.Option("--machines", help="Comma-separated machines "
                                            "(default: the offline ones available).")]
BenchAnchor = Annotated[str, typer.Option("--anchor", help="Codec the BD tables compare "
                                          "against.")]
BenchOut = Annotated[Path, typer.Option("--out", help="Run folder (resumable).")]
BenchWorkers = Annotated[int, typer.Option("--workers", help="Worker processes, or a private "
                                           "Ray instance's CPUs (0 = every core).")]
BenchExecutor = Annotated[str, typer.Option("--executor", help="Where the work runs: 'local' "
                                            f"processes or 'ray' ({RAY_HINT}).")]
BenchAddress = Annotated[str, typer.Option("--address", help="Ray cluster to join, e.g. "
                                           "10.0.0.1:6379 or 'auto' (default: start a private "
                                           "one).")]
BenchActors = Annotated[int, typer.Option("--actors", help="Copies of each machine on Ray (0 = "
                                          "one per GPU, else one per CPU).")]
BenchLimit = Annotated[int, typer.Option("--limit", help="Use only the first N images.")]
BenchDegrade = Annotated[str, typer.Option(
    "--degrade", help="Run each image once per degradation, e.g. haze@0.3,noise@0.6,clean "
    "(icm degrade --list); machines and PSNR are scored against the clean image.")]
BenchAdapter = Annotated[list[Path] | None, typer.Option(
    "--adapter", help="Also read every point through this adapter (icm adapt train); the "
    "report splits each machine's loss into information and generalization gaps.")]
BenchReport = Annotated[bool, typer.Option("--report/--no-report", help="Write the report when "
                                           "done.")]


def bench_command(
    images: BenchImages = BENCH.images,
    views: BenchViews = BENCH.views,
    codecs: BenchCodecs = "",
    levels: BenchLevels = "",
    bpp: BenchBpp = "",
    machines: BenchMachines = "",
    anchor: BenchAnchor = BENCH.anchor,
    run_dir: BenchOut = BENCH.out,
    workers: BenchWorkers = BENCH.workers,
    executor: BenchExecutor = BENCH.executor,
    address: BenchAddress = BENCH.address,
    actors: BenchActors = BENCH.actors,
    limit: BenchLimit = BENCH.limit,
    degrade: BenchDegrade = "",
    adapter: BenchAdapter = None,
    report: BenchReport = True,
    as_json: PrintJsonFlag = False,
) -> None:
    """Benchmark codecs x levels x machines x images; resumable; writes a report."""
    config = BenchConfig(
        images=images, views=views,
        codecs=_split(codecs) or default_codecs(_split(levels), _floats(bpp)),
        levels=_split(levels), bpp=_floats(bpp),
        machines=with_adapters(_split(machines), adapter or []),
        anchor=anchor, out=run_dir, workers=workers, limit=limit, degrade=_split(degrade),
        executor=executor, address=address, actors=actors,
    )
    if report:  # before the run, not after its minutes of work
        require_plotting(run_dir)
    with progress_bar(err, disable=as_json) as progress:
        outcome = run_bench(config, stage_reporter(progress))
    _print_notes(outcome)
    summary = run_summary(outcome, config.anchor)
    if report:
        paths = write_report(run_dir, anchor=anchor)
        summary["report"] = {"markdown": str(paths.markdown), "html": str(paths.html)}
    if as_json:
        emit_json(summary)
        return
    out.print(summary_view(summary))


def _print_notes(outcome: BenchOutcome) -> None:
    """What the run skipped, and earlier benches on this folder that were killed mid-way."""
    for problem in outcome.skipped:
        err.print(skipped_line(problem))
    for note in outcome.died:
        err.print(Text.assemble(("icm: note:", "yellow"), f" {note}"), soft_wrap=True)


# -- report, machines -----------------------------------------------------------------------


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by icm bench.")],
    anchor: Annotated[str, typer.Option("--anchor", help="BD anchor codec.")] = BENCH.anchor,
    as_json: PrintJsonFlag = False,
) -> None:
    """Write Markdown + HTML reports, plots and CSV/Parquet exports for a run."""
    paths = write_report(run_dir, anchor=anchor)
    if as_json:
        emit_json(paths.to_json(), indent=None)
        return
    out.print(f"report: {paths.html}\n        {paths.markdown}")


def machines_command(as_json: PrintJsonFlag = False) -> None:
    """List machine families, example names and whether they work here."""
    rows = machine_rows()
    if as_json:
        emit_json(rows)
        return
    out.print(machine_table(rows))


def machine_table(rows: list[dict[str, Any]]) -> Table:
    """``icm machines``: one row per example machine, what it reads, and its status."""
    table = Table(title="icm machines")
    for column in ("machine", "primary fidelity", "reads", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["machine"], row["primary"], ", ".join(row["kinds"]), status_cell(row))
    return table


# -- the bench summary on a terminal --------------------------------------------------------

#: a codec's row in a machine's BD table: codec, BD-rate, BD-fidelity, footnote marks
BdRow = tuple[str, str, str, str]
BD_HEADERS = ("codec", "BD-rate % [90% CI]", "BD-fidelity [90% CI]", "notes")


def summary_view(summary: dict[str, Any]) -> Group:
    """The terminal summary of a bench run, readable at 80 columns.

    Per machine a heading and a table with one row per codec: BD-rate and BD-fidelity against
    the anchor with their 90% intervals (right-aligned, never folded inside a number) and
    footnote markers like [1,3]; under the tables each distinct note once, in full, after its
    number; then the run's totals. Every piece is a Text, so brackets print as they are.
    """
    entries = summary["bd"]
    anchors = ", ".join(dict.fromkeys(entry["anchor"] for entry in entries)) or "the anchor"
    parts: list[Any] = [Text(f"BD-rate and BD-fidelity vs {anchors}, 90% intervals "
                             f"({summary['out']})", style="bold", overflow="fold")]
    footnotes: dict[str, int] = {}  # note -> its number; identical notes share one
    by_machine = _bd_rows_by_machine(entries, footnotes)
    widths = _column_widths([row for group in by_machine.values() for row in group])
    for machine, group in by_machine.items():
        parts += [Text(""), Text(machine, style="bold cyan", overflow="fold"),
                  _bd_table(BD_HEADERS, widths, group, notes=bool(footnotes))]
    if not entries:
        parts.append(Text("no BD values: the run has no codec to compare with the anchor"))
    if footnotes:
        parts += [Text(""), _footnote_grid(footnotes)]
    return Group(*parts, *_closing_lines(summary))


def _bd_rows_by_machine(entries: list[dict[str, Any]],
                        footnotes: dict[str, int]) -> dict[str, list[BdRow]]:
    """Each machine's rows, numbering each distinct note in ``footnotes`` as it first shows."""
    by_machine: dict[str, list[BdRow]] = {}
    for entry in entries:
        marks = sorted({footnotes.setdefault(note, len(footnotes) + 1)
                        for note in entry["notes"]})
        by_machine.setdefault(entry["machine"], []).append((
            entry["codec"],
            with_interval(entry["bd_rate"], entry["bd_rate_ci"], "{:+.1f}"),
            with_interval(entry["bd_metric"], entry["bd_metric_ci"], "{:+.3f}"),
            f"[{_ranges(marks)}]" if marks else "",
        ))
    return by_machine


def _column_widths(rows: list[BdRow]) -> list[int]:
    """The same column widths for every machine's table, so the numbers line up down the
    page (the codec column at most 20 wide)."""
    widths = [max(len(text) for text in (header, *(row[i] for row in rows)))
              for i, header in enumerate(BD_HEADERS)]
    widths[0] = min(widths[0], 20)
    return widths


def _footnote_grid(footnotes: dict[str, int]) -> Table:
    notes = Table.grid(padding=(0, 1))
    notes.add_column(justify="right", no_wrap=True)
    notes.add_column(overflow="fold")
    for note, number in footnotes.items():
        notes.add_row(Text(f"[{number}]"), Text(note))
    return notes


def _closing_lines(summary: dict[str, Any]) -> list[Text]:
    """The run's totals, what it found, and where its report is."""
    lines = [Text(""), Text(f"{summary['rows']} ledger rows ({summary['rows_added']} new) in "
                            f"{summary['wall_s']:.1f} s; harness overhead "
                            f"{summary['harness_share']:.1%}", overflow="fold")]
    if summary.get("findings"):
        lines += [Text(""), Text("What this run found", style="bold")]
        lines += [Text(f"- {sentence}", overflow="fold") for sentence in summary["findings"]]
    if "report" in summary:
        lines.append(Text(f"report: {summary['report']['html']}", overflow="fold"))
    return lines


def _bd_table(headers: tuple[str, ...], widths: list[int], rows: list[BdRow],
              notes: bool) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  header_style="bold")
    table.add_column(Text(headers[0]), min_width=widths[0], overflow="fold")
    for header, width in zip(headers[1:3], widths[1:3], strict=True):
        table.add_column(Text(header), justify="right", min_width=width)
    if notes:
        table.add_column(Text(headers[3]), min_width=widths[3], overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row[: 4 if notes else 3]))
    return table


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 5, 7, 8]`` -> ``1-3,5,7,8``: footnote markers that stay short."""
    spans: list[list[int]] = []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ",".join(f"{a}-{b}" if b > a + 1 else ",".join(map(str, range(a, b + 1)))
                    for a, b in spans)
