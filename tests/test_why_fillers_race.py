"""Evidence for docs/why-fillers-race.md: how livekit-agents 1.8.9 schedules speech, and why a
filler said next to a function tool or an inline AgentTask fails.

Every test drives a real ``AgentSession`` with the testing kit (scripted LLM, tone TTS, a fake
speaker that plays in real time). Tests read a few LiveKit private attributes
(``AgentSession._activity``/``_closing``, ``AgentActivity._speech_q``/``_closed``) to observe
state; none patches LiveKit.
The doc names each test next to the claim it backs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import Agent, AgentTask, RunContext, function_tool, llm
from livekit.agents.voice import AgentSession, SpeechHandle
from livekit.agents.voice.agent_activity import AgentActivity
from livekit.agents.voice.events import ConversationItemAddedEvent

from devtools.scenarios import (
    HANDMADE_FILLER,
    Timings,
    run_scenario,
)
from livekit_filler.controller import FillerController
from livekit_filler.settings import FillerSettings
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    Utterance,
    make_session,
)
from livekit_filler.testing.fake_user import UserSpeechSimulator

DRAINING = (
    "cannot schedule new speech, the speech scheduling is draining/pausing, "
    "the speech will be cancelled"
)
CLOSING = "AgentSession is closing, cannot use say()"


def circular_wait(tool: str) -> str:
    """The exact text of LiveKit's circular-wait error (speech_handle.py L247-252)."""
    return (
        f"cannot call `SpeechHandle.wait_for_playout()` from inside the function tool `{tool}` "
        "that owns this SpeechHandle. This creates a circular wait: the speech handle is waiting "
        "for the function tool to complete, while the function tool is simultaneously waiting "
        "for the speech handle.\nTo wait for the assistant\u2019s spoken response prior to running "
        "this tool, use `RunContext.wait_for_playout()` instead."
    )


SPC = 0.02  # seconds of audio per character
QUESTION = "What do you have?"
PREAMBLE = "Sure, let me check that for you right now, one second."  # ~1.1 s of audio
FILLER = "Hmm, one moment please."  # ~0.46 s
ANSWER = "Here is what we have."
GREETING = "Hi, I am the sub task."
TOOL_RESULT = "result"

ToolBody = Callable[["Harness", RunContext[Any]], Awaitable[Any]]


