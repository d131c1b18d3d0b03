"""The option model: decorator > tool section > global settings, and combining parallel calls."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import pytest

from livekit_filler import FillerConfigError, FillerSettings, ToolRule
from livekit_filler.options import (
    FillerOptions,
    Pool,
    combine,
    decorator_rule,
    fill,
    settings_texts,
    template_fields,
)

GLOBAL = FillerSettings.from_values(
    delay=1.0,
    interval=4.0,
    max_count=3,
    phrases=["Global one."],
    followup_phrases=["Global follow-up."],
    languages={"fr": {"phrases": ["Un instant."]}},
)


def settings(**section: Any) -> FillerSettings:
    return GLOBAL.model_copy(update={"tools": {"tool": ToolRule(**section)}})


def test_global_settings_apply_when_neither_decorator_nor_section_says_otherwise() -> None:
    options = FillerOptions.resolve(GLOBAL, "tool")
    assert (options.delay, options.interval, options.max_count) == (1.0, 4.0, 3)
    assert options.pool == Pool(("Global one.",), ("Global follow-up.",))
    assert options.pool_for("fr-CA") == Pool(("Un instant.",))
    assert options.start_message is None and options.failure_message is None
    assert options.start_message_before_run is False


@pytest.mark.parametrize(
    ("name", "section_value", "decorator_value"),
    [
        ("delay", 0.5, 0.2),
        ("interval", 2.0, 1.0),
        ("max_count", 1, 5),
        ("start_message", "Section start.", "Decorator start."),
        ("failure_message", "Section failure.", "Decorator failure."),
        ("start_message_before_run", True, False),
    ],
)
def test_each_option_is_decorator_over_section_over_global(
    name: str, section_value: object, decorator_value: object
) -> None:
    with_section = settings(**{name: section_value})
    assert getattr(FillerOptions.resolve(with_section, "tool"), name) == section_value
    assert getattr(FillerOptions.resolve(with_section, "other"), name) != section_value
    rule = ToolRule(**{name: decorator_value})
    assert getattr(FillerOptions.resolve(with_section, "tool", rule), name) == decorator_value


def test_a_decorator_false_beats_a_section_true_for_start_message_before_run() -> None:
    section = settings(start_message_before_run=True)
    rule = ToolRule(start_message_before_run=False)
    assert FillerOptions.resolve(section, "tool", rule).start_message_before_run is False
    assert FillerOptions.resolve(section, "tool", ToolRule()).start_message_before_run is True


def test_own_phrases_replace_every_pool_and_the_clip() -> None:
    section = settings(clip="keyboard_typing", followup_phrases=["Section follow-up."])
    assert FillerOptions.resolve(section, "tool").clip == "keyboard_typing"
    assert FillerOptions.resolve(section, "tool").pool.followups == ("Section follow-up.",)
    options = FillerOptions.resolve(section, "tool", ToolRule(phrases=["Mine."]))
    assert options.pool == Pool(("Mine.",))
    assert options.languages == {} and options.clip is None


def test_section_phrases_bring_their_own_follow_ups_and_languages() -> None:
    section = settings(phrases=["Section."], languages={"es": {"phrases": ["Un momento."]}})
    options = FillerOptions.resolve(section, "tool")
    assert options.pool == Pool(("Section.",))
    assert options.pool_for("fr") == Pool(("Section.",))  # global languages dropped
    assert options.pool_for("ES") == Pool(("Un momento.",))


def test_combine_keeps_every_field() -> None:
    first = FillerOptions(delay=1.0, interval=4.0, max_count=1, pool=Pool(("A",), ("A2",)))
    second = FillerOptions(
        delay=0.5,
        interval=6.0,
        max_count=3,
        pool=Pool(("B", "A"), ("B2",)),
        languages={"fr": Pool(("Fr B",))},
        clip="hold_music",
        start_message="Second start.",
        start_message_before_run=True,
        failure_message="Second failure.",
        timing="adaptive",
        grace=0.1,
        fast_below=0.4,
        slow_after=2.0,
    )
    combined = combine([first, second])
    # fixed timing when any call asks for it; the eagerest thresholds
    assert combined.timing == "fixed"
    assert (combined.grace, combined.fast_below, combined.slow_after) == (0.1, 0.4, 1.0)
    assert combine([second, replace(first, timing="adaptive")]).timing == "adaptive"
    assert (combined.delay, combined.interval, combined.max_count) == (0.5, 4.0, 3)
    assert combined.pool == Pool(("A", "B"), ("A2", "B2"))
    assert combined.languages == {"fr": Pool(("Fr B",))}
    assert combined.clip == "hold_music"
    assert combined.start_message == "Second start."
    assert combined.start_message_before_run is True
    assert combined.failure_message == "Second failure."
    # every field of the model is either checked above or shared settings
    assert {f.name for f in fields(FillerOptions)} == {
        "delay",
        "interval",
        "max_count",
        "pool",
        "on_answer",
        "allow_interruptions",
        "languages",
        "clip",
        "start_message",
        "start_message_before_run",
        "failure_message",
        "timing",
        "grace",
        "fast_below",
        "slow_after",
        "finish_within",
    }


def test_combine_of_one_is_itself_and_of_none_is_an_error() -> None:
    only = FillerOptions(delay=1.0, interval=4.0, max_count=1, pool=Pool(("A",)))
    assert combine([only]) is only
    assert combine([only, replace(only, failure_message="F")]).failure_message == "F"
    with pytest.raises(ValueError, match="at least one"):
        combine([])


@pytest.mark.parametrize(
    ("kwargs", "phrases", "option"),
    [
        ({"delay": -1}, (), "delay"),
        ({"delay": True}, (), "delay"),
        ({"delay": float("nan")}, (), "delay"),
        ({"interval": 0}, (), "interval"),
        ({"max_count": 1.5}, (), "max_count"),
        ({"max_count": "2"}, (), "max_count"),
        ({"start_message": " "}, (), "start_message"),
        ({}, ("",), "phrases"),
        ({}, (3,), "phrases"),
    ],
)
def test_decorator_rule_names_the_bad_option_and_its_value(
    kwargs: dict[str, Any], phrases: tuple[object, ...], option: str
) -> None:
    with pytest.raises(FillerConfigError, match=rf"fillers\(\): {option} = "):
        decorator_rule(phrases, **kwargs)


def test_decorator_rule_leaves_unset_options_to_the_layers_below() -> None:
    assert decorator_rule(()) == ToolRule()
    assert decorator_rule(("Hi.",), delay=0) == ToolRule(phrases=["Hi."], delay=0.0)


def test_templates_fill_from_arguments_and_report_missing_fields() -> None:
    assert template_fields("Checking {club} for {who.name}") == {"club", "who"}
    assert fill("Checking {club}", {"club": "Giants"}) == "Checking Giants"
    assert fill("Checking {club}", {}) is None
    assert fill("Plain.", {}) == "Plain."


def test_settings_texts_lists_fixed_texts_once_and_skips_templates() -> None:
    texts = settings_texts(
        settings(phrases=["Checking {club}.", "Global one."], failure_message="Sorry.")
    )
    assert texts == ["Global one.", "Global follow-up.", "Un instant.", "Sorry."]


def test_options_texts_lists_first_fillers_before_follow_ups() -> None:
    options = FillerOptions.resolve(settings(start_message="Starting."), "tool")
    assert options.texts() == [
        "Global one.",
        "Un instant.",
        "Global follow-up.",
        "Starting.",
    ]
