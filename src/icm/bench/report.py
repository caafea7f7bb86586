"""``icm report RUN``: turn a run folder's ledger into a report a person can read and share.

The report is written into ``RUN/report/``: ``report.md`` (plots and crops as linked PNG files,
for reading beside them or in a repository), ``report.html`` (the same content as one
self-contained page, every image inlined, so it survives being mailed or uploaded), the plots
and worst-case crops as PNG files, and the ``results`` table as ``ledger.csv`` and
``ledger.parquet`` for anyone who wants to redo the analysis their own way.

Both documents are rendered from one list of blocks (heading, paragraph, list, table, figure),
so the Markdown and the HTML can never disagree. Every file goes through
:func:`icm.fileio.write_atomic`: a report is whole or absent, even if a run is writing the ledger
while the report reads it. Anything the report cannot show (a crop whose bitstream left the
cache, a BD value the curves do not support) is said in the report, never a crash.
"""

from __future__ import annotations

import base64
import csv
import html
import importlib.util
import io
import json
import re
import typing
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from icm.bench.analysis import (
    ADAPTER_MARKER,
    BDEntry,
    CurvePoint,
    GapEntry,
    bd_table,
    current_rows,
    curves,
    findings,
    gap_table,
    is_reference_row,
    machines_in,
    pristine_accuracy,
    recovered_share_interval,
    reference_of,
    stability,
    worst_cases,
)
from icm.bench.ledger import Ledger, ResultRow
from icm.bench.runner import ledger_path
from icm.bench.worker import cache_path
from icm.codecs import parse_point
from icm.coding import read_coded
from icm.errors import IcmError
from icm.fileio import write_atomic

#: Side of the square centre crop shown for worst cases (the whole image when it is smaller).
CROP_SIDE = 256

BPP_LABEL = "bits per pixel (every byte of the .icm file)"
_LOG_SPAN = 4.0  # a bpp range wider than this reads better on a log axis
_RESERVED_SLUGS = frozenset({"psnr"})  # plots/psnr.png is the rate-PSNR plot


@dataclass(frozen=True)
class ReportPaths:
    """Every file one :func:`write_report` call wrote; ``parquet`` is None without pyarrow."""

    folder: Path
    markdown: Path
    html: Path
    csv: Path
    parquet: Path | None
    plots: dict[str, Path] = field(default_factory=dict)  # machine name -> rate-fidelity plot
    psnr_plot: Path | None = None
    crops: tuple[Path, ...] = ()

    def all(self) -> list[Path]:
        files = [self.markdown, self.html, self.csv, *self.plots.values(), *self.crops]
        files += [p for p in (self.parquet, self.psnr_plot) if p is not None]
        return files


def write_report(run_dir: Path, *, anchor: str = "jpeg", worst: int = 4) -> ReportPaths:
    """Write ``RUN/report/``: Markdown, HTML, plots, worst-case crops, CSV and Parquet."""
    run_dir = Path(run_dir)
    path = ledger_path(run_dir)
    if not path.is_file():  # Ledger() would create an empty one; a report must not
        raise IcmError("no ledger here: run icm bench first", run_dir)
    require_plotting(run_dir)
    with Ledger(path) as ledger:
        run = _RunData.read(ledger, run_dir)
    out = _Output(run_dir / "report")
    exports = _write_exports(run, out)
    blocks = _document(run, out, anchor, worst, exports)
    title = f"icm report: {run_dir.resolve().name}"
    markdown = out.write("report.md", _markdown(blocks).encode())
    page = out.write("report.html", _html(title, blocks).encode())
    out.prune("plots")
    out.prune("crops")
    return ReportPaths(
        folder=out.folder,
        markdown=markdown,
        html=page,
        csv=exports.csv,
        parquet=exports.parquet,
        plots=out.plots,
        psnr_plot=out.psnr_plot,
        crops=tuple(out.crops.values()),
    )


