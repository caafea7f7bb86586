"""The report folder: where every file goes, and the record of what one report wrote.

Every file goes through :func:`icm.fileio.write_atomic`, so a report is whole or absent even if
a run is writing the ledger while the report reads it; the record of what was written is what
lets a new report remove the images an earlier one left behind, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from icm.fileio import write_atomic


@dataclass(frozen=True)
class ReportPaths:
    """Every file one :func:`~icm.bench.report.write_report` call wrote; ``parquet`` is None
    without pyarrow."""

    folder: Path
    markdown: Path
    html: Path
    csv: Path
    parquet: Path | None
    plots: dict[str, Path] = field(default_factory=dict)  # machine name -> rate-fidelity plot
    psnr_plot: Path | None = None
    crops: tuple[Path, ...] = ()

    def to_json(self) -> dict[str, str]:
        """Every field as text (a dict or tuple of paths as its ``str``): what ``icm report
        --json`` prints."""
        return {key: str(value) for key, value in vars(self).items()}

    def all(self) -> list[Path]:
        files = [self.markdown, self.html, self.csv, *self.plots.values(), *self.crops]
        files += [p for p in (self.parquet, self.psnr_plot) if p is not None]
        return files


class ReportFolder:
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
