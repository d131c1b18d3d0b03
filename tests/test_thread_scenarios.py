"""The forum thread's two agents over many randomized timings, with and without fillers.

Every seed runs twice side by side: once with no filler at all (the baseline) and once
with ``@fillers``. The filler run must have no error, no overlap, no filler in any history,
and its answer (the tool's reply, or the AgentTask's first speech) must start no later
than the bound after where the baseline's did. A failing seed replays with
``FILLER_SEEDS=17 pytest tests/test_thread_scenarios.py`` (a comma-separated list).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from devtools.scenarios import (
    ScenarioName,
    ScenarioResult,
    Timings,
    run_scenario,
)

SEEDS = [int(s) for s in os.environ.get("FILLER_SEEDS", "").split(",") if s] or list(range(60))
BATCH = 20
BOUNDS: dict[ScenarioName, float] = {"club_info": 0.100, "programs": 0.150}


def _check(base: ScenarioResult, run: ScenarioResult) -> list[str]:
    problems: list[str] = []
    if run.errors:
        problems.append(f"errors: {run.errors}")
    if run.overlaps:
        problems.append(f"overlaps: {run.overlaps}")
    if run.fillers_in_history:
        problems.append(f"fillers in history: {run.fillers_in_history}")
    if base.answer_latency is None or run.answer_latency is None:
        problems.append("the answer never played")
        return problems
    extra = run.answer_latency - base.answer_latency
    if extra > BOUNDS[run.scenario]:
        problems.append(f"answer {extra * 1000:.0f} ms later than without fillers")
    # fillers fill the wait: a tool silent for longer than the dwell (plus the TTS's time to
    # first byte and a margin) must have played a filler before its answer
    silent = _silent_tool_time(run)
    if silent > run.timings.filler_delay + run.timings.tts_ttfb + 0.15 and not run.fillers:
        problems.append(f"no filler in {silent:.2f} s of silent tool time")
    for filler in run.fillers:
        if filler.agent == "CollectAgeGender":
            problems.append("a filler spoke into the AgentTask's conversation")
    return problems


def _silent_tool_time(run: ScenarioResult) -> float:
    """Seconds the tool ran after the agent's own speech (a preamble) had ended."""
    start, end = run.marker("tool_start"), run.marker("task_start") or run.marker("tool_end")
    assert start is not None and end is not None
    spoken = [u.end for u in run.utterances if u.kind == "speech" and u.start < end]
    return end - max([start, *spoken])


async def _pair(scenario: ScenarioName, seed: int) -> tuple[ScenarioResult, ScenarioResult]:
    timings = Timings.random(seed)
    base, run = await asyncio.gather(
        run_scenario(scenario, "none", timings, settle=0.05),
        run_scenario(scenario, "livekit_filler", timings, settle=0.05),
    )
    return base, run


@pytest.mark.parametrize("scenario", ["club_info", "programs"])
async def test_thread_scenario_over_random_timings(scenario: ScenarioName) -> None:
    failures: dict[int, list[str]] = {}
    filled = 0
    for first in range(0, len(SEEDS), BATCH):
        seeds = SEEDS[first : first + BATCH]
        pairs = await asyncio.gather(*(_pair(scenario, seed) for seed in seeds))
        for seed, (base, run) in zip(seeds, pairs, strict=True):
            filled += bool(run.fillers)
            if problems := _check(base, run):
                failures[seed] = problems
    # no re-run alone here: conftest's rerun policy (one rerun, counted) is the only retry
    assert not failures, "\n".join(f"seed {s}: {p}" for s, p in failures.items())
    # the timings must actually exercise fillers, or this test proves nothing
    assert filled >= len(SEEDS) // 3, f"only {filled} of {len(SEEDS)} runs played a filler"
