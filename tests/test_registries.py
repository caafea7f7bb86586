"""Every registered machine, degradation, importance provider and bench executor, through its
registry's one interface (as ``test_codecs.py`` does for codecs; timm's ``test_models.py`` habit).

Each entry is listed, constructs by name (or refuses with a one-line reason that carries its
install hint, and is then skipped with that reason), and, where it can run here, runs on a small
odd-sized image and returns what its interface documents:

* a machine: one JSON-ready output per image, deterministic and independent of batch position,
  with the keys its family documents, and a fidelity whose first score is ``primary`` and is 1
  for identical outputs;
* a degradation: an image of the same shape and dtype, equal bytes for equal (strength, seed),
  the identity at strength 0, seed-independent exactly when ``random`` is False, replayable
  from its record;
* an importance provider: an :class:`ImportanceMap` in [0, 1] on the ``block`` grid covering
  the image (partial last row and column), deterministic.

Named CLIP and VLM models download their weights on first use, which tests never do: their
families run here on a tiny random-initialised open_clip model saved as a local weight file
(``tests/clip_helpers.py``, as the CLIP tests do); the VLM family's tiny LLaVA lives in
``test_machines_clip_vlm.py``. Test plugins (``fake_machines``) are left out of the listings.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from icm.bench.executors import EXECUTORS, UnknownExecutorError, get_executor
from icm.degrade import (
    DEGRADATIONS,
    Degradation,
    DegradationRecord,
    degrade,
    get_degradation,
    list_degradations,
)
from icm.importance import (
    PROVIDERS,
    ImportanceMap,
    ImportanceProvider,
    UnknownImportanceError,
    get_importance,
    list_importance,
)
from icm.importance.maps import grid_shape
from icm.machines import (
    KNOWN_MODELS,
    MACHINES,
    InputProfile,
    Machine,
    MachineUnavailableError,
    get_machine,
    parse_machine,
)

TESTS = Path(__file__).resolve().parent


def builtin(cls: type) -> bool:
    """False for a test plugin's class (defined in a file under tests/)."""
    source = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return source is None or not Path(source).resolve().is_relative_to(TESTS)


MACHINE_NAMES = [name for family, names in KNOWN_MODELS.items() if builtin(MACHINES[family])
                 for name in names]
DEGRADATION_NAMES = [cls.name for cls in list_degradations() if builtin(cls)]
PROVIDER_NAMES = [cls.name for cls in list_importance() if builtin(cls)]
EXECUTOR_NAMES = [name for name, cls in EXECUTORS.items() if builtin(cls)]

#: families whose listed models download weights on first use
DOWNLOADED_WEIGHTS = {
    "clip": "the clip family runs here on tiny random weights (clip:tiny-random)",
    "vlm": "the vlm family runs on a tiny LLaVA in test_machines_clip_vlm.py",
}
TINY_CLIP = "icm-test-registries-tiny-clip"
# 64-px input in 8-px patches: an 8x8 patch grid, milliseconds per image
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_CLIP_MACHINE = "clip:tiny-random"  # stands for clip:<TINY_CLIP>@<its weight file>
BLOCK = 16


@pytest.fixture(scope="module", autouse=True)
def one_math_thread():
    """One thread for torch, ONNX Runtime and ncnn (ICM_THREADS): the CPUs are shared, and a
    second thread mostly waits at barriers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ICM_THREADS", "1")
        try:
            import torch
        except ImportError:
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``<architecture>@<weight file>`` of a seeded random open_clip ViT, saved as a state dict."""
    pytest.importorskip("open_clip")
    from tests.clip_helpers import random_clip_checkpoint

    weights = random_clip_checkpoint(tmp_path_factory.mktemp("registries-clip"), TINY_CLIP,
                                     TINY_CLIP_CONFIG)
    return f"{TINY_CLIP}@{weights}"


def assert_one_line(message: str, *needles: str) -> None:
    assert message and "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)


# -- machines ------------------------------------------------------------------------------------
def test_machine_families_are_registered():
    assert {"classify", "detect", "ocr", "clip", "vlm"} <= set(MACHINES)
    for family, cls in MACHINES.items():
        assert cls.family == family and issubclass(cls, Machine)
        assert KNOWN_MODELS[family], f"{family} lists no model for icm machines"


