"""Tests for livekit_filler.settings: sources, precedence, validation and error messages.

``tests/conftest.py`` removes every ``LIVEKIT_FILLER_*`` variable and runs each test in its
own ``tmp_path``; the ``isolated`` fixture below asserts that, so these tests never see the
developer's environment or the repository's ``config/filler.toml``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import BuiltinAudioClip

from livekit_filler.errors import FillerConfigError
from livekit_filler.settings import (
    DEFAULT_FOLLOWUP_PHRASES,
    DEFAULT_PHRASES,
    FillerSettings,
    LanguagePhrases,
    ToolRule,
)
from livekit_filler.settings_fields import resolve_clip

SHIPPED_CONFIG = Path(__file__).resolve().parents[1] / "config" / "filler.toml"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path) -> None:
    assert Path.cwd() == tmp_path
    assert not [name for name in os.environ if name.upper().startswith("LIVEKIT_FILLER_")]


def write_default_config(text: str) -> Path:
    path = Path("config/filler.toml")
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_error(**kwargs: Any) -> str:
    with pytest.raises(FillerConfigError) as info:
        FillerSettings.load(**kwargs)
    return str(info.value)


# --- defaults and precedence ------------------------------------------------------------


def test_defaults() -> None:
    settings = FillerSettings.load()
    assert settings.enabled is True
    assert settings.delay == 1.0
    assert settings.interval == 4.0
    assert settings.max_count == 3
    assert settings.phrases == list(DEFAULT_PHRASES)
    assert settings.followup_phrases == list(DEFAULT_FOLLOWUP_PHRASES)
    assert settings.languages == {}
    assert settings.on_answer == "cut"
    assert settings.allow_interruptions is True
    assert settings.prerender is True
    assert settings.cache_dir is None
    assert settings.clip is None
    assert settings.tools == {}
    assert FillerSettings() == settings


def test_settings_are_frozen() -> None:
    settings = FillerSettings()
    with pytest.raises(ValueError, match="frozen"):
        settings.delay = 2.0  # type: ignore[misc]


def test_precedence_init_over_env_over_file_over_defaults_deep_merged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_default_config(
        """
        delay = 2.0
        interval = 5.0
        max_count = 4
        [tools.get_programs]
        delay = 0.5
        max_count = 1
        """
    )
    monkeypatch.setenv("LIVEKIT_FILLER_INTERVAL", "6")
    monkeypatch.setenv("LIVEKIT_FILLER_MAX_COUNT", "5")
    monkeypatch.setenv("LIVEKIT_FILLER_TOOLS__GET_PROGRAMS__INTERVAL", "7")

    for settings in (
        FillerSettings.load(max_count=6, tools={"get_programs": {"max_count": 2}}),
        FillerSettings(max_count=6, tools={"get_programs": {"max_count": 2}}),
    ):
        assert settings.delay == 2.0  # file
        assert settings.interval == 6.0  # env beats file
        assert settings.max_count == 6  # argument beats env
        assert settings.on_answer == "cut"  # default
        assert settings.tools["get_programs"] == ToolRule(delay=0.5, interval=7.0, max_count=2)


def test_config_file_env_var_names_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    write_default_config("delay = 2.0\n")
    Path("other.toml").write_text("delay = 3.0\n", encoding="utf-8")
    monkeypatch.setenv("LIVEKIT_FILLER_CONFIG_FILE", "other.toml")
    assert FillerSettings.load().delay == 3.0
    assert FillerSettings().delay == 3.0


def test_config_file_argument_beats_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("env.toml").write_text("delay = 3.0\n", encoding="utf-8")
    Path("arg.toml").write_text("delay = 4.0\n", encoding="utf-8")
    monkeypatch.setenv("LIVEKIT_FILLER_CONFIG_FILE", "env.toml")
    assert FillerSettings.load(config_file="arg.toml").delay == 4.0
    assert FillerSettings.load(config_file=Path("arg.toml"), delay=5).delay == 5.0


def test_missing_default_config_file_is_skipped() -> None:
    assert not Path("config/filler.toml").exists()
    assert FillerSettings.load().delay == 1.0


def test_env_lists_and_nested_values_parse_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_PHRASES", '["Hold on."]')
    monkeypatch.setenv("LIVEKIT_FILLER_LANGUAGES__FR__PHRASES", '["Un instant."]')
    monkeypatch.setenv("LIVEKIT_FILLER_ON_ANSWER", "finish")
    settings = FillerSettings.load()
    assert settings.phrases == ["Hold on."]
    assert settings.languages == {"fr": LanguagePhrases(phrases=["Un instant."])}
    assert settings.on_answer == "finish"


def test_config_file_env_var_is_not_a_setting(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    Path("x.toml").write_text("", encoding="utf-8")
    monkeypatch.setenv("LIVEKIT_FILLER_CONFIG_FILE", "x.toml")
    with caplog.at_level(logging.WARNING, logger="livekit_filler.settings"):
        settings = FillerSettings.load()
    assert "config_file" not in settings.model_dump()
    assert caplog.records == []


# --- the shipped example file -------------------------------------------------------------


def test_shipped_config_loads_with_documented_values() -> None:
    settings = FillerSettings.load(config_file=SHIPPED_CONFIG)
    assert settings == FillerSettings(
        languages={
            "fr": {
                "phrases": ["Un instant, je vérifie.", "Une seconde, je regarde."],
                "followup_phrases": ["Je cherche toujours, merci de patienter."],
            }
        },
        tools={
            "get_programs": {
                "enabled": True,
                "delay": 0.5,
                "interval": 5.0,
                "max_count": 2,
                "phrases": ["Let me look up the programs."],
                "followup_phrases": ["Still going through the programs."],
                "start_message": "Let me check the program list.",
                "start_message_before_run": False,
                "failure_message": "Sorry, I couldn't get the programs right now.",
                "languages": {"fr": {"phrases": ["Je regarde les programmes."]}},
            }
        },
    )
    # The global values in the example are the defaults.
    defaults = FillerSettings()
    for name in FillerSettings.model_fields.keys() - {"languages", "tools"}:
        assert getattr(settings, name) == getattr(defaults, name), name


def test_shipped_config_mentions_every_key() -> None:
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    global_part, _, tool_part = text.partition("[tools.get_programs]")
    for name in FillerSettings.model_fields:
        if name in ("languages", "tools"):
            assert f"[{name}." in text, name
        else:
            assert re.search(rf"^(# )?{name} = ", global_part, re.MULTILINE), name
    for name in ToolRule.model_fields:
        if name == "languages":
            assert "[tools.get_programs.languages." in tool_part
        else:
            assert re.search(rf"^(# )?{name} = ", tool_part, re.MULTILINE), name


# --- tool sections and clips ---------------------------------------------------------------


def test_tool_sections_load_as_tool_rules() -> None:
    settings = FillerSettings.load(tools={"get_programs": {"delay": 0.2, "enabled": False}})
    assert settings.tools["get_programs"] == ToolRule(delay=0.2, enabled=False)
    assert "other_tool" not in settings.tools


def test_clip_accepts_builtin_names_in_any_case_and_existing_files() -> None:
    Path("beep.WAV").write_bytes(b"")
    assert FillerSettings.load(clip="keyboard_typing").clip == "keyboard_typing"
    assert FillerSettings.load(clip="Hold_Music").clip == "Hold_Music"
    assert FillerSettings.load(clip="beep.WAV").clip == "beep.WAV"
    assert resolve_clip("keyboard_TYPING") is BuiltinAudioClip.KEYBOARD_TYPING
    assert resolve_clip("beep.WAV") == "beep.WAV"


def test_tool_rule_clip_is_validated_too() -> None:
    assert FillerSettings.load(tools={"t": {"clip": "city_ambience"}}).tools["t"].clip
    message = load_error(tools={"t": {"clip": "missing.ogg"}})
    assert "tools.t.clip = 'missing.ogg' (from argument): clip file does not exist" in message


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"delay": "soon"}, "delay = 'soon' (from argument): Input should be a valid number"),
        ({"delay": -0.5}, "delay = -0.5 (from argument): Input should be greater than or equal"),
        ({"delay": float("nan")}, "delay = nan (from argument): Input should be a finite number"),
        ({"interval": 0}, "interval = 0 (from argument): Input should be greater than 0"),
        ({"max_count": -1}, "max_count = -1 (from argument): Input should be greater than or"),
        ({"max_count": 1.5}, "max_count = 1.5 (from argument): Input should be a valid integer"),
        ({"enabled": "maybe"}, "enabled = 'maybe' (from argument): Input should be a valid bool"),
        ({"phrases": []}, "phrases = [] (from argument): List should have at least 1 item"),
        ({"phrases": ["ok", "  "]}, "phrases[1] = '  ' (from argument): phrases must not be blank"),
        ({"followup_phrases": [""]}, "followup_phrases[0] = '' (from argument): phrases must not"),
        ({"on_answer": "wait"}, "on_answer = 'wait' (from argument): Input should be 'cut' or"),
        ({"clip": "beep.txt"}, "clip = 'beep.txt' (from argument): clip must be a built-in"),
        ({"clip": "nope.mp3"}, "clip = 'nope.mp3' (from argument): clip file does not exist"),
        (
            {"tools": {"get-programs": {}}},
            "tools.get-programs = 'get-programs' (from argument): invalid key: tool names must",
        ),
        (
            {"languages": {"french!": {"phrases": ["x"]}}},
            "languages.french! = 'french!' (from argument): invalid key: language codes",
        ),
        (
            {"languages": {"fr": {"followup_phrases": ["x"]}}},
            "languages.fr.phrases = ",
        ),
        (
            {"tools": {"t": {"interval": -1}}},
            "tools.t.interval = -1 (from argument): Input should be greater than 0",
        ),
        (
            {"tools": {"t": {"phrases": []}}},
            "tools.t.phrases = [] (from argument): List should have at least 1 item",
        ),
        (
            {"tools": {"t": {"start_message": " "}}},
            "tools.t.start_message = ' ' (from argument): phrases must not be blank",
        ),
        (
            {"tools": {"t": {"dealy": 1}}},
            "tools.t.dealy = 1 (from argument): unknown setting",
        ),
        ({"config_file_path": "x"}, "config_file_path = 'x' (from argument): unknown setting"),
    ],
)
def test_bad_arguments_name_field_value_and_source(
    overrides: dict[str, Any], expected: str
) -> None:
    message = load_error(**overrides)
    assert message.startswith("invalid livekit-filler configuration: ")
    assert expected in message


def test_constructor_and_load_raise_the_same_error() -> None:
    with pytest.raises(FillerConfigError) as from_init:
        FillerSettings(delay=-1)
    assert str(from_init.value) == load_error(delay=-1)
    assert isinstance(from_init.value, ValueError)
    assert from_init.value.__cause__ is None


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_DELAY", "-1")
    assert load_error() == (
        "invalid livekit-filler configuration: delay = '-1' (from LIVEKIT_FILLER_DELAY):"
        " Input should be greater than or equal to 0"
    )


def test_bad_nested_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_TOOLS__GET_PROGRAMS__MAX_COUNT", "lots")
    message = load_error()
    assert (
        "tools.get_programs.max_count = 'lots' (from LIVEKIT_FILLER_TOOLS__GET_PROGRAMS__MAX_COUNT)"
        in message
    )


def test_bad_value_inside_env_json_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_PHRASES", '["fine", " "]')
    assert "phrases[1] = ' ' (from LIVEKIT_FILLER_PHRASES): phrases must not be blank" in (
        load_error()
    )


def test_env_list_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_PHRASES", "a,b")
    message = load_error()
    assert "phrases = 'a,b' (from LIVEKIT_FILLER_PHRASES): not valid JSON" in message
    assert "must be JSON" in message


def test_nested_env_list_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_TOOLS__X__PHRASES", "a,b")
    message = load_error()
    assert "tools.x.phrases = 'a,b' (from LIVEKIT_FILLER_TOOLS__X__PHRASES)" in message
    assert "must be JSON" in message


def test_bad_value_in_file_names_file_and_key() -> None:
    write_default_config("[tools.get_programs]\ndelay = -2\n")
    assert load_error() == (
        "invalid livekit-filler configuration: tools.get_programs.delay = -2"
        " (from config/filler.toml: tools.get_programs.delay):"
        " Input should be greater than or equal to 0"
    )


def test_unknown_key_in_file_names_file_and_key() -> None:
    write_default_config("[tools.get_programs]\ndelayy = 2\n")
    message = load_error()
    assert "(from config/filler.toml: tools.get_programs.delayy): unknown setting" in message


def test_unknown_top_level_key_in_named_file(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("custom.toml").write_text("intervall = 2\n", encoding="utf-8")
    monkeypatch.setenv("LIVEKIT_FILLER_CONFIG_FILE", "custom.toml")
    assert "intervall = 2 (from custom.toml: intervall): unknown setting" in load_error()


def test_env_beats_file_so_the_error_names_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    write_default_config("delay = -3\n")
    monkeypatch.setenv("LIVEKIT_FILLER_DELAY", "-4")
    message = load_error()
    assert "delay = '-4' (from LIVEKIT_FILLER_DELAY)" in message
    assert "config/filler.toml" not in message


def test_malformed_toml_names_file_and_line() -> None:
    write_default_config('delay = 1.0\nphrases = ["a" "b"]\n')
    message = load_error()
    assert message.startswith("invalid livekit-filler configuration: config/filler.toml, line 2")
    assert "malformed TOML" in message


def test_malformed_toml_at_end_of_file_names_the_last_line() -> None:
    Path("cut.toml").write_text("delay = 1.0\nphrases = [\n", encoding="utf-8")
    message = load_error(config_file="cut.toml")
    assert "cut.toml, line 2 (end of file): malformed TOML" in message


def test_config_file_that_is_not_utf8() -> None:
    Path("latin1.toml").write_bytes('phrases = ["caf\xe9"]\n'.encode("latin-1"))
    assert "latin1.toml: not UTF-8 text" in load_error(config_file="latin1.toml")


def test_missing_named_config_file_argument() -> None:
    assert load_error(config_file="nope.toml") == (
        "invalid livekit-filler configuration: config file 'nope.toml'"
        " (from argument config_file) does not exist"
    )


def test_missing_named_config_file_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_CONFIG_FILE", "gone/filler.toml")
    message = load_error()
    assert "'gone/filler.toml' (from LIVEKIT_FILLER_CONFIG_FILE) does not exist" in message
    with pytest.raises(FillerConfigError, match="does not exist"):
        FillerSettings()


def test_several_problems_are_listed_one_per_line(monkeypatch: pytest.MonkeyPatch) -> None:
    write_default_config("interval = 0\n")
    monkeypatch.setenv("LIVEKIT_FILLER_DELAY", "-1")
    with pytest.raises(FillerConfigError) as info:
        FillerSettings.load(max_count=-1)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid livekit-filler configuration (3 problems):"
    assert sorted(lines[1:]) == sorted(
        [
            "  - delay = '-1' (from LIVEKIT_FILLER_DELAY): Input should be greater than or equal to 0",
            "  - interval = 0 (from config/filler.toml: interval): Input should be greater than 0",
            "  - max_count = -1 (from argument): Input should be greater than or equal to 0",
        ]
    )
    assert len(info.value.problems) == 3


# --- unknown environment variables ------------------------------------------------------------


def test_unknown_env_var_is_logged_and_ignored(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_DELAYY", "2")
    monkeypatch.setenv("LIVEKIT_FILLER_DELAY__X", "2")
    monkeypatch.setenv("LIVEKIT_FILLER_INTERVAL", "2")
    monkeypatch.setenv("LIVEKIT_FILLER_TOOLS__X__DELAY", "2")
    with caplog.at_level(logging.WARNING, logger="livekit_filler.settings"):
        settings = FillerSettings.load()
    assert settings.delay == 1.0
    warned = sorted(
        record.getMessage()
        for record in caplog.records
        if record.name == "livekit_filler.settings" and record.levelno == logging.WARNING
    )
    assert len(warned) == 2
    assert any("LIVEKIT_FILLER_DELAYY:" in message for message in warned)
    assert any("LIVEKIT_FILLER_DELAY__X:" in message for message in warned)


def test_unknown_nested_env_key_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_TOOLS__X__DELAYY", "2")
    assert (
        "tools.x.delayy = 2 (from LIVEKIT_FILLER_TOOLS__X__DELAYY): unknown setting" in load_error()
    )
