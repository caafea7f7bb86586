"""Codec-conditional adapters: identity at birth, learning, files, resume, bad files."""

from __future__ import annotations

import importlib.util

import pytest

torch = pytest.importorskip("torch")

from tests.test_cli import assert_one_line_error, icm  # noqa: E402

from icm.adapt import (  # noqa: E402  (after the torch skip)
    INPUT_BPP_EDGES,
    AdaptedEncoder,
    AdapterError,
    Condition,
    Conditioning,
    TrainConfig,
    load_adapter,
    read_adapter,
    train_adapter,
)
from icm.adapt import train as train_module  # noqa: E402
from icm.adapt.views import ViewPlan, build_views  # noqa: E402
from icm.adapt.views import windows as view_windows  # noqa: E402

lite0 = pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None,
                           reason="EfficientNet-Lite0 (icm[bench]) is not installed")
CONDITIONING = Conditioning(("jpeg", "hevc"))


class _Block(torch.nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self._project_conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x):
        return torch.relu(self._project_conv(x))


class TinyCnn(torch.nn.Module):
    """The EfficientNet layout in miniature: a ``_blocks`` list with ``_project_conv``s."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks = torch.nn.ModuleList([_Block(3, 4), _Block(4, 4), _Block(4, 8)])

    def forward(self, x):
        for block in self._blocks:
            x = block(x)
        return x


def test_conditions_become_ids_with_zero_for_unknown():
    assert CONDITIONING.ids([Condition("hevc", 0.07), Condition("avif", None)]) == ([2, 0],
                                                                                   [2, 0])
    assert CONDITIONING.bucket_id(Condition("jpeg", 5.0)) == CONDITIONING.bucket_slots - 1


def test_rate_buckets_mean_the_same_at_every_image_size():
    """The machine shrinks a 448 px image by two: its 0.1 bpp puts 0.4 bits into each input
    pixel, as 0.4 bpp does on a 224 px image. File-bpp buckets (old files) tell them apart."""
    per_input = Conditioning(("jpeg",), INPUT_BPP_EDGES, input_side=224)
    small, large = Condition("jpeg", 0.4, (224, 224)), Condition("jpeg", 0.1, (448, 672))
    assert per_input.rate(large) == pytest.approx(0.4)
    assert per_input.bucket_id(small) == per_input.bucket_id(large)
    assert CONDITIONING.bucket_id(small) != CONDITIONING.bucket_id(large)
    assert per_input.bucket_id(Condition("jpeg", 0.1, (224, 224))) < per_input.bucket_id(large)
    assert per_input.bucket_id(Condition("jpeg", 0.4)) == per_input.bucket_id(small)  # size unknown
    assert per_input.bucket_range(1) == "<0.15 bpp/input px"
    assert per_input.bucket_range(3) == "0.3-0.6 bpp/input px"


def test_a_fresh_adapter_is_the_identity_on_cnns_and_vits():
    torch.manual_seed(0)
    cnn = TinyCnn()
    x = torch.rand(2, 3, 16, 16)
    before = cnn(x)
    adapted = AdaptedEncoder(cnn, CONDITIONING)
    assert adapted.layout.stages == (1, 2) and adapted.layout.channels == (4, 8)
    adapted.condition([Condition("jpeg", 0.1), Condition("hevc", 0.9)])
    assert torch.equal(cnn(x), before)
    assert not any(p.requires_grad for p in cnn.parameters())

    open_clip = pytest.importorskip("open_clip")
    vit = open_clip.model.VisionTransformer(image_size=32, patch_size=16, width=32, layers=1,
                                            heads=2, mlp_ratio=2.0, output_dim=8).eval()
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        reference = vit(image)
        adapted = AdaptedEncoder(vit, CONDITIONING)
        adapted.condition([Condition("jpeg", 0.1)])
        assert torch.equal(vit(image), reference)
        torch.nn.init.normal_(adapted.adapter.project.weight)  # a trained adapter does act
        adapted.condition([Condition("jpeg", 0.1)])
        assert not torch.equal(vit(image), reference)


def test_reading_from_a_stored_frozen_prefix_equals_the_full_pass():
    """Training and reading from the stored output of the plain stages (what views keep for a
    CNN adapter that starts later) must give exactly the full pass's outputs."""
    from icm.adapt.encoders import from_prefix, frozen_prefix

    torch.manual_seed(0)
    adapted = AdaptedEncoder(TinyCnn(), CONDITIONING, first_stage=1)
    assert adapted.layout.stages == (2,) and adapted.cut == 2
    torch.nn.init.normal_(adapted.adapter.film[-1].weight)
    torch.nn.init.normal_(adapted.embedding.codec.weight)
    x = torch.rand(3, 3, 12, 12)
    run = lambda module, inputs: module(inputs)  # noqa: E731
    with torch.no_grad():
        adapted.condition([Condition("jpeg", 0.1)] * 3)
        full = adapted.encoder(x)
        prefix = frozen_prefix(adapted.encoder, adapted.cut, run, x)
        assert torch.equal(from_prefix(adapted.encoder, adapted.cut, run, prefix), full)
        adapted.gate = frozenset()  # shut: the prefix read on is the plain encoder's output
        adapted.condition([Condition("jpeg", 0.1)] * 3)
        assert not torch.equal(adapted.encoder(x), full)
        assert torch.equal(from_prefix(adapted.encoder, adapted.cut, run, prefix), prefix)
    with pytest.raises(AdapterError, match="first adapted stage 2"):
        AdaptedEncoder(TinyCnn(), CONDITIONING, first_stage=2)


