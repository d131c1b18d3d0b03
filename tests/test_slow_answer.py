"""The slow-answer filler (issue 22): a filler when the LLM is slow to answer a user turn.

Each case drives a real ``AgentSession`` with a simulated caller (``UserSpeechSimulator``)
and a ``FakeLLM`` whose time to first token is drawn per seed, paired with the same seed
and timings without fillers; the ``realtime`` cases the same with a ``FakeRealtimeModel``
(server-side turn detection: the caller speaks through ``user_speaks``) and a filler voice.
The end of the user's turn is the moment LiveKit creates the reply (``speech_created``),
which the tests record: with preemptive generation, its preemptive reply, created when the
caller stops speaking and queued at the turn's commit. The slow and fast cases draw per seed
(:func:`draw`) the session's preemptive generation (pipeline) and whether fillers are
interruptible.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import pytest
from filler_harness import SPC, TTFB, settle, wait_until
from livekit.agents import Agent, AgentTask, RunContext, function_tool, llm
from livekit.agents.voice import SpeechCreatedEvent
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from livekit_filler import FillerController, FillerEvent, FillerSettings
from livekit_filler.testing import (
    FakeLLM,
    FakeRealtimeModel,
    FakeRealtimeSession,
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
from livekit_filler.tracing import ATTR_KIND, ATTR_REASON

QUESTION = "What would you recommend for a beginner?"
REPLY = "I would start with the morning class."
PHRASES = ["Hmm, let me think about that.", "One second."]
SEEDS = range(16)
MODELS = ["pipeline", "realtime"]
Model = Literal["pipeline", "realtime"]


def slow_settings(*, interruptible: bool = True, **overrides: Any) -> FillerSettings:
    values: dict[str, Any] = {"enabled": True, "after": 1.2, "phrases": PHRASES}
    values.update(overrides)
    return FillerSettings.from_values(slow_answer=values, allow_interruptions=interruptible)


@dataclass(frozen=True)
class Draw:
    """A seed's session: LiveKit's preemptive generation (an LLM's only), interruptible
    fillers. Drawn from a stream of its own, so the seed's LLM timing stays as it was."""

    preemptive: bool
    interruptible: bool

    @classmethod
    def of(cls, seed: int, model: Model) -> Draw:
        rng = random.Random(f"draw-{seed}")
        preemptive, interruptible = rng.random() < 0.5, rng.random() < 0.5
        return cls(preemptive=preemptive and model == "pipeline", interruptible=interruptible)


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")


@dataclass
class Turn:
    """What one caller turn sounded like (seconds on the recorder's clock)."""

    utterances: list[Utterance]
    turn_end: float
    history: list[str]
    events: list[FillerEvent] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return any(u.text == REPLY for u in self.utterances)

    @property
    def fillers(self) -> list[Utterance]:
        return [u for u in self.utterances if u.kind == "filler"]

    @property
    def reply_start(self) -> float:
        found = [u for u in self.utterances if u.text == REPLY]
        assert found, f"the reply never played:\n{self.timeline}"
        return found[0].start

    @property
    def timeline(self) -> str:
        return format_timeline(self.utterances)


async def ask(
    ttft: float,
    *,
    settings: FillerSettings | None,
    tts: FakeTTS | None = None,
    model: Model = "pipeline",
    realtime_class: type[FakeRealtimeModel] = FakeRealtimeModel,
    preemptive: bool = False,
) -> Turn:
    """The caller asks QUESTION; the LLM (or realtime model) answers REPLY after ``ttft``
    seconds (a reply that never plays is left to the caller to find: ``answered``). With a
    realtime model, ``tts`` is the filler voice; ``preemptive``: the session's preemptive
    generation (pipeline)."""
    user = UserSpeechSimulator()
    script = {QUESTION: FakeResponse(text=REPLY, ttft=ttft)}
    tts = tts or FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
    realtime = realtime_class(script, default=None, turn_detection=True)
    events: list[FillerEvent] = []
    created: list[float] = []
    if model == "realtime":
        session_cm = make_session(llm=realtime, tts=None)
    else:
        # LiveKit's default endpointing delay: the preemptive reply is created well before the
        # turn is committed, as in production
        kwargs: dict[str, Any] = dict(
            user.session_kwargs(endpointing_delay=0.5 if preemptive else 0.1)
        )
        kwargs["turn_handling"] = {
            **kwargs["turn_handling"],
            "preemptive_generation": {"enabled": preemptive},
        }
        session_cm = make_session(llm=FakeLLM(script, default=None), tts=tts, **kwargs)
    async with session_cm as session:
        rec = TimelineRecorder.install(session)
        if model == "pipeline":
            user.install(session, timeline=rec)

        def on_created(ev: SpeechCreatedEvent) -> None:
            if ev.source == "generate_reply":
                created.append(rec.now())

        session.on("speech_created", on_created)  # before the controller's: the turn's end
        if settings is not None:
            voice = tts if model == "realtime" else None
            controller = FillerController.attach(session, settings=settings, tts=voice)
            for name in ("filler_played", "filler_skipped", "filler_cut"):
                controller.on(name, events.append)
        await session.start(Assistant())
        if model == "realtime":
            start = rec.now()
            await realtime.current.user_speaks(QUESTION, duration=0.5)
            rec.add_user_utterance(QUESTION, start, rec.now())
        else:
            await user.say(QUESTION, duration=0.5)
        with contextlib.suppress(asyncio.TimeoutError):
            await wait_until(lambda: any(u.text == REPLY for u in rec.utterances), ttft + 4.0)
        await settle(session, 0.05, timeout=5.0)
        history = [
            i.text_content or "" for i in session.history.items if isinstance(i, llm.ChatMessage)
        ]
        history += realtime.conversation_texts()  # the model's own conversation
        utterances = rec.utterances
    assert created, format_timeline(utterances)
    return Turn(utterances, created[0], history, events)


def _common_problems(turn: Turn) -> list[str]:
    problems = [] if turn.answered else [f"the reply never played:\n{turn.timeline}"]
    if any(text in PHRASES for text in turn.history):
        problems.append(f"a filler in the history: {turn.history}")
    if bad := overlaps(turn.utterances, include_user=True):
        problems.append(f"overlaps {bad}:\n{turn.timeline}")
    return problems


@pytest.mark.parametrize("model", MODELS)
async def test_a_slow_answer_gets_one_filler_in_time_and_the_reply_is_not_later(
    model: Model,
) -> None:
    """Slow LLM (2.0-3.5 s to its first token), after = 1.2: a filler starts 1.2-1.5 s after
    the end of the user's turn in every seed, preemptive generation or not, interruptible
    fillers or not; the reply always plays, its first audio, measured from the end of the
    turn, at most 50 ms later than without fillers (p95)."""

    ttfts = [random.Random(seed).uniform(2.0, 3.5) for seed in SEEDS]
    draws = [Draw.of(seed, model) for seed in SEEDS]
    # each seed with and without fillers at the same time: both runs share the machine's load
    runs = await asyncio.gather(
        *(
            ask(ttft, settings=s, model=model, preemptive=d.preemptive)
            for ttft, d in zip(ttfts, draws, strict=True)
            for s in (slow_settings(interruptible=d.interruptible), None)
        )
    )
    failures: dict[str, list[str]] = {}
    extra: list[float] = []
    for seed, filled, plain in zip(SEEDS, runs[::2], runs[1::2], strict=True):
        problems = _common_problems(filled)
        if len(filled.fillers) != 1:
            problems.append(f"{len(filled.fillers)} fillers:\n{filled.timeline}")
        else:
            start = filled.fillers[0].start - filled.turn_end
            if not 1.2 <= start <= 1.5:
                problems.append(f"the filler started {start:.3f} s in:\n{filled.timeline}")
        if problems:
            failures[f"{seed} {draws[seed]}"] = problems
        else:
            extra.append(
                (filled.reply_start - filled.turn_end) - (plain.reply_start - plain.turn_end)
            )
    assert not failures, failures
    extra.sort()
    assert extra[int(0.95 * (len(extra) - 1))] <= 0.05, extra


@pytest.mark.parametrize("model", MODELS)
async def test_a_fast_answer_gets_no_filler_and_is_not_later(model: Model) -> None:
    """Fast LLM (first token within 0.6 s): no slow-answer filler in any seed (the held
    filler lets the reply go, or, with preemptive generation, none is queued for a reply
    whose words came before the turn's commit), preemptive generation or not, interruptible
    fillers or not; the reply always plays, at most 50 ms later than without (p95)."""
    ttfts = [random.Random(seed).uniform(0.05, 0.6) for seed in SEEDS]
    draws = [Draw.of(seed, model) for seed in SEEDS]
    runs = await asyncio.gather(
        *(
            ask(ttft, settings=s, model=model, preemptive=d.preemptive)
            for ttft, d in zip(ttfts, draws, strict=True)
            for s in (slow_settings(interruptible=d.interruptible), None)
        )
    )
    failures: dict[str, list[str]] = {}
    extra: list[float] = []
    for seed, filled, plain in zip(SEEDS, runs[::2], runs[1::2], strict=True):
        problems = _common_problems(filled)
        if filled.fillers:
            problems.append(f"a filler for a fast answer:\n{filled.timeline}")
        held = any(e.kind == "slow_answer" and e.reason == "answer_ready" for e in filled.events)
        if not held and not draws[seed].preemptive:
            problems.append(f"no held filler let the reply go: {filled.events}")
        if problems:
            failures[f"{seed} {draws[seed]}"] = problems
        else:
            extra.append(
                (filled.reply_start - filled.turn_end) - (plain.reply_start - plain.turn_end)
            )
    assert not failures, failures
    extra.sort()
    assert extra[int(0.95 * (len(extra) - 1))] <= 0.05, extra


async def test_the_slow_answer_filler_is_off_by_default() -> None:
    turn = await ask(2.0, settings=FillerSettings.from_values())
    assert not turn.fillers, turn.timeline
    assert not turn.events


@pytest.mark.parametrize("model", MODELS)
async def test_a_failing_tts_render_leaves_the_turn_as_without_it(model: Model) -> None:
    """The filler's render fails: no filler, the reply comes as without fillers."""
    phrase = f"Let me mull that over, {model}."  # never rendered before in this process
    failing = FakeTTS(ttfb=TTFB, seconds_per_char=SPC, fail_on=lambda text: text == phrase)
    filled, plain = await asyncio.gather(
        ask(2.0, settings=slow_settings(phrases=[phrase]), tts=failing, model=model),
        ask(2.0, settings=None, model=model),
    )
    assert not filled.fillers, filled.timeline
    extra = (filled.reply_start - filled.turn_end) - (plain.reply_start - plain.turn_end)
    assert extra <= 0.05, (filled.timeline, plain.timeline)


@pytest.mark.parametrize(
    ("values", "field_name"),
    [
        ({"after": 0}, "slow_answer.after"),
        ({"after": -1}, "slow_answer.after"),
        ({"after": "soon"}, "slow_answer.after"),
        ({"enabled": True, "phrases": []}, "slow_answer.phrases"),
        ({"clip": "no/such/clip.wav"}, "slow_answer.clip"),
    ],
)
def test_bad_slow_answer_settings_name_the_field_and_the_source(
    values: dict[str, Any], field_name: str
) -> None:
    from livekit_filler import FillerConfigError

    with pytest.raises(FillerConfigError) as info:
        FillerSettings.load(slow_answer=values)
    assert f"{field_name} = " in str(info.value)
    assert "(from argument)" in str(info.value)


def test_environment_variables_set_the_slow_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_SLOW_ANSWER__ENABLED", "true")
    monkeypatch.setenv("LIVEKIT_FILLER_SLOW_ANSWER__AFTER", "adaptive")
    settings = FillerSettings.load()
    assert settings.slow_answer.enabled and settings.slow_answer.after == "adaptive"
    monkeypatch.setenv("LIVEKIT_FILLER_SLOW_ANSWER__AFTER", "1.5")
    assert FillerSettings.load().slow_answer.after == 1.5


@pytest.mark.parametrize("value", ["0", "-2", "later", "nan"])
def test_a_bad_after_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from livekit_filler import FillerConfigError

    monkeypatch.setenv("LIVEKIT_FILLER_SLOW_ANSWER__AFTER", value)
    with pytest.raises(FillerConfigError) as info:
        FillerSettings.load()
    assert "slow_answer.after = " in str(info.value)
    assert "(from LIVEKIT_FILLER_SLOW_ANSWER__AFTER)" in str(info.value)


def test_an_empty_pool_in_the_config_file_names_the_file_and_key(tmp_path: Any) -> None:
    from livekit_filler import FillerConfigError

    path = tmp_path / "filler.toml"
    path.write_text("[slow_answer]\nenabled = true\nphrases = []\n", encoding="utf-8")
    with pytest.raises(FillerConfigError) as info:
        FillerSettings.load(config_file=path)
    assert f"(from {path}: slow_answer.phrases)" in str(info.value)


async def _caller_cuts_in(settings: FillerSettings | None) -> tuple[list[Utterance], float]:
    """The caller makes a sound 1.5 s after their turn ended (while the filler sounds)."""
    user = UserSpeechSimulator()
    fake_llm = FakeLLM({QUESTION: FakeResponse(text=REPLY, ttft=3.0)}, default=None)
    tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
    created: list[float] = []
    async with make_session(llm=fake_llm, tts=tts, **user.session_kwargs()) as session:
        rec = TimelineRecorder.install(session)
        user.install(session, timeline=rec)
        session.on("speech_created", lambda ev: created.append(rec.now()))
        if settings is not None:
            FillerController.attach(session, settings=settings)
        await session.start(Assistant())
        await user.say(QUESTION, duration=0.5)
        await wait_until(lambda: bool(created), 2.0)
        await asyncio.sleep(max(0.0, created[0] + 1.5 - rec.now()))
        cut_in = await user.say("", duration=0.4)  # a sound: no new user turn
        await asyncio.sleep(3.0)
        await settle(session, 0.05, timeout=5.0)
        history = [i.text_content for i in session.history.items if isinstance(i, llm.ChatMessage)]
        assert not any(text in PHRASES or text == LONG for text in history), history
    assert cut_in.started_at is not None
    return rec.utterances, cut_in.started_at - rec.t0


LONG = "Hmm, let me think about that for a little while longer."


async def test_the_caller_cuts_the_slow_answer_filler() -> None:
    """The caller speaks while the filler sounds: it stops at once, nothing of the agent
    sounds over them (the filler's cut-off tail aside), and the reply fares as without
    fillers (LiveKit's own handling of the sound decides whether it plays)."""
    (filled, spoke), (plain, _) = await asyncio.gather(
        _caller_cuts_in(slow_settings(phrases=[LONG])), _caller_cuts_in(None)
    )
    timeline = format_timeline(filled)
    (filler,) = [u for u in filled if u.kind == "filler"]
    assert filler.interrupted, timeline
    assert filler.end - spoke <= 0.1, timeline
    for a, b in overlaps(filled, include_user=True):
        if {a.speaker, b.speaker} == {"user", "agent"}:
            assert filler in (a, b), timeline
    replied = [REPLY in [u.text for u in run] for run in (filled, plain)]
    assert replied[0] == replied[1], (timeline, format_timeline(plain))


FOLLOW_UP = "Actually, what about the evening?"
FOLLOW_UP_REPLY = "The evening class suits beginners too."


async def _caller_asks_again(settings: FillerSettings | None, *, preemptive: bool) -> list[str]:
    """The caller asks again 0.6 s after their turn ended, while a filler is held for the
    slow reply; what the agent said, in order."""
    user = UserSpeechSimulator()
    script = {
        QUESTION: FakeResponse(text=REPLY, ttft=3.0),
        FOLLOW_UP: FakeResponse(text=FOLLOW_UP_REPLY, ttft=0.2),
    }
    kwargs: dict[str, Any] = dict(user.session_kwargs())
    kwargs["turn_handling"] = {
        **kwargs["turn_handling"],
        "preemptive_generation": {"enabled": preemptive},
    }
    created: list[float] = []
    async with make_session(
        llm=FakeLLM(script, default=None), tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC), **kwargs
    ) as session:
        rec = TimelineRecorder.install(session)
        user.install(session, timeline=rec)
        session.on("speech_created", lambda ev: created.append(rec.now()))
        if settings is not None:
            FillerController.attach(session, settings=settings)
        await session.start(Assistant())
        await user.say(QUESTION, duration=0.5)
        await wait_until(lambda: bool(created), 2.0)
        await asyncio.sleep(max(0.0, created[0] + 0.6 - rec.now()))
        await user.say(FOLLOW_UP, duration=0.5)
        with contextlib.suppress(asyncio.TimeoutError):
            await wait_until(lambda: any(u.text == FOLLOW_UP_REPLY for u in rec.utterances), 4.0)
        await settle(session, 0.05, timeout=5.0)
    return [u.text for u in rec.utterances if u.speaker == "agent" and u.kind == "speech"]


