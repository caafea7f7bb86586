"""The icm part of lmms-eval's model_args, and the analysis's resampling groups: no lmms-eval
needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from icm.bench.analysis import _Grid, _resamples, resampling_group
from icm.errors import IcmError
from icm.integrations.lmms_args import parse_wrapper_args, points_of
from icm.integrations.lmms_run import SUPPORTED_LMMS_EVAL

ROOT = Path(__file__).resolve().parents[1]


def test_points_and_inner_arguments_split():
    args = parse_wrapper_args({"inner": "qwen2_5_vl", "pretrained": "Qwen/x", "max_pixels": 5,
                               "points": "hevc@0.1bpp; jpeg+fit=classify@q30"})
    assert args.inner == "qwen2_5_vl"
    assert [str(p) for p in args.points] == ["hevc@0.1bpp", "jpeg+fit=classify@q30"]
    assert args.inner_args == {"pretrained": "Qwen/x", "max_pixels": 5}
    assert parse_wrapper_args({"inner": "m", "point": "vvc@qp37"}).points[0].level == "qp37"


@pytest.mark.parametrize(("args", "needle"), [
    ({"point": "jpeg@q30"}, "inner="),
    ({"inner": "icm", "point": "jpeg@q30"}, "inner=icm"),
    ({"inner": "m"}, "point="),
    ({"inner": "m", "point": "jpeg@q30", "points": "jpeg@q40"}, "not both"),
    ({"inner": "m", "point": "hevc@qq"}, "'qq'"),
    ({"inner": "m", "point": "nosuch@q3"}, "nosuch"),
    ({"inner": "m", "point": "jpeg+nosuchtool@q30"}, "nosuchtool"),
])
def test_bad_arguments_are_one_line_errors_naming_them(args, needle):
    with pytest.raises(IcmError) as caught:
        parse_wrapper_args(args)
    message = str(caught.value)
    assert needle in message and "\n" not in message


def test_a_point_list_keeps_its_order_and_a_bare_codec_runs_its_ladder():
    assert [str(p) for p in points_of("vvc@qp40;jpeg@q20")] == ["vvc@qp40", "jpeg@q20"]
    assert len(points_of("jpeg")) > 2


def _row(question: int, group: str, point: str, bpp: float, score: float) -> dict:
    return {"machine": "task", "fingerprint": "", "created_at": 0.0,
            "image_sha": f"q{question}", "image_id": f"q{question}", "group": group,
            "point": point, "codec": point.partition("@")[0], "bpp": bpp,
            "primary_value": score, "psnr": 30.0, "fidelity_json": "{}"}


def test_questions_on_one_image_are_resampled_together():
    rows = [_row(q, f"image{q // 2}", point, bpp, q % 2)
            for q in range(8) for point, bpp in (("jpeg@q10", 0.2), ("jpeg@q50", 0.8))]
    grid = _Grid.of(rows, "task")
    assert grid.groups == [f"image{q // 2}" for q in range(8)]
    for sample in _resamples(grid.groups, 20, seed=1):
        drawn = [grid.groups[i] for i in sample]
        for label in set(drawn):  # a drawn image brings both of its questions, as often
            assert drawn.count(label) % 2 == 0
    assert resampling_group({"image_id": "kodim01.png#224x224+0+0"}) == "kodim01.png"


def test_the_readme_and_ci_install_the_tested_lmms_eval_without_its_dependencies():
    """The README's test command and .ci/run install the same thing: lmms-eval pinned to the
    version icm lmms accepts, with --no-deps (its wheel's av<16 would drop PyAV 18)."""
    pin = f"lmms-eval=={SUPPORTED_LMMS_EVAL[-1]}"
    commands = []
    for path in (ROOT / "README.md", ROOT / ".ci" / "run"):
        text = path.read_text().replace("\\\n", " ")
        line = next(line for line in text.splitlines() if "pip install -e '.[test]'" in line)
        commands.append(re.sub(r"\s+", " ", line.split("&& python -m pytest")[0]).strip())
        assert re.search(r"--no-deps[^&]*" + re.escape(pin), line), line
    assert commands[0] == commands[1]
