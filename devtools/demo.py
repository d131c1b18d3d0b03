"""The offline main job: the forum thread's agents, headless, three ways side by side.

``python -m devtools.demo`` (from the repository root; ``scripts/demo``) runs both thread
scenarios on the testing kit (no keys, no server, no models) with no filler, with the
thread's hand-made filler, with LiveKit's ``RunContext.with_filler`` and with livekit-filler,
and prints what a caller would hear: a timeline per run, then errors, dead air and answer
delays per run. It also draws the runs side by side in ``out/timeline.png`` (``--png``;
needs matplotlib, in the ``dev`` dependency group) and renders the calls as a WAV in
``out/call.wav`` (``--wav``; spoken with espeak-ng when it is on ``PATH``, otherwise marker
tones at each utterance's start).

Then both scenarios run again on a speech-to-speech model (``FakeRealtimeModel``, no TTS in
the session), with no filler and with livekit-filler and its filler voice: the rows marked
``rt``. The PNG and WAV show the pipeline runs.

Last, the rows beyond tools (``devtools/beyond.py``): a slow answer, and a caller who makes
a sound, or asks "are you still there?", during a booking that cannot be interrupted
(``--no-beyond`` skips them).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from devtools.scenarios import (
    MODES,
    SCENARIOS,
    Mode,
    Model,
    ScenarioName,
    ScenarioResult,
    Timings,
    run_scenario,
)
from livekit_filler import FillerSettings
from livekit_filler.process_state import latency_model
from livekit_filler.testing import format_timeline

_TITLES = {
    "none": "no filler (baseline)",
    "handmade": "the thread's hand-made filler (asyncio.create_task + session.say)",
    "with_filler": "LiveKit's RunContext.with_filler",
    "livekit_filler": "livekit-filler (@fillers)",
}
_ANSWER = {"club_info": "reply", "programs": "sub-agent's first speech"}
_TOOLS = {"club_info": "provide_club_information", "programs": "get_programs"}
_second_calls: set[int] = set()
"""ids of the results of a livekit-filler run that repeats the one before it (a warm tool)."""
REALTIME_MODES: tuple[Mode, ...] = ("none", "livekit_filler")
"""The approaches the realtime rows compare (the others need a TTS in the session)."""


class _ErrorLog(logging.Handler):
    """Collects WARNING+ records of a run, so LiveKit's own error logs show in the table."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def run_all(timings: Timings) -> list[tuple[ScenarioResult, list[str]]]:
    """Run every scenario in every mode, one at a time; return results and logged errors."""
    results: list[tuple[ScenarioResult, list[str]]] = []
    root = logging.getLogger()
    runs: list[tuple[ScenarioName, Mode, Model]] = [
        (scenario, mode, "pipeline") for scenario in SCENARIOS for mode in MODES
    ]
    runs += [(scenario, mode, "realtime") for scenario in SCENARIOS for mode in REALTIME_MODES]
    # livekit-filler learns each tool's latency: its pipeline rows are a first call (the
    # tool's history forgotten) and a second call that knows how long the first took
    runs = [
        r
        for run in runs
        for r in ([run, run] if run[1:] == ("livekit_filler", "pipeline") else [run])
    ]
    seen: set[tuple[ScenarioName, Mode, Model]] = set()
    # the model the scenarios learn into: in memory (they run with disk_cache off)
    latencies = latency_model(FillerSettings.from_values(disk_cache=False))
    for scenario, mode, model in runs:
        second = (scenario, mode, model) in seen and mode == "livekit_filler"
        seen.add((scenario, mode, model))
        if mode == "livekit_filler" and model == "pipeline" and not second:
            latencies.forget(_TOOLS[scenario])
        handler = _ErrorLog()
        root.addHandler(handler)
        try:
            result = await run_scenario(scenario, mode, timings, model=model)
        finally:
            root.removeHandler(handler)
        logged = [
            f"{r.levelname} {r.name}: {r.getMessage()}"
            for r in handler.records
            if r.levelno >= logging.ERROR
        ]
        if second:
            _second_calls.add(id(result))
        results.append((result, logged))
    return results


