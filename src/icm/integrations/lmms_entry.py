"""The ``lmms_eval.models`` entry point: how lmms-eval finds the ``icm`` model.

lmms-eval loads every entry point of that group whenever its model registry is built, so this
module stays light (no icm pipeline, no torch): it names the classes, which lmms-eval imports
only when ``--model icm`` is asked for.
"""

from __future__ import annotations

from typing import Any

#: where the wrapper classes live (imported by lmms-eval on use)
MODULE = "icm.integrations.lmms_model"


def manifest() -> Any:
    """``icm`` as a chat model (lmms-eval's default resolution) and as a simple one
    (``--force_simple``); either takes the inner model's kind at run time."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id="icm", simple_class_path=f"{MODULE}.IcmSimple",
                         chat_class_path=f"{MODULE}.IcmChat")
