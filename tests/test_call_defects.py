"""Fillers that hurt a call (issue "Seven ways"), each over randomized timings.

- parallel calls of one step: each call's own start and failure message is spoken;
- ``say_filler()`` inside a tool: the reply does not wait for it (tool replies reuse the
  step's speech handle, so no ``speech_created`` announces them);
- ``allow_interruptions=False``: the user does not cut a filler, and one not sounding yet
  when the user starts never starts over them;
- ``min_consecutive_speech_delay``: a cut filler never delays the answer by the gap.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from typing import Any

import pytest
from filler_harness import (
    ANSWER,
    PARALLEL_QUESTION,
    RESULT,
    SPC,
    ToolAgent,
    assert_every_seed,
    phrase_settings,
    run_tool,
    sleeping,
    wait_for_playing_filler,
    wait_until,
)
from livekit.agents import RunContext, ToolError, function_tool

from livekit_filler import FillerController, fillers
from livekit_filler.floor import MAX_SPEECH_GAP
from livekit_filler.testing import (
    FakeTTS,
    TimelineRecorder,
    UserSpeechSimulator,
    overlaps,
)

SEEDS = range(20)
START = "Checking the other records too."
FAILURE = "Sorry, the other lookup failed."
SLOW_FILLER = "Looking through the first records."
MANUAL = "Hold on while I dig through every single record we have."  # 1.1 s


class MessagesAgent(ToolAgent):
    """Two tools with their own decorator options, as the issue's report wrote them."""

    @function_tool
    @fillers(SLOW_FILLER, failure_message="Sorry, the first lookup failed.")
    async def slow_tool(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        return await self._run("slow_tool", context)

    @function_tool
    @fillers("Going through the other records.", start_message=START, failure_message=FAILURE)
    async def other_tool(self, context: RunContext[Any]) -> str:
        """Look something else up slowly."""
        return await self._run("other_tool", context)


def _raising(seconds: float) -> Any:
    async def body(context: RunContext[Any]) -> str:
        await asyncio.sleep(seconds)
        raise ToolError("the other lookup broke")

    return body


async def _parallel_failure(seed: int) -> list[str]:
    rng = random.Random(seed)
    run = await run_tool(
        sleeping(rng.uniform(0.3, 1.2)),
        other=_raising(rng.uniform(0.1, 1.0)),
        settings=phrase_settings("Unused.", "Unused.", delay=rng.uniform(0.0, 0.4)),
        question=PARALLEL_QUESTION,
        agent_class=MessagesAgent,
    )
    problems = []
    if FAILURE not in [u.text for u in run.utterances]:
        problems.append(f"the other call's failure message was not heard:\n{run.timeline}")
    if ANSWER not in [u.text for u in run.utterances]:
        problems.append(f"no answer:\n{run.timeline}")
    if bad := overlaps(run.utterances):
        problems.append(f"overlaps: {bad}")
    return problems


async def test_each_parallel_call_speaks_its_own_failure_message() -> None:
    await assert_every_seed(_parallel_failure, SEEDS)


async def _parallel_start(seed: int) -> list[str]:
    rng = random.Random(seed)
    run = await run_tool(
        sleeping(rng.uniform(1.0, 1.5)),
        other=sleeping(rng.uniform(1.0, 1.5)),
        settings=phrase_settings("Unused.", "Unused.", delay=rng.uniform(0.3, 0.6)),
        question=PARALLEL_QUESTION,
        agent_class=MessagesAgent,
    )
    problems = []
    heard = [u.text for u in run.utterances]
    if START not in heard:
        problems.append(f"the other call's start message was not heard:\n{run.timeline}")
    elif SLOW_FILLER in heard and heard.index(SLOW_FILLER) < heard.index(START):
        problems.append(f"a filler came before the start message:\n{run.timeline}")
    if bad := overlaps(run.utterances):
        problems.append(f"overlaps: {bad}")
    return problems


async def test_each_parallel_call_speaks_its_own_start_message() -> None:
    await assert_every_seed(_parallel_start, SEEDS)


async def _reply_delay_after_tool(seed: int, *, manual: bool) -> float:
    """Seconds from the tool's return to the first audio of the answer."""
    rng = random.Random(seed)
    before, after = rng.uniform(0.1, 0.5), rng.uniform(0.0, 0.6)

    async def body(context: RunContext[Any]) -> str:
        await asyncio.sleep(before)
        if manual:
            controller = FillerController.of(context.session)
            assert controller is not None
            # None while the step that called the tool is still playing out: try again
            await wait_until(lambda: controller.say_filler(MANUAL) is not None, 1.0)
        await asyncio.sleep(after)
        return RESULT

    run = await run_tool(body, settings=phrase_settings("Unused.", "Unused.", max_count=0))
    assert ANSWER in [u.text for u in run.utterances], run.timeline
    if manual:
        assert MANUAL in [u.text for u in run.fillers], run.timeline
    assert overlaps(run.utterances) == [], run.timeline
    return run.said(ANSWER).start - run.marker("slow_tool_end")


async def test_say_filler_inside_a_tool_never_delays_the_reply() -> None:
    delays = await asyncio.gather(
        *(_reply_delay_after_tool(seed, manual=m) for seed in SEEDS for m in (True, False))
    )
    extra = sorted(
        with_ - without for with_, without in zip(delays[::2], delays[1::2], strict=True)
    )
    p95 = extra[int(0.95 * (len(extra) - 1))]
    assert p95 <= 0.1, (
        f"reply delay from say_filler: p50 {statistics.median(extra):.3f} s, p95 {p95:.3f} s"
    )


async def _user_during_filler(seed: int, *, allow_interruptions: bool) -> list[str]:
    rng = random.Random(seed)
    user = UserSpeechSimulator()
    settings = phrase_settings(
        MANUAL,
        "Still digging.",
        delay=rng.uniform(0.1, 0.3),
        max_count=1,
        allow_interruptions=allow_interruptions,
    )
    spoke: list[float] = []

    async def body(context: RunContext[Any]) -> str:
        rec: TimelineRecorder = context.session.current_agent.rec  # type: ignore[attr-defined]
        await wait_for_playing_filler(context.session, rec)
        await asyncio.sleep(rng.uniform(0.0, 0.4))
        spoke.append(asyncio.get_running_loop().time())
        await user.say("", duration=rng.uniform(0.2, 0.4))  # a noise: no user turn
        await asyncio.sleep(rng.uniform(0.8, 1.2))
        return RESULT

    run = await run_tool(body, settings=settings, user=user)
    if len(run.fillers) != 1 or not spoke:
        return [f"expected one filler and the user speaking during it:\n{run.timeline}"]
    if run.fillers[0].interrupted == allow_interruptions:
        return []
    verb = "was not" if allow_interruptions else "was"
    return [f"the filler {verb} cut by the user:\n{run.timeline}"]


async def test_allow_interruptions_false_keeps_a_filler_playing_through_user_speech() -> None:
    async def case(seed: int) -> list[str]:
        return await _user_during_filler(seed, allow_interruptions=False)

    await assert_every_seed(case, SEEDS)


async def test_allow_interruptions_true_lets_the_user_cut_a_filler() -> None:
    async def case(seed: int) -> list[str]:
        return await _user_during_filler(seed, allow_interruptions=True)

    await assert_every_seed(case, SEEDS)


async def _caller_as_a_filler_is_due(seed: int, *, with_fillers: bool) -> tuple[list[str], float]:
    """The caller makes a sound 0-150 ms after an uninterruptible filler is scheduled, while
    its audio is still being rendered (or, for some seeds, is already rendered): problems,
    and seconds from the tool's return to the answer."""
    rng = random.Random(seed)
    user = UserSpeechSimulator()
    delay = 0.25
    prerender = rng.random() < 0.25
    settings = phrase_settings(
        MANUAL,
        "Still digging.",
        delay=delay,
        max_count=1,
        allow_interruptions=False,
        prerender=prerender,
    )
    lateness = rng.uniform(0.0, 0.15)
    noise = rng.uniform(0.2, 0.4)
    work = rng.uniform(0.8, 1.2)

    async def body(context: RunContext[Any]) -> str:
        await asyncio.sleep(delay + lateness)
        await user.say("", duration=noise)  # a noise: no user turn
        await asyncio.sleep(work)
        return RESULT

    run = await run_tool(
        body,
        settings=settings if with_fillers else None,
        decorated=with_fillers,
        tts=FakeTTS(ttfb=0.2, seconds_per_char=SPC),
        user=user,
    )
    spans = run.user_speaking()
    problems = [
        f"a filler started at {u.start:.3f} s, the caller speaking since {since:.3f} s:"
        f"\n{run.timeline}"
        for u in run.fillers
        for since, until in spans
        # within 50 ms of the caller's start its audio was already on its way (the fuzzer's
        # tolerance): not interruptible keeps it
        if since + 0.05 < u.start < until
    ]
    if not spans:
        problems.append(f"the caller's sound never made the user speaking:\n{run.timeline}")
    return problems, run.said(ANSWER).start - run.marker("slow_tool_end")


async def test_an_uninterruptible_filler_due_as_the_caller_starts_is_dropped() -> None:
    """Fuzzer seed 882 programs, randomized: a filler that cannot be interrupted, scheduled an
    instant before the caller makes a sound, is dropped if it is not sounding yet (it used to
    start 70 ms into the caller's sound), and the answer comes as soon as without fillers."""
    seeds = range(24)
    filled = await asyncio.gather(
        *(_caller_as_a_filler_is_due(s, with_fillers=True) for s in seeds)
    )
    plain = await asyncio.gather(
        *(_caller_as_a_filler_is_due(s, with_fillers=False) for s in seeds)
    )
    failures = {s: problems for s, (problems, _) in zip(seeds, filled, strict=True) if problems}
    assert not failures, failures
    extra = sorted(a - b for (_, a), (_, b) in zip(filled, plain, strict=True))
    assert extra[int(0.95 * (len(extra) - 1))] <= 0.1, extra


async def _answer_delay_with_gap(seed: int, *, with_fillers: bool) -> tuple[float, int]:
    """Seconds from the tool's return to the answer, and fillers heard, under a speech gap."""
    rng = random.Random(seed)
    gap = rng.uniform(0.5, 1.5)
    run = await run_tool(
        sleeping(rng.uniform(0.5, 1.5)),
        settings=phrase_settings("Checking the gap.", "Still on the gap.", delay=0.2)
        if with_fillers
        else None,
        decorated=with_fillers,
        min_consecutive_speech_delay=gap,
    )
    assert ANSWER in [u.text for u in run.utterances], run.timeline
    return run.said(ANSWER).start - run.marker("slow_tool_end"), len(run.fillers)


async def test_a_speech_gap_never_turns_a_filler_into_answer_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    results = await asyncio.gather(
        *(_answer_delay_with_gap(seed, with_fillers=f) for seed in SEEDS for f in (True, False))
    )
    extra = sorted(a[0] - b[0] for a, b in zip(results[::2], results[1::2], strict=True))
    p95 = extra[int(0.95 * (len(extra) - 1))]
    assert p95 <= 0.1, f"answer delay from fillers: p95 {p95:.3f} s"
    assert sum(heard for _, heard in results[::2]) == 0
    warnings = [r for r in caplog.records if "min_consecutive_speech_delay" in r.getMessage()]
    assert len(warnings) == len(SEEDS)  # one per controller


async def test_a_speech_gap_within_the_bound_keeps_fillers() -> None:
    run = await run_tool(
        sleeping(1.0),
        settings=phrase_settings("Small gap filler.", "Still small.", delay=0.2),
        min_consecutive_speech_delay=MAX_SPEECH_GAP,
    )
    assert "Small gap filler." in [u.text for u in run.fillers], run.timeline
