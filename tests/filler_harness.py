"""Shared harness for the session tests: the scripted tool agents, ``run_tool`` and polling helpers.

Imported as ``filler_harness`` (``tests/`` is on pytest's ``pythonpath`` and mypy's path).
Each test module keeps its own filler phrases: filler audio is cached process-wide by text
and TTS identity (livekit_filler/sound_cache.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from livekit.agents import Agent, AgentSession, RunContext, RunResult, function_tool, llm
from livekit.agents.voice.events import CloseEvent, FunctionToolsExecutedEvent

from livekit_filler import FillerController, FillerSettings, fillers, is_filler_speech
from livekit_filler._compat import tool_call_outputs
from livekit_filler.testing import (
    FakeLLM,
    FakeRealtimeModel,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    UserSpeechSimulator,
    Utterance,
    format_timeline,
    make_session,
    user_speaking_spans,
)

SPC = 0.02  # FakeTTS seconds per character
TTFB = 0.05  # FakeTTS time to first byte
LLM_TTFT = 0.05
EPS = 0.02  # real-time scheduling slack for "not before" checks

LONG_FILLER = "Please hold on while I look through all of our records."  # 1.12 s
QUESTION = "Can you look that up?"
PARALLEL_QUESTION = "Can you look up both?"
RESULT = "the looked-up result"
ANSWER = "Here is the answer."

Body = Callable[[RunContext[Any]], Awaitable[str]]
T = TypeVar("T")


def phrase_settings(phrase: str, followup: str, **overrides: Any) -> FillerSettings:
    """Fillers after 0.3 s, every 0.3 s, at most 3: ``phrase``, then ``followup``.

    Fixed timing: these tests time fillers by ``delay`` and ``interval`` exactly, and their
    tools' durations vary from test to test (adaptive timing is tested in test_timing.py).
    """
    values: dict[str, Any] = {
        "timing": "fixed",
        "delay": 0.3,
        "interval": 0.3,
        "max_count": 3,
        "phrases": [phrase],
        "followup_phrases": [followup],
    }
    values.update(overrides)
    return FillerSettings.from_values(**values)


def sleeping(seconds: float, result: str = RESULT) -> Body:
    async def body(context: RunContext[Any]) -> str:
        await asyncio.sleep(seconds)
        return result

    return body


def script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    """QUESTION calls slow_tool, PARALLEL_QUESTION both tools; RESULT gets ANSWER."""
    last = chat_ctx.items[-1] if chat_ctx.items else None
    # a tool's result is last, or second to last under a deferred reply's instructions
    if any(
        isinstance(i, llm.FunctionCallOutput) and RESULT in i.output for i in chat_ctx.items[-2:]
    ):
        return FakeResponse(text=ANSWER)
    if isinstance(last, llm.FunctionCallOutput):
        return None
    if isinstance(last, llm.ChatMessage) and last.role == "user":
        if last.text_content == QUESTION:
            return FakeResponse(tool_calls=[FakeToolCall("slow_tool")])
        if last.text_content == PARALLEL_QUESTION:
            return FakeResponse(tool_calls=[FakeToolCall("slow_tool"), FakeToolCall("other_tool")])
    return None


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")


class ToolAgent(Agent):
    """Runs ``body`` as slow_tool (``other`` as other_tool), marking start and end on ``rec``.

    ``outcomes`` maps a tool's name to its result, or to the name of the exception it raised.
    """

    def __init__(self, rec: TimelineRecorder, body: Body, other: Body | None = None) -> None:
        super().__init__(instructions="You are a test assistant.")
        self.rec = rec
        self._bodies = {"slow_tool": body, "other_tool": other or body}
        self.outcomes: dict[str, str] = {}

    async def _run(self, name: str, context: RunContext[Any]) -> str:
        self.rec.mark(f"{name}_start")
        try:
            result = await self._bodies[name](context)
        except BaseException as e:
            self.outcomes[name] = type(e).__name__
            raise
        finally:
            self.rec.mark(f"{name}_end")
        self.outcomes[name] = result
        return result


class FillerAgent(ToolAgent):
    @function_tool
    @fillers()
    async def slow_tool(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        return await self._run("slow_tool", context)

    @function_tool
    @fillers()
    async def other_tool(self, context: RunContext[Any]) -> str:
        """Look something else up slowly."""
        return await self._run("other_tool", context)


class PlainAgent(ToolAgent):
    @function_tool
    async def slow_tool(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        return await self._run("slow_tool", context)

    @function_tool
    async def other_tool(self, context: RunContext[Any]) -> str:
        """Look something else up slowly."""
        return await self._run("other_tool", context)


def texts(items: list[llm.ChatItem]) -> list[str]:
    return [i.text_content or "" for i in items if isinstance(i, llm.ChatMessage)]


def fillers_of(utterances: list[Utterance]) -> list[Utterance]:
    return [u for u in utterances if u.kind == "filler"]


@dataclass
class Run:
    """What one ``run_tool`` call heard and recorded."""

    utterances: list[Utterance]
    markers: dict[str, list[float]]
    history: list[str]
    llm_texts: list[str]
    run_texts: list[str]
    controller: FillerController | None
    outputs: list[tuple[str, str, bool]]  # (tool name, output, is_error)
    outcomes: dict[str, str]
    closes: list[CloseEvent]

    def marker(self, name: str) -> float:
        return self.markers[name][0]

    @property
    def fillers(self) -> list[Utterance]:
        return fillers_of(self.utterances)

    def said(self, text: str) -> Utterance:
        found = [u for u in self.utterances if u.text == text]
        assert found, f"{text!r} was never played:\n{self.timeline}"
        return found[0]

    @property
    def timeline(self) -> str:
        return format_timeline(self.utterances)

    def user_speaking(self) -> list[tuple[float, float]]:
        """When the session reported the user speaking, as spans."""
        return user_speaking_spans(self.markers)


async def within(timeout: float | None, aw: Awaitable[T]) -> T:
    """``asyncio.wait_for`` raising the builtin ``TimeoutError`` on Python 3.10 too.

    (``asyncio.timeout`` is 3.11+; on 3.10 ``wait_for`` raises ``asyncio.TimeoutError``,
    a different class, so ``except TimeoutError`` in a test would miss it.)
    """
    try:
        return await asyncio.wait_for(aw, timeout)
    except asyncio.TimeoutError as e:
        raise TimeoutError(f"not done within {timeout} s") from e


async def settle(
    session: AgentSession[Any], seconds: float = 0.1, *, timeout: float | None = None
) -> None:
    """Wait out the current speech (TimeoutError after ``timeout`` s if given), then ``seconds``."""

    async def speech_done() -> None:
        while (speech := session.current_speech) is not None:
            await speech
            # a done handle stays current until the scheduler runs: let it run
            await asyncio.sleep(0.01)

    await within(timeout, speech_done())
    await asyncio.sleep(seconds)


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll ``predicate`` every 10 ms until it holds (TimeoutError after ``timeout`` s)."""

    async def holds() -> None:
        while True:
            if predicate():
                return
            await asyncio.sleep(0.01)

    await within(timeout, holds())


