"""Where a bench's work runs: ``local`` worker processes (the default) or a ``ray`` cluster.

Both hand the runner the same rows; only the runner writes the ledger and the bitstream cache,
so the choice never changes results, and a run started on one resumes on the other.
"""

from icm.bench.executors import local, ray  # noqa: F401  (register the built-in executors)
from icm.bench.executors.base import (
    EXECUTORS,
    Executor,
    PristineCall,
    UnknownExecutorError,
    WorkerLostError,
    get_executor,
    register_executor,
)

__all__ = ["EXECUTORS", "Executor", "PristineCall", "UnknownExecutorError", "WorkerLostError",
           "get_executor", "register_executor"]
