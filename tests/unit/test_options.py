"""The option model: decorator > tool section > global settings, and combining parallel calls."""

from __future__ import annotations

import inspect
import json
import tempfile
from dataclasses import FrozenInstanceError, fields, replace
from pathlib import Path
from typing import Any

import pytest

from livekit_filler import FillerConfigError, FillerSettings, ToolRule, fillers
from livekit_filler.agent_phrases import tool_rule
from livekit_filler.options import (
    FillerOptions,
    Pool,
    combine,
    decorator_rule,
    fill,
    settings_texts,
    template_fields,
)

GLOBAL_TOML = """
delay = 1.0
interval = 4.0
max_count = 3
phrases = ["Global one."]
followup_phrases = ["Global follow-up."]
languages = {fr = {phrases = ["Un instant."]}}
"""


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # strings, numbers, booleans and lists read the same in TOML


def from_toml(text: str) -> FillerSettings:
    """Settings as users write them: a config file (no environment: conftest clears it)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "filler.toml"
        path.write_text(text)
        return FillerSettings.load(config_file=path)


GLOBAL = from_toml(GLOBAL_TOML)
GLOBAL_POOL = Pool(("Global one.",), ("Global follow-up.",))


def settings(**section: Any) -> FillerSettings:
    """The global settings with a ``[tools.tool]`` section, written in TOML."""
    lines = [f"{name} = {_toml(value)}" for name, value in section.items()]
    return from_toml(GLOBAL_TOML + "\n[tools.tool]\n" + "\n".join(lines) + "\n")


def decorated(*phrases: str, **options: Any) -> ToolRule:
    """The rule ``@fillers(...)`` leaves on a tool, as users decorate one."""

    @fillers(*phrases, **options)
    async def tool() -> str:
        return ""

    rule = tool_rule(tool)
    assert rule is not None
    return rule


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
        ("delay", 0.5, 0),
        ("interval", 2.0, 1.0),
        ("max_count", 1, 5),
        ("max_count", 2, 0),
        ("start_message", "Section start.", "Decorator start."),
        ("failure_message", "Section failure.", "Decorator failure."),
        ("start_message_before_run", True, False),
        ("clip", "keyboard_typing", "hold_music"),
        ("enabled", False, True),
        ("timing", "fixed", "adaptive"),
        ("grace", 0.3, 0),
        ("fast_below", 0.4, 0.2),
        ("slow_after", 2.0, 1.5),
        ("busy_message", "Section busy.", "Decorator busy."),
    ],
)
def test_each_option_is_decorator_over_section_over_global(
    name: str, section_value: object, decorator_value: object
) -> None:
    with_section = settings(**{name: section_value})
    assert getattr(FillerOptions.resolve(with_section, "tool"), name) == section_value
    assert getattr(FillerOptions.resolve(with_section, "other"), name) != section_value
    rule = decorated(**{name: decorator_value})
    assert getattr(FillerOptions.resolve(with_section, "tool", rule), name) == decorator_value
    # a decorator that leaves it out keeps the section's
    assert getattr(FillerOptions.resolve(with_section, "tool", decorated()), name) == section_value


def test_an_empty_busy_message_turns_it_off_at_every_level() -> None:
    assert FillerOptions.resolve(from_toml('busy_message = "Hold on."'), "tool").busy_message == (
        "Hold on."
    )
    assert FillerOptions.resolve(from_toml('busy_message = " "'), "tool").busy_message is None
    assert FillerOptions.resolve(settings(busy_message=""), "tool").busy_message is None
    rule = decorated(busy_message="")
    assert FillerOptions.resolve(settings(busy_message="Wait."), "tool", rule).busy_message is None


def test_a_decorator_false_beats_a_section_true_for_start_message_before_run() -> None:
    section = settings(start_message_before_run=True)
    rule = decorated(start_message_before_run=False)
    assert FillerOptions.resolve(section, "tool", rule).start_message_before_run is False
    assert FillerOptions.resolve(section, "tool", decorated()).start_message_before_run is True


def test_the_decorator_takes_every_option_a_section_takes() -> None:
    parameters = inspect.signature(fillers).parameters
    assert set(ToolRule.model_fields) - {"phrases"} <= set(parameters)
    assert parameters["phrases"].kind is inspect.Parameter.VAR_POSITIONAL


def test_decorator_pools_and_languages_beat_the_section() -> None:
    section = settings(phrases=["Section."], followup_phrases=["Section again."])
    rule = decorated(
        "Mine.",
        followup_phrases=["Mine again."],
        languages={"es": {"phrases": ["Un momento."], "followup_phrases": ["Casi."]}},
    )
    options = FillerOptions.resolve(section, "tool", rule)
    assert options.pool == Pool(("Mine.",), ("Mine again.",))
    assert options.pool_for("es-MX") == Pool(("Un momento.",), ("Casi.",))
    assert options.pool_for("fr") == Pool(("Mine.",), ("Mine again.",))


def test_own_phrases_replace_every_pool_and_the_clip() -> None:
    section = settings(clip="keyboard_typing", followup_phrases=["Section follow-up."])
    assert FillerOptions.resolve(section, "tool").clip == "keyboard_typing"
    assert FillerOptions.resolve(section, "tool").pool.followups == ("Section follow-up.",)
    options = FillerOptions.resolve(section, "tool", decorated("Mine."))
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
        busy_message="Second busy.",
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
    assert combined.busy_message == "Second busy."
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
        "busy_message",
        "finish_within",
        "enabled",
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
        ({"timing": "sometimes"}, (), "timing"),
        ({"grace": -0.1}, (), "grace"),
        ({"enabled": 0}, (), "enabled"),
        ({"clip": ""}, (), "clip"),
        ({"followup_phrases": [" "]}, (), "followup_phrases"),
        ({"languages": {"": {"phrases": ["x"]}}}, (), "languages"),
        ({"fast_below": 2.0, "slow_after": 1.0}, (), ""),
    ],
)
def test_decorator_rule_names_the_bad_option_and_its_value(
    kwargs: dict[str, Any], phrases: tuple[object, ...], option: str
) -> None:
    with pytest.raises(FillerConfigError, match=rf"fillers\(\): {option}"):
        decorator_rule(phrases, **kwargs)
    with pytest.raises(FillerConfigError, match=rf"fillers\(\): {option}"):
        fillers(*phrases, **kwargs)  # type: ignore[arg-type]


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


def test_options_and_pools_are_frozen_and_default_like_the_settings() -> None:
    minimal = FillerOptions(delay=1.0, interval=4.0, max_count=3, pool=GLOBAL_POOL)
    with pytest.raises(FrozenInstanceError):
        minimal.delay = 2.0  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        GLOBAL_POOL.phrases = ()  # type: ignore[misc]
    # the dataclass's own defaults are what default settings resolve to
    resolved = FillerOptions.resolve(from_toml(GLOBAL_TOML), "tool")
    for name in ("allow_interruptions", "start_message_before_run", "enabled", "on_answer"):
        assert getattr(minimal, name) == getattr(resolved, name), name
    assert minimal.allow_interruptions is True and minimal.enabled is True
    assert minimal.start_message_before_run is False


def test_parallel_calls_with_the_same_language_share_both_pools() -> None:
    first = FillerOptions(
        delay=1.0, interval=4.0, max_count=1, pool=Pool(("A",)), languages={"fr": Pool(("Un",))}
    )
    second = replace(first, languages={"fr": Pool(("Deux",), ("Encore",))})
    assert combine([first, second]).languages == {"fr": Pool(("Un", "Deux"), ("Encore",))}


def test_a_bad_decorator_option_names_no_documentation_url() -> None:
    with pytest.raises(FillerConfigError) as raised:
        fillers(delay=-1.0)
    assert "delay = -1.0" in str(raised.value) and "http" not in str(raised.value)
