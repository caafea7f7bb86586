"""icm bench on Ray: same ledger as the local executor, resume across executors, and killed
actors and coding workers that cost nothing but time. One 2-CPU local Ray instance serves the
module; its workers find the fake plugins through PYTHONPATH and the die markers by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fake_machines  # noqa: F401  (registers fake:*)
from bench_helpers import cache_files, ledger_contents, rows_in, small_config
from icm.bench import run_bench
from icm.bench.executors import UnknownExecutorError
from icm.errors import IcmError

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def ray_markers(tmp_path_factory) -> Path:
    """A private 2-CPU Ray for this module; returns the folder its die markers live in."""
    markers = tmp_path_factory.mktemp("markers")
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "ICM_FAKE_DIE_MARKER": str(markers / "machine"),
           "ICM_FAKE_CODEC_DIE_MARKER": str(markers / "codec")}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    yield markers
    ray.shutdown()


def test_ray_writes_the_same_ledger_and_cache_as_local(photo_folder, tmp_path, ray_markers):
    local = run_bench(small_config(photo_folder, tmp_path / "local"))
    on_ray = run_bench(small_config(photo_folder, tmp_path / "ray", executor="ray"))
    assert on_ray.rows_added == local.rows_added == 3 * 12
    assert on_ray.workers == 2  # the cluster's CPUs
    assert ledger_contents(tmp_path / "ray") == ledger_contents(tmp_path / "local")
    assert cache_files(tmp_path / "ray") == cache_files(tmp_path / "local")


def test_ray_degrades_the_shipped_reference_like_local(photo_folder, tmp_path, ray_markers):
    """Ray ships the clean reference; its workers degrade it and score against it exactly as
    local workers do (same pristine outputs, PSNRs and bitstreams)."""
    config = dict(codecs=("jpeg",), levels=("q30", "q60"), degrade=("noise@0.5", "clean"))
    run_bench(small_config(photo_folder, tmp_path / "local", **config))
    on_ray = run_bench(small_config(photo_folder, tmp_path / "ray", executor="ray", **config))
    assert on_ray.rows_added == 3 * 2 * 2
    assert ledger_contents(tmp_path / "ray") == ledger_contents(tmp_path / "local")
    assert cache_files(tmp_path / "ray") == cache_files(tmp_path / "local")


def test_a_run_resumes_across_executors(photo_folder, tmp_path, ray_markers):
    out = tmp_path / "run"
    run_bench(small_config(photo_folder, out, codecs=("jpeg",)))
    grown = run_bench(small_config(photo_folder, out, executor="ray"))
    assert (grown.rows_added, grown.pristine_added) == (3 * 6, 0)  # only the WebP rows
    again = run_bench(small_config(photo_folder, out))
    assert (again.rows_added, again.workers) == (0, 0)
    run_bench(small_config(photo_folder, tmp_path / "fresh"))
    assert ledger_contents(out) == ledger_contents(tmp_path / "fresh")


def test_a_killed_machine_actor_is_restarted_and_loses_nothing(photo_folder, tmp_path,
                                                               ray_markers):
    config = dict(machines=("fake:dies",), executor="ray")
    (ray_markers / "machine").write_text("die")
    outcome = run_bench(small_config(photo_folder, tmp_path / "ray", **config))
    assert not (ray_markers / "machine").exists(), "the actor never died"
    rows = rows_in(tmp_path / "ray")
    assert outcome.rows_added == len(rows) == 3 * 12
    assert len({(r["image_sha"], r["point"]) for r in rows}) == len(rows)
    run_bench(small_config(photo_folder, tmp_path / "local", machines=("fake:dies",)))
    assert ledger_contents(tmp_path / "ray") == ledger_contents(tmp_path / "local")


def test_a_killed_coding_worker_is_retried_and_loses_nothing(photo_folder, tmp_path,
                                                             ray_markers):
    import fake_codecs  # noqa: F401  (registers fake-dying-jpeg, for this test only)

    (ray_markers / "codec").write_text("die")
    outcome = run_bench(small_config(photo_folder, tmp_path / "ray", executor="ray",
                                     codecs=("fake-dying-jpeg",)))
    assert not (ray_markers / "codec").exists(), "no coding worker died"
    rows = rows_in(tmp_path / "ray")
    assert outcome.rows_added == len(rows) == 3 * 6
    assert len({(r["image_sha"], r["point"]) for r in rows}) == len(rows)


def test_cli_starts_its_own_ray_and_shuts_it_down(photo_folder, tmp_path):
    """The command line with no cluster running: a private Ray with --workers CPUs."""
    out = tmp_path / "run"
    command = [sys.executable, "-c",
               "import sys; sys.path.insert(0, sys.argv[1]); import fake_machines; "
               "from icm.cli.main import run; sys.argv = ['icm'] + sys.argv[2:]; run()",
               str(TESTS), "bench", "--images", str(photo_folder), "--codecs", "jpeg@q50",
               "--machines", "fake:blocks", "--out", str(out), "--executor", "ray",
               "--workers", "1", "--no-report", "--json"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"rows": 3' in done.stdout
    assert len(rows_in(out)) == 3


def test_without_ray_the_executor_is_a_one_line_error(photo_folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(UnknownExecutorError, match=r"pip install 'icm\[ray\]'"):
        run_bench(small_config(photo_folder, tmp_path / "run", executor="ray"))
    assert not (tmp_path / "run").exists()  # refused before any work


def test_an_address_nothing_listens_at_is_a_quick_one_line_error(photo_folder, tmp_path):
    import socket

    with socket.socket() as probe:  # a free port, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(IcmError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        run_bench(small_config(photo_folder, tmp_path / "run", executor="ray",
                               address=f"127.0.0.1:{port}"))
