"""``icm bench``, ``icm report`` and ``icm machines``: parsing and display only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from icm.cli.views import progress_bar, stage_reporter
from icm.errors import IcmError


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
        codecs: Annotated[str, typer.Option("--codecs", help="Comma-separated codecs "
                                            "(their ladders) or points like hevc@qp37.")] = "",
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
                                              "'local' processes or 'ray' (pip install "
                                              "'icm[ray]').")] = "local",
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
        from icm.bench.grid import DEFAULT_CODECS, with_adapters

        config = BenchConfig(
            images=images, codecs=_split(codecs) or _available(DEFAULT_CODECS),
            levels=_split(levels), bpp=_floats(bpp),
            machines=with_adapters(_split(machines), adapter or []),
            anchor=anchor, out=run_dir, workers=workers, limit=limit, degrade=_split(degrade),
            executor=executor, address=address, actors=actors,
        )
        with progress_bar(err, disable=as_json) as progress:
            show = stage_reporter(progress)

            outcome = run_bench(config, show)
        for problem in outcome.skipped:
            err.print(f"[yellow]icm: skipped:[/] {problem}", highlight=False)
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
            status = "[green]ok[/]" if row["available"] else f"[red]unavailable:[/] {row['reason']}"
            table.add_row(row["machine"], row["primary"], ", ".join(row["kinds"]), status)
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


def _available(names) -> tuple[str, ...]:
    from icm.codecs import CODECS

    return tuple(n for n in names if n in CODECS and CODECS[n].unavailable_reason() is None)


def _bench_summary(outcome, config) -> dict:
    from icm.bench import ledger_path
    from icm.bench.analysis import bd_table
    from icm.bench.ledger import Ledger

    with Ledger(ledger_path(outcome.out)) as ledger:
        rows = ledger.rows()
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
        "bd": [vars(entry) for entry in bd_table(rows, config.anchor)],
    }


def _short(notes: list[str], width: int = 60) -> str:
    """The first note, cut to ``width``, and how many more there are (the report has all)."""
    if not notes:
        return ""
    first = notes[0] if len(notes[0]) <= width else notes[0][: width - 1] + "…"
    return first + (f" (+{len(notes) - 1} more)" if len(notes) > 1 else "")


def _print_summary(out: Console, summary: dict) -> None:
    from icm.bench.analysis import with_interval

    table = Table(title=f"BD vs anchor ({summary['out']})")
    for column in ("machine", "codec", "BD-rate % [90% CI]", "BD-fidelity [90% CI]", "notes"):
        table.add_column(column, overflow="fold")
    for entry in summary["bd"]:
        rate = with_interval(entry["bd_rate"], entry["bd_rate_ci"], "{:+.1f}")
        metric = with_interval(entry["bd_metric"], entry["bd_metric_ci"], "{:+.3f}")
        table.add_row(entry["machine"], entry["codec"], rate, metric, _short(entry["notes"]))
    out.print(table)
    out.print(f"{summary['rows']} ledger rows ({summary['rows_added']} new) in "
              f"{summary['wall_s']:.1f} s; harness overhead {summary['harness_share']:.1%}")
    if "report" in summary:
        out.print(f"report: {summary['report']['html']}")

