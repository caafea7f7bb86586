"""LL-ICM placements: degraded datasets in the bench (scored against the clean image), the
``restore=edge|server|joint`` tool, the container's RESTORE field, joint training through a
codec, and the BRISQUE no-reference metric."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from tests.test_cli import assert_one_line_error, icm  # noqa: E402

import fake_machines  # noqa: E402, F401  (registers fake:*)
from bench_helpers import rows_in, small_config  # noqa: E402
from icm import container  # noqa: E402
from icm.bench import run_bench  # noqa: E402
from icm.bench.worker import cache_path  # noqa: E402
from icm.codecs import get_codec  # noqa: E402
from icm.degrade import get_degradation  # noqa: E402
from icm.errors import CorruptContainerError, IcmError  # noqa: E402
from icm.image import sample_photo  # noqa: E402
from icm.image.datasets import open_dataset  # noqa: E402
from icm.metrics import psnr  # noqa: E402
from icm.pipeline import RecipeError, decode_bytes, encode_image, parse_point, recipe_for  # noqa: E402
from icm.restore import RestoreTrainConfig, train_restorer  # noqa: E402
from icm.restore.api import joint_model_name, shipped_model_path  # noqa: E402
from icm.restore.train import coded_round_trip, load_images, sample_batch  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """(clean, hazy) 256 x 256 crops of a bundled photo."""
    clean = np.ascontiguousarray(sample_photo("astronaut")[:256, 128:384])
    return clean, get_degradation("haze").apply(clean, 0.6, seed=1)


# -- the container's RESTORE field ------------------------------------------------------------


def test_restore_field_round_trips_and_is_optional():
    restore = container.PostRestore("restore-jpeg", "haze", 0.514)
    header = container.Header("jpeg@q30", 64, 48, restore=restore)
    again, payload = container.unpack(container.pack(header, b"xyz"))
    assert again.restore == container.PostRestore("restore-jpeg", "haze", 0.51)
    assert payload == b"xyz"
    unknown = container.Header("jpeg@q30", 64, 48, restore=container.PostRestore("r", "clean"))
    assert container.unpack(container.pack(unknown, b""))[0].restore.strength is None
    # optional: a reader that does not know the tag still shows the image (never refuses it)
    assert container.Field.RESTORE >= container.format.FIRST_OPTIONAL_TAG


@pytest.mark.parametrize("value, problem", [
    (b"restore;haze", "MODEL;TYPE;STRENGTH"),
    (b"restore;haze;lots", "not a number"),
    (b"restore;haze;1.5", "not in [0, 1]"),
    (b";haze;0.5", "restore model"),
])
def test_malformed_restore_field_is_a_corrupt_file(value, problem):
    body = bytes([container.Field.POINT, 8]) + b"jpeg@q30" + bytes([container.Field.SIZE, 2, 8, 8])
    body += bytes([container.Field.RESTORE, len(value)]) + value
    data = bytearray(container.MAGIC) + bytes([container.VERSION, len(body)]) + body + b"\x00"
    import zlib

    data += zlib.crc32(data).to_bytes(4, "big")
    with pytest.raises(CorruptContainerError, match=problem.replace("[", r"\[")):
        container.unpack(bytes(data))


# -- the restore tool ---------------------------------------------------------------------------


def test_edge_and_server_restore_bring_the_decoded_image_closer_to_clean(scene):
    clean, hazy = scene
    plain = encode_image(hazy, parse_point("jpeg@q50"))
    edge = encode_image(hazy, parse_point("jpeg+restore=edge@q50"))
    server = encode_image(hazy, parse_point("jpeg+restore=server@q50"))
    to_clean = {name: psnr(clean, decode_bytes(coded.data))
                for name, coded in (("plain", plain), ("edge", edge), ("server", server))}
    assert to_clean["edge"] > to_clean["plain"] + 3
    assert to_clean["server"] > to_clean["plain"] + 3
    # server codes the very same pixels as plain: its file is the plain payload plus the field
    assert server.bitstream.data == plain.bitstream.data
    header = container.unpack(server.data)[0]
    assert header.restore is not None and header.restore.degradation == "haze"
    assert header.restore.model == "restore" and 0 < header.restore.strength <= 1
    assert container.unpack(edge.data)[0].restore is None
    assert edge.prepared.describe()["restoration"]["seen"] == "haze"


def test_server_restore_leaves_a_clean_image_alone(scene):
    clean, _ = scene
    server = encode_image(clean, parse_point("jpeg+restore=server@q50"))
    plain = encode_image(clean, parse_point("jpeg@q50"))
    assert server.data == plain.data  # nothing to undo: no field, no bytes


@pytest.mark.parametrize("tools, message", [
    (("restore",), "restore=edge|server|joint"),
    (("restore=camera",), "restore=edge|server|joint"),
    (("restore=edge", "restore=server"), "given twice"),
])
def test_bad_restore_tools_are_refused(tools, message):
    with pytest.raises(RecipeError, match=message):
        recipe_for(tools)


def test_joint_restore_needs_a_restorer_trained_for_the_codec():
    with pytest.raises(RecipeError, match="no joint restorer for webp"):
        recipe_for(("restore=joint",)).fingerprint(get_codec("webp"))


def test_placements_are_separate_cache_entries():
    codec = get_codec("jpeg")
    prints = {recipe_for((f"restore={p}",)).fingerprint(codec) for p in ("edge", "server")}
    assert len(prints) == 2 and all("recogniser:" in p for p in prints)


@pytest.mark.skipif(not shipped_model_path(joint_model_name("jpeg")).is_file(),
                    reason="no joint JPEG restorer shipped")
def test_shipped_joint_restorer_beats_the_server_one_on_coded_images(scene):
    clean, _ = scene
    noisy = get_degradation("noise").apply(clean, 0.5, seed=2)
    for damaged in (scene[1], noisy):
        server = encode_image(damaged, parse_point("jpeg+restore=server@q20"))
        joint = encode_image(damaged, parse_point("jpeg+restore=joint@q20"))
        assert joint.bitstream.data == server.bitstream.data
        assert psnr(clean, decode_bytes(joint.data)) > psnr(clean, decode_bytes(server.data))


# -- joint training -----------------------------------------------------------------------------


def joint_config(tmp_path, **changes) -> RestoreTrainConfig:
    settings = dict(images=("samples",), out=tmp_path / "joint.safetensors", crop=32, batch=4,
                    steps=6, checkpoint_every=3, limit=2, degradations=("noise",),
                    widths=(8, 12, 16), codec="jpeg", levels=("q10", "q30"))
    settings.update(changes)
    return RestoreTrainConfig(**settings)


def test_joint_batches_are_coded_by_the_codec(tmp_path):
    config = joint_config(tmp_path, clean_rate=0.99, unknown_rate=0.0)
    from icm.restore.network import RestoreNet

    net = RestoreNet(config.vocabulary())
    images = load_images(config.images, config.crop, config.limit)
    batch = sample_batch(images, config, net, step=0)
    for degraded, clean in zip(batch.degraded, batch.clean, strict=True):
        clean_u8 = (clean * 255).round().byte().permute(1, 2, 0).numpy()
        degraded_u8 = (degraded * 255).round().byte().permute(1, 2, 0).numpy()
        coded = {lv: coded_round_trip(clean_u8, "jpeg", lv) for lv in config.levels}
        assert any(np.array_equal(degraded_u8, image) for image in coded.values())
        assert not np.array_equal(degraded_u8, clean_u8)
    # clean samples are told "unknown at strength 0": coding artefacts only
    assert batch.type_ids.tolist() == [0] * 4 and batch.strength_known.tolist() == [1.0] * 4
    assert batch.strengths.tolist() == [0.0] * 4


def test_joint_training_starts_from_a_model_and_lowers_the_loss(tmp_path):
    from icm.restore import load_model
    from icm.restore.train import restoration_loss

    base = train_restorer(joint_config(tmp_path, codec=None, levels=(),
                                       out=tmp_path / "base.safetensors", steps=3))
    config = joint_config(tmp_path, init=base.out, steps=30, lr=3e-3, batch=8,
                          strengths=(0.5, 0.5), unknown_rate=0.0)
    result = train_restorer(config)
    start, trained = load_model(base.out)[0], load_model(result.out)[0]
    held = sample_batch(load_images(config.images, config.crop, config.limit), config, start,
                        10_000)
    with torch.no_grad():
        before, after = (float(restoration_loss(net, held, 0.0)) for net in (start, trained))
    assert after < before * 0.97, (before, after)
    info = load_model(result.out)[1]
    assert info.trained["codec"] == "jpeg" and info.trained["init"] == str(base.out)


def test_a_machine_feature_term_pulls_restored_features_towards_the_clean_ones(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    from icm.machines.features import MachineFeatures, feature_distortion
    from icm.restore import load_model

    machine = "classify:efficientnet-lite0"
    base = train_restorer(joint_config(tmp_path, codec=None, levels=(),
                                       out=tmp_path / "base.safetensors", steps=2))
    config = joint_config(tmp_path, init=base.out, steps=25, lr=3e-3, batch=6, crop=48,
                          machine=machine, machine_weight=1.0, unknown_rate=0.0)
    trained = load_model(train_restorer(config).out)
    assert trained[1].trained["machine"] == machine
    features = MachineFeatures(machine)
    start = load_model(base.out)[0]
    held = sample_batch(load_images(config.images, config.crop, config.limit), config, start,
                        10_000)

    def distortion(net) -> float:
        with torch.no_grad():
            restored = net(held.degraded, held.type_ids, held.strengths, held.strength_known)
            return float(feature_distortion(features, restored, held.clean).mean())

    assert distortion(trained[0]) < distortion(start) * 0.97


@pytest.mark.parametrize("changes, message", [
    (dict(codec=None), "need --codec"),
    (dict(machine="classify:efficientnet-lite0"), "go together"),
    (dict(codec="nosuchcodec"), "unknown codec"),
    (dict(levels=("q999",)), "outside"),
    (dict(init="missing.safetensors"), "initial model file not found"),
])
def test_bad_joint_settings_are_one_line_errors(tmp_path, changes, message):
    with pytest.raises(IcmError, match=message):
        joint_config(tmp_path, **changes).check()


def test_restore_train_refuses_levels_without_codec(monkeypatch, capsys, tmp_path):
    code, _, err = icm(monkeypatch, capsys, "restore", "train", "--out",
                       tmp_path / "m.safetensors", "--levels", "q10")
    assert_one_line_error(code, err, "need --codec")


# -- degraded datasets in the bench -------------------------------------------------------------


def test_degraded_dataset_ids_seeds_and_references(photo_folder):
    dataset = open_dataset(photo_folder).degraded(["noise@0.5", "clean"])
    assert dataset.ids == ["a.png~noise@0.5", "a.png", "b.png~noise@0.5", "b.png",
                           "c.png~noise@0.5", "c.png"]
    noisy_a, clean_a, noisy_b = dataset.images[0], dataset.images[1], dataset.images[2]
    assert np.array_equal(noisy_a.reference(), clean_a.load())
    assert not np.array_equal(noisy_a.load(), noisy_a.reference())
    assert np.array_equal(noisy_a.load(), noisy_a.load())  # deterministic
    assert noisy_a.degradation.seed != noisy_b.degradation.seed
    with pytest.raises(IcmError, match="NAME@STRENGTH"):
        open_dataset(photo_folder).degraded(["haze"])
    with pytest.raises(IcmError, match="unknown degradation"):
        open_dataset(photo_folder).degraded(["fog@0.5"])


def test_bench_scores_degraded_images_against_the_clean_ones(photo_folder, tmp_path):
    clean_run = tmp_path / "clean"
    run_bench(small_config(photo_folder, clean_run, codecs=("jpeg",), levels=("q50",),
                           workers=1))
    out = tmp_path / "hazy"
    run_bench(small_config(photo_folder, out, codecs=("jpeg", "jpeg+restore=server"),
                           levels=("q50",), workers=1, degrade=("haze@0.6",)))
    rows = {(r["image_id"], r["codec"]): r for r in rows_in(out)}
    assert set(rows) == {(f"{n}.png~haze@0.6", c) for n in "abc"
                         for c in ("jpeg", "jpeg+restore=server")}
    dataset = open_dataset(photo_folder).degraded(["haze@0.6"])
    for image in dataset.images:
        plain, restored = rows[(image.id, "jpeg")], rows[(image.id, "jpeg+restore=server")]
        data = cache_path(out / "cache" / "bitstreams", restored["cache_key"]).read_bytes()
        assert restored["psnr"] == pytest.approx(psnr(image.reference(), decode_bytes(data)))
        assert restored["psnr"] > plain["psnr"] + 2  # measured against the clean image
        error = {name: json.loads(row["fidelity_json"])["mean_abs_error"]
                 for name, row in (("plain", plain), ("restored", restored))}
        assert error["restored"] < error["plain"]  # the machine's view of the clean image
    from icm.bench import ledger_path
    from icm.bench.ledger import Ledger

    def pristine(run):
        with Ledger(ledger_path(run)) as ledger:
            return sorted(r[0] for r in ledger.db.execute(
                "SELECT output_json FROM pristine"))

    assert pristine(out) == pristine(clean_run)  # the machine's output on the clean image
    from icm.bench.report import write_report

    report = write_report(out, anchor="jpeg").markdown.read_text()
    assert "a.png~haze@0.6" in report and "skipped" not in report  # crops of degraded images


def test_cli_bench_refuses_an_unknown_degradation(monkeypatch, capsys, photo_folder, tmp_path):
    code, _, err = icm(monkeypatch, capsys, "bench", "--images", photo_folder, "--codecs",
                       "jpeg@q50", "--machines", "fake:blocks", "--degrade", "smog@0.5",
                       "--out", tmp_path / "run")
    assert_one_line_error(code, err, "smog")


# -- BRISQUE ------------------------------------------------------------------------------------


def test_brisque_rises_with_visible_damage(scene):
    pytest.importorskip("brisque")
    from icm.metrics.noreference import brisque

    clean, _ = scene
    noisy = get_degradation("noise").apply(clean, 0.6, seed=0)
    blocky = coded_round_trip(clean, "jpeg", "q5")
    score = brisque(clean)
    assert score == brisque(clean.copy())  # deterministic
    assert brisque(noisy) > score + 10 and brisque(blocky) > score + 10
    with pytest.raises(ValueError, match="uint8"):
        brisque(clean.astype(np.float32))


def test_brisque_without_its_package_is_a_one_line_error(monkeypatch):
    import builtins

    from icm.metrics import noreference

    real_import = builtins.__import__

    def no_brisque(name, *args, **kwargs):
        if name == "brisque":
            raise ImportError("no brisque", name="brisque")
        return real_import(name, *args, **kwargs)

    noreference._model.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_brisque)
    with pytest.raises(IcmError, match=r"icm\[quality\]"):
        noreference.brisque(np.zeros((32, 32, 3), np.uint8))
    noreference._model.cache_clear()


def test_decode_reports_the_restoration_it_ran(monkeypatch, capsys, scene, tmp_path):
    from PIL import Image

    Image.fromarray(scene[1]).save(tmp_path / "hazy.png")
    code, _, err = icm(monkeypatch, capsys, "encode", tmp_path / "hazy.png", "-o",
                       tmp_path / "hazy.icm", "-c", "jpeg+restore=server@q40")
    assert code == 0, err
    code, stdout, _ = icm(monkeypatch, capsys, "info", tmp_path / "hazy.icm", "--json")
    info = json.loads(stdout)
    assert info["restore"]["degradation"] == "haze" and info["restore"]["model"] == "restore"


def test_restore_tool_without_torch_is_a_one_line_error(monkeypatch):
    import builtins

    from icm.pipeline import recipe

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "icm.restore":  # what importing it does where torch is not installed
            raise ImportError("No module named 'torch'", name="torch")
        return real_import(name, *args, **kwargs)

    recipe._restore_fingerprint.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(RecipeError, match=r"needs torch.*icm\[adapt\]"):
        recipe.Recipe(("restore=server",)).fingerprint(get_codec("jpeg"))
    recipe._restore_fingerprint.cache_clear()
