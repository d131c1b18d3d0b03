"""The forum thread's front desk, with livekit-filler: a real LiveKit worker.

The thread's ``FrontDeskAgent.get_programs`` looked something up, started a filler with
``asyncio.create_task(session.say(...))`` and awaited the ``CollectAgeGender`` AgentTask,
which raised "cannot schedule new speech, the speech scheduling is draining/pausing" or the
"circular wait" error. Here the tool carries ``@fillers(...)`` and nothing else: its body is
the lookup and a plain ``await CollectAgeGender(...)``.

Run it (see examples/README.md)::

    python examples/worker.py console --text   # local, needs OPENAI_API_KEY and PortAudio
    python examples/worker.py dev              # needs LIVEKIT_URL/API_KEY/API_SECRET too
    python examples/worker.py start            # production (JSON logs)

Filler settings come from ``FillerSettings.load()``: ``LIVEKIT_FILLER_*`` variables and
``config/filler.toml`` relative to the working directory (or ``LIVEKIT_FILLER_CONFIG_FILE``).
``book_trial_class`` is a booking the caller cannot interrupt: speak while it runs and the
agent says its ``busy_message`` once. A filler for a slow answer (no tool, a slow LLM) is off
by default; turn it on with ``slow_answer`` in ``config/filler.toml`` (commented there) or
``LIVEKIT_FILLER_SLOW_ANSWER__ENABLED=true``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from dotenv import load_dotenv
from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    AgentTask,
    JobContext,
    JobProcess,
    RunContext,
    cli,
    function_tool,
    llm,
)
from livekit.plugins import openai, silero

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.errors import FillerConfigError

logger = logging.getLogger("filler-worker")

load_dotenv()

Gender = Literal["male", "female", "other"]

FRONT_DESK_INSTRUCTIONS = (
    "You are a customer service agent for a gaming club; you tell customers about our "
    "programs. Use the `get_programs` tool to find the programs for the customer, and "
    "`book_trial_class` to book a free trial class in a program. "
    "Keep answers short and plain: they are spoken, so no lists, markdown or emojis."
)
COLLECT_AGE_GENDER_INSTRUCTIONS = (
    "You collect the age and gender of the child currently being discussed."
)
BOOKING_FILLERS = ("Booking your trial class now.",)
PROGRAM_FILLERS = (
    "Let me look up our programs.",
    "One moment while I check the program list.",
)

VAD_KEY = "vad"
SETTINGS_KEY = "filler_settings"


# -- the program catalogue -------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """One club program and the ages it takes, inclusive."""

    name: str
    min_age: int
    max_age: int


ProgramLookup = Callable[[], Awaitable[Sequence[Program]]]
"""Fetches the program catalogue; the worker's stands in for a slow backend call."""

CATALOGUE = (
    Program("Giants", 5, 8),
    Program("Hustlers", 6, 10),
    Program("Avengers", 7, 12),
    Program("Incredibles", 9, 14),
    Program("Marvels", 11, 16),
    Program("Star Wars", 13, 18),
)


async def book_trial(program: str) -> str:
    """Book a trial class after a payment-like delay of four seconds; return its reference."""
    await asyncio.sleep(4.0)
    return f"TRIAL-{abs(hash(program)) % 10000:04d}"


async def lookup_programs() -> Sequence[Program]:
    """Return the program catalogue after a backend-like delay of two seconds."""
    await asyncio.sleep(2.0)
    return CATALOGUE


# -- the thread's agents, with livekit-filler ------------------------------------------------


@dataclass(frozen=True)
class ChildProfile:
    """What ``CollectAgeGender`` found out.

    Attributes:
        status: ``"completed"`` with ``age`` and ``gender`` set, or ``"cancelled"``.
        age: The child's age in years.
        gender: The child's gender.
        cancellation_reason: Why the task was cancelled.
    """

    status: Literal["completed", "cancelled"]
    age: int | None = None
    gender: Gender | None = None
    cancellation_reason: str | None = None