def require_plotting(run_dir: Path) -> None:
    """A one-line error, before any work, where matplotlib (the bench extra) is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise IcmError("the report draws its plots with matplotlib, which is not installed: "
                       "pip install 'icm[bench]' (or run icm bench --no-report)", run_dir)


# -- what the ledger holds ------------------------------------------------------------------
@dataclass
class _RunData:
    """Every ledger table, read once, so the report sees one consistent snapshot."""

    folder: Path
    results: list[dict[str, Any]]
    pristine: list[dict[str, Any]]
    images: dict[str, dict[str, Any]]  # image_sha -> images row
    bitstreams: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    runs: list[dict[str, Any]]

    @classmethod
    def read(cls, ledger: Ledger, folder: Path) -> _RunData:
        ledger.db.execute("BEGIN")  # one read snapshot: a running bench cannot tear it
        try:
            return cls(
                folder=folder,
                results=ledger.rows("results"),
                pristine=ledger.rows("pristine"),
                images={row["image_sha"]: row for row in ledger.rows("images")},
                bitstreams=ledger.rows("bitstreams"),
                notes=ledger.rows("notes"),
                runs=sorted(ledger.rows("runs"), key=lambda r: r["id"]),
            )
        finally:
            ledger.db.rollback()

    def image_id(self, image_sha: str) -> str:
        row = self.images.get(image_sha)
        return row["image_id"] if row else image_sha[:12]

    def max_pixels(self) -> int:
        """The largest pixel limit any run allowed, so every benchmarked image reloads."""
        from icm.image import DEFAULT_MAX_PIXELS

        limits = [json.loads(r["config_json"]).get("max_pixels") or 0 for r in self.runs]
        return max([DEFAULT_MAX_PIXELS, *limits])


class _Output:
    """The report folder: atomic writes, and a record of what this report wrote."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.plots: dict[str, Path] = {}
        self.psnr_plot: Path | None = None
        self.crops: dict[tuple[str, str], Path] = {}
        self.written: set[Path] = set()

    def write(self, name: str, data: bytes) -> Path:
        path = write_atomic(self.folder / name, data)
        self.written.add(path)
        return path

    def prune(self, subfolder: str) -> None:
        """Remove PNGs an earlier report left (a machine since dropped), never anything else."""
        for stale in (self.folder / subfolder).glob("*.png"):
            if stale not in self.written:
                stale.unlink(missing_ok=True)


# -- document blocks, rendered twice ---------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # right-align these columns


@dataclass(frozen=True)
class Figure:
    name: str  # path relative to the report folder
    data: bytes  # the PNG, inlined into the HTML
    caption: str


@dataclass(frozen=True)
class Link:
    name: str
    text: str


Block = Heading | Para | Bullets | Table | Figure | Link


# -- the document ----------------------------------------------------------------------------
def _document(run: _RunData, out: _Output, anchor: str, worst: int, exports: _Exports):
    blocks: list[Block] = [Heading(1, f"icm report: {run.folder.resolve().name}")]
    blocks += _findings(run, anchor)
    blocks += _summary(run, anchor)
    if not run.results:
        blocks.append(
            Para(
                "There are no result rows in this ledger yet: run icm bench (or "
                "let the running one finish a unit), then report again."
            )
        )
    colours = _codec_colours(run.results)
    crops = _Crops(run, out)
    for index, machine in enumerate(machines_in(run.results)):
        slug = _unique_slug(machine, index, out.plots)
        blocks += _machine_section(run, out, machine, slug, anchor, worst, colours, crops)
    if run.results:
        blocks += _gap_section(run, out, colours)
        blocks += _psnr_section(run, out, anchor, colours)
    blocks += _notes_section(run, crops.problems + exports.problems)
    blocks += _exports_section(exports)
    return blocks


def _findings(run: _RunData, anchor: str) -> list[Block]:
    """The first screen: what the run found, one sentence per machine."""
    if not run.results:
        return []
    sentences = findings(run.results, anchor)
    return [Heading(2, "What this run found"),
            Bullets(tuple(sentences.values())),
            Para(f"BD-rate against {anchor} at equal primary fidelity, with 90% intervals "
                 "(bootstrap over source photos); each machine's section below has the "
                 "curves, the full table and the notes.")]


def _summary(run: _RunData, anchor: str) -> list[Block]:
    rows = run.results
    kinds = Counter(row["kind"] for row in run.images.values())
    points = dict.fromkeys(row["point"] for row in rows)
    per_codec = Counter(parse_point(p).curve for p in points)
    machines = machines_in(rows)
    primaries = {row["machine"]: row["primary_name"] for row in rows}
    read = {row["image_sha"] for row in rows}
    items = [
        f"Run folder: {run.folder}",
        f"Images: {len(run.images)} registered ({_counts(kinds) or 'none'}), "
        f"{len(read)} with result rows",
        f"Codec points: {len(points)} ({_counts(per_codec) or 'none'}); anchor: {anchor}",
        "Machines: "
        + (", ".join(f"{m} (fidelity: {primaries[m]})" for m in machines) or "none yet"),
        f"Result rows: {len(rows)}; pristine outputs: {len(run.pristine)}; "
        f"bitstreams: {len(run.bitstreams)}",
        _timing(run.runs),
    ]
    return [Heading(2, "Run summary"), Bullets(tuple(items))]


