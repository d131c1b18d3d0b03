"""Behaviour of FillerController against a real AgentSession driven by the testing kit.

Every test runs a real ``AgentSession`` (FakeLLM, FakeTTS, FakeAudioOutput through a
TimelineRecorder) in real time, and asserts on what was actually audible and when.
Times in assertions are seconds after the recorder's ``t0``. Filler audio is cached
process-wide by text and TTS identity (livekit_filler/sound_cache.py), so the phrases here are
not used by other test modules with another TTS pace.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest
from filler_harness import (
    ANSWER,
    EPS,
    LLM_TTFT,
    LONG_FILLER,
    PARALLEL_QUESTION,
    QUESTION,
    RESULT,
    SPC,
    TTFB,
    Assistant,
    FillerAgent,
    phrase_settings,
    run_tool,
    script,
    settle,
    sleeping,
    texts,
    wait_for_playing_filler,
    wait_until,
)
from livekit.agents import (
    Agent,
    AgentTask,
    RunContext,
    function_tool,
    llm,
)

from livekit_filler import FillerController, FillerSettings, fillers, is_filler_speech
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    first_after,
    format_timeline,
    make_session,
    overlaps,
)
from livekit_filler.testing.fake_user import UserSpeechSimulator

FILLER = "Hang on, checking."  # 0.36 s of audio
FOLLOWUP = "Still checking it."  # 0.36 s
REAL = "A real update."


def filler_settings(**overrides: Any) -> FillerSettings:
    return phrase_settings(FILLER, FOLLOWUP, **overrides)


# -- attaching and detaching -------------------------------------------------------------------


async def test_attach_twice_returns_the_same_controller_and_of_finds_it() -> None:
    session = make_session(llm=FakeLLM(), tts=None)
    assert FillerController.of(session) is None
    settings = filler_settings()
    first = FillerController.attach(session, settings=settings)
    assert FillerController.attach(session) is first
    assert FillerController.attach(session, settings=filler_settings()) is first  # equal settings
    assert FillerController.of(session) is first
    assert first.session is session
    assert first.settings == settings
    assert not first.closed
    await first.aclose()


async def test_attach_with_conflicting_settings_raises_value_error() -> None:
    session = make_session(llm=FakeLLM(), tts=None)
    controller = FillerController.attach(session, settings=filler_settings(delay=0.3))
    with pytest.raises(ValueError, match="other settings"):
        FillerController.attach(session, settings=filler_settings(delay=0.9))
    assert FillerController.of(session) is controller
    await controller.aclose()


async def test_attach_rejects_a_non_session_or_non_settings_with_type_error() -> None:
    with pytest.raises(TypeError, match="AgentSession"):
        FillerController.attach(object())  # type: ignore[arg-type]
    session = make_session(llm=FakeLLM(), tts=None)
    with pytest.raises(TypeError, match="FillerSettings"):
        FillerController.attach(session, settings={"delay": 1.0})  # type: ignore[arg-type]
    assert FillerController.of(session) is None


async def test_aclose_detaches_is_idempotent_and_a_later_attach_is_a_new_controller() -> None:
    session = make_session(llm=FakeLLM(), tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC))
    controller = FillerController.attach(session, settings=filler_settings())
    await controller.aclose()
    assert controller.closed
    assert FillerController.of(session) is None
    await controller.aclose()  # idempotent
    assert controller.say_filler() is None
    fresh = FillerController.attach(session, settings=filler_settings(delay=0.9))
    assert fresh is not controller
    assert FillerController.of(session) is fresh
    await fresh.aclose()


async def test_a_controller_made_by_a_decorated_call_says_once_that_attach_prerenders(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_llm = FakeLLM(script, default=None, ttft=LLM_TTFT)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as session:
        rec = TimelineRecorder.install(session)
        await session.start(FillerAgent(rec, sleeping(0.3)))
        for _ in range(2):
            await session.run(user_input=QUESTION)
            await settle(session)
        assert FillerController.of(session) is not None  # the decorator attached one
    said = [r for r in caplog.records if "by the first decorated call" in r.getMessage()]
    assert [r.levelname for r in said] == ["INFO"], said
    assert "FillerController.attach(session)" in said[0].getMessage()


async def test_after_aclose_decorated_tools_stay_quiet_until_attached_again() -> None:
    fake_llm = FakeLLM(script, default=None, ttft=LLM_TTFT)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as session:
        await FillerController.attach(session, settings=filler_settings()).aclose()
        rec = TimelineRecorder.install(session)
        await session.start(FillerAgent(rec, sleeping(0.8)))
        await session.run(user_input=QUESTION)
        await settle(session)
        assert FillerController.of(session) is None  # the decorator did not attach a new one
        assert [u.kind for u in rec.utterances] == ["speech"]
        FillerController.attach(session, settings=filler_settings())
        await session.run(user_input=QUESTION)
        await settle(session)
        assert "filler" in [u.kind for u in rec.utterances]


async def test_session_close_detaches_the_controller_and_leaves_no_task() -> None:
    # the autouse fixture fails this test if any task (prerender, stream) outlives it
    async with make_session(llm=FakeLLM(), tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as s:
        controller = FillerController.attach(s, settings=filler_settings())
        TimelineRecorder.install(s)
        await s.start(Assistant())
        assert FillerController.of(s) is controller
    assert controller.closed
    assert FillerController.of(s) is None


# -- when fillers play ------------------------------------------------------------------------


async def test_tool_faster_than_delay_gets_no_filler() -> None:
    run = await run_tool(sleeping(0.15), settings=filler_settings(delay=0.4))
    assert run.fillers == [], run.timeline
    assert run.said(ANSWER).start >= run.marker("slow_tool_end")


async def test_slow_tool_first_filler_after_delay_then_interval_gaps_at_most_max_count() -> None:
    delay, interval, max_count = 0.2, 0.4, 2
    # ~1.9 s of tool time would fit a third filler at ~1.8 s: only max_count stops it
    run = await run_tool(
        sleeping(1.9), settings=filler_settings(delay=delay, interval=interval, max_count=2)
    )
    fillers_ = run.fillers
    assert len(fillers_) == max_count, run.timeline
    start = run.marker("slow_tool_start")
    # not before the delay, and soon after it (the TTS's time to first byte at most)
    assert start + delay - EPS <= fillers_[0].start <= start + delay + TTFB + 0.1, run.timeline
    assert fillers_[0].text == FILLER
    assert fillers_[1].text == FOLLOWUP
    for before, after in itertools.pairwise(fillers_):
        assert not before.interrupted
        gap = after.start - before.end
        assert interval - EPS <= gap <= interval + TTFB + 0.1, run.timeline
    assert all(f.end <= run.marker("slow_tool_end") + 0.1 for f in fillers_)
    assert overlaps(run.utterances) == []


async def test_fillers_stay_out_of_history_llm_context_and_run_events_and_are_marked() -> None:
    run = await run_tool(sleeping(1.0), settings=filler_settings(max_count=1))
    assert [f.text for f in run.fillers] == [FILLER], run.timeline
    # the recorder labels speech "filler" from the library's marks, not from the text
    assert all(u.kind == "speech" for u in run.utterances if u.text == ANSWER)
    assert ANSWER in run.history
    assert FILLER not in run.history
    assert not any(FILLER in t for t in run.llm_texts)
    assert FILLER not in run.run_texts
    assert ANSWER in run.run_texts


async def test_answer_cuts_a_playing_filler_and_the_reply_is_not_later_than_without() -> None:
    settings = filler_settings(delay=0.3, phrases=[LONG_FILLER], followup_phrases=[])
    # the tool returns ~0.4 s into a 1.1 s filler
    base, run = await asyncio.gather(
        run_tool(sleeping(0.75), settings=None, decorated=False),
        run_tool(sleeping(0.75), settings=settings),
    )
    (filler,) = run.fillers
    tool_end = run.marker("slow_tool_end")
    assert filler.start < tool_end, run.timeline
    assert filler.interrupted, run.timeline
    assert filler.end - tool_end <= 0.1, run.timeline
    base_latency = base.said(ANSWER).start - base.marker("slow_tool_end")
    latency = run.said(ANSWER).start - tool_end
    assert latency - base_latency <= 0.1, f"{latency=:.3f} {base_latency=:.3f}\n{run.timeline}"
    assert overlaps(run.utterances) == []


async def test_on_answer_finish_lets_the_filler_end_and_the_reply_follows_it() -> None:
    settings = filler_settings(
        delay=0.3, phrases=[LONG_FILLER], followup_phrases=[], on_answer="finish"
    )
    run = await run_tool(sleeping(0.75), settings=settings)
    (filler,) = run.fillers
    assert filler.start < run.marker("slow_tool_end") < filler.end, run.timeline
    assert not filler.interrupted
    assert filler.duration >= len(LONG_FILLER) * SPC - EPS
    assert run.said(ANSWER).start >= filler.end
    assert overlaps(run.utterances) == []


async def test_real_speech_created_during_a_filler_cuts_it_and_is_not_delayed() -> None:
    async def body(context: RunContext[Any]) -> str:
        rec = context.session.current_agent.rec  # type: ignore[attr-defined]
        await wait_for_playing_filler(context.session, rec)
        await asyncio.sleep(0.1)
        rec.mark("real_say")
        context.session.say(REAL)
        await asyncio.sleep(0.6)
        return RESULT

    run = await run_tool(
        body, settings=filler_settings(phrases=[LONG_FILLER], followup_phrases=[], max_count=1)
    )
    (filler,) = run.fillers
    real = run.said(REAL)
    assert filler.interrupted, run.timeline
    # the rest of the 1.1 s filler would have delayed it by ~0.9 s
    assert real.start - run.marker("real_say") <= TTFB + 0.1, run.timeline
    assert overlaps(run.utterances) == []


async def test_parallel_tool_calls_share_one_filler_stream_capped_at_max_count() -> None:
    # each call alone would have time for three fillers
    run = await run_tool(
        sleeping(1.7),
        other=sleeping(1.8),
        settings=filler_settings(interval=0.2, max_count=2),
        question=PARALLEL_QUESTION,
    )
    assert "other_tool_start" in run.markers
    assert len(run.fillers) == 2, run.timeline
    assert overlaps(run.utterances) == []
    assert run.said(ANSWER).start >= run.marker("other_tool_end")


async def test_fillers_go_on_until_the_slower_of_two_parallel_calls_returns() -> None:
    run = await run_tool(
        sleeping(0.1),
        other=sleeping(1.2),
        settings=filler_settings(max_count=3),
        question=PARALLEL_QUESTION,
    )
    fast_end = run.marker("slow_tool_end")
    assert run.fillers, run.timeline
    assert all(f.start > fast_end for f in run.fillers)
    assert overlaps(run.utterances) == []


async def test_progress_update_stops_the_tools_fillers() -> None:
    async def body(context: RunContext[Any]) -> str:
        await asyncio.sleep(0.1)
        await context.update("Still searching the archive.")
        context.session.current_agent.rec.mark("update")  # type: ignore[attr-defined]
        await asyncio.sleep(1.2)
        return RESULT

    fake_llm = FakeLLM(script, default=FakeResponse(text="Okay."), ttft=LLM_TTFT)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as session:
        FillerController.attach(session, settings=filler_settings())
        rec = TimelineRecorder.install(session)
        await session.start(FillerAgent(rec, body))
        await session.run(user_input=QUESTION)
        await wait_until(lambda: any(u.text == ANSWER for u in rec.utterances), 3.0)
        await settle(session)
        utterances = rec.utterances
    timeline = format_timeline(utterances)
    assert "Okay." in [u.text for u in utterances], timeline  # the LLM's reply to the update
    # without the stop, fillers would play from ~0.7 s until the tool returns at ~1.35 s
    assert [u for u in utterances if u.kind == "filler"] == [], timeline
    assert overlaps(utterances) == []


# -- say_filler() -------------------------------------------------------------------------------


async def test_say_filler_speaks_when_idle_and_returns_none_while_busy_or_closed() -> None:
    session = make_session(llm=FakeLLM(), tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC))
    controller = FillerController.attach(session, settings=filler_settings())
    assert controller.say_filler() is None  # not started: no activity
    async with session:
        rec = TimelineRecorder.install(session)
        await session.start(Assistant())
        handle = controller.say_filler()
        assert handle is not None
        assert is_filler_speech(handle)
        await asyncio.sleep(0.1)
        assert controller.say_filler() is None  # the first one is playing
        await handle
        real = session.say(LONG_FILLER)
        await asyncio.sleep(0.2)
        assert controller.say_filler() is None
        await real
        custom = controller.say_filler("Custom words.")
        assert custom is not None
        await custom
        with pytest.raises(ValueError, match="non-empty"):
            controller.say_filler("  ")
        history = texts(session.history.items)
    assert controller.say_filler() is None  # closed with the session
    assert [(u.text, u.kind) for u in rec.utterances] == [
        (FILLER, "filler"),
        (LONG_FILLER, "speech"),
        ("Custom words.", "filler"),
    ]
    assert history == [LONG_FILLER]


async def test_say_filler_right_after_the_previous_speech_finished_speaks() -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as s:
        controller = FillerController.attach(s, settings=filler_settings())
        TimelineRecorder.install(s)
        await s.start(Assistant())
        await s.say("Hello.")
        handle = controller.say_filler()
        if handle is not None:
            await handle
    assert handle is not None


async def test_say_filler_returns_none_while_speech_is_queued_but_not_yet_playing() -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as s:
        controller = FillerController.attach(s, settings=filler_settings())
        TimelineRecorder.install(s)
        await s.start(Assistant())
        real = s.say(REAL)
        after_real = controller.say_filler()
        await real
        if after_real is not None:
            await after_real
        first = controller.say_filler()
        second = controller.say_filler()
        for handle in (first, second):
            if handle is not None:
                await handle
    assert after_real is None
    assert first is not None
    assert second is None


async def test_say_filler_speech_gives_way_to_real_speech() -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as s:
        controller = FillerController.attach(s, settings=filler_settings())
        rec = TimelineRecorder.install(s)
        await s.start(Assistant())
        handle = controller.say_filler(LONG_FILLER)
        assert handle is not None
        await asyncio.sleep(0.3)
        rec.mark("real_say")
        await s.say(REAL)
        await settle(s, 0.05)
        utterances = rec.utterances
    real = next(u for u in utterances if u.text == REAL)
    assert handle.interrupted, format_timeline(utterances)
    assert real.start - rec.markers["real_say"][0] <= TTFB + 0.1, format_timeline(utterances)


PROGRAMS_QUESTION = "What programs do you have?"
TASK_GREETING = "Great, let me note that down."
PROGRAMS_ANSWER = "We have Giants and Hustlers."
POKE = "Poke filler."


class CollectAge(AgentTask[int]):
    def __init__(self) -> None:
        super().__init__(instructions="Collect the age of the child.")

    async def on_enter(self) -> None:
        await self.session.generate_reply(user_input=PROGRAMS_QUESTION)

    @function_tool
    async def record_age(self, age: int) -> None:
        """Record the child's age."""
        self.complete(age)