def test_an_encoder_without_a_known_layout_is_refused():
    with pytest.raises(AdapterError, match="cannot place an adapter"):
        AdaptedEncoder(torch.nn.Linear(3, 3), CONDITIONING)


@lite0
def test_training_lowers_the_loss_and_the_file_reloads_to_identical_outputs(tmp_path):
    out = tmp_path / "lite0.safetensors"
    config = TrainConfig(codecs=("jpeg",), images="samples", out=out, levels={"jpeg": ("q5",)},
                         steps=12, batch=4, lr=3e-3, limit=2, views=2, scales=(1.0,),
                         val_share=0, patience=0, anchor_weight=0)
    result = train_adapter(config)
    assert result.steps == 12 and result.gate is None  # no validation photos: ungated
    assert sum(result.losses[-3:]) < 0.8 * sum(result.losses[:3])
    assert not out.with_suffix(".safetensors.ckpt").exists()

    from icm.machines import get_machine

    machine = get_machine(config.machine)
    parts = machine.torch_parts()
    _, info = read_adapter(out)
    assert info.conditioning.codecs == ("jpeg",) and info.conditioned and info.gate is None
    assert info.conditioning.input_side == 224 and info.trained["train_photos"] == 2
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    import copy

    outputs = []
    for _ in range(2):
        adapted = load_adapter(out, copy.deepcopy(parts.module), machine.name,
                               machine.fingerprint())
        adapted.condition([Condition("jpeg", 0.2)])
        with torch.no_grad():
            outputs.append(parts.logits(adapted.encoder, x))
    assert torch.equal(outputs[0], outputs[1])
    with torch.no_grad():
        assert not torch.equal(outputs[0], parts.logits(parts.module, x))
    with pytest.raises(AdapterError, match="trained for"):
        load_adapter(out, copy.deepcopy(parts.module), "classify:other", "other")


@lite0
def test_a_killed_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "resume.safetensors"
    config = TrainConfig(codecs=("jpeg",), images="samples", out=out, levels={"jpeg": ("q5",)},
                         steps=4, batch=2, limit=1, checkpoint_every=2, views=1, scales=(1.0,))

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_adapter", killed)
    with pytest.raises(KeyboardInterrupt):
        train_adapter(config)
    assert out.with_suffix(".safetensors.ckpt").exists() and not out.exists()
    monkeypatch.undo()
    result = train_adapter(config)
    assert result.resumed_from == 2 and len(result.losses) == 2 and out.exists()
    changed = TrainConfig(**{**config.__dict__, "lr": 0.5})
    (out.with_suffix(".safetensors.ckpt")).write_bytes(b"not a checkpoint")
    with pytest.raises(AdapterError, match="checkpoint does not load"):
        train_adapter(changed)


def test_bad_adapter_files_are_one_line_errors(tmp_path, monkeypatch, capsys):
    not_adapter = tmp_path / "x.safetensors"
    not_adapter.write_bytes(b"\x00" * 64)
    with pytest.raises(AdapterError, match="not a safetensors adapter"):
        read_adapter(not_adapter)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign), metadata={"format": "other"})
    with pytest.raises(AdapterError, match="not an icm adapter"):
        read_adapter(foreign)
    with pytest.raises(AdapterError, match="not found"):
        read_adapter(tmp_path / "missing.safetensors")
    code, _, err = icm(monkeypatch, capsys, "adapt", "info", not_adapter)
    assert_one_line_error(code, err, "x.safetensors", "not a safetensors adapter")


