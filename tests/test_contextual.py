"""A fast LLM may phrase the first filler, under a hard budget; past it the canned phrase plays."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit.agents import Agent, RunContext, function_tool
from livekit.agents.llm import ChatMessage

from livekit_filler import ContextualFillers, FillerController, FillerSettings, fillers
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    make_session,
)

CANNED = "One moment please."
WRITTEN = "Checking the Giants schedule for you."


class ClubAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="club")

    @function_tool
    @fillers(delay=0.4, max_count=1)
    async def get_schedule(self, club: str, context: RunContext[Any]) -> str:
        """Get a club's schedule."""
        await asyncio.sleep(1.2)
        return "Mondays"


async def _first_filler(writer_ttft: float, budget: float) -> tuple[str, FakeLLM, FakeLLM]:
    session_llm = FakeLLM(
        {
            "schedule?": FakeResponse(
                tool_calls=(FakeToolCall("get_schedule", {"club": "Giants"}),)
            ),
            "Mondays": FakeResponse(text="They play on Mondays."),
        }
    )
    writer = FakeLLM(default=FakeResponse(text=WRITTEN), ttft=writer_ttft)
    async with make_session(
        llm=session_llm, tts=FakeTTS(ttfb=0.05, seconds_per_char=0.01)
    ) as session:
        rec = TimelineRecorder.install(session)
        controller = FillerController.attach(
            session, settings=FillerSettings.from_values(phrases=[CANNED])
        )
        controller.use_contextual(ContextualFillers(writer, budget=budget))
        await session.start(ClubAgent())
        await session.run(user_input="schedule?")
        fillers_played = [u.text for u in rec.utterances if u.kind == "filler"]
    assert len(fillers_played) == 1
    return fillers_played[0], writer, session_llm


async def test_llm_phrase_within_budget_is_the_first_filler() -> None:
    text, writer, session_llm = await _first_filler(writer_ttft=0.05, budget=0.3)
    assert text == WRITTEN
    last = writer.calls[0].items[-1]
    assert isinstance(last, ChatMessage)
    prompt = last.text_content or ""
    assert "get_schedule" in prompt and "Giants" in prompt
    seen = [
        i.text_content for ctx in session_llm.calls for i in ctx.items if isinstance(i, ChatMessage)
    ]
    assert WRITTEN not in seen


async def test_llm_over_budget_falls_back_to_the_canned_phrase_on_time() -> None:
    # the phrase would be ready (0.25 s + render) before the 0.4 s dwell ends: only the
    # budget keeps it out
    text, writer, _ = await _first_filler(writer_ttft=0.25, budget=0.1)
    assert text == CANNED
    assert len(writer.calls) == 1


def test_bad_budget_and_llm_are_rejected() -> None:
    with pytest.raises(ValueError, match="budget"):
        ContextualFillers(FakeLLM(), budget=0)
    with pytest.raises(TypeError, match="livekit LLM"):
        ContextualFillers("gpt-4o-mini")  # type: ignore[arg-type]
