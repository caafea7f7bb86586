"""``icm report``: a small real run folder (real bitstreams, synthetic machine scores) -> report.

The machines are made up so the expected answers are known: webp's fidelity rises twice as fast
with bpp as jpeg's, so its BD-rate against jpeg must come out negative and its BD-metric
positive. The bitstreams, cache layout and image sources are real, so the worst-case crops
exercise the same decode path a real run's report does.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icm.bench.ledger import BitstreamRow, Ledger, PristineRow, ResultRow
from icm.bench.report import CROP_SIDE, write_report
from icm.bench.runner import ledger_path
from icm.bench.worker import cache_key, cache_path
from icm.codecs import get_codec
from icm.errors import IcmError
from icm.fileio import write_atomic
from icm.image import sample_photo
from icm.image.datasets import content_hash
from icm.metrics import psnr
from icm.pipeline import encode_image, parse_point

POINTS = [parse_point(f"{codec}@q{q}") for codec in ("jpeg", "webp") for q in (10, 30, 50, 80)]
# machine -> (fidelity slope per codec, reports ground-truth accuracy?)
MACHINES = {
    "classifier": ({"jpeg": 3.0, "webp": 6.0}, False),
    "reader": ({"jpeg": 2.0, "webp": 4.0}, True),
}
UNSTABLE = ("classifier", "small")  # the one pristine output that differs when predicted twice


def _images() -> dict[str, np.ndarray]:
    photo = sample_photo("astronaut")
    # "wide" is wider than the crop side, so its crop is cut; "small" is shown whole.
    return {
        "wide": np.ascontiguousarray(photo[40:240, 100:420]),
        "small": np.ascontiguousarray(photo[300:420, 200:360]),
    }


def _result(name, sha, point, bitstream_row, pixels, machine) -> ResultRow:
    slopes, has_accuracy = MACHINES[machine]
    bpp = 8 * bitstream_row.bytes / (pixels.shape[0] * pixels.shape[1])
    fidelity = 1 - math.exp(-bpp * slopes[point.codec])
    return ResultRow(
        image_sha=sha,
        point=str(point),
        fingerprint=f"{machine}-v1",
        image_id=name,
        kind="photo",
        machine=machine,
        codec=point.codec,
        level=point.level or "",
        target_bpp=None,
        bytes=bitstream_row.bytes,
        bpp=bpp,
        psnr=bitstream_row.psnr,
        primary_name="agreement",
        primary_value=fidelity,
        fidelity_json=json.dumps({"agreement": fidelity}),
        accuracy_json=json.dumps({"accuracy": 0.9 * fidelity}) if has_accuracy else None,
        encode_ms=1.0,
        decode_ms=1.0,
        predict_ms=2.0,
        versions_json=json.dumps({"codec": "test"}),
        cache_key=bitstream_row.cache_key,
        created_at=time.time(),
    )


def _bitstream(pixels, sha, point, cache_dir: Path) -> BitstreamRow:
    codec = get_codec(point.codec)
    encoded = encode_image(pixels, point)
    bitstream, data = encoded.bitstream, encoded.data
    key = cache_key(sha, point, codec.library_version())
    write_atomic(cache_path(cache_dir, key), data)
    return BitstreamRow(
        cache_key=key,
        image_sha=sha,
        point=str(point),
        level=bitstream.level,
        bytes=len(data),
        payload_bytes=len(bitstream.data),
        psnr=psnr(pixels, codec.decode(bitstream)),
        encode_ms=1.0,
        decode_ms=1.0,
        codec_version=codec.library_version(),
        created_at=time.time(),
    )


def _pristine(sha, name, machine) -> PristineRow:
    accuracy = json.dumps({"accuracy": 0.95}) if MACHINES[machine][1] else None
    return PristineRow(
        image_sha=sha,
        machine=machine,
        fingerprint=f"{machine}-v1",
        output_json="{}",
        predict_ms=2.0,
        stable=int((machine, name) != UNSTABLE),
        truth_json=None,
        accuracy_json=accuracy,
        created_at=time.time(),
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    run = root / "run"
    with Ledger(ledger_path(run)) as ledger:
        run_id = ledger.start_run({"workers": 2, "max_pixels": 1_000_000})
        added = 0
        for name, pixels in _images().items():
            source = root / f"{name}.png"
            Image.fromarray(pixels).save(source)
            sha = content_hash(pixels)
            ledger.add_image(sha, name, "photo", pixels.shape[1], pixels.shape[0], str(source))
            for machine in MACHINES:
                ledger.add_pristine(_pristine(sha, name, machine))
            for point in POINTS:
                row = _bitstream(pixels, sha, point, run / "cache" / "bitstreams")
                results = [_result(name, sha, point, row, pixels, m) for m in MACHINES]
                added += ledger.add_unit([row], results)
        ledger.note("samples", "skipped broken.png: not an image")
        ledger.finish_run(
            run_id, wall_s=10.0, work_s=15.0, rows_added=added, status="finished", workers=2
        )
    return run


@pytest.fixture(scope="module")
def report(run_dir):
    return write_report(run_dir, anchor="jpeg", worst=4)


def _png(source) -> Image.Image:
    """Open, check and close a PNG (an unclosed file is an error under this suite's filters)."""
    with Image.open(source) as image:
        image.load()
        return image


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(heading)
    end = markdown.find("\n## ", start + len(heading))
    return markdown[start:] if end < 0 else markdown[start:end]


def test_every_file_is_written(report, run_dir):
    assert report.folder == run_dir / "report"
    assert set(report.plots) == set(MACHINES)
    assert report.psnr_plot == run_dir / "report" / "plots" / "psnr.png"
    assert report.parquet is not None
    for path in report.all():
        assert path.is_file() and path.stat().st_size > 0, path
    for path in [*report.plots.values(), report.psnr_plot]:
        assert _png(path).format == "PNG"


def test_markdown_has_each_machine_bd_stability_and_notes(report):
    markdown = report.markdown.read_text()
    assert markdown.startswith("# icm report: run")
    # share = 1 - 15 / (10 x 2)
    assert "## Run summary" in markdown and "(wall x workers): 25.0%" in markdown
    for machine in MACHINES:
        section = _section(markdown, f"## Machine: {machine}")
        assert f"plots/{machine}.png" in section
        webp = next(line for line in section.splitlines() if line.startswith("| webp | jpeg |"))
        rate, gain = re.findall(r"\| ([+-]\d+\.\d+)(?: %)? ", webp)[:2]
        assert float(rate) < -10, webp  # webp saves bits at equal fidelity
        assert float(gain) > 0, webp
        assert "| jpeg | jpeg@q10 |" in section  # the curve table
    assert "Stability: 1/2 pristine outputs identical" in _section(markdown, "## Machine: class")
    reader = _section(markdown, "## Machine: reader")
    assert "Stability: 2/2 pristine outputs identical" in reader
    assert "Ground-truth accuracy on the pristine images: 0.9500" in reader
    assert "Ground-truth accuracy |" in reader  # the curve table gains the accuracy column
    assert "samples: skipped broken.png: not an image" in _section(markdown, "## Notes")
    assert "## Rate-PSNR" in markdown


def test_the_first_screen_says_what_the_run_found_per_machine(report):
    markdown = report.markdown.read_text()
    found = _section(markdown, "## What this run found")
    assert markdown.index("## What this run found") < markdown.index("## Run summary")
    bullets = [line for line in found.splitlines() if line.startswith("- ")]
    assert [line.split(" (")[0][2:] for line in bullets] == list(MACHINES)
    assert all(re.search(r"webp needs \d+% fewer bits than jpeg", line)  # two images:
               and line.endswith("(too few photos for an interval).")  # no interval
               for line in bullets), bullets


def test_html_is_self_contained(report):
    page = report.html.read_text()
    assert page.startswith("<!doctype html>")
    assert 'src="http' not in page and "<script" not in page and "<link" not in page
    figures = len(report.plots) + 1 + len(report.crops)
    inlined = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(inlined) >= figures
    for data in inlined:
        assert _png(io.BytesIO(base64.b64decode(data))).format == "PNG"
    assert "Machine: classifier" in page and "Stability: 1/2" in page
    assert "skipped broken.png" in page


def test_csv_and_parquet_hold_every_row(report, run_dir):
    import pyarrow.parquet as pq

    with Ledger(ledger_path(run_dir)) as ledger:
        count = ledger.count("results")
    with report.csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == count == len(POINTS) * 2 * len(MACHINES)
    assert json.loads(rows[0]["fidelity_json"])["agreement"] == pytest.approx(
        float(rows[0]["primary_value"])
    )
    table = pq.read_table(report.parquet)
    assert table.num_rows == count
    assert table.column_names == list(rows[0])


def test_worst_case_crops_are_side_by_side(report):
    assert report.crops
    widths = {"wide": 2 * CROP_SIDE, "small": 2 * 160}  # wide is cut, small shown whole
    for path in report.crops:
        assert path.parent.name == "crops"
        name = path.name.split("-")[0]
        assert _png(path).size[0] == widths[name], path
    worst = _section(report.markdown.read_text(), "## Machine: classifier")
    assert "| 1 | " in worst and "jpeg@q10" in worst and "crops/" in worst


def test_missing_cache_and_source_are_reported_not_fatal(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report"))
    shutil.rmtree(copy / "cache")
    with sqlite3.connect(ledger_path(copy)) as db:
        db.execute(
            "UPDATE images SET source=? WHERE image_id='small'", (str(tmp_path / "gone.png"),)
        )
    db.close()
    paths = write_report(copy, worst=16)  # every row, so both images are among them
    markdown = paths.markdown.read_text()
    assert paths.crops == ()
    assert "| wide | jpeg@q10 |" in markdown
    assert "skipped: bitstream not in the cache (cache/bitstreams/" in markdown
    assert "skipped: cannot reload" in markdown and "gone.png" in markdown
    assert "crop of small at jpeg@q10 skipped" in _section(markdown, "## Notes")
    assert paths.html.is_file()


def test_a_folder_without_a_ledger_is_an_icm_error(tmp_path):
    with pytest.raises(IcmError, match="no ledger here: run icm bench first"):
        write_report(tmp_path)
    assert not ledger_path(tmp_path).exists()  # reporting must not create a ledger


def test_a_report_without_matplotlib_is_a_one_line_error_naming_the_extra(run_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(IcmError, match=r"matplotlib, which is not installed: "
                                       r"pip install 'icm\[bench\]'"):
        write_report(run_dir)


def test_an_empty_ledger_still_gets_a_report(tmp_path):
    with Ledger(ledger_path(tmp_path)) as ledger:
        ledger.note("samples", "no readable images")
    paths = write_report(tmp_path)
    markdown = paths.markdown.read_text()
    assert "no result rows in this ledger yet" in markdown
    assert "no readable images" in markdown
    assert paths.plots == {} and paths.crops == ()
    assert paths.csv.read_text().count("\n") == 1  # the header only
    if paths.parquet is not None:
        import pyarrow.parquet as pq

        assert pq.read_table(paths.parquet).num_rows == 0
    assert "no result rows" in paths.html.read_text()
