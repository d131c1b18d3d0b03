"""The forum thread's two agents, runnable headless on the testing kit.

``club_info``: ``provide_club_information`` looks something up slowly, then the LLM answers.
``programs``: ``get_programs`` looks something up, then awaits the ``CollectAgeGender``
AgentTask, whose ``on_enter`` speaks; the parent answers after the task completes.

Each scenario runs in one of four modes: ``none`` (no filler), ``handmade`` (the thread's
``asyncio.create_task`` around ``session.say``), ``with_filler`` (LiveKit's
``RunContext.with_filler``) and ``livekit_filler`` (``@fillers``). The demo, the tests and
the benchmarks all run these, so every figure comes from the same agents.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from livekit.agents import Agent, AgentTask, RunContext, function_tool, llm

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    UserSpeechSimulator,
    Utterance,
    dead_air,
    first_after,
    make_session,
    overlaps,
)

logger = logging.getLogger("devtools.scenarios")

ScenarioName = Literal["club_info", "programs"]
Mode = Literal["none", "handmade", "with_filler", "livekit_filler"]
SCENARIOS: tuple[ScenarioName, ...] = ("club_info", "programs")
MODES: tuple[Mode, ...] = ("none", "handmade", "with_filler", "livekit_filler")

HANDMADE_FILLER = "Hmm, I am looking into the details, please wait for a second."
WITH_FILLER_PHRASE = "Just give me a moment while I look that up."
FILLER_PHRASES = ("One moment, let me check that.", "Let me look that up for you.")
FOLLOWUP_PHRASES = ("Still checking, thanks for waiting.",)

CLUB_QUESTION = "What is your refund policy?"
CLUB_RESULT = "Full refund within thirty days of purchase; store credit after that."
CLUB_ANSWER = "You can get a full refund within thirty days, and store credit after that."
PROGRAMS_QUESTION = "What programs do you have for my seven year old son?"
PROGRAMS_RESULT = "We have following programs: Giants, Hustlers, Avengers."
PROGRAMS_ANSWER = "For a seven year old boy we have Giants, Hustlers and Avengers."
TASK_GREETING = "Great, a seven year old boy. Let me note that down."
TASK_INSTRUCTIONS = "Collect the age and gender of the child currently being discussed."
PREAMBLE = "Sure, let me check."


@dataclass(frozen=True)
class UserNoise:
    """The caller makes a sound with no words (a cough, an "mm-hmm") during a run.

    It goes through LiveKit's real audio input, VAD and STT (see
    :class:`~livekit_filler.testing.UserSpeechSimulator`): ``user_state`` becomes
    ``speaking``, speech longer than the session's ``min_interruption_duration`` interrupts
    interruptible agent speech, and the STT finds no words, so no user turn is committed and
    the tool's answer still comes.

    Attributes:
        offset: Seconds after the tool starts (its ``tool_start`` marker).
        duration: Seconds of sound.
        label: Why it was placed there (e.g. ``"filler"``, ``"handoff"``); informational.
    """

    offset: float
    duration: float
    label: str = ""


@dataclass(frozen=True)
class Timings:
    """Every duration (seconds) one scenario run depends on.

    The fields after ``filler_interval`` are optional dimensions that :meth:`random` leaves
    at their defaults (no user sound, an instant sub-agent tool), so existing seeds keep
    their meaning; :mod:`devtools.fuzz` draws them too.
    """

    llm_ttft: float = 0.2
    task_llm_ttft: float = 0.2
    tts_ttfb: float = 0.1
    seconds_per_char: float = 0.03
    tool_duration: float = 1.8
    preamble: bool = False
    filler_delay: float = 0.5
    filler_interval: float = 0.6
    task_tool_duration: float = 0.0
    """Seconds the sub-agent's ``record_child_profile`` tool takes (``programs`` only)."""
    user_noise: tuple[UserNoise, ...] = ()
    """Sounds the caller makes, in order, each after the previous one has ended."""
    min_interruption_duration: float = 0.2
    """Seconds of user sound before interruptible agent speech is cut (with ``user_noise``)."""

    @classmethod
    def random(cls, seed: int) -> Timings:
        """Draw a timing set; the same seed always gives the same timings."""
        rng = random.Random(seed)
        return cls(
            llm_ttft=rng.uniform(0.05, 0.4),
            task_llm_ttft=rng.uniform(0.05, 0.4),
            tts_ttfb=rng.uniform(0.02, 0.3),
            seconds_per_char=rng.uniform(0.015, 0.035),
            tool_duration=rng.choice([rng.uniform(0.0, 0.5), rng.uniform(0.5, 2.5)]),
            preamble=rng.random() < 0.4,
            filler_delay=rng.uniform(0.2, 0.6),
            filler_interval=rng.uniform(0.3, 0.8),
        )


