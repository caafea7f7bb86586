"""Label vocabularies for the semantic-tags side channel: a short name -> its label list.

A ``.icm`` file stores tags as ids into a named vocabulary, so the name must be stable and
short (it is coded in every tagged file) and the list must be shipped with icm.
"""

from __future__ import annotations

from collections.abc import Callable

VOCABULARIES: dict[str, Callable[[], tuple[str, ...]]] = {}


def register_vocabulary(name: str, labels: Callable[[], tuple[str, ...]]) -> None:
    VOCABULARIES[name] = labels


def vocabulary_labels(name: str) -> tuple[str, ...] | None:
    """The labels of a known vocabulary, or None for one this icm does not ship."""
    loader = VOCABULARIES.get(name)
    return loader() if loader else None
