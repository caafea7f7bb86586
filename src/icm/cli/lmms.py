"""``icm lmms``: lmms-eval tasks at icm points (parsing and display only; the work is in
:mod:`icm.integrations.lmms_run`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from icm.bench.analysis import with_interval
from icm.cli.output import (
    PrintJsonFlag,
    defaults_of,
    emit_json,
    err,
    out,
    progress_bar,
    stage_reporter,
)
from icm.integrations.lmms_run import LmmsConfig, LmmsOutcome, TaskTable, run_lmms
from icm.pipeline.point import parse_point

LMMS = defaults_of(LmmsConfig)

Tasks = Annotated[str, typer.Option("--tasks", help="Comma-separated lmms-eval tasks, e.g. "
                                    "mmbench_en,pope.")]
ModelArgs = Annotated[str, typer.Option(
    "--model-args", help="The icm model's lmms-eval model_args: inner=<model>, its own "
    "arguments, and points=<p1>;<p2> (icm points, ';' between them).")]
IncludePath = Annotated[list[Path] | None, typer.Option(
    "--include-path", help="A folder of local task YAMLs (lmms-eval's --include_path).")]
Out = Annotated[Path, typer.Option("--out", help="Run folder (resumable).")]
Limit = Annotated[int, typer.Option("--limit", min=0, help="Only the first N documents of "
                                    "each task (0: all).")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="The inner model's batch "
                                        "size.")]
Anchor = Annotated[str, typer.Option("--anchor", help="Codec the BD values compare against "
                                     "(default: the first point's).")]
Reference = Annotated[str, typer.Option(
    "--reference", help="The inner model fine-tuned on decoded images, as model_args that "
    "replace the inner's (e.g. pretrained=/models/ft): splits each point's loss into "
    "information and generalization gaps.")]
Bootstrap = Annotated[int, typer.Option("--bootstrap", min=0, help="Resamples of the images "
                                        "for the 90% intervals (0: none).")]


def lmms_command(
    tasks: Tasks,
    model_args: ModelArgs,
    include_path: IncludePath = None,
    run_dir: Out = LMMS.out,
    limit: Limit = LMMS.limit,
    batch_size: BatchSize = LMMS.batch_size,
    anchor: Anchor = LMMS.anchor,
    bootstrap: Bootstrap = LMMS.bootstrap,
    reference: Reference = LMMS.reference,
    as_json: PrintJsonFlag = False,
) -> None:
    """Run lmms-eval tasks at icm points (needs the lmms extra); resumable; rate-accuracy
    tables, BD values and a plot per task."""
    config = LmmsConfig(
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()), model_args=model_args,
        out=run_dir, include_path=tuple(include_path or ()), limit=limit,
        batch_size=batch_size, anchor=anchor, bootstrap=bootstrap,
        reference=reference)
    with progress_bar(err, disable=as_json) as progress:
        outcome = run_lmms(config, stage_reporter(progress))
    if as_json:
        emit_json(summary_of(outcome))
        return
    if outcome.resumed:
        out.print(f"already done (resumed): {', '.join(outcome.resumed)}")
    for table in outcome.tables:
        out.print(task_view(table))
        if table.gap:
            out.print(gap_view(table))
        out.print(f"  table: {run_dir / table.task / 'table.md'}   plot: {table.plot or '-'}")


def summary_of(outcome: LmmsOutcome) -> dict[str, Any]:
    return {"out": str(outcome.out), "evaluated": outcome.evaluated,
            "resumed": outcome.resumed, "tasks": [asdict(t) for t in outcome.tables]}


def task_view(table: TaskTable) -> Table:
    """Rate, score and agreement per point, and BD against the anchor, for one task."""
    bd = {e["codec"]: e for e in table.bd}
    view = Table(title=f"{table.task}: {table.metric} (pristine "
                 f"{_number(table.pristine['score'], '{:.4f}')})", box=box.SIMPLE_HEAD)
    for name in ("point", "bpp", table.metric, "agreement", "PSNR",
                 f"BD-rate vs {table.anchor}", f"BD-{table.metric}"):
        view.add_column(name, justify="left" if name == "point" else "right")
    for point in table.points:
        entry = bd.get(parse_point(point["point"]).curve)
        view.add_row(
            point["point"], _number(point["bpp"], "{:.4f}"), _number(point["score"], "{:.4f}"),
            _number(point["agreement"], "{:.3f}"), _number(point["psnr"], "{:.2f}"),
            with_interval(entry["bd_rate"], entry["bd_rate_ci"], "{:+.1f}%") if entry else "",
            with_interval(entry["bd_metric"], entry["bd_metric_ci"], "{:+.4f}")
            if entry else "")
    return view


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def gap_view(table: TaskTable) -> Table:
    """Per point, the loss against the pristine images and its split by the reference."""
    view = Table(title=f"{table.task}: {table.metric} lost, split by the fine-tuned reference",
                 box=box.SIMPLE_HEAD)
    for name in ("point", "bpp", "total", "information", "generalization"):
        view.add_column(name, justify="left" if name == "point" else "right")
    for gap in table.gap:
        view.add_row(gap["point"], f"{gap['bpp']:.4f}", f"{gap['total']:+.4f}",
                     f"{gap['information']:+.4f}", f"{gap['generalization']:+.4f}")
    return view