def _timing(runs: list[dict[str, Any]]) -> str:
    """Wall time of the last finished run that did work, and what its overhead share means."""
    finished = [r for r in runs if r["status"] == "finished" and r["wall_s"]]
    if not finished:
        return f"Runs: {len(runs)} recorded, none finished yet, so no wall time to report"
    productive = [r for r in finished if r["rows_added"]]
    run = (productive or finished)[-1]
    which = "that added rows" if productive else "(it added no rows)"
    wall, work = float(run["wall_s"]), float(run["work_s"] or 0.0)
    workers = int(run.get("workers") or 0)
    text = (
        f"Runs: {len(runs)} recorded. Last finished run {which} (#{run['id']}, "
        f"{run['rows_added'] or 0} rows): {wall:.1f} s wall, {work:.1f} s of codec and "
        f"model work summed over {workers} worker(s)"
    )
    if not workers:
        return text
    share = max(0.0, 1.0 - work / (wall * workers))
    return text + (
        f". Harness overhead share, 1 - work / (wall x workers): {share:.1%} (worker "
        "start-up counts as overhead; model loading happens in the first predict call and "
        "counts as model work)"
    )


def _machine_section(run, out, machine, slug, anchor, worst, colours, crops) -> list[Block]:
    everything = [row for row in run.results if row["machine"] == machine]
    mine = current_rows(run.results, machine)
    primary = mine[0]["primary_name"]
    per_codec = curves(run.results, machine)
    blocks: list[Block] = [Heading(2, f"Machine: {machine}")]
    line = (
        f"{len(mine)} rows over {len({r['image_sha'] for r in mine})} images; primary "
        f"fidelity: {primary} (agreement with the machine's output on the pristine image, "
        "higher is better)."
    )
    if len(everything) > len(mine):
        line += (f" {len(everything) - len(mine)} older rows from an earlier model fingerprint "
                 "are left out.")
    blocks.append(Para(line))
    if per_codec:
        png = _curve_plot(
            per_codec, machine, f"mean {primary} (fidelity to pristine output)", anchor, colours
        )
        path = out.write(f"plots/{slug}.png", png)
        out.plots[machine] = path
        blocks.append(Figure(f"plots/{slug}.png", png, f"Rate-{primary} curves for {machine}"))
    blocks += [Heading(3, "Curve points"), _curve_table(per_codec, primary)]
    blocks += [Heading(3, f"BD table vs {anchor}"), Para(_BD_LEGEND)]
    blocks += _bd_blocks(bd_table(mine, anchor), primary, anchor)
    blocks += [Heading(3, "Pristine outputs"), Para(_stability_line(run, machine))]
    ceiling = pristine_accuracy(run.pristine).get(machine)
    if ceiling is not None:
        blocks.append(
            Para(
                f"Ground-truth accuracy on the pristine images: {ceiling:.4f} "
                "(the reference for the accuracy column of the curve table)."
            )
        )
    blocks += [Heading(3, f"Worst cases (lowest {primary})")]
    blocks += crops.section(worst_cases(run.results, machine, worst), primary)
    return blocks


_BD_LEGEND = (
    "BD-rate: percent bits spent at equal machine fidelity relative to the anchor; negative "
    "is better (-30 % saves 30 % of the bits). BD-metric: primary fidelity gained at equal "
    "bits; positive is better. [low, high]: 90% bootstrap interval over the source photos "
    "(the views of one photo are drawn together); an interval that spans 0 means these "
    "images cannot tell the two codecs apart. n/a: the "
    "curves do not support an honest value (reason given)."
)


