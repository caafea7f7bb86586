"""The ``icm`` lmms-eval model and ``icm lmms``, offline: lmms-eval's own ``llava_hf`` model
around a tiny random LLaVA (tests/vlm_helpers.py), on a local task of rendered cards with exact
answers (tests/lmms_helpers.py). Skipped, saying so, where lmms-eval is not installed (the
README's test command installs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("lmms_eval", reason="lmms-eval not installed (README's test command)")

from tests.lmms_helpers import (
    CARDS,
    QUESTIONS,
    TASK,
    WORDS,
    stub_decord,
    write_decord_stub,
    write_local_task,
)
from tests.test_cli import assert_one_line_error, icm
from tests.vlm_helpers import save_tiny_llava

from icm.bench.worker import cache_path
from icm.image.datasets import content_hash
from icm.integrations.lmms_model import IcmModel, load_inner
from icm.integrations.lmms_run import LmmsConfig, evaluate_point, gap_entries, result_path
from icm.pipeline import decode_bytes, encode_image
from icm.pipeline.point import parse_point

stub_decord()  # before llava_hf is imported (tests/lmms_helpers.py says why)

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
INNER_ARGS = "device=cpu,device_map=cpu,dtype=float32"


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as patch:
        for name, value in OFFLINE.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory) -> Path:
    return write_local_task(tmp_path_factory.mktemp("lmms") / "task")


@pytest.fixture(scope="module")
def llava(tmp_path_factory) -> Path:
    return save_tiny_llava(tmp_path_factory.mktemp("lmms") / "tiny-llava", WORDS)


@pytest.fixture(scope="module")
def llava_reference(tmp_path_factory) -> Path:
    """Another seed of the tiny LLaVA, standing in for a model fine-tuned on decoded images."""
    return save_tiny_llava(tmp_path_factory.mktemp("lmms") / "tiny-llava-ft", WORDS, seed=1)


@pytest.fixture(scope="module")
def task_manager(task_folder):
    from lmms_eval.tasks import TaskManager

    return TaskManager("ERROR", include_path=[str(task_folder)])


@pytest.fixture(scope="module")
def inner(llava):
    return load_inner("llava_hf", {"pretrained": str(llava), "device": "cpu",
                                   "device_map": "cpu", "dtype": "float32"})


def model_args(llava: Path, points: str) -> str:
    return f"inner=llava_hf,pretrained={llava},{INNER_ARGS},points={points}"


class ProcessorSpy:
    """Stands in for llava_hf's processor and keeps the hash of every image it is given."""

    def __init__(self, processor) -> None:
        self.processor, self.seen = processor, []

    def __call__(self, *args, images=None, **kwargs):
        self.seen += [content_hash(np.asarray(image)) for image in images or []]
        return self.processor(*args, images=images, **kwargs)

    def __getattr__(self, name):
        return getattr(self.processor, name)


def test_the_inner_model_reads_the_decoded_images_and_their_bits_are_recorded(
        inner, task_manager, tmp_path, monkeypatch):
    point = parse_point("jpeg@q20")
    spy = ProcessorSpy(inner._image_processor)
    monkeypatch.setattr(inner, "_image_processor", spy)
    wrapper = IcmModel.around(inner, point, tmp_path / "cache")
    result = evaluate_point(wrapper, TASK, task_manager, LmmsConfig((TASK,), ""))

    samples = result["samples"]
    assert len(samples) == len(CARDS) * len(QUESTIONS) == len(spy.seen)
    decoded = set()
    for sample in samples:
        (image,) = sample["images"]
        data = cache_path(tmp_path / "cache", image["cache_key"]).read_bytes()
        assert sample["bits"] == image["bits"] == 8 * len(data) > 0
        assert sample["pixels"] == 96 * 64
        assert image["decoded_sha"] == content_hash(decode_bytes(data)) != image["image_sha"]
        decoded.add(image["decoded_sha"])
    assert set(spy.seen) == decoded  # what the model read is what the bitstreams decode to
    assert len(decoded) == len(CARDS)
    assert wrapper.coder.encodes == len(CARDS)  # two questions per card: coded once each


