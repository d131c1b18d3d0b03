"""What LiveKit does with a running tool when the caller starts speaking over a realtime
model with server-side turn detection (issue 24, item 5; pins the README's sentence).

The model's ``input_speech_started`` interrupts the tool step's speech, and so the filler,
at once; the running tool is not cancelled: it runs to its end, with fillers or without.
Measured here on ``FakeRealtimeModel``, which emits the events LiveKit's openai realtime
plugin emits (the real plugin against a local server: issue 23).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from filler_harness import settle, wait_until
from livekit.agents import Agent, RunContext, function_tool, llm

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.testing import (
    FakeRealtimeModel,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    format_timeline,
    make_session,
)

FILLER = "Barge-in check, one moment please while I look."
QUESTION = "Look it up, please."
TOOL_SECONDS = 1.5
SPEAKS_AT = 0.6
"""Seconds into the tool when the caller starts speaking (the filler plays then)."""


def script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.ChatMessage) and last.text_content == QUESTION:
        return FakeResponse(tool_calls=[FakeToolCall("slow_tool")], ttft=0.05)
    return None


class SlowAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")
        self.started_at: float | None = None
        self.ran: float | None = None
        self.cancelled = False

    async def _run(self) -> str:
        loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        try:
            await asyncio.sleep(TOOL_SECONDS)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.ran = loop.time() - self.started_at
        return "the result"


class FillerAgent(SlowAgent):
    @function_tool
    @fillers(FILLER)
    async def slow_tool(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        return await self._run()


class PlainAgent(SlowAgent):
    @function_tool
    async def slow_tool(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        return await self._run()


async def _caller_speaks_mid_tool(with_fillers: bool) -> tuple[SlowAgent, str, list[str]]:
    model = FakeRealtimeModel(script, default=None, turn_detection=True, seconds_per_char=0.01)
    cuts: list[str] = []
    async with make_session(llm=model, tts=None) as session:
        rec = TimelineRecorder.install(session, filler_texts=(FILLER,))
        if with_fillers:
            settings = FillerSettings.from_values(timing="fixed", delay=0.2, max_count=1)
            voice = FakeTTS(ttfb=0.02, seconds_per_char=0.03)  # the filler: 1.4 s
            controller = FillerController.attach(session, settings=settings, tts=voice)
            controller.on("filler_cut", lambda ev: cuts.append(ev.reason or ""))
        agent = FillerAgent() if with_fillers else PlainAgent()
        await session.start(agent)
        session.generate_reply(user_input=QUESTION)
        await wait_until(lambda: agent.started_at is not None, 3.0)
        assert agent.started_at is not None
        loop = asyncio.get_running_loop()
        await asyncio.sleep(agent.started_at + SPEAKS_AT - loop.time())
        await model.current.user_speaks("", duration=0.3)
        await wait_until(lambda: agent.ran is not None, 3.0)
        await settle(session, 0.1)
        timeline = format_timeline(rec.utterances)
    return agent, timeline, cuts


async def test_the_caller_speaking_stops_the_filler_but_not_the_running_tool() -> None:
    (plain, _, _), (filled, timeline, cuts) = await asyncio.gather(
        _caller_speaks_mid_tool(False), _caller_speaks_mid_tool(True)
    )
    # LiveKit lets the tool run its full time, filler or not
    for agent in (plain, filled):
        assert not agent.cancelled and agent.ran is not None, timeline
        assert agent.ran >= TOOL_SECONDS - 0.01, (agent.ran, timeline)
    # and the filler stopped at once
    assert cuts == ["user_speech"], (cuts, timeline)
    assert "(cut)" in timeline, timeline


def test_the_readme_says_what_livekit_does_with_the_running_tool() -> None:
    root = Path(__file__).parents[1]
    readme = " ".join((root / "README.md").read_text().split())
    guide = " ".join((root / "docs" / "guide.md").read_text().split())
    assert "LiveKit lets the running tool finish" in readme
    assert "LiveKit does not cancel the running tool then: it runs to its end" in guide
    for text in (readme, guide):
        assert "cancels the running tool then, filler or not" not in text
