"""A filler stream never busy-loops: every pass that does not play waits (issue: loop freeze).

With ``delay=0`` a filler that is skipped synchronously (no phrase, a failed render, the
session refusing speech) used to send the stream round its loop without ever yielding,
freezing the event loop. Each skip reason is driven here at ``delay=0`` for a tool that
runs ``TOOL_SECONDS``: attempts stay bounded (one per ``RETRY_INTERVAL``) and the tool's
answer still arrives.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from filler_harness import ANSWER, TTFB, phrase_settings, run_tool, sleeping

from livekit_filler.stream import RETRY_INTERVAL
from livekit_filler.testing import FakeTTS

TOOL_SECONDS = 1.0
# one attempt per RETRY_INTERVAL, plus slack for the first attempt and scheduling
MAX_ATTEMPTS = TOOL_SECONDS / RETRY_INTERVAL + 3


async def _loop_lag_during(coro_seconds: float) -> float:
    """The longest gap between 10 ms ticks while the test runs (a frozen loop has a huge one)."""
    worst = 0.0
    last = time.perf_counter()
    end = last + coro_seconds
    while time.perf_counter() < end:
        await asyncio.sleep(0.01)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    return worst


@pytest.mark.parametrize("reason", ["no_phrase", "tts_failed"])
async def test_a_skipped_filler_at_zero_delay_retries_at_a_bounded_rate(reason: str) -> None:
    if reason == "no_phrase":
        # a template whose field the call never fills: there is no phrase to say
        settings = phrase_settings("Checking {nothing}.", "Still {nothing}.", delay=0.0)
        tts = FakeTTS(ttfb=TTFB, seconds_per_char=0.02)
    else:
        settings = phrase_settings("Filler that fails.", "Follow-up that fails.", delay=0.0)
        tts = FakeTTS(ttfb=TTFB, seconds_per_char=0.02, fail_on=lambda t: "fails" in t)
    lag = asyncio.ensure_future(_loop_lag_during(TOOL_SECONDS))
    run = await run_tool(sleeping(TOOL_SECONDS), settings=settings, tts=tts)
    worst_gap = await lag
    assert run.controller is not None
    skipped = run.controller.metrics.fillers_skipped
    assert skipped[reason] >= 1, dict(skipped)
    assert sum(skipped.values()) <= MAX_ATTEMPTS, dict(skipped)
    assert run.fillers == []
    assert ANSWER in [u.text for u in run.utterances], run.timeline
    assert worst_gap < 0.5, f"the event loop stalled for {worst_gap:.2f} s"
