"""Faults around fillers: failing or hanging TTS, closing sessions, failing or cancelled tools,
cancelled AgentTasks and hand-offs. Each test runs a real AgentSession (testing kit).

Every test asserts no crash, no leaked task (autouse fixture), no ERROR log unless
documented, the tool's result or exception unchanged, and no overlapping agent audio.

Filler audio is cached process-wide by text and TTS identity (livekit_filler/sound_cache.py),
so each test that depends on synthesis uses phrases no other test speaks.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import pytest
from filler_harness import (
    ANSWER,
    LLM_TTFT,
    LONG_FILLER,
    PARALLEL_QUESTION,
    QUESTION,
    RESULT,
    SPC,
    TTFB,
    Body,
    FillerAgent,
    Run,
    assert_every_seed,
    phrase_settings,
    run_tool,
    script,
    settle,
    sleeping,
    wait_for_playing_filler,
    wait_until,
)
from livekit.agents import (
    Agent,
    AgentTask,
    RunContext,
    StopResponse,
    ToolError,
    function_tool,
    llm,
)
from livekit.agents.voice.events import CloseReason

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    format_timeline,
    make_session,
    overlaps,
)
from livekit_filler.testing.fake_user import UserSpeechSimulator

FOLLOWUP = "Still on it."


def filler_settings(**overrides: Any) -> FillerSettings:
    return phrase_settings(LONG_FILLER, FOLLOWUP, **overrides)


class NextAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are the next agent.")


def raising(seconds: float, error: BaseException) -> Body:
    async def body(context: RunContext[Any]) -> str:
        await asyncio.sleep(seconds)
        raise error

    return body


def rec_of(context: RunContext[Any]) -> TimelineRecorder:
    rec: TimelineRecorder = context.session.current_agent.rec  # type: ignore[attr-defined]
    return rec


def error_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.ERROR]


# -- TTS faults ------------------------------------------------------------------------------


async def test_tts_failing_on_every_filler_text_neither_closes_the_session_nor_delays_the_reply() -> (
    None
):
    texts = ("Failing filler, first words.", "Failing filler, more words.")
    tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC, fail_on=lambda t: t in texts)
    # five attempts: LiveKit closes a session after more than three TTS errors in a row
    settings = filler_settings(
        delay=0.2, interval=0.1, max_count=5, phrases=[texts[0]], followup_phrases=[texts[1]]
    )
    run = await run_tool(sleeping(1.3), settings=settings, tts=tts)
    assert run.fillers == [], run.timeline
    assert [c.reason for c in run.closes] == [CloseReason.USER_INITIATED]
    assert run.outputs == [("slow_tool", RESULT, False)]
    latency = run.said(ANSWER).start - run.marker("slow_tool_end")
    assert latency <= LLM_TTFT + TTFB + 0.15, run.timeline
    # no ERROR log: a filler's failed synthesis is the controller's business, logged as a warning


async def test_tts_failing_only_on_the_followup_keeps_the_first_filler_and_the_reply() -> None:
    first, followup = "Working filler words.", "Broken follow-up words."
    tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC, fail_on=lambda t: t == followup)
    settings = filler_settings(
        delay=0.2, interval=0.1, max_count=3, phrases=[first], followup_phrases=[followup]
    )
    run = await run_tool(sleeping(1.2), settings=settings, tts=tts)
    assert [f.text for f in run.fillers] == [first], run.timeline
    assert run.said(ANSWER).start - run.marker("slow_tool_end") <= LLM_TTFT + TTFB + 0.15
    assert overlaps(run.utterances) == []


async def new_unfinished_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks started since ``before`` that are still running after a short grace period."""
    current = asyncio.current_task()
    for _ in range(30):
        left = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        if not left:
            break
        await asyncio.sleep(0.01)
    return left


