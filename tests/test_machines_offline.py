"""The offline machines (EfficientNet-Lite, SqueezeNet, NanoDet, RapidOCR, Tesseract) and the
shared scoring functions, on hand-computed cases and real images."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from icm.codecs import get_codec
from icm.image import sample_photo
from icm.image.datasets import Truth
from icm.machines import (
    MachineUnavailableError,
    UnknownMachineError,
    get_machine,
    parse_machine,
)
from icm.machines import scoring as sc
from icm.machines.classify import label_name
from icm.machines.detect import coco_name
from icm.machines.ocr import OcrMachine, ocr_output

INVOICE = "Invoice 2026 total 42.50"


def jpeg_q1(image: np.ndarray) -> np.ndarray:
    codec = get_codec("jpeg")
    return codec.decode(codec.encode(image, "q1"))


def render_line(text: str, size: int = 32) -> np.ndarray:
    """Black text in Pillow's bundled font on white, as a 640x120 strip."""
    canvas = Image.new("RGB", (640, 120), "white")
    ImageDraw.Draw(canvas).text(
        (20, 20), text, fill="black", font=ImageFont.load_default(size=size)
    )
    return np.asarray(canvas)


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return sample_photo("chelsea")


# -- scoring --------------------------------------------------------------------------------------
def test_cer_known_strings():
    assert sc.cer("sitting", "kitten") == pytest.approx(3 / 6)
    assert sc.cer("kitten", "sitting") == pytest.approx(3 / 7)
    assert sc.cer("", "") == 0.0
    assert sc.cer("abc", "") == 3.0  # empty reference: divided by 1, not clipped
    assert sc.cer("", "abcd") == 1.0
    assert sc.text_agreement("abd", "abc") == pytest.approx(2 / 3)
    assert sc.text_agreement("xxxxxxxx", "ab") == 0.0
    assert sc.text_agreement("same", "same") == 1.0


def test_levenshtein_numpy_fallback_matches():
    rng = random.Random(7)
    for _ in range(200):
        a = "".join(rng.choice("ab c\né") for _ in range(rng.randrange(0, 12)))
        b = "".join(rng.choice("ab c\né") for _ in range(rng.randrange(0, 12)))
        expected = sc.levenshtein(a, b)
        assert sc._levenshtein_numpy(a, b) == expected
    assert sc._levenshtein_numpy("kitten", "sitting") == 3


def test_normalize_whitespace():
    assert sc.normalize_whitespace("  Total \t 42  \n\n  due\u00a0 now \r\n") == "Total 42\ndue now"


def test_token_f1_and_exact_match():
    # "the" and "a" are articles: ["cat", "sat"] vs ["cat", "sat", "down"]: p=1, r=2/3
    assert sc.token_f1("The cat sat", "a cat sat down") == pytest.approx(0.8)
    assert sc.token_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # multiset
    assert sc.token_f1("", "") == 1.0
    assert sc.token_f1("the", "") == 1.0  # only an article: both normalise to empty
    assert sc.token_f1("cat", "") == 0.0
    assert sc.token_f1("dog", "cat") == 0.0
    assert sc.exact_match("The Cat!", "cat") == 1.0
    assert sc.exact_match("cats", "cat") == 0.0


