"""The report's sections, built from one ledger snapshot as document blocks.

Sections decide what the report says and write the images it shows (plots, crops) into the
report folder as they go; how any of it looks in Markdown or HTML is the renderers' business.
The first screen says what the run found; each machine then gets its curves, tables and worst
cases; notes and the exported data close the report. What cannot be shown is said, not raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from icm.bench.analysis import (
    BDEntry,
    CurvePoint,
    bd_table,
    current_rows,
    curves,
    findings,
    machines_in,
    pristine_accuracy,
    stability,
    worst_cases,
)
from icm.bench.report.crops import Crops
from icm.bench.report.document import Block, Bullets, Figure, Heading, Link, Para, Table, slug
from icm.bench.report.exports import Exports
from icm.bench.report.gap_section import gap_section
from icm.bench.report.output import ReportFolder
from icm.bench.report.plots import codec_colours, curve_plot
from icm.bench.report.run_data import RunData
from icm.pipeline import parse_point

_RESERVED_SLUGS = frozenset({"psnr"})  # plots/psnr.png is the rate-PSNR plot

_BD_LEGEND = (
    "BD-rate: percent bits spent at equal machine fidelity relative to the anchor; negative "
    "is better (-30 % saves 30 % of the bits). BD-metric: primary fidelity gained at equal "
    "bits; positive is better. [low, high]: 90% bootstrap interval over the source photos "
    "(the views of one photo are drawn together); an interval that spans 0 means these "
    "images cannot tell the two codecs apart. n/a: the "
    "curves do not support an honest value (reason given)."
)


def build_document(
    run: RunData, out: ReportFolder, anchor: str, worst: int, exports: Exports
) -> list[Block]:
    """The whole report, first screen to data links, writing its plots and crops into ``out``."""
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
    colours = codec_colours(run.results)
    crops = Crops(run, out)
    for index, machine in enumerate(machines_in(run.results)):
        name = _unique_slug(machine, index, out.plots)
        blocks += _machine_section(run, out, machine, name, anchor, worst, colours, crops)
    if run.results:
        blocks += gap_section(run, out, colours)
        blocks += _psnr_section(run, out, anchor, colours)
    blocks += _notes_section(run, crops.problems + exports.problems)
    blocks += _data_section(exports)
    return blocks


# -- the first screen ------------------------------------------------------------------------
def _findings(run: RunData, anchor: str) -> list[Block]:
    """The first screen: what the run found, one sentence per machine."""
    if not run.results:
        return []
    sentences = findings(run.results, anchor)
    return [Heading(2, "What this run found"),
            Bullets(tuple(sentences.values())),
            Para(f"BD-rate against {anchor} at equal primary fidelity, with 90% intervals "
                 "(bootstrap over source photos); each machine's section below has the "
                 "curves, the full table and the notes.")]


def _summary(run: RunData, anchor: str) -> list[Block]:
    """What the ledger holds, counted, so a reader can judge how much the findings rest on."""
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


def _counts(counter: Counter) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(counter.items()))


# -- one machine -----------------------------------------------------------------------------
def _machine_section(
    run: RunData,
    out: ReportFolder,
    machine: str,
    plot_name: str,
    anchor: str,
    worst: int,
    colours: dict[str, str],
    crops: Crops,
) -> list[Block]:
    """Curves, curve points, BD table, pristine stability and worst cases of one machine."""
    mine = current_rows(run.results, machine)
    primary = mine[0]["primary_name"]
    per_codec = curves(run.results, machine)
    blocks: list[Block] = [Heading(2, f"Machine: {machine}"),
                           Para(_rows_line(run, machine, mine, primary))]
    if per_codec:
        ylabel = f"mean {primary} (fidelity to pristine output)"
        png = curve_plot(per_codec, machine, ylabel, anchor, colours)
        out.plots[machine] = out.write(f"plots/{plot_name}.png", png)
        blocks.append(Figure(f"plots/{plot_name}.png", png, f"Rate-{primary} curves for {machine}"))
    blocks += [Heading(3, "Curve points"), _curve_table(per_codec, primary)]
    blocks += [Heading(3, f"BD table vs {anchor}"), Para(_BD_LEGEND)]
    blocks += _bd_blocks(bd_table(mine, anchor), primary, anchor)
    blocks += [Heading(3, "Pristine outputs"), *_pristine_blocks(run, machine)]
    blocks += [Heading(3, f"Worst cases (lowest {primary})")]
    blocks += _worst_case_blocks(crops, worst_cases(run.results, machine, worst), primary)
    return blocks


def _rows_line(run: RunData, machine: str, mine: list[dict[str, Any]], primary: str) -> str:
    """How many rows the section rests on, and how many older ones it leaves out."""
    everything = [row for row in run.results if row["machine"] == machine]
    line = (
        f"{len(mine)} rows over {len({r['image_sha'] for r in mine})} images; primary "
        f"fidelity: {primary} (agreement with the machine's output on the pristine image, "
        "higher is better)."
    )
    if len(everything) > len(mine):
        line += (f" {len(everything) - len(mine)} older rows from an earlier model fingerprint "
                 "are left out.")
    return line


def _curve_table(per_codec: dict[str, list[CurvePoint]], primary: str) -> Block:
    """Every curve point; a ground-truth accuracy column only where some point has one."""
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
    """The BD table against the anchor; notes already shown as an n/a reason are not repeated."""
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


def _pristine_blocks(run: RunData, machine: str) -> list[Block]:
    """Stability of the pristine outputs, and the ground-truth ceiling where there is one."""
    blocks: list[Block] = [Para(_stability_line(run, machine))]
    ceiling = pristine_accuracy(run.pristine).get(machine)
    if ceiling is not None:
        blocks.append(
            Para(
                f"Ground-truth accuracy on the pristine images: {ceiling:.4f} "
                "(the reference for the accuracy column of the curve table)."
            )
        )
    return blocks


def _stability_line(run: RunData, machine: str) -> str:
    """How many pristine outputs repeat when predicted twice: the noise floor of fidelity."""
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


def _worst_case_blocks(crops: Crops, rows: list[dict[str, Any]], primary: str) -> list[Block]:
    """The worst rows as a table, then their crops; a crop that cannot be made says why in its
    table cell, so the table stays whole."""
    if not rows:
        return [Para("No rows.")]
    table, figures = [], []
    for rank, row in enumerate(rows, 1):
        crop = crops.crop(row)
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


def _unique_slug(machine: str, index: int, taken: dict[str, Path]) -> str:
    """A file-safe name for the machine's plot that no other plot of this report uses."""
    name = slug(machine)
    used = {path.stem for path in taken.values()} | _RESERVED_SLUGS
    return name if name not in used else f"{name}-{index + 1}"