def _curve_table(per_codec: dict[str, list[CurvePoint]], primary: str) -> Block:
    points = [p for codec in per_codec.values() for p in codec]
    if not points:
        return Para("No codec point has rows for every image yet.")
    accuracy = any(p.accuracy is not None for p in points)
    header = ("Codec", "Point", "Mean bpp", f"Mean {primary}", "Mean PSNR (dB)", "Images")
    rows = []
    for p in points:
        cells = (
            p.codec,
            p.point,
            f"{p.bpp:.3f}",
            f"{p.fidelity:.4f}",
            f"{p.psnr:.2f}",
            str(p.images),
        )
        if accuracy:
            cells += ("n/a" if p.accuracy is None else f"{p.accuracy:.4f}",)
        rows.append(cells)
    if accuracy:
        header += ("Ground-truth accuracy",)
    return Table(header, tuple(rows), (False, False, True, True, True, True, True)[: len(header)])


def _bd_blocks(entries: list[BDEntry], metric: str, anchor: str, digits: int = 4) -> list[Block]:
    if not entries:
        return [Para(f"Nothing to compare: no codec other than the anchor {anchor} was read.")]
    rows = []
    for entry in entries:
        rate, used_rate = _bd_cell(entry, "bd_rate", lambda v: f"{v:+.1f} %")
        gain, used_gain = _bd_cell(entry, "bd_metric", lambda v: f"{v:+.{digits}f}")
        rest = [n for n in entry.notes if n not in used_rate and n not in used_gain]
        rows.append((entry.codec, entry.anchor, rate, gain, "; ".join(rest) or "-"))
    header = ("Codec", "Anchor", "BD-rate", f"BD-{metric}", "Notes")
    return [Table(header, tuple(rows), (False, False, True, True, False))]


def _bd_cell(entry: BDEntry, name: str, fmt: Callable[[float], str]) -> tuple[str, list[str]]:
    """The formatted value, or ``n/a (reason)``; also the notes used as that reason."""
    value = getattr(entry, name)
    if value is not None:
        interval = getattr(entry, f"{name}_ci")
        spread = "" if interval is None else f" [{fmt(interval[0])}, {fmt(interval[1])}]"
        return fmt(value) + spread, []
    prefix = f"{name}: "
    mine = [n for n in entry.notes if n.startswith(prefix)]
    shared = [n for n in entry.notes if not n.startswith(("bd_rate: ", "bd_metric: "))]
    reasons = [n.removeprefix(prefix) for n in mine] + shared
    return f"n/a ({'; '.join(reasons) or 'not computed'})", mine + shared


def _stability_line(run: _RunData, machine: str) -> str:
    mine = [row for row in run.pristine if row["machine"] == machine]
    counts = stability(mine).get(machine)
    if not counts:
        return "No pristine outputs recorded for this machine."
    text = (
        f"Stability: {counts['stable']}/{counts['total']} pristine outputs identical "
        "when predicted twice."
    )
    unstable = sorted(run.image_id(row["image_sha"]) for row in mine if not row["stable"])
    if unstable:
        text += f" Not identical: {', '.join(unstable)} (their fidelity rows carry that noise)."
    return text


def _psnr_section(run: _RunData, out: _Output, anchor: str, colours) -> list[Block]:
    """Rate-PSNR over all images: the pixel view, to set beside each machine's view."""
    unique = {(row["image_sha"], row["point"]): row for row in run.results}
    pseudo = [
        {**row, "machine": "PSNR", "primary_value": row["psnr"], "accuracy_json": None}
        for row in unique.values()
    ]
    per_codec = curves(pseudo, "PSNR")
    png = _curve_plot(per_codec, "Rate-PSNR, all images", "mean PSNR (dB)", anchor, colours)
    out.psnr_plot = out.write("plots/psnr.png", png)
    images = len({sha for sha, _ in unique})
    blocks: list[Block] = [
        Heading(2, "Rate-PSNR (all machines)"),
        Para(
            f"Pixel fidelity for reference, averaged over the {images} images in the run "
            "(only images coded at every point). BD-rate here is at equal PSNR."
        ),
        Figure("plots/psnr.png", png, "Rate-PSNR curves per codec"),
    ]
    return blocks + _bd_blocks(bd_table(pseudo, anchor), "PSNR (dB)", anchor, digits=2)


