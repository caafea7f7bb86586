"""The information/generalization gap section, for machines read with and without an adapter.

It has a module of its own because it reads the run differently from the per-machine sections:
it pairs each machine with its adapted versions (``machine+adapter=FILE``) and, where the run
holds one, with the fine-tuned reference those adapters are judged against.
"""

from __future__ import annotations

from pathlib import Path

from icm.bench.analysis import (
    ADAPTER_MARKER,
    GapEntry,
    current_rows,
    gap_table,
    is_reference_row,
    recovered_share_interval,
    reference_of,
)
from icm.bench.report.document import Block, Figure, Heading, Para, Table, slug
from icm.bench.report.output import ReportFolder
from icm.bench.report.plots import gap_plot
from icm.bench.report.run_data import RunData

_GAP_LEGEND = (
    "Total gap = 1 - fidelity of the plain machine; information gap = 1 - fidelity of "
    "the machine read through its codec-conditional adapter (icm adapt), against the "
    "plain machine's pristine outputs; generalization gap = the difference: the loss "
    "the adapter recovers, which came from the model not being used to artefacts, "
    "not from missing bits. An adapter bounds the generalization gap from below; "
    "where the run holds a fine-tuned reference (icm adapt train --tune-encoder), the "
    "gap that reference closes is the estimate, and adapters are measured against it."
)


def gap_section(run: RunData, out: ReportFolder, colours: dict[str, str]) -> list[Block]:
    """Information vs generalization gap; nothing at all when no machine has an adapter."""
    entries = gap_table(run.results)
    if not entries:
        return []
    blocks: list[Block] = [Heading(2, "Information and generalization gaps"), Para(_GAP_LEGEND)]
    for index, adapted in enumerate(dict.fromkeys(e.adapted for e in entries), 1):
        mine = [e for e in entries if e.adapted == adapted]
        blocks += _adapter_blocks(run, out, index, mine, colours)
    return blocks


def _adapter_blocks(
    run: RunData, out: ReportFolder, index: int, entries: list[GapEntry], colours: dict[str, str]
) -> list[Block]:
    """One adapted machine: what it recovers, its gap plot and its gap table. ``index`` keeps
    the plot's file name unique when two adapter files have the same name."""
    adapted, machine = entries[0].adapted, entries[0].machine
    adapter_file = _adapter_file(adapted).stem
    name = f"plots/gap-{index}-{slug(adapter_file)[:40]}.png"
    png = gap_plot(entries, f"{machine} with adapter {adapter_file}", colours)
    out.write(name, png)
    return [
        Para(share_sentence(run.results, adapted, machine)),
        Figure(name, png, f"Gap decomposition: {adapted}"),
        _gap_table(entries),
    ]


def _gap_table(entries: list[GapEntry]) -> Table:
    """Per point: the three gaps, and the reference's information gap when every point has it."""
    with_reference = all(e.reference is not None for e in entries)

    def row(e: GapEntry) -> tuple[str, ...]:
        reference = (f"{e.reference:.3f}",) if with_reference else ()
        return (e.curve, e.point, f"{e.bpp:.3f}", f"{e.total:.3f}", f"{e.information:.3f}",
                f"{e.generalization:+.3f}", *reference, str(e.images))

    reference_column = ("reference information",) if with_reference else ()
    header = ("codec", "point", "bpp", "total gap", "information", "generalization",
              *reference_column, "images")
    numeric = (False, False, True, True, True, True, *(True,) * len(reference_column), True)
    return Table(header, tuple(row(e) for e in entries), numeric)


def share_sentence(rows: list[dict], adapted: str, machine: str) -> str:
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
                 f"{_adapter_file(reference).name}. It is {kind}")
    return text + " (intervals: images resampled)."


def _adapter_file(adapted: str) -> Path:
    """The adapter file named in an adapted machine's name (``machine+adapter=FILE``)."""
    return Path(adapted.partition(ADAPTER_MARKER)[2])