def test_adapter_tensors_must_fit_the_encoder(tmp_path):
    adapted = AdaptedEncoder(TinyCnn(), CONDITIONING)
    state = adapted.trainable_state()
    state["adapter.filters.0.weight"] = torch.zeros(1, 1, 3, 3)
    with pytest.raises(AdapterError, match="shape"):
        AdaptedEncoder(TinyCnn(), CONDITIONING).load_trainable(state)
    with pytest.raises(AdapterError, match="do not match"):
        AdaptedEncoder(TinyCnn(), CONDITIONING).load_trainable({})


def test_unconditioned_adapters_ignore_the_codec():
    adapted = AdaptedEncoder(TinyCnn(), CONDITIONING, conditioned=False)
    torch.nn.init.normal_(adapted.embedding.codec.weight)
    torch.nn.init.normal_(adapted.adapter.film[-1].weight)
    x = torch.rand(1, 3, 8, 8)
    adapted.condition([Condition("jpeg", 0.1)])
    first = adapted.encoder(x)
    adapted.condition([Condition("hevc", 0.1)])
    assert torch.equal(adapted.encoder(x), first)


@lite0
def test_bench_reads_through_an_adapter_and_the_report_splits_the_gap(tmp_path):
    from icm.bench import BenchConfig, ledger_path, run_bench
    from icm.bench.analysis import gap_table
    from icm.bench.grid import with_adapters
    from icm.bench.ledger import Ledger
    from icm.bench.report import write_report

    adapter = tmp_path / "a.safetensors"
    train_adapter(TrainConfig(codecs=("jpeg",), images="samples", out=adapter,
                              levels={"jpeg": ("q5",)}, steps=2, batch=1, limit=1, views=1,
                              scales=(1.0,)))
    machines = with_adapters(("classify:efficientnet-lite0",), [adapter])
    assert machines == ("classify:efficientnet-lite0",
                        f"classify:efficientnet-lite0+adapter={adapter}")
    out = tmp_path / "run"
    run_bench(BenchConfig(images="samples", codecs=("jpeg@q5", "jpeg@q60"), machines=machines,
                          out=out, workers=1, limit=2))
    with Ledger(ledger_path(out)) as ledger:
        rows = ledger.rows()
    assert {row["machine"] for row in rows} == set(machines)
    gaps = gap_table(rows)
    assert [g.point for g in gaps] == ["jpeg@q5", "jpeg@q60"]
    for gap in gaps:
        assert gap.images == 2 and 0 <= gap.total <= 1 and 0 <= gap.information <= 1
        assert gap.generalization == pytest.approx(gap.total - gap.information)
    report = (write_report(out).markdown).read_text()
    assert "Information and generalization gaps" in report

    moved = tmp_path / "moved.safetensors"  # same model, new name: rows reused and relabelled
    moved.write_bytes(adapter.read_bytes())
    renamed = with_adapters(("classify:efficientnet-lite0",), [moved])
    summary = run_bench(BenchConfig(images="samples", codecs=("jpeg@q5", "jpeg@q60"),
                                    machines=renamed, out=out, workers=1, limit=2))
    assert summary.rows_added == 0
    with Ledger(ledger_path(out)) as ledger:
        assert {row["machine"] for row in ledger.rows()} == set(renamed)
        assert {row["machine"] for row in ledger.rows("pristine")} == set(renamed)


@lite0
def test_adapt_train_command_writes_an_adapter_and_reports_json(tmp_path, monkeypatch, capsys):
    import json

    out = tmp_path / "cli.safetensors"
    code, stdout, _ = icm(monkeypatch, capsys, "adapt", "train", "--out", out, "--codecs",
                          "jpeg", "--limit", "1", "--steps", "2", "--batch", "1", "--views",
                          "1", "--scales", "1", "--json")
    assert code == 0
    record = json.loads(stdout)
    assert record["steps"] == 2 and record["pairs"] == 4 and out.exists()  # 4 default levels
    assert record["gate_open"] is None  # one photo: none to validate on
    code, stdout, _ = icm(monkeypatch, capsys, "adapt", "info", out)
    assert json.loads(stdout)["codecs"] == ["jpeg"]
    assert json.loads(stdout)["tuned_encoder"] is False
    assert "no gate" in json.loads(stdout)["gate"]["*"]

    reference = tmp_path / "reference.safetensors"
    code, stdout, _ = icm(monkeypatch, capsys, "adapt", "train", "--out", reference,
                          "--codecs", "jpeg", "--limit", "1", "--steps", "1", "--batch", "1",
                          "--tune-encoder", "--encoder-lr-scale", "0.5", "--views", "2",
                          "--scales", "0,0.25", "--json")
    assert code == 0 and json.loads(stdout)["pairs"] == 8  # 4 levels x 2 views
    code, stdout, _ = icm(monkeypatch, capsys, "adapt", "info", reference)
    assert json.loads(stdout)["tuned_encoder"] is True


