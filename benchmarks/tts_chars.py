"""TTS characters synthesized for 1,000 fillers over 100 sessions: livekit-filler vs with_filler.

Each session asks one question; the LLM calls one tool, which runs until ``FILLERS_PER_SESSION``
fillers have played, then the LLM answers. Sessions run concurrently, each with its own FakeTTS
(ttfb=0.3 s, very short audio) of equal settings, as in one worker process serving many calls.

* livekit-filler: ``@fillers()`` with the default phrase pools; every distinct phrase should be
  synthesized once per process (pre-rendered into the shared cache), whatever the play count.
* LiveKit's anchor: ``context.with_filler(PHRASE, ...)`` with a string: one synthesis per play.

Only filler texts are counted (the LLM's answer is synthesized once per session by both).
Three runs of livekit-filler start from an empty cache each: "prewarmed" renders the settings'
phrases once before any call (a worker's prewarm step; counted); "1st call warms" runs one whole
session first and then the other 99 at once; "cold burst" starts all 100 at the same instant.
The anchor runs its 100 sessions at once.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from _harness import header, quiet_logs, table, verdict
from livekit.agents import Agent, RunContext, function_tool, llm
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.events import SpeechCreatedEvent

from livekit_filler import FillerController, FillerSettings, fillers, is_filler_speech
from livekit_filler.filler_voice import FillerVoice
from livekit_filler.options import settings_texts
from livekit_filler.settings import DEFAULT_FOLLOWUP_PHRASES, DEFAULT_PHRASES
from livekit_filler.sound_cache import shared_cache
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    make_session,
)

Mode = Literal["livekit_filler", "with_filler"]

TTFB = 0.3
SECONDS_PER_CHAR = 0.001  # ~30 ms of audio per phrase: the count matters here, not the sound
FILLERS_PER_SESSION = 10
DELAY = 0.05
INTERVAL = 0.05
PHRASE = "One moment, let me check that."
OUR_TEXTS = frozenset((*DEFAULT_PHRASES, *DEFAULT_FOLLOWUP_PHRASES))
QUESTION = "Can you look that up?"
ANSWER = "Here it is."


def _script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.FunctionCallOutput):
        return FakeResponse(text=ANSWER)
    if isinstance(last, llm.ChatMessage) and last.role == "user":
        return FakeResponse(tool_calls=[FakeToolCall("look_up")])
    return None


def _settings() -> FillerSettings:
    # one process for many sessions: the memory cache alone (per_process.py: the disk cache)
    return FillerSettings.from_values(
        delay=DELAY, interval=INTERVAL, max_count=FILLERS_PER_SESSION, disk_cache=False
    )


class _Counter:
    """Counts filler speeches whose playout finished, so the tool knows when to return."""

    def __init__(self, is_filler: Callable[[SpeechHandle], bool]) -> None:
        self.played = 0
        self._is_filler = is_filler
        self._enough = asyncio.Event()

    def on_created(self, ev: SpeechCreatedEvent) -> None:
        if ev.source != "say":
            return
        handle = ev.speech_handle
        # marks are set right after say() returns: classify when the speech is done
        handle.add_done_callback(self._done)

    def _done(self, handle: SpeechHandle) -> None:
        if self._is_filler(handle):
            self.played += 1
            if self.played >= FILLERS_PER_SESSION:
                self._enough.set()

    async def wait(self, timeout: float = 60.0) -> None:
        """Return once ``FILLERS_PER_SESSION`` fillers have played."""
        await asyncio.wait_for(self._enough.wait(), timeout)


class OursAgent(Agent):
    def __init__(self, counter: _Counter) -> None:
        super().__init__(instructions="You are a benchmark assistant.")
        self._counter = counter

    @function_tool
    @fillers()
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        await self._counter.wait()
        return "the result"


class WithFillerAgent(Agent):
    def __init__(self, counter: _Counter) -> None:
        super().__init__(instructions="You are a benchmark assistant.")
        self._counter = counter

    @function_tool
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        async with context.with_filler(
            PHRASE, delay=DELAY, interval=INTERVAL, max_steps=FILLERS_PER_SESSION
        ):
            await self._counter.wait()
        return "the result"


@dataclass
class SessionResult:
    fillers: int
    filler_chars: int
    filler_syntheses: int
    texts: frozenset[str] = frozenset()


async def run_session(mode: Mode, start: asyncio.Event | None = None) -> SessionResult:
    fake_tts = FakeTTS(ttfb=TTFB, seconds_per_char=SECONDS_PER_CHAR)
    counter = _Counter(is_filler_speech if mode == "livekit_filler" else lambda h: True)
    if start is not None:
        await start.wait()
    async with make_session(llm=FakeLLM(_script, default=None, ttft=0.05), tts=fake_tts) as session:
        session.on("speech_created", counter.on_created)
        TimelineRecorder.install(session)
        agent: Agent
        if mode == "livekit_filler":
            FillerController.attach(session, settings=_settings())
            agent = OursAgent(counter)
        else:
            agent = WithFillerAgent(counter)
        await session.start(agent)
        await session.run(user_input=QUESTION)
        while (speech := session.current_speech) is not None:
            await speech
            await asyncio.sleep(0.01)  # a done handle stays current until the scheduler runs
        session.off("speech_created", counter.on_created)
    texts = OUR_TEXTS if mode == "livekit_filler" else frozenset((PHRASE,))
    filler_synth = [t for t in fake_tts.synthesized if t in texts]
    return SessionResult(
        fillers=counter.played,
        filler_chars=sum(len(t) for t in filler_synth),
        filler_syntheses=len(filler_synth),
        texts=frozenset(filler_synth),
    )


@dataclass
class Totals:
    label: str
    sessions: int
    fillers: int
    chars: int
    syntheses: int
    cache_chars: int | None
    expected: int | None
    seconds: float
    distinct_synthesized: int = 0
    """How many distinct texts were synthesized (== syntheses: none twice)."""


Warm = Literal["prewarm", "first_call", "none"]


async def run_mode(label: str, mode: Mode, sessions: int, *, warm: Warm) -> Totals:
    loop = asyncio.get_running_loop()
    started = loop.time()
    cache = shared_cache()
    cache.clear()
    results: list[SessionResult] = []
    prewarm_chars = prewarm_syntheses = 0
    prewarm_texts: frozenset[str] = frozenset()
    if warm == "prewarm":
        # a worker's prewarm step: render the settings' phrases once, before any call
        prewarm_tts = FakeTTS(ttfb=TTFB, seconds_per_char=SECONDS_PER_CHAR)
        await FillerVoice().prerender(prewarm_tts, settings_texts(_settings()))
        prewarm_chars = prewarm_tts.characters_synthesized
        prewarm_syntheses = len(prewarm_tts.synthesized)
        prewarm_texts = frozenset(prewarm_tts.synthesized)
    elif warm == "first_call":
        # the process's first call warms the cache; the others start once it has ended
        results.append(await run_session(mode))
    go = asyncio.Event()
    pending = [asyncio.ensure_future(run_session(mode, go)) for _ in range(sessions - len(results))]
    await asyncio.sleep(0)
    go.set()
    results += await asyncio.gather(*pending)
    ours = mode == "livekit_filler"
    return Totals(
        label=label,
        sessions=sessions,
        fillers=sum(r.fillers for r in results),
        chars=prewarm_chars + sum(r.filler_chars for r in results),
        syntheses=prewarm_syntheses + sum(r.filler_syntheses for r in results),
        cache_chars=cache.characters_rendered if ours else None,
        expected=sum(len(t) for t in OUR_TEXTS) if ours else None,
        seconds=loop.time() - started,
        distinct_synthesized=len(prewarm_texts.union(*(r.texts for r in results))),
    )


async def run_all(sessions: int) -> list[Totals]:
    return [
        await run_mode("livekit-filler, prewarmed", "livekit_filler", sessions, warm="prewarm"),
        await run_mode(
            "livekit-filler, 1st call warms", "livekit_filler", sessions, warm="first_call"
        ),
        await run_mode("livekit-filler, cold burst", "livekit_filler", sessions, warm="none"),
        await run_mode("with_filler(str)", "with_filler", sessions, warm="none"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100, help="sessions per approach (100)")
    args = parser.parse_args()
    quiet_logs()
    header("tts_chars: TTS characters synthesized for fillers")
    print(
        f"{args.sessions} sessions x {FILLERS_PER_SESSION} fillers, "
        f"FakeTTS(ttfb={TTFB}, seconds_per_char={SECONDS_PER_CHAR}), "
        f"delay={DELAY} s, interval={INTERVAL} s"
    )
    print(
        f"livekit-filler distinct phrases: {len(OUR_TEXTS)} "
        f"({sum(len(t) for t in OUR_TEXTS)} characters); with_filler phrase: "
        f"{PHRASE!r} ({len(PHRASE)} characters)"
    )
    totals = asyncio.run(run_all(args.sessions))
    rows = [
        [
            t.label,
            t.sessions,
            t.fillers,
            t.syntheses,
            t.chars,
            "-" if t.cache_chars is None else t.cache_chars,
            "-" if t.expected is None else t.expected,
            f"{t.chars / t.fillers:.2f}" if t.fillers else "n/a",
            f"{t.seconds:.1f}",
        ]
        for t in totals
    ]
    print()
    print(
        table(
            [
                "approach",
                "sessions",
                "fillers",
                "filler syntheses",
                "filler TTS chars",
                "cache chars",
                "distinct chars",
                "chars/filler",
                "wall s",
            ],
            rows,
        )
    )
    print()
    for t in totals:
        if t.expected is not None:
            # the pool's phrases that play are each synthesized once per process; with adaptive
            # timing a session may never play some of them, so the total may be below the pool's
            once = t.syntheses == t.distinct_synthesized and t.chars <= t.expected
            print(
                f"target ({t.label}): each phrase synthesized at most once "
                f"({t.syntheses} syntheses of {t.distinct_synthesized} texts, {t.chars} <= "
                f"{t.expected} chars): {verdict(once)}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
