"""The busy acknowledgement (issue 22): the caller speaks during a tool that cannot be
interrupted, stops, and the tool still runs: one ``busy_message``, once per call.

Randomized over seeds (the tool's length, when the caller speaks and for how long), each
paired with the same timings without fillers, on pipeline and realtime sessions; the caller
speaks after the tool's fillers, during its dwell, or over its filler (then the tool's next
filler would be due before the acknowledgement: the acknowledgement takes that slot).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Literal

import pytest
from filler_harness import (
    ANSWER,
    LLM_TTFT,
    RESULT,
    Run,
    ToolAgent,
    run_tool,
    script,
)
from livekit.agents import NOT_GIVEN, Agent, RunContext, function_tool, llm
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from livekit_filler import FillerController, FillerEvent, FillerSettings, fillers
from livekit_filler.busy import busy_message_for
from livekit_filler.testing import (
    FakeLLM,
    FakeRealtimeModel,
    FakeResponse,
    UserSpeechSimulator,
    overlaps,
)
from livekit_filler.tracing import ATTR_KIND, ATTR_TOOL

BUSY = "Sorry, just a few more seconds with the booking."
SEEDS = range(16)
MODELS = ["pipeline", "realtime"]
Model = Literal["pipeline", "realtime"]
When = Literal["after_fillers", "dwell", "filler"]


class BookingAgent(ToolAgent):
    """slow_tool is a booking: its step cannot be interrupted, so LiveKit lets it run."""

    uninterruptible = True

    def __init__(self, rec: Any, body: Any, other: Any = None) -> None:
        Agent.__init__(
            self,
            instructions="You are a test assistant.",
            allow_interruptions=False if self.uninterruptible else NOT_GIVEN,
        )
        self.rec = rec
        self._bodies = {"slow_tool": body, "other_tool": other or body}
        self.outcomes: dict[str, str] = {}

    @function_tool
    @fillers("Booking that for you.")
    async def slow_tool(self, context: RunContext[Any]) -> str:
        """Book something slowly."""
        return await self._run("slow_tool", context)

    @function_tool
    async def other_tool(self, context: RunContext[Any]) -> str:
        """Unused."""
        return await self._run("other_tool", context)


class ToolProtectedBookingAgent(BookingAgent):
    """The booking's tool protects itself (``context.disallow_interruptions()``): a realtime
    model that detects turns itself takes no agent that cannot be interrupted."""

    uninterruptible = False


def settings(**overrides: Any) -> FillerSettings:
    values: dict[str, Any] = {
        "timing": "fixed",
        "delay": 0.3,
        "max_count": 1,
        "busy_message": BUSY,
    }
    values.update(overrides)
    return FillerSettings.from_values(**values)


def racing_settings(rng: random.Random) -> FillerSettings:
    """Adaptive timing (the tool unknown: its first filler after ``delay``) whose next filler
    is due sooner after the caller stops (``grace``, ``interval``) than the acknowledgement
    (``busy.ACK_WAIT``)."""
    return settings(
        timing="adaptive",
        delay=0.8,
        grace=rng.uniform(0.05, 0.2),
        interval=rng.uniform(0.05, 0.2),
        max_count=3,
    )


async def booking(
    seed: int, *, with_fillers: bool, model: Model = "pipeline", when: When = "after_fillers"
) -> tuple[Run, tuple[float, float]]:
    """The caller makes a sound mid-booking (``when``: after the tool's only filler, during
    the dwell before its first, or over its first); returns the run and when they spoke."""
    rng = random.Random(seed)
    filler_settings = settings() if when == "after_fillers" else racing_settings(rng)
    user = UserSpeechSimulator()
    realtime = (
        FakeRealtimeModel(script, default=None, turn_detection=True, ttft=LLM_TTFT)
        if model == "realtime"
        else None
    )
    speak_at, noise = {
        "after_fillers": (rng.uniform(0.6, 1.2), rng.uniform(0.3, 0.6)),
        "dwell": (rng.uniform(0.3, 0.5), rng.uniform(0.5, 0.8)),  # stops after ``delay``
        "filler": (rng.uniform(0.9, 1.1), rng.uniform(0.3, 0.6)),  # cuts the first filler
    }[when]
    rest = rng.uniform(1.5, 2.5)
    spoke: list[tuple[float, float]] = []
    events: list[FillerEvent] = []

    async def body(context: RunContext[Any]) -> str:
        context.disallow_interruptions()
        rec = context.session.current_agent.rec  # type: ignore[attr-defined]
        await asyncio.sleep(speak_at)
        if realtime is None:
            utterance = await user.say("", duration=noise)  # a sound with no words
            assert utterance.started_at is not None and utterance.ended_at is not None
            spoke.append((utterance.started_at - rec.t0, utterance.ended_at - rec.t0))
        else:  # as the model's server-side turn detection hears it
            start = rec.now()
            await realtime.current.user_speaks("", duration=noise)
            spoke.append((start, rec.now()))
        await asyncio.sleep(rest)
        return RESULT

    def listen(controller: FillerController) -> None:
        controller.on("filler_played", events.append)

    run = await run_tool(
        body,
        settings=filler_settings if with_fillers else None,
        agent_class=BookingAgent if realtime is None else ToolProtectedBookingAgent,
        user=user if realtime is None else None,
        on_controller=listen,
        realtime=realtime,
    )
    if with_fillers:
        assert [e.kind for e in events if e.kind] in ([], ["busy"]), events
    return run, spoke[0]


def _problems(run: Run, spoke: tuple[float, float]) -> list[str]:
    problems = []
    acks = [u for u in run.fillers if u.text == BUSY]
    if len(acks) != 1:
        problems.append(f"{len(acks)} acknowledgements:\n{run.timeline}")
    else:
        late = acks[0].start - spoke[1]
        if not 0 <= late <= 0.8:
            problems.append(
                f"the acknowledgement came {late:.3f} s after the caller:\n{run.timeline}"
            )
        if acks[0].start >= run.marker("slow_tool_end"):
            problems.append(f"the acknowledgement came after the tool:\n{run.timeline}")
    if BUSY in run.history or BUSY in run.llm_texts:
        problems.append(f"the acknowledgement is in the history: {run.history}")
    bad = [
        (a, b) for a, b in overlaps(run.utterances, include_user=True) if BUSY in (a.text, b.text)
    ]
    if bad:
        problems.append(f"the acknowledgement overlaps {bad}:\n{run.timeline}")
    if ANSWER not in [u.text for u in run.utterances]:
        problems.append(f"no answer:\n{run.timeline}")
    return problems


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("when", ["after_fillers", "dwell", "filler"])
async def test_a_caller_speaking_during_an_uninterruptible_tool_is_acknowledged_once(
    model: Model, when: When
) -> None:
    """One acknowledgement in every seed, within 0.8 s after the caller stops, over nobody
    (nor under the tool's next filler, even one due sooner after the caller's stop); the
    answer at most 50 ms later than without fillers (p95)."""
    runs = await asyncio.gather(
        *(
            booking(seed, with_fillers=f, model=model, when=when)
            for seed in SEEDS
            for f in (True, False)
        )
    )
    failures: dict[int, list[str]] = {}
    extra: list[float] = []
    for seed, (filled, spoke), (plain, _) in zip(SEEDS, runs[::2], runs[1::2], strict=True):
        if problems := _problems(filled, spoke):
            failures[seed] = problems
        delay = filled.said(ANSWER).start - filled.marker("slow_tool_end")
        extra.append(delay - (plain.said(ANSWER).start - plain.marker("slow_tool_end")))
    assert not failures, failures
    extra.sort()
    assert extra[int(0.95 * (len(extra) - 1))] <= 0.05, extra


async def test_an_empty_busy_message_turns_the_acknowledgement_off() -> None:
    run, _ = await booking_with(settings(busy_message=""))
    assert BUSY not in [u.text for u in run.utterances], run.timeline


async def test_a_tool_section_overrides_the_busy_message() -> None:
    own = "Still booking, thanks for holding."
    run, spoke = await booking_with(settings(tools={"slow_tool": {"busy_message": own}}))
    acks = [u for u in run.fillers if u.text == own]
    assert len(acks) == 1 and 0 <= acks[0].start - spoke[1] <= 0.8, run.timeline


async def booking_with(filler_settings: FillerSettings) -> tuple[Run, tuple[float, float]]:
    user = UserSpeechSimulator()
    spoke: list[tuple[float, float]] = []

    async def body(context: RunContext[Any]) -> str:
        rec = context.session.current_agent.rec  # type: ignore[attr-defined]
        await asyncio.sleep(0.8)
        utterance = await user.say("", duration=0.4)
        assert utterance.started_at is not None and utterance.ended_at is not None
        spoke.append((utterance.started_at - rec.t0, utterance.ended_at - rec.t0))
        await asyncio.sleep(2.0)
        return RESULT

    run = await run_tool(body, settings=filler_settings, agent_class=BookingAgent, user=user)
    return run, spoke[0]


@pytest.mark.parametrize(
    ("tools", "message", "expected"),
    [
        ({}, "Hold on.", "Hold on."),
        ({}, "", None),
        ({}, "   ", None),
        ({"book": {"busy_message": "Booking."}}, "Hold on.", "Booking."),
        ({"book": {"busy_message": ""}}, "Hold on.", None),
        ({"book": {"delay": 1.0}}, "Hold on.", "Hold on."),
    ],
)
def test_busy_message_resolution(tools: dict[str, Any], message: str, expected: str | None) -> None:
    resolved = FillerSettings.from_values(tools=tools, busy_message=message)
    assert busy_message_for(resolved, "book") == expected


@pytest.mark.parametrize(
    ("own", "section", "expected"),
    [("Booking now.", "Booking.", "Booking now."), ("", "Booking.", None), (None, "B.", "B.")],
)
def test_the_decorators_busy_message_beats_the_section(
    own: str | None, section: str, expected: str | None
) -> None:
    resolved = FillerSettings.from_values(tools={"book": {"busy_message": section}})
    rule = fillers(busy_message=own)._rule
    assert busy_message_for(resolved, "book", rule) == expected


def test_the_busy_message_is_on_by_default() -> None:
    assert busy_message_for(FillerSettings.from_values(), "any_tool") == (
        "Sorry, just a few more seconds."
    )


@pytest.mark.parametrize("decorated", [True, False])
async def test_a_tool_that_disallows_interruptions_itself_is_acknowledged(decorated: bool) -> None:
    """The usual way to protect a booking: ``context.disallow_interruptions()`` in the tool
    of an otherwise interruptible agent; with ``@fillers`` or without."""
    user = UserSpeechSimulator()
    spoke: list[tuple[float, float]] = []

    async def body(context: RunContext[Any]) -> str:
        context.disallow_interruptions()
        rec = context.session.current_agent.rec  # type: ignore[attr-defined]
        await asyncio.sleep(0.7)
        utterance = await user.say("", duration=0.4)
        assert utterance.started_at is not None and utterance.ended_at is not None
        spoke.append((utterance.started_at - rec.t0, utterance.ended_at - rec.t0))
        await asyncio.sleep(2.0)
        return RESULT

    run = await run_tool(body, settings=settings(), decorated=decorated, user=user)
    assert not _problems(run, spoke[0]), run.timeline


async def test_an_interruptible_tool_gets_no_acknowledgement() -> None:
    """The caller speaks during a tool LiveKit could interrupt: nothing to acknowledge."""
    user = UserSpeechSimulator()

    async def body(context: RunContext[Any]) -> str:
        await asyncio.sleep(0.7)
        await user.say("", duration=0.4)
        await asyncio.sleep(1.5)
        return RESULT

    run = await run_tool(body, settings=settings(), user=user)
    assert BUSY not in [u.text for u in run.utterances], run.timeline


STILL_THERE = "Are you still there?"
STILL_BOOKING = "Yes, I am still booking it."


def _answers_the_caller(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.ChatMessage) and last.text_content == STILL_THERE:
        return FakeResponse(text=STILL_BOOKING)
    return script(chat_ctx)


async def test_words_get_livekits_own_reply_and_no_acknowledgement(
    exporter: InMemorySpanExporter,
) -> None:
    """The caller asks "are you still there?" during the booking: LiveKit answers the words
    itself (the LLM is told the tool is in progress); no acknowledgement talks over or
    before that reply."""
    user = UserSpeechSimulator()
    events: list[FillerEvent] = []

    async def body(context: RunContext[Any]) -> str:
        await asyncio.sleep(0.7)
        await user.say(STILL_THERE, duration=0.6)
        await asyncio.sleep(2.5)
        return RESULT

    def listen(controller: FillerController) -> None:
        controller.on("filler_skipped", events.append)

    run = await run_tool(
        body,
        settings=settings(),
        agent_class=BookingAgent,
        user=user,
        fake_llm=FakeLLM(_answers_the_caller, default=None, ttft=LLM_TTFT),
        on_controller=listen,
    )
    texts = [u.text for u in run.utterances]
    assert BUSY not in texts, run.timeline
    assert STILL_BOOKING in texts and ANSWER in texts, run.timeline
    assert [e.reason for e in events if e.kind == "busy"] == ["user_turn"], events
    spans = exporter.get_finished_spans()
    (skipped,) = [
        s
        for s in spans
        if s.name == "filler_skipped" and (s.attributes or {}).get(ATTR_KIND) == "busy"
    ]
    assert _under_tool(skipped, spans, "slow_tool"), skipped.parent


def _under_tool(span: ReadableSpan, spans: tuple[ReadableSpan, ...], tool: str) -> bool:
    """True when ``span``'s parent is LiveKit's ``function_tool`` span of ``tool``."""
    (parent,) = [
        s
        for s in spans
        if s.name == "function_tool" and (s.attributes or {}).get("lk.function_tool.name") == tool
    ]
    return span.parent is not None and span.parent.span_id == parent.context.span_id


@pytest.mark.parametrize("decorated", [True, False])
async def test_the_acknowledgement_is_a_span_of_its_kind_under_its_tool(
    exporter: InMemorySpanExporter, decorated: bool
) -> None:
    """The acknowledgement's ``filler`` span is a child of the tool's ``function_tool``
    span (like a tool filler's), whether or not the tool is decorated."""
    if decorated:
        run, _ = await booking_with(settings())
    else:
        user = UserSpeechSimulator()

        async def body(context: RunContext[Any]) -> str:
            context.disallow_interruptions()
            await asyncio.sleep(0.7)
            await user.say("", duration=0.4)
            await asyncio.sleep(2.0)
            return RESULT

        run = await run_tool(body, settings=settings(), decorated=False, user=user)
    assert BUSY in [u.text for u in run.fillers], run.timeline
    spans = exporter.get_finished_spans()
    acks = [
        s for s in spans if s.name == "filler" and (s.attributes or {}).get(ATTR_KIND) == "busy"
    ]
    assert len(acks) == 1, spans
    assert (acks[0].attributes or {}).get(ATTR_TOOL) == "slow_tool"
    assert _under_tool(acks[0], spans, "slow_tool"), acks[0].parent
