"""File input and output that hostile files and hostile disks cannot turn into a hang, a
traceback or half a file.

**Inputs** are read by :func:`read_input`: only a regular file, and at most ``limit`` bytes
(default :data:`MAX_INPUT_BYTES`, 1 GiB, or ``ICM_MAX_INPUT_BYTES`` from the environment). A
path naming a FIFO, a device (``/dev/zero`` never ends, ``/dev/tty`` waits for a person), a
socket or a folder is refused before a byte is read, and the limit holds while reading, so a
file that grows after its size was checked still cannot exhaust memory.

**Outputs** are written by :func:`write_atomic`: a result file is either complete or absent. We
write to a temporary file in the same folder and rename it over the target, which POSIX and
Windows both make atomic, so a crash mid-write never leaves half a file and an existing output
survives until its replacement is whole. Only a regular file is ever replaced: an existing
target that is a device, FIFO, socket or folder is refused (as root, renaming over
``/dev/full`` would delete the device node). A symbolic link at the target is replaced by the
new file, never written through: following it could reach a file the user never named (the
classic link planted in a shared folder), and the file it pointed to is left as it was. A
full disk, a file-size limit, a read-only or forbidden folder, or running out of memory is one
line naming the target, and the temporary file is removed.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

from icm.errors import IcmError

#: the largest input file read, in bytes: far above any image or coded file icm makes, far
#: below what would exhaust a machine's memory (the environment's ICM_MAX_INPUT_BYTES wins)
MAX_INPUT_BYTES = 1 << 30
_LIMIT_VARIABLE = "ICM_MAX_INPUT_BYTES"
_GROWTH_BLOCK = 1 << 20
_READ_FLAGS = os.O_RDONLY
for _flag in ("O_NONBLOCK", "O_NOCTTY", "O_CLOEXEC", "O_BINARY"):  # those this OS has
    _READ_FLAGS |= getattr(os, _flag, 0)
_WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EFBIG: "file too large for this file system or the file-size limit",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


def input_limit() -> int:
    """The input size limit in force: ``ICM_MAX_INPUT_BYTES`` if set (bytes), else the default."""
    text = os.environ.get(_LIMIT_VARIABLE, "").strip()
    if not text:
        return MAX_INPUT_BYTES
    try:
        value = int(text)
    except ValueError:
        raise IcmError(f"{_LIMIT_VARIABLE}={text!r} is not a whole number of bytes") from None
    if value <= 0:
        raise IcmError(f"{_LIMIT_VARIABLE}={text!r} must be a positive number of bytes")
    return value


def read_input(
    path: str | os.PathLike[str], limit: int | None = None, *, error: type[IcmError] = IcmError
) -> bytes:
    """The bytes of the regular file ``path``; ``error`` (an :class:`IcmError` class) for a
    missing, unreadable, special, empty or over-``limit`` file."""
    limit = input_limit() if limit is None else limit
    _check_regular(_stat(path, error), path, error)
    try:
        # O_NONBLOCK: if a FIFO is swapped in after the check, opening it must not wait for a
        # writer; fstat below then refuses it. O_NOCTTY: a terminal never becomes ours.
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise error(f"cannot read ({exc.strerror or exc})", path) from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        _check_regular(info, path, error)
        _check_size(info.st_size, limit, path, error)
        try:
            data = _read_bounded(handle, info.st_size, limit)
        except OSError as exc:
            raise error(f"cannot read ({exc.strerror or exc})", path) from None
    _check_size(len(data), limit, path, error)
    if not data:
        raise error("empty file", path)
    return data


def _stat(path: str | os.PathLike[str], error: type[IcmError]) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise error("file not found", path) from None
    except OSError as exc:
        raise error(f"cannot read ({exc.strerror or exc})", path) from None


def _check_regular(info: os.stat_result, path: str | os.PathLike[str],
                   error: type[IcmError]) -> None:
    if stat.S_ISREG(info.st_mode):
        return
    if stat.S_ISDIR(info.st_mode):
        raise error("is a folder, not a file", path)
    raise error(f"is {_special_kind(info.st_mode)}, not a regular file", path)


def _special_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def _check_size(size: int, limit: int, path: str | os.PathLike[str],
                error: type[IcmError]) -> None:
    if size > limit:
        raise error(f"file is larger than the input limit of {_bytes(limit)} "
                    f"(raise it with {_LIMIT_VARIABLE}=BYTES)", path)


def _read_bounded(handle: BinaryIO, expected: int, limit: int) -> bytes:
    """At most ``limit + 1`` bytes: the size ``fstat`` gave in one read (one allocation),
    then, only if the file grew meanwhile, more in blocks until the limit is passed."""
    data = handle.read(min(expected, limit) + 1)
    if len(data) <= expected:
        return data
    parts, total = [data], len(data)
    while total <= limit:
        block = handle.read(min(_GROWTH_BLOCK, limit + 1 - total))
        if not block:
            break
        parts.append(block)
        total += len(block)
    return b"".join(parts)


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:g} {unit}"
    return f"{count} bytes"


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); any failure is one
    :class:`IcmError` naming ``path``, with no temporary file left behind."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    refuse_special_target(target)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise IcmError(f"cannot write here ({_write_problem(exc)})", target) from None
    try:
        _fill(fd, tmp, data)
        refuse_special_target(target)  # again, just before the rename: narrows the race
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise IcmError(f"cannot write ({_write_problem(exc)})", target) from None
    except MemoryError:
        Path(tmp).unlink(missing_ok=True)
        raise IcmError("cannot write (out of memory)", target) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def refuse_special_target(target: Path) -> None:
    """Stop before an output would replace something that is not a regular file: a device,
    FIFO or socket (a rename would delete its node) or a folder. Symbolic links are not
    followed: the link itself is what a rename replaces."""
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise IcmError(f"cannot write ({_write_problem(exc)})", target) from None
    if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
        return
    if stat.S_ISDIR(info.st_mode):
        raise IcmError("is a folder; name a file to write", target)
    raise IcmError(f"is {_special_kind(info.st_mode)}; icm writes only regular files", target)


def _fill(fd: int, tmp: str, data: bytes) -> None:
    """Write and fsync the temporary file, with the mode a plain open() would give (mkstemp
    makes it private, 0600)."""
    with os.fdopen(fd, "wb") as handle:
        os.chmod(tmp, 0o666 & ~_umask())
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_problem(exc: OSError) -> str:
    return _WRITE_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))


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
    stat_result = os.stat(path)
    return _sha256(os.path.realpath(path), stat_result.st_mtime_ns, stat_result.st_size)[:digits]


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
