"""The pre-render covers what an agent may say beyond its tools' fillers (issue 22).

When an agent becomes active, the slow-answer pool (with ``[slow_answer] enabled``) and each
tool's resolved ``busy_message`` (decorator > ``[tools.X]`` > global; ``""`` turns it off; any
function tool, decorated or not) are rendered with its phrases; templates never are. Counted
on the FakeTTS's own synthesis requests, on a real ``AgentSession``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from filler_harness import RESULT, wait_until
from livekit.agents import Agent, RunContext, function_tool

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.settings import DEFAULT_BUSY_MESSAGE
from livekit_filler.sound_cache import shared_cache
from livekit_filler.testing import FakeLLM, FakeTTS, TimelineRecorder, make_session

FILLER = "Checking the desk."
SLOW = ("Hmm, let me think about that.", "One second.")
SLOW_FR = "Un instant."
SLOW_TEMPLATE = "Thinking about {topic}."
BOOKING_BUSY = "Sorry, the booking takes a few more seconds."
SECTION_BUSY = "The payment is still going through."


class Desk(Agent):
    """A decorated tool with its own acknowledgement, one with none, a section's tool
    and a plain tool (which gets only the global acknowledgement)."""

    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")

    @function_tool
    @fillers(FILLER, busy_message=BOOKING_BUSY)
    async def book(self, context: RunContext[Any]) -> str:
        """Book something."""
        return RESULT

    @function_tool
    @fillers(FILLER, busy_message="")
    async def quiet(self, context: RunContext[Any]) -> str:
        """No acknowledgement."""
        return RESULT

    @function_tool
    async def pay(self, context: RunContext[Any]) -> str:
        """Its [tools.pay] section sets the acknowledgement."""
        return RESULT

    @function_tool
    async def plain(self, context: RunContext[Any]) -> str:
        """Neither decorated nor configured: no fillers, the global acknowledgement."""
        return RESULT


class NoTools(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")


def settings(*, slow: bool, busy: str = DEFAULT_BUSY_MESSAGE) -> FillerSettings:
    return FillerSettings.from_values(
        phrases=[FILLER],
        followup_phrases=[],
        busy_message=busy,
        tools={"pay": {"busy_message": SECTION_BUSY}},
        slow_answer={
            "enabled": slow,
            "phrases": [*SLOW, SLOW_TEMPLATE],
            "languages": {"fr": {"phrases": [SLOW_FR]}},
        },
        disk_cache=False,
    )


async def prerendered(agent: Agent, filler_settings: FillerSettings, expect: int) -> list[str]:
    """What the FakeTTS synthesized once ``agent`` became active (and nothing was said)."""
    shared_cache().clear()
    tts = FakeTTS(ttfb=0.01, seconds_per_char=0.001)
    try:
        async with make_session(llm=FakeLLM(), tts=tts) as session:
            TimelineRecorder.install(session)
            FillerController.attach(session, settings=filler_settings)
            await session.start(agent)
            await wait_until(lambda: len(tts.synthesized) >= expect, 5.0)
            await asyncio.sleep(0.3)  # and nothing more
        return list(tts.synthesized)
    finally:
        shared_cache().clear()


async def test_the_slow_answer_pool_and_every_busy_message_are_pre_rendered() -> None:
    expected = [FILLER, *SLOW, SLOW_FR, BOOKING_BUSY, SECTION_BUSY, DEFAULT_BUSY_MESSAGE]
    rendered = await prerendered(Desk(), settings(slow=True), len(expected))
    # each once, the tools' first words first, the acknowledgements last; no template
    assert rendered == expected, rendered


async def test_nothing_of_a_disabled_slow_answer_or_an_empty_busy_message_is_rendered() -> None:
    expected = [FILLER, BOOKING_BUSY, SECTION_BUSY]
    rendered = await prerendered(Desk(), settings(slow=False, busy=""), len(expected))
    assert rendered == expected, rendered


async def test_an_agent_without_tools_pre_renders_only_the_slow_answer_pool() -> None:
    rendered = await prerendered(NoTools(), settings(slow=True), 3)
    assert rendered == [*SLOW, SLOW_FR], rendered
    assert await prerendered(NoTools(), settings(slow=False), 0) == []
