"""CPU per filler and memory per session at 10, 50, 100 and 200 concurrent sessions.

Every session of a level starts at once in one process (testing kit, real time): the user asks,
the LLM calls a tool that runs ``TOOL_SECONDS`` with ``@fillers`` (pre-rendered phrases, as a
worker would prewarm them; FakeTTS ttfb=0.3 s), then answers. Each level runs four passes:

* CPU: the same sessions with fillers and without (undecorated tool, no controller); process
  CPU time (``time.process_time``) over each pass. "added CPU per filler" is the difference
  divided by the fillers played; "CPU per filler" divides the whole with-filler pass.
* memory: the same two passes under ``tracemalloc``, one snapshot per pass while every tool is
  running; "filler memory per session" is the difference of the traced sizes divided by the
  sessions; "library memory per session" counts only allocations made in ``livekit_filler``
  (not its testing kit). The traced total is averaged over ``SAMPLES`` samples.

"fillers/session" and the event-loop lag (how late a 10 ms ticker woke, p99) show whether the
process still keeps real time: if it cannot, sessions play fewer fillers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
import tracemalloc
from dataclasses import dataclass
from typing import Any

from _harness import header, percentile, quiet_logs, table
from livekit.agents import Agent, RunContext, function_tool, llm

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.filler_voice import FillerVoice
from livekit_filler.options import settings_texts
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    make_session,
)

LEVELS = (10, 50, 100, 200)
TTFB = 0.3
SECONDS_PER_CHAR = 0.01
TOOL_SECONDS = 3.0
DELAY = 0.3
INTERVAL = 0.3
MAX_COUNT = 4
SAMPLE_AFTER = 1.0  # seconds after the last tool started: every session is filling
SAMPLES = 5  # traced-memory samples, SAMPLE_SPACING apart, averaged
SAMPLE_SPACING = 0.25


def _settings() -> FillerSettings:
    return FillerSettings.from_values(
        delay=DELAY, interval=INTERVAL, max_count=MAX_COUNT, disk_cache=False
    )


def _script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.FunctionCallOutput):
        return FakeResponse(text="Here it is.")
    if isinstance(last, llm.ChatMessage) and last.role == "user":
        return FakeResponse(tool_calls=[FakeToolCall("look_up")])
    return None


class _Level:
    """Shared by the sessions of one pass: counts running tools, samples memory once."""

    def __init__(self, sessions: int, traced: bool) -> None:
        self.sessions = sessions
        self.traced = traced
        self.started = 0
        self.all_started = asyncio.Event()
        self.sampled = asyncio.Event()
        self.traced_bytes = 0.0
        self.library_bytes = 0

    def tool_started(self) -> None:
        self.started += 1
        if self.started == self.sessions:
            self.all_started.set()

    async def sample(self) -> None:
        await self.all_started.wait()
        await asyncio.sleep(SAMPLE_AFTER)
        if self.traced:
            samples = []
            for _ in range(SAMPLES):
                samples.append(tracemalloc.get_traced_memory()[0])
                await asyncio.sleep(SAMPLE_SPACING)
            self.traced_bytes = sum(samples) / len(samples)
            self.library_bytes = _library_bytes()
        self.sampled.set()


def _library_bytes() -> int:
    """Traced bytes allocated by lines of the library itself (not its testing kit)."""
    stats = tracemalloc.take_snapshot().statistics("filename")
    return sum(s.size for s in stats if _is_library(s.traceback[0].filename))


def _is_library(filename: str) -> bool:
    path = filename.replace(os.sep, "/")
    return "/livekit_filler/" in path and "/livekit_filler/testing/" not in path


async def _tool_body(level: _Level) -> str:
    level.tool_started()
    await asyncio.sleep(TOOL_SECONDS)
    return "the result"


class FillerAgent(Agent):
    def __init__(self, level: _Level) -> None:
        super().__init__(instructions="You are a benchmark assistant.")
        self._level = level

    @function_tool
    @fillers()
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        return await _tool_body(self._level)


class PlainAgent(Agent):
    def __init__(self, level: _Level) -> None:
        super().__init__(instructions="You are a benchmark assistant.")
        self._level = level

    @function_tool
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        return await _tool_body(self._level)


async def _session(level: _Level, with_fillers: bool, go: asyncio.Event) -> int:
    await go.wait()
    fake_tts = FakeTTS(ttfb=TTFB, seconds_per_char=SECONDS_PER_CHAR)
    async with make_session(llm=FakeLLM(_script, default=None, ttft=0.05), tts=fake_tts) as session:
        TimelineRecorder.install(session)
        controller = None
        agent: Agent
        if with_fillers:
            controller = FillerController.attach(session, settings=_settings())
            agent = FillerAgent(level)
        else:
            agent = PlainAgent(level)
        await session.start(agent)
        await session.run(user_input="Can you look that up?")
        while (speech := session.current_speech) is not None:
            await speech
            await asyncio.sleep(0.01)  # a done handle stays current until the scheduler runs
        # wait for the sample so every session is still alive when memory is measured
        await level.sampled.wait()
        return controller.metrics.fillers_played if controller is not None else 0


@dataclass
class Pass:
    sessions: int
    with_fillers: bool
    traced: bool
    cpu: float = 0.0
    wall: float = 0.0
    fillers: int = 0
    traced_bytes: float = 0.0
    library_bytes: int = 0
    lag_p99_ms: float = 0.0


async def run_pass(sessions: int, *, with_fillers: bool, traced: bool) -> Pass:
    result = Pass(sessions, with_fillers, traced)
    loop = asyncio.get_running_loop()
    gc.collect()
    if traced:
        tracemalloc.start()
    level = _Level(sessions, traced)
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            expected = loop.time() + 0.01
            await asyncio.sleep(0.01)
            lags.append(max(0.0, loop.time() - expected))

    base_traced = tracemalloc.get_traced_memory()[0] if traced else 0
    base_library = _library_bytes() if traced else 0
    cpu0, wall0 = time.process_time(), loop.time()
    tick = asyncio.create_task(ticker())
    sampler = asyncio.create_task(level.sample())
    go = asyncio.Event()
    tasks = [asyncio.create_task(_session(level, with_fillers, go)) for _ in range(sessions)]
    go.set()
    played = await asyncio.gather(*tasks)
    await sampler
    stop.set()
    await tick
    result.cpu = time.process_time() - cpu0
    result.wall = loop.time() - wall0
    result.fillers = sum(played)
    result.lag_p99_ms = percentile(lags, 99) * 1000
    print(
        f"  pass: {sessions:>3} sessions, fillers={with_fillers!s:<5} traced={traced!s:<5} "
        f"wall {result.wall:.1f} s",
        flush=True,
    )
    if traced:
        result.traced_bytes = level.traced_bytes - base_traced
        result.library_bytes = level.library_bytes - base_library
        tracemalloc.stop()
    return result


async def run_all(levels: tuple[int, ...]) -> list[tuple[Pass, Pass, Pass, Pass]]:
    # a worker's prewarm: the phrases are rendered once per process, before any call
    await FillerVoice().prerender(
        FakeTTS(ttfb=TTFB, seconds_per_char=SECONDS_PER_CHAR), settings_texts(_settings())
    )
    await run_pass(5, with_fillers=True, traced=False)  # warm-up, not reported
    out = []
    for n in levels:
        plain = await run_pass(n, with_fillers=False, traced=False)
        filled = await run_pass(n, with_fillers=True, traced=False)
        plain_mem = await run_pass(n, with_fillers=False, traced=True)
        filled_mem = await run_pass(n, with_fillers=True, traced=True)
        out.append((plain, filled, plain_mem, filled_mem))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--levels", type=int, nargs="+", default=list(LEVELS), help="session counts"
    )
    args = parser.parse_args()
    quiet_logs()
    header("scale: CPU per filler and memory per session vs concurrent sessions")
    print(
        f"tool {TOOL_SECONDS} s, delay {DELAY} s, interval {INTERVAL} s, max {MAX_COUNT} fillers, "
        f"FakeTTS(ttfb={TTFB}, seconds_per_char={SECONDS_PER_CHAR}), phrases pre-rendered"
    )
    results = asyncio.run(run_all(tuple(args.levels)))
    rows: list[list[object]] = []
    for plain, filled, plain_mem, filled_mem in results:
        n = filled.sessions
        per_filler = filled.cpu / filled.fillers * 1000 if filled.fillers else float("nan")
        added = (filled.cpu - plain.cpu) / filled.fillers * 1000 if filled.fillers else float("nan")
        rows.append(
            [
                n,
                f"{filled.fillers / n:.2f}",
                f"{filled.cpu:.2f}",
                f"{plain.cpu:.2f}",
                f"{per_filler:.2f}",
                f"{added:.2f}",
                f"{(filled_mem.traced_bytes - plain_mem.traced_bytes) / n / 1024:.1f}",
                f"{filled_mem.library_bytes / n / 1024:.1f}",
                f"{filled_mem.traced_bytes / n / 1024:.0f}",
                f"{filled.lag_p99_ms:.0f} / {plain.lag_p99_ms:.0f}",
                f"{filled.wall:.1f}",
            ]
        )
    print()
    print(
        table(
            [
                "sessions",
                "fillers/session",
                "CPU s (fillers)",
                "CPU s (none)",
                "CPU ms/filler",
                "added CPU ms/filler",
                "filler KiB/session",
                "library KiB/session",
                "session KiB (traced)",
                "loop lag p99 ms (fillers / none)",
                "wall s",
            ],
            rows,
        )
    )
    if len(results) >= 2:
        first, last = results[0], results[-1]

        def added_cpu(r: tuple[Pass, Pass, Pass, Pass]) -> float:
            plain, filled, _, _ = r
            return (filled.cpu - plain.cpu) / max(filled.fillers, 1)

        def added_mem(r: tuple[Pass, Pass, Pass, Pass]) -> float:
            _, filled, plain_mem, filled_mem = r
            return (filled_mem.traced_bytes - plain_mem.traced_bytes) / filled.sessions

        print()
        print(
            f"growth {first[1].sessions} -> {last[1].sessions} sessions: "
            f"added CPU per filler x{added_cpu(last) / added_cpu(first):.2f}, "
            f"filler memory per session x{added_mem(last) / added_mem(first):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