async def wait_for_playing_filler(session: AgentSession[Any], rec: TimelineRecorder) -> None:
    """Return once a filler's audio is playing."""

    def playing() -> bool:
        speech = session.current_speech
        segs = rec.audio_output.segments
        return (
            speech is not None and is_filler_speech(speech) and bool(segs) and segs[-1].end is None
        )

    await wait_until(playing, 3.0)


async def run_tool(
    body: Body,
    *,
    settings: FillerSettings | None,
    decorated: bool = True,
    agent_class: type[ToolAgent] | None = None,
    other: Body | None = None,
    question: str = QUESTION,
    fake_llm: FakeLLM | None = None,
    tts: FakeTTS | None = None,
    wait_for: str | None = None,
    on_controller: Callable[[FillerController], None] | None = None,
    user: UserSpeechSimulator | None = None,
    realtime: FakeRealtimeModel | None = None,
    **session_options: Any,
) -> Run:
    """Ask ``question``, let the tool(s) run and any reply play; return what was heard.

    ``settings=None`` attaches no controller; ``decorated=False`` runs the tools without
    ``@fillers``, ``agent_class`` with other decorations; ``wait_for`` waits (up to 3 s)
    for that text to be played before settling; ``on_controller`` sees the controller
    before the session starts; ``user`` can make sounds (the tools' bodies call it);
    ``realtime`` runs the session on that model instead, ``tts`` being the filler voice;
    ``session_options`` go to ``AgentSession``.
    """
    fake_llm = fake_llm or FakeLLM(script, default=None, ttft=LLM_TTFT)
    tts = tts or FakeTTS(ttfb=TTFB, seconds_per_char=SPC)
    if user is not None:
        session_options = {**user.session_kwargs(), **session_options}
    outputs: list[tuple[str, str, bool]] = []
    closes: list[CloseEvent] = []

    def on_executed(ev: FunctionToolsExecutedEvent) -> None:
        outputs.extend((o.name, o.output, o.is_error) for o in tool_call_outputs(ev))

    session_cm = (
        make_session(llm=fake_llm, tts=tts, **session_options)
        if realtime is None
        else make_session(llm=realtime, tts=None, **session_options)
    )
    async with session_cm as session:
        voice = tts if realtime is not None else None
        controller = (
            FillerController.attach(session, settings=settings, tts=voice)
            if settings is not None
            else None
        )
        if controller is not None and on_controller is not None:
            on_controller(controller)
        session.on("function_tools_executed", on_executed)
        session.on("close", closes.append)
        rec = TimelineRecorder.install(session)
        if user is not None:
            user.install(session, timeline=rec)
        agent_class = agent_class or (FillerAgent if decorated else PlainAgent)
        agent = agent_class(rec, body, other)
        await session.start(agent)
        result: RunResult[None] = await session.run(user_input=question)
        if wait_for is not None:
            await wait_until(lambda: any(u.text == wait_for for u in rec.utterances), 3.0)
        await settle(session)
        history = texts(session.history.items)
        run_texts = [
            ev.item.text_content or ""
            for ev in result.events
            if ev.type == "message" and isinstance(ev.item, llm.ChatMessage)
        ]
        utterances = rec.utterances
    return Run(
        utterances=utterances,
        markers={k: list(v) for k, v in rec.markers.items()},
        history=history,
        llm_texts=(
            [t for ctx in fake_llm.calls for t in texts(ctx.items)]
            if realtime is None
            else realtime.conversation_texts()
        ),
        run_texts=run_texts,
        controller=controller,
        outputs=outputs,
        outcomes=dict(agent.outcomes),
        closes=closes,
    )


async def assert_every_seed(
    case: Callable[[int], Awaitable[list[str]]], seeds: Iterable[int]
) -> None:
    """Run a randomized case for every seed at once; fail listing each seed's problems."""
    seeds = list(seeds)
    results = await asyncio.gather(*(case(seed) for seed in seeds))
    failures = {seed: problems for seed, problems in zip(seeds, results, strict=True) if problems}
    assert not failures, failures