def test_the_pristine_wrapper_passes_images_unchanged(inner, task_manager, task_folder,
                                                      monkeypatch):
    from PIL import Image

    spy = ProcessorSpy(inner._image_processor)
    monkeypatch.setattr(inner, "_image_processor", spy)
    result = evaluate_point(IcmModel.around(inner, None), TASK, task_manager,
                            LmmsConfig((TASK,), "", limit=2))
    original = content_hash(np.asarray(Image.open(task_folder / f"{CARDS[0][0]}.png")))
    assert spy.seen == [original, original]
    assert [s["bits"] for s in result["samples"]] == [0, 0]


def test_icm_lmms_runs_two_points_resumes_and_writes_tables(llava, task_folder, tmp_path,
                                                            monkeypatch, capsys):
    out = tmp_path / "run"
    args = ("lmms", "--tasks", TASK, "--include-path", task_folder, "--out", out,
            "--model-args", model_args(llava, "jpeg@q10;jpeg@q60"), "--bootstrap", "20")
    code, stdout, _ = icm(monkeypatch, capsys, *args, "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["evaluated"] == [f"{TASK} @ pristine", f"{TASK} @ jpeg@q10",
                                    f"{TASK} @ jpeg@q60"]
    (table,) = summary["tasks"]
    assert table["metric"] == "exact_match" and table["pristine"]["questions"] == 8
    rates = {p["point"]: p["bpp"] for p in table["points"]}
    assert 0 < rates["jpeg@q10"] < rates["jpeg@q60"]
    assert all(p["questions"] == 8 and p["agreement"] is not None for p in table["points"])
    assert (out / TASK / "rate_accuracy.png").read_bytes().startswith(b"\x89PNG")
    assert "| jpeg@q10 |" in (out / TASK / "table.md").read_text()
    stored = {p: result_path(out, TASK, parse_point(p)).read_bytes() for p in rates}
    cached = sorted((out / "cache").rglob("*.icm"))
    assert len(cached) == 2 * len(CARDS)

    # a finished (task, point) is not redone; a lost one is, from the bitstream cache
    result_path(out, TASK, parse_point("jpeg@q60")).unlink()
    code, stdout, _ = icm(monkeypatch, capsys, *args, "--json")
    assert code == 0
    again = json.loads(stdout)
    assert again["evaluated"] == [f"{TASK} @ jpeg@q60"]
    assert again["resumed"] == [f"{TASK} @ pristine", f"{TASK} @ jpeg@q10"]
    assert result_path(out, TASK, parse_point("jpeg@q10")).read_bytes() == stored["jpeg@q10"]
    assert sorted((out / "cache").rglob("*.icm")) == cached
    new = json.loads(result_path(out, TASK, parse_point("jpeg@q60")).read_text())
    old = json.loads(stored["jpeg@q60"])
    assert [s["bits"] for s in new["samples"]] == [s["bits"] for s in old["samples"]]

    # another model in the same folder is refused
    other = model_args(llava, "jpeg@q10").replace("dtype=float32", "dtype=float16")
    code, _, err = icm(monkeypatch, capsys, "lmms", "--tasks", TASK, "--include-path",
                       task_folder, "--out", out, "--model-args", other)
    assert_one_line_error(code, err, str(out), "another --out")


