"""The benchmark: grid planning, worker execution, the SQLite ledger and bitstream cache,
BD analysis and reports. ``run_bench(BenchConfig(...))`` is the one entry point."""

from icm.bench.runner import BenchConfig, BenchOutcome, ledger_path, run_bench

__all__ = ["BenchConfig", "BenchOutcome", "ledger_path", "run_bench"]
