"""icm bench: grid, ledger, resume, killed runs and workers, analysis, CLI errors."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fake_machines  # noqa: F401  (registers fake:*)
from bench_helpers import rows_in, small_config
from icm.bench import BenchConfig, ledger_path, run_bench
from icm.bench.analysis import bd_table, curves, stability
from icm.bench.ledger import Ledger
from icm.errors import IcmError
from icm.image import sample_photo

TESTS = Path(__file__).parent


def test_grid_fills_the_ledger_once(photo_folder, tmp_path):
    out = tmp_path / "run"
    outcome = run_bench(small_config(photo_folder, out))
    expected = 3 * (6 + 6)  # images x (jpeg ladder + webp ladder) x one machine
    assert outcome.rows_added == outcome.rows_total == expected
    rows = rows_in(out)
    keys = {(r["image_sha"], r["point"], r["fingerprint"]) for r in rows}
    assert len(keys) == expected
    for row in rows:
        assert row["bpp"] == 8 * row["bytes"] / (128 * 96)  # every byte of the .icm file
        assert 0 <= row["primary_value"] <= 1
    cache_files = list((out / "cache" / "bitstreams").rglob("*.icm"))
    assert len(cache_files) == 3 * 12


def test_rerunning_a_finished_grid_does_no_work(photo_folder, tmp_path):
    out = tmp_path / "run"
    run_bench(small_config(photo_folder, out))
    cache = {p: p.stat().st_mtime_ns for p in (out / "cache").rglob("*.icm")}
    again = run_bench(small_config(photo_folder, out))
    assert (again.rows_added, again.pristine_added, again.workers) == (0, 0, 0)
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").rglob("*.icm")} == cache


def test_a_stale_bitstream_is_recomputed_and_its_row_replaced(photo_folder, tmp_path):
    """A row read from a bitstream made by another encoder or tool version is redone."""
    out = tmp_path / "run"
    config = small_config(photo_folder, out, codecs=("jpeg@q30", "jpeg+saliency@q30"))
    run_bench(config)
    with Ledger(ledger_path(out)) as ledger, ledger.transaction() as db:
        db.execute("UPDATE results SET cache_key='stale', psnr=-1 WHERE point=? AND "
                   "image_sha=(SELECT MIN(image_sha) FROM results)", ("jpeg+saliency@q30",))
    again = run_bench(config)
    assert again.rows_added == 1
    rows = rows_in(out)
    assert len(rows) == 2 * 3 and all(row["cache_key"] != "stale" for row in rows)
    assert all(row["psnr"] > 20 for row in rows)


def test_adding_a_codec_computes_only_the_new_rows(photo_folder, tmp_path):
    out = tmp_path / "run"
    run_bench(small_config(photo_folder, out, codecs=("jpeg",)))
    grown = run_bench(small_config(photo_folder, out, codecs=("jpeg", "webp")))
    assert grown.rows_added == 3 * 6 and grown.pristine_added == 0


def test_fidelity_falls_with_rate(photo_folder, tmp_path):
    out = tmp_path / "run"
    run_bench(small_config(photo_folder, out, codecs=("jpeg@q5", "jpeg@q90")))
    by_point = {}
    for row in rows_in(out):
        by_point.setdefault(row["point"], []).append(row["primary_value"])
    assert min(by_point["jpeg@q90"]) > max(by_point["jpeg@q5"])


def test_bpp_targets_are_points(photo_folder, tmp_path):
    out = tmp_path / "run"
    run_bench(small_config(photo_folder, out, codecs=("jpeg",), bpp=(0.8, 1.6)))
    rows = rows_in(out)
    assert {r["point"] for r in rows} == {"jpeg@0.8bpp", "jpeg@1.6bpp"}
    for row in rows:
        assert 0.85 * row["target_bpp"] < row["bpp"] <= row["target_bpp"]


def test_killed_run_resumes_without_loss_or_duplicates(photo_folder, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-c",
               "import sys; sys.path.insert(0, sys.argv[1]); import fake_machines; "
               "from icm.cli.main import run; sys.argv = ['icm'] + sys.argv[2:]; run()",
               str(TESTS), "bench", "--images", str(photo_folder), "--codecs", "jpeg",
               "--machines", "fake:slow", "--out", str(out), "--workers", "1", "--no-report"]
    env = {**os.environ, "ICM_FAKE_SLEEP": "0.4"}
    process = subprocess.Popen(command, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    database = ledger_path(out)
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and committed < 6:
        time.sleep(0.3)
        if database.exists():
            try:
                with sqlite3.connect(database, timeout=5) as db:
                    committed = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 6 <= committed < 18, "the run finished or never started before the kill"
    before = {(r["image_sha"], r["point"]): r["created_at"] for r in rows_in(out)}
    os.environ["ICM_FAKE_SLEEP"] = "0"
    try:
        outcome = run_bench(small_config(photo_folder, out, codecs=("jpeg",),
                                         machines=("fake:slow",), workers=1))
    finally:
        del os.environ["ICM_FAKE_SLEEP"]
    after = rows_in(out)
    assert len(after) == 18 and outcome.rows_added == 18 - len(before)
    survivors = {(r["image_sha"], r["point"]): r["created_at"] for r in after}
    assert all(survivors[key] == created for key, created in before.items())


def test_a_dead_worker_loses_no_rows(photo_folder, tmp_path, monkeypatch):
    out = tmp_path / "run"
    marker = tmp_path / "die-once"
    monkeypatch.setenv("ICM_FAKE_DIE_MARKER", str(marker))
    config = small_config(photo_folder, out, codecs=("jpeg",), machines=("fake:dies",),
                          workers=1)
    run_bench(config)  # pristine outputs and all rows, no death yet
    extra = small_config(photo_folder, out, codecs=("jpeg", "webp"), machines=("fake:dies",),
                         workers=1)
    marker.write_text("die")
    with pytest.raises(IcmError, match="a worker process died"):
        run_bench(extra)
    survived = len(rows_in(out))
    assert 18 <= survived < 36  # everything committed before the death is there
    outcome = run_bench(extra)
    assert len(rows_in(out)) == 36 and outcome.rows_added == 36 - survived


def test_unreadable_image_is_skipped_noted_and_the_rest_go_on(photo_folder, tmp_path):
    (photo_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "run"
    outcome = run_bench(small_config(photo_folder, out, codecs=("jpeg@q50",)))
    assert outcome.rows_total == 3
    assert any("broken.png" in problem for problem in outcome.skipped)
    with Ledger(ledger_path(out)) as ledger:
        assert any("broken.png" in n["subject"] + n["message"] for n in ledger.rows("notes"))


@pytest.mark.parametrize("overrides, message", [
    ({"machines": ("classify:nope-net",)}, "nope-net"),
    ({"machines": ("warp:drive",)}, "unknown machine family"),
    ({"codecs": ("mpeg2",)}, "unknown codec"),
    ({"executor": "dask"}, "unknown executor 'dask'"),
    ({"levels": ("qp30",), "codecs": ("avif",)}, "avif: level 'qp30'"),
])
def test_bad_arguments_fail_before_any_work(photo_folder, tmp_path, overrides, message):
    with pytest.raises(IcmError, match=message):
        run_bench(small_config(photo_folder, tmp_path / "run", **overrides))
    assert not ledger_path(tmp_path / "run").exists()


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(IcmError, match="no image files"):
        run_bench(small_config(tmp_path / "empty", tmp_path / "run"))


def test_analysis_curves_bd_and_stability(photo_folder, tmp_path):
    out = tmp_path / "run"
    run_bench(small_config(photo_folder, out))
    rows = rows_in(out)
    per_codec = curves(rows, "fake:blocks")
    assert set(per_codec) == {"jpeg", "webp"}
    assert all(p.images == 3 for points in per_codec.values() for p in points)
    entries = bd_table(rows, "jpeg")
    assert [(e.machine, e.codec) for e in entries] == [("fake:blocks", "webp")]
    with Ledger(ledger_path(out)) as ledger:
        assert stability(ledger.rows("pristine")) == {"fake:blocks": {"stable": 3, "total": 3}}


def test_cli_bench_json_and_report(photo_folder, tmp_path, monkeypatch, capsys):
    from icm.cli.main import run

    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["icm", "bench", "--images", str(photo_folder),
                                      "--codecs", "jpeg,webp", "--machines", "fake:blocks",
                                      "--out", str(out), "--json"])
    with pytest.raises(SystemExit) as exit_:
        run()
    assert exit_.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 36
    assert Path(summary["report"]["html"]).exists()


def test_default_bench_on_two_images(tmp_path):
    """The embedded default (real codecs, real offline machines, its own points) on the
    first two images: two views of the first photo."""
    from icm.bench.grid import DEFAULT_CODECS, DEFAULT_LADDERS, default_codecs

    out = tmp_path / "run"
    outcome = run_bench(BenchConfig(limit=2, codecs=default_codecs(), out=out, workers=2))
    rows = rows_in(out)
    assert {r["image_id"].partition("#")[0] for r in rows} == {"samples/astronaut"}
    machines = {r["machine"] for r in rows}
    assert "classify:efficientnet-lite0" in machines
    points = {r["point"] for r in rows}
    assert {p.partition("@")[0] for p in points} == set(DEFAULT_CODECS)
    assert outcome.rows_total == len(rows) == 2 * len(points) * len(machines)
    per_point: dict[str, list[float]] = {}
    for row in rows:
        if row["machine"].startswith("classify"):
            per_point.setdefault(row["point"], []).append(row["primary_value"])
    for codec in DEFAULT_CODECS:  # the machine's answer moves across each codec's range
        ladder = [f"{codec}@{level}" for level in DEFAULT_LADDERS[codec]]  # coarse to fine
        coarsest, finest = (sum(per_point[p]) / 2 for p in (ladder[0], ladder[-1]))
        assert finest > coarsest + 0.1, codec
    from icm.bench.report import write_report

    assert write_report(out).html.stat().st_size > 10_000


def test_analysis_uses_the_newest_fingerprint_only():
    from icm.bench.analysis import current_rows

    old = {"machine": "m", "fingerprint": "v1", "created_at": 1.0}
    new = {"machine": "m", "fingerprint": "v2", "created_at": 2.0}
    other = {"machine": "n", "fingerprint": "v9", "created_at": 3.0}
    assert current_rows([old, new, other], "m") == [new]
    assert current_rows([old, other], "x") == []


def test_bd_intervals_cover_the_estimate_and_shrink_with_more_images():
    """Bootstrap intervals: around the point estimate, narrower when images agree more."""
    from icm.bench.analysis import bd_table

    def rows(images: int, spread: float) -> list[dict]:
        generator = __import__("numpy").random.default_rng(1)
        table = []
        for image in range(images):
            noise = spread * generator.standard_normal()
            for codec, slope in (("jpeg", 2.0), ("webp", 4.0)):
                for level, bpp in enumerate((0.2, 0.4, 0.8, 1.6)):
                    fidelity = min(1.0, max(0.0, 1 - 0.9 * 2.718 ** (-slope * bpp) + noise))
                    table.append({"machine": "m", "fingerprint": "f", "created_at": 0.0,
                                  "image_sha": f"{image:03d}", "image_id": f"{image:03d}",
                                  "point": f"{codec}@{level}",
                                  "codec": codec, "bpp": bpp, "primary_value": fidelity,
                                  "psnr": 30.0, "accuracy_json": None})
        return table

    entry = bd_table(rows(24, 0.02), "jpeg")[0]
    low, high = entry.bd_rate_ci
    assert low <= entry.bd_rate <= high < 0  # webp is clearly better: the interval says so
    wide = bd_table(rows(6, 0.02), "jpeg")[0].bd_rate_ci
    assert (wide[1] - wide[0]) > (high - low)
    assert bd_table(rows(24, 0.02), "jpeg", bootstrap=0)[0].bd_rate_ci is None


def test_bd_on_a_lower_is_better_score_negates_it():
    """``metric='-kl'``: the curve rises with rate, so the codec with less divergence at equal
    bits saves bits, and BD-fidelity comes back in (negated) KL units."""
    import json

    from icm.bench.analysis import bd_table

    table = []
    for image in range(4):
        for codec, scale in (("jpeg", 1.0), ("webp", 0.5)):
            for level, bpp in enumerate((0.2, 0.4, 0.8, 1.6)):
                kl = scale / bpp  # webp: half the divergence at every rate
                table.append({"machine": "m", "fingerprint": "f", "created_at": 0.0,
                              "image_sha": f"{image}", "image_id": f"{image}",
                              "point": f"{codec}@{level}", "codec": codec, "bpp": bpp,
                              "primary_value": 0.5, "psnr": 30.0, "accuracy_json": None,
                              "fidelity_json": json.dumps({"kl": kl})})
    entry = bd_table(table, "jpeg", metric="-kl", bootstrap=0)[0]
    assert entry.bd_rate == pytest.approx(-50.0, abs=1.0)  # kl = 1/bpp vs 0.5/bpp
    assert entry.bd_metric > 0


def _view_rows(photos: int, views: int, spread: float, seed: int = 1) -> list[dict]:
    """Rows where every view of a photo shares that photo's noise (views are not independent)."""
    generator = __import__("numpy").random.default_rng(seed)
    table = []
    for photo in range(photos):
        noise = spread * generator.standard_normal()
        for view in range(views):
            image_id = f"p{photo}.png#224x224+{view}+0"
            for codec, slope in (("jpeg", 2.0), ("webp", 4.0)):
                for level, bpp in enumerate((0.2, 0.4, 0.8, 1.6)):
                    fidelity = min(1.0, max(0.0, 1 - 0.9 * 2.718 ** (-slope * bpp) + noise))
                    table.append({"machine": "m", "fingerprint": "f", "created_at": 0.0,
                                  "image_sha": f"{photo:03d}-{view}", "image_id": image_id,
                                  "point": f"{codec}@{level}", "codec": codec, "bpp": bpp,
                                  "primary_name": "agreement", "primary_value": fidelity,
                                  "psnr": 30.0,
                                  "accuracy_json": None})
    return table