@pytest.mark.parametrize("name", MACHINE_NAMES)
def test_machine_is_listed_and_constructs(name):
    from icm.cli.bench import machine_rows

    spec = parse_machine(name)
    assert str(spec) == name
    cls = MACHINES[spec.family]
    assert name in {row["machine"] for row in machine_rows()}
    assert cls.primary and cls.summary and cls.kinds and cls.kinds <= {"photo", "document"}
    reason = cls.unavailable_reason(spec)
    if reason is not None:
        assert_one_line(reason)
        with pytest.raises(MachineUnavailableError) as caught:
            get_machine(name)
        assert_one_line(str(caught.value), reason, cls.install_hint.strip())
        pytest.skip(f"{name} unavailable here: {reason}")
    machine = get_machine(name)  # loads nothing yet
    assert type(machine) is cls and machine.name == name
    assert isinstance(machine.fingerprint(), str) and machine.fingerprint()
    provider = machine.default_importance()
    assert provider.partition("=")[0] in PROVIDERS


def family_keys(family: str, output: dict, image: np.ndarray) -> None:
    """The output keys and value shapes each family documents."""
    height, width = image.shape[:2]
    if family == "classify":
        assert list(output) == ["top5", "top5_prob", "top1_label", "probs"]
        assert len(output["probs"]) == 1000
        assert sum(output["probs"]) == pytest.approx(1.0, abs=1e-3)
        assert len(output["top5"]) == 5 and all(isinstance(i, int) for i in output["top5"])
        assert output["top5_prob"] == sorted(output["top5_prob"], reverse=True)
        assert isinstance(output["top1_label"], str)
    elif family == "detect":
        assert list(output) == ["boxes"]
        for x0, y0, x1, y1, score, label in output["boxes"]:
            assert 0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height
            assert 0.0 <= score <= 1.0 and float(label).is_integer()
    elif family == "ocr":
        assert list(output) == ["lines", "text"] and isinstance(output["text"], str)
        for line in output["lines"]:
            assert {"text", "box", "score"} <= set(line)
    elif family == "clip":
        assert {"embedding", "zeroshot"} <= set(output)
        assert len(output["embedding"]) == TINY_CLIP_CONFIG["embed_dim"]
        assert {"top1", "label", "top5", "scores"} <= set(output["zeroshot"])
    elif family == "vlm":
        assert list(output) == ["answers"]
        assert all(isinstance(answer, str) for answer in output["answers"])
    else:  # a new family: add its documented keys here
        pytest.fail(f"no documented output shape for family {family!r}")


def assert_fidelity(machine: Machine, pristine: dict, decoded: dict, same: bool) -> None:
    scores = machine.fidelity(pristine, decoded)
    assert next(iter(scores)) == machine.primary
    for key, value in scores.items():
        assert isinstance(value, float) and math.isfinite(value), (key, value)
        if key not in {"kl", "cer"}:  # named as not in [0, 1] (Machine's docstring)
            assert 0.0 <= value <= 1.0, (key, value)
    if same:
        assert scores[machine.primary] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", [*MACHINE_NAMES, TINY_CLIP_MACHINE])
def test_machine_reads_a_small_image(request, name, odd_photo, photo):
    if name == TINY_CLIP_MACHINE:
        name = f"clip:{request.getfixturevalue('tiny_clip')}"
    spec = parse_machine(name)
    cls = MACHINES[spec.family]
    if name in KNOWN_MODELS[spec.family] and spec.family in DOWNLOADED_WEIGHTS:
        pytest.skip(f"{name}: weights download on first use; "
                    f"{DOWNLOADED_WEIGHTS[spec.family]}")
    reason = cls.unavailable_reason(spec)
    if reason is not None:
        pytest.skip(f"{name} unavailable here: {reason}")
    machine = get_machine(name)
    outputs = machine.predict([odd_photo, photo])
    assert len(outputs) == 2
    for output, image in zip(outputs, (odd_photo, photo), strict=True):
        assert isinstance(output, dict)
        assert json.loads(json.dumps(output)) == output  # JSON-ready, as the ledger stores it
        family_keys(spec.family, output, image)
    assert machine.predict([odd_photo]) == outputs[:1]  # deterministic, batch-independent
    assert isinstance(machine.profile, InputProfile)
    width, height = machine.fit_size(odd_photo)
    assert 0 < width <= odd_photo.shape[1] and 0 < height <= odd_photo.shape[0]
    assert_fidelity(machine, outputs[0], outputs[0], same=True)
    assert_fidelity(machine, outputs[0], outputs[1], same=False)
    assert all(isinstance(v, str) for v in machine.versions().values())


# -- degradations --------------------------------------------------------------------------------
def test_degradations_are_registered():
    assert {"blur", "haze", "jpeg", "noise", "rain"} <= set(DEGRADATIONS)
    assert [cls.name for cls in list_degradations()] == sorted(DEGRADATIONS)


