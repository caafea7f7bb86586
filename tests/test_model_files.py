"""Hostile model files (issue "hostile files"): adapters, restoration models, learned-codec
models and training checkpoints that are torn, garbage, hold NaN or infinity, carry metadata
nested too deep or of the wrong JSON type, or tensors that do not fit the model, are each a
one-line error naming the file, never a traceback or a model that quietly outputs garbage."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors.torch import load as load_bytes  # noqa: E402
from safetensors.torch import save as save_bytes  # noqa: E402
from tests.test_adapt import CONDITIONING, TinyCnn  # noqa: E402
from tests.test_cli import assert_one_line_error, icm  # noqa: E402

from icm.adapt import AdaptedEncoder, AdapterError, AdapterInfo, load_adapter  # noqa: E402
from icm.adapt import save_adapter as save_adapter_file  # noqa: E402
from icm.errors import IcmError  # noqa: E402
from icm.learned import files as learned_files  # noqa: E402
from icm.learned.network import Architecture as LicArchitecture  # noqa: E402
from icm.learned.network import LicNet  # noqa: E402
from icm.restore import RestoreInfo, RestoreModelError, RestoreNet  # noqa: E402
from icm.restore import load_model as load_restorer  # noqa: E402
from icm.restore import save_model as save_restorer  # noqa: E402
from icm.restore.network import Architecture as RestoreArchitecture  # noqa: E402
from icm.training.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from icm.training.weights import Metadata, parse_json  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")
DEEP = "[" * 10_000 + "]" * 10_000


@dataclass(frozen=True)
class Kind:
    """One kind of model file: a valid one on disk, how icm loads it, what it raises, and
    its metadata fields set to the wrong JSON type (value, expected message)."""

    path: Path
    load: Callable[[Path], object]
    error: type[IcmError]
    wrong_types: dict[str, tuple[str, str]]


def adapter_kind(folder: Path) -> Kind:
    torch.manual_seed(0)
    adapted = AdaptedEncoder(TinyCnn(), CONDITIONING)
    info = AdapterInfo("classify:tiny", "tiny-fingerprint", CONDITIONING, True,
                       adapted.layout.kind, {"steps": 1})
    path = folder / "adapter.safetensors"
    save_adapter_file(path, adapted, info)
    return Kind(path, lambda p: load_adapter(p, TinyCnn(), "classify:tiny", "tiny-fingerprint"),
                AdapterError, {
                    "conditioned": ('"no"', "'conditioned' must be a JSON boolean"),
                    "codecs": ('"jpeg"', "'codecs' must be a list of strings"),
                    "edges": ('[0.1, "0.2"]', "'edges' must be a list of numbers"),
                    "trained": ("[1, 2]", "'trained' must be a JSON object"),
                    "encoder": ("yes", "'encoder' must be 'frozen' or 'tuned'"),
                })


def restore_kind(folder: Path) -> Kind:
    torch.manual_seed(0)
    net = RestoreNet(("unknown", "noise"), RestoreArchitecture((4, 4, 4), 4, 4))
    path = folder / "restore.safetensors"
    save_restorer(path, net, RestoreInfo(net.vocabulary, net.arch, {"steps": 1}))
    return Kind(path, load_restorer, RestoreModelError, {
        "vocabulary": ('"unknown"', "'vocabulary' must be a list of strings"),
        "architecture": ('{"widths": ["4", "4", "4"], "embed": 4, "condition": 4}',
                         "'architecture.widths' must be a list of integers"),
        "trained": ("true", "'trained' must be a JSON object"),
    })


def learned_kind(folder: Path) -> Kind:
    torch.manual_seed(0)
    saved = learned_files.save_model(folder / "saved", LicNet(LicArchitecture(8, 8, 8)), {})
    path = folder / "mine.safetensors"  # no hash in the name: edits reach the checks below
    path.write_bytes(saved.read_bytes())
    architecture = {"channels": 8, "latent": 8, "hyper": 8, "lambdas": [0.01, 0.02]}
    return Kind(path, learned_files.load_model, learned_files.LearnedModelError, {
        "architecture": (json.dumps({**architecture, "block_path": "no"}),
                         "'architecture.block_path' must be a JSON boolean"),
        "trained": ('"3000 steps"', "'trained' must be a JSON object"),
    })


KINDS = {"adapter": adapter_kind, "restore": restore_kind, "learned": learned_kind}


@pytest.fixture(params=sorted(KINDS))
def kind(request, tmp_path) -> Kind:
    return KINDS[request.param](tmp_path)


def contents(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    data = path.read_bytes()
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    return load_bytes(data), header["__metadata__"]


def rewrite(path: Path, tensors: dict | None = None, **fields: str) -> Path:
    """``path`` saved again with some tensors and metadata fields replaced (straight through
    safetensors, as an attacker would, not through icm's writer)."""
    old_tensors, metadata = contents(path)
    path.write_bytes(save_bytes({**old_tensors, **(tensors or {})}, metadata={**metadata,
                                                                             **fields}))
    return path


def first_float(path: Path) -> tuple[str, torch.Tensor]:
    tensors, _ = contents(path)
    name = next(n for n, t in sorted(tensors.items()) if t.is_floating_point() and t.numel())
    return name, tensors[name].clone()


def assert_refused(kind: Kind, *needles: str) -> None:
    with pytest.raises(kind.error) as caught:
        kind.load(kind.path)
    text = str(caught.value)
    assert "\n" not in text and str(kind.path) in text and len(text) < 400, text
    for needle in needles:
        assert needle in text, text


def test_a_valid_file_loads(kind):
    assert kind.load(kind.path) is not None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_infinite_weights_are_refused(kind, value):
    name, tensor = first_float(kind.path)
    tensor.view(-1)[0] = value
    rewrite(kind.path, {name: tensor})
    assert_refused(kind, name, "NaN or infinite")


def test_metadata_nested_ten_thousand_deep_is_refused(kind):
    rewrite(kind.path, trained=DEEP)
    assert_refused(kind, "'trained' is not JSON", "nested deeper")


def test_metadata_too_large_is_refused(kind):
    rewrite(kind.path, trained=json.dumps({"note": "x" * 300_000}))
    assert_refused(kind, "metadata is larger than")


def test_nan_in_metadata_is_not_a_number(kind):
    rewrite(kind.path, trained='{"loss": NaN}')
    assert_refused(kind, "NaN is not a JSON number")


def test_wrong_json_types_are_refused(kind):
    for field, (value, needle) in kind.wrong_types.items():
        pristine = kind.path.read_bytes()
        rewrite(kind.path, **{field: value})
        assert_refused(kind, needle)
        kind.path.write_bytes(pristine)


def test_a_missing_field_is_refused(kind):
    tensors, metadata = contents(kind.path)
    field = next(iter(kind.wrong_types))
    del metadata[field]
    kind.path.write_bytes(save_bytes(tensors, metadata=metadata))
    assert_refused(kind, f"lacks {field!r}")


@pytest.mark.parametrize("cut", [10, 200])
def test_a_truncated_file_is_refused(kind, cut):
    kind.path.write_bytes(kind.path.read_bytes()[:-cut])
    assert_refused(kind, "not a safetensors")


@pytest.mark.parametrize("garbage", [b"", b"\x00" * 7, b"\xff" * 64, bytes(range(256)) * 8,
                                     (2**40).to_bytes(8, "little") + b"{}"])
def test_garbage_bytes_are_refused(kind, garbage):
    kind.path.write_bytes(garbage)
    assert_refused(kind, "not a safetensors" if garbage else "empty file")


def test_a_wrong_tensor_shape_is_refused(kind):
    name, tensor = first_float(kind.path)
    rewrite(kind.path, {name: torch.zeros(tensor.numel() + 1)})
    assert_refused(kind, name, "has shape")


def test_an_unexpected_tensor_is_refused(kind):
    rewrite(kind.path, {"stowaway": torch.zeros(3)})
    assert_refused(kind, "stowaway")


def test_integer_weights_are_refused(kind):
    name, tensor = first_float(kind.path)
    rewrite(kind.path, {name: torch.zeros(tensor.shape, dtype=torch.int32)})
    assert_refused(kind, name, "the model needs")


def test_a_dtype_no_model_uses_is_refused(kind):
    name, tensor = first_float(kind.path)
    rewrite(kind.path, {name: tensor.to(torch.float8_e4m3fn)})
    assert_refused(kind, name, "no icm model uses")


def test_an_adapter_conditioned_no_is_not_true(tmp_path):
    kind = adapter_kind(tmp_path)
    for value in ("no", '"no"', "1", "null"):
        pristine = kind.path.read_bytes()
        rewrite(kind.path, conditioned=value)
        assert_refused(kind, "'conditioned'")
        kind.path.write_bytes(pristine)


def test_a_restorer_built_from_huge_sizes_allocates_nothing(tmp_path):
    kind = restore_kind(tmp_path)
    rewrite(kind.path, architecture=json.dumps({"widths": [2**20] * 3, "embed": 2**20,
                                                "condition": 2**20}))
    assert_refused(kind, "has shape")  # compared on torch's meta device, never allocated


def test_cli_reports_a_nan_adapter_in_one_line(tmp_path, monkeypatch, capsys):
    kind = adapter_kind(tmp_path)
    name, tensor = first_float(kind.path)
    tensor.view(-1)[0] = float("nan")
    rewrite(kind.path, {name: tensor})
    code, _, err = icm(monkeypatch, capsys, "adapt", "info", kind.path)
    assert_one_line_error(code, err, "adapter.safetensors", "NaN or infinite")


def test_cli_reports_deep_learned_metadata_in_one_line(tmp_path, monkeypatch, capsys):
    kind = learned_kind(tmp_path)
    rewrite(kind.path, trained=DEEP)
    code, _, err = icm(monkeypatch, capsys, "learned", "info", kind.path)
    assert_one_line_error(code, err, "mine.safetensors", "nested deeper")


def test_typed_fields_take_exactly_their_json_type(tmp_path):
    fields = {"flag": "true", "count": "3", "ratio": "2", "names": '["a"]', "one": "1.0"}
    metadata = Metadata(fields, tmp_path / "m", "test", IcmError)
    assert metadata.value("flag", bool) is True
    assert metadata.value("count", int) == 3 and metadata.value("ratio", float) == 2.0
    assert metadata.value("names", list[str]) == ["a"]
    assert metadata.value("absent", dict, {}) == {}
    for key, kind, needle in (("count", bool, "a JSON boolean"), ("flag", int, "an integer"),
                              ("one", int, "an integer"), ("names", list[int], "integers")):
        with pytest.raises(IcmError, match=needle):
            metadata.value(key, kind)
    assert parse_json("[" * 32 + "]" * 32) is not None
    with pytest.raises(ValueError, match="nested deeper"):
        parse_json("[" * 33 + "]" * 33)
    assert parse_json('["[[[[", "{{{{"]') == ["[[[[", "{{{{"]  # brackets in strings are text


# Training checkpoints: torch pickles, so what matters first is that loading one never runs
# code (weights_only=True), then that what it holds is sound.

IDENTITY = {"lr": 0.001, "widths": [4, 4]}


def checkpoint(path: Path, **states) -> Path:
    save_checkpoint(path, IDENTITY, 3, {"model": {"w": torch.ones(2)}, **states})
    return path


def assert_checkpoint_refused(path: Path, *needles: str) -> None:
    with pytest.raises(IcmError) as caught:
        load_checkpoint(path, IDENTITY)
    text = str(caught.value)
    assert "\n" not in text and str(path) in text, text
    for needle in needles:
        assert needle in text, text


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_valid_checkpoint_loads(tmp_path):
    state = load_checkpoint(checkpoint(tmp_path / "c.ckpt"), IDENTITY)
    assert state["step"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))
    assert load_checkpoint(tmp_path / "none.ckpt", IDENTITY) is None


