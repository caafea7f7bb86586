"""The ledger: one SQLite file (WAL) per run folder, one row per (image, codec point, machine).

Why SQLite: a row is committed atomically or not at all, so a run killed with ``kill -9``
keeps every finished row and loses only work in flight; the primary keys make a re-run
idempotent (nothing duplicated), and any tool can read the file. Only the parent process writes;
workers return results, so there is no write contention.

The ``runs`` table has one entry per bench: ``running`` while it works (its ``rows_added`` kept
current with every committed unit), then ``finished``, ``interrupted`` (an error or Ctrl-C), or
``died`` (its process was killed before it could say; marked by the next bench on the folder).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from icm.errors import IcmError

SCHEMA_VERSION = 1
TABLES = frozenset({"results", "pristine", "images", "bitstreams", "notes", "runs"})
# Columns that differ between two runs of the same grid even when every result is the same.
TIMINGS = frozenset({"encode_ms", "decode_ms", "predict_ms", "created_at"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    image_sha TEXT PRIMARY KEY, image_id TEXT NOT NULL, kind TEXT NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS bitstreams (
    cache_key TEXT PRIMARY KEY, image_sha TEXT NOT NULL, point TEXT NOT NULL,
    level TEXT NOT NULL, bytes INTEGER NOT NULL, payload_bytes INTEGER NOT NULL,
    psnr REAL NOT NULL, encode_ms REAL NOT NULL, decode_ms REAL NOT NULL,
    codec_version TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pristine (
    image_sha TEXT NOT NULL, machine TEXT NOT NULL, fingerprint TEXT NOT NULL,
    output_json TEXT NOT NULL, predict_ms REAL NOT NULL, stable INTEGER NOT NULL,
    truth_json TEXT, accuracy_json TEXT, created_at REAL NOT NULL,
    PRIMARY KEY (image_sha, fingerprint)
);
CREATE TABLE IF NOT EXISTS results (
    image_sha TEXT NOT NULL, point TEXT NOT NULL, fingerprint TEXT NOT NULL,
    image_id TEXT NOT NULL, kind TEXT NOT NULL, machine TEXT NOT NULL,
    codec TEXT NOT NULL, level TEXT NOT NULL, target_bpp REAL,
    bytes INTEGER NOT NULL, bpp REAL NOT NULL, psnr REAL NOT NULL,
    primary_name TEXT NOT NULL, primary_value REAL NOT NULL,
    fidelity_json TEXT NOT NULL, accuracy_json TEXT,
    encode_ms REAL NOT NULL, decode_ms REAL NOT NULL, predict_ms REAL NOT NULL,
    versions_json TEXT NOT NULL, cache_key TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (image_sha, point, fingerprint)
);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL,
    subject TEXT NOT NULL, message TEXT NOT NULL, UNIQUE (subject, message)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, finished_at REAL,
    config_json TEXT NOT NULL, wall_s REAL, work_s REAL, rows_added INTEGER, status TEXT,
    workers INTEGER
);
"""


@dataclass(frozen=True)
class ResultRow:
    """One ledger row: how one machine read one image after one codec point."""

    image_sha: str
    point: str
    fingerprint: str
    image_id: str
    kind: str
    machine: str
    codec: str
    level: str
    target_bpp: float | None
    bytes: int
    bpp: float
    psnr: float
    primary_name: str
    primary_value: float
    fidelity_json: str
    accuracy_json: str | None
    encode_ms: float
    decode_ms: float
    predict_ms: float
    versions_json: str
    cache_key: str  # the bitstream this row was measured on
    created_at: float


@dataclass(frozen=True)
class BitstreamRow:
    cache_key: str
    image_sha: str
    point: str
    level: str
    bytes: int
    payload_bytes: int
    psnr: float
    encode_ms: float
    decode_ms: float
    codec_version: str
    created_at: float


@dataclass(frozen=True)
class PristineRow:
    image_sha: str
    machine: str
    fingerprint: str
    output_json: str
    predict_ms: float
    stable: int
    truth_json: str | None
    accuracy_json: str | None
    created_at: float


