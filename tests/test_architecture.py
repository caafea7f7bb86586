"""The package map holds: imports point one way, down the data path, and nothing cycles.

Read from the source (``ast``; nothing is imported), every ``icm`` import of every module is
an arrow between two rooms: a subpackage (``icm.codecs``) or a top-level module
(``icm.errors``). Each room has a floor (``FLOORS``); an arrow may point to a room on the same
floor or lower, never up, and the arrows between rooms form no cycle. An import inside a
function counts too: importing late to dodge a cycle is still a cycle. The one allowed
exception is a plug-in, which the registry below loads by name (:mod:`icm.plugins`).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

#: rooms by floor, top to bottom: cli -> bench -> pipeline -> (models and tools) ->
#: (codecs, images, metrics, training) -> the shared ground
FLOORS: dict[str, int] = {
    "cli": 6,
    "bench": 5, "integrations": 5,
    "pipeline": 4,
    "importance": 3, "learned": 3, "adapt": 3, "restore": 3, "machines": 3, "container": 3,
    "degrade": 3, "preedit": 3,
    "codecs": 2, "image": 2, "metrics": 2, "training": 2,
    "errors": 0, "lazy": 0, "spec": 1, "limits": 1, "registry": 1, "plugins": 0, "fileio": 1,
    "__init__": 0,  # icm/__init__.py holds only the version: any room may read it
}
#: arrows among the middle floor's rooms: which may import which (a DAG, checked below)
SAME_FLOOR_ALLOWED = {
    ("importance", "machines"), ("learned", "machines"), ("adapt", "machines"),
    ("restore", "machines"), ("restore", "degrade"), ("preedit", "machines"),
    ("preedit", "importance"),
    ("importance", "container"),
    ("restore", "container"), ("codecs", "image"), ("training", "image"),
    ("limits", "errors"), ("registry", "errors"), ("fileio", "errors"),
    ("registry", "plugins"), ("spec", "errors"),
    ("learned", "container"), ("adapt", "container"), ("machines", "container"),
    ("image", "fileio"), ("integrations", "bench"),
}


def room(module: str) -> str:
    """``icm.codecs.base`` -> ``codecs``; ``icm.errors`` -> ``errors``; ``icm`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def icm_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((SRC / "icm").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported(module: str, path: Path) -> set[str]:
    """The icm modules ``module`` imports, anywhere in it (TYPE_CHECKING blocks excepted)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            node.body = []  # never runs
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "icm" or name.startswith("icm.")}


def _is_type_checking(test: ast.expr) -> bool:
    return getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def room_arrows() -> dict[tuple[str, str], list[str]]:
    """(from room, to room) -> the modules that make the arrow."""
    modules = icm_modules()
    arrows: dict[tuple[str, str], list[str]] = defaultdict(list)
    for module, path in modules.items():
        for target in imported(module, path):
            if target not in modules and target.rpartition(".")[0] in modules:
                target = target.rpartition(".")[0]  # from icm.x import name
            if target in modules and room(target) != room(module):
                arrows[(room(module), room(target))].append(module)
    return arrows


def test_every_room_has_a_floor():
    missing = sorted({room(module) for module in icm_modules()} - set(FLOORS))
    assert not missing, f"give these packages a floor in FLOORS: {missing}"


def test_imports_never_point_up():
    upward = {
        arrow: sorted(set(modules)) for arrow, modules in room_arrows().items()
        if FLOORS[arrow[1]] > FLOORS[arrow[0]]
        or (FLOORS[arrow[1]] == FLOORS[arrow[0]] and arrow not in SAME_FLOOR_ALLOWED)
    }
    assert not upward, "imports against the layers: " + "; ".join(
        f"{a} -> {b} (in {', '.join(m)})" for (a, b), m in sorted(upward.items()))


def test_rooms_form_no_cycle():
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in room_arrows():
        graph[source].add(target)
    cycle = _find_cycle(graph)
    assert cycle is None, f"import cycle between packages: {' -> '.join(cycle or [])}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_allowed_same_floor_arrows_are_a_dag():
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in SAME_FLOOR_ALLOWED:
        graph[source].add(target)
    assert _find_cycle(graph) is None


@pytest.mark.skipif(sys.platform == "win32", reason="fresh-interpreter check uses fork/exec")
def test_every_module_imports_in_a_fresh_interpreter():
    """Each module imports on its own (no order-dependent registration, no hidden cycle
    that only an import order exposes)."""
    import subprocess

    # Ray and lmms-eval are optional extras
    optional = ("icm.bench.executors.ray", "icm.integrations.lmms_model")
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError as exc:\n"
        "        failed.append(f'{name}: {exc}')\n"
        "print('\\n'.join(failed))\n"
    )
    names = [m for m in icm_modules() if m not in optional]
    result = subprocess.run([sys.executable, "-c", script, *names], capture_output=True,
                            text=True, timeout=600, check=True)
    assert not result.stdout.strip(), result.stdout


#: optional extras' packages: the one good reason to import inside a function (``import
#: icm`` and ``icm --help`` must not need them, nor pay seconds for torch)
OPTIONAL = {"torch", "torchvision", "safetensors", "constriction", "compressai", "open_clip",
            "transformers", "ray", "matplotlib", "pyarrow", "ncnn", "rapidocr_onnxruntime",
            "cv2", "pytesseract", "pyjpegli", "brisque", "efficientnet_lite_pytorch",
            "huggingface_hub", "timm", "lmms_eval", "loguru"}


def _top_level_imports(path: Path) -> set[str]:
    """Every module a file imports outside functions (what importing it costs)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, (ast.If, ast.Try, ast.ClassDef)) and not (
                isinstance(node, ast.If) and _is_type_checking(node.test)):
            pending.extend(ast.iter_child_nodes(node))
    return found


def _needs_optional(module: str, modules: dict[str, Path], seen: set[str]) -> bool:
    """Whether importing ``module`` imports an optional extra's package, directly or through
    the icm modules it imports."""
    if module in seen or module not in modules:
        return False
    seen.add(module)
    imports = _top_level_imports(modules[module])
    if any(name.split(".")[0] in OPTIONAL for name in imports):
        return True
    return any(_needs_optional(name, modules, seen) for name in imports
               if name.startswith("icm."))


def test_imports_inside_functions_are_only_for_optional_extras():
    """An icm import inside a function is there because the module needs torch (or another
    optional extra), never to dodge a cycle or a layer: those are the checks above."""
    modules = icm_modules()
    late = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                         if isinstance(node, ast.ImportFrom) and node.module else [])
                icm_names = [n for n in names if n.startswith("icm.") and n in modules]
                if icm_names and not any(_needs_optional(n, modules, set())
                                         for n in icm_names):
                    late.append(f"{module}:{node.lineno} imports {icm_names[0]}")
    assert not late, "imports inside functions that could be at the top: " + "; ".join(late)
