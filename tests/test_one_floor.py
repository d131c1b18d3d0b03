"""Every filler asks the one floor: ``say_filler()`` as the stream does.

The floor (livekit_filler/floor.py) decides for streams, ``say_filler()``, start and failure
messages, the audio gate and the pre-render. These tests drive a real session where a rule
used to live in one caller only: the caller's start against a non-interruptible
``say_filler()`` filler still on its way (the stream's rule, fuzzer seed 882 programs), and a
TTS that failed on real speech.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

from filler_harness import (
    ANSWER,
    RESULT,
    SPC,
    phrase_settings,
    run_tool,
    sleeping,
)
from livekit.agents import RunContext

from livekit_filler import FillerController, FillerEvent
from livekit_filler.floor import Verdict
from livekit_filler.testing import FakeTTS, UserSpeechSimulator

SEEDS = range(24)
BATCH = 8
MANUAL = "Hold on while I go through the records by hand."
FOLLOWUP = "Still going through them by hand."
TOLERANCE = 0.05
"""Seconds after the caller's start within which a filler's audio was already on its way
(the fuzzer's tolerance): not interruptible keeps it."""
ANSWER_BOUND = 0.1
_VOICES = itertools.count()


async def _say_filler_as_the_caller_starts(
    seed: int, *, with_filler: bool
) -> tuple[list[str], float, bool]:
    """A tool calls ``say_filler()`` (not interruptible), and the caller makes a sound 0-150 ms
    later while its audio is still rendering (or, for some seeds, already rendered).

    Returns the problems, seconds from the tool's return to the answer, and whether
    ``say_filler()`` scheduled a filler.
    """
    rng = random.Random(seed)
    user = UserSpeechSimulator()
    prerender = rng.random() < 0.25
    settings = phrase_settings(MANUAL, FOLLOWUP, allow_interruptions=False, prerender=prerender)
    before = rng.uniform(0.2, 0.4)
    lateness = rng.uniform(0.0, 0.15)
    noise = rng.uniform(0.2, 0.4)
    work = rng.uniform(0.8, 1.2)
    scheduled: list[bool] = []

    async def body(context: RunContext[Any]) -> str:
        await asyncio.sleep(before)
        if with_filler:
            controller = FillerController.of(context.session)
            assert controller is not None
            scheduled.append(controller.say_filler(MANUAL) is not None)
        await asyncio.sleep(lateness)
        # a noise (no user turn), made beside the tool's work: the tool's duration is the
        # same with and without the filler, however long the simulator takes to notice it
        noise_made = asyncio.create_task(user.say("", duration=noise))
        await asyncio.sleep(work)
        await noise_made
        return RESULT

    run = await run_tool(
        body,
        settings=settings,
        decorated=False,
        # a voice of the run's own: no other run's render of the phrase (another seed's, or
        # this test's before a rerun) is in the process-wide audio cache, so its audio comes
        # 0.2 s after say_filler() unless pre-rendered, and the caller starts 0-150 ms after
        tts=FakeTTS(ttfb=0.2, seconds_per_char=SPC * (1 + next(_VOICES) / 100_000)),
        user=user,
    )
    spans = run.user_speaking()
    problems = [
        f"a filler started at {u.start:.3f} s, the caller speaking since {since:.3f} s:"
        f"\n{run.timeline}"
        for u in run.fillers
        for since, until in spans
        if since + TOLERANCE < u.start < until
    ]
    if not spans:
        problems.append(f"the caller's sound never made the user speaking:\n{run.timeline}")
    if with_filler and scheduled != [True]:
        problems.append(f"say_filler() found no free floor before the caller spoke: {scheduled}")
    return problems, run.said(ANSWER).start - run.marker("slow_tool_end"), bool(scheduled)


async def test_a_non_interruptible_say_filler_never_starts_over_the_caller() -> None:
    """Randomized, paired with the same timings without the filler: a non-interruptible
    ``say_filler()`` filler not sounding yet when the caller starts is dropped (it used to
    play over them), and the answer is as early as without it."""
    filled: list[tuple[list[str], float, bool]] = []
    plain: list[tuple[list[str], float, bool]] = []
    for first in range(0, len(SEEDS), BATCH):  # each seed's two runs side by side
        pairs = await asyncio.gather(
            *(
                asyncio.gather(
                    _say_filler_as_the_caller_starts(seed, with_filler=True),
                    _say_filler_as_the_caller_starts(seed, with_filler=False),
                )
                for seed in SEEDS[first : first + BATCH]
            )
        )
        filled += [with_ for with_, _ in pairs]
        plain += [without for _, without in pairs]
    failures = {s: problems for s, (problems, _, _) in zip(SEEDS, filled, strict=True) if problems}
    assert not failures, failures
    extra = sorted(a - b for (_, a, _), (_, b, _) in zip(filled, plain, strict=True))
    assert extra[int(0.95 * (len(extra) - 1))] <= ANSWER_BOUND, extra


async def test_say_filler_waits_out_a_tts_that_failed_on_real_speech() -> None:
    """``tts_down`` is a verdict of the floor: ``say_filler()`` asks it as the stream does."""
    skipped: list[str] = []
    outcomes: list[tuple[object, object]] = []

    def watch(controller: FillerController) -> None:
        controller.on("filler_skipped", lambda ev: skipped.append(ev.reason or ""))

    async def body(context: RunContext[Any]) -> str:
        controller = FillerController.of(context.session)
        assert controller is not None
        await asyncio.sleep(0.2)
        controller._speaker.tts_down = True  # as after an unrecoverable TTS error
        down = controller.say_filler(MANUAL)
        controller._speaker.tts_down = False  # real speech played
        up = controller.say_filler(MANUAL)
        outcomes.append((down, up))
        await asyncio.sleep(1.5)
        return RESULT

    await run_tool(
        body,
        settings=phrase_settings(MANUAL, FOLLOWUP),
        decorated=False,
        on_controller=watch,
    )
    assert len(outcomes) == 1 and outcomes[0][0] is None and outcomes[0][1] is not None
    assert skipped[:1] == [Verdict.TTS_DOWN.value], skipped


async def test_the_stream_skips_fillers_while_the_tts_is_down() -> None:
    skipped: list[FillerEvent] = []

    def watch(controller: FillerController) -> None:
        controller._speaker.tts_down = True
        controller.on("filler_skipped", skipped.append)

    run = await run_tool(
        sleeping(0.8),
        settings=phrase_settings(MANUAL, FOLLOWUP, delay=0.2),
        on_controller=watch,
    )
    assert not run.fillers, run.timeline
    assert [e.reason for e in skipped][:1] == [Verdict.TTS_DOWN.value], skipped
