"""User-facing errors.

Every problem caused by the user's input (a bad file, an unknown codec, a missing library) is an
``IcmError``. The command line prints it as one line naming the file and the problem and exits
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from os import PathLike


class IcmError(Exception):
    """A problem with the user's input, reported as ``<file>: <problem>``."""

    def __init__(self, problem: str, path: str | PathLike[str] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path = None if path is None else str(path)

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem


class BadImageError(IcmError):
    """The file is missing, empty, truncated, not an image, or too large."""


class UnknownCodecError(IcmError):
    """The codec name or its level is not one icm knows."""


class CodecUnavailableError(IcmError):
    """The codec is known but its library is not installed here."""


class CorruptContainerError(IcmError):
    """An ``.icm`` file failed its magic, length or CRC check."""


class UndecodableError(IcmError):
    """A bitstream its codec's decoder refuses, or whose picture is not what its header says."""


class RateControlError(IcmError):
    """No level of the codec reaches the requested bitrate."""