def _gap_section(run: _RunData, out: _Output, colours) -> list[Block]:
    """Information vs generalization gap, for machines read with and without an adapter."""
    entries = gap_table(run.results)
    if not entries:
        return []
    blocks: list[Block] = [
        Heading(2, "Information and generalization gaps"),
        Para("Total gap = 1 - fidelity of the plain machine; information gap = 1 - fidelity of "
             "the machine read through its codec-conditional adapter (icm adapt), against the "
             "plain machine's pristine outputs; generalization gap = the difference: the loss "
             "the adapter recovers, which came from the model not being used to artefacts, "
             "not from missing bits. An adapter bounds the generalization gap from below; "
             "where the run holds a fine-tuned reference (icm adapt train --tune-encoder), the "
             "gap that reference closes is the estimate, and adapters are measured against it."),
    ]
    for index, adapted in enumerate(dict.fromkeys(e.adapted for e in entries), 1):
        mine = [e for e in entries if e.adapted == adapted]
        blocks.append(Para(_share_sentence(run.results, adapted, mine[0].machine)))
        adapter_file = Path(adapted.partition(ADAPTER_MARKER)[2]).stem
        name = f"plots/gap-{index}-{_slug(adapter_file)[:40]}.png"  # one file per adapter
        png = _gap_plot(mine, f"{mine[0].machine} with adapter {adapter_file}", colours)
        out.write(name, png)
        blocks.append(Figure(name, png, f"Gap decomposition: {adapted}"))
        with_reference = all(e.reference is not None for e in mine)
        blocks.append(Table(
            ("codec", "point", "bpp", "total gap", "information", "generalization",
             *(("reference information",) if with_reference else ()), "images"),
            tuple((e.curve, e.point, f"{e.bpp:.3f}", f"{e.total:.3f}", f"{e.information:.3f}",
                   f"{e.generalization:+.3f}",
                   *((f"{e.reference:.3f}",) if with_reference else ()), str(e.images))
                  for e in mine),
            (False, False, True, True, True, True, *((True,) if with_reference else ()), True)))
    return blocks


def _share_sentence(rows: list[dict], adapted: str, machine: str) -> str:
    """What ``adapted`` recovered, of the total gap and (when the run has one) of the gap the
    best fine-tuned reference closes, each with its interval over resampled images."""
    def shown(share: tuple[float, float, float] | None) -> str:
        return "n/a" if share is None else (
            f"{share[0]:.0%} [90% CI {share[1]:.0%}, {share[2]:.0%}]")

    reference = reference_of(rows, machine)
    text = (f"{adapted}: recovers {shown(recovered_share_interval(rows, adapted))} of the "
            "total gap over all its points")
    if reference == adapted:
        return text + (". It is the run's best fine-tuned reference: what it recovers is the "
                       "estimated generalization gap (intervals: images resampled).")
    if reference is not None:
        mine = current_rows(rows, adapted)
        kind = ("a weaker fine-tuned reference" if mine and is_reference_row(mine[0])
                else "an adapter")
        text += (f", and {shown(recovered_share_interval(rows, adapted, reference=reference))} "
                 f"of the generalization gap as estimated by the fine-tuned reference "
                 f"{Path(reference.partition(ADAPTER_MARKER)[2]).name}. It is {kind}")
    return text + " (intervals: images resampled)."