@pytest.mark.parametrize("preemptive", [False, True])
async def test_a_held_filler_never_makes_livekit_skip_the_callers_next_turn(
    preemptive: bool,
) -> None:
    """Fillers not interruptible: the caller asks again while the slow-answer filler is held
    for a slow reply. The filler stands in the reply's place, so it is interruptible as the
    reply is: LiveKit answers the new turn as without fillers (an uninterruptible current
    speech makes it skip the turn: "cannot be interrupted")."""
    filled, plain = await asyncio.gather(
        _caller_asks_again(slow_settings(interruptible=False), preemptive=preemptive),
        _caller_asks_again(None, preemptive=preemptive),
    )
    assert FOLLOW_UP_REPLY in plain, plain
    assert filled == plain, (filled, plain)


async def test_adaptive_after_learns_the_sessions_reply_leads() -> None:
    """``after = "adaptive"``: three quick replies (first token 0.3 s) are timed, so a slow
    fourth one gets its filler after the adaptive floor (0.6 s), not after 1.2 s."""
    from livekit_filler.turn_leads import ADAPTIVE_MIN

    user = UserSpeechSimulator()
    questions = [f"Question number {n}?" for n in range(4)]
    script = {q: FakeResponse(text=f"Answer {n}.", ttft=0.3) for n, q in enumerate(questions)}
    script[questions[-1]] = FakeResponse(text=REPLY, ttft=2.0)
    created: list[float] = []
    tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
    async with make_session(
        llm=FakeLLM(script, default=None), tts=tts, **user.session_kwargs()
    ) as session:
        rec = TimelineRecorder.install(session)
        user.install(session, timeline=rec)
        session.on(
            "speech_created",
            lambda ev: created.append(rec.now()) if ev.source == "generate_reply" else None,
        )
        controller = FillerController.attach(session, settings=slow_settings(after="adaptive"))
        await session.start(Assistant())
        for n, question in enumerate(questions):
            await user.say(question, duration=0.4)
            done = REPLY if n == len(questions) - 1 else f"Answer {n}."
            await wait_until(partial(_played, rec, done), 4.0)
            await settle(session, 0.1, timeout=5.0)
        utterances = rec.utterances
        leads = controller._slow_answer.leads.leads()
    timeline = format_timeline(utterances)
    assert len(leads) == 4 and all(0.3 <= lead <= 0.6 for lead in leads[:3]), (leads, timeline)
    (filler,) = [u for u in utterances if u.kind == "filler"]
    start = filler.start - created[-1]
    assert ADAPTIVE_MIN <= start <= ADAPTIVE_MIN + 0.3, timeline


