"""Added latency from filler trigger to the first filler audio: livekit-filler vs with_filler.

Both approaches run side by side in one process, on the testing kit (FakeLLM, FakeTTS with a
0.3 s time to first byte, FakeAudioOutput playing in real time), each in a real AgentSession:
the user asks, the LLM calls a tool that sleeps long enough for one filler, the filler plays.

* livekit-filler: ``@fillers()`` with ``delay=DELAY``; the phrase is pre-rendered once into the
  process-wide audio cache (a warm-up run fills it) and replayed with ``session.say(audio=...)``.
* LiveKit's anchor: ``async with context.with_filler(PHRASE, delay=DELAY)`` with a string, so
  ``session.say(PHRASE)`` synthesizes it on every play (livekit-internals §1.2, §4.2).

The trigger is the moment the filler is scheduled: the ``speech_created`` event of its handle,
emitted synchronously inside ``session.say()`` right after the dwell ends. First audio is the
start of the handle's first segment in the FakeAudioOutput (the timeline's filler utterance).
A second figure measures from ``tool start + delay`` (the earliest a filler may start).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

from _harness import header, percentile, quiet_logs, table, verdict
from livekit.agents import Agent, RunContext, function_tool, llm
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.events import SpeechCreatedEvent

from livekit_filler import FillerController, FillerSettings, fillers, is_filler_speech
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
SECONDS_PER_CHAR = 0.01
DELAY = 0.2
PHRASE = "One moment, let me check that."  # 0.30 s of audio
# long enough for the dwell, the with_filler TTS and the filler's audio, with a margin
TOOL_SECONDS = DELAY + TTFB + len(PHRASE) * SECONDS_PER_CHAR + 0.25
QUESTION = "Can you look that up?"
RESULT = "the looked-up result"
ANSWER = "Here it is."
TARGET_P95_MS = 30.0
TARGET_RATIO = 10.0


def _script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.FunctionCallOutput):
        return FakeResponse(text=ANSWER)
    if isinstance(last, llm.ChatMessage) and last.role == "user":
        return FakeResponse(tool_calls=[FakeToolCall("look_up")])
    return None


class _Probe:
    def __init__(self) -> None:
        self.tool_started: float | None = None

    def mark_tool_start(self) -> None:
        self.tool_started = asyncio.get_running_loop().time()


class OursAgent(Agent):
    def __init__(self, probe: _Probe) -> None:
        super().__init__(instructions="You are a benchmark assistant.")
        self._probe = probe

    @function_tool
    @fillers()
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        self._probe.mark_tool_start()
        await asyncio.sleep(TOOL_SECONDS)
        return RESULT


class WithFillerAgent(Agent):
    def __init__(self, probe: _Probe) -> None:
        super().__init__(instructions="You are a benchmark assistant.")
        self._probe = probe

    @function_tool
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        self._probe.mark_tool_start()
        async with context.with_filler(PHRASE, delay=DELAY):
            await asyncio.sleep(TOOL_SECONDS)
        return RESULT


@dataclass
class RunResult:
    mode: Mode
    from_trigger: float | None = None
    """Seconds from the filler's scheduling to its first audio."""
    from_dwell_end: float | None = None
    """Seconds from tool start + delay to the filler's first audio."""
    fillers: int = 0
    synthesized: list[str] = field(default_factory=list)


def settings() -> FillerSettings:
    return FillerSettings.from_values(
        disk_cache=False,  # one process for many sessions: the memory cache alone
        delay=DELAY,
        max_count=1,
        phrases=[PHRASE],
        followup_phrases=[],
    )