def test_bd_intervals_resample_whole_photos_not_their_views():
    """Six views of four photos carry four photos' worth of evidence: drawn one by one, the
    views would give an interval as narrow as 24 independent images."""
    from icm.bench.analysis import bd_table

    rows = _view_rows(4, 6, 0.05)
    grouped = bd_table(rows, "jpeg")[0].bd_rate_ci
    for row in rows:
        row["image_id"] = row["image_sha"]  # as if every view were a photo of its own
    independent = bd_table(rows, "jpeg")[0].bd_rate_ci
    assert grouped[1] - grouped[0] > 1.5 * (independent[1] - independent[0])


def test_a_single_point_curve_says_so_instead_of_saturation():
    from icm.bench.analysis import bd_table

    rows = [row for row in _view_rows(4, 2, 0.01) if row["point"].endswith("@2")]
    entry = bd_table(rows, "jpeg")[0]
    assert entry.bd_rate is None
    assert entry.notes == ["a curve has a single point: no BD value (run two levels or more)"]


def test_findings_say_what_the_run_found_in_one_sentence_per_machine():
    from icm.bench.analysis import findings

    sentence = findings(_view_rows(6, 4, 0.01), "jpeg")["m"]
    assert sentence.startswith("m (")
    assert "24 views of 6 photos" in sentence
    assert re.search(r"webp needs \d+% \[\d+, \d+\] fewer bits than jpeg", sentence)
    same = [dict(row, codec="webp2", point=row["point"].replace("jpeg", "webp2"))
            for row in _view_rows(6, 4, 0.01) if row["codec"] == "jpeg"]
    mixed = findings(_view_rows(6, 4, 0.01) + same, "jpeg")["m"]
    assert "webp2 cannot be told apart from jpeg" in mixed