class FrontDesk(Agent):
    def __init__(self, tool_duration: float) -> None:
        super().__init__(instructions="You are a front desk agent.")
        self._tool_duration = tool_duration
        self.task: CollectAge | None = None

    @function_tool
    @fillers()
    async def get_programs(self, context: RunContext[Any]) -> str:
        """Look up the programs."""
        await asyncio.sleep(self._tool_duration)
        self.task = CollectAge()
        age = await self.task
        return f"programs for age {age}"


def programs_script(rng: random.Random) -> Callable[[llm.ChatContext], FakeResponse | None]:
    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        last = chat_ctx.items[-1]
        in_task = any(
            isinstance(i, llm.ChatMessage) and "Collect the age" in (i.text_content or "")
            for i in chat_ctx.items
        )
        ttft = rng.uniform(0.03, 0.25)
        if isinstance(last, llm.FunctionCallOutput):
            if last.name == "get_programs":
                return FakeResponse(text=PROGRAMS_ANSWER, ttft=ttft)
            return FakeResponse(text="", ttft=ttft)
        if in_task:
            return FakeResponse(
                text=TASK_GREETING, tool_calls=[FakeToolCall("record_age", {"age": 7})], ttft=ttft
            )
        preamble = "Sure, let me check." if rng.random() < 0.4 else ""
        return FakeResponse(text=preamble, tool_calls=[FakeToolCall("get_programs")], ttft=ttft)

    return respond


