"""What every command prints through: the two consoles, the one JSON printer, the progress bar
styles, and the option types several commands share.

Command modules import these rather than making their own, so that ``--json`` documents are
formatted one way, tests can widen one pair of consoles, and a shared option reads the same in
every command's ``--help``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import MISSING
from types import SimpleNamespace
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# No markup on the shared consoles: messages, paths and install hints hold square brackets
# (pip install 'icm[jpegli]') that rich markup would swallow. Style goes in Text objects.
out = Console(markup=False)
err = Console(stderr=True, markup=False)

#: a ``(text, done, total)`` progress callback, the shape every long library job reports in
Report = Callable[[str, int, int], None]

# -- options several commands share (their help texts are part of the interface) ------------

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
PrintJsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
BareJsonFlag = Annotated[bool, typer.Option("--json")]
MaxPixels = Annotated[
    int, typer.Option("--max-pixels", help="Refuse images larger than this many pixels.")
]


def default_of(config: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config``: an option's default is read
    from the config it fills, so the library and the command line cannot drift apart."""
    default = config.__dataclass_fields__[name].default
    if default is MISSING:
        raise TypeError(f"{config.__name__}.{name} has no plain default to show in --help")
    return default


def defaults_of(config: type) -> SimpleNamespace:
    """Every field of ``config`` with a plain default (:func:`default_of`), as attributes.

    Made once per module (``LEARNED = defaults_of(LearnedTrainConfig)``) and read in a
    command's signature (``steps: Steps = LEARNED.steps``): an attribute there is what ruff's
    B008 allows where a call is not, and no config is built (a default factory may be slow).
    """
    names = [name for name, spec in config.__dataclass_fields__.items()
             if spec.default is not MISSING]
    return SimpleNamespace(**{name: default_of(config, name) for name in names})


def comma_list(values: tuple[Any, ...]) -> str:
    """``(0.2, 0.8)`` -> ``'0.2,0.8'``: a tuple default as the comma-separated option text."""
    return ",".join(f"{value:g}" if isinstance(value, float) else str(value)
                    for value in values)


# -- printing -------------------------------------------------------------------------------


def emit_json(payload: Any, *, indent: int | None = 2) -> None:
    """Print one JSON document on stdout. ``indent=None`` is for ``icm report``, whose document
    has always been one line; ``default=str`` writes paths and other values as text."""
    sys.stdout.write(json.dumps(payload, indent=indent, default=str) + "\n")


def progress_bar(console: Console, disable: bool = False) -> Progress:
    """The one progress bar style: description, bar, n/total, elapsed, ETA."""
    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # names hold [ ]
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


def stage_reporter(progress: Progress) -> Report:
    """A ``(stage, done, total)`` callback that keeps one bar per stage, for long jobs that
    report in stages (bench: pristine, codecs; adapter training: coding, training)."""
    tasks: dict[str, Any] = {}

    def show(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return show


def titled_reporter(progress: Progress, description: str, total: int | None = None) -> Report:
    """A ``(text, done, total)`` callback on one bar whose description follows the text, for
    one long stage whose reports name what is under way (a training loss, the codec and photo
    being coded), where :func:`stage_reporter` would start a bar per text."""
    task = progress.add_task(description, total=total)

    def show(text: str, done: int, total: int) -> None:
        progress.update(task, completed=done, total=total, description=text)

    return show