def test_the_default_points_span_every_default_codec_and_bare_names_take_levels():
    from icm.bench.grid import DEFAULT_CODECS, DEFAULT_LADDERS, default_codecs
    from icm.pipeline import parse_points as expand_points

    points = expand_points(default_codecs())
    assert {p.codec for p in points} == set(DEFAULT_CODECS)  # all five work here
    assert len(points) == sum(len(DEFAULT_LADDERS[c]) for c in DEFAULT_CODECS)
    assert default_codecs(levels=("q20",)) == DEFAULT_CODECS
    assert default_codecs(bpps=(0.1,)) == DEFAULT_CODECS


def test_views_default_to_six_for_the_samples_only():
    from icm.bench.runner import DEFAULT_VIEWS, views_for

    assert views_for("samples", 0) == DEFAULT_VIEWS and views_for("photos/", 0) == 1
    assert views_for("samples", 2) == 2 and views_for("photos/", 3) == 3


def test_workers_run_their_math_libraries_on_one_thread(monkeypatch):
    """One thread per worker keeps float sums in one order: the same rows for any worker count
    or executor. ONNX Runtime ignores OMP_NUM_THREADS, so the OCR machine is told directly."""
    import importlib.util

    from icm.bench.worker import WorkerSetup, init_worker
    from icm.machines.base import THREADS_VARIABLE, math_threads

    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                     THREADS_VARIABLE):
        monkeypatch.delenv(variable, raising=False)
    assert math_threads() is None
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep this process's own
    init_worker(WorkerSetup(machine_names=(), modules=(), truths=(), max_pixels=10**6,
                            threads=1))
    assert math_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        pytest.skip("rapidocr_onnxruntime is not installed")
    from icm.machines import get_machine

    ocr = get_machine("ocr:rapidocr")
    ocr.predict([sample_photo("astronaut")[:64, :64]])
    engine = ocr.engine._engine
    assert engine.text_det.infer.session.get_session_options().intra_op_num_threads == 1


def test_recovered_share_interval_covers_the_share_and_narrows_when_images_agree():
    from icm.bench.analysis import recovered_share_interval

    def rows(recoveries: list[float]) -> list[dict]:
        table = []
        for index, recovered in enumerate(recoveries):
            for machine, fidelity in (("m", 0.5), ("m+adapter=a.safetensors", 0.5 + recovered)):
                table.append({"machine": machine, "fingerprint": "f", "created_at": 1.0,
                              "image_sha": f"img{index}", "image_id": f"img{index}",
                              "point": "jpeg@q5", "codec": "jpeg",
                              "primary_value": fidelity})
        return table

    same = recovered_share_interval(rows([0.25] * 20), "m+adapter=a.safetensors")
    assert same == pytest.approx((0.5, 0.5, 0.5))  # every image recovers half its loss
    spread = recovered_share_interval(rows([0.0, 0.5] * 10), "m+adapter=a.safetensors")
    assert spread[0] == pytest.approx(0.5) and spread[1] < 0.5 < spread[2]
    assert recovered_share_interval(rows([0.25] * 20), "m+adapter=a.safetensors",
                                    {"hevc"}) is None  # no points of that codec: nothing lost