def test_a_checkpoint_never_runs_code(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"identity": IDENTITY, "step": 1, "x": _RunsCode(marker)}, path)
    assert_checkpoint_refused(path, "does not load")
    assert not marker.exists()


def test_checkpoint_values_must_be_finite(tmp_path):
    path = checkpoint(tmp_path / "nan.ckpt", optimiser={"state": {0: torch.tensor([1.0,
                                                                                  float("nan")])}})
    assert_checkpoint_refused(path, "optimiser.state.0", "NaN or infinite")
    path = checkpoint(tmp_path / "inf.ckpt", wall_s=float("inf"))
    assert_checkpoint_refused(path, "wall_s", "NaN or infinite")


def test_checkpoint_nesting_is_bounded(tmp_path):
    nested: list = []
    for _ in range(40):
        nested = [nested]
    assert_checkpoint_refused(checkpoint(tmp_path / "deep.ckpt", losses=nested),
                              "nested deeper")
    path = checkpoint(tmp_path / "deeper.ckpt")  # 10000 deep: written as raw pickle opcodes
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    pickle_name = next(name for name in members if name.endswith("data.pkl"))
    members[pickle_name] = (b"\x80\x02}(X\x08\x00\x00\x00identity" + b"]" * 10_000
                            + b"a" * 9_999 + b"X\x04\x00\x00\x00stepK\x01u.")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert_checkpoint_refused(path, "nested deeper")


def test_a_torn_or_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "step.ckpt"
    torch.save({"identity": IDENTITY, "step": "3"}, path)
    assert_checkpoint_refused(path, "not a count of steps")
    path.write_bytes(b"torn")
    assert_checkpoint_refused(path, "does not load")
    torch.save([1, 2], path)
    assert_checkpoint_refused(path, "not an icm checkpoint")
    save_checkpoint(path, {**IDENTITY, "lr": 0.1}, 3, {})
    assert_checkpoint_refused(path, "other settings")
