"""Fuzzing the decoder: every hostile file (``tests/hostile_cases.py``) is refused in one line or
decodes to what an honest file gives; none escapes to a path, hangs, crashes or shows a
picture of the wrong size.

A few cases per family run in this process (a decode raising anything but an ``IcmError`` is a
traceback on the command line); the cases that declare huge pictures, and a sample of the
rest, run the real ``icm decode`` in a process with a memory limit. The long run with many
cases per family is ``benchmarks/fuzz_decode.py``.
"""

from __future__ import annotations

import pytest
from tests.hostile_cases import (
    FAMILIES,
    Canary,
    cases,
    failures_text,
    fuzzed_codecs,
    honest,
    run_cases,
    run_in_process,
    run_subprocess,
)

SEED = 20240611
#: cases per family: one splice per codec, the rest the first (most telling) variants
COUNTS = {"splice": 17, "truncate": 16, "size_lie": 14, "field_path": 14, "format_lie": 12,
          "icm_lic": 10, "header_splice": 17}
TIMEOUT = 60


@pytest.fixture(scope="module")
def canary(tmp_path_factory) -> Canary:
    if not fuzzed_codecs():
        pytest.skip("no codec encodes here")
    return Canary(tmp_path_factory.mktemp("fuzz"), SEED)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hostile_files_are_refused_in_one_line_or_decode_honestly(family, canary):
    family_cases = cases(family, COUNTS[family], SEED, canary)
    if not family_cases:
        pytest.skip(f"no codec for {family} encodes here")
    results = run_cases(family_cases, canary, in_process=True, timeout=TIMEOUT)
    assert len(results) == len(family_cases)
    bad = [result for result in results if not result.ok]
    assert not bad, (f"{len(bad)} of {len(results)} {family} cases failed:\n"
                     + failures_text(bad, limit=10))


def test_the_command_line_agrees_with_the_in_process_verdict(canary):
    """The first ordinary case of each family, through the real ``icm decode``: the verdicts
    agree (whether or not the case passes; the family tests judge that), so the in-process
    runner's reading of exceptions is the command line's."""
    first = {family: [c for c in cases(family, 4, SEED, canary) if not c.risky]
             for family in FAMILIES}
    sample = [ordinary[0] for ordinary in first.values() if ordinary]
    for case in sample:
        inside = run_in_process(case, canary, timeout=TIMEOUT)
        outside = run_subprocess(case, canary, timeout=TIMEOUT)
        assert outside.outcome == inside.outcome, (case.case_id, inside.detail, outside.detail)


def test_the_runner_tells_each_outcome_apart(canary, monkeypatch):
    """The judge itself, on a stand-in decoder: each misbehaviour gets its own outcome."""
    import time
    from dataclasses import replace

    import numpy as np
    from PIL import Image

    from icm.errors import IcmError
    from icm.pipeline import files as coding

    case = cases("truncate", 4, SEED, canary)[3]  # a cut .icm file
    assert case.expectation == "error"
    assert run_in_process(case, canary).outcome == "clean_error"
    honest_case = replace(case, data=honest(case.codec).icm, expectation="exact_or_error")
    assert run_in_process(honest_case, canary).outcome == "exact_decode"

    def write(picture):
        return lambda source, output, *a, **k: Image.fromarray(picture).save(output)

    def fail(exc):
        def decode(*args, **kwargs):
            raise exc
        return decode

    def read_canary(*args, **kwargs):
        (canary.folder / "model.safetensors").read_bytes()

    small = np.zeros((10, 10, 3), np.uint8)
    stand_ins = {
        "traceback": fail(KeyError("x")),
        "crash": fail(MemoryError()),
        "messy_error": fail(IcmError("no file named\nand two lines")),
        "clean_error": fail(IcmError("bad", canary.run_dir / "case.icm")),
        "path_escape": read_canary,
        "wrong_picture": write(small),
        "hang": lambda *a, **k: [time.sleep(0.01) for _ in range(300)],
    }
    for outcome, decode in stand_ins.items():
        monkeypatch.setattr(coding, "decode_file", decode)
        assert run_in_process(honest_case, canary, timeout=1).outcome == outcome
    monkeypatch.undo()

    canary.reset()
    (canary.folder / "weights.pt").read_bytes()  # native code reading it is seen by atime
    assert not canary.atime_works or canary.read_since_reset()
    canary.reset()
