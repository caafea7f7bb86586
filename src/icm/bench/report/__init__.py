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

The modules, each depending only on those above it:

- :mod:`.document`: the blocks, shared by everything below;
- :mod:`.run_data`, :mod:`.output`: the ledger snapshot read, and the report folder written;
- :mod:`.plots`, :mod:`.crops`, :mod:`.exports`: the PNG plots, the worst-case crops, the
  CSV and Parquet files;
- :mod:`.gap_section`, :mod:`.sections`: what the report says, as blocks;
- :mod:`.render_markdown`, :mod:`.render_html`: blocks to text (they know only
  :mod:`.document`);
- this module: :func:`write_report`, which runs them in order.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from icm.bench.ledger import Ledger
from icm.bench.report.crops import CROP_SIDE
from icm.bench.report.exports import write_exports
from icm.bench.report.gap_section import share_sentence as _share_sentence
from icm.bench.report.output import ReportFolder, ReportPaths
from icm.bench.report.plots import BPP_LABEL
from icm.bench.report.render_html import render_html
from icm.bench.report.render_markdown import render_markdown
from icm.bench.report.run_data import RunData
from icm.bench.report.sections import build_document
from icm.bench.runner import ledger_path
from icm.errors import IcmError

__all__ = [
    "BPP_LABEL",
    "CROP_SIDE",
    "ReportPaths",
    "_share_sentence",
    "require_plotting",
    "write_report",
]


def write_report(run_dir: Path, *, anchor: str = "jpeg", worst: int = 4) -> ReportPaths:
    """Write ``RUN/report/``: Markdown, HTML, plots, worst-case crops, CSV and Parquet."""
    run_dir = Path(run_dir)
    path = ledger_path(run_dir)
    if not path.is_file():  # Ledger() would create an empty one; a report must not
        raise IcmError("no ledger here: run icm bench first", run_dir)
    require_plotting(run_dir)
    with Ledger(path) as ledger:
        run = RunData.read(ledger, run_dir)
    out = ReportFolder(run_dir / "report")
    exports = write_exports(run, out)
    blocks = build_document(run, out, anchor, worst, exports)
    title = f"icm report: {run_dir.resolve().name}"
    markdown = out.write("report.md", render_markdown(blocks).encode())
    page = out.write("report.html", render_html(title, blocks).encode())
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
