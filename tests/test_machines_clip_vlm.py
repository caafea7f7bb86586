"""CLIP and VLM machines on tiny random models of the real classes, loaded from local files.

No weights can be downloaded here, so each test builds a miniature of the real architecture
(open_clip's CLIP; transformers' LLaVA with a CLIP vision tower and a Llama decoder), saves it
the way a user's weights arrive (a state-dict file; a ``save_pretrained`` folder) and loads it
back through the machine's public name: the same code path real weights take.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from icm.errors import IcmError
from icm.image.datasets import Truth
from icm.machines import MachineUnavailableError, get_machine
from icm.machines.clip import DEFAULT_LABELS, ClipMachine
from icm.machines.vlm import DEFAULT_PROMPTS, VlmMachine

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.clip_helpers import random_clip_checkpoint  # noqa: E402
from tests.vlm_helpers import save_tiny_llava  # noqa: E402

TINY_CLIP = "icm-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TRUTHS = (
    Truth(captions=("an astronaut in a white suit", "a portrait of a woman"), labels=("person",)),
    Truth(captions=("a cup of coffee on a saucer",), labels=("cup", "coffee")),
)
@pytest.fixture(scope="module")
def noise(photo: np.ndarray) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, photo.shape, dtype=np.uint8)


# -- CLIP ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny open_clip CLIP, registered as an architecture, saved as a bare state dict."""
    return random_clip_checkpoint(tmp_path_factory.mktemp("clip"), TINY_CLIP, TINY_CLIP_CONFIG,
                                  "open_clip_pytorch_model.bin")


@pytest.fixture(scope="module")
def clip_machine(clip_checkpoint: Path) -> ClipMachine:
    machine = get_machine(f"clip:{TINY_CLIP}@{clip_checkpoint}")
    machine.prepare(TRUTHS)
    return machine


def test_clip_loads_the_local_checkpoint(clip_machine: ClipMachine, clip_checkpoint, photo):
    clip_machine.predict([photo])
    saved = torch.load(clip_checkpoint, weights_only=True)
    loaded = clip_machine._model.state_dict()
    assert all(torch.equal(saved[key], loaded[key].cpu()) for key in saved)
    assert clip_machine.profile.size == 64
    assert clip_machine.profile.resize == "shorter-side+center-crop"
    assert "weights=" in clip_machine.fingerprint()
    assert set(clip_machine.versions()) == {"open_clip", "torch"}


def test_clip_outputs_are_deterministic_and_json_ready(clip_machine, photo, noise):
    outputs = clip_machine.predict([photo, photo, noise])
    assert len(outputs) == 3
    assert outputs[0] == outputs[1]
    assert json.loads(json.dumps(outputs[0])) == outputs[0]
    embedding = np.asarray(outputs[0]["embedding"])
    assert embedding.shape == (16,)
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    zeroshot = outputs[0]["zeroshot"]
    assert zeroshot["label"] in {"coffee", "cup", "person"}
    assert zeroshot["top1"] == zeroshot["top5"][0]
    assert outputs[0]["retrieval"]["top"][0] in {c for t in TRUTHS for c in t.captions}


def test_clip_fidelity(clip_machine, photo, noise):
    same, again, other = clip_machine.predict([photo, photo, noise])
    scores = clip_machine.fidelity(same, again)
    assert next(iter(scores)) == clip_machine.primary == "cosine"
    assert scores == {"cosine": 1.0, "zeroshot_top1": 1.0, "retrieval_top5_overlap": 1.0}
    different = clip_machine.fidelity(same, other)
    assert 0.0 <= different["cosine"] < 1.0
    assert all(0.0 <= value <= 1.0 for value in different.values())


def test_clip_accuracy(clip_machine, photo):
    (output,) = clip_machine.predict([photo])
    scores = clip_machine.accuracy(output, TRUTHS[0])
    assert set(scores) == {"recall@1", "recall@5", "zeroshot_correct"}
    assert scores["recall@5"] == 1.0  # three captions in the pool: every one is in the top 5
    assert clip_machine.accuracy(output, Truth(text="no captions or labels")) is None


def test_clip_default_vocabulary_without_labels(clip_checkpoint, photo):
    machine = get_machine(f"clip:{TINY_CLIP}@{clip_checkpoint}")
    machine.prepare([Truth(text="a document")])
    (output,) = machine.predict([photo])
    assert output["zeroshot"]["label"] in DEFAULT_LABELS
    assert "retrieval" not in output
    assert 90 <= len(DEFAULT_LABELS) == len(set(DEFAULT_LABELS))


def test_clip_random_init_and_batching(photo, noise, clip_checkpoint):
    machine = get_machine(f"clip:{TINY_CLIP}@none")
    machine.default_batch = 2  # 5 images: batches of 2, 2, 1
    outputs = machine.predict([photo, noise, photo, noise, photo])
    assert len(outputs) == 5
    assert [machine.fidelity(outputs[0], o)["cosine"] for o in outputs[2::2]] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("clip:ViT-B-32@/nonexistent/weights.bin", "/nonexistent/weights.bin"),
        ("clip:local-dir:/nonexistent/folder", "/nonexistent/folder"),
        ("clip:ViT-B-32", "name the weights"),
        ("clip:hf-hub:org/repo@tag", "drop '@tag'"),
    ],
)
def test_clip_unusable_names_fail_in_one_line(name, needle):
    with pytest.raises(MachineUnavailableError) as caught:
        get_machine(name)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_clip_unknown_architecture_fails_on_first_use(photo):
    machine = get_machine("clip:no-such-architecture@none")
    with pytest.raises(IcmError, match="no-such-architecture"):
        machine.predict([photo])


