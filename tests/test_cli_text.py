"""What the icm command prints: square brackets survive rich (pip install 'icm[jpegli]'), and
the bench summary reads at 80 columns."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
import typer
from rich.console import Console
from rich.text import Text
from typer.testing import CliRunner

from icm.cli import main
from icm.cli.bench import machine_rows, summary_view
from icm.cli.views import codec_rows
from icm.codecs import CODECS
from icm.errors import IcmError
from icm.machines import MACHINES

WIDE = {"COLUMNS": "200"}  # no folding inside words: each bracketed word stays on one line


@pytest.fixture
def wide(monkeypatch):
    """The app's consoles at 200 columns, whatever COLUMNS was when they were made."""
    for console in (main.out, main.err):
        monkeypatch.setattr(console, "_width", 200)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(main.app, list(args), env=WIDE)
    assert result.exit_code == 0, result.output
    return result.output


def bracket_words(text: str) -> list[str]:
    """The words of ``text`` that hold a square bracket: 'icm[detect]' or [jpegli]."""
    return re.findall(r"\S*[\[\]]\S*", text)


def assert_reasons_shown(rows: list[dict], output: str) -> int:
    """Every bracketed word of every shown reason (with its install hint) is in ``output``."""
    checked = 0
    for row in rows:
        for word in bracket_words(row["reason"] or ""):
            assert word in output, (row["reason"], output)
            checked += 1
    return checked


def test_codecs_and_machines_print_unavailable_reasons_with_brackets(wide):
    assert_reasons_shown(codec_rows(), invoke("codecs"))
    assert_reasons_shown(machine_rows(), invoke("machines"))


def test_every_install_hint_is_printed_with_its_brackets(monkeypatch, wide):
    """Make every codec and machine unavailable, so that every install hint is shown; the
    invented reason and one invented hint name an extra, so the test can fail."""
    missing = classmethod(lambda cls, *spec: "missing [someextra] library")
    for cls in {*CODECS.values(), *MACHINES.values()}:
        monkeypatch.setattr(cls, "unavailable_reason", missing)
    monkeypatch.setattr(CODECS["jpeg"], "install_hint", "pip install 'icm[fakecodec]'")
    monkeypatch.setattr(MACHINES["detect"], "install_hint", "pip install 'icm[detect]'")

    rows = codec_rows()
    output = invoke("codecs")
    assert assert_reasons_shown(rows, output) >= len(rows)
    assert "'icm[fakecodec]'" in output and "unavailable: missing [someextra]" in output
    hints = [cls.install_hint for cls in CODECS.values() if "[" in cls.install_hint]
    assert any("icm[jpegli]" in hint for hint in hints)  # the real hint this is about
    for hint in hints:
        assert all(word in output for word in bracket_words(hint)), hint

    rows = machine_rows()
    output = invoke("machines")
    assert assert_reasons_shown(rows, output) >= len(MACHINES)
    assert "'icm[detect]'" in output


def test_one_line_error_keeps_brackets_in_process(monkeypatch, capsys):
    def broken() -> None:
        raise IcmError("install it: pip install 'icm[x]' ([bold]not markup[/bold])")

    monkeypatch.setattr(main, "app", broken)
    with pytest.raises(SystemExit) as exit_:
        main.run()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == ("icm: error: install it: pip install 'icm[x]' "
                           "([bold]not markup[/bold])")