def test_view_windows_are_squares_at_each_scale_and_the_same_on_every_run():
    plan = ViewPlan(views=5, scales=(1.0, 2.0, 0.0), seed=3)
    found = view_windows("set/a.png", 300, 400, 100, plan)
    assert found == view_windows("set/a.png", 300, 400, 100, plan)
    assert found != view_windows("set/b.png", 300, 400, 100, plan)  # placed per photo
    assert [w and w.width for w in found] == [100, 200, None, 100, 200]
    for window in filter(None, found):
        assert window.width == window.height
        assert window.left + window.width <= 400 and window.top + window.height <= 300
    small = view_windows("set/a.png", 150, 400, 100, ViewPlan(views=2, scales=(1.0, 2.0)))
    assert [w.width for w in small] == [100, 150]  # a window larger than the photo shrinks


class _ResizingParts:
    """Torch parts whose input is the image shrunk to 16 px and whose logits are a fixed
    projection of it: enough to make views, fast."""

    logits = staticmethod(lambda module, x: module(x))
    features = staticmethod(lambda module, x: module(x))

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))

    @staticmethod
    def prepare_image(rgb):
        x = torch.from_numpy(rgb.astype("float32")).permute(2, 0, 1)[None]
        return torch.nn.functional.interpolate(x, size=(16, 16), mode="area") / 128 - 1


def test_views_are_coded_at_each_scale_and_cached(tmp_path, photo):
    import numpy as np
    from PIL import Image

    from icm.image.datasets import open_dataset

    Image.fromarray(photo).save(tmp_path / "p.png")
    image = open_dataset(tmp_path / "p.png").images[0]
    plan, jobs = ViewPlan(views=2, scales=(0.5, 1.0)), [("jpeg", "q5"), ("jpeg", "q50")]
    views = build_views(_ResizingParts(), [("p", image)], jobs, plan, 128, "m",
                        cache=tmp_path / "c")
    assert len(views) == 6 and views.rows(decoded=False) == [0, 3]
    assert [views.size[r] for r in range(6)] == [(64, 64)] * 3 + [(128, 128)] * 3
    assert views.rows(jobs=[("jpeg", "q5")]) == [1, 4]
    bpp = {views.level[r]: views.bpp[r] for r in views.rows()}
    assert bpp["q5"] < bpp["q50"]  # really coded, each at its own rate
    assert views.pristine == [0, 0, 0, 3, 3, 3]
    assert not torch.equal(views.inputs([1]), views.inputs([0]))
    again = build_views(None, [("p", image)], jobs, plan, 128, "m", cache=tmp_path / "c")
    assert torch.equal(again.inputs(range(6)), views.inputs(range(6)))
    assert torch.equal(again.outputs(range(6)), views.outputs(range(6)))
    assert np.allclose(views.outputs([0]).numpy(), _ResizingParts().module(
        views.inputs([0])).detach().numpy(), atol=1e-5)


def test_a_tuned_encoder_trains_and_travels_with_the_file():
    torch.manual_seed(0)
    adapted = AdaptedEncoder(TinyCnn(), CONDITIONING, tune_encoder=True)
    assert all(p.requires_grad for p in adapted.encoder.parameters())
    config = TrainConfig(tune_encoder=True, lr=1e-2)
    optimiser = train_module._optimiser(adapted, config)
    assert [group["lr"] for group in optimiser.param_groups] == [1e-2, 1e-3]
    x = torch.rand(2, 3, 8, 8)
    adapted.condition([Condition("jpeg", 0.1)] * 2)
    before = {k: v.clone() for k, v in adapted.encoder.state_dict().items()}
    adapted.encoder(x).pow(2).mean().backward()
    optimiser.step()
    assert any(not torch.equal(before[k], v) for k, v in adapted.encoder.state_dict().items())

    state = adapted.trainable_state()
    assert any(name.startswith("encoder.") for name in state)
    copy_ = AdaptedEncoder(TinyCnn(), CONDITIONING, tune_encoder=True)
    copy_.load_trainable(state)
    for model in (adapted, copy_):
        model.condition([Condition("jpeg", 0.1)])
    with torch.no_grad():
        assert torch.equal(copy_.encoder(x[:1]), adapted.encoder(x[:1]))
    with pytest.raises(AdapterError, match="do not match"):
        AdaptedEncoder(TinyCnn(), CONDITIONING).load_trainable(state)