async def run_once(mode: Mode) -> RunResult:
    loop = asyncio.get_running_loop()
    probe = _Probe()
    fake_tts = FakeTTS(ttfb=TTFB, seconds_per_char=SECONDS_PER_CHAR)
    created: list[tuple[SpeechHandle, float]] = []

    def on_created(ev: SpeechCreatedEvent) -> None:
        # is_filler_speech() is only true once say() returned: classify after the run
        if ev.source == "say":
            created.append((ev.speech_handle, loop.time()))

    result = RunResult(mode=mode)
    async with make_session(llm=FakeLLM(_script, default=None, ttft=0.05), tts=fake_tts) as session:
        session.on("speech_created", on_created)
        rec = TimelineRecorder.install(session)
        agent: Agent
        if mode == "livekit_filler":
            FillerController.attach(session, settings=settings())
            agent = OursAgent(probe)
        else:
            agent = WithFillerAgent(probe)
        await session.start(agent)
        await session.run(user_input=QUESTION)
        while (speech := session.current_speech) is not None:
            await speech
            await asyncio.sleep(0.01)  # a done handle stays current until the scheduler runs
        await asyncio.sleep(0.05)
        segments = list(rec.audio_output.segments)
        session.off("speech_created", on_created)
    result.synthesized = list(fake_tts.synthesized)
    fillers_created = [(h, t) for h, t in created if mode == "with_filler" or is_filler_speech(h)]
    result.fillers = len(fillers_created)
    if fillers_created:
        handle, scheduled_at = fillers_created[0]
        starts = [s.start for s in segments if s.speech_id == handle.id]
        if starts:
            result.from_trigger = min(starts) - scheduled_at
            if probe.tool_started is not None:
                result.from_dwell_end = min(starts) - (probe.tool_started + DELAY)
    return result


async def run_all(runs: int, concurrency: int) -> dict[Mode, list[RunResult]]:
    # warm-up, not measured: imports, the first session, and the pre-rendered phrase
    await asyncio.gather(run_once("livekit_filler"), run_once("with_filler"))
    cache = shared_cache()
    hits_before, misses_before = cache.hits, cache.misses
    results: dict[Mode, list[RunResult]] = {"livekit_filler": [], "with_filler": []}
    # the two approaches alternate inside every batch, so both see the same load
    order: list[Mode] = ["livekit_filler", "with_filler"] * runs
    semaphore = asyncio.Semaphore(concurrency)

    async def one(mode: Mode) -> None:
        async with semaphore:
            results[mode].append(await run_once(mode))

    await asyncio.gather(*(one(m) for m in order))
    results_hits = cache.hits - hits_before
    results_misses = cache.misses - misses_before
    print(f"audio cache during the measured runs: {results_hits} hits, {results_misses} misses")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="runs per approach (60)")
    parser.add_argument("--concurrency", type=int, default=4, help="sessions at a time (4)")
    args = parser.parse_args()
    quiet_logs()
    header("latency: filler trigger -> first filler audio (FakeTTS ttfb=0.3 s)")
    print(
        f"runs: {args.runs} per approach, {args.concurrency} sessions at a time, "
        f"delay={DELAY} s, tool={TOOL_SECONDS:.2f} s, phrase={PHRASE!r}"
    )
    results = asyncio.run(run_all(args.runs, args.concurrency))

    rows: list[list[object]] = []
    p95: dict[Mode, float] = {}
    approaches: list[tuple[Mode, str]] = [
        ("livekit_filler", "livekit-filler (cached audio)"),
        ("with_filler", "with_filler(str)"),
    ]
    for mode, label in approaches:
        runs = results[mode]
        trig = [r.from_trigger * 1000 for r in runs if r.from_trigger is not None]
        dwell = [r.from_dwell_end * 1000 for r in runs if r.from_dwell_end is not None]
        missing = sum(1 for r in runs if r.from_trigger is None)
        synth = sum(r.synthesized.count(PHRASE) for r in runs)
        p95[mode] = percentile(trig, 95)
        rows.append(
            [
                label,
                len(trig),
                percentile(trig, 50),
                percentile(trig, 95),
                max(trig, default=float("nan")),
                percentile(dwell, 50),
                percentile(dwell, 95),
                missing,
                synth,
            ]
        )
    print()
    print(
        table(
            [
                "approach",
                "n",
                "p50 ms",
                "p95 ms",
                "max ms",
                "p50 from tool+delay",
                "p95 from tool+delay",
                "no filler",
                "filler TTS calls",
            ],
            rows,
        )
    )
    ours, theirs = p95["livekit_filler"], p95["with_filler"]
    ratio = theirs / ours if ours > 0 else float("inf")
    print()
    print(f"p95 ratio with_filler / livekit-filler: {ratio:.1f}x")
    print(
        f"target: livekit-filler p95 <= {TARGET_P95_MS:.0f} ms: {verdict(ours <= TARGET_P95_MS)}; "
        f"ratio >= {TARGET_RATIO:.0f}x: {verdict(ratio >= TARGET_RATIO)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