def _played(rec: TimelineRecorder, text: str) -> bool:
    return any(u.text == text for u in rec.utterances)


GREETING = "Great, let me take your details."
DONE = "All set, your details are noted."


class _Details(AgentTask[None]):
    def __init__(self) -> None:
        super().__init__(instructions="Collect the caller's details.")

    async def on_enter(self) -> None:
        await self.session.generate_reply(instructions="Greet the caller.")  # slow: 2 s
        self.complete(None)


class _Specialist(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are the specialist desk.")

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions="Greet the caller.")  # slow: 2 s


class _Desk(Agent):
    def __init__(self, how: str) -> None:
        super().__init__(instructions="You are a front desk.")
        self._how = how

    @function_tool
    async def take_details(self, context: RunContext[Any]) -> Any:
        """Take the caller's details."""
        if self._how == "handoff":
            return _Specialist(), "handed over"
        await _Details()
        return "details taken"


def _desk_script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.ChatMessage) and last.role == "user" and last.text_content == QUESTION:
        return FakeResponse(tool_calls=[FakeToolCall("take_details")], ttft=0.05)
    if isinstance(last, llm.FunctionCallOutput):
        return FakeResponse(text=DONE, ttft=0.05)
    return FakeResponse(text=GREETING, ttft=2.0)  # the new agent's first words


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("how", ["agent_task", "handoff"])
async def test_no_slow_answer_filler_into_a_new_agents_first_words(how: str, model: Model) -> None:
    """A user turn's tool starts an AgentTask, or hands the call to another agent, whose
    first words are slow (2 s): they are not a user turn's reply, and no slow-answer filler
    is said into them (on a realtime model LiveKit requests them, which no filler precedes)."""
    user = UserSpeechSimulator()
    events: list[FillerEvent] = []
    tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
    realtime = FakeRealtimeModel(_desk_script, default=None, turn_detection=True)
    if model == "realtime":
        session_cm = make_session(llm=realtime, tts=None)
    else:
        session_cm = make_session(
            llm=FakeLLM(_desk_script, default=None), tts=tts, **user.session_kwargs()
        )
    async with session_cm as session:
        rec = TimelineRecorder.install(session)
        voice = tts if model == "realtime" else None
        controller = FillerController.attach(session, settings=slow_settings(), tts=voice)
        controller.on("filler_played", events.append)
        await session.start(_Desk(how))
        if model == "realtime":
            await realtime.current.user_speaks(QUESTION, duration=0.5)
        else:
            user.install(session, timeline=rec)
            await user.say(QUESTION, duration=0.5)
        last = DONE if how == "agent_task" else GREETING
        await wait_until(partial(_played, rec, last), 8.0)
        await settle(session, 0.05, timeout=5.0)
        utterances = rec.utterances
    timeline = format_timeline(utterances)
    assert GREETING in [u.text for u in utterances], timeline
    assert not [u for u in utterances if u.kind == "filler"], timeline
    assert not [e for e in events if e.kind == "slow_answer"], timeline


