"""Atomic file output.

A result file is either complete or absent: we write to a temporary file in the same folder and
rename it over the target, which POSIX and Windows both make atomic. A crash mid-write therefore
never leaves half a file, and an existing output survives until its replacement is whole.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from icm.errors import IcmError


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename)."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise IcmError(f"cannot write here ({exc.strerror or exc})", target) from None
    try:
        # mkstemp makes the file private (0600); outputs get the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def refuse_overwriting_input(
    source: os.PathLike[str] | str, output: os.PathLike[str] | str
) -> None:
    """Stop before an output would replace the file it was made from."""
    src, out = Path(source), Path(output)
    if out.exists() and src.exists() and os.path.samefile(src, out):
        raise IcmError("output would overwrite the input file; choose another -o", out)


def file_digest(path: str | os.PathLike[str], digits: int = 12) -> str:
    """The first ``digits`` hex digits of a file's SHA-256: a model or weights file's identity
    in fingerprints, so a changed file never reuses stale cached results. Fingerprints are
    asked for per row, so each file is read once per process (again if it changes)."""
    stat = os.stat(path)
    return _sha256(os.path.realpath(path), stat.st_mtime_ns, stat.st_size)[:digits]


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
