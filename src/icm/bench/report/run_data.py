"""What the report reads from the ledger: every table, taken in one read snapshot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icm.bench.ledger import Ledger
from icm.image import DEFAULT_MAX_PIXELS


@dataclass
class RunData:
    """Every ledger table, read once, so the report sees one consistent snapshot."""

    folder: Path
    results: list[dict[str, Any]]
    pristine: list[dict[str, Any]]
    images: dict[str, dict[str, Any]]  # image_sha -> images row
    bitstreams: list[dict[str, Any]]
    notes: list[dict[str, Any]]
    runs: list[dict[str, Any]]

    @classmethod
    def read(cls, ledger: Ledger, folder: Path) -> RunData:
        ledger.db.execute("BEGIN")  # one read snapshot: a running bench cannot tear it
        try:
            return cls(
                folder=folder,
                results=ledger.rows("results"),
                pristine=ledger.rows("pristine"),
                images={row["image_sha"]: row for row in ledger.rows("images")},
                bitstreams=ledger.rows("bitstreams"),
                notes=ledger.rows("notes"),
                runs=sorted(ledger.rows("runs"), key=lambda r: r["id"]),
            )
        finally:
            ledger.db.rollback()

    def image_id(self, image_sha: str) -> str:
        row = self.images.get(image_sha)
        return row["image_id"] if row else image_sha[:12]

    def max_pixels(self) -> int:
        """The largest pixel limit any run allowed, so every benchmarked image reloads."""
        limits = [json.loads(r["config_json"]).get("max_pixels") or 0 for r in self.runs]
        return max([DEFAULT_MAX_PIXELS, *limits])