@pytest.mark.parametrize("name", DEGRADATION_NAMES)
def test_degradation(name, odd_photo):
    cls = DEGRADATIONS[name]
    assert cls in list_degradations() and cls.summary and cls.mapping
    degradation = get_degradation(name.upper())  # names are case-insensitive
    assert type(degradation) is cls and isinstance(degradation, Degradation)
    before = odd_photo.copy()
    out = degradation.apply(odd_photo, 0.5, seed=3)
    assert out.shape == odd_photo.shape and out.dtype == np.uint8
    assert np.array_equal(odd_photo, before)  # the input is never modified
    assert not np.array_equal(out, odd_photo)
    assert np.array_equal(degradation.apply(odd_photo, 0.5, seed=3), out)
    other_seed = degradation.apply(odd_photo, 0.5, seed=4)
    assert np.array_equal(other_seed, out) == (not cls.random)
    clean = degradation.apply(odd_photo, 0.0, seed=3)
    assert np.array_equal(clean, odd_photo) and clean is not odd_photo
    severe = degradation.apply(odd_photo, 1.0, seed=3)
    assert severe.shape == odd_photo.shape and severe.dtype == np.uint8
    record = DegradationRecord(name, 0.5, 3)
    assert str(record) == f"{name}@0.5"
    assert np.array_equal(degrade(odd_photo, record), out)


# -- importance providers ------------------------------------------------------------------------
#: arguments that run offline: the CLIP providers' default model downloads, so they run on the
#: tiny random ViT ({clip}); every other provider runs with its default argument
RUN_ARGUMENTS = {"clip-attention": "{clip}", "prompt": "a red car@{clip}"}


def test_importance_providers_are_registered():
    expected = {"saliency", "sensitivity", "fisher", "text", "detections", "clip-attention",
                "prompt"}
    assert expected <= set(PROVIDERS)
    assert [cls.name for cls in list_importance()] == sorted(PROVIDERS)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_importance_provider_is_listed_and_constructs(name):
    cls = PROVIDERS[name]
    assert cls in list_importance() and cls.name == name and cls.summary
    if cls.argument_help and cls.default_argument is None:
        with pytest.raises(UnknownImportanceError) as caught:
            get_importance(name)
        assert_one_line(str(caught.value), "needs =", cls.argument_help)
        return
    reason = cls.unavailable_reason(cls.default_argument)
    if reason:
        assert_one_line(reason)
        with pytest.raises(UnknownImportanceError) as caught:
            get_importance(name)
        assert_one_line(str(caught.value), reason, cls.install_hint.strip())
        pytest.skip(f"importance {name} unavailable here: {reason}")
    provider = get_importance(name)  # cheap: models load on the first compute
    assert type(provider) is cls and isinstance(provider, ImportanceProvider)
    expected = f"{name}={cls.default_argument}" if cls.default_argument else name
    assert provider.full_name == expected
    assert provider.fingerprint().startswith(expected)


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_importance_provider_maps_a_small_image(request, name, odd_photo):
    cls = PROVIDERS[name]
    argument = RUN_ARGUMENTS.get(name)
    if argument is not None and "{clip}" in argument:
        argument = argument.format(clip=request.getfixturevalue("tiny_clip"))
    reason = cls.unavailable_reason(argument if argument is not None else cls.default_argument)
    if reason:
        pytest.skip(f"importance {name} unavailable here: {reason}")
    provider = get_importance(name if argument is None else f"{name}={argument}")
    before = odd_photo.copy()
    importance = provider.compute(odd_photo, BLOCK)
    assert np.array_equal(odd_photo, before)
    height, width = odd_photo.shape[:2]
    assert isinstance(importance, ImportanceMap)
    assert importance.shape == grid_shape(height, width, BLOCK) == (5, 7)  # partial blocks
    assert (importance.width, importance.height, importance.block) == (width, height, BLOCK)
    values = importance.values
    assert values.dtype == np.float32 and np.all(np.isfinite(values))
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert importance.provider == provider.full_name
    assert importance.to_pixels().shape == (height, width)
    json.dumps(importance.describe())
    assert np.array_equal(provider.compute(odd_photo, BLOCK).values, values)


# -- bench executors -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", EXECUTOR_NAMES)
def test_executor_is_listed(name):
    """Running them is test_bench.py's and test_bench_ray.py's work; here: the registry."""
    cls = EXECUTORS[name]
    assert cls.name == name
    reason = cls.unavailable_reason()
    if reason:
        assert_one_line(reason)
        with pytest.raises(UnknownExecutorError) as caught:
            get_executor(name)
        assert_one_line(str(caught.value), reason)
        pytest.skip(f"executor {name} unavailable here: {reason}")
    assert get_executor(name.upper()) is cls
    workers = cls.default_workers()
    assert isinstance(workers, int) and workers >= 0


def test_executors_are_registered():
    assert {"local", "ray"} <= set(EXECUTORS)