# prerendered: FillerVoice.prerender used to leave the hanging ChunkedStream's tasks running
# after the session closed (fixed: it now closes the stream with `async with`)
@pytest.mark.parametrize("prerender", [False, True], ids=["synthesized_on_demand", "prerendered"])
async def test_tts_hanging_on_the_filler_text_does_not_delay_the_reply_nor_leak(
    prerender: bool,
) -> None:
    hanging = f"Hanging filler words, prerender {prerender}."
    tts = FakeTTS(ttfb=TTFB, seconds_per_char=SPC, hang_on=lambda t: t == hanging)
    settings = filler_settings(
        delay=0.2, phrases=[hanging], followup_phrases=[], prerender=prerender
    )
    before = asyncio.all_tasks()
    base, run = await asyncio.gather(
        run_tool(sleeping(0.8), settings=None, decorated=False),
        run_tool(sleeping(0.8), settings=settings, tts=tts),
    )
    leaked = await new_unfinished_tasks(before)
    for task in leaked:  # so that the autouse fixture reports this test's leak only here
        task.cancel()
    await asyncio.gather(*leaked, return_exceptions=True)
    assert run.fillers == [], run.timeline
    assert run.outputs == base.outputs == [("slow_tool", RESULT, False)]
    latency = run.said(ANSWER).start - run.marker("slow_tool_end")
    base_latency = base.said(ANSWER).start - base.marker("slow_tool_end")
    assert latency - base_latency <= 0.1, f"{latency=:.3f} {base_latency=:.3f}\n{run.timeline}"
    assert sorted(t.get_name() for t in leaked) == []


# -- the session closes --------------------------------------------------------------------------


async def _close_mid_filler(seed: int) -> list[str]:
    rng = random.Random(seed)
    problems: list[str] = []
    async with make_session(
        llm=FakeLLM(script, default=None, ttft=LLM_TTFT),
        tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC),
    ) as session:
        controller = FillerController.attach(session, settings=filler_settings(delay=0.2))
        rec = TimelineRecorder.install(session)
        agent = FillerAgent(rec, sleeping(1.2))
        await session.start(agent)
        session.generate_reply(user_input=QUESTION)
        await wait_for_playing_filler(session, rec)
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        closing_at = rec.mark("close")
        await session.aclose()
        # LiveKit 1.8.9 lets the running tool finish before the session closes
        if agent.outcomes != {"slow_tool": RESULT}:
            problems.append(f"the tool's outcome changed: {agent.outcomes}")
        if not controller.closed or FillerController.of(session) is not None:
            problems.append("the controller is still attached")
        if controller.say_filler() is not None:
            problems.append("say_filler() spoke after close")
    fillers_ = [u for u in rec.utterances if u.kind == "filler"]
    if len(fillers_) != 1 or not fillers_[0].interrupted or fillers_[0].end > closing_at + 0.1:
        problems.append(
            "the playing filler was not cut by the close:\n" + format_timeline(rec.utterances)
        )
    return problems


async def test_session_closed_mid_filler_cuts_it_and_detaches_the_controller() -> None:
    await assert_every_seed(_close_mid_filler, range(5))


PROGRAMS_QUESTION = "What programs do you have?"
TASK_GREETING = "Great, let me note that down."


class CollectAge(AgentTask[int]):
    def __init__(self, greet: bool = True) -> None:
        super().__init__(instructions="Collect the age of the child.")
        self._greet = greet

    async def on_enter(self) -> None:
        if self._greet:
            self.session.generate_reply(user_input=PROGRAMS_QUESTION)

    @function_tool
    async def record_age(self, age: int) -> None:
        """Record the child's age."""
        if not self.done():  # the session may have cancelled the task meanwhile
            self.complete(age)


