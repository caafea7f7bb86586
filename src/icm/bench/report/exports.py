"""The ``results`` table as files for anyone who wants to redo the analysis their own way:
``ledger.csv`` always, ``ledger.parquet`` (typed) where pyarrow is installed."""

from __future__ import annotations

import csv
import io
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from icm.bench.ledger import ResultRow
from icm.bench.report.output import ReportFolder
from icm.bench.report.run_data import RunData


@dataclass
class Exports:
    """What was exported, and what could not be (said in the report's notes, never raised)."""

    csv: Path
    parquet: Path | None
    problems: list[str]


def write_exports(run: RunData, out: ReportFolder) -> Exports:
    csv_path = out.write("ledger.csv", _csv_bytes(run.results))
    try:
        data = _parquet_bytes(run.results)
    except ImportError:
        return Exports(
            csv_path,
            None,
            ["pyarrow is not installed, so ledger.parquet was not written "
             "(pip install 'icm[bench]')"],
        )
    return Exports(csv_path, out.write("ledger.parquet", data), [])


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The results table in the ledger's column order, JSON columns kept as JSON text."""
    columns = [f.name for f in fields(ResultRow)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([row[c] for c in columns] for row in rows)
    return text.getvalue().encode()


def _parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The results table with the ledger's column types, so an empty ledger still has a schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = {int: pa.int64(), float: pa.float64(), str: pa.string()}
    hints = typing.get_type_hints(ResultRow)
    schema = pa.schema([(f.name, arrow[_column_type(hints[f.name])]) for f in fields(ResultRow)])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink)
    return sink.getvalue().to_pybytes()


def _column_type(hint) -> type:
    """The Python type a column holds when it is not null (``float | None`` -> float)."""
    return next(t for t in typing.get_args(hint) or (hint,) if t is not type(None))
