"""Adaptive timing on a real AgentSession: learned latencies, fitted phrases, word-boundary cuts.

The latency model is process-wide per cache directory, and every test has its own default
cache directory (conftest), so each test starts with no history.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from filler_harness import (
    ANSWER,
    LLM_TTFT,
    LONG_FILLER,
    QUESTION,
    Run,
    assert_every_seed,
    run_tool,
    sleeping,
)

from livekit_filler import FillerSettings
from livekit_filler.process_state import latency_model
from livekit_filler.testing import FakeLLM, FakeTTS

FIRST = "One moment, let me check that for you."
FOLLOWUP = "Still looking through the records, thanks for waiting."


def adaptive(**overrides: Any) -> FillerSettings:
    values: dict[str, Any] = {
        "delay": 0.6,
        "interval": 0.5,
        "grace": 0.15,
        "max_count": 3,
        "phrases": [FIRST],
        "followup_phrases": [FOLLOWUP],
    }
    values.update(overrides)
    return FillerSettings.from_values(**values)


def first_filler_after_start(run: Run) -> float | None:
    fillers = run.fillers
    return fillers[0].start - run.marker("slow_tool_start") if fillers else None


async def test_a_slow_tool_speaks_right_away_from_its_second_call() -> None:
    settings = adaptive()
    first = await run_tool(sleeping(1.2), settings=settings)
    cold = first_filler_after_start(first)
    assert cold is not None and cold >= 0.6 - 0.02, first.timeline  # unknown: the delay
    second = await run_tool(sleeping(1.2), settings=settings)
    warm = first_filler_after_start(second)
    assert warm is not None and warm <= 0.15 + 0.12, second.timeline  # known slow: the grace
    # fixed timing ignores what was learned
    fixed = await run_tool(sleeping(1.2), settings=adaptive(timing="fixed"))
    late = first_filler_after_start(fixed)
    assert late is not None and late >= 0.6 - 0.02, fixed.timeline


async def test_a_tool_fast_on_its_last_calls_gets_no_filler() -> None:
    settings = adaptive(delay=0.1)
    latencies = latency_model(settings)
    for seconds in (0.3, 0.35, 0.25):
        latencies.record("slow_tool", seconds)
    for _ in range(2):
        run = await run_tool(sleeping(0.35), settings=settings)
        assert run.fillers == [], run.timeline
    # the same call with fixed timing would have had one
    fixed = await run_tool(sleeping(0.35), settings=adaptive(delay=0.1, timing="fixed"))
    assert fixed.fillers, fixed.timeline


async def test_a_fast_tool_that_overruns_still_gets_a_filler() -> None:
    settings = adaptive(delay=0.1)
    for seconds in (0.2, 0.25, 0.2):
        latency_model(settings).record("slow_tool", seconds)
    run = await run_tool(sleeping(1.5), settings=settings)
    start = first_filler_after_start(run)
    # twice its usual worst time, then a filler: the wait is no longer usual
    assert start is not None and 0.45 <= start <= 0.75, run.timeline


async def test_no_filler_starts_that_would_be_cut_in_its_first_half() -> None:
    settings = adaptive(
        phrases=[LONG_FILLER], followup_phrases=[], max_count=1, grace=0.15, slow_after=0.5
    )
    for _ in range(5):
        latency_model(settings).record("slow_tool", 0.55)
    # slow, so due after the grace; but a 1.1 s filler started then would play 0.4 s of
    # itself. (A first call renders the phrase: only a voice whose pace is known is fitted.)
    await run_tool(sleeping(0.55), settings=settings)
    run = await run_tool(sleeping(0.55), settings=settings)
    assert run.fillers == [], run.timeline
    assert run.controller is not None
    assert run.controller.metrics.fillers_skipped["no_fit"] >= 1


def _reply_delay(run: Run) -> float:
    return run.said(ANSWER).start - run.marker("slow_tool_end")


def _assert_p95_within(delays: list[float], bound: float = 0.1) -> None:
    delays = sorted(delays)
    p95 = delays[int(0.95 * (len(delays) - 1))]
    assert p95 <= bound, f"reply delay vs no fillers: p95 {p95 * 1000:.0f} ms; {delays}"


async def _four_at_a_time(case: Callable[[int], Awaitable[list[str]]], seeds: range) -> None:
    """Every seed of ``case``, four at a time: a timed stop is as exact as the event loop is
    punctual."""
    limit = asyncio.Semaphore(4)

    async def limited(seed: int) -> list[str]:
        async with limit:
            return await case(seed)

    await assert_every_seed(limited, seeds)


def _played_whole(run: Run, tts: FakeTTS) -> list[str]:
    """Problems: fillers that stopped inside a word."""
    problems = []
    for filler in run.fillers:
        played = filler.duration
        if played >= tts.duration_for(filler.text) - 0.02:
            continue
        for start, end in tts.words_for(filler.text):
            if start + 0.01 < played < end - 0.01:
                problems.append(f"{filler.text!r} stopped {played:.3f} s in, inside a word")
    return problems


async def test_fillers_end_between_words_and_never_delay_the_reply() -> None:
    """Over randomized timings, paired with the same timings and no fillers: every cut
    filler stops in a pause between words, and the reply comes as soon as without fillers
    (p95 of the difference at most 100 ms)."""
    settings = adaptive(phrases=[LONG_FILLER, FIRST], followup_phrases=[FOLLOWUP])
    # a history longer than these calls: fillers start early and the answer cuts them
    for seconds in (2.0, 2.6, 2.2, 3.0, 2.4):
        latency_model(settings).record("slow_tool", seconds)
    delays: list[float] = []
    cuts: list[int] = []

    async def case(seed: int) -> list[str]:
        rng = random.Random(seed)
        tool = rng.uniform(0.5, 1.8)
        spc = rng.uniform(0.02, 0.035)
        ttfb = rng.uniform(0.02, 0.2)
        ttft = rng.uniform(LLM_TTFT, 0.3)

        async def once(with_fillers: bool) -> Run:
            from filler_harness import script

            return await run_tool(
                sleeping(tool),
                settings=settings if with_fillers else None,
                decorated=with_fillers,
                tts=FakeTTS(ttfb=ttfb, seconds_per_char=spc),
                fake_llm=FakeLLM(script, default=None, ttft=ttft),
                wait_for=ANSWER,
            )

        filled, plain = await once(True), await once(False)
        tts = FakeTTS(seconds_per_char=spc)
        problems = _played_whole(filled, tts)
        assert filled.controller is not None
        metrics = filled.controller.metrics
        if metrics.fillers_cut_mid_word:
            problems.append(f"{metrics.fillers_cut_mid_word} counted mid-word")
        cuts.append(sum(1 for f in filled.fillers if f.duration < tts.duration_for(f.text) - 0.02))
        delays.append(_reply_delay(filled) - _reply_delay(plain))
        if problems:
            problems.append(filled.timeline)
        return problems

    await _four_at_a_time(case, range(24))
    _assert_p95_within(delays)
    assert sum(cuts) >= 3, "the timings should cut some fillers mid-play"


HOLD = "Please hold on while I look through all of our records, thank you for waiting."
"""About 2.4 s at 0.03 s per character: it is still playing when the tool returns."""


async def test_a_filler_plays_on_until_the_reply_is_due(tmp_path: Path) -> None:
    """Once the session's reply lead is learned (the call before timed it), a filler still
    playing when the tool returns goes on until just before the reply can sound: the silence
    before the reply shrinks to about a pause between words (the median at most 0.25 s,
    every one at most 0.4 s beyond any lateness of the reply itself; with a fixed 0.3 s
    window it was the LLM's and TTS's whole lead past that window), and the reply comes as
    soon as without fillers (p95 of the difference at most 100 ms). Paired over randomized
    timings with a slow LLM."""
    gaps: list[float] = []
    delays: list[float] = []

    async def case(seed: int) -> list[str]:
        from filler_harness import script

        rng = random.Random(seed)
        tool = rng.uniform(1.5, 2.0)
        ttft = rng.uniform(0.45, 0.8)
        ttfb = rng.uniform(0.02, 0.15)
        # each seed learns alone: its own latency model and sounds
        settings = adaptive(
            phrases=[HOLD], followup_phrases=[], max_count=1, cache_dir=tmp_path / str(seed)
        )

        async def once(with_fillers: bool) -> Run:
            return await run_tool(
                sleeping(tool),
                settings=settings if with_fillers else None,
                decorated=with_fillers,
                question=QUESTION,
                tts=FakeTTS(ttfb=ttfb, seconds_per_char=0.03),
                fake_llm=FakeLLM(script, default=None, ttft=ttft),
                wait_for=ANSWER,
            )

        await once(True)  # learns the tool's latency and how long its reply takes to sound
        leads = latency_model(settings).leads()
        assert len(leads) == 1 and leads[0] > ttft, leads
        filled, plain = await once(True), await once(False)
        problems = _played_whole(filled, FakeTTS(seconds_per_char=0.03))
        answer = filled.said(ANSWER)
        if len(filled.fillers) != 1:
            return [f"expected one filler, heard {len(filled.fillers)}", filled.timeline]
        [filler] = filled.fillers
        assert filler.start < filled.marker("slow_tool_end") < filler.end, filled.timeline
        gap, delay = answer.start - filler.end, _reply_delay(filled) - _reply_delay(plain)
        gaps.append(gap)
        delays.append(delay)
        # a reply late against the run without fillers (the p95 bound below) is not silence
        # the filler left: a stall of the event loop, say, between the filler's end and it
        if gap - max(0.0, delay) > 0.4:
            problems.append(f"{gap:.3f} s of silence before the reply, {delay:+.3f} s late")
        if problems:
            problems.append(filled.timeline)
        return problems

    await _four_at_a_time(case, range(16))
    assert statistics.median(gaps) <= 0.25, sorted(gaps)
    _assert_p95_within(delays)
