"""Atomic writes: whole files or none, the usual permissions, never over the input, never
over a device; inputs only from regular files of bounded size (issue "hostile files and
hostile disks")."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import pytest

from icm import fileio
from icm.errors import BadImageError, IcmError
from icm.fileio import read_input, refuse_overwriting_input, write_atomic


def test_write_is_whole_and_leaves_no_temp_file(tmp_path):
    target = write_atomic(tmp_path / "sub" / "out.bin", b"abc")
    assert target.read_bytes() == b"abc"
    write_atomic(target, b"replaced")
    assert target.read_bytes() == b"replaced"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_outputs_get_the_mode_open_would_give(tmp_path):
    mask = os.umask(0o022)
    try:
        target = write_atomic(tmp_path / "out.bin", b"x")
    finally:
        os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o644


def test_the_input_is_never_the_output(tmp_path):
    source = tmp_path / "in.png"
    source.write_bytes(b"x")
    with pytest.raises(IcmError, match="overwrite the input"):
        refuse_overwriting_input(source, tmp_path / "." / "in.png")
    refuse_overwriting_input(source, tmp_path / "out.png")


# -- inputs: regular files of bounded size -------------------------------------------------------
def _device(path, major: int, minor: int):
    """A character device node made in tmp_path (never the machine's /dev); skip if refused."""
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    except (PermissionError, AttributeError, OSError) as exc:
        pytest.skip(f"cannot make a device node here ({exc})")
    return path


def test_a_regular_file_reads_whole(tmp_path):
    path = tmp_path / "in.bin"
    path.write_bytes(b"abc" * 1000)
    assert read_input(path) == b"abc" * 1000


@pytest.mark.parametrize("make, problem", [
    (lambda p: None, "file not found"),
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: os.mkfifo(p), "is a FIFO"),
])
def test_what_is_not_a_readable_file_is_one_line(tmp_path, make, problem):
    path = tmp_path / "in.png"
    make(path)
    with pytest.raises(IcmError, match=problem) as info:
        read_input(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_a_device_is_refused_before_a_byte_is_read(tmp_path):
    # /dev/null's numbers: were it opened and read, the error would say "empty file"
    path = _device(tmp_path / "null", 1, 3)
    with pytest.raises(IcmError, match="is a character device, not a regular file"):
        read_input(path)


def test_a_fifo_swapped_in_after_the_check_does_not_hang(tmp_path, monkeypatch):
    # the stat says "regular file", then the path is a FIFO with no writer: a blocking open
    # would wait forever; O_NONBLOCK returns at once and fstat refuses it
    import signal

    regular, fifo = tmp_path / "ok.bin", tmp_path / "pipe"
    regular.write_bytes(b"x")
    os.mkfifo(fifo)
    monkeypatch.setattr(fileio, "_stat", lambda path, error: os.stat(regular))

    def hung(signum, frame):
        raise TimeoutError("open of a FIFO blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        with pytest.raises(IcmError, match="is a FIFO"):
            read_input(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_files_over_the_limit_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 100)
    assert len(read_input(path, limit=100)) == 100
    with pytest.raises(IcmError, match="larger than the input limit of 99 bytes"):
        read_input(path, limit=99)
    monkeypatch.setenv("ICM_MAX_INPUT_BYTES", "50")
    with pytest.raises(IcmError, match="ICM_MAX_INPUT_BYTES"):
        read_input(path)
    monkeypatch.setenv("ICM_MAX_INPUT_BYTES", "lots")
    with pytest.raises(IcmError, match="not a whole number"):
        read_input(path)
    assert fileio.MAX_INPUT_BYTES == 1 << 30


def test_the_limit_holds_while_a_file_grows(tmp_path, monkeypatch):
    # fstat saw 10 bytes; by the time it is read the file holds 5000
    path = tmp_path / "growing.bin"
    path.write_bytes(b"y" * 5000)
    real_fstat = os.fstat

    def shrunk(fd):
        info = list(real_fstat(fd))
        info[stat.ST_SIZE] = 10
        return os.stat_result(info)

    monkeypatch.setattr(fileio.os, "fstat", shrunk)
    with pytest.raises(IcmError, match="larger than the input limit of 100 bytes"):
        read_input(path, limit=100)
    assert read_input(path, limit=10_000) == b"y" * 5000


def test_input_errors_take_the_callers_class(tmp_path):
    with pytest.raises(BadImageError, match="file not found"):
        read_input(tmp_path / "none.png", error=BadImageError)


# -- outputs: only regular files are replaced, failures leave nothing ----------------------------
def test_a_folder_at_the_target_is_refused(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(IcmError, match="is a folder"):
        write_atomic(tmp_path / "out.png", b"x")
    assert _names(tmp_path) == ["out.png"]


def test_a_fifo_at_the_target_is_refused(tmp_path):
    target = tmp_path / "out.png"
    os.mkfifo(target)
    with pytest.raises(IcmError, match=r"is a FIFO .*; icm writes only regular files"):
        write_atomic(target, b"x")
    assert stat.S_ISFIFO(os.lstat(target).st_mode) and _names(tmp_path) == ["out.png"]


def test_a_device_at_the_target_keeps_its_node(tmp_path):
    # as root a rename over /dev/full would delete the device node; a null device made here
    target = _device(tmp_path / "full", 1, 3)
    with pytest.raises(IcmError, match="is a character device") as info:
        write_atomic(target, b"x")
    assert str(info.value).startswith(str(target)) and "\n" not in str(info.value)
    assert stat.S_ISCHR(os.lstat(target).st_mode) and _names(tmp_path) == ["full"]


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(b"theirs")
    link = tmp_path / "out.png"
    link.symlink_to(elsewhere)
    write_atomic(link, b"ours")
    assert not link.is_symlink() and link.read_bytes() == b"ours"
    assert elsewhere.read_bytes() == b"theirs"
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "missing" / "x.png")
    write_atomic(dangling, b"ours")
    assert dangling.read_bytes() == b"ours" and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("code, problem", [
    (errno.ENOSPC, "no space left on the device"),
    (errno.EFBIG, "file too large for this file system or the file-size limit"),
    (errno.EROFS, "read-only file system"),
    (errno.EACCES, "permission denied"),
    (errno.EIO, "Input/output error"),
])
def test_a_failing_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, code, problem):
    target = tmp_path / "out.icm"
    target.write_bytes(b"previous")

    def failing(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fileio.os, "fsync", failing)
    with pytest.raises(IcmError, match=problem) as info:
        write_atomic(target, b"x" * 10_000)
    assert str(info.value) == f"{target}: cannot write ({problem})"
    assert _names(tmp_path) == ["out.icm"] and target.read_bytes() == b"previous"


def test_running_out_of_memory_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def failing(fd):
        raise MemoryError

    monkeypatch.setattr(fileio.os, "fsync", failing)
    with pytest.raises(IcmError, match="out of memory"):
        write_atomic(tmp_path / "out.icm", b"x")
    assert _names(tmp_path) == []


def test_a_file_size_limit_is_efbig_in_one_line(tmp_path):
    # RLIMIT_FSIZE in a child: the write fails with EFBIG (SIGXFSZ ignored, as Python does)
    script = (
        "import resource, signal, sys\n"
        "from icm.errors import IcmError\n"
        "from icm.fileio import write_atomic\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    write_atomic(sys.argv[1], b'x' * 100_000)\n"
        "except IcmError as exc:\n"
        "    print(exc)\n"
    )
    target = tmp_path / "out.icm"
    done = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{target}: cannot write (file too large for this file " \
                                  "system or the file-size limit)"
    assert _names(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_folder_is_permission_denied(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(IcmError, match="permission denied"):
            write_atomic(folder / "out.png", b"x")
        assert _names(folder) == []
    finally:
        folder.chmod(0o755)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())
