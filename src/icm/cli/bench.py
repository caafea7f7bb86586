"""``icm bench``, ``icm report`` and ``icm machines``: parsing and display only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from icm.cli.views import progress_bar, skipped_line, stage_reporter, status_cell
from icm.errors import IcmError

# typer renders help texts as rich markup: brackets in them must be escaped.
RAY_HINT = escape("pip install 'icm[ray]'")


def _split(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in _split(text))
    except ValueError:
        raise IcmError(f"--bpp takes comma-separated numbers, got {text!r}") from None


def register(app: typer.Typer, out: Console, err: Console) -> None:
    """Add the bench commands to the ``icm`` app."""

    @app.command("bench")
    def bench_command(
        images: Annotated[str, typer.Option("--images", help="Folder, list file, or "
                                            "'samples' (bundled photos + rendered documents)."
                                            )] = "samples",
        views: Annotated[int, typer.Option("--views", min=0, help="Read each photo as this "
                                           "many 224 px crops; intervals resample whole "
                                           "photos (0: 6 for 'samples', else the whole "
                                           "photo).")] = 0,
        codecs: Annotated[str, typer.Option("--codecs", help="Comma-separated codecs "
                                            "(their ladders) or points like hevc@qp37 "
                                            "(default: five codecs at levels that span "
                                            "both machines' ranges).")] = "",
        levels: Annotated[str, typer.Option("--levels", help="Levels for every bare codec, "
                                            "e.g. q20,q40.")] = "",
        bpp: Annotated[str, typer.Option("--bpp", help="Rate-control targets for every bare "
                                         "codec, e.g. 0.1,0.2,0.4.")] = "",
        machines: Annotated[str, typer.Option("--machines", help="Comma-separated machines "
                                              "(default: the offline ones available).")] = "",
        anchor: Annotated[str, typer.Option("--anchor", help="Codec the BD tables compare "
                                            "against.")] = "jpeg",
        run_dir: Annotated[Path, typer.Option("--out", help="Run folder (resumable).")] = Path(
            "icm-bench"),
        workers: Annotated[int, typer.Option("--workers", help="Worker processes, or a "
                                             "private Ray instance's CPUs (0 = every core)."
                                             )] = 0,
        executor: Annotated[str, typer.Option("--executor", help="Where the work runs: "
                                              f"'local' processes or 'ray' ({RAY_HINT})."
                                              )] = "local",
        address: Annotated[str, typer.Option("--address", help="Ray cluster to join, e.g. "
                                             "10.0.0.1:6379 or 'auto' (default: start a "
                                             "private one).")] = "",
        actors: Annotated[int, typer.Option("--actors", help="Copies of each machine on "
                                            "Ray (0 = one per GPU, else one per CPU)."
                                            )] = 0,
        limit: Annotated[int, typer.Option("--limit", help="Use only the first N images.")] = 0,
        degrade: Annotated[str, typer.Option(
            "--degrade", help="Run each image once per degradation, e.g. haze@0.3,noise@0.6,"
            "clean (icm degrade --list); machines and PSNR are scored against the clean "
            "image.")] = "",
        adapter: Annotated[list[Path] | None, typer.Option(
            "--adapter", help="Also read every point through this adapter (icm adapt train); "
            "the report splits each machine's loss into information and generalization "
            "gaps.")] = None,
        report: Annotated[bool, typer.Option("--report/--no-report", help="Write the report "
                                             "when done.")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Benchmark codecs x levels x machines x images; resumable; writes a report."""
        from icm.bench import BenchConfig, run_bench
        from icm.bench.grid import default_codecs, with_adapters

        config = BenchConfig(
            images=images, views=views,
            codecs=_split(codecs) or default_codecs(_split(levels), _floats(bpp)),
            levels=_split(levels), bpp=_floats(bpp),
            machines=with_adapters(_split(machines), adapter or []),
            anchor=anchor, out=run_dir, workers=workers, limit=limit, degrade=_split(degrade),
            executor=executor, address=address, actors=actors,
        )
        if report:  # before the run, not after its minutes of work
            from icm.bench.report import require_plotting

            require_plotting(run_dir)
        with progress_bar(err, disable=as_json) as progress:
            show = stage_reporter(progress)

            outcome = run_bench(config, show)
        for problem in outcome.skipped:
            err.print(skipped_line(problem))
        for note in outcome.died:  # an earlier bench on this folder was killed mid-way
            err.print(Text.assemble(("icm: note:", "yellow"), f" {note}"), soft_wrap=True)
        summary = _bench_summary(outcome, config)
        if report:
            from icm.bench.report import write_report

            paths = write_report(run_dir, anchor=anchor)
            summary["report"] = {"markdown": str(paths.markdown), "html": str(paths.html)}
        if as_json:
            sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
            return
        _print_summary(out, summary)

    @app.command("report")
    def report_command(
        run_dir: Annotated[Path, typer.Argument(help="A run folder made by icm bench.")],
        anchor: Annotated[str, typer.Option("--anchor", help="BD anchor codec.")] = "jpeg",
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Write Markdown + HTML reports, plots and CSV/Parquet exports for a run."""
        from icm.bench.report import write_report

        paths = write_report(run_dir, anchor=anchor)
        if as_json:
            sys.stdout.write(json.dumps({k: str(v) for k, v in vars(paths).items()}) + "\n")
            return
        out.print(f"report: {paths.html}\n        {paths.markdown}")

    @app.command("machines")
    def machines_command(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """List machine families, example names and whether they work here."""
        rows = machine_rows()
        if as_json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return
        table = Table(title="icm machines")
        for column in ("machine", "primary fidelity", "reads", "status"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(row["machine"], row["primary"], ", ".join(row["kinds"]),
                          status_cell(row))
        out.print(table)


def machine_rows() -> list[dict]:
    from icm.machines import KNOWN_MODELS, MACHINES, parse_machine

    rows = []
    for family, cls in MACHINES.items():
        for name in KNOWN_MODELS.get(family) or [f"{family}:<model>"]:
            reason = cls.unavailable_reason(parse_machine(name)) if "<" not in name else None
            rows.append({"machine": name, "family": family, "primary": cls.primary,
                         "kinds": sorted(cls.kinds), "summary": cls.summary,
                         "available": reason is None,
                         "reason": None if reason is None else f"{reason}. {cls.install_hint}"})
    return rows


def _bench_summary(outcome, config) -> dict:
    from icm.bench import ledger_path
    from icm.bench.analysis import bd_table, findings
    from icm.bench.ledger import Ledger

    with Ledger(ledger_path(outcome.out)) as ledger:
        rows = ledger.rows()
    table = bd_table(rows, config.anchor)
    return {
        "out": str(outcome.out),
        "rows": outcome.rows_total,
        "rows_added": outcome.rows_added,
        "pristine_added": outcome.pristine_added,
        "wall_s": outcome.wall_s,
        "work_s": outcome.work_s,
        "workers": outcome.workers,
        "harness_share": outcome.harness_share,
        "skipped": outcome.skipped,
        "died_runs": outcome.died,
        "findings": list(findings(rows, config.anchor, table).values()),
        "bd": [vars(entry) for entry in table],
    }


def summary_view(summary: dict) -> Group:
    """The terminal summary of a bench run, readable at 80 columns.

    Per machine a heading and a table with one row per codec: BD-rate and BD-fidelity against
    the anchor with their 90% intervals (right-aligned, never folded inside a number) and
    footnote markers like [1,3]; under the tables each distinct note once, in full, after its
    number; then the run's totals. Every piece is a Text, so brackets print as they are.
    """
    from icm.bench.analysis import with_interval

    entries = summary["bd"]
    anchors = ", ".join(dict.fromkeys(entry["anchor"] for entry in entries)) or "the anchor"
    parts: list = [Text(f"BD-rate and BD-fidelity vs {anchors}, 90% intervals "
                        f"({summary['out']})", style="bold", overflow="fold")]
    footnotes: dict[str, int] = {}  # note -> its number; identical notes share one
    by_machine: dict[str, list[tuple[str, str, str, str]]] = {}
    for entry in entries:
        marks = sorted({footnotes.setdefault(note, len(footnotes) + 1)
                        for note in entry["notes"]})
        by_machine.setdefault(entry["machine"], []).append((
            entry["codec"],
            with_interval(entry["bd_rate"], entry["bd_rate_ci"], "{:+.1f}"),
            with_interval(entry["bd_metric"], entry["bd_metric_ci"], "{:+.3f}"),
            f"[{_ranges(marks)}]" if marks else "",
        ))
    rows = [row for group in by_machine.values() for row in group]
    headers = ("codec", "BD-rate % [90% CI]", "BD-fidelity [90% CI]", "notes")
    # The same column widths for every machine's table, so the numbers line up down the page.
    widths = [max(len(text) for text in (header, *(row[i] for row in rows)))
              for i, header in enumerate(headers)]
    widths[0] = min(widths[0], 20)
    for machine, group in by_machine.items():
        parts += [Text(""), Text(machine, style="bold cyan", overflow="fold"),
                  _bd_table(headers, widths, group, notes=bool(footnotes))]
    if not entries:
        parts.append(Text("no BD values: the run has no codec to compare with the anchor"))
    if footnotes:
        notes = Table.grid(padding=(0, 1))
        notes.add_column(justify="right", no_wrap=True)
        notes.add_column(overflow="fold")
        for note, number in footnotes.items():
            notes.add_row(Text(f"[{number}]"), Text(note))
        parts += [Text(""), notes]
    parts += [Text(""), Text(f"{summary['rows']} ledger rows ({summary['rows_added']} new) in "
                             f"{summary['wall_s']:.1f} s; harness overhead "
                             f"{summary['harness_share']:.1%}", overflow="fold")]
    if summary.get("findings"):
        parts += [Text(""), Text("What this run found", style="bold")]
        parts += [Text(f"- {sentence}", overflow="fold") for sentence in summary["findings"]]
    if "report" in summary:
        parts.append(Text(f"report: {summary['report']['html']}", overflow="fold"))
    return Group(*parts)


def _bd_table(headers, widths, rows, notes: bool) -> Table:
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


def _print_summary(out: Console, summary: dict) -> None:
    out.print(summary_view(summary))