@lite0
def test_a_fine_tuned_reference_is_marked_in_its_file_and_fingerprint(tmp_path):
    from icm.machines import get_machine
    from icm.machines.registry import REFERENCE_MARK

    out = tmp_path / "reference.safetensors"
    train_adapter(TrainConfig(codecs=("jpeg",), images="samples", out=out, levels={"jpeg": (
        "q5",)}, steps=2, batch=1, limit=1, tune_encoder=True, views=1, scales=(1.0,)))
    assert read_adapter(out)[1].tuned_encoder
    machine = get_machine(f"classify:efficientnet-lite0+adapter={out}")
    assert machine.fingerprint().endswith(REFERENCE_MARK)
    adapter = tmp_path / "adapter.safetensors"
    train_adapter(TrainConfig(codecs=("jpeg",), images="samples", out=adapter, levels={
        "jpeg": ("q5",)}, steps=1, batch=1, limit=1, views=1, scales=(1.0,)))
    assert not read_adapter(adapter)[1].tuned_encoder
    assert not get_machine(f"classify:efficientnet-lite0+adapter={adapter}"
                           ).fingerprint().endswith(REFERENCE_MARK)
    assert out.stat().st_size > 20 * adapter.stat().st_size  # the whole encoder is in it


def _gap_rows(values: dict[str, list[float]], reference: str) -> list[dict]:
    """Ledger-like rows: each machine's top-1 per (image, point), two points, three images."""
    from icm.machines.registry import REFERENCE_MARK

    rows = []
    for machine, per_image in values.items():
        mark = REFERENCE_MARK if machine == reference else ""
        for image, value in enumerate(per_image):
            for point, bpp in (("jpeg@q5", 0.2), ("jpeg@q20", 0.5)):
                rows.append({"image_sha": f"img{image}", "image_id": f"img{image}",
                             "point": point, "codec": "jpeg",
                             "bpp": bpp, "machine": machine, "fingerprint": f"fp{mark}",
                             "created_at": 1.0, "primary_value": value})
    return rows


def test_adapters_are_judged_against_the_gap_the_fine_tuned_reference_closes():
    from icm.bench.analysis import (
        gap_table,
        recovered_share,
        recovered_share_interval,
        reference_of,
    )
    from icm.bench.report import _share_sentence

    plain, adapter, reference = "m", "m+adapter=a.safetensors", "m+adapter=ref.safetensors"
    rows = _gap_rows({plain: [0.5, 0.4, 0.6], adapter: [0.6, 0.5, 0.7],
                      reference: [0.8, 0.7, 0.9]}, reference)
    assert reference_of(rows, plain) == reference
    weaker = _gap_rows({"m+adapter=weak.safetensors": [0.6, 0.5, 0.6]},
                       "m+adapter=weak.safetensors")
    assert reference_of(weaker + rows, plain) == reference  # the best of several references
    partial = [r for r in _gap_rows({"m+adapter=half.safetensors": [1.0, 1.0, 1.0]},
                                    "m+adapter=half.safetensors") if r["image_sha"] == "img0"]
    assert reference_of(partial + rows, plain) == reference  # perfect, but on one image only
    assert reference_of(_gap_rows({plain: [0.5], adapter: [0.6]}, ""), plain) is None
    mine = [g for g in gap_table(rows) if g.adapted == adapter]
    assert [g.reference for g in mine] == pytest.approx([0.2, 0.2])
    assert recovered_share(mine) == pytest.approx(0.1 / 0.5)
    assert recovered_share(mine, of_reference=True) == pytest.approx(0.1 / 0.3)
    share, low, high = recovered_share_interval(rows, adapter, reference=reference)
    assert share == pytest.approx(1 / 3) and low <= share <= high
    assert recovered_share_interval(rows, reference, reference=reference)[0] == pytest.approx(1)
    sentence = _share_sentence(rows, adapter, plain)
    assert "20%" in sentence and "33%" in sentence and "reference ref.safetensors" in sentence
    assert "It is an adapter" in sentence
    assert "best fine-tuned reference" in _share_sentence(rows, reference, plain)
    weak = "m+adapter=weak.safetensors"
    assert "weaker fine-tuned reference" in _share_sentence(weaker + rows, weak, plain)


def test_bad_view_scales_are_a_one_line_error(tmp_path, monkeypatch, capsys):
    code, _, err = icm(monkeypatch, capsys, "adapt", "train", "--out", tmp_path / "a.st",
                       "--scales", "1,big")
    assert_one_line_error(code, err, "--scales", "multiples of the input side")
