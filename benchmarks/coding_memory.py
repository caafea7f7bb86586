"""What does the coding path cost in memory per pixel? Whole processes, peak RSS, one per stage.

A synthetic photo-like RGB picture (smooth gradients, mid-scale texture, detail in patches, a
few edges and sensor noise, so codecs work as hard as on a photo) of ``--megapixels`` (3:2,
sides multiples of 16) is saved as PNG and as JPEG (q90) in a temporary folder. Each stage then
runs as a fresh process:

* ``imports: ...``: the baselines, ``python -c "import ..."`` of the modules a stage loads
  before it touches a pixel: the loader's; icm's CLI, coding path and codecs; those and PyAV;
* ``load png`` / ``load jpg``: ``icm.image.load_image`` alone;
* ``encode png CODEC@LEVEL`` for each of ``--codecs`` (``icm encode big.png -c ... -o x.icm``,
  which loads, encodes, decodes the result again for its PSNR and writes the file);
* ``encode jpg jpeg@q75``: the same from the JPEG;
* ``decode CODEC``: ``icm decode x.icm -o back.png`` of each file just written;
* ``bomb``: ``icm encode bomb.jpg -c jpeg@q75`` of a real 64x64 JPEG of a few hundred bytes
  whose SOF0 header is patched to claim 9000x9000 (81 MP, under the 100 MP pixel limit):
  expected to be refused from its header, quickly, with exit code 2.

Peak RSS is the stage process's own ``ru_maxrss`` from ``os.wait4`` (what ``/usr/bin/time -v``
prints as "Maximum resident set size"), the process started by a small launcher (a stage forked
from this script would inherit its high-water mark); it covers the whole process, libraries' C
allocations included. "Above baseline" subtracts the stage's baseline peak; "above image"
also subtracts 3 bytes a pixel, the decoded RGB array itself; "marginal" is the difference
between the stage on the full picture and on a 64x64 crop, per pixel (fixed costs cancel).
Wall time is as the machine gave it (a shared machine inflates it); CPU time is user + system.
Prints the table; writes ``benchmarks/results/coding_memory.json`` with the settings, the
machine and every stage.

    python benchmarks/coding_memory.py [--megapixels 40] [--codecs jpeg,hevc]
        [--hevc-megapixels 0] [--out benchmarks/results/coding_memory.json]

``--hevc-megapixels`` codes HEVC on a smaller picture of its own (x265 on a slow machine); its
bytes/pixel are then per pixel of that picture, and the table says so.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from icm.codecs import get_codec
from icm.fileio import write_atomic

HERE = Path(__file__).resolve().parent
LEVELS = {"jpeg": "q75", "hevc": "qp32"}
SOURCE_JPEG_QUALITY = 90
BOMB_SIZE = (9000, 9000)
IMAGE_BYTES_PER_PIXEL = 3
SMALL = 64
#: what each kind of stage imports before it touches a pixel (checked against sys.modules after
#: a 64x64 run: ``icm encode`` imports PyAV only for the codecs that use it)
BASELINES = {
    "imports: loader": "from icm.image import load_image; import pillow_heif, imagecodecs",
    "imports: icm": "import icm.cli.main, icm.cli.views, icm.pipeline, icm.codecs, icm.image, "
                    "numpy, PIL.Image, pillow_heif, imagecodecs",
    "imports: icm + av": "import icm.cli.main, icm.cli.views, icm.pipeline, icm.codecs, "
                         "icm.image, numpy, PIL.Image, pillow_heif, imagecodecs, av",
}
PYAV_CODECS = {"hevc"}
LOADER = ("import sys; from icm.image import load_image; "
          "image = load_image(sys.argv[1]); print(image.shape)")


@dataclass
class Stage:
    name: str
    command: list[str]
    pixels: int  # pixels of the picture this stage codes (0: none)
    baseline: str = ""  # the name of the stage whose peak is subtracted
    small_command: list[str] | None = None  # the same on a SMALL x SMALL picture
    exit_code: int = 0
    peak_bytes: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    stderr_first_line: str = ""
    timed_out: bool = False
    small_peak_bytes: int | None = None


def picture_size(megapixels: float) -> tuple[int, int]:
    """A 3:2 picture of about ``megapixels``, both sides multiples of 16."""
    width = max(16, round(math.sqrt(megapixels * 1e6 * 3 / 2) / 16) * 16)
    height = max(16, round(width * 2 / 3 / 16) * 16)
    return width, height


def _field(rng: np.random.Generator, width: int, height: int, cell: int) -> np.ndarray:
    """A smooth random field in [-1, 1]: noise on a coarse grid, scaled up bicubically."""
    small = rng.uniform(-1, 1, (max(2, height // cell + 2), max(2, width // cell + 2)))
    up = Image.fromarray(small.astype(np.float32), "F").resize((width, height),
                                                               Image.Resampling.BICUBIC)
    return np.asarray(up, dtype=np.float32)


def photo_like(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Gradients (sky, light falloff), mid-scale texture, fine detail in patches, a few
    hard-edged objects and sensor noise: compresses like a photo, not like flat synthetic art
    (at 40 MP: PNG 1.8 B/px, JPEG q90 1.3 bpp, jpeg@q75 0.65 bpp, hevc@qp32 0.11 bpp).
    Fields in float32, mixed band by band: making a 40 MP picture costs about 1.2 GB here."""
    rng = np.random.default_rng(seed)
    tint = rng.uniform(0.6, 1.0, 3).astype(np.float32)
    large = [_field(rng, width, height, max(width // 6, 16)) for _ in range(3)]
    shared = _field(rng, width, height, max(width // 6, 16))
    texture = _field(rng, width, height, 24)
    fine = _field(rng, width, height, 2)  # foliage, fabric: detail where ``texture`` is high
    edges = np.zeros((height, width), np.float32)
    for _ in range(40):  # rectangles: hard edges, as objects in a scene
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 40, width // 5)), int(rng.integers(height // 40,
                                                                          height // 5))
        edges[y0:y0 + h, x0:x0 + w] += rng.uniform(-40, 40)
    out = np.empty((height, width, 3), np.uint8)
    ramp = np.linspace(1.15, 0.75, height, dtype=np.float32)[:, None]  # light from above
    band = 512
    for top in range(0, height, band):
        rows = slice(top, top + band)
        detail = np.clip(texture[rows] + 0.2, 0, 1) * 30 * fine[rows]
        base = 128 + 45 * shared[rows] + 18 * texture[rows] + detail + edges[rows]
        for c in range(3):
            value = (base + 30 * large[c][rows]) * tint[c] * ramp[rows]
            value += rng.normal(0, 2.5, value.shape).astype(np.float32)
            out[rows, :, c] = np.clip(value, 0, 255).round().astype(np.uint8)
    return out


def jpeg_bomb(path: Path, size: tuple[int, int]) -> int:
    """A real 64x64 baseline JPEG whose SOF0 frame header claims ``size``; returns its bytes."""
    buffer = io.BytesIO()
    rgb = np.full((64, 64, 3), 128, np.uint8)
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=75)
    data = bytearray(buffer.getvalue())
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("not a marker where one was expected")
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xC0:  # SOF0: length(2) precision(1) height(2) width(2)
            width, height = size
            data[pos + 5:pos + 7] = height.to_bytes(2, "big")
            data[pos + 7:pos + 9] = width.to_bytes(2, "big")
            path.write_bytes(bytes(data))
            return len(data)
        pos += 2 + length
    raise ValueError("no SOF0 marker in Pillow's JPEG")


#: Runs one stage for :func:`measure`: ``python -c LAUNCHER REPORT TIMEOUT COMMAND...``.
#: A fresh small process has to start the stage: on Linux a process's peak RSS includes the
#: memory of the process it was forked from (exec keeps the old image's high-water mark), so a
#: stage forked straight from this script would count this script's own pictures as its peak.
LAUNCHER = """
import json, os, sys, time
report, timeout, command = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
start = time.perf_counter()
pid = os.posix_spawn(command[0], command, os.environ)
killed = False
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    if not killed and time.perf_counter() - start > timeout:
        os.kill(pid, 9)
        killed = True
    time.sleep(0.01)
with open(report, "w") as handle:
    json.dump({"wall_s": time.perf_counter() - start, "maxrss_kb": usage.ru_maxrss,
               "cpu_s": usage.ru_utime + usage.ru_stime,
               "exit_code": os.waitstatus_to_exitcode(status), "timed_out": killed}, handle)
"""


def measure(stage: Stage, timeout: float, folder: Path) -> Stage:
    """Run ``stage.command`` in a fresh process started by a small launcher; its own peak RSS
    (``os.wait4``'s ``ru_maxrss``, as ``/usr/bin/time -v`` reports it) and wall time."""
    report = folder / "stage.json"
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        subprocess.run([sys.executable, "-c", LAUNCHER, str(report), str(timeout),
                        *stage.command], stdout=out, stderr=err, check=True)
        result = json.loads(report.read_text())
        err.seek(0)
        lines = [line.strip() for line in err.read().decode(errors="replace").splitlines()]
    stage.wall_s = result["wall_s"]
    stage.cpu_s = result["cpu_s"]
    stage.exit_code = result["exit_code"]
    stage.timed_out = result["timed_out"]
    stage.peak_bytes = result["maxrss_kb"] * 1024  # Linux reports kB
    stage.stderr_first_line = next((line for line in lines if line), "")
    return stage


def icm_command() -> list[str]:
    found = shutil.which("icm", path=str(Path(sys.executable).parent)) or shutil.which("icm")
    return [found] if found else [sys.executable, "-c", "from icm.cli.main import run; run()"]


def row(stage: Stage, baselines: dict[str, int]) -> dict:
    """The stage's figures: bytes a pixel above its baseline and above the image, and the
    marginal bytes a pixel between the small and the full picture (fixed costs cancel)."""
    baseline = baselines.get(stage.baseline)
    above = stage.peak_bytes - baseline if baseline is not None else None
    per_pixel = above / stage.pixels if stage.pixels and above is not None else None
    marginal = None
    if stage.small_peak_bytes is not None and stage.pixels > SMALL * SMALL:
        marginal = (stage.peak_bytes - stage.small_peak_bytes) / (stage.pixels - SMALL * SMALL)
    return {
        **asdict(stage),
        "baseline_bytes": baseline,
        "peak_mb": stage.peak_bytes / 1e6,
        "above_baseline_mb": above / 1e6 if above is not None else None,
        "bytes_per_pixel_above_baseline": per_pixel,
        "bytes_per_pixel_above_image": (per_pixel - IMAGE_BYTES_PER_PIXEL
                                        if per_pixel is not None else None),
        "marginal_bytes_per_pixel": marginal,
    }


def _cell(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def print_table(rows: list[dict], full_pixels: int) -> None:
    head = (f"{'stage':26} {'exit':>4} {'peak MB':>8} {'base MB':>8} {'above MB':>9} "
            f"{'B/px':>6} {'B/px-3':>7} {'marg.':>6} {'wall s':>7} {'cpu s':>6}  note")
    print(head)
    print("-" * len(head))
    for r in rows:
        note = ""
        if r["pixels"] and r["pixels"] != full_pixels:
            note = f"on a {r['pixels'] / 1e6:.1f} MP picture"
        if r["exit_code"] or r["timed_out"]:
            note = ("TIMED OUT " if r["timed_out"] else "") + r["stderr_first_line"][:100]
        base = r["baseline_bytes"] / 1e6 if r["baseline_bytes"] is not None else None
        print(f"{r['name']:26} {r['exit_code']:>4} {r['peak_mb']:>8.0f} {_cell(base, 8, 0)} "
              f"{_cell(r['above_baseline_mb'], 9, 0)} "
              f"{_cell(r['bytes_per_pixel_above_baseline'], 6, 2)} "
              f"{_cell(r['bytes_per_pixel_above_image'], 7, 2)} "
              f"{_cell(r['marginal_bytes_per_pixel'], 6, 2)} "
              f"{r['wall_s']:>7.1f} {r['cpu_s']:>6.1f}  {note}")


def _save_png(image: np.ndarray, path: Path) -> Path:
    Image.fromarray(image).save(path, compress_level=3)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=40.0)
    parser.add_argument("--codecs", default="jpeg,hevc", help="comma-separated, from "
                        + ", ".join(LEVELS))
    parser.add_argument("--hevc-megapixels", type=float, default=0.0,
                        help="code HEVC on a picture of this size instead (0: the same one)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "coding_memory.json")
    args = parser.parse_args()
    codecs = [c for c in args.codecs.split(",") if c]
    unknown = set(codecs) - set(LEVELS)
    if unknown:
        print(f"unknown codecs {', '.join(sorted(unknown))}; known: {', '.join(LEVELS)}",
              file=sys.stderr)
        return 2
    skipped = {}
    for codec in list(codecs):
        reason = get_codec(codec).unavailable_reason()
        if reason:
            skipped[codec] = reason
            codecs.remove(codec)
            print(f"skipping {codec}: {reason}", file=sys.stderr)

    started = time.perf_counter()
    width, height = picture_size(args.megapixels)
    pixels = width * height
    icm = icm_command()
    stages: list[Stage] = [Stage(name, [sys.executable, "-c", code], 0)
                           for name, code in BASELINES.items()]
    with tempfile.TemporaryDirectory(prefix="icm-memory-") as folder:
        work = Path(folder)
        print(f"making a {width}x{height} picture ({pixels / 1e6:.1f} MP)...", file=sys.stderr)
        image = photo_like(width, height, args.seed)
        png, jpg = _save_png(image, work / "big.png"), work / "big.jpg"
        Image.fromarray(image).save(jpg, quality=SOURCE_JPEG_QUALITY)
        small_png = _save_png(image[:SMALL, :SMALL], work / "small.png")
        small_jpg = work / "small.jpg"
        Image.fromarray(image[:SMALL, :SMALL]).save(small_jpg, quality=SOURCE_JPEG_QUALITY)
        sources = {"png": png.stat().st_size, "jpg": jpg.stat().st_size}
        hevc_png, hevc_pixels = png, pixels
        if "hevc" in codecs and args.hevc_megapixels:
            hevc_w, hevc_h = picture_size(args.hevc_megapixels)
            hevc_pixels = hevc_w * hevc_h
            hevc_png = _save_png(image[:hevc_h, :hevc_w], work / "hevc.png")
        del image
        bomb = work / "bomb.jpg"
        bomb_bytes = jpeg_bomb(bomb, BOMB_SIZE)
        made_s = time.perf_counter() - started

        for kind, source, small in (("png", png, small_png), ("jpg", jpg, small_jpg)):
            stages.append(Stage(f"load {kind}", [sys.executable, "-c", LOADER, str(source)],
                                pixels, "imports: loader",
                                [sys.executable, "-c", LOADER, str(small)]))

        def encode(source: Path, point: str, target: Path) -> list[str]:
            return [*icm, "encode", str(source), "-c", point, "-o", str(target)]

        coded: dict[str, tuple[Path, int]] = {}
        for codec in codecs:
            point = f"{codec}@{LEVELS[codec]}"
            source, count = (hevc_png, hevc_pixels) if codec == "hevc" else (png, pixels)
            target = work / f"{codec}.icm"
            coded[codec] = (target, count)
            baseline = "imports: icm + av" if codec in PYAV_CODECS else "imports: icm"
            stages.append(Stage(f"encode png {point}", encode(source, point, target), count,
                                baseline, encode(small_png, point, work / f"small-{codec}.icm")))
        if "jpeg" in codecs:
            point = f"jpeg@{LEVELS['jpeg']}"
            stages.append(Stage(f"encode jpg {point}", encode(jpg, point, work / "jpg.icm"),
                                pixels, "imports: icm",
                                encode(small_jpg, point, work / "small-jpg.icm")))
        for codec, (target, count) in coded.items():
            baseline = "imports: icm + av" if codec in PYAV_CODECS else "imports: icm"
            stages.append(Stage(f"decode {codec}", [*icm, "decode", str(target), "-o",
                                                    str(work / "back.png")], count, baseline,
                                [*icm, "decode", str(work / f"small-{codec}.icm"), "-o",
                                 str(work / "small-back.png")]))
        bomb_point = "jpeg@q75"
        stages.append(Stage(f"bomb {BOMB_SIZE[0]}x{BOMB_SIZE[1]} {bomb_point}",
                            encode(bomb, bomb_point, work / "bomb.icm"), 0, "imports: icm"))
        for stage in stages:
            print(f"{stage.name}...", file=sys.stderr, flush=True)
            measure(stage, args.timeout, work)
            if stage.small_command:
                small = measure(Stage("small", stage.small_command, 0), args.timeout, work)
                if small.exit_code == 0:
                    stage.small_peak_bytes = small.peak_bytes
        coded_bytes = {codec: target.stat().st_size for codec, (target, _) in coded.items()
                       if target.exists()}
    wall = time.perf_counter() - started

    baselines = {stage.name: stage.peak_bytes for stage in stages if stage.name in BASELINES}
    rows = [row(stage, baselines) for stage in stages]
    print(f"\n{width}x{height} = {pixels / 1e6:.1f} MP. B/px: bytes a pixel above the baseline "
          f"(a process importing what the stage imports); B/px-3: less the RGB image's 3; "
          f"marg.: bytes a pixel between the {SMALL}x{SMALL} and the full picture; cpu s: user + "
          f"system\n")
    print_table(rows, pixels)

    def shown(part: str) -> str:  # the temporary folder's paths mean nothing later
        if part.startswith(str(work)):
            return "$TMP/" + Path(part).name
        return {sys.executable: "python", icm[0]: Path(icm[0]).name}.get(part, part)

    for r in rows:
        r["command"] = " ".join(map(shown, r["command"]))
        if r["small_command"]:
            r["small_command"] = " ".join(map(shown, r["small_command"]))
        r["stderr_first_line"] = r["stderr_first_line"].replace(str(work), "$TMP")
    report = {
        "what": "peak RSS per stage of the coding path, whole fresh processes, bytes per pixel "
                "above a process that only imports the same modules",
        "command": "python " + " ".join(sys.argv),
        "picture": {"width": width, "height": height, "megapixels": pixels / 1e6,
                    "seed": args.seed, "png_bytes": sources["png"],
                    "jpg_bytes": sources["jpg"], "jpg_quality": SOURCE_JPEG_QUALITY},
        "hevc_picture_megapixels": hevc_pixels / 1e6 if "hevc" in codecs else None,
        "small_picture": [SMALL, SMALL],
        "levels": {codec: LEVELS[codec] for codec in codecs},
        "skipped_codecs": skipped,
        "coded_bytes": coded_bytes,
        "bomb": {"claimed": list(BOMB_SIZE), "bytes": bomb_bytes},
        "baselines": BASELINES,
        "peak_rss_source": "os.wait4 ru_maxrss of each stage process, started by a small "
                           "launcher (kB on Linux)",
        "image_bytes_per_pixel": IMAGE_BYTES_PER_PIXEL,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "make_s": round(made_s, 1),
        "wall_s": round(wall, 1),
        "stages": rows,
    }
    write_atomic(args.out, (json.dumps(report, indent=1) + "\n").encode())
    print(f"\nwrote {args.out} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