async def _poke_programs_flow(seed: int) -> dict[str, list[str]]:
    """One programs-like flow with say_filler() called at random moments; problems by kind."""
    rng = random.Random(seed)
    problems: dict[str, list[str]] = {"errors": []}
    fake_llm = FakeLLM(programs_script(rng), default=None)
    tts = FakeTTS(ttfb=rng.uniform(0.02, 0.15), seconds_per_char=rng.uniform(0.01, 0.025))
    agent = FrontDesk(tool_duration=rng.uniform(0.0, 0.8))
    # phrases of its own: filler audio is cached process-wide by text, and this TTS's pace varies
    settings = filler_settings(
        delay=rng.uniform(0.2, 0.5),
        interval=0.3,
        phrases=["Programs flow filler."],
        followup_phrases=["Programs flow follow-up."],
    )
    async with make_session(llm=fake_llm, tts=tts) as session:
        controller = FillerController.attach(session, settings=settings)
        rec = TimelineRecorder.install(session)
        await session.start(agent)
        done = asyncio.Event()
        returned: list[str] = []
        in_task_ids: set[str] = set()

        async def poke() -> None:
            while not done.is_set():
                await asyncio.sleep(rng.uniform(0.005, 0.06))
                try:
                    handle = controller.say_filler(POKE)
                except Exception as e:
                    problems["errors"].append(f"say_filler raised {type(e).__name__}: {e}")
                    continue
                if handle is not None:
                    returned.append(type(session.current_agent).__name__)
                    if returned[-1] != "FrontDesk":
                        in_task_ids.add(handle.id)

        poker = asyncio.create_task(poke())
        try:
            await session.run(user_input=PROGRAMS_QUESTION)
            await wait_until(lambda: any(u.text == PROGRAMS_ANSWER for u in rec.utterances), 6.0)
        except TimeoutError:
            problems["errors"].append("the final answer never played")
        finally:
            done.set()
            await poker
        await settle(session, 0.02)
        utterances = rec.utterances
        history = texts(session.history.items)
    task_history = texts(agent.task.chat_ctx.items) if agent.task is not None else []
    if POKE in history or POKE in task_history:
        problems["errors"].append("a say_filler() filler reached a chat history")
    if bad := overlaps(utterances):
        problems["errors"].append(f"overlaps: {bad}")
    # never a filler into the task: none returned while it is in charge, and none asked for
    # while FrontDesk was in charge sounds once the task is
    if in_task_ids:
        problems["errors"].append("say_filler() returned a handle while CollectAge was in charge")
    for seg in rec.audio_output.segments:
        if seg.kind == "filler" and seg.agent != "FrontDesk":
            problems["errors"].append(f"filler {seg.text!r} played once {seg.agent} was in charge")
    return problems


