"""The demo's rows beyond tools (issue 22): a slow answer, and a caller during a booking.

Three calls, each with no filler and with livekit-filler, on the testing kit with a
simulated caller (``UserSpeechSimulator``):

- ``slow_answer``: the caller asks; the LLM's first token comes 2.5 s later, no tool.
  livekit-filler with ``slow_answer = {enabled = true}`` says one phrase after 1.2 s.
- ``busy_sound``: a 3 s booking that cannot be interrupted; 0.8 s into it the caller makes
  a sound with no words ("hm?"); livekit-filler says ``busy_message`` once.
- ``still_there``: the same booking; the caller asks "Are you still there?". LiveKit answers
  the words itself (its LLM is told the booking is in progress): no acknowledgement.

``python -m devtools.beyond`` prints the table; ``python -m devtools.demo`` prints it after
its own.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from livekit.agents import Agent, RunContext, function_tool, llm
from livekit.agents.voice import SpeechCreatedEvent

from livekit_filler import FillerController, FillerSettings
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    UserSpeechSimulator,
    Utterance,
    format_timeline,
    make_session,
    overlaps,
)

Case = Literal["slow_answer", "busy_sound", "still_there"]
CASES: tuple[Case, ...] = ("slow_answer", "busy_sound", "still_there")

QUESTION = "What would you recommend for a beginner?"
REPLY = "I would start with the Giants program on Saturday mornings."
BOOK = "Please book a trial class in Giants."
BOOKED = "Trial class booked, reference 4242."
ANSWER = "Done, your trial class is booked."
STILL_THERE = "Are you still there?"
STILL_REPLY = "Yes, I am still booking your class."
SLOW_PHRASES = ("Hmm, let me think about that.",)
BUSY = "Sorry, just a few more seconds."
TTFB = 0.15
SPC = 0.05
SLOW_TTFT = 2.5
BOOKING_SECONDS = 3.0
SPEAK_AT = 0.8


@dataclass
class BeyondResult:
    """What one call sounded like (seconds on the recorder's clock)."""

    case: Case
    filler: bool
    utterances: list[Utterance]
    trigger: float
    """The end of the user's turn (slow_answer) or the caller stopping (the bookings)."""
    answer: float | None
    """Seconds from the trigger to the answer's first audio."""
    errors: list[str]
    in_history: int

    @property
    def fillers(self) -> list[Utterance]:
        return [u for u in self.utterances if u.kind == "filler"]

    @property
    def dead_air(self) -> float | None:
        """Silence from the trigger to the first agent sound after it."""
        after = [
            u.start for u in self.utterances if u.speaker == "agent" and u.start >= self.trigger
        ]
        return min(after) - self.trigger if after else None


class _Desk(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a front desk.")

    @function_tool
    async def book_trial_class(self, context: RunContext[Any]) -> str:
        """Book a trial class."""
        context.disallow_interruptions()  # a booking is not cut half-way
        body: Callable[[], Awaitable[str]] = context.session.userdata
        return await body()


def _script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.FunctionCallOutput):
        return FakeResponse(text=ANSWER)
    if isinstance(last, llm.ChatMessage) and last.role == "user":
        return {
            QUESTION: FakeResponse(text=REPLY, ttft=SLOW_TTFT),
            BOOK: FakeResponse(tool_calls=[FakeToolCall("book_trial_class")]),
            STILL_THERE: FakeResponse(text=STILL_REPLY),
        }.get(last.text_content or "")
    return None


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname} {record.name}: {record.getMessage()}")


async def run_case(case: Case, *, filler: bool) -> BeyondResult:
    """Run one call of ``case``, with or without livekit-filler."""
    user = UserSpeechSimulator()
    stopped: list[float] = []
    created: list[float] = []
    settings = FillerSettings.from_values(
        disk_cache=False,
        max_count=0,  # the booking's own fillers are not what these rows show
        busy_message=BUSY,
        slow_answer={"enabled": True, "after": 1.2, "phrases": list(SLOW_PHRASES)},
    )

    async def booking() -> str:
        await asyncio.sleep(SPEAK_AT)
        said = await user.say(STILL_THERE if case == "still_there" else "", duration=0.6)
        assert said.ended_at is not None
        stopped.append(said.ended_at)
        await asyncio.sleep(BOOKING_SECONDS - SPEAK_AT - 0.6)
        return BOOKED

    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        fake = FakeLLM(_script, default=None)
        tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
        async with make_session(
            llm=fake, tts=tts, userdata=booking, **user.session_kwargs()
        ) as session:
            rec = TimelineRecorder.install(session)
            user.install(session, timeline=rec)

            def on_created(ev: SpeechCreatedEvent) -> None:
                if ev.source == "generate_reply" and not created:
                    created.append(rec.now())

            session.on("speech_created", on_created)
            if filler:
                FillerController.attach(session, settings=settings)
            await session.start(_Desk())
            final = REPLY if case == "slow_answer" else ANSWER
            if case == "slow_answer":
                await user.say(QUESTION, duration=0.8)
            else:
                await session.run(user_input=BOOK)
            for _ in range(800):  # until the answer has played (at most 8 s)
                if any(u.text == final and u.end is not None for u in rec.utterances):
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            utterances = rec.utterances
            texts = {*SLOW_PHRASES, BUSY}
            in_history = sum(
                1
                for i in session.history.items
                if isinstance(i, llm.ChatMessage) and (i.text_content or "") in texts
            )
            t0 = rec.t0
    finally:
        logging.getLogger().removeHandler(errors)
    trigger = created[0] if case == "slow_answer" else stopped[0] - t0
    answers = [u.start for u in utterances if u.text == final]
    return BeyondResult(
        case=case,
        filler=filler,
        utterances=utterances,
        trigger=trigger,
        answer=answers[0] - trigger if answers else None,
        errors=errors.messages,
        in_history=in_history,
    )


async def run_beyond() -> list[BeyondResult]:
    """Every case with no filler and with livekit-filler, one call at a time."""
    return [await run_case(case, filler=f) for case in CASES for f in (False, True)]


def report(results: list[BeyondResult], *, timelines: bool = True) -> str:
    """Timelines, then one row per call."""
    lines: list[str] = []
    base = {r.case: r.answer for r in results if not r.filler}
    if timelines:
        for r in results:
            lines.append("")
            lines.append(f"== {r.case}: {'livekit-filler' if r.filler else 'no filler'}")
            lines.append(format_timeline(r.utterances))
    lines.append("")
    lines.append(
        "beyond tools: the trigger is the end of the caller's turn (slow_answer) or the caller"
        " stopping during the booking"
    )
    lines.append(
        f"{'case':<12} {'approach':<15} {'errors':>6} {'overlaps':>8} {'fillers':>7} "
        f"{'in history':>10} {'silence after trigger':>21} {'answer delay vs none':>20}"
    )
    for r in results:
        b = base.get(r.case)
        delay = (
            f"{(r.answer - b) * 1000:+.0f} ms" if r.answer is not None and b is not None else "n/a"
        )
        dead = r.dead_air
        lines.append(
            f"{r.case:<12} {'livekit_filler' if r.filler else 'none':<15} {len(r.errors):>6} "
            f"{len(overlaps(r.utterances, include_user=True)):>8} {len(r.fillers):>7} "
            f"{r.in_history:>10} {(f'{dead:.2f} s' if dead is not None else 'n/a'):>21} "
            f"{delay:>20}"
        )
    return "\n".join(lines)


def main() -> int:
    """Run the cases and print the report."""
    logging.basicConfig(level=logging.CRITICAL)
    sys.stdout.write(report(asyncio.run(run_beyond())) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