# -- VLM -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vlm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA (CLIP vision tower + Llama decoder) and its processor, save_pretrained."""
    return save_tiny_llava(tmp_path_factory.mktemp("vlm") / "tiny-llava", DEFAULT_PROMPTS)


@pytest.fixture(scope="module")
def vlm_machine(vlm_folder: Path) -> VlmMachine:
    return get_machine(f"vlm:{vlm_folder}")


def test_vlm_answers_every_prompt_deterministically(vlm_machine, photo, noise):
    outputs = vlm_machine.predict([photo, photo, noise])
    assert len(outputs) == 3
    assert outputs[0] == outputs[1]
    assert json.loads(json.dumps(outputs[0])) == outputs[0]
    answers = outputs[0]["answers"]
    assert len(answers) == len(DEFAULT_PROMPTS) and all(isinstance(a, str) for a in answers)
    assert type(vlm_machine._model).__name__ == "LlavaForConditionalGeneration"
    assert vlm_machine._processor.tokenizer.padding_side == "left"


def test_vlm_fidelity_and_accuracy(vlm_machine, photo, noise):
    same, again, other = vlm_machine.predict([photo, photo, noise])
    scores = vlm_machine.fidelity(same, again)
    assert list(scores) == ["token_f1", "exact_match"] and vlm_machine.primary == "token_f1"
    assert scores == {"token_f1": 1.0, "exact_match": 1.0}
    assert all(0.0 <= value <= 1.0 for value in vlm_machine.fidelity(same, other).values())
    text = same["answers"][2]
    assert vlm_machine.accuracy(same, Truth(text=text or "x"))["text_f1"] == float(bool(text))
    assert vlm_machine.accuracy(same, Truth(captions=("a caption",))) is None


def test_vlm_profile_and_provenance(vlm_machine, vlm_folder):
    profile = vlm_machine.profile
    assert (profile.size, profile.resize) == (32, "shorter-side+center-crop")
    fingerprint = vlm_machine.fingerprint()
    assert str(vlm_folder) in fingerprint and DEFAULT_PROMPTS[0] in fingerprint
    assert set(vlm_machine.versions()) == {"transformers", "torch", "tokenizers"}


def test_vlm_prompts_from_environment(vlm_folder, photo, tmp_path, monkeypatch):
    prompts = tmp_path / "prompts.json"
    settings = {"prompts": ["What is the text?", "Describe."], "read_text": 0, "max_new_tokens": 4}
    prompts.write_text(json.dumps(settings))
    monkeypatch.setenv("ICM_VLM_PROMPTS", str(prompts))
    machine = get_machine(f"vlm:{vlm_folder}")
    assert machine.prompts == ("What is the text?", "Describe.") and machine.read_text == 0
    (output,) = machine.predict([photo])
    assert len(output["answers"]) == 2
    assert all(len(answer.split()) <= 4 for answer in output["answers"])
    assert "Describe." in machine.fingerprint() and "max_new_tokens=4" in machine.fingerprint()
    prompts.write_text(json.dumps(["Read the text."]))
    assert get_machine(f"vlm:{vlm_folder}").read_text is None
    prompts.write_text("{not json")
    with pytest.raises(IcmError, match=r"prompts\.json"):
        get_machine(f"vlm:{vlm_folder}")


def test_vlm_missing_folders_fail_in_one_line(tmp_path):
    with pytest.raises(MachineUnavailableError, match="/nonexistent/smolvlm") as caught:
        get_machine("vlm:/nonexistent/smolvlm")
    assert "\n" not in str(caught.value)
    with pytest.raises(MachineUnavailableError, match=r"no config\.json"):
        get_machine(f"vlm:{tmp_path}")


def test_offline_names_missing_from_the_cache_fail_early(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("vlm:org/uncached-vlm", "clip:hf-hub:org/uncached-clip"):
        with pytest.raises(MachineUnavailableError, match="HF_HUB_OFFLINE"):
            get_machine(name)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert get_machine("vlm:org/uncached-vlm")._model is None  # online: downloads on first use


def test_get_machine_loads_nothing():
    """Naming a machine neither loads weights nor touches the network (planning stays cheap)."""
    code = (
        "import sys\n"
        "import icm.machines.clip, icm.machines.vlm\n"
        "from icm.machines import get_machine\n"
        "clip = get_machine('clip:ViT-B-32@laion2b_s34b_b79k')\n"
        "vlm = get_machine('vlm:Qwen/Qwen2.5-VL-3B-Instruct')\n"
        "assert clip._model is None and vlm._model is None and vlm._processor is None\n"
        "heavy = [m for m in ('open_clip', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