@dataclass
class ScenarioResult:
    """What one run played and what it cost."""

    scenario: ScenarioName
    mode: Mode
    timings: Timings
    utterances: list[Utterance]
    markers: dict[str, list[float]]
    errors: list[str] = field(default_factory=list)
    history_texts: list[str] = field(default_factory=list)
    llm_texts: list[str] = field(default_factory=list)

    @property
    def filler_texts(self) -> frozenset[str]:
        """Every text any mode uses as a filler."""
        return frozenset((HANDMADE_FILLER, WITH_FILLER_PHRASE, *FILLER_PHRASES, *FOLLOWUP_PHRASES))

    @property
    def fillers(self) -> list[Utterance]:
        """Filler utterances, in order."""
        return [u for u in self.utterances if u.kind == "filler"]

    @property
    def overlaps(self) -> list[tuple[Utterance, Utterance]]:
        """Agent audio overlapping other agent audio."""
        return overlaps(self.utterances)

    def marker(self, name: str) -> float | None:
        """First time a marker was set, if it was."""
        times = self.markers.get(name)
        return times[0] if times else None

    @property
    def answer(self) -> Utterance | None:
        """The speech the wait was for: the tool's reply, or the sub-agent's first speech."""
        if self.scenario == "club_info":
            t = self.marker("tool_end")
            return None if t is None else first_after(self.utterances, t, kind="speech")
        t = self.marker("task_start")
        # kind="speech": a parent filler still audible when the task took over is labelled
        # with the task's name (the recorder labels by the agent in charge at audio start)
        return (
            None
            if t is None
            else first_after(self.utterances, t, agent="CollectAgeGender", kind="speech")
        )

    @property
    def answer_latency(self) -> float | None:
        """Seconds from the answer being ready (tool return / task start) to its first audio."""
        answer = self.answer
        ready = self.marker("tool_end" if self.scenario == "club_info" else "task_start")
        return None if answer is None or ready is None else answer.start - ready

    @property
    def dead_air(self) -> float | None:
        """Silent seconds from the tool's start to the answer's first audio."""
        answer, start = self.answer, self.marker("tool_start")
        return (
            None
            if answer is None or start is None
            else dead_air(self.utterances, start, answer.start)
        )

    @property
    def fillers_in_history(self) -> list[str]:
        """Filler texts found in ``session.history`` or in any chat context the LLM saw."""
        return [t for t in (*self.history_texts, *self.llm_texts) if t.strip() in self.filler_texts]


@dataclass
class _Probe:
    recorder: TimelineRecorder
    mode: Mode
    timings: Timings
    errors: list[str]
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    user: UserSpeechSimulator | None = None
    _noise_timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def mark(self, label: str) -> None:
        self.recorder.mark(label)
        if label == "tool_start" and self.user is not None and not self._noise_timers:
            self._schedule_noise(self.user)

    def _schedule_noise(self, user: UserSpeechSimulator) -> None:
        loop = asyncio.get_running_loop()
        for noise in self.timings.user_noise:
            self._noise_timers.append(
                loop.call_later(max(0.0, noise.offset), self._make_noise, user, noise)
            )

    def _make_noise(self, user: UserSpeechSimulator, noise: UserNoise) -> None:
        self.recorder.mark(f"user_noise_{noise.label or 'sound'}")
        try:
            user.speak("", duration=noise.duration)
        except RuntimeError as e:
            # the previous sound still plays (loop lag): skip this one, it is no failure
            logger.debug("user noise skipped", extra={"error": repr(e)})

    def cancel_noise(self) -> None:
        for timer in self._noise_timers:
            timer.cancel()


# -- the thread's agents -----------------------------------------------------------------------


class ChildProfile:
    """The AgentTask's result."""

    def __init__(self, age: int, gender: str) -> None:
        self.age = age
        self.gender = gender


class CollectAgeGender(AgentTask[ChildProfile]):
    """The thread's sub-agent: it speaks in ``on_enter`` and completes from a tool."""

    def __init__(self, *, user_query: str, probe: _Probe) -> None:
        super().__init__(instructions=TASK_INSTRUCTIONS)
        self._user_query = user_query
        self._probe = probe

    async def on_enter(self) -> None:
        self._probe.mark("task_enter")
        await self.session.generate_reply(user_input=self._user_query)

    @function_tool
    async def record_child_profile(self, age: int, gender: str) -> None:
        """Call this when you have the child's age and gender."""
        if self._probe.timings.task_tool_duration > 0:
            await asyncio.sleep(self._probe.timings.task_tool_duration)
        self.complete(ChildProfile(age, gender))