class Ledger:
    """The run's SQLite database. Use as a context manager or call ``close``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise IcmError(f"not a usable icm ledger ({exc})", self.path) from None

    def _check_schema(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            with self.db:
                self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise IcmError(f"ledger schema {row[0]} is not {SCHEMA_VERSION}", self.path)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.db:
            yield self.db

    # -- writes: each call is one transaction; INSERT OR IGNORE keeps re-runs idempotent ------
    def add_image(self, image_sha: str, image_id: str, kind: str, width: int, height: int,
                  source: str) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO images VALUES (?,?,?,?,?,?)",
                            (image_sha, image_id, kind, width, height, source))

    def add_unit(self, bitstreams: Iterable[BitstreamRow], rows: Iterable[ResultRow],
                 run_id: int | None = None) -> int:
        """Commit one work unit's bitstreams and rows together; return rows newly added.

        With ``run_id``, that run's ``rows_added`` grows in the same transaction, so a run
        killed mid-way has left an exact count of the rows it committed (see ``mark_died``).
        """
        with self.db:
            _insert(self.db, "bitstreams", bitstreams)
            before = self.db.total_changes
            # A row whose bitstream went stale (new encoder or tool version) is replaced.
            _insert(self.db, "results", rows, replace=True)
            added = self.db.total_changes - before
            if run_id is not None:
                self.db.execute("UPDATE runs SET rows_added=rows_added+? WHERE id=?",
                                (added, run_id))
            return added

    def add_pristine(self, row: PristineRow) -> None:
        with self.db:
            _insert(self.db, "pristine", [row])

    def label_machines(self, names: dict[str, str]) -> None:
        """Give rows the name their machine has now (fingerprint -> name).

        Rows are found by fingerprint, so a machine whose name changed but whose model did not
        (an adapter file moved or renamed: ``MACHINE+adapter=PATH``) reuses its rows; without
        the new label, curves and reports asked for by the new name would find none.
        """
        with self.db:
            for table in ("results", "pristine"):
                self.db.executemany(
                    f"UPDATE {table} SET machine=? WHERE fingerprint=? AND machine<>?",
                    [(name, fp, name) for fp, name in names.items()])

    def note(self, subject: str, message: str) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO notes (created_at, subject, message) "
                            "VALUES (?,?,?)", (time.time(), subject, message))

    def start_run(self, config: dict[str, Any]) -> int:
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO runs (started_at, config_json, status, rows_added) "
                "VALUES (?,?,?,0)", (time.time(), json.dumps(config, sort_keys=True), "running"))
        return int(cursor.lastrowid)

    def mark_died(self) -> list[str]:
        """Mark every run still ``running`` as ``died``, note each, and return the notes.

        Call only while holding the run folder's lock (``RunFolderLock``): then no live bench
        owns such an entry; its process ended without recording how (``kill -9``, a crash, a
        power cut). Its ``rows_added`` is what it had committed, or unknown (NULL) for runs
        recorded before ``add_unit`` kept it current.
        """
        with self.db:
            stale = self.db.execute("SELECT id, started_at, rows_added FROM runs "
                                    "WHERE status='running' ORDER BY id").fetchall()
            notes = []
            for run_id, started_at, rows in stale:
                subject, message = f"run #{run_id}", _died_message(started_at, rows)
                self.db.execute("UPDATE runs SET status='died' WHERE id=?", (run_id,))
                self.db.execute("INSERT OR IGNORE INTO notes (created_at, subject, message) "
                                "VALUES (?,?,?)", (time.time(), subject, message))
                notes.append(f"{subject}: {message}")
        return notes

    def finish_run(self, run_id: int, wall_s: float, work_s: float, rows_added: int,
                   status: str, workers: int) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET finished_at=?, wall_s=?, work_s=?, rows_added=?, status=?, "
                "workers=? WHERE id=?",
                (time.time(), wall_s, work_s, rows_added, status, workers, run_id))

    # -- reads ---------------------------------------------------------------------------------
    def done_keys(self) -> dict[tuple[str, str, str], str]:
        """(image, point, machine fingerprint) -> the cache key of the bitstream it read."""
        query = "SELECT image_sha, point, fingerprint, cache_key FROM results"
        return {(sha, point, fp): key for sha, point, fp, key in self.db.execute(query)}

    def pristine_output(self, image_sha: str, fingerprint: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT output_json FROM pristine WHERE image_sha=? AND "
                              "fingerprint=?", (image_sha, fingerprint)).fetchone()
        return None if row is None else json.loads(row[0])

    def bitstream(self, cache_key: str) -> BitstreamRow | None:
        row = self.db.execute("SELECT * FROM bitstreams WHERE cache_key=?",
                              (cache_key,)).fetchone()
        return None if row is None else BitstreamRow(*row)

    def rows(self, table: str = "results") -> list[dict[str, Any]]:
        if table not in TABLES:
            raise ValueError(table)
        cursor = self.db.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor]

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every table that holds results, sorted and without timings: two runs of one grid
        (on any executor, resumed or not) must give equal snapshots."""
        return {table: sorted((tuple(sorted((k, v) for k, v in row.items() if k not in TIMINGS))
                               for row in self.rows(table)), key=repr)  # repr: None sorts too
                for table in ("results", "bitstreams", "pristine", "images")}

    def count(self, table: str = "results") -> int:
        if table not in TABLES:
            raise ValueError(table)
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _died_message(started_at: float, rows: int | None) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_at))
    committed = "an unknown number of" if rows is None else str(rows)
    return (f"died (started {when}; its process ended without finishing, e.g. killed) after "
            f"committing {committed} result rows")


def _insert(db: sqlite3.Connection, table: str, rows: Iterable[Any], *,
            replace: bool = False) -> None:
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    for row in rows:
        values = asdict(row)
        columns = ",".join(values)
        marks = ",".join("?" * len(values))
        db.execute(f"{verb} INTO {table} ({columns}) VALUES ({marks})", tuple(values.values()))
