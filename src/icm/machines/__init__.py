"""Machines: the models that read images, one module per family, registered by decorator.

Heavy libraries (torch, onnxruntime, ncnn, open_clip, transformers) load lazily inside each
machine, so importing this package is cheap and a missing library disables only its family.
"""

from icm.machines.base import InputProfile, Machine, MachineSpec, Output, Scores
from icm.machines.registry import (
    KNOWN_MODELS,
    MACHINES,
    MachineUnavailableError,
    UnknownMachineError,
    get_machine,
    machine_rows,
    parse_machine,
    register_machine,
)

# Family modules register themselves on import (one line each, below).
from icm.machines import clip, vlm  # noqa: F401  # isort: skip
from icm.machines import classify, detect, ocr  # noqa: F401  # isort: skip

__all__ = [
    "KNOWN_MODELS",
    "MACHINES",
    "InputProfile",
    "Machine",
    "MachineSpec",
    "MachineUnavailableError",
    "Output",
    "Scores",
    "UnknownMachineError",
    "get_machine",
    "machine_rows",
    "parse_machine",
    "register_machine",
]