def test_kl_divergence():
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert sc.kl_divergence([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    assert sc.kl_divergence([0.2, 0.8], [0.2, 0.8]) == 0.0
    assert np.isfinite(sc.kl_divergence([1.0, 0.0], [0.0, 1.0]))  # zeros are floored
    with pytest.raises(ValueError):
        sc.kl_divergence([1.0], [0.5, 0.5])


def test_average_precision_two_boxes():
    truth = [[0, 0, 10, 10], [20, 20, 30, 30]]
    detections = [
        [0, 0, 10, 10, 0.9],  # TP  p=1,   r=0.5
        [50, 50, 60, 60, 0.8],  # FP  p=0.5, r=0.5
        [21, 21, 30, 30, 0.7],  # TP  p=2/3, r=1  (IoU 0.81)
    ]
    # envelope: p=1 up to r=0.5, then 2/3: AP = 0.5 * 1 + 0.5 * 2/3
    assert sc.average_precision_50(detections, truth) == pytest.approx(5 / 6)
    # a duplicate of a matched box is a false positive; IoU < 0.5 is a miss
    assert sc.average_precision_50([[0, 0, 10, 10, 0.9], [0, 0, 10, 10, 0.8]], truth[:1]) == 1.0
    assert sc.average_precision_50([[0, 0, 10, 4, 0.9]], truth[:1]) == 0.0


def test_map50_classes_and_empty_sets():
    truth = [[0, 0, 10, 10, 1.0, 0], [20, 20, 30, 30, 1.0, 1]]
    assert sc.map50(truth, truth) == 1.0
    assert sc.map50(truth[:1], truth) == pytest.approx(0.5)  # class 1 missed
    assert sc.map50([[0, 0, 10, 10, 0.9, 2]], truth[:1]) == 0.0  # wrong class
    assert sc.map50([[0, 0, 10, 10, 0.9, 0]], [[0, 0, 10, 10, 0]]) == 1.0  # truth without score
    assert sc.map50([], []) == 1.0
    assert sc.map50(truth, []) == 0.0
    assert sc.map50([], truth) == 0.0
    assert sc.average_precision_50([], []) == 1.0
    assert sc.average_precision_50([[0, 0, 1, 1, 0.5]], []) == 0.0
    assert sc.average_precision_50([], [[0, 0, 1, 1]]) == 0.0


# -- registry -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["classify:resnet9000", "ocr:abbyy", "detect:yolo9000", "nosuchfamily:model"]
)
def test_unknown_machine_names(name):
    with pytest.raises((UnknownMachineError, MachineUnavailableError)) as info:
        get_machine(name)
    message = str(info.value)
    assert "\n" not in message and name.partition(":")[2] in message


def test_listing_is_cheap():
    code = (
        "import sys, icm.machines as m; m.get_machine('classify:efficientnet-lite0');"
        "m.get_machine('ocr:rapidocr');"
        "print(sorted(k for k in ('torch', 'ncnn', 'rapidocr_onnxruntime', 'onnxruntime')"
        " if k in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ncnn_models_missing_names_where_it_looked(tmp_path):
    for name in ("detect:nanodet", "classify:squeezenet"):
        with pytest.raises(MachineUnavailableError, match=str(tmp_path)):
            get_machine(f"{name}@{tmp_path}")


def test_tesseract_reason_without_binary(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    reason = OcrMachine.unavailable_reason(parse_machine("ocr:tesseract"))
    if reason != "the Python package 'pytesseract' is not installed":
        assert reason == "the tesseract binary is not installed"
    with pytest.raises(MachineUnavailableError, match="apt-get install tesseract-ocr"):
        get_machine("ocr:tesseract")


# -- classifiers ----------------------------------------------------------------------------------
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def effnet():
    return get_machine("classify:efficientnet-lite0")


@pytest.fixture(scope="module")
def squeezenet(shared_dir):
    if not (shared_dir / "models" / "ncnn" / "squeezenet_v1.1.bin").is_file():
        pytest.skip("../shared/models/ncnn/squeezenet_v1.1.* is absent")
    return get_machine("classify:squeezenet")


@pytest.fixture(scope="module", params=["effnet", "squeezenet"])
def classifier(request):
    return request.getfixturevalue(request.param)


def test_classifier_reads_photos(classifier, chelsea):
    cat, coffee = classifier.predict([chelsea, sample_photo("coffee")])
    assert cat["top5"][0] in CATS, cat["top1_label"]
    assert cat["top1_label"] == label_name(cat["top5"][0])
    assert label_name(coffee["top5"][0]) == "espresso"
    assert len(cat["probs"]) == 1000 and sum(cat["probs"]) == pytest.approx(1.0, abs=1e-3)
    assert cat["top5_prob"] == sorted(cat["top5_prob"], reverse=True)
    json.dumps(cat)


def test_classifier_fidelity(classifier, chelsea):
    first, second = classifier.predict([chelsea, chelsea])
    assert first == second  # deterministic, independent of batch position
    same = classifier.fidelity(first, second)
    assert next(iter(same)) == classifier.primary == "prob_overlap"
    assert same == {"prob_overlap": pytest.approx(1.0, abs=1e-4), "top1": 1.0, "top5_overlap": 1.0,
                    "kl": 0.0}
    worse = classifier.fidelity(first, classifier.predict([jpeg_q1(chelsea)])[0])
    assert worse["top1"] == 0.0 and worse["top5_overlap"] < 1.0 and worse["kl"] > 0.5
    assert 0.0 <= worse["prob_overlap"] < 0.7


def test_probability_overlap_is_one_minus_total_variation():
    from icm.machines.classify import classification_fidelity, classification_output

    p = np.zeros(1000)
    p[[1, 2, 3]] = [0.5, 0.3, 0.2]
    q = np.zeros(1000)
    q[[1, 2, 4]] = [0.2, 0.3, 0.5]
    full = classification_fidelity(classification_output(p), classification_output(q))
    assert full["prob_overlap"] == pytest.approx(0.2 + 0.3)  # 1 - TV, TV = 0.5
    top5_only = [{k: v for k, v in classification_output(x).items() if k != "probs"}
                 for x in (p, q)]
    scores = classification_fidelity(*top5_only)
    assert scores["prob_overlap"] == pytest.approx(0.5) and "kl" not in scores


def test_classifier_accuracy_by_label(effnet, chelsea):
    output = effnet.predict([chelsea])[0]
    assert effnet.accuracy(output, Truth(labels=("cat",))) is None  # not an ImageNet name
    scores = effnet.accuracy(output, Truth(labels=(output["top1_label"].upper(),)))
    assert scores == {"top1_accuracy": 1.0, "top5_accuracy": 1.0}


def test_classifier_metadata(effnet):
    assert effnet.profile.size == 224 and effnet.kinds == {"photo"}
    assert "weights=" in effnet.fingerprint()
    assert effnet.versions()["torch"]


# -- NanoDet --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nanodet(shared_dir):
    if not (shared_dir / "models" / "ncnn" / "nanodet_m.bin").is_file():
        pytest.skip("../shared/models/ncnn/nanodet_m.* is absent")
    return get_machine("detect:nanodet")


def test_nanodet_finds_person_and_cat(nanodet, chelsea):
    astronaut = sample_photo("astronaut")
    people, cats = nanodet.predict([astronaut, chelsea])
    assert "person" in {coco_name(box[5]) for box in people["boxes"]}
    assert "cat" in {coco_name(box[5]) for box in cats["boxes"]}
    for x0, y0, x1, y1, score, _ in people["boxes"]:
        assert 0 <= x0 < x1 <= astronaut.shape[1] - 1 and 0 <= y0 < y1 <= astronaut.shape[0] - 1
        assert score >= 0.4
    json.dumps(people)


def test_nanodet_fidelity(nanodet, chelsea):
    first, second = nanodet.predict([chelsea, chelsea])
    assert first == second
    same = nanodet.fidelity(first, second)
    assert next(iter(same)) == nanodet.primary == "map50"
    assert same == {"map50": 1.0, "count_ratio": 1.0}
    worse = nanodet.fidelity(first, nanodet.predict([jpeg_q1(chelsea)])[0])
    assert worse["map50"] < 0.5


# -- OCR ------------------------------------------------------------------------------------------
def test_reading_order():
    lines = [
        {"text": "second", "box": [10, 50, 100, 70], "score": 1.0},
        {"text": "right", "box": [[120, 12], [200, 12], [200, 30], [120, 30]], "score": 1.0},
        {"text": "left", "box": [10, 10, 100, 32], "score": 1.0},
    ]
    output = ocr_output(lines)
    assert output["text"] == "left right\nsecond"
    assert [line["text"] for line in output["lines"]] == ["left", "right", "second"]


@pytest.fixture(scope="module")
def rapidocr():
    return get_machine("ocr:rapidocr")


@pytest.fixture(scope="module")
def tesseract():
    reason = OcrMachine.unavailable_reason(parse_machine("ocr:tesseract"))
    if reason is not None:
        pytest.skip(f"ocr:tesseract: {reason}")
    return get_machine("ocr:tesseract")


@pytest.fixture(scope="module", params=["rapidocr", "tesseract"])
def reader(request):
    return request.getfixturevalue(request.param)


def test_ocr_reads_rendered_line(reader):
    image = render_line(INVOICE)
    first, second = reader.predict([image, image])
    assert first == second
    assert first["text"] == INVOICE
    assert reader.accuracy(first, Truth(text=INVOICE))["text_accuracy"] == 1.0
    assert reader.accuracy(first, Truth()) is None
    same = reader.fidelity(first, second)
    assert next(iter(same)) == reader.primary == "text_agreement_nospace"
    assert same["text_agreement_nospace"] == same["text_agreement"] == 1.0
    json.dumps(first)


def test_ocr_q1_reads_worse(reader):
    small = render_line(INVOICE, size=16)  # at q1 the blocks are as big as the strokes
    decoded = reader.predict([jpeg_q1(render_line(INVOICE)), jpeg_q1(small)])
    assert reader.accuracy(decoded[0], Truth(text=INVOICE))["text_accuracy"] < 1.0
    small_scores = reader.fidelity(reader.predict([small])[0], decoded[1])
    assert small_scores["text_agreement"] < 0.9


def test_ocr_scores_normalise_whitespace(rapidocr):
    line = {"text": "a  b", "box": [0, 0, 10, 10], "score": 1.0}
    scores = rapidocr.fidelity(
        {"lines": [line], "text": "  a  b \n\n"}, {"lines": [], "text": "a b"}
    )
    assert scores["text_agreement"] == 1.0 and scores["line_count_ratio"] == 0.0
    accuracy = rapidocr.accuracy({"lines": [], "text": "ab"}, Truth(text="a b"))
    assert accuracy["cer"] == pytest.approx(1 / 3)
    assert accuracy["text_accuracy_nospace"] == 1.0
