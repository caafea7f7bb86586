"""A local lmms-eval task for offline tests and demos: rendered words on coloured cards, two
questions per card (so questions share an image), exact answers, exact-match scoring.

lmms-eval's own tasks download their data from the Hub; this one is a YAML over a JSON Lines
file of local PNGs, which is all a task needs.

lmms-eval's ``llava_hf`` imports ``decord`` (for video) at its top. decord's wheel bundles an
old zlib: imported first in a process, it breaks imagecodecs' PNG decoder (spng: "zlib init
error") for the rest of that process. The tests read no video, so they give ``llava_hf`` a stub
that refuses to read one, and the test environment has no decord.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

from PIL import Image, ImageDraw

TASK = "icm_local_words"
CARDS = (("apple", "red", (200, 40, 40)), ("river", "blue", (40, 60, 200)),
         ("stone", "green", (40, 160, 60)), ("cloud", "gray", (128, 128, 128)))
QUESTIONS = ("What word is written on the card?", "What colour is the card?")
WORDS = [word for card in CARDS for word in card[:2]] + list(QUESTIONS)

UTILS = '''"""Callbacks of the local icm task: a local PNG per document, exact-match scoring."""
from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    answer = results[0].strip().lower() if results else ""
    return {"exact_match": float(answer == doc["answer"])}
'''

YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {docs}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 3
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 0.1
"""


def card(word: str, rgb: tuple[int, int, int], size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A card of one colour with one word in white, in Pillow's built-in font."""
    image = Image.new("RGB", size, rgb)
    ImageDraw.Draw(image).text((10, size[1] // 2 - 6), word, fill=(255, 255, 255))
    return image


def write_local_task(folder: Path) -> Path:
    """Write the cards, their documents, the task YAML and its callbacks; return the folder
    to give lmms-eval as ``--include_path``."""
    folder.mkdir(parents=True, exist_ok=True)
    docs = []
    for word, colour, rgb in CARDS:
        path = folder / f"{word}.png"
        card(word, rgb).save(path)
        for question, answer in zip(QUESTIONS, (word, colour), strict=True):
            docs.append({"image": str(path), "question": question, "answer": answer})
    (folder / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "utils.py").write_text(UTILS)
    (folder / f"{TASK}.yaml").write_text(YAML.format(task=TASK, docs=folder / "docs.jsonl"))
    return folder


DECORD_STUB = '''"""A stand-in for decord (video reading), which the icm tests never do."""


class VideoReader:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("decord is stubbed in icm's tests: no video reading")


def cpu(*args, **kwargs):
    return None
'''


def stub_decord() -> None:
    """Make ``import decord`` give the stub in this process (unless decord is imported)."""
    if "decord" not in sys.modules:
        module = types.ModuleType("decord")
        exec(DECORD_STUB, module.__dict__)
        sys.modules["decord"] = module


def write_decord_stub(folder: Path) -> Path:
    """The stub as ``folder/decord.py``, for a subprocess's PYTHONPATH; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "decord.py").write_text(DECORD_STUB)
    return folder