def report(results: Sequence[tuple[ScenarioResult, list[str]]]) -> str:
    """The readable report: one timeline per run, then a summary table."""
    lines: list[str] = []
    baseline = {(r.scenario, r.model): r.answer_latency for r, _ in results if r.mode == "none"}
    for result, logged in results:
        lines.append("")
        on = " (on a realtime model, no TTS)" if result.model == "realtime" else ""
        if id(result) in _second_calls:
            on += " (2nd call: the tool's latency is known)"
        lines.append(f"== {result.scenario}: {_TITLES[result.mode]}{on}")
        lines.append(format_timeline(result.utterances))
        for error in [*result.errors, *logged]:
            lines.append(f"   !! {error}")
    lines.append("")
    lines.append(
        f"{'scenario':<12} {'approach':<15} {'errors':>6} {'overlaps':>8} {'fillers':>7} "
        f"{'in history':>10} {'dead air':>9} {'answer delay vs none':>21} "
        f"{'mid-word':>8} {'cut<0.5s':>8}"
    )
    for result, logged in results:
        base = baseline.get((result.scenario, result.model))
        latency = result.answer_latency
        delay = (
            f"{(latency - base) * 1000:+.0f} ms ({_ANSWER[result.scenario]})"
            if latency is not None and base is not None
            else "n/a"
        )
        dead = result.dead_air
        lines.append(
            f"{_label(result):<12} {_mode(result):<15} {len(result.errors) + len(logged):>6} "
            f"{len(result.overlaps):>8} {len(result.fillers):>7} "
            f"{len(result.fillers_in_history):>10} "
            f"{(f'{dead:.2f} s' if dead is not None else 'n/a'):>9} {delay:>21} "
            f"{result.fillers_cut_mid_word:>8} {result.fillers_cut_early:>8}"
        )
    return "\n".join(lines)


def _mode(result: ScenarioResult) -> str:
    return "  ... 2nd call" if id(result) in _second_calls else result.mode


def _label(result: ScenarioResult) -> str:
    return result.scenario if result.model == "pipeline" else f"{result.scenario} rt"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; print the report; optionally write it to a file."""
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--tool-duration", type=float, default=1.8, help="seconds (1.8)")
    parser.add_argument("--preamble", action="store_true", help="LLM speaks before the tool")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--png", type=Path, default=Path("out/timeline.png"), help="timeline PNG (out/timeline.png)"
    )
    parser.add_argument("--no-png", action="store_true", help="do not draw the PNG")
    parser.add_argument(
        "--wav", type=Path, default=Path("out/call.wav"), help="the calls as audio (out/call.wav)"
    )
    parser.add_argument("--no-wav", action="store_true", help="do not render the WAV")
    parser.add_argument("--no-beyond", action="store_true", help="skip the rows beyond tools")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the report shows what matters
    timings = Timings(tool_duration=args.tool_duration, preamble=args.preamble)
    results = asyncio.run(run_all(timings))
    text = report(results)
    if not args.no_beyond:
        from devtools.beyond import report as beyond_report, run_beyond

        text += "\n" + beyond_report(asyncio.run(run_beyond()), timelines=False)
    sys.stdout.write(text + "\n")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    pipeline = [(r, logged) for r, logged in results if r.model == "pipeline"]
    if not args.no_png:
        _write_png(pipeline, args.png)
    if not args.no_wav:
        from devtools.sound import espeak_available, write_wav

        write_wav([r for r, _ in pipeline], args.wav)
        how = "espeak-ng voices" if espeak_available() else "marker tones (no espeak-ng)"
        sys.stdout.write(f"wrote {args.wav} ({how})\n")
    return 0


def _write_png(results: Sequence[tuple[ScenarioResult, list[str]]], path: Path) -> None:
    try:
        from devtools.plot import plot_runs
    except ImportError:  # pragma: no cover - depends on the environment
        sys.stdout.write("no PNG: matplotlib is missing (pip install --group dev -e .)\n")
        return
    try:
        plot_runs(
            [r for r, _ in results],
            path,
            errors=[logged for _, logged in results],
            title="The forum thread's agents: who speaks while the tool runs",
        )
    except ImportError:
        sys.stdout.write("no PNG: matplotlib is missing (pip install --group dev -e .)\n")
        return
    sys.stdout.write(f"wrote {path}\n")


if __name__ == "__main__":
    raise SystemExit(main())