class FrontDesk(Agent):
    def __init__(self, rec: TimelineRecorder, tool_duration: float, greet: bool = True) -> None:
        super().__init__(instructions="You are a front desk agent.")
        self.rec = rec
        self._tool_duration = tool_duration
        self._greet = greet
        self.task: CollectAge | None = None
        self.outcome = ""

    @function_tool
    @fillers()
    async def get_programs(self, context: RunContext[Any]) -> str:
        """Look up the programs."""
        await asyncio.sleep(self._tool_duration)
        self.task = CollectAge(greet=self._greet)
        self.rec.mark("task_start")
        try:
            age = await self.task
        except BaseException as e:
            self.outcome = f"{type(e).__name__}: {e}"
            raise
        self.outcome = f"age {age}"
        return f"programs for age {age}"


def programs_script(task_ttft: float) -> Callable[[llm.ChatContext], FakeResponse | None]:
    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        last = chat_ctx.items[-1]
        in_task = any(
            isinstance(i, llm.ChatMessage) and "Collect the age" in (i.text_content or "")
            for i in chat_ctx.items
        )
        if isinstance(last, llm.FunctionCallOutput):
            return None
        if in_task:
            return FakeResponse(
                text=TASK_GREETING,
                tool_calls=[FakeToolCall("record_age", {"age": 7})],
                ttft=task_ttft,
            )
        return FakeResponse(tool_calls=[FakeToolCall("get_programs")], ttft=LLM_TTFT)

    return respond


async def _close_during_task(seed: int) -> list[str]:
    rng = random.Random(seed)
    problems: list[str] = []
    fake_llm = FakeLLM(programs_script(task_ttft=0.6), default=None)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as session:
        controller = FillerController.attach(session, settings=filler_settings(delay=0.2))
        rec = TimelineRecorder.install(session)
        agent = FrontDesk(rec, tool_duration=rng.uniform(0.3, 0.6))
        await session.start(agent)
        session.generate_reply(user_input=PROGRAMS_QUESTION)
        await wait_until(lambda: "task_start" in rec.markers, 3.0)
        # from the hand-off itself to well into the task's conversation
        await asyncio.sleep(rng.uniform(0.0, 0.8))
        await session.aclose()
        if not controller.closed:
            problems.append("the controller is still attached")
    for u in rec.utterances:
        if u.kind == "filler" and u.agent != "FrontDesk":
            problems.append(f"a filler played in {u.agent}'s conversation")
    if bad := overlaps(rec.utterances):
        problems.append(f"overlaps: {bad}")
    return problems


async def test_session_closed_during_an_agent_task_hand_off_is_clean() -> None:
    await assert_every_seed(_close_during_task, range(6))


# -- the tool fails or is cancelled ----------------------------------------------------------------


@pytest.mark.allow_error_logs  # LiveKit logs "exception occurred while executing tool" (ERROR)
async def test_tool_raising_value_error_keeps_its_error_output_and_cuts_the_filler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = ValueError("database is down")
    base, run = await asyncio.gather(
        run_tool(raising(0.75, error), settings=None, decorated=False),
        run_tool(raising(0.75, error), settings=filler_settings(max_count=1)),
    )
    assert run.outcomes == base.outcomes == {"slow_tool": "ValueError"}
    assert run.outputs == base.outputs
    assert run.outputs[0][2] is True  # is_error
    (filler,) = run.fillers
    assert filler.interrupted
    assert filler.end - run.marker("slow_tool_end") <= 0.1, run.timeline
    # only LiveKit's own log of the tool exception, once per session (with and without fillers)
    assert error_records(caplog) == ["exception occurred while executing tool"] * 2


async def test_tool_raising_tool_error_keeps_its_message_and_cuts_the_filler() -> None:
    error = ToolError("no such club")
    base, run = await asyncio.gather(
        run_tool(raising(0.75, error), settings=None, decorated=False),
        run_tool(raising(0.75, error), settings=filler_settings(max_count=1)),
    )
    assert run.outcomes == base.outcomes == {"slow_tool": "ToolError"}
    assert run.outputs == base.outputs == [("slow_tool", "no such club", True)]
    (filler,) = run.fillers
    assert filler.interrupted
    assert filler.end - run.marker("slow_tool_end") <= 0.1, run.timeline