def test_a_reference_splits_the_loss_and_is_resumed_like_the_rest(
        llava, llava_reference, task_folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ("lmms", "--tasks", TASK, "--include-path", task_folder, "--out", out,
            "--model-args", model_args(llava, "jpeg@q10;jpeg@q60"), "--bootstrap", "0",
            "--reference", f"pretrained={llava_reference}", "--json")
    code, stdout, _ = icm(monkeypatch, capsys, *args)
    assert code == 0
    summary = json.loads(stdout)
    assert summary["evaluated"] == [
        f"{TASK} @ pristine", f"{TASK} @ jpeg@q10", f"{TASK} @ jpeg@q60",
        f"{TASK} @ jpeg@q10 (reference)", f"{TASK} @ jpeg@q60 (reference)"]
    (table,) = summary["tasks"]
    assert [g["point"] for g in table["gap"]] == ["jpeg@q10", "jpeg@q60"]
    for gap in table["gap"]:
        assert gap["images"] == 8
        assert gap["generalization"] == pytest.approx(gap["total"] - gap["information"])
    assert (out / TASK / "gap.png").read_bytes().startswith(b"\x89PNG")
    assert result_path(out, TASK, parse_point("jpeg@q10"), "reference").exists()

    code, stdout, _ = icm(monkeypatch, capsys, *args)
    assert code == 0 and json.loads(stdout)["evaluated"] == []
    other = [a if not str(a).startswith("pretrained=") else f"pretrained={llava}"
             for a in args]
    code, _, err = icm(monkeypatch, capsys, *other[:-1])
    assert_one_line_error(code, err, "another reference")


def test_the_gap_split_is_the_scores_lost_against_the_pristine_images():
    def record(scores, bits=8):
        return {"samples": [{"task": "t", "doc_id": i, "scores": {"acc": score},
                             "bits": bits, "pixels": 4} for i, score in enumerate(scores)]}

    records = {"pristine": record([1, 1, 1, 0]), "jpeg@q10": record([0, 1, 0, 0], bits=4)}
    reference = {"jpeg@q10": record([1, 1, 0, 0])}
    (entry,) = gap_entries("t", records, reference, "acc")
    assert (entry.point, entry.curve, entry.bpp, entry.images) == ("jpeg@q10", "jpeg", 1.0, 4)
    assert entry.total == pytest.approx(2 / 4)  # two answers lost
    assert entry.information == pytest.approx(1 / 4)  # the reference still loses one
    assert entry.generalization == pytest.approx(1 / 4)


@pytest.mark.parametrize(("points", "inner", "task", "needles"), [
    ("hevc@qq", "llava_hf", TASK, ("'qq'",)),
    ("jpeg@q30", "no_such_model", TASK, ("inner=no_such_model", "not an lmms-eval model")),
    ("jpeg@q30", "llava_hf", "no_such_task", ("'no_such_task'", "not an lmms-eval task")),
])
def test_bad_points_models_and_tasks_are_one_line_errors(llava, task_folder, tmp_path,
                                                         monkeypatch, capsys, points, inner,
                                                         task, needles):
    args = model_args(llava, points).replace("inner=llava_hf", f"inner={inner}")
    code, _, err = icm(monkeypatch, capsys, "lmms", "--tasks", task, "--include-path",
                       task_folder, "--out", tmp_path / "run", "--model-args", args)
    assert_one_line_error(code, err, *needles)


def test_lmms_evals_own_cli_runs_the_wrapper(llava, task_folder, tmp_path):
    record = tmp_path / "bits.json"
    command = [sys.executable, "-m", "lmms_eval", "--model", "icm", "--model_args",
               f"inner=llava_hf,pretrained={llava},{INNER_ARGS},point=jpeg@q30,"
               f"icm_record={record}", "--tasks", TASK, "--include_path", str(task_folder),
               "--output_path", str(tmp_path / "out"), "--log_samples", "--limit", "4"]
    stub = write_decord_stub(tmp_path / "stub")
    path = os.pathsep.join(filter(None, [str(stub), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **OFFLINE, "PYTHONPATH": path}, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "exact_match" in done.stdout
    documents = json.loads(record.read_text())
    assert sorted(d["doc_id"] for d in documents) == [0, 1, 2, 3]
    assert all(d["point"] == "jpeg@q30" and d["bits"] > 0 for d in documents)
    assert list((tmp_path / "out").rglob("*samples_*.jsonl"))


def test_a_list_of_points_in_lmms_evals_cli_is_refused_in_one_line(llava):
    from icm.integrations.lmms_args import LmmsArgsError
    from icm.integrations.lmms_model import IcmChat

    with pytest.raises(LmmsArgsError, match="run `icm lmms` for a list"):
        IcmChat(inner="llava_hf", pretrained=str(llava), points="jpeg@q10;jpeg@q20")


def test_vvc_still_decodes_beside_lmms_eval():
    """lmms-eval's wheel asks for av<16; installed --no-deps, PyAV keeps its VVC decoder."""
    import av

    assert int(av.__version__.split(".")[0]) >= 16
    image = np.zeros((64, 96, 3), np.uint8)
    image[:, 48:] = (200, 40, 40)
    decoded = decode_bytes(encode_image(image, parse_point("vvc@qp30")).data)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image).mean() < 8