def _gap_plot(entries: list[GapEntry], title: str, colours) -> bytes:
    """Per codec: total gap (solid) and information gap (dashed) against bpp; the band
    between them is the generalization gap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure = MplFigure(figsize=(7.2, 4.6), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for curve in dict.fromkeys(e.curve for e in entries):
        mine = sorted((e for e in entries if e.curve == curve), key=lambda e: e.bpp)
        rates = [e.bpp for e in mine]
        colour = colours.get(curve)
        axes.plot(rates, [e.total for e in mine], marker="o", color=colour,
                  label=f"{curve} total")
        axes.plot(rates, [e.information for e in mine], marker="s", linestyle="--",
                  color=colour, label=f"{curve} information")
        axes.fill_between(rates, [e.information for e in mine], [e.total for e in mine],
                          color=colour, alpha=0.15)
        if all(e.reference is not None for e in mine):
            axes.plot(rates, [e.reference for e in mine], linestyle=":", color=colour,
                      label=f"{curve} information (fine-tuned reference)")
    axes.set_xscale("log")
    rates = [e.bpp for e in entries]
    axes.xaxis.set_major_locator(LogLocator(subs=_log_ticks(max(rates) / min(rates))))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(BPP_LABEL)
    axes.set_ylabel("gap (1 - fidelity)")
    axes.set_title(title[:90], fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(frameon=False, fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _notes_section(run: _RunData, problems: list[str]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Notes")]
    ledger = tuple(f"{n['subject']}: {n['message']}" for n in run.notes)
    blocks.append(Bullets(ledger) if ledger else Para("The ledger holds no notes."))
    if problems:
        blocks += [Para("From this report:"), Bullets(tuple(problems))]
    return blocks


def _exports_section(exports: _Exports) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Data"),
        Link(
            "ledger.csv",
            "ledger.csv: the results table, one line per row, JSON columns kept as JSON text",
        ),
    ]
    if exports.parquet is not None:
        blocks.append(Link("ledger.parquet", "ledger.parquet: the same rows, typed"))
    return blocks


# -- worst-case crops ------------------------------------------------------------------------
class _CropSkipped(Exception):
    """Why a crop cannot be shown; the report says so and goes on."""


class _Crops:
    """Side-by-side crops, made once per (image, point) and shared by every machine."""

    def __init__(self, run: _RunData, out: _Output) -> None:
        self.run, self.out = run, out
        self.cache_dir = run.folder / "cache" / "bitstreams"
        self.pristine: dict[str, np.ndarray | _CropSkipped] = {}
        self.made: dict[tuple[str, str], Figure | _CropSkipped] = {}
        self.problems: list[str] = []

    def section(self, rows: list[dict[str, Any]], primary: str) -> list[Block]:
        if not rows:
            return [Para("No rows.")]
        table, figures = [], []
        for rank, row in enumerate(rows, 1):
            crop = self.crop(row)
            if isinstance(crop, Figure):
                figures.append(Figure(crop.name, crop.data, f"#{rank} {crop.caption}"))
                shown = crop.name
            else:
                shown = f"skipped: {crop}"
            table.append(
                (
                    str(rank),
                    row["image_id"],
                    row["point"],
                    f"{row['bpp']:.3f}",
                    f"{row['primary_value']:.4f}",
                    f"{row['psnr']:.2f}",
                    shown,
                )
            )
        header = ("#", "Image", "Point", "bpp", primary, "PSNR (dB)", "Crop")
        numeric = (True, False, False, True, True, True, False)
        return [Table(header, tuple(table), numeric), *figures]

    def crop(self, row: dict[str, Any]) -> Figure | _CropSkipped:
        key = (row["image_sha"], row["point"])
        if key not in self.made:
            try:
                self.made[key] = self._make(row)
            except _CropSkipped as skipped:
                self.made[key] = skipped
                self.problems.append(
                    f"crop of {row['image_id']} at {row['point']} skipped: {skipped}"
                )
        return self.made[key]

    def _make(self, row: dict[str, Any]) -> Figure:
        pristine = self._pristine(row["image_sha"])
        decoded = self._decoded(row, pristine.shape)
        side = f"{min(pristine.shape[1], CROP_SIDE)}x{min(pristine.shape[0], CROP_SIDE)}"
        right = f"decoded {row['point']}, {row['bpp']:.3f} bpp, {row['psnr']:.1f} dB"
        png = _side_by_side(pristine, decoded, "pristine", right)
        name = f"crops/{_slug(row['image_id'])}-{row['image_sha'][:8]}-{_slug(row['point'])}.png"
        self.out.crops[(row["image_sha"], row["point"])] = self.out.write(name, png)
        caption = (
            f"{row['image_id']} at {row['point']}: pristine (left), decoded (right), "
            f"{side} centre crop"
        )
        return Figure(name, png, caption)

    def _pristine(self, image_sha: str) -> np.ndarray:
        if image_sha not in self.pristine:
            try:
                self.pristine[image_sha] = _load_pristine(self.run, image_sha)
            except _CropSkipped as skipped:
                self.pristine[image_sha] = skipped
        found = self.pristine[image_sha]
        if isinstance(found, _CropSkipped):
            raise found
        return found

    def _decoded(self, row: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
        """Decode the cached bitstream the row was measured on."""
        path = cache_path(self.cache_dir, row["cache_key"])
        if not path.is_file():
            where = path.relative_to(self.run.folder)
            raise _CropSkipped(f"bitstream not in the cache ({where})")
        try:
            image = read_coded(path).decode()
        except IcmError as exc:
            raise _CropSkipped(f"cannot decode {path.name}: {exc.problem}") from None
        if image.shape != shape:
            raise _CropSkipped(f"decoded size {image.shape[:2]} is not the image's {shape[:2]}")
        return image


def _load_pristine(run: _RunData, image_sha: str) -> np.ndarray:
    """Reload an image from its ``images.source`` and check it is the benchmarked one; a
    view or a degraded image is rebuilt from its id, and a degraded one is shown by its clean
    reference, which is what its rows were scored against."""
    from icm.image.datasets import content_hash, image_from_id

    row = run.images.get(image_sha)
    if row is None:
        raise _CropSkipped("image not in the images table")
    source = row["source"]
    image = image_from_id(row["image_id"], row["kind"], source)
    try:
        reference = image.reference(run.max_pixels())
        pixels = image.degrade(reference)
    except (IcmError, KeyError) as exc:
        problem = exc.problem if isinstance(exc, IcmError) else str(exc.args[0])
        raise _CropSkipped(f"cannot reload {source}: {problem}") from None
    if content_hash(pixels) != image_sha:
        raise _CropSkipped(f"{source} no longer holds the benchmarked pixels")
    return reference


def _side_by_side(pristine: np.ndarray, decoded: np.ndarray, left: str, right: str) -> bytes:
    """``pristine | decoded`` centre crops, exactly 2 x crop wide, under a label band."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = pristine.shape[:2]
    crop_h, crop_w = min(height, CROP_SIDE), min(width, CROP_SIDE)
    top, edge = (height - crop_h) // 2, (width - crop_w) // 2
    window = (slice(top, top + crop_h), slice(edge, edge + crop_w))
    band = 20
    canvas = Image.new("RGB", (2 * crop_w, crop_h + band), (34, 38, 46))
    canvas.paste(Image.fromarray(np.ascontiguousarray(pristine[window])), (0, band))
    canvas.paste(Image.fromarray(np.ascontiguousarray(decoded[window])), (crop_w, band))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=12)
    for x, text in ((0, left), (crop_w, right)):
        draw.text((x + 4, 3), _fit(draw, text, font, crop_w - 8), fill="white", font=font)
    draw.line([(crop_w, 0), (crop_w, band - 1)], fill=(120, 126, 138))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _fit(draw, text: str, font, width: int) -> str:
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…" if len(text) > 1 else ""
    return text