async def test_tool_raising_stop_response_cuts_the_filler_and_nothing_more_is_said() -> None:
    run = await run_tool(raising(0.75, StopResponse()), settings=filler_settings(max_count=2))
    assert run.outcomes == {"slow_tool": "StopResponse"}
    (filler,) = run.fillers
    assert filler.interrupted
    tool_end = run.marker("slow_tool_end")
    assert filler.end - tool_end <= 0.1, run.timeline
    assert [u for u in run.utterances if u.start >= tool_end] == [], run.timeline


async def test_tool_raising_cancelled_error_is_unchanged_and_cuts_the_filler() -> None:
    base, run = await asyncio.gather(
        run_tool(raising(0.75, asyncio.CancelledError()), settings=None, decorated=False),
        run_tool(raising(0.75, asyncio.CancelledError()), settings=filler_settings(max_count=1)),
    )
    assert run.outcomes == base.outcomes == {"slow_tool": "CancelledError"}
    assert run.outputs == base.outputs
    (filler,) = run.fillers
    assert filler.interrupted
    assert filler.end - run.marker("slow_tool_end") <= 0.1, run.timeline
    assert overlaps(run.utterances) == []


async def _interrupt_mid_tool(seed: int) -> list[str]:
    rng = random.Random(seed)
    problems: list[str] = []
    async with make_session(
        llm=FakeLLM(script, default=None, ttft=LLM_TTFT),
        tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC),
    ) as session:
        FillerController.attach(session, settings=filler_settings(delay=0.2, interval=0.1))
        rec = TimelineRecorder.install(session)
        agent = FillerAgent(rec, sleeping(1.6))
        await session.start(agent)
        session.generate_reply(user_input=QUESTION)
        await wait_until(lambda: "slow_tool_start" in rec.markers, 3.0)
        # before, during or after the first filler
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        interrupted_at = rec.mark("interrupt")
        await session.interrupt()
        await wait_until(lambda: "slow_tool_end" in rec.markers, 3.0)
        await session.say("After the interruption.")
        await settle(session, 0.02)
    utterances = rec.utterances
    # LiveKit 1.8.9 interrupts the tool's speech but lets a tool waiting in the background
    # finish (agent_activity.py: only an interruption during the step's playout cancels it)
    if agent.outcomes.get("slow_tool") != RESULT:
        problems.append(f"the tool's outcome changed: {agent.outcomes}")
    for u in utterances:
        if u.kind == "filler" and u.end > interrupted_at + 0.1:
            problems.append(
                f"filler audible after the interruption:\n{format_timeline(utterances)}"
            )
    if "After the interruption." not in [u.text for u in utterances]:
        problems.append("the session did not speak after the interruption")
    if bad := overlaps(utterances):
        problems.append(f"overlaps: {bad}")
    return problems


async def test_session_interrupt_during_a_tool_cuts_its_filler_and_no_filler_follows() -> None:
    await assert_every_seed(_interrupt_mid_tool, range(6))