@dataclass
class Harness:
    """One headless session plus what a test observed in it."""

    session: AgentSession[None]
    rec: TimelineRecorder
    tts: FakeTTS
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    seen: dict[str, Any] = field(default_factory=dict)

    def activity(self) -> AgentActivity:
        """The session's current activity (a private attribute, read only)."""
        act = self.session._activity
        assert act is not None
        return act

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Fire and forget, as the forum thread does; the harness awaits it at the end."""
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    async def try_say(self, text: str = FILLER) -> SpeechHandle | None:
        """``session.say`` recording the error instead of raising it."""
        try:
            return self.session.say(text)
        except RuntimeError as e:
            self.errors.append(e)
            return None

    def played(self, text: str) -> list[Utterance]:
        return [u for u in self.rec.utterances if u.text == text]

    def one(self, text: str) -> Utterance:
        found = self.played(text)
        assert len(found) == 1, f"{text!r} played {len(found)} times: {self.rec.utterances}"
        return found[0]


class ToolAgent(Agent):
    """An agent whose single tool ``lookup`` runs a test-supplied body."""

    def __init__(self, h: Harness, body: ToolBody) -> None:
        super().__init__(instructions="You are a test agent.")
        self._h = h
        self._body = body

    @function_tool
    async def lookup(self, context: RunContext[Any]) -> Any:
        """Look the answer up."""
        return await self._body(self._h, context)


class Sub(AgentTask[str]):
    """An inline AgentTask that greets in ``on_enter`` and completes at once."""

    def __init__(
        self,
        h: Harness,
        *,
        probe: Callable[[Sub], None] | None = None,
        tools: list[Any] | None = None,
    ) -> None:
        super().__init__(instructions="You are a sub task.", tools=tools or [])
        self._h = h
        self._probe = probe

    async def on_enter(self) -> None:
        self._h.rec.mark("sub_enter")
        if self._probe is not None:
            self._probe(self)
        await self.session.say(GREETING)
        self.complete("done")


def _script(preamble: str) -> Callable[[llm.ChatContext], FakeResponse | None]:
    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        last = chat_ctx.items[-1] if chat_ctx.items else None
        if isinstance(last, llm.FunctionCallOutput):
            return FakeResponse(text=ANSWER)
        if isinstance(last, llm.ChatMessage) and last.text_content == QUESTION:
            return FakeResponse(text=preamble, tool_calls=[FakeToolCall("lookup")])
        return None

    return respond


@contextlib.asynccontextmanager
async def harness(*, preamble: str = "", **session_kwargs: Any) -> AsyncIterator[Harness]:
    fake_tts = FakeTTS(ttfb=0.02, seconds_per_char=SPC)
    fake_llm = FakeLLM(_script(preamble), default=None, ttft=0.02)
    async with make_session(llm=fake_llm, tts=fake_tts, **session_kwargs) as session:
        rec = TimelineRecorder.install(session, filler_texts=(FILLER,))
        h = Harness(session=session, rec=rec, tts=fake_tts)
        try:
            yield h
        finally:
            await asyncio.gather(*h.tasks, return_exceptions=True)


async def ask(h: Harness, body: ToolBody, *, agent: Agent | None = None) -> SpeechHandle:
    """Start the agent, ask QUESTION (which calls ``lookup``) and wait for the whole turn."""
    await h.session.start(agent or ToolAgent(h, body))
    handle = h.session.generate_reply(user_input=QUESTION)
    await asyncio.wait_for(handle.wait_for_playout(), 5.0)
    h.rec.mark("turn_done")
    return handle


def assert_draining(err: BaseException) -> None:
    assert type(err) is RuntimeError
    assert str(err) == DRAINING


# -- 1. pause versus drain -----------------------------------------------------------------------


async def test_inline_agent_task_pauses_parent_then_resumes_same_activity() -> None:
    async with harness() as h:

        def probe(sub: Sub) -> None:
            parent = h.seen["parent"]
            h.seen["parent_paused_in_task"] = parent.scheduling_paused
            h.seen["task_activity"] = act = h.activity()
            h.seen["task_activity_running"] = act is not parent and not act.scheduling_paused

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            h.seen["parent"] = parent = h.activity()
            assert not parent.scheduling_paused
            await Sub(h, probe=probe)
            h.seen["resumed_same"] = h.activity() is parent and not parent.scheduling_paused
            return TOOL_RESULT

        await ask(h, body)

    assert h.seen["parent_paused_in_task"] is True
    assert h.seen["task_activity_running"] is True
    assert h.seen["resumed_same"] is True
    assert h.seen["task_activity"]._closed  # the task's activity is drained and closed


async def test_handoff_runs_on_exit_then_drains_and_closes_old_activity() -> None:
    async with harness() as h:

        class NewAgent(Agent):
            def __init__(self) -> None:
                super().__init__(instructions="You are the new agent.")

            async def on_enter(self) -> None:
                old = h.seen["old"]
                h.seen["old_paused_closed"] = (old.scheduling_paused, old._closed)
                h.seen["new_is_other"] = h.activity() is not old
                h.rec.mark("new_enter")

        class OldAgent(ToolAgent):
            async def on_exit(self) -> None:
                # drain() runs on_exit before it pauses: say() still lands on this activity
                old = h.seen["old"]
                h.seen["on_exit_state"] = (old.scheduling_paused, h.activity() is old)
                await self.session.say("Goodbye from the old agent.")

        async def body(h: Harness, ctx: RunContext[Any]) -> Any:
            h.seen["old"] = h.activity()
            return NewAgent(), TOOL_RESULT

        old_agent = OldAgent(h, body)
        await h.session.start(old_agent)
        h.session.generate_reply(user_input=QUESTION)
        await _wait_until(lambda: "new_enter" in h.rec.markers)
        await _idle(h)

    # still the session's unpaused activity, so say() targets it
    assert h.seen["on_exit_state"] == (False, True)
    goodbye = h.one("Goodbye from the old agent.")
    assert not goodbye.interrupted
    assert h.seen["old_paused_closed"] == (True, True)
    assert h.seen["new_is_other"] is True
    assert h.rec.markers["new_enter"][0] >= goodbye.end - 0.02


async def test_say_during_pause_is_rejected_by_schedule_speech_of_next_activity() -> None:
    created: list[SpeechHandle] = []
    async with harness() as h:
        h.session.on("speech_created", lambda ev: created.append(ev.speech_handle))

        async def filler() -> None:
            h.seen["created_before"] = len(created)
            await h.try_say()

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            h.spawn(filler())
            await Sub(h)
            return TOOL_RESULT

        await ask(h, body)

    (err,) = h.errors
    assert_draining(err)
    # raised by the scheduler itself (the function and module, never a source line number)
    frame, _ = list(traceback.walk_tb(err.__traceback__))[-1]
    assert frame.f_code.co_name == "_schedule_speech"
    assert Path(frame.f_code.co_filename).parts[-2:] == ("voice", "agent_activity.py")
    # AgentSession.say picked _next_activity (the AgentTask's, not started yet), not the parent
    rejecting = frame.f_locals["self"]
    assert isinstance(rejecting.agent, Sub)
    # speech_created was emitted before the rejection, for a handle that is then cut
    rejected = created[h.seen["created_before"]]
    assert rejected.interrupted
    assert not h.played(FILLER)


async def test_say_while_handoff_drains_raises_draining() -> None:
    async with harness() as h:

        class NewAgent(Agent):
            def __init__(self) -> None:
                super().__init__(instructions="You are the new agent.")

            async def on_enter(self) -> None:
                h.rec.mark("new_enter")

        async def say_once_old_activity_pauses() -> None:
            old = h.seen["old"]
            for _ in range(100_000):  # poll on every event-loop iteration
                if old.scheduling_paused:
                    break
                await asyncio.sleep(0)
            await h.try_say()

        async def body(h: Harness, ctx: RunContext[Any]) -> Any:
            h.seen["old"] = h.activity()
            h.spawn(say_once_old_activity_pauses())
            return NewAgent(), TOOL_RESULT

        await h.session.start(ToolAgent(h, body))
        h.session.generate_reply(user_input=QUESTION)
        await _wait_until(lambda: "new_enter" in h.rec.markers)
        await asyncio.gather(*h.tasks)
        await _idle(h)

    (err,) = h.errors
    assert_draining(err)


# -- 2. a filler and an AgentTask at nearly the same time ---------------------------------------


@pytest.mark.parametrize("wait_for_playout_first", [False, True])
@pytest.mark.parametrize("preamble", ["", PREAMBLE], ids=["no_preamble", "preamble"])
async def test_deferred_filler_right_before_agent_task_await_raises_draining(
    wait_for_playout_first: bool, preamble: str
) -> None:
    async with harness(preamble=preamble) as h:

        async def filler() -> None:
            # the first time this coroutine runs, `await Sub()` has already paused the parent
            h.seen["paused_at_first_run"] = h.seen["parent"].scheduling_paused
            await h.try_say()

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            if wait_for_playout_first:
                await ctx.wait_for_playout()
            h.seen["parent"] = h.activity()
            h.spawn(filler())  # the thread's asyncio.create_task(_play_filler())
            await Sub(h)
            return TOOL_RESULT

        await ask(h, body)

    assert h.seen["paused_at_first_run"] is True
    (err,) = h.errors
    assert_draining(err)
    assert not h.played(FILLER)
    assert h.one(ANSWER)


async def _preamble_window_trial(seed: int) -> tuple[float, bool, BaseException | None, Harness]:
    delay = random.Random(seed).uniform(0.0, 0.7)
    async with harness(preamble=PREAMBLE) as h:

        async def filler() -> None:
            await asyncio.sleep(delay)
            h.seen["preamble_playing"] = h.session.current_speech is h.seen["tool_handle"]
            await h.try_say()

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            h.seen["tool_handle"] = ctx.speech_handle
            h.spawn(filler())
            await Sub(h)
            return TOOL_RESULT

        await ask(h, body)
    return delay, h.seen["preamble_playing"], h.errors[0] if h.errors else None, h


async def test_filler_anywhere_in_the_preamble_window_raises_draining() -> None:
    trials = await asyncio.gather(*(_preamble_window_trial(seed) for seed in range(8)))
    for delay, preamble_playing, err, h in trials:
        assert preamble_playing, f"delay {delay:.2f}: the preamble had already ended"
        assert err is not None, f"delay {delay:.2f}: the filler was accepted"
        assert_draining(err)
        # the pause (and so the AgentTask's start) waited for the preamble's playout
        assert h.rec.markers["sub_enter"][0] >= h.one(PREAMBLE).end - 0.02


async def test_say_at_the_activity_swap_raises_closing() -> None:
    async with harness() as h:

        def on_item(ev: ConversationItemAddedEvent) -> None:
            if isinstance(ev.item, llm.AgentHandoff):
                # emitted right after `_activity = _next_activity`, before start()/resume()
                h.seen.setdefault("closing_flags", []).append(h.session._closing)
                try:
                    h.session.say(FILLER)
                except RuntimeError as e:
                    h.errors.append(e)

        h.session.on("conversation_item_added", on_item)

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            await Sub(h)
            return TOOL_RESULT

        await ask(h, body)

    # hand-off items: session start, into the AgentTask, back to the parent
    assert [(type(e), str(e)) for e in h.errors] == [(RuntimeError, CLOSING)] * 3
    assert h.seen["closing_flags"] == [False] * 3  # the session was not closing
    assert h.one(ANSWER)


class SlowToolset(llm.Toolset):
    """A toolset whose setup takes a while, like an MCP server connecting."""

    async def setup(self) -> SlowToolset:
        await asyncio.sleep(0.4)
        return self


async def test_closing_window_lasts_while_the_task_activity_sets_up_its_toolsets() -> None:
    async with harness() as h:

        async def filler() -> None:
            await asyncio.sleep(0.2)
            await h.try_say()

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            h.spawn(filler())
            await Sub(h, tools=[SlowToolset(id="slow")])
            return TOOL_RESULT

        await ask(h, body)

    assert [(type(e), str(e)) for e in h.errors] == [(RuntimeError, CLOSING)]
    assert h.rec.markers["sub_enter"][0] >= 0.4


@pytest.mark.parametrize("how", ["sync_say", "task_then_sleep0"])
async def test_filler_before_the_await_delays_agent_task_by_its_playout(how: str) -> None:
    async with harness() as h:

        async def play_filler() -> None:
            await h.try_say()

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            if how == "sync_say":
                await h.try_say()
            else:
                h.spawn(play_filler())
                await asyncio.sleep(0)  # lets the filler coroutine run before the await
            h.rec.mark("await_task")
            await Sub(h, probe=lambda sub: h.seen.update(sub=sub))
            return TOOL_RESULT

        await ask(h, body)

    assert not h.errors
    filler = h.one(FILLER)
    assert not filler.interrupted and filler.duration >= 0.4
    # it went to the parent's activity: not into the sub-agent's chat context
    assert FILLER not in _texts(h.seen["sub"].chat_ctx)
    # on_enter only starts once the parent's queue has drained, i.e. after the whole filler
    assert h.rec.markers["sub_enter"][0] >= filler.end - 0.02
    assert h.rec.markers["sub_enter"][0] - h.rec.markers["await_task"][0] >= 0.4


async def test_say_after_the_task_started_lands_in_the_sub_agent_behind_its_greeting() -> None:
    async with harness() as h:

        async def on_enter_filler() -> None:
            await _wait_until(lambda: "sub_enter" in h.rec.markers)
            await asyncio.sleep(0.05)
            await h.try_say()

        def probe(sub: Sub) -> None:
            h.seen["sub"] = sub

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            h.spawn(on_enter_filler())
            await Sub(h, probe=probe)
            return TOOL_RESULT

        await ask(h, body)
        history = _texts(h.session.history)

    assert not h.errors
    greeting, filler = h.one(GREETING), h.one(FILLER)
    assert filler.start >= greeting.end - 0.02  # FIFO behind the sub-agent's greeting
    assert FILLER in _texts(
        h.seen["sub"].chat_ctx
    )  # in the sub-agent's chat context (add_to_chat_ctx=True)
    assert FILLER in history


# -- 3. when speech is allowed ------------------------------------------------------------------


async def test_every_speech_is_normal_priority_and_played_fifo() -> None:
    async with harness() as h:
        await h.session.start(ToolAgent(h, _return_result))
        texts = [f"Speech number {n} of three." for n in (1, 2, 3)]
        handles = [h.session.say(t) for t in texts]
        priorities = [entry[0] for entry in h.activity()._speech_q]
        await asyncio.gather(*handles)

    assert priorities == [-SpeechHandle.SPEECH_PRIORITY_NORMAL] * 3
    played = [h.one(t) for t in texts]
    assert [u.start for u in played] == sorted(u.start for u in played)
    for a, b in itertools.pairwise(played):
        assert b.start >= a.end - 0.02


async def test_a_queued_filler_is_not_preempted_by_the_tool_reply() -> None:
    async with harness() as h:

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            await h.try_say()  # queued at tool start; the tool returns at once
            return TOOL_RESULT

        await ask(h, body)

    filler, answer = h.one(FILLER), h.one(ANSWER)
    assert not filler.interrupted
    assert answer.start >= filler.end - 0.02


async def test_tts_starts_only_when_the_scheduler_authorizes_the_speech() -> None:
    async with harness() as h:
        await h.session.start(ToolAgent(h, _return_result))
        first = h.session.say(PREAMBLE)
        second = h.session.say(FILLER)
        await asyncio.sleep(0.5)  # the first speech is playing
        synthesized_while_first_plays = list(h.tts.synthesized)
        await asyncio.gather(first, second)

    assert synthesized_while_first_plays == [PREAMBLE]
    assert h.tts.synthesized == [PREAMBLE, FILLER]


@pytest.mark.parametrize(
    ("allow_interruptions", "min_interruption_duration", "expected"),
    [
        (True, 5.0, "after_user"),  # held by the user-silence wait
        (False, 5.0, "over_user"),  # no wait: talks over the user
        (True, 0.2, "dropped"),  # held, then interrupted by the user's audio activity
    ],
)
async def test_interruptible_speech_waits_for_the_user_to_stop(
    allow_interruptions: bool, min_interruption_duration: float, expected: str
) -> None:
    user = UserSpeechSimulator()
    kwargs = user.session_kwargs(min_interruption_duration=min_interruption_duration)
    async with harness(**kwargs) as h:
        user.install(h.session)
        await h.session.start(ToolAgent(h, _return_result))
        utterance = user.speak("", duration=0.8)  # a noise: no transcript, no user turn
        await _wait_until(lambda: h.session.user_state == "speaking")
        handle = h.session.say(FILLER, allow_interruptions=allow_interruptions)
        await asyncio.wait_for(handle.wait_for_playout(), 3.0)
        await _wait_until(lambda: utterance.ended_at is not None)

    ended_at = utterance.ended_at
    assert ended_at is not None
    segments = h.rec.audio_output.segments
    if expected == "dropped":
        assert handle.interrupted and not segments
        return
    (segment,) = segments
    assert not segment.interrupted
    if expected == "after_user":
        assert segment.start >= ended_at - 0.02
    else:
        assert segment.start < ended_at - 0.3


# -- 4. the circular wait -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "how", ["await_ctx_speech_handle", "ctx_speech_handle_wait_for_playout", "current_speech"]
)
@pytest.mark.parametrize("preamble", ["", PREAMBLE], ids=["no_preamble", "preamble"])
async def test_awaiting_the_tools_own_handle_in_the_tool_raises_circular_wait(
    how: str, preamble: str
) -> None:
    async with harness(preamble=preamble) as h:

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            h.seen["current_is_own"] = h.session.current_speech is ctx.speech_handle
            try:
                if how == "await_ctx_speech_handle":
                    await ctx.speech_handle
                elif how == "ctx_speech_handle_wait_for_playout":
                    await ctx.speech_handle.wait_for_playout()
                else:
                    current = h.session.current_speech
                    assert current is not None
                    await current
            except RuntimeError as e:
                h.errors.append(e)
            return TOOL_RESULT

        await ask(h, body)

    assert h.seen["current_is_own"] is True  # at tool start current_speech is the tool's handle
    (err,) = h.errors
    assert type(err) is RuntimeError
    assert str(err) == circular_wait("lookup")


async def _current_speech_trial(delay: float) -> tuple[bool, bool, float, float]:
    async with harness(preamble=PREAMBLE) as h:

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            await asyncio.sleep(delay)
            h.seen["checked_at"] = h.rec.now()
            current = h.session.current_speech
            h.seen["own"] = current is ctx.speech_handle
            try:
                if current is not None:  # the "wait for current speech, then filler" helper
                    await current
            except RuntimeError as e:
                h.errors.append(e)
            return TOOL_RESULT

        await ask(h, body)
    return h.seen["own"], bool(h.errors), h.seen["checked_at"], h.one(PREAMBLE).end


async def test_awaiting_current_speech_raises_only_until_the_preamble_ends() -> None:
    rng = random.Random(4)
    delays = [rng.uniform(0.0, 0.6) for _ in range(4)] + [rng.uniform(1.4, 1.9) for _ in range(4)]
    results = await asyncio.gather(*(_current_speech_trial(d) for d in delays))
    for delay, (own, raised, checked_at, preamble_end) in zip(delays, results, strict=True):
        assert raised == own, f"delay {delay:.2f}"
        assert own == (checked_at < preamble_end), f"delay {delay:.2f}"
    assert {raised for _, raised, _, _ in results} == {True, False}  # hence "intermittent"


async def test_wait_for_playout_twice_and_the_filler_task_never_raise_circular_wait() -> None:
    async with harness(preamble=PREAMBLE) as h:

        async def play_filler() -> None:  # the thread's _play_filler
            await asyncio.sleep(0.1)
            handle = await h.try_say()
            if handle is not None:
                await handle

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            await ctx.wait_for_playout()
            h.spawn(play_filler())
            await ctx.wait_for_playout()  # the "second call" the thread's answer blamed
            await asyncio.sleep(0.6)
            return TOOL_RESULT

        await ask(h, body)

    assert not h.errors
    filler, answer = h.one(FILLER), h.one(ANSWER)
    assert answer.start >= filler.end - 0.02


async def test_child_task_awaiting_the_tool_handle_does_not_raise_but_waits_for_the_turn() -> None:
    async with harness() as h:

        async def child(handle: SpeechHandle) -> None:
            await handle  # no circular-wait error: the child task carries no tool info
            h.rec.mark("child_done")

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            h.spawn(child(ctx.speech_handle))
            await asyncio.sleep(0.1)
            return TOOL_RESULT

        await ask(h, body)
        await asyncio.gather(*h.tasks)

    assert h.rec.markers["child_done"][0] >= h.one(ANSWER).end - 0.02


async def test_awaiting_a_said_filler_in_the_tool_body_is_fine() -> None:
    async with harness() as h:

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            handle = await h.try_say()
            assert handle is not None
            await handle  # a new handle, not the tool's own
            h.rec.mark("filler_awaited")
            return TOOL_RESULT

        await ask(h, body)

    assert not h.errors
    assert h.rec.markers["filler_awaited"][0] >= h.one(FILLER).end - 0.02


async def test_the_threads_get_programs_code_only_ever_raises_draining() -> None:
    seeds = range(6)
    results = await asyncio.gather(
        *(
            run_scenario("programs", "handmade", _fast(seed, (0.0, 0.3)), settle=0.0)
            for seed in seeds
        )
    )
    for seed, result in zip(seeds, results, strict=True):
        assert result.errors == [f"RuntimeError: {DRAINING}"], f"seed {seed}"
        assert not [u for u in result.utterances if u.text == HANDMADE_FILLER], f"seed {seed}"


# -- 5. RunContext.wait_for_playout versus SpeechHandle.wait_for_playout -----------------------


async def test_run_context_wait_for_playout_waits_for_the_preamble_step_only() -> None:
    async with harness(preamble=PREAMBLE) as h:

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            filler = h.session.say(FILLER)
            await ctx.wait_for_playout()
            h.rec.mark("ctx_wait_returned")
            h.seen["filler_done"] = filler.done()
            h.seen["turn_done"] = ctx.speech_handle.done()
            return TOOL_RESULT

        await ask(h, body)

    returned = h.rec.markers["ctx_wait_returned"][0]
    assert abs(returned - h.one(PREAMBLE).end) < 0.1  # the step's playout
    assert h.seen["filler_done"] is False  # not other speech
    assert h.seen["turn_done"] is False
    # SpeechHandle.wait_for_playout (awaited by ask() from outside the tool) = the whole turn
    assert h.rec.markers["turn_done"][0] >= h.one(ANSWER).end - 0.02


# -- 6. what livekit-filler does instead --------------------------------------------------------


def _fast(seed: int, tool_duration: tuple[float, float]) -> Timings:
    """Random timings, scaled down so that a whole scenario run stays under ~2.5 s."""
    rng = random.Random(seed)
    return Timings(
        llm_ttft=rng.uniform(0.03, 0.15),
        task_llm_ttft=rng.uniform(0.03, 0.15),
        tts_ttfb=rng.uniform(0.02, 0.1),
        seconds_per_char=rng.uniform(0.008, 0.012),
        tool_duration=rng.uniform(*tool_duration),
        preamble=rng.random() < 0.5,
        filler_delay=rng.uniform(0.2, 0.3),
        filler_interval=rng.uniform(0.3, 0.5),
    )


async def test_livekit_filler_and_handmade_side_by_side() -> None:
    seeds = range(4)
    runs = await asyncio.gather(
        *(
            run_scenario(scenario, mode, _fast(seed, (0.6, 0.8)), settle=0.0)
            for seed in seeds
            for scenario in ("programs", "club_info")
            for mode in ("handmade", "livekit_filler")
        )
    )
    for i in range(0, len(runs), 4):
        programs_hand, programs_lkf, club_hand, club_lkf = runs[i : i + 4]
        # the thread's programs tool: the handmade filler never plays, livekit-filler's does
        assert programs_hand.errors == [f"RuntimeError: {DRAINING}"]
        assert not programs_hand.fillers
        assert programs_lkf.errors == [] and programs_lkf.fillers
        task_start = programs_lkf.marker("task_start")
        assert task_start is not None
        for filler in programs_lkf.fillers:
            assert filler.agent != "CollectAgeGender"  # never spoken into the AgentTask
            assert filler.end <= task_start + 0.05  # cut when the hand-off starts
        # the club tool: the handmade filler plays but lands in the history
        assert club_hand.errors == [] and club_hand.fillers
        assert HANDMADE_FILLER in club_hand.history_texts
        assert club_lkf.errors == [] and club_lkf.fillers
        for run in (programs_lkf, club_lkf):
            assert not run.fillers_in_history
            assert not run.overlaps


async def test_controller_guard_skips_where_say_would_raise() -> None:
    async with harness() as h:
        controller = FillerController.attach(h.session, settings=FillerSettings())

        async def filler() -> None:
            h.seen["guarded"] = controller.say_filler(FILLER)
            await h.try_say()

        async def body(h: Harness, ctx: RunContext[Any]) -> str:
            h.spawn(filler())
            await Sub(h)
            return TOOL_RESULT

        await ask(h, body)
        idle_handle = controller.say_filler(FILLER)
        assert idle_handle is not None
        await idle_handle
        history = _texts(h.session.history)
        await controller.aclose()

    assert h.seen["guarded"] is None  # skipped, no exception
    (err,) = h.errors
    assert_draining(err)  # the same moment, through session.say
    assert h.one(FILLER)  # the idle one played...
    assert FILLER not in history  # ...and stayed out of the history


# -- helpers ------------------------------------------------------------------------------------


def _texts(chat_ctx: llm.ChatContext) -> list[str]:
    return [i.text_content or "" for i in chat_ctx.items if isinstance(i, llm.ChatMessage)]


async def _return_result(h: Harness, ctx: RunContext[Any]) -> str:
    return TOOL_RESULT


async def _wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


async def _idle(h: Harness) -> None:
    while (speech := h.session.current_speech) is not None:
        await speech
    await asyncio.sleep(0.05)