# -- across machines -------------------------------------------------------------------------
def _psnr_section(run: RunData, out: ReportFolder, anchor: str, colours: dict[str, str]
                  ) -> list[Block]:
    """Rate-PSNR over all images: the pixel view, to set beside each machine's view. PSNR does
    not depend on the machine, so each (image, point) counts once, as a pseudo-machine."""
    unique = {(row["image_sha"], row["point"]): row for row in run.results}
    pseudo = [
        {**row, "machine": "PSNR", "primary_value": row["psnr"], "accuracy_json": None}
        for row in unique.values()
    ]
    per_codec = curves(pseudo, "PSNR")
    png = curve_plot(per_codec, "Rate-PSNR, all images", "mean PSNR (dB)", anchor, colours,
                     psnr=True)
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


def _notes_section(run: RunData, problems: list[str]) -> list[Block]:
    """The ledger's notes, then what this report could not show."""
    blocks: list[Block] = [Heading(2, "Notes")]
    ledger = tuple(f"{n['subject']}: {n['message']}" for n in run.notes)
    blocks.append(Bullets(ledger) if ledger else Para("The ledger holds no notes."))
    if problems:
        blocks += [Para("From this report:"), Bullets(tuple(problems))]
    return blocks


def _data_section(exports: Exports) -> list[Block]:
    """Links to the exported results table, for redoing the analysis elsewhere."""
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
