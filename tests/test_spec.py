"""The one spec grammar: every kind of name cuts the same way (icm.spec)."""

from __future__ import annotations

import pytest

from icm.errors import IcmError
from icm.spec import Part, Spec, parse_part, parse_spec, split_parts, split_qualifier


def test_a_head_ends_at_its_first_at_sign_and_keeps_its_model_case():
    assert parse_spec("Clip:ViT-B-32@openai", "machine", parts=()) == Spec(
        Part("clip:ViT-B-32"), (), "openai")
    assert parse_spec("HAZE@0.5", "degradation", parts=()) == Spec(Part("haze"), (), "0.5")
    assert parse_spec("haze@", "degradation").qualifier == ""
    assert parse_spec("haze", "degradation").qualifier is None


def test_an_argument_keeps_its_at_signs_and_a_trailing_level_is_found_by_its_pattern():
    spec = parse_spec("jpeg+prompt=a cat@ViT-B-32@openai+fit=classify@q40", "tool",
                      trailing=lambda tail: tail == "q40")
    assert spec.head == Part("jpeg") and spec.qualifier == "q40"
    assert spec.parts == (Part("prompt", "a cat@ViT-B-32@openai"), Part("fit", "classify"))
    unmatched = parse_spec("jpeg+fit=clip:x@openai", "tool", trailing=lambda tail: False)
    assert unmatched.qualifier is None and unmatched.parts[0].argument == "clip:x@openai"
    provider = parse_spec("sensitivity=detect:nanodet@int8", "importance")
    assert provider.head == Part("sensitivity", "detect:nanodet@int8") and not provider.qualifier


def test_named_parts_leave_plus_signs_and_tildes_in_paths_alone():
    assert split_parts("m+adapter=/x/a+b.st", ("adapter",)) == ["m", "adapter=/x/a+b.st"]
    assert split_parts("m+adapter=a+adapter=b", ("adapter",)) == ["m", "adapter=a",
                                                                  "adapter=b"]
    assert split_parts("a+b+c") == ["a", "b", "c"]
    spec = parse_spec("classify:lite0@int8+adapter=~/a+b.st", "machine", parts=("adapter",),
                      strengths=False)
    assert spec == Spec(Part("classify:lite0"), (Part("adapter", "~/a+b.st"),), "int8")


def test_parts_take_strengths_and_refuse_nonsense_in_one_line():
    assert parse_part("Saliency~6", "tool") == Part("saliency", None, 6.0)
    assert str(parse_part("sensitivity=detect:nanodet~4", "tool")) == (
        "sensitivity=detect:nanodet~4")
    for bad, message in [("saliency~x", "not a number"), ("saliency~-1", ">= 0"),
                         ("fit=", "empty argument")]:
        with pytest.raises(IcmError, match=message) as caught:
            parse_part(bad, "tool")
        assert "\n" not in str(caught.value) and bad in str(caught.value)


def test_a_prompt_splits_at_its_first_at_sign():
    assert split_qualifier(" a red car @ViT-B-32@openai") == ("a red car", "ViT-B-32@openai")
    assert split_qualifier("a red car") == ("a red car", "")


def test_every_kind_reads_through_the_one_parser():
    """Points, machines, degradations and providers agree on the grammar's shared pieces."""
    from icm.degrade.base import DegradationRecord
    from icm.importance.registry import parse_provider
    from icm.machines import parse_machine
    from icm.pipeline.point import parse_point

    assert str(parse_machine("Classify:efficientnet-lite0@int8")) == (
        "classify:efficientnet-lite0@int8")
    assert str(parse_machine("classify")) == "classify:efficientnet-lite0"
    assert parse_provider("Sensitivity=detect:nanodet") == ("sensitivity", "detect:nanodet")
    assert str(DegradationRecord.parse("Haze@0.5")) == "haze@0.5"
    assert str(parse_point("HEVC+Saliency~6@QP37")) == "hevc+saliency~6@qp37"
