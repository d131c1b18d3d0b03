"""The forum thread's front desk on a speech-to-speech model, with livekit-filler.

The same agents as ``worker.py`` (``FrontDeskAgent.get_programs`` looks something up slowly,
then awaits the ``CollectAgeGender`` AgentTask), but the session runs on OpenAI's realtime
model: no STT, no LLM, no TTS. Fillers need a voice of their own, so the controller gets a
filler voice: an OpenAI TTS with the realtime model's voice name (the two share names), used
only to render filler phrases. The fillers never reach the model's conversation.

Run it (see examples/README.md)::

    python examples/realtime_worker.py console   # local audio, needs OPENAI_API_KEY and PortAudio
    python examples/realtime_worker.py dev       # needs LIVEKIT_URL/API_KEY/API_SECRET too

Filler settings come from ``FillerSettings.load()``, as for ``worker.py``; the filler voice
could come from there too (``voice = {provider = "openai", voice = "alloy"}``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from dotenv import load_dotenv
from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    AgentTask,
    JobContext,
    JobProcess,
    cli,
    function_tool,
    llm,
)
from livekit.plugins import openai

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.errors import FillerConfigError

logger = logging.getLogger("filler-realtime-worker")

load_dotenv()

VOICE = "alloy"
"""The realtime model's voice, and the filler voice's: one speaker, not two."""
FILLER_VOICE_MODEL = "gpt-4o-mini-tts"
SETTINGS_KEY = "filler_settings"

FRONT_DESK_INSTRUCTIONS = (
    "You are a customer service agent for a gaming club; you tell customers about our "
    "programs. Use the `get_programs` tool to find the programs for the customer. "
    "Keep answers short and plain."
)
COLLECT_AGE_GENDER_INSTRUCTIONS = (
    "You collect the age and gender of the child currently being discussed."
)
PROGRAM_FILLERS = (
    "Let me look up our programs.",
    "One moment while I check the program list.",
)
CATALOGUE: dict[str, tuple[int, int]] = {
    "Giants": (5, 8),
    "Hustlers": (6, 10),
    "Avengers": (7, 12),
    "Incredibles": (9, 14),
    "Marvels": (11, 16),
}

Gender = Literal["male", "female", "other"]
ProgramLookup = Callable[[], Awaitable[dict[str, tuple[int, int]]]]


async def lookup_programs() -> dict[str, tuple[int, int]]:
    """Return the program catalogue (name: ages, inclusive) after a backend-like delay."""
    await asyncio.sleep(2.0)
    return CATALOGUE


class CollectAgeGender(AgentTask[tuple[int, Gender] | None]):
    """The thread's sub-agent: speaks on entry, completes with (age, gender) or None."""

    def __init__(self, *, chat_ctx: llm.ChatContext | None = None) -> None:
        """Create the task, seeing the conversation so far."""
        super().__init__(
            instructions=(
                f"{COLLECT_AGE_GENDER_INSTRUCTIONS} Ask only for what is missing, then call "
                "`record_child_profile`; if the user refuses, call `cancel_task`."
            ),
            chat_ctx=chat_ctx if chat_ctx is not None else llm.ChatContext.empty(),
        )

    async def on_enter(self) -> None:
        """Confirm what is known or ask for what is missing."""
        await self.session.generate_reply()

    @function_tool
    async def record_child_profile(self, age: int, gender: Gender) -> None:
        """Call this when you have the child's age and gender.

        Args:
            age: The child's age in years.
            gender: The child's gender.
        """
        self.complete((age, gender))

    @function_tool
    async def cancel_task(self, reason: str) -> None:
        """Call this when the user will not give the child's age or gender.

        Args:
            reason: Why the details cannot be collected.
        """
        logger.debug("child profile cancelled", extra={"reason": reason})
        self.complete(None)


class FrontDeskAgent(Agent):
    """The thread's front desk: which programs suit the caller's child."""

    def __init__(self, *, lookup: ProgramLookup = lookup_programs) -> None:
        """Create the agent (tests pass a fake ``lookup``)."""
        super().__init__(instructions=FRONT_DESK_INSTRUCTIONS)
        self._lookup = lookup

    @function_tool
    @fillers(*PROGRAM_FILLERS)
    async def get_programs(self) -> str:
        """Use this tool when the user is asking for programs."""
        catalogue = await self._lookup()
        profile = await CollectAgeGender(chat_ctx=self.chat_ctx)
        if profile is None:
            return "All programs: " + ", ".join(catalogue)
        age, gender = profile
        suitable: Sequence[str] = [n for n, (lo, hi) in catalogue.items() if lo <= age <= hi]
        if not suitable:
            return f"We have no program for a {age} year old."
        return f"Programs for a {age} year old {gender}: " + ", ".join(suitable)


def prewarm(proc: JobProcess) -> None:
    """Load the filler settings once per process (an invalid one fails here, at start)."""
    proc.userdata[SETTINGS_KEY] = FillerSettings.load()


server = AgentServer(setup_fnc=prewarm)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    """Serve one room: a realtime model, a filler voice matching it, the front desk."""
    ctx.log_context_fields = {"room": ctx.room.name}
    # built here, not at import: the OpenAI clients raise without OPENAI_API_KEY
    session: AgentSession[None] = AgentSession(llm=openai.realtime.RealtimeModel(voice=VOICE))
    FillerController.attach(
        session,
        settings=ctx.proc.userdata[SETTINGS_KEY],
        tts=openai.TTS(model=FILLER_VOICE_MODEL, voice=VOICE),
    )
    await session.start(agent=FrontDeskAgent(), room=ctx.room)


if __name__ == "__main__":
    try:
        FillerSettings.load()
    except FillerConfigError as exc:
        raise SystemExit(f"filler-realtime-worker: {exc}") from None
    cli.run_app(server)
