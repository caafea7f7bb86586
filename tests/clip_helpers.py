"""Tiny open_clip models for offline tests: an architecture registered from a config dict and
a random-initialised checkpoint of it, saved as a bare state dict (what a user's weights are)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def random_clip_checkpoint(folder: Path, name: str, config: dict[str, Any],
                           filename: str = "random.bin", seed: int = 0) -> Path:
    """Register ``name`` with open_clip from ``config`` and save a seeded random model."""
    import open_clip
    import torch

    settings = folder / f"{name}.json"
    settings.write_text(json.dumps(config))
    open_clip.add_model_config(settings)
    torch.manual_seed(seed)
    path = folder / filename
    torch.save(open_clip.create_model(name, pretrained=None).state_dict(), path)
    return path