class _ThreadAgent(Agent):
    def __init__(self, probe: _Probe) -> None:
        super().__init__(
            instructions="You are a customer service agent for a gaming club.",
        )
        self._probe = probe

    async def _club_info(self, context: RunContext[Any]) -> str:
        async with self._filling(context):
            await asyncio.sleep(self._probe.timings.tool_duration)
        return CLUB_RESULT

    async def _programs(self, context: RunContext[Any]) -> str:
        async with self._filling(context):
            await asyncio.sleep(self._probe.timings.tool_duration)
            if self._probe.mode == "handmade":
                # the thread: a filler and the task at nearly the same time
                self._handmade_filler(context)
            self._probe.mark("task_start")
            profile = await CollectAgeGender(user_query=PROGRAMS_QUESTION, probe=self._probe)
        self._probe.mark("task_done")
        return f"{PROGRAMS_RESULT} (child: {profile.age}, {profile.gender})"

    def _filling(self, context: RunContext[Any]) -> Any:
        probe = self._probe
        if probe.mode == "with_filler":
            return context.with_filler(
                WITH_FILLER_PHRASE,
                delay=probe.timings.filler_delay,
                interval=probe.timings.filler_interval,
            )
        return _Nothing()

    def _handmade_filler(self, context: RunContext[Any]) -> None:
        probe = self._probe

        async def _play_filler() -> None:
            try:
                await context.session.say(HANDMADE_FILLER)
            except Exception as e:
                probe.errors.append(f"{type(e).__name__}: {e}")
                logger.warning("handmade filler failed", extra={"error": repr(e)})

        task = asyncio.create_task(_play_filler())
        probe.tasks.add(task)
        task.add_done_callback(probe.tasks.discard)


class _Nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class ClubAgent(_ThreadAgent):
    """Thread scenario 1, without any filler code (none / handmade / with_filler modes)."""

    @function_tool
    async def provide_club_information(
        self, rephrased_user_query: str, context: RunContext[Any]
    ) -> str:
        """Retrieve club-related information or policies based on the user's intent."""
        self._probe.mark("tool_start")
        if self._probe.mode == "handmade":
            await context.wait_for_playout()
            self._handmade_filler(context)
        try:
            return await self._club_info(context)
        finally:
            self._probe.mark("tool_end")


class FrontDeskAgent(_ThreadAgent):
    """Thread scenario 2, without any filler code (none / handmade / with_filler modes)."""

    @function_tool
    async def get_programs(self, context: RunContext[Any]) -> str:
        """Use this tool when the user is asking for programs."""
        self._probe.mark("tool_start")
        if self._probe.mode == "handmade":
            await context.wait_for_playout()
        try:
            return await self._programs(context)
        finally:
            self._probe.mark("tool_end")


class FillerClubAgent(_ThreadAgent):
    """Thread scenario 1 with livekit-filler: one decorator, no filler code in the tool."""

    @function_tool
    @fillers()
    async def provide_club_information(
        self, rephrased_user_query: str, context: RunContext[Any]
    ) -> str:
        """Retrieve club-related information or policies based on the user's intent."""
        self._probe.mark("tool_start")
        try:
            return await self._club_info(context)
        finally:
            self._probe.mark("tool_end")


class FillerFrontDeskAgent(_ThreadAgent):
    """Thread scenario 2 with livekit-filler: one decorator, a plain ``await`` of the task."""

    @function_tool
    @fillers()
    async def get_programs(self, context: RunContext[Any]) -> str:
        """Use this tool when the user is asking for programs."""
        self._probe.mark("tool_start")
        try:
            return await self._programs(context)
        finally:
            self._probe.mark("tool_end")


# -- scripted models -------------------------------------------------------------------------


