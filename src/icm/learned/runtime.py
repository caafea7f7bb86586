"""What both learned-codec families need at run time, without importing torch at import time.

Codec modules are imported whenever ``icm.codecs`` is (to fill the registry), so they must not
import torch themselves: the core install has no torch, and the other codecs must still work.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the caller's setting.

    Convolutions may round differently with another thread count, and a decoder must rebuild
    exactly the encoder's probability tables: one thread on both sides makes them agree.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
