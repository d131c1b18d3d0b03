"""Per-tool rules without code: the same fillers from a decorator, a config file or env vars."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import Agent, RunContext, function_tool
from livekit.agents.llm import ToolError

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    Utterance,
    make_session,
)

PHRASE = "Let me look up the programs."
START = "Checking the program list now."
FAILURE = "Sorry, the program list is not available."
TOOL_SECONDS = 1.2


class PlainAgent(Agent):
    def __init__(self, *, fail: bool = False) -> None:
        super().__init__(instructions="front desk")
        self._fail = fail

    @function_tool
    async def get_programs(self, context: RunContext[Any]) -> str:
        """List the programs."""
        await asyncio.sleep(TOOL_SECONDS)
        if self._fail:
            raise ToolError("backend down")
        return "Giants, Hustlers"


class DecoratedAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="front desk")

    @function_tool
    @fillers(PHRASE, delay=0.3, interval=0.4, max_count=2)
    async def get_programs(self, context: RunContext[Any]) -> str:
        """List the programs."""
        await asyncio.sleep(TOOL_SECONDS)
        return "Giants, Hustlers"


def _llm() -> FakeLLM:
    return FakeLLM(
        {
            "programs?": FakeResponse(tool_calls=(FakeToolCall("get_programs"),)),
            "Giants, Hustlers": FakeResponse(text="We have Giants and Hustlers."),
        },
        default=FakeResponse(text="Okay."),
    )


async def _fillers_of(agent: Agent, settings: FillerSettings) -> list[str]:
    return [u.text for u in await _filler_utterances(agent, settings)]


async def _filler_utterances(agent: Agent, settings: FillerSettings) -> list[Utterance]:
    """The fillers heard, with start times relative to the user's question."""
    async with make_session(llm=_llm(), tts=FakeTTS(ttfb=0.05, seconds_per_char=0.01)) as session:
        rec = TimelineRecorder.install(session)
        FillerController.attach(session, settings=settings)
        await session.start(agent)
        t0 = rec.now()
        await session.run(user_input="programs?")
        fillers = [u for u in rec.utterances if u.kind == "filler"]
        return [replace(u, start=u.start - t0, end=u.end - t0) for u in fillers]


TOML = f"""
timing = "fixed"

[tools.get_programs]
phrases = ["{PHRASE}"]
delay = 0.3
interval = 0.4
max_count = 2
"""


async def test_decorator_config_file_and_env_vars_give_the_same_fillers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "filler.toml"
    config.write_text(TOML)
    # fixed timing: the second and third run must not start early on what the first learned
    runs = [await _filler_utterances(DecoratedAgent(), FillerSettings.from_values(timing="fixed"))]
    runs.append(await _filler_utterances(PlainAgent(), FillerSettings.load(config_file=config)))
    monkeypatch.setenv("LIVEKIT_FILLER_TOOLS__GET_PROGRAMS__PHRASES", f'["{PHRASE}"]')
    monkeypatch.setenv("LIVEKIT_FILLER_TOOLS__GET_PROGRAMS__DELAY", "0.3")
    monkeypatch.setenv("LIVEKIT_FILLER_TOOLS__GET_PROGRAMS__INTERVAL", "0.4")
    monkeypatch.setenv("LIVEKIT_FILLER_TOOLS__GET_PROGRAMS__MAX_COUNT", "2")
    monkeypatch.setenv("LIVEKIT_FILLER_TIMING", "fixed")
    runs.append(await _filler_utterances(PlainAgent(), FillerSettings.load()))
    for first, second in runs:  # decorator, file, env: two fillers each
        assert (first.text, second.text) == (PHRASE, PHRASE)
        # the options took effect: the first filler waited `delay`, the second `interval`
        assert first.start >= 0.3
        assert second.start - first.end >= 0.4 - 0.02


async def test_unconfigured_undecorated_tool_gets_no_filler() -> None:
    assert await _fillers_of(PlainAgent(), FillerSettings.from_values()) == []


async def test_decorator_beats_the_config_rule_for_the_same_tool() -> None:
    settings = FillerSettings.from_values(
        tools={"get_programs": {"phrases": ["From the config."], "delay": 0.3, "max_count": 2}}
    )
    texts = await _fillers_of(DecoratedAgent(), settings)
    assert texts and set(texts) == {PHRASE}


async def test_start_message_plays_as_the_tool_starts_and_failure_message_when_it_raises() -> None:
    settings = FillerSettings.from_values(
        tools={
            "get_programs": {
                "start_message": START,
                "failure_message": FAILURE,
                "max_count": 0,
            }
        }
    )
    async with make_session(llm=_llm(), tts=FakeTTS(ttfb=0.05, seconds_per_char=0.01)) as session:
        rec = TimelineRecorder.install(session)
        FillerController.attach(session, settings=settings)
        await session.start(PlainAgent(fail=True))
        await session.run(user_input="programs?")
        await asyncio.sleep(0.3)
        spoken = [(u.text, u.kind) for u in rec.utterances]
        history = [i.text_content for i in session.history.items if hasattr(i, "text_content")]
    assert spoken[0] == (START, "filler")
    assert (FAILURE, "filler") in spoken
    assert spoken.index((FAILURE, "filler")) > 0
    assert START not in history and FAILURE not in history


async def test_config_section_for_a_tool_no_agent_has_warns_at_agent_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = FillerSettings.from_values(tools={"get_progrmas": {"delay": 0.5}})
    async with make_session(llm=_llm(), tts=FakeTTS()) as session:
        FillerController.attach(session, settings=settings)
        with caplog.at_level(logging.WARNING, logger="livekit_filler"):
            await session.start(PlainAgent())
    warnings = [r for r in caplog.records if "no agent defines" in r.getMessage()]
    assert [getattr(r, "tool", None) for r in warnings] == ["get_progrmas"]


@pytest.mark.allow_error_logs  # the one documented ERROR: fillers disabled by a bad config
async def test_bad_config_found_by_an_implicit_attach_disables_fillers_not_the_tool(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_DELAY", "-1")
    async with make_session(llm=_llm(), tts=FakeTTS(ttfb=0.05, seconds_per_char=0.01)) as session:
        rec = TimelineRecorder.install(session)
        await session.start(DecoratedAgent())  # no controller attached: the tool attaches one
        await session.run(user_input="programs?")
        spoken = [(u.text, u.kind) for u in rec.utterances]
    assert spoken == [("We have Giants and Hustlers.", "speech")]
    assert FillerController.of(session) is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["fillers disabled: invalid configuration"]
    assert "LIVEKIT_FILLER_DELAY" in str(getattr(errors[0], "error", ""))
