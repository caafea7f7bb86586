"""The adapter gate: decided on validation photos, exact identity where shut, carried in the
file and shown by ``icm adapt info``; and the same path on a (random-init) CLIP ViT."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.test_adapt import CONDITIONING, TinyCnn  # noqa: E402
from tests.test_cli import assert_one_line_error, icm  # noqa: E402

from icm.adapt import (  # noqa: E402  (after the torch skip)
    AdaptedEncoder,
    AdapterError,
    AdapterInfo,
    Condition,
    GateEntry,
    read_adapter,
    save_adapter,
)
from icm.adapt.files import load_adapter  # noqa: E402
from icm.adapt.gate import cluster_bootstrap, decide  # noqa: E402


def _validation(key: str, per_photo: list[float], views: int = 4) -> list[tuple]:
    """(key, photo, gain) rows: ``views`` samples per photo around its value."""
    rng = np.random.default_rng(len(key))
    return [(key, f"{key}-p{p}", value + rng.normal(0, 0.01))
            for p, value in enumerate(per_photo) for _ in range(views)]


def test_the_gate_opens_only_where_validation_gained_reliably():
    rows = (_validation("jpeg@2", [0.2, 0.3, 0.25, 0.15, 0.2])      # reliable gain
            + _validation("jpeg@3", [-0.2, -0.1, -0.3, -0.2, -0.1])  # reliable loss
            + _validation("hevc@2", [0.6, -0.5, 0.4, -0.4, 0.1])     # mean > 0, but noise
            + _validation("hevc@3", [0.3, 0.3]))                      # too few photos
    keys, photos, gain = zip(*rows, strict=True)
    top1 = np.zeros(len(rows))
    gate = decide(keys, photos, np.array(gain), top1)
    assert {k for k, e in gate.items() if e.open} == {"jpeg@2"}
    assert gate["jpeg@2"].photos == 5 and gate["jpeg@2"].samples == 20
    assert gate["hevc@2"].gain > 0 and gate["hevc@2"].gain_low < 0
    assert gate["hevc@3"].photos == 2 and not gate["hevc@3"].open
    worse_top1 = decide(keys, photos, np.array(gain), top1 - 0.1)
    assert not any(e.open for e in worse_top1.values())  # KL fell but top-1 agreement fell


def test_intervals_resample_photos_not_their_views():
    """Ten copies of each photo's value are one photo's evidence, not ten."""
    values = np.array([0.3, -0.1, 0.2, 0.0, 0.4])
    photos = [f"p{i}" for i in range(5)]
    once = cluster_bootstrap(values, photos, np.random.default_rng(0), (5.0, 95.0))
    tenfold = cluster_bootstrap(np.repeat(values, 10), np.repeat(photos, 10),
                                np.random.default_rng(0), (5.0, 95.0))
    assert tenfold == pytest.approx(once)
    assert cluster_bootstrap(values, ["one"] * 5, np.random.default_rng(0)) == [float("-inf")]


def _acting(adapted: AdaptedEncoder) -> AdaptedEncoder:
    torch.manual_seed(1)
    torch.nn.init.normal_(adapted.embedding.codec.weight)
    torch.nn.init.normal_(adapted.embedding.bucket.weight)
    torch.nn.init.normal_(adapted.adapter.film[-1].weight)
    return adapted


def test_a_shut_condition_reads_exactly_as_the_frozen_encoder():
    torch.manual_seed(0)
    plain_cnn = TinyCnn()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        plain = plain_cnn(x)
        adapted = _acting(AdaptedEncoder(plain_cnn, CONDITIONING,
                                         gate=frozenset({"jpeg@2"})))
        opened, shut = Condition("jpeg", 0.07), Condition("hevc", 0.07)
        adapted.condition([opened, shut])  # one batch, one gate per image
        both = adapted.encoder(x)
        assert not torch.equal(both[0], plain[0])
        assert torch.equal(both[1], plain[1])
        adapted.condition([Condition("jpeg", 0.5)] * 2)  # another bucket: shut
        assert torch.equal(adapted.encoder(x), plain)
        adapted.gate = None  # ungated (training, old files): acts everywhere
        adapted.condition([shut, shut])
        assert not torch.equal(adapted.encoder(x), plain)

        one = _acting(AdaptedEncoder(TinyCnn(), CONDITIONING, conditioned=False,
                                     gate=frozenset()))
        one.condition([opened, shut])
        reference = TinyCnn()
        reference.load_state_dict(one.encoder.state_dict())
        assert torch.equal(one.encoder(x), reference(x))  # its one gate is shut
        one.gate = frozenset({"all"})
        one.condition([opened, shut])
        assert not torch.equal(one.encoder(x), reference(x))


def _gated_file(tmp_path, gate: dict | None, first_stage: int = 0) -> tuple:
    adapted = _acting(AdaptedEncoder(TinyCnn(), CONDITIONING, first_stage=min(first_stage, 1)))
    info = AdapterInfo("tiny", "fp-tiny", CONDITIONING, True, adapted.layout.kind, {}, False,
                       gate, first_stage)
    path = tmp_path / "gated.safetensors"
    save_adapter(path, adapted, info)
    return path, adapted


GATE = {"jpeg@2": GateEntry(True, 40, 8, 0.12, 0.05, 0.02),
        "hevc@2": GateEntry(False, 40, 8, -0.03, -0.08, -0.01),
        "unknown@2": GateEntry(False, 3, 1, 0.2, None, 0.0)}


def test_the_gate_travels_in_the_file_and_info_says_where_it_is_the_identity(
        tmp_path, monkeypatch, capsys):
    path, _ = _gated_file(tmp_path, GATE)
    assert read_adapter(path)[1].gate == GATE
    loaded = load_adapter(path, TinyCnn(), "tiny", "fp-tiny")
    assert loaded.gate == frozenset({"jpeg@2"})
    code, stdout, _ = icm(monkeypatch, capsys, "adapt", "info", path)
    shown = json.loads(stdout)["gate"]
    assert code == 0
    assert shown["jpeg 0.05-0.1 bpp"].startswith("adapted")
    assert shown["hevc 0.05-0.1 bpp"].startswith("identity")
    assert "KL to the pristine output +0.0300 (90% upper bound +0.0800), top-1 agreement " \
        "-0.010; 40 views of 8 photos" in shown["hevc 0.05-0.1 bpp"]
    assert shown["any other condition"].startswith("identity")


@pytest.mark.parametrize(("gate", "needle"), [
    ({"avif@2": GATE["jpeg@2"]}, "gate key 'avif@2' is not a condition"),
    ({"jpeg@99": GATE["jpeg@2"]}, "gate key 'jpeg@99'"),
    ("not a gate", "'gate' must be a JSON object"),
])
def test_a_bad_gate_in_a_file_is_a_one_line_error(tmp_path, monkeypatch, capsys, gate, needle):
    path, adapted = _gated_file(tmp_path, None)
    from safetensors.torch import load_file, save_file

    metadata = AdapterInfo("tiny", "fp-tiny", CONDITIONING, True, adapted.layout.kind, {},
                           False, GATE).metadata()
    metadata["gate"] = json.dumps(gate if isinstance(gate, str) else
                                  {k: e.record() for k, e in gate.items()})
    save_file(load_file(str(path)), str(path), metadata=metadata)
    with pytest.raises(AdapterError, match=needle):
        read_adapter(path)
    code, _, err = icm(monkeypatch, capsys, "adapt", "info", path)
    assert_one_line_error(code, err, "gated.safetensors", needle.split("'")[0])


def test_a_wrongly_typed_gate_entry_is_refused(tmp_path):
    path, adapted = _gated_file(tmp_path, None)
    from safetensors.torch import load_file, save_file

    metadata = AdapterInfo("tiny", "fp-tiny", CONDITIONING, True, adapted.layout.kind, {},
                           False, GATE).metadata()
    record = json.loads(metadata["gate"])
    record["jpeg@2"]["open"] = "yes"  # truthy, but not a JSON boolean
    metadata["gate"] = json.dumps(record)
    save_file(load_file(str(path)), str(path), metadata=metadata)
    with pytest.raises(AdapterError, match=r"gate\.jpeg@2\.open' must be a JSON boolean"):
        read_adapter(path)


def test_a_first_stage_beyond_the_encoder_is_refused(tmp_path):
    path, _ = _gated_file(tmp_path, GATE, first_stage=1)
    assert load_adapter(path, TinyCnn(), "tiny", "fp-tiny").layout.stages == (2,)
    path, _ = _gated_file(tmp_path, GATE, first_stage=5)
    with pytest.raises(AdapterError, match="first adapted stage 5") as caught:
        load_adapter(path, TinyCnn(), "tiny", "fp-tiny")
    assert "gated.safetensors" in str(caught.value)