_POKE_SEEDS = list(range(30))


async def test_say_filler_at_random_moments_never_raises_nor_speaks_into_an_agent_task() -> None:
    results = await asyncio.gather(*(_poke_programs_flow(seed) for seed in _POKE_SEEDS))
    failures = {
        seed: p["errors"] for seed, p in zip(_POKE_SEEDS, results, strict=True) if p["errors"]
    }
    assert not failures, "\n".join(f"seed {s}: {p}" for s, p in failures.items())


class ProbingTask(AgentTask[int]):
    """Calls say_filler() as it starts and once idle, then completes."""

    def __init__(self, controller: FillerController, seen: dict[str, bool]) -> None:
        super().__init__(instructions="Collect the age of the child.")
        self._controller = controller
        self._seen = seen

    async def on_enter(self) -> None:
        self._seen["task on_enter"] = self._controller.say_filler(POKE) is not None
        await asyncio.sleep(0.2)
        self._seen["task idle"] = self._controller.say_filler(POKE) is not None
        self.complete(7)


class ProbingDesk(Agent):
    def __init__(self, controller: FillerController, seen: dict[str, bool]) -> None:
        super().__init__(instructions="You are a front desk agent.")
        self._controller = controller
        self._seen = seen

    @function_tool
    async def get_programs(self, context: RunContext[Any]) -> str:
        """Look up the programs."""
        loop = asyncio.get_running_loop()
        probe = self._controller.say_filler

        def when_the_hand_off_starts() -> None:
            self._seen["hand-off"] = probe(POKE) is not None

        # runs at the await's first yield, when the parent activity is pausing
        loop.call_soon(when_the_hand_off_starts)
        age = await ProbingTask(self._controller, self._seen)
        return f"programs for age {age}"