def test_one_line_error_keeps_brackets_from_the_entry_point(tmp_path):
    missing = tmp_path / "photo[x].png"
    result = subprocess.run(
        [sys.executable, "-m", "icm.cli.main", "decode", str(missing)],
        capture_output=True, text=True, timeout=120, env={**_environ(), **WIDE})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "icm: error:" in result.stderr and "photo[x].png" in result.stderr


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_bench_help_shows_the_ray_extra():
    result = CliRunner().invoke(main.app, ["bench", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "pip install 'icm[ray]'" in result.output


def _commands(command: click.Command):
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _commands(sub)


def test_no_help_text_loses_characters_to_rich_markup():
    """typer renders help as rich markup: a bracket in a help text must be escaped."""
    for command in _commands(typer.main.get_command(main.app)):
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            assert Text.from_markup(text).plain == text.replace("\\[", "["), text


# -- the bench summary --------------------------------------------------------------------

LONG = ("anchor curve not monotonic: BD uses its Pareto front (3 of 5 points), so the value "
        "rests on fewer points than the run measured")
SHARED = "bd_rate: curves overlap on only 12% of the rate range [check icm[bench] levels]"
SATURATED = "fewer than 2 points on a Pareto front (fidelity saturated): no BD value"


def _entry(machine, codec, rate, rate_ci, metric, metric_ci, notes):
    return {"machine": machine, "codec": codec, "anchor": "jpeg", "bd_rate": rate,
            "bd_rate_ci": rate_ci, "bd_metric": metric, "bd_metric_ci": metric_ci,
            "notes": notes}


SUMMARY = {
    "out": "runs/icm-bench-kodak", "rows": 12345, "rows_added": 678, "pristine_added": 24,
    "wall_s": 4321.06, "work_s": 9000.0, "workers": 2, "harness_share": 0.0421, "skipped": [],
    "report": {"markdown": "runs/icm-bench-kodak/report.md",
               "html": "runs/icm-bench-kodak/report.html"},
    "bd": [
        _entry("classify:efficientnet-lite0", "webp", -21.34, (-30.12, -12.01), 0.0213,
               (0.0104, 0.0331), [LONG]),
        _entry("classify:efficientnet-lite0", "bmshj2018-hyperprior", -61.7, (-70.4, -48.9),
               0.1012, (0.0801, 0.1293), [LONG, SHARED]),
        _entry("classify:efficientnet-lite0", "hevc", None, None, None, None, [SATURATED]),
        _entry("ocr:rapidocr", "hevc", 12.5, [3.1, 25.0], -0.0071, [-0.0153, 0.0004],
               [SHARED]),
        _entry("ocr:rapidocr", "avif", -5.0, None, 0.002, None, []),
    ],
}


def _render(summary: dict, width: int = 80) -> str:
    console = Console(width=width, record=True)  # markup on: the view must not need it off
    console.print(summary_view(summary))
    return console.export_text()


def test_bench_summary_fits_80_columns():
    text = _render(SUMMARY)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    assert "classify:efficientnet-lite0" in lines and "ocr:rapidocr" in lines  # headings
    assert any(line.startswith("12345 ledger rows (678 new) in 4321.1 s; harness overhead "
                               "4.2%") for line in lines), text
    assert "report: runs/icm-bench-kodak/report.html" in lines


def test_bench_summary_rows_hold_values_with_intervals_and_note_markers():
    lines = _render(SUMMARY).splitlines()

    def row(codec: str, after: str) -> str:
        start = lines.index(after)
        return next(line for line in lines[start:] if line.startswith(codec + " "))

    webp = row("webp", "classify:efficientnet-lite0")
    assert "-21.3 [-30.1, -12.0]" in webp and "+0.021 [+0.010, +0.033]" in webp
    assert webp.rstrip().endswith("[1]")
    learned = row("bmshj2018-hyperprior", "classify:efficientnet-lite0")
    assert "-61.7 [-70.4, -48.9]" in learned and "+0.101 [+0.080, +0.129]" in learned
    assert learned.rstrip().endswith("[1,2]")
    saturated = row("hevc", "classify:efficientnet-lite0")
    assert saturated.count("n/a") == 2 and saturated.rstrip().endswith("[3]")
    ocr_hevc = row("hevc", "ocr:rapidocr")
    assert "+12.5 [+3.1, +25.0]" in ocr_hevc and "-0.007 [-0.015, +0.000]" in ocr_hevc
    assert ocr_hevc.rstrip().endswith("[2]")  # the same note keeps its number
    avif = row("avif", "ocr:rapidocr")
    assert "-5.0" in avif and "+0.002" in avif and "[" not in avif

    # numbers are right-aligned: each column's values end in the same place
    rows = [webp, learned, ocr_hevc]
    for value in ("-21.3 [-30.1, -12.0]", "-61.7 [-70.4, -48.9]", "+12.5 [+3.1, +25.0]"):
        assert len({r.index(v) + len(v) for r, v in zip(rows, [value] * 3, strict=True)
                    if v in r}) == 1
    ends = {r.index("]", r.index("]") + 1) for r in rows}
    assert len(ends) == 1, rows


def test_bench_summary_prints_each_note_once_in_full_as_a_footnote():
    text = _render(SUMMARY)
    flat = " ".join(text.split())  # footnotes wrap at 80 columns: undo the wrapping
    for number, note in enumerate((LONG, SHARED, SATURATED), start=1):
        assert flat.count(note) == 1, note
        assert f"[{number}] {note}" in flat
    footnotes = [line for line in text.splitlines() if re.match(r"\s*\[\d+\] ", line)]
    assert len(footnotes) == 3


def test_bench_summary_with_many_notes_and_no_entries_still_fits():
    many = [f"note {i}: {'word ' * 30}".strip() for i in range(12)]
    summary = {**SUMMARY, "bd": [
        _entry("classify:efficientnet-lite0+adapter=/a/rather/long/path/to/adapters/"
               "lite0-jpeg-hevc-avif.safetensors", "bmshj2018-factorized", -1234.5,
               (-2500.1, -800.2), -0.1213, (-0.2011, -0.0333), many),
    ]}
    text = _render(summary)
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "[1-12]" in text
    assert "-1234.5" in text and "-2500.1" in text and "-800.2" in text
    flat = " ".join(text.split())
    assert all(flat.count(note) == 1 for note in many)

    text = _render({**SUMMARY, "bd": []})
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "no BD values" in text
