"""What ``icm bench`` reports when a run ends: its totals, its findings and its BD table.

Read back from the ledger rather than from the run's own rows, so a resumed run's summary
covers every row in the folder, not just those this call added.
"""

from __future__ import annotations

from typing import Any

from icm.bench.analysis import bd_table, findings
from icm.bench.ledger import Ledger
from icm.bench.runner import BenchOutcome, ledger_path


def run_summary(outcome: BenchOutcome, anchor: str) -> dict[str, Any]:
    """The run's counts and times, what it skipped, earlier runs found dead, the sentences of
    what it found and every BD entry against ``anchor``."""
    with Ledger(ledger_path(outcome.out)) as ledger:
        rows = ledger.rows()
    table = bd_table(rows, anchor)
    return {
        "out": str(outcome.out),
        "rows": outcome.rows_total,
        "rows_added": outcome.rows_added,
        "pristine_added": outcome.pristine_added,
        "wall_s": outcome.wall_s,
        "work_s": outcome.work_s,
        "workers": outcome.workers,
        "harness_share": outcome.harness_share,
        "skipped": outcome.skipped,
        "died_runs": outcome.died,
        "findings": list(findings(rows, anchor, table).values()),
        "bd": [vars(entry) for entry in table],
    }