class CollectAgeGender(AgentTask[ChildProfile]):
    """The thread's sub-agent: it speaks on entry and completes from one of its tools."""

    def __init__(
        self,
        *,
        chat_ctx: llm.ChatContext | None = None,
        age: int | None = None,
        gender: Gender | None = None,
    ) -> None:
        """Create the task.

        Args:
            chat_ctx: The conversation so far, so details already given are not asked again.
            age: The child's age, if already known.
            gender: The child's gender, if already known.
        """
        known_age = f"Age: {age}" if age is not None else "Age not provided"
        known_gender = f"Gender: {gender}" if gender is not None else "Gender not provided"
        super().__init__(
            instructions=(
                f"{COLLECT_AGE_GENDER_INSTRUCTIONS}\n"
                "Ask only for what is missing: the age (an integer) and the gender "
                "(male, female or other). Call `record_child_profile` as soon as both are "
                "known, explicitly or by inference. If the user refuses, call `cancel_task`.\n"
                f"Already known: {known_age}; {known_gender}."
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
        logger.debug("child profile recorded", extra={"age": age, "gender": gender})
        self.complete(ChildProfile(status="completed", age=age, gender=gender))

    @function_tool
    async def cancel_task(self, reason: str) -> None:
        """Call this when the user will not give the child's age or gender.

        Args:
            reason: Why the details cannot be collected.
        """
        logger.debug("child profile cancelled", extra={"reason": reason})
        self.complete(ChildProfile(status="cancelled", cancellation_reason=reason))


class FrontDeskAgent(Agent):
    """The thread's front desk: tells customers which programs suit their child."""

    def __init__(self, *, lookup: ProgramLookup = lookup_programs) -> None:
        """Create the agent.

        Args:
            lookup: Fetches the program catalogue (tests pass a fake one).
        """
        super().__init__(instructions=FRONT_DESK_INSTRUCTIONS)
        self._lookup = lookup

    @function_tool
    @fillers(*PROGRAM_FILLERS)
    async def get_programs(self) -> str:
        """Use this tool when the user is asking for programs."""
        catalogue = await self._lookup()
        profile = await CollectAgeGender(chat_ctx=self.chat_ctx)
        if profile.status == "cancelled" or profile.age is None:
            return (
                "The child's details could not be collected: "
                f"{profile.cancellation_reason or 'no reason given'}. "
                "All programs: " + ", ".join(p.name for p in catalogue)
            )
        suitable = [p.name for p in catalogue if p.min_age <= profile.age <= p.max_age]
        if not suitable:
            return f"We have no program for a {profile.age} year old."
        return f"Programs for a {profile.age} year old {profile.gender}: " + ", ".join(suitable)

    @function_tool
    @fillers(*BOOKING_FILLERS)
    async def book_trial_class(self, context: RunContext[None], program: str) -> str:
        """Use this tool to book a free trial class in one of our programs.

        Args:
            program: The program's name.
        """
        # a booking must not be cut half-way: LiveKit lets it run while the caller talks,
        # and they hear the busy message once (busy_message in the config; a
        # [tools.book_trial_class] section may give this tool its own)
        context.disallow_interruptions()
        reference = await book_trial(program)
        return f"Trial class in {program} booked, reference {reference}."


# -- the worker ------------------------------------------------------------------------------


def prewarm(proc: JobProcess) -> None:
    """Load what every job of this process shares, once: the filler settings, the filler
    audio cache and the VAD.

    LiveKit runs each job in a fresh process from a pool of idle ones that ran this, so the
    filler audio an earlier call rendered (or ``livekit-filler render`` baked into the image)
    is opened here, before any job: a call replays it with no TTS request.

    Raises:
        FillerConfigError: The filler configuration is invalid: the process fails as it
            starts, not at a tool's first call.
    """
    settings = FillerSettings.load()
    proc.userdata[SETTINGS_KEY] = settings
    sounds = FillerController.prewarm(settings)  # lists the disk cache; sounds load on use
    logger.debug("filler audio cache opened", extra={"sounds": sounds})
    proc.userdata[VAD_KEY] = silero.VAD.load()


server = AgentServer(setup_fnc=prewarm)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    """Serve one room: build the models, attach the filler controller, start the agent."""
    ctx.log_context_fields = {"room": ctx.room.name}
    # built here, not at import: the OpenAI clients raise without OPENAI_API_KEY
    session: AgentSession[None] = AgentSession(
        vad=ctx.proc.userdata[VAD_KEY],
        stt=openai.STT(),
        llm=openai.LLM(model="gpt-4o-mini"),
        tts=openai.TTS(),
    )
    FillerController.attach(session, settings=ctx.proc.userdata[SETTINGS_KEY])
    await session.start(agent=FrontDeskAgent(), room=ctx.room)


if __name__ == "__main__":
    # prewarm() runs in the job processes, where an exception is logged but leaves the
    # worker running with no usable process: check the configuration before starting it
    try:
        FillerSettings.load()
    except FillerConfigError as exc:
        raise SystemExit(f"filler-worker: {exc}") from None
    cli.run_app(server)