def _script(timings: Timings) -> Any:
    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        items = chat_ctx.items
        last = items[-1] if items else None
        in_task = any(
            isinstance(i, llm.ChatMessage)
            and i.role in ("system", "developer")
            and TASK_INSTRUCTIONS in (i.text_content or "")
            for i in items
        )
        preamble = PREAMBLE if timings.preamble else ""
        if isinstance(last, llm.FunctionCallOutput):
            if last.name == "provide_club_information":
                return FakeResponse(text=CLUB_ANSWER, ttft=timings.llm_ttft)
            if last.name == "get_programs":
                return FakeResponse(text=PROGRAMS_ANSWER, ttft=timings.llm_ttft)
            if last.name == "record_child_profile":
                return FakeResponse(text="", ttft=timings.task_llm_ttft)
        if isinstance(last, llm.ChatMessage) and last.role == "user":
            if in_task:
                return FakeResponse(
                    text=TASK_GREETING,
                    tool_calls=(
                        FakeToolCall("record_child_profile", {"age": 7, "gender": "male"}),
                    ),
                    ttft=timings.task_llm_ttft,
                )
            if last.text_content == CLUB_QUESTION:
                return FakeResponse(
                    text=preamble,
                    tool_calls=(
                        FakeToolCall(
                            "provide_club_information", {"rephrased_user_query": "refund policy"}
                        ),
                    ),
                    ttft=timings.llm_ttft,
                )
            if last.text_content == PROGRAMS_QUESTION:
                return FakeResponse(
                    text=preamble,
                    tool_calls=(FakeToolCall("get_programs"),),
                    ttft=timings.llm_ttft,
                )
        return None

    return respond


def _texts(items: Sequence[llm.ChatItem]) -> list[str]:
    return [i.text_content or "" for i in items if isinstance(i, llm.ChatMessage)]


async def run_scenario(
    scenario: ScenarioName,
    mode: Mode,
    timings: Timings | None = None,
    *,
    settle: float = 0.3,
) -> ScenarioResult:
    """Run one scenario headless and return what was played.

    Args:
        scenario: ``club_info`` or ``programs``.
        mode: which filler approach the agent uses.
        timings: every duration of the run; defaults to :class:`Timings()`.
        settle: seconds to keep recording after the final answer.
    """
    timings = timings or Timings()
    fake_llm = FakeLLM(_script(timings), default=FakeResponse(text="Okay."), ttft=timings.llm_ttft)
    fake_tts = FakeTTS(ttfb=timings.tts_ttfb, seconds_per_char=timings.seconds_per_char)
    errors: list[str] = []
    user: UserSpeechSimulator | None = None
    session_kwargs: dict[str, Any] = {}
    if timings.user_noise:
        user = UserSpeechSimulator()
        session_kwargs = dict(
            user.session_kwargs(min_interruption_duration=timings.min_interruption_duration)
        )
    async with make_session(llm=fake_llm, tts=fake_tts, **session_kwargs) as session:
        recorder = TimelineRecorder.install(
            session, filler_texts=(HANDMADE_FILLER, WITH_FILLER_PHRASE)
        )
        probe = _Probe(recorder=recorder, mode=mode, timings=timings, errors=errors, user=user)
        if user is not None:
            user.install(session, timeline=recorder)
        agent: Agent
        if mode == "livekit_filler":
            controller = FillerController.attach(
                session,
                settings=FillerSettings.from_values(
                    delay=timings.filler_delay,
                    interval=timings.filler_interval,
                    phrases=list(FILLER_PHRASES),
                    followup_phrases=list(FOLLOWUP_PHRASES),
                ),
            )
            controller.seed_phrases(repr(timings))  # the same timings replay the same words
            agent = (
                FillerClubAgent(probe) if scenario == "club_info" else FillerFrontDeskAgent(probe)
            )
        else:
            agent = ClubAgent(probe) if scenario == "club_info" else FrontDeskAgent(probe)
        await session.start(agent)
        question = CLUB_QUESTION if scenario == "club_info" else PROGRAMS_QUESTION
        final = CLUB_ANSWER if scenario == "club_info" else PROGRAMS_ANSWER
        await session.run(user_input=question)
        # with an inline AgentTask, run() may return before the parent's final reply
        await _wait_for_text(recorder, final, timeout=30.0)
        while (speech := session.current_speech) is not None:
            await speech
            await asyncio.sleep(0.01)  # a done handle stays current until the scheduler runs
        await asyncio.sleep(settle)
        probe.cancel_noise()
        if probe.tasks:
            await asyncio.gather(*probe.tasks, return_exceptions=True)
        history = _texts(session.history.items)
        utterances = recorder.utterances
        markers = {k: list(v) for k, v in recorder.markers.items()}
    llm_texts = [t for ctx in fake_llm.calls for t in _texts(ctx.items)]
    return ScenarioResult(
        scenario=scenario,
        mode=mode,
        timings=timings,
        utterances=utterances,
        markers=markers,
        errors=errors,
        history_texts=history,
        llm_texts=llm_texts,
    )


async def _wait_for_text(recorder: TimelineRecorder, text: str, *, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if any(u.text == text for u in recorder.utterances):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the final answer {text!r} was not played within {timeout} s")