class _Lookup(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a front desk.")

    @function_tool
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up."""
        await asyncio.sleep(1.0)
        return "looked up"


def _lookup_script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.FunctionCallOutput):
        return FakeResponse(text=DONE, ttft=0.05)
    return FakeResponse(tool_calls=[FakeToolCall("look_up")], ttft=0.05)


@pytest.mark.parametrize("model", MODELS)
async def test_a_turn_whose_reply_waits_for_a_tool_is_not_a_reply_lead(model: Model) -> None:
    """The reply of a turn that called a tool sounds after the tool: that wait is the
    tool's, and it must not teach the adaptive delay that replies are slow. The tool call
    lets the held filler go (``answer_ready``): no slow-answer filler sounds."""
    user = UserSpeechSimulator()
    tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
    realtime = FakeRealtimeModel(_lookup_script, default=None, turn_detection=True)
    events: list[FillerEvent] = []
    if model == "realtime":
        session_cm = make_session(llm=realtime, tts=None)
    else:
        session_cm = make_session(
            llm=FakeLLM(_lookup_script, default=None), tts=tts, **user.session_kwargs()
        )
    async with session_cm as session:
        rec = TimelineRecorder.install(session)
        settings = slow_settings(after="adaptive")
        if model == "realtime":
            controller = FillerController.attach(session, settings=settings, tts=tts)
        else:
            user.install(session, timeline=rec)
            controller = FillerController.attach(session, settings=settings)
        for name in ("filler_played", "filler_skipped"):
            controller.on(name, events.append)
        await session.start(_Lookup())
        if model == "realtime":
            await realtime.current.user_speaks(QUESTION, duration=0.5)
        else:
            await user.say(QUESTION, duration=0.5)
        await wait_until(partial(_played, rec, DONE), 6.0)
        await settle(session, 0.05, timeout=5.0)
        leads = controller._slow_answer.leads.leads()
    assert leads == [], leads
    slow = [(e.type, e.reason) for e in events if e.kind == "slow_answer"]
    assert slow == [("filler_skipped", "answer_ready")], (slow, format_timeline(rec.utterances))


@pytest.mark.parametrize("model", MODELS)
async def test_slow_answer_fillers_are_spans_of_their_kind(
    exporter: InMemorySpanExporter, model: Model
) -> None:
    """A played slow-answer filler is a ``filler`` span, a held one let go a
    ``filler_skipped`` span, both with ``lk.filler.kind = slow_answer``."""
    slow, fast = await asyncio.gather(
        ask(2.2, settings=slow_settings(), model=model),
        ask(0.2, settings=slow_settings(), model=model),
    )
    assert len(slow.fillers) == 1 and not fast.fillers, (slow.timeline, fast.timeline)
    spans = exporter.get_finished_spans()
    played = [s for s in spans if s.name == "filler"]
    skipped = [s for s in spans if s.name == "filler_skipped"]
    assert [(s.attributes or {}).get(ATTR_KIND) for s in played] == ["slow_answer"]
    assert [
        ((s.attributes or {}).get(ATTR_KIND), (s.attributes or {}).get(ATTR_REASON))
        for s in skipped
    ] == [("slow_answer", "answer_ready")]


# -- realtime models: what differs ---------------------------------------------------------------


async def _realtime_caller_cuts_in(
    settings: FillerSettings | None,
) -> tuple[list[Utterance], float]:
    """The caller makes a sound 1.5 s after their turn ended (while the filler sounds), heard
    by the realtime model's server-side turn detection."""
    model = FakeRealtimeModel(
        {QUESTION: FakeResponse(text=REPLY, ttft=3.0)}, default=None, turn_detection=True
    )
    created: list[float] = []
    async with make_session(llm=model, tts=None) as session:
        rec = TimelineRecorder.install(session)
        session.on("speech_created", lambda ev: created.append(rec.now()))
        if settings is not None:
            voice = FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
            FillerController.attach(session, settings=settings, tts=voice)
        await session.start(Assistant())
        await model.current.user_speaks(QUESTION, duration=0.5)
        await wait_until(lambda: bool(created), 2.0)
        await asyncio.sleep(max(0.0, created[0] + 1.5 - rec.now()))
        spoke = rec.now()
        await model.current.user_speaks("", duration=0.4)  # a sound: no new reply
        rec.add_user_utterance("", spoke, rec.now())
        await asyncio.sleep(3.0)
        await settle(session, 0.05, timeout=5.0)
        texts = model.conversation_texts()
        assert not any(text in PHRASES or text == LONG for text in texts), texts
    return rec.utterances, spoke


async def test_the_caller_cuts_the_slow_answer_filler_on_a_realtime_model() -> None:
    """The model's server-side turn detection hears the caller while the filler sounds: the
    filler stops at once (LiveKit interrupts the reply too, with fillers or without)."""
    (filled, spoke), (plain, _) = await asyncio.gather(
        _realtime_caller_cuts_in(slow_settings(phrases=[LONG])), _realtime_caller_cuts_in(None)
    )
    timeline = format_timeline(filled)
    (filler,) = [u for u in filled if u.kind == "filler"]
    assert filler.start < spoke and filler.interrupted, timeline
    assert filler.end - spoke <= 0.1, timeline
    replied = [REPLY in [u.text for u in run] for run in (filled, plain)]
    assert replied[0] == replied[1], (timeline, format_timeline(plain))


async def _requested(settings: FillerSettings | None) -> Turn:
    """A realtime model without server-side turn detection: LiveKit's VAD and STT end the
    user's turn and LiveKit requests the reply (2 s to its first audio) from the model."""
    user = UserSpeechSimulator()
    model = FakeRealtimeModel(default=FakeResponse(text=REPLY, ttft=2.0))
    events: list[FillerEvent] = []
    created: list[float] = []
    async with make_session(llm=model, tts=None, **user.session_kwargs()) as session:
        rec = TimelineRecorder.install(session)
        user.install(session, timeline=rec)
        session.on(
            "speech_created",
            lambda ev: created.append(rec.now()) if ev.source == "generate_reply" else None,
        )
        if settings is not None:
            voice = FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
            controller = FillerController.attach(session, settings=settings, tts=voice)
            for name in ("filler_played", "filler_skipped", "filler_cut"):
                controller.on(name, events.append)
        await session.start(Assistant())
        await user.say(QUESTION, duration=0.5)
        await wait_until(partial(_played, rec, REPLY), 6.0)
        await settle(session, 0.05, timeout=5.0)
        utterances = rec.utterances
    assert created, format_timeline(utterances)
    return Turn(utterances, created[0], model.conversation_texts(), events)


async def test_a_reply_livekit_requests_from_a_realtime_model_gets_no_filler() -> None:
    """LiveKit requests this reply from the model only once it holds the floor: a filler
    queued ahead would delay the request, so none is said (``requested_reply``), and the
    reply comes as without fillers."""
    filled, plain = await asyncio.gather(_requested(slow_settings()), _requested(None))
    assert not filled.fillers, filled.timeline
    assert [(e.type, e.kind, e.reason) for e in filled.events] == [
        ("filler_skipped", "slow_answer", "requested_reply")
    ], filled.events
    extra = (filled.reply_start - filled.turn_end) - (plain.reply_start - plain.turn_end)
    assert extra <= 0.05, (filled.timeline, plain.timeline)


class _LastFirstSession(FakeRealtimeSession):
    """Calls the latest ``generation_created`` listener first (livekit-rtc before 1.1.21
    keeps listeners in a set: either order happens)."""

    def __init__(self, model: FakeRealtimeModel) -> None:
        super().__init__(model)
        self._listeners: list[Callable[..., Any]] = []

    def on(self, event: Any, callback: Any = None) -> Any:
        if event == "generation_created" and callback is not None:
            self._listeners.append(callback)
            return callback
        return super().on(event, callback)

    def off(self, event: Any, callback: Any) -> None:
        if event == "generation_created":
            self._listeners.remove(callback)
            return
        super().off(event, callback)

    def emit(self, event: Any, *args: Any) -> None:
        if event == "generation_created":
            for callback in reversed(list(self._listeners)):
                callback(*args)
            return
        super().emit(event, *args)


class _LastFirstModel(FakeRealtimeModel):
    def session(self, *, turn_detection_disabled: bool = False) -> FakeRealtimeSession:
        session = _LastFirstSession(self)
        self.sessions.append(session)
        return session


async def test_the_generation_is_found_whichever_listener_runs_first() -> None:
    """The controller's ``generation_created`` listener runs before LiveKit's (which creates
    the reply's speech): the held filler still follows the generation, sounding for a slow
    reply and letting a fast one go as ``answer_ready``."""
    slow, fast = await asyncio.gather(
        ask(2.2, settings=slow_settings(), model="realtime", realtime_class=_LastFirstModel),
        ask(0.2, settings=slow_settings(), model="realtime", realtime_class=_LastFirstModel),
    )
    assert len(slow.fillers) == 1, slow.timeline
    assert 1.2 <= slow.fillers[0].start - slow.turn_end <= 1.5, slow.timeline
    assert not fast.fillers, fast.timeline
    assert [(e.type, e.reason) for e in fast.events] == [("filler_skipped", "answer_ready")]
