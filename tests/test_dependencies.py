"""Every third-party package icm imports is declared, in the core or in an extra.

A package that is installed only because something else depends on it (``click`` through
``ray``, ``tifffile`` through scikit-image) works on the machine that has it and fails on a fresh
one. These tests read the imports from the source (every ``import`` statement, inside functions
too) and the requirements from the installed distribution's metadata, so they fail the day an
import is added without its declaration.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "icm"

#: import name -> distribution name, where the two differ
DISTRIBUTION_OF = {
    "PIL": "pillow",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "av": "av",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "pillow_heif": "pillow-heif",
    "open_clip": "open-clip-torch",
    "rapidocr_onnxruntime": "rapidocr-onnxruntime",
    "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
    "huggingface_hub": "huggingface-hub",
    "yaml": "pyyaml",
}

#: imported, deliberately not declared, and why (the README gives the install)
UNDECLARED_ON_PURPOSE = {
    "compressai": "its wheel pins numpy<2; installed with --no-deps beside numpy 2",
    "lmms_eval": "its wheel pins av<16 (PyAV 18 decodes VVC); installed with --no-deps, pinned "
                 "in the README's test command and checked by icm lmms",
}


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports(root: Path = SOURCE) -> dict[str, set[str]]:
    """Top-level names of every absolute non-stdlib, non-icm import, with the files using it."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top != "icm" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(root.parent)))
    return found


def declared_requirements() -> dict[str, set[str]]:
    """Distribution name -> the extras that declare it ('' for the core), from icm's metadata."""
    declared: dict[str, set[str]] = {}
    for requirement in metadata.requires("icm") or []:
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement).group(0)
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", requirement)
        declared.setdefault(normalise(name), set()).add(extra.group(1) if extra else "")
    return declared


def test_every_import_is_declared_in_the_core_or_an_extra():
    declared = declared_requirements()
    missing = {
        name: sorted(files) for name, files in third_party_imports().items()
        if name not in UNDECLARED_ON_PURPOSE
        and normalise(DISTRIBUTION_OF.get(name, name)) not in declared
    }
    assert not missing, (
        "imported but declared neither in the core nor in an extra of pyproject.toml "
        f"(or add the import name to DISTRIBUTION_OF): {missing}")


def test_the_scan_sees_imports_inside_functions_and_skips_stdlib(tmp_path):
    package = tmp_path / "icm"
    package.mkdir()
    (package / "m.py").write_text(
        "import os\nimport numpy as np\nfrom icm.errors import IcmError\n"
        "def f():\n    import click\n    from PIL import Image\n", "utf-8")
    assert set(third_party_imports(package)) == {"numpy", "click", "PIL"}


def test_the_declared_table_reads_extras():
    declared = declared_requirements()
    assert "" in declared["numpy"]
    assert "bench" in declared["torch"]
    assert "detect" in declared["ncnn"]


def install_hints() -> dict[str, str]:
    """Every install hint icm can print, by what it is for."""
    from icm.bench.executors.ray import INSTALL_HINT as RAY
    from icm.codecs import CODECS
    from icm.importance.registry import PROVIDERS
    from icm.machines import MACHINES
    from icm.metrics.noreference import INSTALL_HINT as QUALITY

    hints = {f"codec {name}": cls.install_hint for name, cls in CODECS.items()}
    hints |= {f"machine {name}": cls.install_hint for name, cls in MACHINES.items()}
    hints |= {f"importance {name}": cls.install_hint for name, cls in PROVIDERS.items()
              if getattr(cls, "install_hint", None)}
    return hints | {"executor ray": RAY, "metric brisque": QUALITY}


def test_install_hints_name_extras_that_exist():
    """A hint says `pip install 'icm[extra]'` for what an extra brings, so the install gets
    the extra's pins too; the extra must be one pyproject.toml declares."""
    extras = set(metadata.metadata("icm").get_all("Provides-Extra") or [])
    hints = install_hints()
    named = {what: re.findall(r"icm\[([a-z0-9,-]+)\]", hint) for what, hint in hints.items()}
    unknown = {what: found for what, found in named.items()
               if any(extra not in extras for group in found for extra in group.split(","))}
    assert not unknown, f"hints name extras pyproject.toml does not declare: {unknown}"
    optional = ("machine clip", "machine vlm", "machine detect", "machine ocr",
                "machine classify", "codec jpegli", "codec icm-lic", "executor ray",
                "metric brisque", "importance text", "importance sensitivity")
    assert all(named[what] for what in optional), {w: hints[w] for w in optional
                                                   if not named[w]}


# A fresh interpreter in which only the core's dependencies (and theirs) can be imported:
# every other installed distribution is hidden, as on a machine with a plain `pip install icm`.
_CORE_ONLY = r"""
import importlib.machinery, importlib.metadata as md, json, re, sys

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def requirement_names(dist, extras=()):
    names = []
    for text in md.requires(dist) or []:
        name, _, marker = text.partition(";")
        wanted = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
        if wanted and wanted.group(1) not in extras:
            continue
        if "python_version" in marker or "platform" in marker or "sys_platform" in marker:
            continue
        names.append(norm(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", name).group(0)))
    return names

allowed, todo = set(), requirement_names("icm", json.loads(sys.argv[1]))
while todo:
    name = todo.pop()
    if name in allowed:
        continue
    allowed.add(name)
    try:
        todo.extend(requirement_names(name))
    except md.PackageNotFoundError:
        pass
hidden = {top for top, dists in md.packages_distributions().items()
          if top != "icm" and not any(norm(d) in allowed for d in dists)}

class HidingPathFinder(importlib.machinery.PathFinder):
    # blind to hidden top-level packages: find_spec says None, as when a package is not
    # installed, so availability checks answer as they would on such a machine

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in hidden:
            return None
        return super().find_spec(fullname, path, target)

sys.meta_path[:] = [HidingPathFinder if finder is importlib.machinery.PathFinder else finder
                    for finder in sys.meta_path]
sys.argv = ["icm", *json.loads(sys.argv[2])]
from icm.cli.main import run
run()
"""


def _run_with_only(extras: list[str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _CORE_ONLY, json.dumps(extras), json.dumps(list(args))],
        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [["--help"], ["codecs"], ["machines"], ["bench", "--help"]])
def test_the_cli_starts_with_only_the_core_installed(command):
    result = _run_with_only([], *command)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_hiding_works_so_the_core_only_test_can_fail():
    """With nothing allowed but the core, a bench that needs torch must not find it."""
    result = _run_with_only([], "bench", "--machines", "classify:efficientnet-lite0",
                            "--codecs", "jpeg@q50", "--limit", "1", "--no-report")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "torch" in result.stderr