async def test_user_turn_during_a_filler_cuts_it_and_the_agent_answers_the_user() -> None:
    user = UserSpeechSimulator()

    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        last = chat_ctx.items[-1]
        if isinstance(last, llm.ChatMessage) and last.text_content == "Never mind.":
            return FakeResponse(text="Okay, never mind.")
        return script(chat_ctx)

    async with make_session(
        llm=FakeLLM(respond, default=None, ttft=LLM_TTFT),
        tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC),
        **user.session_kwargs(),
    ) as session:
        FillerController.attach(session, settings=filler_settings(delay=0.2, interval=0.1))
        rec = TimelineRecorder.install(session)
        user.install(session, timeline=rec)
        agent = FillerAgent(rec, sleeping(1.2))
        await session.start(agent)
        session.generate_reply(user_input=QUESTION)
        await wait_for_playing_filler(session, rec)
        utterance = await user.say("Never mind.", duration=0.4)
        # LiveKit commits the user turn once the interrupted tool's speech is done, i.e. when
        # the tool returns (agent_activity.py _user_turn_completed_impl)
        await wait_until(lambda: any(u.text == "Okay, never mind." for u in rec.utterances), 4.0)
        await settle(session, 0.02)
        utterances = rec.utterances
    timeline = format_timeline(utterances)
    assert utterance.started_at is not None
    spoke = utterance.started_at - rec.t0
    # the user turn interrupts the tool's speech; LiveKit lets the tool itself finish
    assert agent.outcomes == {"slow_tool": RESULT}
    assert "Okay, never mind." in [u.text for u in utterances], timeline
    (filler,) = [u for u in utterances if u.kind == "filler"]
    assert filler.interrupted
    assert filler.end - spoke <= 0.1, timeline
    # no filler while the user spoke, nor while the interrupted tool went on
    assert overlaps(utterances) == []


async def _cancel_task(seed: int) -> list[str]:
    rng = random.Random(seed)
    problems: list[str] = []
    fake_llm = FakeLLM(programs_script(task_ttft=0.1), default=None)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=TTFB, seconds_per_char=SPC)) as session:
        FillerController.attach(session, settings=filler_settings(delay=0.2, interval=0.1))
        rec = TimelineRecorder.install(session)
        # the task says nothing and waits: an idle sub-agent fillers must leave alone
        agent = FrontDesk(rec, tool_duration=rng.uniform(0.0, 0.6), greet=False)
        await session.start(agent)
        session.generate_reply(user_input=PROGRAMS_QUESTION)
        await wait_until(lambda: "task_start" in rec.markers, 3.0)
        await asyncio.sleep(rng.uniform(0.0, 0.8))
        assert agent.task is not None
        agent.task.cancel()
        await wait_until(lambda: bool(agent.outcome), 3.0)
        await asyncio.sleep(0.4)  # fillers would play again within this time
        await settle(session, 0.02)
        utterances = rec.utterances
    if not agent.outcome.startswith("ToolError: AgentTask") or "cancelled" not in agent.outcome:
        problems.append(f"the tool did not get the task's ToolError: {agent.outcome!r}")
    task_start = rec.markers["task_start"][0]
    for u in utterances:
        if u.kind == "filler" and (u.agent != "FrontDesk" or u.end > task_start + 0.1):
            problems.append(f"filler during or after the task:\n{format_timeline(utterances)}")
    if bad := overlaps(utterances):
        problems.append(f"overlaps: {bad}")
    return problems


async def test_cancelled_agent_task_raises_its_tool_error_and_no_filler_plays_into_it() -> None:
    await assert_every_seed(_cancel_task, range(6))


async def _hand_off_mid_filler(seed: int) -> list[str]:
    rng = random.Random(seed)
    problems: list[str] = []

    async def body(context: RunContext[Any]) -> str:
        rec = rec_of(context)
        await wait_for_playing_filler(context.session, rec)
        await asyncio.sleep(rng.uniform(0.0, 0.8))
        rec.mark("handoff")
        context.session.update_agent(NextAgent())
        await asyncio.sleep(rng.uniform(0.2, 0.6))
        return RESULT

    run = await run_tool(body, settings=filler_settings(delay=0.2, interval=0.1, max_count=3))
    handoff = run.marker("handoff")
    fillers_ = run.fillers
    if not fillers_ or not fillers_[0].interrupted or fillers_[0].end - handoff > 0.15:
        problems.append(f"the playing filler was not cut within 150 ms:\n{run.timeline}")
    if len(fillers_) > 1:
        problems.append(f"a filler played after the hand-off:\n{run.timeline}")
    for u in fillers_:
        if u.agent == "NextAgent":
            problems.append(f"a filler played as NextAgent:\n{run.timeline}")
    if run.outcomes != {"slow_tool": RESULT}:
        problems.append(f"the tool's result changed: {run.outcomes}")
    if bad := overlaps(run.utterances):
        problems.append(f"overlaps: {bad}")
    return problems


