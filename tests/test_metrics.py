"""Controller events, the end-of-session summary, and logs that never carry what was said."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from livekit.agents import Agent, RunContext, function_tool

from livekit_filler import FillerController, FillerEvent, FillerSettings, fillers
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    make_session,
)

SECRET = "my card number is 4242"
PHRASE = "Bear with me a second."


class SlowAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="x")

    @function_tool
    @fillers(PHRASE, delay=0.2, interval=5.0, max_count=1)
    async def check(self, context: RunContext[Any]) -> str:
        """Check."""
        await asyncio.sleep(0.5)  # returns while the filler (about 0.7 s) still plays
        return "done checking"


async def test_events_and_summary_describe_what_was_played_and_cut(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events: list[FillerEvent] = []
    llm = FakeLLM(
        {
            SECRET: FakeResponse(tool_calls=(FakeToolCall("check"),)),
            "done checking": FakeResponse(text="All done."),
        }
    )
    caplog.set_level(logging.DEBUG)
    async with make_session(llm=llm, tts=FakeTTS(ttfb=0.05, seconds_per_char=0.03)) as session:
        TimelineRecorder.install(session)  # real-time audio output, so the filler takes time
        controller = FillerController.attach(session, settings=FillerSettings.from_values())
        for name in ("filler_played", "filler_cut", "filler_skipped", "session_summary"):
            controller.on(name, events.append)
        await session.start(SlowAgent())
        await session.run(user_input=SECRET)
    kinds = [(e.type, e.reason) for e in events]
    assert kinds[:2] == [("filler_played", None), ("filler_cut", "answer")]
    summary = events[-1].summary
    assert events[-1].type == "session_summary" and summary is not None
    assert summary["tool_calls"] == 1 and summary["fillers_played"] == 1
    assert summary["fillers_cut"] == {"answer": 1}
    latency = summary["first_filler_latency_max"]
    # the first filler waited the 0.2 s dwell and sounded before the 0.5 s tool returned
    assert isinstance(latency, float) and 0.2 <= latency < 0.5
    dead_air = summary["tool_dead_air_max"]
    # the only silence in the tool's span is the wait for that first filler (it was cut,
    # not finished, when the answer came): no wall-clock bound, the two must agree
    assert isinstance(dead_air, float) and dead_air == pytest.approx(latency, abs=0.03)
    ours = [r for r in caplog.records if r.name.startswith("livekit_filler")]
    assert any(r.getMessage() == "filler session summary" for r in ours)
    for record in ours:
        assert SECRET not in record.getMessage() and PHRASE not in record.getMessage()
