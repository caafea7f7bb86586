"""The ``icm`` lmms-eval model: any inner lmms-eval model, reading images coded at an icm point.

Registered with lmms-eval through the ``lmms_eval.models`` entry point
(:mod:`icm.integrations.lmms_entry`), so
``python -m lmms_eval --model icm --model_args inner=llava_hf,pretrained=...,point=hevc@qp37``
works once icm and its ``lmms`` extra are installed. Each request's callables (``doc_to_visual``,
``doc_to_messages``) are wrapped so that every PIL image they return reaches the inner model
as its decode at the point; the bits of every image of every document are recorded
(``records``, and the ``icm_record`` JSON file when given). The inner model is untouched: it
shares the wrapper's ``task_dict`` and answers the rewritten requests.

This module imports lmms-eval (and torch through it): only the entry point and ``icm lmms``
import it, never ``import icm``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmms_eval import models as lmms_models
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from icm.fileio import write_atomic
from icm.integrations.imagecoding import CodedImage, ImageCoder, code_visuals
from icm.integrations.lmms_args import LmmsArgsError, parse_wrapper_args
from icm.pipeline import CodecPoint


def load_inner(name: str, args: dict[str, Any], simple: bool = False) -> lmms:
    """An lmms-eval model by its registered name, built from already-parsed arguments
    (lmms-eval's own ``create_from_arg_string`` does the same after parsing)."""
    if name not in lmms_models.MODEL_REGISTRY_V2.list_model_names():
        raise LmmsArgsError(f"inner={name}: not an lmms-eval model "
                            f"(python -m lmms_eval models lists them)")
    cls = lmms_models.get_model(name, force_simple=simple)
    return cls(**{key: value for key, value in args.items() if value is not None})


class IcmModel(lmms):
    """Wraps ``inner``; codes images at ``point`` (None: the pristine images, unchanged)."""

    def __init__(self, inner: str = "", batch_size: Any = None, max_batch_size: Any = None,
                 device: Any = None, **model_args: Any) -> None:
        parsed = parse_wrapper_args({"inner": inner, **model_args})
        if len(parsed.points) > 1:
            raise LmmsArgsError(
                f"points={';'.join(map(str, parsed.points))}: one lmms-eval run scores one "
                "point; run `icm lmms` for a list (it loads the model once and resumes)")
        extra = {"batch_size": batch_size, "max_batch_size": max_batch_size, "device": device}
        model = load_inner(parsed.inner, {**parsed.inner_args, **extra}, simple=self.is_simple)
        self._setup(model, parsed.points[0], parsed.cache_dir, parsed.record)

    @classmethod
    def around(cls, inner: lmms, point: CodecPoint | None, cache_dir: Path | None = None,
               record: Path | None = None) -> IcmModel:
        """A wrapper around an already loaded model (``icm lmms`` loads it once per run)."""
        wrapper = cls.__new__(cls)
        wrapper._setup(inner, point, cache_dir, record)
        return wrapper

    def _setup(self, inner: lmms, point: CodecPoint | None, cache_dir: Path | None,
               record: Path | None) -> None:
        lmms.__init__(self)
        self.inner = inner
        self.point = point
        self.coder = ImageCoder(point, cache_dir) if point is not None else None
        self.record = record
        #: (task, doc_id) -> the coded images of that document, in the order the model got them
        self.records: dict[tuple[str, Any], list[CodedImage]] = {}
        self.is_simple = getattr(inner, "is_simple", True)  # the requests the inner reads
        self.task_dict = inner.task_dict  # lmms-eval fills the wrapper's; the inner reads it
        self._rank, self._world_size = inner.rank, inner.world_size

    # -- what lmms-eval calls ------------------------------------------------------------

    def generate_until(self, requests: list[Instance]) -> list[Any]:
        return self._delegate("generate_until", requests)

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        return self._delegate("loglikelihood", requests)

    def generate_until_multi_round(self, requests: list[Instance]) -> list[Any]:
        return self._delegate("generate_until_multi_round", requests)

    def __getattr__(self, name: str) -> Any:
        """Anything else the evaluator reads (tokenizer_name, chat_template, accelerator,
        model) is the inner model's; a request method this class does not name (a newer
        lmms-eval's ``generate_until_agentic``) still goes through the coding, never around
        it."""
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        if name.startswith(("generate_", "loglikelihood")) and callable(getattr(inner, name)):
            return functools.partial(self._delegate, name)
        return getattr(inner, name)

    # -- the rewriting ---------------------------------------------------------------------

    def _delegate(self, method: str, requests: list[Instance]) -> list[Any]:
        results = getattr(self.inner, method)([self._rewrite(r) for r in requests])
        if self.record is not None:
            write_atomic(self.record, json.dumps(self.records_json(), indent=1).encode())
        return results

    def _rewrite(self, request: Instance) -> Instance:
        """The request with each of its callables returning coded images."""
        if self.coder is None:
            return request
        key = (request.task_name, request.doc_id)
        arguments = tuple(self._coding(value, key) if _is_callback(value) else value
                          for value in request.args)
        return dataclasses.replace(request, arguments=arguments)

    def _coding(self, callback: Callable[..., Any], key: tuple[str, Any]) -> Callable[..., Any]:
        def coded(*args: Any, **kwargs: Any) -> Any:
            found: list[CodedImage] = []
            value = code_visuals(callback(*args, **kwargs), self.coder, found)
            if found:  # the last call that returned images is what the model read
                self.records[key] = found
            return value

        return coded

    def records_json(self) -> list[dict[str, Any]]:
        """Per document: its task, id, the point, and every image's bits and hashes."""
        return [{"task": task, "doc_id": doc_id, "point": str(self.point),
                 "bits": sum(r.bits for r in found),
                 "pixels": sum(r.width * r.height for r in found),
                 "images": [r.to_json() for r in found]}
                for (task, doc_id), found in self.records.items()]


def _is_callback(value: Any) -> bool:
    """A task callable in a request's arguments (not a class, not data)."""
    return callable(value) and not isinstance(value, type)


class IcmChat(IcmModel):
    """``icm`` as lmms-eval resolves it by default (its chat slot)."""

    is_simple = False


class IcmSimple(IcmModel):
    """``icm`` under ``--force_simple``."""

    is_simple = True
