"""One bench per run folder: the OS lock, refusing a second bench, and marking a run that died."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fake_machines  # noqa: F401  (registers fake:*)
from bench_helpers import rows_in, small_config
from icm.bench import ledger_path, run_bench
from icm.bench import runner as runner_module
from icm.bench.ledger import Ledger
from icm.bench.runner import lock_path
from icm.errors import IcmError

TESTS = Path(__file__).parent
CLI = ("import sys; sys.path.insert(0, sys.argv[1]); import fake_machines; "
       "from icm.cli.main import run; sys.argv = ['icm'] + sys.argv[2:]; run()")
HOLD = ("import sys, time; from icm.bench.runner import RunFolderLock; "
        "RunFolderLock(sys.argv[1]).__enter__(); print('locked', flush=True); time.sleep(120)")

pytestmark = pytest.mark.skipif(runner_module.fcntl is None, reason="no fcntl: nothing locks")


def _bench_command(photo_folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", CLI, str(TESTS), "bench", "--images", str(photo_folder),
            "--codecs", "jpeg", "--machines", "fake:slow", "--out", str(out), "--workers", "1",
            "--no-report"]


def _query(out: Path, sql: str) -> list[tuple]:
    """Read the ledger of a bench that may be running (or not have created it yet)."""
    if not ledger_path(out).exists():
        return []
    try:
        with sqlite3.connect(ledger_path(out), timeout=5) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:  # tables not created yet
        return []


def _wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _runs(out: Path) -> list[dict]:
    with Ledger(ledger_path(out)) as ledger:
        return sorted(ledger.rows("runs"), key=lambda run: run["id"])


def test_second_bench_is_refused_and_a_killed_run_is_marked_died(photo_folder, tmp_path,
                                                                  monkeypatch):
    """A real second ``icm bench`` on a folder in use exits 2 with one line naming the first
    bench's pid; the first, killed with SIGKILL mid-way, is marked died (with the rows it
    committed) by the next run, which completes the grid with nothing lost or duplicated."""
    out = tmp_path / "run"
    first = subprocess.Popen(_bench_command(photo_folder, out), start_new_session=True,
                             env={**os.environ, "ICM_FAKE_SLEEP": "0.8"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _query(out, "SELECT id FROM runs WHERE status='running'"),
                  "the first bench to start")
        second = subprocess.run(_bench_command(photo_folder, out), capture_output=True,
                                text=True, timeout=120, env={**os.environ, "COLUMNS": "60"})
        assert first.poll() is None, "the first bench ended before the second tried"
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith(f"icm: error: {out}: in use by another icm bench "
                                   f"(pid {first.pid}, started ")
        _wait_for(lambda: _query(out, "SELECT COUNT(*) FROM results")[0][0] >= 6,
                  "the first bench to commit a unit")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    committed = len(rows_in(out))
    assert 6 <= committed < 18, "the run finished before the kill"
    assert [(r["status"], r["rows_added"]) for r in _runs(out)] == [("running", committed)]
    assert len(_runs(out)) == 1  # the refused bench recorded no run
    before = {(r["image_sha"], r["point"]): r["created_at"] for r in rows_in(out)}

    monkeypatch.setenv("ICM_FAKE_SLEEP", "0")
    outcome = run_bench(small_config(photo_folder, out, codecs=("jpeg",),
                                     machines=("fake:slow",), workers=1))
    assert outcome.died == [f"run #1: {_note(out, 'run #1')}"]
    assert f"after committing {committed} result rows" in outcome.died[0]
    runs = _runs(out)
    assert [(r["status"], r["rows_added"]) for r in runs] == [
        ("died", committed), ("finished", 18 - committed)]
    after = rows_in(out)
    assert len(after) == 18 == len({(r["image_sha"], r["point"], r["fingerprint"])
                                    for r in after})
    survivors = {(r["image_sha"], r["point"]): r["created_at"] for r in after}
    assert all(survivors[key] == created for key, created in before.items())
    from icm.bench.report import write_report

    assert outcome.died[0] in write_report(out).markdown.read_text()  # in the report's notes


def _note(out: Path, subject: str) -> str:
    with Ledger(ledger_path(out)) as ledger:
        (message,) = [n["message"] for n in ledger.rows("notes") if n["subject"] == subject]
    return message


def test_the_lock_dies_with_its_process_and_never_blocks_reports(photo_folder, tmp_path):
    """Another process holding the lock refuses ``run_bench`` (its pid in the message) but not
    a report; once that process is killed the lock is free, whatever the file still says."""
    out = tmp_path / "run"
    config = small_config(photo_folder, out, codecs=("jpeg@q50",), workers=1)
    run_bench(config)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(IcmError, match=rf"in use by another icm bench \(pid {holder.pid}, "
                                           r"started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)"):
            run_bench(config)
        from icm.bench.report import write_report

        assert write_report(out).markdown.exists()  # reports read; they take no lock
    finally:
        holder.kill()
        holder.wait()
    again = run_bench(config)  # the holder is gone: its lock went with it
    assert (again.rows_added, again.workers, again.died) == (0, 0, [])
    assert [r["status"] for r in _runs(out)] == ["finished", "finished"]
    assert lock_path(out).is_file() and len(rows_in(out)) == 3


def test_a_free_lock_file_left_behind_does_not_disturb_resume(photo_folder, tmp_path):
    """The lock file stays in the folder after every run; the next run takes it over."""
    out = tmp_path / "run"
    run_bench(small_config(photo_folder, out, codecs=("jpeg@q50",), workers=1))
    assert lock_path(out).read_text().startswith('{"pid": ')
    grown = run_bench(small_config(photo_folder, out, codecs=("jpeg@q50", "jpeg@q90"),
                                   workers=1))
    assert (grown.rows_added, grown.died) == (3, [])
    assert [(r["status"], r["rows_added"]) for r in _runs(out)] == [
        ("finished", 3), ("finished", 3)]


def test_without_fcntl_the_bench_runs_unlocked_and_marks_nothing(photo_folder, tmp_path,
                                                                    monkeypatch):
    """On a platform without ``fcntl`` a running entry may belong to a live bench: kept."""
    out = tmp_path / "run"
    with Ledger(ledger_path(out)) as ledger:
        ledger.start_run({})
    monkeypatch.setattr(runner_module, "fcntl", None)
    outcome = run_bench(small_config(photo_folder, out, codecs=("jpeg@q50",), workers=1))
    assert outcome.rows_total == 3 and outcome.died == []
    assert [r["status"] for r in _runs(out)] == ["running", "finished"]
    assert not lock_path(out).exists()


def test_a_run_recorded_without_a_row_count_died_after_an_unknown_number(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        old = ledger.start_run({})
        ledger.db.execute("UPDATE runs SET rows_added=NULL WHERE id=?", (old,))
        ledger.db.commit()
        finished = ledger.start_run({})
        ledger.finish_run(finished, 1.0, 1.0, 5, "finished", 1)
        (note,) = ledger.mark_died()
        assert note.startswith(f"run #{old}: died (started ")
        assert "after committing an unknown number of result rows" in note
        assert [(r["status"], r["rows_added"]) for r in ledger.rows("runs")] == [
            ("died", None), ("finished", 5)]
        assert ledger.mark_died() == []
