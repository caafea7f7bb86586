"""Weights files: safetensors holding tensors plus string metadata saying what they mean.

Shared by adapters and restoration models. Writes are atomic, so a crash never leaves half a
file; reads read the file once and turn a missing, torn or foreign file into a one-line error
naming it, of the caller's error class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from icm.errors import IcmError
from icm.fileio import write_atomic


def save_tensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    from safetensors.torch import save

    contiguous = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(Path(path), save(contiguous, metadata=metadata))


def read_tensors(path: Path, what: str, error: type[IcmError]
                 ) -> tuple[dict[str, Any], dict[str, str] | None]:
    """(tensors, metadata) of a safetensors file; ``what`` names the kind of file in errors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file not found", path)
    try:
        data = path.read_bytes()
        tensors = load(data)
        length = int.from_bytes(data[:8], "little")  # 8 bytes of header length, then JSON
        metadata = json.loads(data[8 : 8 + length].decode("utf-8")).get("__metadata__")
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"not a safetensors {what} file ({first})", path) from None
    return tensors, metadata