# -- plots -----------------------------------------------------------------------------------
def _codec_colours(rows: list[dict[str, Any]]) -> dict[str, str]:
    """One colour per codec, the same in every plot of the report."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    codecs = sorted({row["codec"] for row in rows})
    return {codec: _hex(palette[i % len(palette)]) for i, codec in enumerate(codecs)}


def _hex(rgb) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb[:3])


def _curve_plot(
    per_codec: dict[str, list[CurvePoint]],
    title: str,
    ylabel: str,
    anchor: str,
    colours: dict[str, str],
) -> bytes:
    """One line with markers per codec; the anchor dashed; log bpp axis when the span is wide.

    Built on a bare Figure with the Agg canvas: no pyplot, so no global backend is switched
    and nothing stays open between plots.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    use_psnr = ylabel.endswith("(dB)")
    figure = MplFigure(figsize=(7.2, 4.6), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ordered = sorted(per_codec, key=lambda c: (c != anchor, c))
    for codec in ordered:
        points = per_codec[codec]
        ys = [p.psnr if use_psnr else p.fidelity for p in points]
        axes.plot(
            [p.bpp for p in points],
            ys,
            marker="o",
            markersize=4.5,
            linewidth=1.6,
            linestyle="--" if codec == anchor else "-",
            color=colours.get(codec),
            label=f"{codec} (anchor)" if codec == anchor else codec,
        )
    rates = [p.bpp for points in per_codec.values() for p in points]
    if rates and max(rates) > _LOG_SPAN * min(rates):
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(LogLocator(subs=_log_ticks(max(rates) / min(rates))))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel(BPP_LABEL)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    if per_codec:
        axes.legend(loc="lower right", frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _log_ticks(span: float) -> tuple[float, ...]:
    """Labelled ticks per decade: enough to read a value off a narrow range, few on a wide one."""
    if span < 10:
        return (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
    return (1.0, 2.0, 5.0) if span < 100 else (1.0,)


# -- exports ---------------------------------------------------------------------------------
@dataclass
class _Exports:
    csv: Path
    parquet: Path | None
    problems: list[str]


def _write_exports(run: _RunData, out: _Output) -> _Exports:
    columns = [f.name for f in fields(ResultRow)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([row[c] for c in columns] for row in run.results)
    csv_path = out.write("ledger.csv", text.getvalue().encode())
    try:
        data = _parquet_bytes(run.results)
    except ImportError:
        return _Exports(
            csv_path,
            None,
            ["pyarrow is not installed, so ledger.parquet was not written "
             "(pip install 'icm[bench]')"],
        )
    return _Exports(csv_path, out.write("ledger.parquet", data), [])


def _parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The results table with the ledger's column types, so an empty ledger still has a schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = {int: pa.int64(), float: pa.float64(), str: pa.string()}
    hints = typing.get_type_hints(ResultRow)
    schema = pa.schema(
        [
            (
                f.name,
                arrow[
                    next(
                        t
                        for t in typing.get_args(hints[f.name]) or (hints[f.name],)
                        if t is not type(None)
                    )
                ],
            )
            for f in fields(ResultRow)
        ]
    )
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    return sink.getvalue().to_pybytes()


# -- renderers -------------------------------------------------------------------------------
def _markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(_markdown_table(block))
        elif isinstance(block, Figure):
            parts.append(f"![{block.caption}]({block.name})\n\n*{block.caption}*")
        else:
            parts.append(f"[{block.text}]({block.name})")
    return "\n\n".join(parts) + "\n"


def _markdown_table(table: Table) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    rule = ["---:" if numeric else "---" for numeric in table.numeric]
    return "\n".join(
        [line(table.header), "| " + " | ".join(rule) + " |", *(line(row) for row in table.rows)]
    )


def _html(title: str, blocks: list[Block]) -> str:
    ids: Counter[str] = Counter()
    body = "\n".join(_html_block(block, ids) for block in blocks)
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _html_block(block: Block, ids: Counter[str]) -> str:
    e = html.escape
    if isinstance(block, Heading):
        anchor = _slug(block.text)
        ids[anchor] += 1
        anchor += f"-{ids[anchor]}" if ids[anchor] > 1 else ""
        return f'<h{block.level} id="{anchor}">{e(block.text)}</h{block.level}>'
    if isinstance(block, Para):
        return f"<p>{e(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>\n" + "\n".join(f"<li>{e(item)}</li>" for item in block.items) + "\n</ul>"
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(block.data).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{e(block.caption)}">'
            f"<figcaption>{e(block.caption)}</figcaption></figure>"
        )
    return f'<p><a href="{e(block.name)}">{e(block.text)}</a></p>'


def _html_table(table: Table) -> str:
    def cell(tag: str, text: str, numeric: bool) -> str:
        return f"<{tag}{' class=num' if numeric else ''}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", h, n) for h, n in zip(table.header, table.numeric, strict=True))
    rows = "\n".join(
        "<tr>"
        + "".join(cell("td", c, n) for c, n in zip(row, table.numeric, strict=True))
        + "</tr>"
        for row in table.rows
    )
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n'
        "</tbody>\n</table></div>"
    )


