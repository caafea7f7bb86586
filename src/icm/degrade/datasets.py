"""Degraded dataset images: ``Dataset.degraded(['haze@0.3'])`` and ``DatasetImage.load`` parse,
check and apply degradations through the :class:`~icm.image.datasets.Degrader` this module
registers, which ``icm.degrade`` imports.

The layers run one way: ``icm.degrade`` loads images, so ``icm.image`` never imports it. A
degraded dataset image holds a :class:`~icm.degrade.base.DegradationRecord`; a worker process
that unpickles one imports ``icm.degrade`` with it, and so registers this degrader too.
"""

from __future__ import annotations

from icm.degrade.base import DegradationRecord
from icm.degrade.registry import degrade, get_degradation
from icm.image.datasets import Degrader, set_degrader


def check_record(record: DegradationRecord) -> None:
    """An :class:`~icm.degrade.registry.UnknownDegradationError` if ``record``'s name is not
    registered."""
    get_degradation(record.name)


#: what ``icm.image`` datasets use to parse, check and apply degradations
DEGRADER = Degrader(parse=DegradationRecord.parse, check=check_record, apply=degrade)

set_degrader(DEGRADER)
