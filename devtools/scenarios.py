"""The forum thread's two agents, runnable headless on the testing kit.

``club_info``: ``provide_club_information`` looks something up slowly, then the LLM answers.
``programs``: ``get_programs`` looks something up, then awaits the ``CollectAgeGender``
AgentTask, whose ``on_enter`` speaks; the parent answers after the task completes.

Each scenario runs in one of four modes: ``none`` (no filler), ``handmade`` (the thread's
``asyncio.create_task`` around ``session.say``), ``with_filler`` (LiveKit's
``RunContext.with_filler``) and ``livekit_filler`` (``@fillers``). The demo, the tests and
the benchmarks all run these, so every figure comes from the same agents.

Each also runs on one of two models: ``pipeline`` (``FakeLLM`` + ``FakeTTS``) or
``realtime`` (a speech-to-speech ``FakeRealtimeModel`` with no TTS in the session; the
``livekit_filler`` mode then gets a ``FakeTTS`` as its filler voice).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from livekit.agents import (
    Agent,
    AgentSession,
    AgentTask,
    RunContext,
    ToolError,
    function_tool,
    llm,
)
from livekit.agents.voice import ErrorEvent, SpeechCreatedEvent
from livekit.agents.voice.events import CloseEvent

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.latency import LatencyModel
from livekit_filler.latency_files import default_scope, history_path
from livekit_filler.settings import DEFAULT_BUSY_MESSAGE
from livekit_filler.testing import (
    FakeLLM,
    FakeRealtimeModel,
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
from livekit_filler.testing.fake_tts import SynthesizeFault

logger = logging.getLogger("devtools.scenarios")

ScenarioName = Literal["club_info", "programs"]
Mode = Literal["none", "handmade", "with_filler", "livekit_filler"]
Model = Literal["pipeline", "realtime"]
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
SLOW_ANSWER_PHRASES = ("Hmm, let me think about that.", "One second, please.")
"""The slow-answer pool of the filler run, when a fuzz seed draws the slow-answer case."""
SLOW_ANSWER_AFTER = 1.2
"""``[slow_answer] after`` of the filler run, in seconds."""
BUSY_MESSAGE = DEFAULT_BUSY_MESSAGE
"""The busy acknowledgement (the default ``busy_message``), on in every filler run."""
QUESTION_DURATION = 1.0
"""Seconds the caller takes to ask the question when it is spoken (the slow-answer case)."""


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
    """Message texts of every chat context the LLM saw (a realtime model: was ever sent)."""
    model: Model = "pipeline"
    adversity: Adversity = field(default_factory=lambda: Adversity())
    closes: list[tuple[float, str, str]] = field(default_factory=list)
    """``(time, reason, error)`` of every close of the session before the run ended."""

    @property
    def filler_texts(self) -> frozenset[str]:
        """Every text any mode uses as a filler."""
        return frozenset(
            (
                HANDMADE_FILLER,
                WITH_FILLER_PHRASE,
                *FILLER_PHRASES,
                *FOLLOWUP_PHRASES,
                *SLOW_ANSWER_PHRASES,
                BUSY_MESSAGE,
            )
        )

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

    # -- naturalness (issue 13): where fillers stopped, measured on the FakeTTS's words --------

    def filler_stops(self) -> list[tuple[Utterance, float, bool]]:
        """Every filler cut short: ``(utterance, seconds played, stopped inside a word)``.

        A filler is cut short when it played less than its whole sound (its FakeTTS words
        are known from the run's ``seconds_per_char``); it stopped inside a word unless the
        stop falls in a gap between words (5 ms of slack for the words' fade edges).
        """
        voice = FakeTTS(seconds_per_char=self.timings.seconds_per_char)
        stops: list[tuple[Utterance, float, bool]] = []
        for filler in self.fillers:
            whole = voice.duration_for(filler.text)
            played = filler.duration
            if played >= whole - 0.02:
                continue
            inside = any(a + 0.005 < played < b - 0.005 for a, b in voice.words_for(filler.text))
            stops.append((filler, played, inside))
        return stops

    @property
    def fillers_cut_mid_word(self) -> int:
        """Fillers that stopped inside a word."""
        return sum(1 for _, _, inside in self.filler_stops() if inside)

    @property
    def fillers_cut_early(self) -> int:
        """Fillers cut within their first 0.5 s of audio."""
        return sum(1 for _, played, _ in self.filler_stops() if played < 0.5)


@dataclass
class _Probe:
    recorder: TimelineRecorder
    mode: Mode
    timings: Timings
    errors: list[str]
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    user: UserSpeechSimulator | None = None
    _noise_timers: list[asyncio.TimerHandle] = field(default_factory=list)
    adversity: Adversity = field(default_factory=lambda: Adversity())
    session: AgentSession[Any] | None = None
    closes: list[tuple[float, str, str]] = field(default_factory=list)
    """``(time, reason, error)`` of every close of the session during the run."""
    close_timer: asyncio.TimerHandle | None = None

    def marker_set(self, label: str) -> bool:
        return bool(self.recorder.markers.get(label))

    def mark(self, label: str) -> None:
        self.recorder.mark(label)
        if label == "tool_start" and self.user is not None and not self._noise_timers:
            self._schedule_noise(self.user)
        if label == "tool_start":
            _schedule_close(self)

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
        if self.close_timer is not None:
            self.close_timer.cancel()


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
        # the busy case: the tool's step cannot be interrupted, LiveKit lets it run
        busy: dict[str, Any] = {"allow_interruptions": False} if probe.adversity.busy else {}
        super().__init__(
            instructions="You are a customer service agent for a gaming club.",
            tools=_extra_tools(probe),
            **busy,
        )
        self._probe = probe

    async def _club_info(self, context: RunContext[Any]) -> str | Agent:
        async with self._filling(context):
            await asyncio.sleep(self._probe.timings.tool_duration)
        return _tool_result(self._probe, context, CLUB_RESULT)

    async def _programs(self, context: RunContext[Any]) -> str | Agent:
        async with self._filling(context):
            await asyncio.sleep(self._probe.timings.tool_duration)
            if self._probe.mode == "handmade":
                # the thread: a filler and the task at nearly the same time
                self._handmade_filler(context)
            self._probe.mark("task_start")
            profile = await CollectAgeGender(user_query=PROGRAMS_QUESTION, probe=self._probe)
        self._probe.mark("task_done")
        result = f"{PROGRAMS_RESULT} (child: {profile.age}, {profile.gender})"
        return _tool_result(self._probe, context, result)

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
    ) -> str | Agent:
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
    async def get_programs(self, context: RunContext[Any]) -> str | Agent:
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
    ) -> str | Agent:
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
    async def get_programs(self, context: RunContext[Any]) -> str | Agent:
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
    model: Model = "pipeline",
    adversity: Adversity | None = None,
) -> ScenarioResult:
    """Run one scenario headless and return what was played.

    Without ``adversity`` (the demo, the thread-scenario tests) the filler run keeps its
    audio and tool latencies in this process's memory, so a second call learns from the
    first. With it (the fuzzer) the run gets a cache directory of its own, holding only
    the latency history ``adversity.history`` draws (tool latencies and reply leads): every
    seed replays alone exactly as it ran among others.

    Args:
        scenario: ``club_info`` or ``programs``.
        mode: which filler approach the agent uses.
        timings: every duration of the run; defaults to :class:`Timings()`.
        settle: seconds to keep recording after the final answer.
        model: ``pipeline`` (LLM + TTS) or ``realtime`` (speech-to-speech, no TTS).
        adversity: adversarial conditions (:class:`Adversity`); None is the thread's case.
    """
    timings = timings or Timings()
    if adversity is None or mode != "livekit_filler":
        return await _run_scenario(scenario, mode, timings, settle, model, adversity, None)
    scratch = Path(tempfile.mkdtemp(prefix="livekit-filler-fuzz-"))
    try:
        if adversity.history > 0:
            # the history the controller of this process reads (cache_dir = scratch)
            past = LatencyModel(path=history_path(scratch, default_scope()))
            rng = random.Random(repr((timings, adversity)))
            for _ in range(5):
                past.record(
                    _MAIN_TOOLS[scenario == "programs"],
                    timings.tool_duration * adversity.history * rng.uniform(0.9, 1.1),
                )
            # and the replies timed on those calls: about the LLM's and TTS's first-byte
            # times (plus the first sentence), with the jitter of real providers
            lead = timings.llm_ttft + timings.tts_ttfb + 0.1
            for _ in range(5):
                past.record_lead(lead * rng.uniform(0.7, 1.3))
            past.save()
        return await _run_scenario(scenario, mode, timings, settle, model, adversity, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _run_scenario(
    scenario: ScenarioName,
    mode: Mode,
    timings: Timings,
    settle: float,
    model: Model,
    adversity: Adversity | None,
    cache_dir: Path | None,
) -> ScenarioResult:
    fake_tts = _make_tts(timings, adversity)
    fake_llm: FakeLLM | FakeRealtimeModel
    if model == "realtime":
        # the model's own audio starts after its time to first audio (no TTS in the session)
        fake_llm = FakeRealtimeModel(
            _adversarial_script(_script(timings), timings, adversity),
            ttft=timings.llm_ttft,
            seconds_per_char=timings.seconds_per_char,
        )
    else:
        fake_llm = FakeLLM(
            _adversarial_script(_script(timings), timings, adversity),
            default=FakeResponse(text="Okay."),
            ttft=timings.llm_ttft,
        )
    errors: list[str] = []
    user: UserSpeechSimulator | None = None
    session_kwargs: dict[str, Any] = {}
    # the slow-answer case: the caller asks aloud (the slow-answer filler answers a
    # committed user turn, which a text input is not)
    spoken = adversity is not None and adversity.slow_answer != "none"
    if timings.user_noise or spoken:
        user = UserSpeechSimulator()
        session_kwargs = dict(
            user.session_kwargs(min_interruption_duration=timings.min_interruption_duration)
        )
    session_kwargs = _session_options(session_kwargs, adversity)
    session_tts = fake_tts if model == "pipeline" else None
    async with make_session(llm=fake_llm, tts=session_tts, **session_kwargs) as session:
        recorder = TimelineRecorder.install(
            session, filler_texts=(HANDMADE_FILLER, WITH_FILLER_PHRASE)
        )
        probe = _Probe(
            recorder=recorder,
            mode=mode,
            timings=timings,
            errors=errors,
            user=user,
            adversity=adversity or Adversity(),
        )
        _watch_session(session, probe)
        _mark_turn_end(session, probe)
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
                    allow_interruptions=probe.adversity.filler_interruptible,
                    slow_answer={
                        "enabled": spoken,
                        "after": SLOW_ANSWER_AFTER,
                        "phrases": list(SLOW_ANSWER_PHRASES),
                    },
                    # never the user's cache: figures must not depend on earlier runs
                    disk_cache=cache_dir is not None,
                    cache_dir=cache_dir,
                ),
                # a realtime session has no TTS: the filler voice renders the phrases
                tts=fake_tts if model == "realtime" else None,
            )
            controller.seed_phrases(repr(timings))  # the same timings replay the same words
            agent = (
                FillerClubAgent(probe) if scenario == "club_info" else FillerFrontDeskAgent(probe)
            )
        else:
            agent = ClubAgent(probe) if scenario == "club_info" else FrontDeskAgent(probe)
        await session.start(agent)
        question = CLUB_QUESTION if scenario == "club_info" else PROGRAMS_QUESTION
        final = probe.adversity.final_text(scenario)
        try:
            if spoken and user is not None:
                await user.say(question, duration=QUESTION_DURATION)
            else:
                await session.run(user_input=question)
        except RuntimeError:
            if not probe.closes:  # a session that closes fails run(); its close is recorded
                raise
        # with an inline AgentTask, run() may return before the parent's final reply
        await _wait_for_text(recorder, final, timeout=30.0, closed=lambda: bool(probe.closes))
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
        closes = list(probe.closes)  # not the close on leaving this block
    if isinstance(fake_llm, FakeRealtimeModel):
        llm_texts = fake_llm.conversation_texts()
    else:
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
        model=model,
        adversity=probe.adversity,
        closes=closes,
    )


async def _wait_for_text(
    recorder: TimelineRecorder,
    text: str,
    *,
    timeout: float,
    closed: Callable[[], bool] = lambda: False,
) -> None:
    """Wait until ``text`` has played, or the session has closed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if closed() or any(u.text == text for u in recorder.utterances):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the final answer {text!r} was not played within {timeout} s")


# -- adversarial dimensions (drawn by devtools.fuzz) -----------------------------------------

ExtraTool = Literal["none", "parallel", "chained"]
Raising = Literal["none", "main", "extra"]
Handoff = Literal["none", "return", "update_agent"]
Close = Literal["none", "aclose", "shutdown"]
TTSFault = Literal["none", "error", "hang", "drop", "empty", "flaky"]
Interruptions = Literal["on", "filler_off", "session_off", "both_off"]
SlowAnswer = Literal["none", "slow", "fast"]

EXTRA_TOOL = "check_membership"
MEMBERSHIP_RESULT = "Membership active until March."
TOOL_ERROR = "the membership system is down"
SPECIALIST_INSTRUCTIONS = "You are the specialist desk; greet the caller who was handed over."
SPECIALIST_GREETING = "Hi, this is the specialist desk, I have your details here."
_MAIN_TOOLS = ("provide_club_information", "get_programs")


@dataclass(frozen=True)
class Adversity:
    """Adversarial conditions of a run beyond its timings; the defaults are the thread's case.

    Both runs of a fuzz pair share them; ``tts_fault`` and ``interruptions="filler_off"``
    touch only what the filler run has (filler renders, filler settings).

    Attributes:
        extra_tool: A second tool, ``check_membership``, called in the same step as the
            scenario's tool (``parallel``) or in a second step after its result
            (``chained``); it has ``@fillers`` in the filler run, as the scenario's tool does.
        extra_tool_duration: Seconds ``check_membership`` takes.
        raising: Which tool raises ``ToolError`` once its work is done: ``main`` (the
            scenario's tool; ``programs`` after its AgentTask) or ``extra``. The LLM
            answers as usual.
        handoff: The scenario's tool hands the call to the ``Specialist`` agent when its
            work is done: by returning it (``return``: the specialist greets instead of the
            reply) or by calling ``session.update_agent()`` before it returns (``update_agent``:
            the reply, then the greeting).
        close: ``session.aclose()`` or ``session.shutdown()`` (drains: the answer still
            plays) ``close_at`` seconds after the tool started.
        close_at: See ``close``.
        tts_fault: What the TTS does to filler renders (the session's own speech is never
            affected): ``error`` (a non-retryable ``APIConnectionError``, FakeTTS
            ``fail_on``), ``hang`` (no audio, ``hang_on``), ``drop`` (half the audio, then a
            dropped connection), ``empty`` (no audio), ``flaky`` (each phrase's first render
            drops, later ones work). A faulty TTS has a voice of its own, so no audio
            another run cached hides the fault.
        interruptions: ``filler_off``: ``FillerSettings(allow_interruptions=False)``;
            ``session_off``: the session's ``interruption.enabled`` is False; ``both_off``.
        preemptive_generation: The session's preemptive generation is on.
        speech_gap: The session's ``min_consecutive_speech_delay``, in seconds.
        history: What the filler run's latency model knows of the scenario's tool: 0 is
            nothing (an unknown tool waits ``delay``); otherwise five past calls that took
            about ``history`` times this call's tool duration (below 1: it overruns a
            prediction of fast; near 1: a good prediction; above 1: it returns early), and
            five reply leads around this run's (LLM first token + TTS first byte + 0.1 s,
            times 0.7 to 1.3), so fillers play on until the reply is due.
        slow_answer: The caller asks aloud (a committed user turn) and the filler run has
            ``[slow_answer] enabled`` (``after`` 1.2 s): ``slow``: the LLM's first token for
            the question comes after ``slow_ttft`` seconds (2.0-3.5); ``fast``: after the
            seed's own (at most 0.4 s).
        slow_ttft: See ``slow_answer``.
        busy: The scenario's agent does not allow interruptions (so LiveKit lets its tool
            run while the caller talks), and the caller makes a sound ``busy_at`` seconds
            into the tool, for ``busy_for`` seconds; the tool runs on long enough for the
            acknowledgement (``busy_message``, on by default) to be said.
        busy_at: See ``busy``.
        busy_for: See ``busy``.
    """

    extra_tool: ExtraTool = "none"
    extra_tool_duration: float = 0.0
    raising: Raising = "none"
    handoff: Handoff = "none"
    close: Close = "none"
    close_at: float = 0.0
    tts_fault: TTSFault = "none"
    interruptions: Interruptions = "on"
    preemptive_generation: bool = False
    speech_gap: float = 0.0
    history: float = 0.0
    slow_answer: SlowAnswer = "none"
    slow_ttft: float = 0.0
    busy: bool = False
    busy_at: float = 0.0
    busy_for: float = 0.0

    @property
    def tags(self) -> tuple[str, ...]:
        """One short name per non-default dimension (``"parallel"``, ``"tts:hang"``...)."""
        tags: list[str] = []
        if self.extra_tool != "none":
            tags.append(self.extra_tool)
        if self.raising != "none":
            tags.append(f"raising:{self.raising}")
        if self.handoff != "none":
            tags.append(f"handoff:{self.handoff}")
        if self.close != "none":
            tags.append(f"close:{self.close}")
        if self.tts_fault != "none":
            tags.append(f"tts:{self.tts_fault}")
        if self.interruptions != "on":
            tags.append(f"interruptions:{self.interruptions}")
        if self.preemptive_generation:
            tags.append("preemptive")
        if self.speech_gap > 0:
            tags.append("speech_gap")
        if self.history > 0:
            tags.append("history")
        if self.slow_answer != "none":
            tags.append(f"slow_answer:{self.slow_answer}")
        if self.busy:
            tags.append("busy")
        return tuple(tags)

    def describe(self) -> str:
        """The non-default dimensions with their values, or ``plain``."""
        parts: list[str] = []
        for tag in self.tags:
            if tag in ("parallel", "chained"):
                tag += f" ({self.extra_tool_duration:.2f} s)"
            elif tag.startswith("close:"):
                tag += f" at +{self.close_at:.2f} s"
            elif tag == "speech_gap":
                tag += f" {self.speech_gap:.2f} s"
            elif tag == "history":
                tag += f" x{self.history:.2f}"
            elif tag == "slow_answer:slow":
                tag += f" (first token {self.slow_ttft:.2f} s)"
            elif tag == "busy":
                tag += f" (caller at +{self.busy_at:.2f} s for {self.busy_for:.2f} s)"
            parts.append(tag)
        return ", ".join(parts) or "plain"

    @property
    def filler_interruptible(self) -> bool:
        """``FillerSettings.allow_interruptions`` for the filler run."""
        return self.interruptions not in ("filler_off", "both_off")

    def resolved(self, keep: frozenset[str] = frozenset()) -> Adversity:
        """These conditions without the combinations a run cannot have, changing the
        fields not named in ``keep`` (the forced ones).

        A hand-off excludes a chained step (LiveKit's reply while draining may not call
        tools), a raising scenario tool (it returns the agent) and a close; so does a
        (draining) ``shutdown`` a chained step; ``raising="extra"`` needs the second tool.

        Raises:
            ValueError: Two fields in ``keep`` conflict.
        """
        a = self
        if a.raising == "extra" and a.extra_tool == "none":
            if {"raising", "extra_tool"} <= keep:
                raise ValueError("raising=extra needs extra_tool=parallel or chained")
            a = (
                dataclasses.replace(a, extra_tool="parallel")
                if "raising" in keep
                else dataclasses.replace(a, raising="main")
            )
        if a.close == "shutdown" and a.extra_tool == "chained":
            if {"close", "extra_tool"} <= keep:
                raise ValueError("close=shutdown excludes extra_tool=chained")
            a = (
                dataclasses.replace(a, close="none")
                if "extra_tool" in keep
                else dataclasses.replace(a, extra_tool="parallel")
            )
        if a.handoff == "none":
            return a
        clashes = [
            name
            for name, clash in (
                ("extra_tool", a.extra_tool == "chained"),
                ("raising", a.raising == "main"),
                ("close", a.close != "none"),
            )
            if clash
        ]
        if "handoff" in keep and any(name in keep for name in clashes):
            raise ValueError(f"handoff={a.handoff} excludes {', '.join(clashes)}")
        if any(name in keep for name in clashes):
            return dataclasses.replace(a, handoff="none")
        return dataclasses.replace(
            a,
            extra_tool="parallel" if a.extra_tool == "chained" else a.extra_tool,
            raising="none" if a.raising == "main" else a.raising,
            close="none",
        )

    def final_text(self, scenario: ScenarioName) -> str:
        """The last speech of a run that is not closed early."""
        if self.handoff != "none":
            return SPECIALIST_GREETING
        return CLUB_ANSWER if scenario == "club_info" else PROGRAMS_ANSWER


class Specialist(Agent):
    """The hand-off target: it greets the caller from ``on_enter``."""

    def __init__(self, probe: _Probe) -> None:
        super().__init__(instructions=SPECIALIST_INSTRUCTIONS)
        self._probe = probe

    async def on_enter(self) -> None:
        self._probe.mark("specialist_enter")
        await self.session.generate_reply()


def _tool_result(probe: _Probe, context: RunContext[Any], result: str) -> str | Agent:
    """What the scenario's tool returns once its work is done: ``result``, a raised
    ``ToolError`` or a hand-off (see :class:`Adversity`)."""
    adversity = probe.adversity
    if adversity.raising == "main":  # Adversity.resolved(): never with a hand-off
        probe.mark("tool_raise")
        raise ToolError(TOOL_ERROR)
    if adversity.handoff == "return":
        probe.mark("handoff")
        return Specialist(probe)
    if adversity.handoff == "update_agent":
        probe.mark("handoff")
        context.session.update_agent(Specialist(probe))
    return result


def _extra_tools(probe: _Probe) -> list[llm.Tool | llm.Toolset]:
    """``check_membership`` when the run has a second tool, decorated in the filler run."""
    adversity = probe.adversity
    if adversity.extra_tool == "none":
        return []

    async def check_membership(context: RunContext[Any]) -> str:
        """Check the caller's club membership."""
        probe.mark("extra_start")
        try:
            await asyncio.sleep(adversity.extra_tool_duration)
            if adversity.raising == "extra":
                probe.mark("extra_raise")
                raise ToolError(TOOL_ERROR)
            return MEMBERSHIP_RESULT
        finally:
            probe.mark("extra_end")

    if probe.mode == "livekit_filler":
        return [function_tool(fillers()(check_membership))]
    return [function_tool(check_membership)]


def _adversarial_script(
    respond: Callable[[llm.ChatContext], FakeResponse | None],
    timings: Timings,
    adversity: Adversity | None,
) -> Callable[[llm.ChatContext], FakeResponse | None]:
    """The thread's script plus the second tool's calls and the specialist's greeting."""
    if adversity is None or adversity == Adversity():
        return respond

    def script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        response = _adversarial_response(chat_ctx)
        if (
            adversity.slow_answer == "slow"
            and response is not None
            and any(c.name in _MAIN_TOOLS for c in response.tool_calls)
            and isinstance(chat_ctx.items[-1], llm.ChatMessage)
        ):
            # the answer to the caller's question (its first step) is slow to start
            return dataclasses.replace(response, ttft=adversity.slow_ttft)
        return response

    def _adversarial_response(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        items = chat_ctx.items
        if any(
            isinstance(i, llm.ChatMessage)
            and i.role in ("system", "developer")
            and SPECIALIST_INSTRUCTIONS in (i.text_content or "")
            for i in items
        ):
            return FakeResponse(text=SPECIALIST_GREETING, ttft=timings.task_llm_ttft)
        response = respond(chat_ctx)
        if adversity.extra_tool == "none":
            return response
        last = items[-1] if items else None
        if isinstance(last, llm.FunctionCallOutput):
            if last.name == EXTRA_TOOL:
                club = any(
                    isinstance(i, llm.FunctionCallOutput) and i.name == _MAIN_TOOLS[0]
                    for i in items
                )
                return FakeResponse(
                    text=CLUB_ANSWER if club else PROGRAMS_ANSWER, ttft=timings.llm_ttft
                )
            if adversity.extra_tool == "chained" and last.name in _MAIN_TOOLS:
                return FakeResponse(tool_calls=(FakeToolCall(EXTRA_TOOL),), ttft=timings.llm_ttft)
        if (
            adversity.extra_tool == "parallel"
            and response is not None
            and any(c.name in _MAIN_TOOLS for c in response.tool_calls)
        ):
            return dataclasses.replace(
                response, tool_calls=(*response.tool_calls, FakeToolCall(EXTRA_TOOL))
            )
        return response

    return script


_voices = itertools.count()


class _FaultyTTS(FakeTTS):
    """A :class:`FakeTTS` with a voice of its own: no filler audio cached by another run
    (the audio cache is per process) can hide its faults."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._serial = next(_voices)

    @property
    def voice(self) -> str:
        """The fake's voice, unique to this instance."""
        return f"{super().voice}:faulty-{self._serial}"


def _make_tts(timings: Timings, adversity: Adversity | None) -> FakeTTS:
    """The run's TTS, with the filler-render fault of ``adversity`` if any."""
    fault = "none" if adversity is None else adversity.tts_fault
    if fault == "none":
        return FakeTTS(ttfb=timings.tts_ttfb, seconds_per_char=timings.seconds_per_char)
    fillers_texts = frozenset((*FILLER_PHRASES, *FOLLOWUP_PHRASES))

    def is_filler(text: str) -> bool:
        return text.strip() in fillers_texts

    failed: set[str] = set()

    def synthesize_fault(text: str) -> SynthesizeFault | None:
        if not is_filler(text):
            return None
        if fault == "flaky":
            if text in failed:
                return None
            failed.add(text)
            return "drop"
        return "drop" if fault == "drop" else "empty"

    return _FaultyTTS(
        ttfb=timings.tts_ttfb,
        seconds_per_char=timings.seconds_per_char,
        fail_on=is_filler if fault == "error" else None,
        hang_on=is_filler if fault == "hang" else None,
        synthesize_fault=synthesize_fault if fault in ("drop", "empty", "flaky") else None,
    )


def _session_options(kwargs: dict[str, Any], adversity: Adversity | None) -> dict[str, Any]:
    """``kwargs`` for ``make_session`` with the session options of ``adversity``."""
    if adversity is None:
        return kwargs
    options = dict(kwargs)
    turn: dict[str, Any] = dict(options.get("turn_handling") or {})
    if adversity.interruptions in ("session_off", "both_off"):
        # make_session replaces a turn_handling key whole: keep its false-interruption default
        interruption = {"resume_false_interruption": False, **turn.get("interruption", {})}
        turn["interruption"] = {**interruption, "enabled": False}
    if adversity.preemptive_generation:
        turn["preemptive_generation"] = {"enabled": True}
    if turn:
        options["turn_handling"] = turn
    if adversity.speech_gap > 0:
        options["min_consecutive_speech_delay"] = adversity.speech_gap
    return options


def _watch_session(session: AgentSession[Any], probe: _Probe) -> None:
    """Record the session's closes and unrecoverable errors into ``probe``, and schedule the
    adversarial close (see :func:`_schedule_close`)."""
    probe.session = session

    def on_close(ev: CloseEvent) -> None:
        reason = getattr(ev.reason, "value", str(ev.reason))
        error = "" if ev.error is None else f"{type(ev.error).__name__}: {ev.error}"
        probe.closes.append((probe.recorder.now(), reason, error))

    def on_error(ev: ErrorEvent) -> None:
        if not getattr(ev.error, "recoverable", True):
            probe.errors.append(f"unrecoverable session error: {ev.error!r}")

    session.on("close", on_close)
    session.on("error", on_error)


def _mark_turn_end(session: AgentSession[Any], probe: _Probe) -> None:
    """Mark ``turn_end`` when LiveKit creates the reply to a user turn (the end of the
    caller's turn, as the slow-answer filler counts it)."""

    def on_created(ev: SpeechCreatedEvent) -> None:
        if ev.user_initiated and ev.source == "generate_reply" and not probe.marker_set("turn_end"):
            probe.recorder.mark("turn_end")

    session.on("speech_created", on_created)


def _schedule_close(probe: _Probe) -> None:
    """At the tool's start: close the session ``close_at`` seconds later, if drawn."""
    adversity, session = probe.adversity, probe.session
    if adversity.close == "none" or session is None or probe.close_timer is not None:
        return

    def close() -> None:
        probe.mark("close")
        if adversity.close == "shutdown":
            session.shutdown()
            return
        task = asyncio.ensure_future(session.aclose())
        probe.tasks.add(task)
        task.add_done_callback(probe.tasks.discard)

    probe.close_timer = asyncio.get_running_loop().call_later(adversity.close_at, close)
