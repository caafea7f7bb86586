"""The one grammar of the names icm reads, and its one parser.

Every kind of thing a user names on the command line is written the same way::

    head[+part...][@qualifier]        head, part:  name[=argument][~strength]

=================  =====================================  ===============================
kind               example                                head / parts / qualifier
=================  =====================================  ===============================
operating point    ``jpeg+saliency~6+fit=classify@q30``   codec / tools / level or bpp
machine            ``clip:ViT-B-32@openai+adapter=a.st``  family:model / wrappers / variant
degradation        ``haze@0.5``                           name / - / strength
importance         ``sensitivity=detect:nanodet``         name=argument / - / -
prompt (argument)  ``a red car@ViT-B-32@openai``          text / - / CLIP model
=================  =====================================  ===============================

Names are case-insensitive up to a ``:`` (a machine's family; the model after it keeps its
case). Where the ``@`` goes: a head without an ``=argument`` ends at its first ``@`` (what follows
qualifies it: ``@int8``, ``@0.5``, ``@q30``); an argument keeps its ``@`` signs
(``prompt=a cat@ViT-B-32@openai``), so a kind whose qualifier follows its parts (a point's
level) recognises it at the very end by its own pattern. A ``+`` begins a part; a kind whose
parts are few and named (a machine's wrappers) splits only before those names, so a path
holding ``+`` stays whole. Each kind checks the meaning (is the codec known, is the strength a
number in range) and words its own errors; this module only cuts text, in one way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from icm.errors import IcmError


@dataclass(frozen=True)
class Part:
    """``name[=argument][~strength]``: a head (a provider, a tool) or a ``+part``."""

    name: str
    argument: str | None = None
    strength: float | None = None

    def __str__(self) -> str:
        text = f"{self.name}={self.argument}" if self.argument else self.name
        return f"{text}~{self.strength:g}" if self.strength is not None else text


@dataclass(frozen=True)
class Spec:
    """A parsed name: its head, its ``+parts`` in order, and its ``@qualifier``."""

    head: Part
    parts: tuple[Part, ...] = ()
    qualifier: str | None = None


def parse_spec(text: str, what: str, error: type[IcmError] = IcmError, *,
               parts: Collection[str] | None = None,
               trailing: Callable[[str], bool] | None = None,
               strengths: bool = True) -> Spec:
    """Cut ``text`` (a ``what``: "machine", "tool"...) into head, parts and qualifier.

    ``parts``: the names a ``+part`` may have (None: any ``+`` begins one; empty: none do).
    ``trailing``: whether the text after the last ``@`` of a spec with parts is its qualifier
    (a point's level); without parts, the head's first ``@`` gives the qualifier as usual.
    ``strengths``: whether ``~number`` ends a part (not for paths, where ``~`` is a home).
    """
    text = text.strip()
    pieces = split_parts(text, parts)
    qualifier = None
    if trailing is not None and len(pieces) > 1:
        body, at, tail = pieces[-1].rpartition("@")
        if at and trailing(tail.strip().lower()):
            pieces[-1], qualifier = body, tail.strip()
    head_text = pieces[0]
    if qualifier is None and "=" not in head_text.partition("@")[0]:
        head_text, at, tail = head_text.partition("@")
        qualifier = tail.strip() if at else None
    head = parse_part(head_text, what, error, strengths=strengths)
    return Spec(head, tuple(parse_part(piece, what, error, strengths=strengths)
                            for piece in pieces[1:]), qualifier)


def split_parts(text: str, names: Collection[str] | None = None) -> list[str]:
    """``text`` cut before each ``+part``: every ``+`` when ``names`` is None, else only a
    ``+name=`` of one of ``names`` (the head is the first piece, kept even when empty)."""
    if names is None:
        return [piece.strip() for piece in text.split("+")]
    pieces, rest = [], text
    while True:
        cuts = [rest.find(f"+{name}=") for name in names]
        cut = min((c for c in cuts if c >= 0), default=-1)
        if cut < 0:
            return [*pieces, rest.strip()]
        pieces.append(rest[:cut].strip())
        rest = rest[cut + 1:]


def parse_part(text: str, what: str, error: type[IcmError] = IcmError, *,
               strengths: bool = True) -> Part:
    """``name[=argument][~strength]``; the name lower-cased, the argument kept as written."""
    body, strength = text, None
    if strengths and "~" in text:
        body, _, number = text.rpartition("~")
        try:
            strength = float(number)
        except ValueError:
            raise error(f"{what} {text!r}: strength {number!r} is not a number") from None
        if strength < 0:
            raise error(f"{what} {text!r}: strength must be >= 0")
    name, equals, argument = body.partition("=")
    if equals and not argument.strip():
        raise error(f"{what} {text!r} has an empty argument: nothing after '='")
    return Part(_case_folded(name.strip()), argument.strip() if equals else None, strength)


def _case_folded(name: str) -> str:
    """Names are case-insensitive up to a ``:`` (``HEVC``, ``Classify:...``); a model after it
    (``clip:ViT-B-32``) is a hub id or file name, whose case matters."""
    family, colon, model = name.partition(":")
    return family.lower() + colon + model


def split_qualifier(text: str) -> tuple[str, str]:
    """``'a red car@ViT-B-32@openai'`` -> ``('a red car', 'ViT-B-32@openai')``: the first
    ``@`` ends a head; what follows may hold ``@`` signs of its own ('' when none)."""
    head, _, qualifier = text.partition("@")
    return head.strip(), qualifier.strip()