async def _probe_agent_task() -> dict[str, bool]:
    seen: dict[str, bool] = {}
    fake_llm = FakeLLM(programs_script(random.Random(0)), default=None)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as s:
        controller = FillerController.attach(s, settings=filler_settings())
        TimelineRecorder.install(s)
        await s.start(ProbingDesk(controller, seen))
        await s.run(user_input=PROGRAMS_QUESTION)
        await wait_until(lambda: len(seen) == 3)
        await settle(s, 0.02)
    return seen


async def test_say_filler_returns_none_when_an_agent_task_hand_off_starts() -> None:
    seen = await _probe_agent_task()
    assert seen["hand-off"] is False


async def test_say_filler_returns_none_while_an_agent_task_is_in_charge() -> None:
    seen = await _probe_agent_task()
    assert seen == {"hand-off": False, "task on_enter": False, "task idle": False}


# -- the user -------------------------------------------------------------------------------


async def test_user_speech_cuts_a_filler_and_the_dwell_restarts_after_the_user_stops() -> None:
    interval = 0.45  # the delay is 0.3
    user = UserSpeechSimulator()
    fake_llm = FakeLLM(script, default=None, ttft=LLM_TTFT)
    settings = filler_settings(
        interval=interval, max_count=2, phrases=[LONG_FILLER], followup_phrases=[FOLLOWUP]
    )
    heard: list[tuple[float, float]] = []

    async def body(context: RunContext[Any]) -> str:
        rec = context.session.current_agent.rec  # type: ignore[attr-defined]
        await wait_for_playing_filler(context.session, rec)
        await asyncio.sleep(0.1)
        # a noise with no words: the user talks, but no user turn cancels the tool
        utterance = await user.say("", duration=0.5)
        assert utterance.started_at is not None and utterance.ended_at is not None
        heard.append((utterance.started_at - rec.t0, utterance.ended_at - rec.t0))
        await asyncio.sleep(1.0)
        return RESULT

    run = await run_tool(body, settings=settings, fake_llm=fake_llm, user=user)
    utterances, timeline = run.utterances, run.timeline
    (spoke, silent) = heard[0]
    first, second = [u for u in utterances if u.kind == "filler"]
    assert first.interrupted, timeline
    assert first.end - spoke <= 0.1, timeline
    assert second.text == FOLLOWUP
    assert second.start >= silent + interval - EPS, timeline
    # nothing the agent said overlapped the user, except the filler's cut-off tail
    for a, b in overlaps(utterances, include_user=True):
        if {a.speaker, b.speaker} == {"user", "agent"}:
            assert (a if a.speaker == "agent" else b) == first, timeline
    assert first_after(utterances, spoke, kind="filler") == second
