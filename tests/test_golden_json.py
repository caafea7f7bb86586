"""Golden JSON for the command line's ``--json`` outputs (CompressAI's ``tests/expected`` habit).

Each test runs the real ``icm`` entry point in-process, normalises what legitimately varies and
compares the rest, values and key order, with ``tests/expected/<name>.json``:

* ``codecs.json``, ``machines.json``: ``icm codecs --json`` and ``icm machines --json``;
* ``codecs_unavailable.json``, ``machines_unavailable.json``: the same listings with every entry
  forced unavailable, which pins each reason line and install hint exactly;
* ``{encode,info,info_standard,decode}_{jpeg,hevc}.json``: ``icm encode --raw``, ``icm info`` on
  the ``.icm`` and on the standard file, ``icm decode``, for a 192x128 crop of a bundled photo;
* ``bench.json``: ``icm bench`` on three small photos x JPEG and WebP at four levels x the
  ``fake:blocks`` machine of ``tests/fake_machines.py``, with its report.

What the normaliser (:func:`normalise`) changes, and why:

* timings (keys ending ``_ms`` or ``_s``, and ``harness_share``, a ratio of timings) become
  ``"<timing>"``: they differ on every run;
* the test's temporary folder, wherever it appears in a string, becomes ``<tmp>``;
* ``library_version`` values become ``"<library version>"`` (``""`` stays ``""``): they change
  with every wheel (the ffmpeg build date lives in them too);
* keys naming dates, process ids or hosts (``created_at``, ``date``, ``pid``, ``host``,
  ``hostname``) become ``"<varies>"``; none of today's outputs has one;
* floats are rounded to 9 significant digits: BD fits may differ in the last bits between CPUs
  and BLAS builds, while any real change moves far more than that;
* listings drop entries whose class is defined under ``tests/`` (test plugins such as
  ``fake:blocks`` register themselves whenever any test module imports them);
* in ``codecs.json`` and ``machines.json`` the availability-dependent fields (``available``,
  ``reason``, ``library_version``) become ``"<availability>"``: CI may lack a library or a
  binary. Their consistency is asserted instead, and the ``*_unavailable.json`` files pin the
  reason text;
* numbers that follow from an encoder's exact output (``bytes``, ``bpp``, ``payload_bytes``,
  ``payload_bpp``, ``psnr_db``, BD values and intervals, BD notes, findings) are compared only
  where the codec's library version here equals the one the file was made with (its
  ``made_with``); on another build they are masked on both sides, with a warning.

To regenerate every file after an intended change (then review ``git diff tests/expected``)::

    ICM_REGENERATE_GOLDEN=1 python -m pytest -q tests/test_golden_json.py

Regenerating writes the files instead of comparing (a warning names each file written).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tests.test_cli import icm

import fake_machines  # noqa: F401  (registers fake:*, for the bench run)
from icm.codecs import CODECS
from icm.machines import MACHINES

TESTS = Path(__file__).resolve().parent
EXPECTED = TESTS / "expected"
REGENERATE = os.environ.get("ICM_REGENERATE_GOLDEN") == "1"

TIMING_KEYS = frozenset({"harness_share"})
VARYING_KEYS = frozenset({"created_at", "date", "pid", "host", "hostname"})
AVAILABILITY_KEYS = frozenset({"available", "reason", "library_version"})
#: values that follow from an encoder's exact bytes: compared only on the same library build
ENCODER_KEYS = frozenset({"bytes", "bpp", "payload_bytes", "payload_bpp", "psnr_db", "bd_rate",
                          "bd_metric", "bd_rate_ci", "bd_metric_ci", "notes", "findings"})
SIGNIFICANT_DIGITS = 9
FORCED = "forced unavailable by tests/test_golden_json.py"


def icm_json(monkeypatch, capsys, *args: object) -> Any:
    """Run the real entry point in-process with ``--json``; its parsed stdout (exit 0)."""
    code, out, err = icm(monkeypatch, capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


# -- normalising ---------------------------------------------------------------------------------
def normalise(value: Any, tmp: Path | None = None, key: str = "") -> Any:
    """``value`` with timings, temporary paths, library versions, dates/pids/hosts and float
    noise replaced as the module docstring says."""
    if key.endswith(("_ms", "_s")) or key in TIMING_KEYS:
        return "<timing>"
    if key in VARYING_KEYS:
        return "<varies>"
    if key == "library_version" and isinstance(value, str):
        return "<library version>" if value else ""
    if isinstance(value, dict):
        return {k: normalise(v, tmp, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(item, tmp, key) for item in value]
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, str) and tmp is not None:
        return value.replace(str(tmp), "<tmp>")
    return value


def masked(value: Any, keys: frozenset[str], marker: str) -> Any:
    """``value`` with every entry under one of ``keys`` replaced by ``marker``."""
    if isinstance(value, dict):
        return {k: marker if k in keys else masked(v, keys, marker) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item, keys, marker) for item in value]
    return value


def key_order(value: Any, path: str = "$") -> list[str]:
    """Every key path in document order: dict equality ignores order, JSON readers may not."""
    paths: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            paths.append(f"{path}.{k}")
            paths += key_order(v, f"{path}.{k}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += key_order(item, f"{path}[{index}]")
    return paths


def check_golden(name: str, output: Any, made_with: dict[str, str] | None = None) -> None:
    """Compare a normalised output with ``tests/expected/<name>.json`` (or write it when
    regenerating). ``made_with``: codec -> library version of the encoders behind it."""
    path = EXPECTED / f"{name}.json"
    made_with = made_with or {}
    if REGENERATE:
        EXPECTED.mkdir(exist_ok=True)
        document = {"made_with": made_with, "output": output}
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        warnings.warn(f"regenerated {path}", stacklevel=2)
        return
    if not path.is_file():
        pytest.fail(f"{path} is missing: run ICM_REGENERATE_GOLDEN=1 python -m pytest -q "
                    f"{Path(__file__).name}")
    golden = json.loads(path.read_text())
    expected = golden["output"]
    if golden["made_with"] != made_with:
        warnings.warn(f"{path.name} was made with {golden['made_with']}, this machine has "
                      f"{made_with}: encoder-dependent numbers are not compared", stacklevel=2)
        output = masked(output, ENCODER_KEYS, "<other encoder build>")
        expected = masked(expected, ENCODER_KEYS, "<other encoder build>")
    assert output == expected
    assert key_order(output) == key_order(expected)


def codec_versions(*codecs: str) -> dict[str, str]:
    return {name: CODECS[name].library_version() for name in codecs}


# -- listings ------------------------------------------------------------------------------------
def builtin(cls: type) -> bool:
    """False for a test plugin's class (``fake_machines``, ``fake_codecs``: files in tests/).
    Not ``__module__.startswith('icm.')``: the CompressAI codecs, made by ``type()`` under
    ``ABCMeta``, report ``__module__ == 'abc'``."""
    module = sys.modules.get(cls.__module__)
    source = getattr(module, "__file__", None)
    return source is None or not Path(source).resolve().is_relative_to(TESTS)


def builtin_codec_rows(rows: list[dict]) -> list[dict]:
    return [row for row in rows if builtin(CODECS[row["codec"]])]


def builtin_machine_rows(rows: list[dict]) -> list[dict]:
    return [row for row in rows if builtin(MACHINES[row["family"]])]


def assert_availability_consistent(row: dict, install_hint: str, versioned: bool) -> None:
    assert isinstance(row["available"], bool)
    if row["available"]:
        assert row["reason"] is None
        if versioned:
            assert row["library_version"]
        return
    reason = row["reason"]
    assert isinstance(reason, str) and reason and "\n" not in reason, row
    assert reason.endswith(install_hint.strip()), row
    if versioned:
        assert row["library_version"] == ""


def test_codecs_listing(monkeypatch, capsys):
    rows = builtin_codec_rows(icm_json(monkeypatch, capsys, "codecs"))
    for row in rows:
        assert_availability_consistent(row, CODECS[row["codec"]].install_hint, versioned=True)
    check_golden("codecs", masked(normalise(rows), AVAILABILITY_KEYS, "<availability>"))


def test_codecs_listing_when_nothing_is_available(monkeypatch, capsys):
    for cls in CODECS.values():
        monkeypatch.setattr(cls, "unavailable_reason", classmethod(lambda cls: FORCED))
    rows = builtin_codec_rows(icm_json(monkeypatch, capsys, "codecs"))
    assert rows and all(not row["available"] for row in rows)
    check_golden("codecs_unavailable", normalise(rows))


def test_machines_listing(monkeypatch, capsys):
    rows = builtin_machine_rows(icm_json(monkeypatch, capsys, "machines"))
    for row in rows:
        assert_availability_consistent(row, MACHINES[row["family"]].install_hint,
                                       versioned=False)
    check_golden("machines", masked(normalise(rows), AVAILABILITY_KEYS, "<availability>"))


def test_machines_listing_when_nothing_is_available(monkeypatch, capsys):
    for cls in MACHINES.values():
        monkeypatch.setattr(cls, "unavailable_reason", classmethod(lambda cls, spec: FORCED))
    rows = builtin_machine_rows(icm_json(monkeypatch, capsys, "machines"))
    assert rows and all(not row["available"] for row in rows)
    check_golden("machines_unavailable", normalise(rows))


# -- one file: encode, info, decode --------------------------------------------------------------
@pytest.mark.parametrize("point", ["jpeg@q60", "hevc@qp32"])
def test_encode_info_decode(monkeypatch, capsys, tmp_path, photo, point):
    codec = point.partition("@")[0]
    reason = CODECS[codec].unavailable_reason()
    if reason is not None:
        pytest.skip(f"{codec} unavailable here: {reason}")
    source = tmp_path / "photo.png"
    Image.fromarray(photo).save(source)
    coded = tmp_path / "photo.icm"
    made_with = codec_versions(codec)

    def golden(name: str, *args: object) -> dict:
        output = icm_json(monkeypatch, capsys, *args)
        check_golden(f"{name}_{codec}", normalise(output, tmp_path), made_with)
        return output

    encoded = golden("encode", "encode", source, "-c", point, "-o", coded, "--raw")
    standard = Path(encoded["raw_output"])
    assert standard.suffix == CODECS[codec].raw_suffix and standard.is_file()
    info = golden("info", "info", coded)
    assert info["bytes"] == coded.stat().st_size == info["payload_bytes"] + info["overhead_bytes"]
    golden("info_standard", "info", standard)
    golden("decode", "decode", coded, "-o", tmp_path / "back.png")
    assert np.asarray(Image.open(tmp_path / "back.png")).shape == photo.shape


# -- bench ---------------------------------------------------------------------------------------
BENCH_POINTS = ",".join(f"{codec}@q{q}" for codec in ("jpeg", "webp") for q in (20, 40, 70, 90))


def test_bench(monkeypatch, capsys, tmp_path, photo_folder):
    """Three photos x eight points x ``fake:blocks``, one worker, with the report."""
    out = tmp_path / "run"
    summary = icm_json(monkeypatch, capsys, "bench", "--images", photo_folder,
                       "--codecs", BENCH_POINTS, "--machines", "fake:blocks", "--out", out,
                       "--workers", "1")
    assert Path(summary["report"]["html"]).is_file()
    check_golden("bench", normalise(summary, tmp_path), codec_versions("jpeg", "webp"))