_CSS = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6474; --rule: #d9dee7;
  --band: #f4f6fa; --accent: #2f5fb3; }
body { margin: 0; background: #fff; color: var(--ink);
  font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 62rem; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
h1 { font-size: 1.9rem; margin: 0 0 1rem; }
h2 { font-size: 1.4rem; margin: 2.5rem 0 0.75rem; padding-top: 1rem;
  border-top: 2px solid var(--rule); }
h3 { font-size: 1.1rem; margin: 1.75rem 0 0.5rem; color: var(--muted); }
p, li { max-width: 48rem; }
a { color: var(--accent); }
.scroll { overflow-x: auto; margin: 0.75rem 0 1.25rem; }
table { border-collapse: collapse; font-size: 0.9rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.35rem 0.75rem; border-bottom: 1px solid var(--rule); text-align: left;
  vertical-align: top; }
th { background: var(--band); font-weight: 600; border-bottom: 2px solid var(--rule); }
tbody tr:nth-child(even) { background: #fafbfd; }
.num { text-align: right; white-space: nowrap; }
figure { margin: 1rem 0 1.5rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--rule); }
figcaption { font-size: 0.85rem; color: var(--muted); margin-top: 0.3rem; }
"""


# -- small helpers ---------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _unique_slug(machine: str, index: int, taken: dict[str, Path]) -> str:
    """A file-safe name for the machine's plot that no other plot of this report uses."""
    slug = _slug(machine)
    used = {path.stem for path in taken.values()} | _RESERVED_SLUGS
    return slug if slug not in used else f"{slug}-{index + 1}"


def _counts(counter: Counter) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(counter.items()))
