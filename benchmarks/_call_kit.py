"""The agent, TTS and script of one benchmark call (``one_call.py``), importable by name.

Kept apart from the ``one_call.py`` entry so the TTS class has the same module name
(``_call_kit``) in a call process and in ``livekit-filler render --module _call_kit --tts
_call_kit:make_tts``: the filler audio cache key includes the TTS class.
"""

from __future__ import annotations

import asyncio
from typing import Any

from livekit.agents import Agent, RunContext, function_tool, llm

from livekit_filler import fillers
from livekit_filler.testing import FakeResponse, FakeToolCall, FakeTTS

TTFB = 0.3
SECONDS_PER_CHAR = 0.01
GREETING = "Hello, thanks for calling the front desk."
QUESTION = "Which programs do you have for my son?"
ANSWER = "We have three programs for his age."
DESK_PHRASES = ("Let me look that up for you.", "One moment while I check the programs.")
BILLING_PHRASES = ("Let me pull up your invoice.",)
TOOL_SECONDS = 2.0


class LimitedTTS(FakeTTS):
    """A FakeTTS behind a provider limit of one request at a time (``stream()`` and
    ``synthesize()`` alike): a filler render in flight holds back the session's speech."""

    _slot: asyncio.Semaphore | None = None
    _slot_loop: asyncio.AbstractEventLoop | None = None

    async def _produce(self, text: str, emit: Any) -> None:
        loop = asyncio.get_running_loop()
        if LimitedTTS._slot is None or LimitedTTS._slot_loop is not loop:
            LimitedTTS._slot, LimitedTTS._slot_loop = asyncio.Semaphore(1), loop
        async with LimitedTTS._slot:
            await super()._produce(text, emit)


def make_tts() -> LimitedTTS:
    """The call's TTS (also what ``livekit-filler render --tts _call_kit:make_tts`` builds)."""
    return LimitedTTS(ttfb=TTFB, seconds_per_char=SECONDS_PER_CHAR)


class FrontDesk(Agent):
    """Greets the caller; its slow tool has fillers."""

    def __init__(self, probe: dict[str, float] | None = None) -> None:
        super().__init__(instructions="You are the front desk.")
        self.probe = probe if probe is not None else {}

    async def on_enter(self) -> None:
        self.session.say(GREETING)

    @function_tool
    @fillers(*DESK_PHRASES)
    async def get_programs(self, context: RunContext[Any]) -> str:
        """Look up the programs (slow)."""
        self.probe["tool_start"] = asyncio.get_running_loop().time()
        await asyncio.sleep(TOOL_SECONDS)
        return "Giants, Hustlers, Avengers"


class Billing(Agent):
    """Another agent of the worker; never active in the benchmark call."""

    def __init__(self) -> None:
        super().__init__(instructions="You handle billing.")

    @function_tool
    @fillers(*BILLING_PHRASES)
    async def find_invoice(self, context: RunContext[Any]) -> str:
        """Find an invoice."""
        return "invoice 42"


def script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.FunctionCallOutput):
        return FakeResponse(text=ANSWER)
    if isinstance(last, llm.ChatMessage) and last.role == "user":
        return FakeResponse(tool_calls=[FakeToolCall("get_programs")])
    return None