async def test_update_agent_hand_off_during_a_filler_cuts_it_and_says_nothing_into_the_new_agent() -> (
    None
):
    await assert_every_seed(_hand_off_mid_filler, range(5))


GREETING = "Hello, this is the next desk."


class GreetingAgent(Agent):
    """The agent a tool hands the call to by returning it: it greets on entry."""

    def __init__(self) -> None:
        super().__init__(instructions="You greet.")

    async def on_enter(self) -> None:
        self.session.say(GREETING)


async def _return_an_agent_as_a_filler_ends(seed: int) -> list[str]:
    """A tool returns the next agent while a filler has 80-250 ms left: with fillers the
    greeting comes as soon as without (LiveKit drains the old agent first, and used to wait
    for the filler, left to finish as the answer was ready)."""
    rng = random.Random(seed)
    delay = 0.2
    tool = delay + FakeTTS(seconds_per_char=SPC).duration_for(LONG_FILLER) - rng.uniform(0.08, 0.25)

    async def body(context: RunContext[Any]) -> Any:
        await asyncio.sleep(tool)
        return GreetingAgent()

    def greeting_after_return(run: Run) -> float:
        return run.said(GREETING).start - run.marker("slow_tool_end")

    filled, plain = await asyncio.gather(
        run_tool(body, settings=filler_settings(delay=delay, max_count=1), wait_for=GREETING),
        run_tool(body, settings=None, decorated=False, wait_for=GREETING),
    )
    problems = []
    if not filled.fillers or filled.fillers[0].end < filled.marker("slow_tool_end") - 0.02:
        problems.append(f"no filler was sounding when the tool returned:\n{filled.timeline}")
    late = greeting_after_return(filled) - greeting_after_return(plain)
    if late > 0.05:
        problems.append(f"the greeting came {late * 1000:.0f} ms later:\n{filled.timeline}")
    if bad := overlaps(filled.utterances):
        problems.append(f"overlaps: {bad}")
    return problems


async def test_a_tool_that_returns_an_agent_cuts_the_filler_at_once() -> None:
    await assert_every_seed(_return_an_agent_as_a_filler_ends, range(10))


@pytest.mark.allow_error_logs  # LiveKit logs "exception occurred while executing tool" (ERROR)
async def test_parallel_calls_where_one_raises_keep_both_outcomes_and_the_fillers_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = ValueError("one source is down")
    settings = filler_settings(
        delay=0.2, interval=0.1, max_count=3, phrases=["Parallel filler."], followup_phrases=[]
    )
    base, run = await asyncio.gather(
        run_tool(
            raising(0.3, error),
            other=sleeping(1.3),
            settings=None,
            decorated=False,
            question=PARALLEL_QUESTION,
        ),
        run_tool(
            raising(0.3, error), other=sleeping(1.3), settings=settings, question=PARALLEL_QUESTION
        ),
    )
    assert run.outcomes == base.outcomes == {"slow_tool": "ValueError", "other_tool": RESULT}
    assert sorted(run.outputs) == sorted(base.outputs)
    failed_at = run.marker("slow_tool_end")
    assert [f for f in run.fillers if f.start > failed_at], run.timeline
    assert len(run.fillers) <= 3
    # the answer ends the fillers: a playing one with at most finish_within left finishes
    ends_by = run.marker("other_tool_end") + settings.finish_within + 0.1
    assert all(f.end <= ends_by for f in run.fillers), run.timeline
    assert overlaps(run.utterances) == []
    assert error_records(caplog) == ["exception occurred while executing tool"] * 2
