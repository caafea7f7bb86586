"""Atomic writes: whole files or none, the usual permissions, never over the input."""

from __future__ import annotations

import os

import pytest

from icm.errors import IcmError
from icm.fileio import refuse_overwriting_input, write_atomic


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
