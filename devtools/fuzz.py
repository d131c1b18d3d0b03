"""Race fuzzer: the forum thread's two agents over randomized timings, against a baseline.

``python -m devtools.fuzz --seeds 1000`` runs, for every seed and scenario, the
``livekit_filler`` mode and the ``none`` (no filler) baseline side by side with the same
randomized timings (:func:`fuzz_timings`): LLM and TTS latency, speaking rate, tool
duration, a preamble, the sub-agent's own tool time, and a caller who makes a sound at a
random moment (during a filler, around the hand-off, or anywhere in the wait). Each seed
also draws its model (:func:`fuzz_model`): the ``pipeline`` (an LLM and a TTS) or, for about
one seed in three, a ``realtime`` speech-to-speech model with no TTS in the session (the
fillers then have a voice of their own). Each pair is checked (:func:`check_pair`): no error
(an exception or an ERROR log record), no agent audio overlapping other agent audio, no
filler in any chat history, in the sub-agent's conversation or in what the realtime model
was sent, no filler starting while the caller makes a sound, and the answer at most
:data:`REPLY_BOUND` (the reply after the tool) / :data:`HANDOFF_BOUND` (the sub-agent's
first speech) later than in the baseline. A failing seed prints a one-line replay command
(``python -m devtools.fuzz --seed K --scenario X``, with ``--force model=realtime`` for a
realtime pair) that shows both timelines. ``--model pipeline`` runs every seed on the
pipeline with the timings and dimensions it had before seeds drew a model (figures measured
then stay comparable); ``--model realtime`` runs every seed on the realtime model.

Issue 22's cases are drawn too (:class:`~devtools.scenarios.Adversity`'s ``slow_answer`` and
``busy``): the caller asks aloud and the LLM is slow (2.0-3.5 s) or fast to answer, with the
slow-answer filler on; or the caller speaks during a tool whose step cannot be interrupted.
Their verdicts: one slow-answer filler 1.2-1.5 s after the turn (none for a fast answer), the
first speech after the turn within :data:`REPLY_BOUND` of the baseline's, one acknowledgement
within :data:`BUSY_ACK_BOUND` of the caller's stop, over neither them nor the answer.

Sessions of many seeds run concurrently on one event loop; every timing is on the loop's
clock, and a pair's two runs share the loop, so loop lag shows up in both. ``--calibrate N``
re-runs N seeds alone and reports how far their delays moved.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import gc
import logging
import random
import statistics
import sys
import time
import typing
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from devtools.scenarios import (
    BUSY_MESSAGE,
    CLUB_ANSWER,
    PREAMBLE,
    PROGRAMS_ANSWER,
    SCENARIOS,
    SLOW_ANSWER_AFTER,
    SLOW_ANSWER_PHRASES,
    SPECIALIST_GREETING,
    Adversity,
    Close,
    ExtraTool,
    Handoff,
    Interruptions,
    Mode,
    Model,
    Raising,
    ScenarioName,
    ScenarioResult,
    SlowAnswer,
    Timings,
    TTSFault,
    UserNoise,
    run_scenario,
)
from livekit_filler.floor import MAX_SPEECH_GAP
from livekit_filler.metrics import EARLY_CUT
from livekit_filler.testing import Utterance, format_timeline, user_speaking_spans

__all__ = [
    "BUSY_ACK_BOUND",
    "HANDOFF_BOUND",
    "MODELS",
    "REALTIME_SHARE",
    "REPLY_BOUND",
    "SLOW_ANSWER_WINDOW",
    "FuzzSummary",
    "PairOutcome",
    "check_pair",
    "format_outcome",
    "format_summary",
    "fuzz",
    "fuzz_adversity",
    "fuzz_model",
    "fuzz_timings",
    "main",
    "run_pair",
    "summarize",
]

logger = logging.getLogger("devtools.fuzz")

REPLY_BOUND = 0.100
"""Seconds the reply after the tool may start later than without fillers."""
HANDOFF_BOUND = 0.150
"""Seconds the sub-agent's first speech may start later than without fillers."""
GATE_ALLOWANCE = 0.15
"""Seconds, beyond the TTS's first byte, an answer held back by the caller may take to start
once the caller stops (LiveKit waits for silence before it plays interruptible speech)."""
RUN_TIMEOUT = 60.0
"""Seconds one scenario run may take before it counts as hung."""
SETTLE = 0.05
"""Seconds each run keeps recording after its final answer."""
THREAD_ERRORS = ("cannot schedule new speech", "wait_for_playout")
"""Substrings of the forum thread's two RuntimeErrors (draining/pausing; circular wait)."""
SLOW_ANSWER_WINDOW = (SLOW_ANSWER_AFTER, SLOW_ANSWER_AFTER + 0.3)
"""Seconds after the end of the caller's turn within which a slow answer's filler starts."""
BUSY_ACK_BOUND = 0.8
"""Seconds after the caller stops within which the busy acknowledgement starts."""
BEYOND_SHARE = (0.15, 0.15, 0.15)
"""Shares of (non-plain) seeds drawing the slow-answer case with a slow LLM, with a fast
one, and the busy case (independently of the slow answer)."""
_SLOW_ANSWERS: list[SlowAnswer] = ["none", "slow", "fast"]
_TALK_OVER_TOLERANCE = 0.05
"""A filler starting this soon after ``user_state`` became "speaking" is an event race, not
talking over the caller (its audio was already on its way)."""
_LAG_INTERVAL = 0.05


# -- timings --------------------------------------------------------------------------------


def fuzz_timings(seed: int) -> Timings:
    """Draw every timing of one fuzz case; the same seed always gives the same timings.

    Starts from :meth:`Timings.random` (LLM/TTS latency, speaking rate, tool duration,
    preamble, filler dwell and interval) and adds, from an independent generator: a long
    tool now and then (follow-up fillers), the sub-agent's own tool time, the session's
    ``min_interruption_duration`` and, for most seeds, one or two sounds from the caller.

    A caller's sound long enough to interrupt speech is placed only where no real speech
    plays (after a preamble, ending well before the tool returns): interrupting the tool's
    own speech or the answer would drop the answer in the baseline too. Near the answer
    and the hand-off the sound stays shorter than ``min_interruption_duration``, which
    still makes ``user_state`` "speaking" (fillers must yield, speech must wait).

    Args:
        seed: Any integer.

    Returns:
        The timings of ``seed``.
    """
    base = Timings.random(seed)
    # the module's old name keeps every seed's timings (and docs/reliability.md's figures)
    rng = random.Random(f"livekit_filler.fuzz:{seed}")
    tool = base.tool_duration
    if rng.random() < 0.15:
        tool = rng.uniform(2.5, 4.5)
    task_tool = rng.uniform(0.0, 1.5) if rng.random() < 0.4 else 0.0
    min_interruption = rng.uniform(0.2, 0.5)
    timings = dataclasses.replace(
        base,
        tool_duration=tool,
        task_tool_duration=task_tool,
        min_interruption_duration=min_interruption,
    )
    kind = rng.choices(["none", "filler", "handoff", "anywhere", "two"], [25, 30, 20, 15, 10])[0]
    noises: list[UserNoise] = []
    if kind == "filler":
        # lands on the first filler: the dwell starts once the preamble (if any) has played
        start = _quiet_from(timings) + timings.filler_delay + timings.tts_ttfb
        noises.append(_noise(rng, timings, start + rng.uniform(-0.05, 0.5), "filler"))
    elif kind == "handoff":
        # around the tool's return: the answer, or the AgentTask's start and greeting
        offset = max(0.0, tool + rng.uniform(-0.25, 0.35))
        noises.append(_noise(rng, timings, offset, "handoff"))
    elif kind == "anywhere":
        noises.append(_noise(rng, timings, rng.uniform(0.0, tool + 1.0), "anywhere"))
    elif kind == "two":
        first = _noise(rng, timings, rng.uniform(0.0, tool * 0.6 + 0.2), "anywhere")
        second_at = first.offset + first.duration + rng.uniform(0.1, 0.8)
        noises += [first, _noise(rng, timings, second_at, "again")]
    return dataclasses.replace(timings, user_noise=tuple(noises))


def _preamble_end(timings: Timings) -> float:
    """Rough seconds after the tool's start when its preamble has played (0 without one)."""
    if not timings.preamble:
        return 0.0
    return timings.tts_ttfb + len(PREAMBLE) * timings.seconds_per_char + 0.05


def _quiet_from(timings: Timings) -> float:
    return _preamble_end(timings)


def _noise(rng: random.Random, timings: Timings, offset: float, label: str) -> UserNoise:
    """A sound at ``offset``; long (interrupting) only where no real speech can play."""
    short = rng.uniform(0.05, max(0.06, timings.min_interruption_duration - 0.06))
    long_allowed_until = timings.tool_duration - 0.35
    long = rng.uniform(timings.min_interruption_duration + 0.05, 1.2)
    offset = max(0.0, offset)
    if (
        rng.random() < 0.6
        and offset >= _preamble_end(timings) + 0.1
        and offset + long <= long_allowed_until
    ):
        return UserNoise(offset=offset, duration=long, label=label)
    return UserNoise(offset=offset, duration=short, label=label)


PLAIN_SHARE = 0.2
"""Share of seeds that draw no adversarial dimension (the thread's case, timings only)."""
_EXTRA_TOOLS: list[ExtraTool] = ["none", "parallel", "chained"]
_HANDOFFS: list[Handoff] = ["none", "return", "update_agent"]
_CLOSES: list[Close] = ["none", "aclose", "shutdown"]
_TTS_FAULTS: list[TTSFault] = ["none", "error", "hang", "drop", "empty", "flaky"]
_INTERRUPTIONS: list[Interruptions] = ["on", "filler_off", "session_off", "both_off"]


MODELS: tuple[Model, ...] = typing.get_args(Model)
"""The models a seed can run on: ``pipeline`` (LLM + TTS) and ``realtime`` (speech-to-speech)."""
REALTIME_SHARE = 1 / 3
"""Share of seeds that run on the realtime model (the rest on the pipeline)."""
_MODEL = "model"
"""The ``--force`` name of the model dimension (not a field of :class:`Adversity`)."""


def fuzz_model(seed: int, force: Mapping[str, str] | None = None) -> Model:
    """Draw the model one seed runs on, reproducibly (about one seed in three: realtime).

    It comes from a generator of its own, so a seed's timings and adversarial dimensions
    are what they were before the model was drawn: ``force={"model": "pipeline"}`` runs
    every seed as older fuzz runs did. A forced ``preemptive_generation=true`` (LiveKit
    generates preemptively only with an LLM) makes a drawn realtime seed a pipeline one.

    Args:
        seed: Any integer.
        force: As for :func:`fuzz_adversity`; its ``model`` overrides the draw.

    Returns:
        ``pipeline`` or ``realtime``.

    Raises:
        ValueError: As :func:`fuzz_adversity`.
    """
    return _draw(seed, force)[0]


def fuzz_adversity(seed: int, force: Mapping[str, str] | None = None) -> Adversity:
    """Draw the adversarial dimensions of one seed (see :class:`Adversity`), reproducibly.

    They come from a generator of their own, so :func:`fuzz_timings` (and every old seed's
    timings) stays as it was. Every magnitude is drawn for every seed, so forcing a kind
    (``force={"close": "aclose"}``) uses the seed's own close time. Combinations a run
    cannot have are resolved in favour of the forced fields (:meth:`Adversity.resolved`).

    On a realtime seed (:func:`fuzz_model`) ``preemptive_generation`` is never drawn:
    LiveKit's preemptive generation needs an LLM, so it would change nothing while being
    reported. Every other dimension applies as on the pipeline; ``tts_fault`` hits the
    filler voice, the only TTS a realtime run has.

    Args:
        seed: Any integer.
        force: Field name to value (as text, e.g. ``{"tts_fault": "hang"}``), overriding
            the draw; ``model`` (``pipeline`` or ``realtime``) forces the model.

    Returns:
        The dimensions of ``seed``.

    Raises:
        ValueError: An unknown field, a bad value, or forced fields that conflict.
    """
    return _draw(seed, force)[1]


def _draw(seed: int, force: Mapping[str, str] | None) -> tuple[Model, Adversity]:
    """The model and the adversarial dimensions of ``seed``, with ``force`` applied."""
    forced = _parse_force(force or {})
    model: Model = forced.pop(_MODEL, None) or (
        "realtime"
        if random.Random(f"livekit_filler.fuzz:{seed}:model").random() < REALTIME_SHARE
        else "pipeline"
    )
    adversity = _draw_adversity(seed, forced)
    if model == "realtime" and adversity.slow_answer != "none":
        # the slow-answer filler answers pipeline turns (a realtime model's: not yet)
        if "slow_answer" not in forced:
            adversity = dataclasses.replace(adversity, slow_answer="none")
        elif _MODEL in (force or {}):
            raise ValueError("model=realtime excludes slow_answer (pipeline sessions only)")
        else:
            model = "pipeline"
    if model == "realtime" and adversity.preemptive_generation:
        if "preemptive_generation" not in forced:
            adversity = dataclasses.replace(adversity, preemptive_generation=False)
        elif _MODEL in (force or {}):
            raise ValueError(
                "model=realtime excludes preemptive_generation=true "
                "(LiveKit generates preemptively only with an LLM)"
            )
        else:
            model = "pipeline"
    return model, adversity


def _draw_adversity(seed: int, forced: Mapping[str, Any]) -> Adversity:
    timings = fuzz_timings(seed)
    rng = random.Random(f"livekit_filler.fuzz:{seed}:adversarial")
    extra_duration = rng.uniform(0.0, 1.5)
    mid_filler = _quiet_from(timings) + timings.filler_delay + timings.tts_ttfb
    close_at = max(0.0, min(mid_filler + rng.uniform(0.0, 0.6), timings.tool_duration - 0.2))
    gap = rng.choice([rng.uniform(0.0, MAX_SPEECH_GAP), rng.uniform(MAX_SPEECH_GAP, 1.5)])
    plain = rng.random() < PLAIN_SHARE
    extra = rng.choices(_EXTRA_TOOLS, [60, 20, 20])[0]
    raising: Raising = "none"
    if rng.random() < 0.15:
        raising = "extra" if extra != "none" and rng.random() < 0.5 else "main"
    handoff = rng.choices(_HANDOFFS, [76, 12, 12])[0]
    close = rng.choices(_CLOSES, [88, 6, 6])[0]
    fault = rng.choices(_TTS_FAULTS, [70, 6, 6, 6, 6, 6])[0]
    interruptions = rng.choices(_INTERRUPTIONS, [70, 10, 10, 10])[0]
    preemptive = rng.random() < 0.25
    speech_gap = gap if rng.random() < 0.2 else 0.0
    # drawn last, so the dimensions above keep the draws they had before it existed
    history = rng.choice(
        [0.0, 0.0, rng.uniform(0.1, 0.6), rng.uniform(0.8, 1.25), rng.uniform(1.5, 3.0)]
    )
    # the beyond-tools cases (issue 22), from a generator of their own: every dimension
    # above keeps the draws it had before they existed
    beyond = random.Random(f"livekit_filler.fuzz:{seed}:beyond")
    slow_ttft = beyond.uniform(2.0, 3.5)
    slow_answer = beyond.choices(_SLOW_ANSWERS, [1 - sum(BEYOND_SHARE[:2]), *BEYOND_SHARE[:2]])[0]
    busy_at = _quiet_from(timings) + beyond.uniform(0.3, 1.2)
    busy_for = beyond.uniform(0.35, 0.8)
    busy = beyond.random() < BEYOND_SHARE[2]
    drawn = Adversity(
        extra_tool_duration=extra_duration,
        close_at=close_at,
        slow_ttft=slow_ttft,
        busy_at=busy_at,
        busy_for=busy_for,
    )
    if not plain:
        drawn = dataclasses.replace(
            drawn,
            extra_tool=extra,
            raising=raising,
            handoff=handoff,
            close=close,
            tts_fault=fault,
            interruptions=interruptions,
            preemptive_generation=preemptive,
            speech_gap=speech_gap,
            history=history,
            slow_answer=slow_answer,
            busy=busy,
        )
    return dataclasses.replace(drawn, **forced).resolved(frozenset(forced))


def pair_timings(seed: int, adversity: Adversity) -> Timings:
    """The timings both runs of a pair use: :func:`fuzz_timings`, and in the busy case the
    caller's one sound mid-tool (instead of the drawn ones) and a tool that runs on long
    enough after it (1-2 s) for the acknowledgement."""
    timings = fuzz_timings(seed)
    if not adversity.busy:
        return timings
    rng = random.Random(f"livekit_filler.fuzz:{seed}:busy")
    end = adversity.busy_at + adversity.busy_for
    return dataclasses.replace(
        timings,
        tool_duration=max(timings.tool_duration, end + rng.uniform(1.0, 2.0)),
        user_noise=(UserNoise(adversity.busy_at, adversity.busy_for, "busy"),),
    )


def _parse_force(force: Mapping[str, str]) -> dict[str, Any]:
    """``--force`` values, typed and checked against :class:`Adversity`'s fields (and
    ``model``)."""
    hints: dict[str, Any] = {**typing.get_type_hints(Adversity), _MODEL: Model}
    values: dict[str, Any] = {}
    for name, text in force.items():
        if name not in hints:
            raise ValueError(f"unknown dimension {name!r}; one of: {', '.join(hints)}")
        kind = hints[name]
        if kind is float:
            values[name] = float(text)
        elif kind is bool:
            if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"{name} must be true or false, got {text!r}")
            values[name] = text.lower() in ("1", "true", "yes", "on")
        else:
            choices = typing.get_args(kind)
            if text not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {text!r}")
            values[name] = text
    return values


# -- one pair -------------------------------------------------------------------------------


@dataclass
class _RunLog:
    records: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


_CURRENT_RUN: contextvars.ContextVar[_RunLog | None] = contextvars.ContextVar(
    "livekit_filler_fuzz_run", default=None
)


class _Capture(logging.Handler):
    """Routes WARNING+ records to the run whose task logged them (by context variable).

    Records logged from a task that does not carry the variable (the filler controller
    spawns its tasks in a fresh context on purpose) land in :attr:`unattributed`, with the
    time they were logged, so the fuzzer can re-run the seeds in flight alone.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.unattributed: list[tuple[float, str, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.levelname} {record.name}: {record.getMessage()}"
        except Exception:  # a record with bad arguments must not break the run
            text = f"{record.levelname} {record.name}: {record.msg!r}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" [{type(exc).__name__}: {exc}]"
        is_error = record.levelno >= logging.ERROR
        run = _CURRENT_RUN.get()
        if run is None:
            self.unattributed.append((time.monotonic(), text, is_error))
        elif is_error:
            run.records.append(text)
        else:
            run.warnings.append(text)


@dataclass
class PairOutcome:
    """One seed of one scenario: the baseline, the filler run, and what was wrong.

    Attributes:
        seed: The seed of :func:`fuzz_timings`.
        scenario: ``club_info`` or ``programs``.
        timings: The drawn timings.
        base: The ``none`` run (None if it raised).
        run: The ``livekit_filler`` run (None if it raised).
        base_errors: Exceptions and ERROR records of the baseline.
        errors: Exceptions and ERROR records of the filler run.
        warnings: WARNING records of the filler run.
        reply_delay: Seconds the reply after the tool started later than in the baseline.
        handoff_delay: Same for the sub-agent's first speech (``programs`` only).
        problems: Why the seed fails; empty if it passes.
        inconclusive: The baseline itself never played the answer, so nothing is compared.
        gated: Which answers (``"reply"``, ``"handoff"``) the caller's sound held back in
            either run; their delay is checked against the caller's end, not the baseline.
        max_lag: Worst event-loop lag sampled while the pair ran, in seconds.
        load_only: It failed among concurrent pairs but passed every re-run alone: a
            loop stall, not the seed (see :func:`fuzz`). Its ``problems`` are kept.
        started_at: Monotonic time the pair started.
        ended_at: Monotonic time the pair ended.
        adversity: The drawn (or forced) adversarial dimensions of both runs.
        force: The ``--force`` values the pair ran with (part of its replay command).
        plain: It ran with no adversarial dimension (``--plain``).
        transfer_delay: Seconds the ``Specialist``'s greeting after an agent hand-off
            started later than in the baseline.
        shared_errors: Errors of the filler run that the baseline had too (same text):
            the scenario's, not the fillers'; listed, not failing.
        filler_close: The reason the filler run's session closed when the baseline's did
            not (or closed otherwise): a close caused by fillers.
        model: The model both runs ran on (:func:`fuzz_model`): ``pipeline`` or
            ``realtime``.
        slow_filler_at: Slow-answer case: seconds from the end of the caller's turn to the
            slow-answer filler's first audio (None: no such filler).
        first_audio_delay: Slow-answer case: seconds the agent's first speech after the
            caller's turn started later than in the baseline (caller quiet meanwhile).
        busy_ack_after: Busy case: seconds from the caller's stop to the acknowledgement.
    """

    seed: int
    scenario: ScenarioName
    timings: Timings
    base: ScenarioResult | None
    run: ScenarioResult | None
    adversity: Adversity = field(default_factory=Adversity)
    force: tuple[tuple[str, str], ...] = ()
    plain: bool = False
    base_errors: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reply_delay: float | None = None
    handoff_delay: float | None = None
    problems: list[str] = field(default_factory=list)
    inconclusive: bool = False
    gated: list[str] = field(default_factory=list)
    max_lag: float = 0.0
    load_only: bool = False
    started_at: float = 0.0
    ended_at: float = 0.0
    transfer_delay: float | None = None
    shared_errors: list[str] = field(default_factory=list)
    filler_close: str | None = None
    model: Model = "pipeline"
    slow_filler_at: float | None = None
    first_audio_delay: float | None = None
    busy_ack_after: float | None = None

    @property
    def failed(self) -> bool:
        """Whether the seed broke a check (and still did when re-run alone)."""
        return bool(self.problems) and not self.load_only

    @property
    def replay(self) -> str:
        """The command that replays this seed alone (on the same model: a realtime pair's
        command says so even when the seed drew it)."""
        force = dict(self.force)
        if self.plain:  # --plain ignores every forced dimension but the model
            force = {k: v for k, v in force.items() if k == _MODEL}
        flags = "".join(f" --force {k}={v}" for k, v in force.items())
        if self.model == "realtime" and _MODEL not in force:
            flags += f" --force {_MODEL}={self.model}"
        if self.plain:
            flags = " --plain" + flags
        return f"python -m devtools.fuzz --seed {self.seed} --scenario {self.scenario}{flags}"


def reply_latency(result: ScenarioResult) -> float | None:
    """Seconds from the last tool's return to the first audio of the final reply."""
    reply, ready = _answer_and_ready(result, "reply")
    return None if reply is None or ready is None else reply.start - ready


def transfer_latency(result: ScenarioResult) -> float | None:
    """Seconds from an agent hand-off to the ``Specialist``'s first audio, else None."""
    greeting, ready = _answer_and_ready(result, "transfer")
    return None if greeting is None or ready is None else greeting.start - ready


def handoff_latency(result: ScenarioResult) -> float | None:
    """Seconds from the AgentTask's start to its first audio (``programs``), else None."""
    return result.answer_latency if result.scenario == "programs" else None


async def _run_one(
    scenario: ScenarioName, mode: Mode, timings: Timings, adversity: Adversity, model: Model
) -> tuple[ScenarioResult | None, list[str], list[str]]:
    log = _RunLog()
    _CURRENT_RUN.set(log)  # this task's context only: each run is its own task
    try:
        result = await asyncio.wait_for(
            run_scenario(scenario, mode, timings, settle=SETTLE, model=model, adversity=adversity),
            RUN_TIMEOUT,
        )
    except (asyncio.TimeoutError, TimeoutError) as e:  # two classes on Python 3.10
        return None, [f"TimeoutError: {str(e) or 'the run hung'}", *log.records], log.warnings
    except Exception as e:
        logger.debug("scenario run raised", exc_info=True)
        return None, [f"{type(e).__name__}: {e}", *log.records], log.warnings
    return result, [*result.errors, *log.records], log.warnings


async def run_pair(
    seed: int,
    scenario: ScenarioName,
    *,
    force: Mapping[str, str] | None = None,
    plain: bool = False,
) -> PairOutcome:
    """Run the baseline and the filler run of one seed side by side, then check them.

    Log records are captured only while :func:`capture_logs` is active (``fuzz`` and the CLI
    install it); otherwise ERROR records are not seen.

    Args:
        seed: The seed of :func:`fuzz_timings`, :func:`fuzz_model` and
            :func:`fuzz_adversity`.
        scenario: The thread scenario.
        force: Dimensions to force (see :func:`fuzz_adversity`), ``model`` included.
        plain: No adversarial dimension at all (timings only), whatever ``force`` says;
            the model is still the seed's (or the forced one).

    Returns:
        The checked pair.
    """
    if plain:
        model, adversity = fuzz_model(seed, _model_only(force)), Adversity()
    else:
        model, adversity = _draw(seed, force)
    timings = pair_timings(seed, adversity)
    started = time.monotonic()
    (base, base_errors, _), (run, errors, warnings) = await asyncio.gather(
        asyncio.ensure_future(_run_one(scenario, "none", timings, adversity, model)),
        asyncio.ensure_future(_run_one(scenario, "livekit_filler", timings, adversity, model)),
    )
    outcome = PairOutcome(
        seed=seed,
        scenario=scenario,
        timings=timings,
        base=base,
        run=run,
        adversity=adversity,
        force=tuple(sorted(((_model_only(force) if plain else force) or {}).items())),
        plain=plain,
        model=model,
        base_errors=base_errors,
        errors=errors,
        warnings=warnings,
        started_at=started,
        ended_at=time.monotonic(),
    )
    check_pair(outcome)
    return outcome


def _model_only(force: Mapping[str, str] | None) -> dict[str, str]:
    """The forced model of ``force``, if any (all ``--plain`` keeps of it)."""
    return {k: v for k, v in (force or {}).items() if k == _MODEL}


def check_pair(outcome: PairOutcome) -> None:
    """Fill in the delays and the problems of ``outcome`` (see the module docstring)."""
    base, run = outcome.base, outcome.run
    problems = outcome.problems
    shared = set(outcome.base_errors)
    outcome.shared_errors = [e for e in outcome.errors if e in shared]
    problems.extend(f"error: {e}" for e in outcome.errors if e not in shared)
    if run is None:
        return
    _check_closes(outcome, base, run)
    if run.overlaps:
        pairs = ", ".join(
            f"{a.text!r}@{a.start:.2f}/{b.text!r}@{b.start:.2f}" for a, b in run.overlaps
        )
        problems.append(f"overlap: {pairs}")
    if run.fillers_in_history:
        problems.append(f"filler in history: {run.fillers_in_history}")
    task_start = run.marker("task_start")
    handoff = run.marker("handoff")
    for filler in run.fillers:
        if filler.agent == "CollectAgeGender":
            after = f"{(filler.start - task_start) * 1000:+.0f} ms" if task_start else "?"
            problems.append(
                f"filler spoke into the AgentTask's conversation: started {after} after the "
                f"task did, played {filler.duration * 1000:.0f} ms"
                + (" (cut)" if filler.interrupted else "")
            )
        if filler.agent == "Specialist" or (handoff is not None and filler.start > handoff):
            after = f"{(filler.start - handoff) * 1000:+.0f} ms" if handoff else "?"
            problems.append(f"filler started {after} after the hand-off to the Specialist")
        for since, until in user_speaking_spans(run.markers):
            if since + _TALK_OVER_TOLERANCE < filler.start < until:
                problems.append(
                    f"filler started at {filler.start:.2f} while the caller spoke "
                    f"(user_state speaking {since:.2f}-{until:.2f})"
                )
    adversity = outcome.adversity
    closed = adversity.close != "none"
    answers = ["reply", "handoff"] if run.scenario == "programs" else ["reply"]
    if adversity.handoff == "return":
        answers = [a for a in answers if a != "reply"]
    if adversity.handoff != "none":
        answers.append("transfer")
    base_lost = base is None or any(_answer_and_ready(base, a)[0] is None for a in answers)
    if base_lost and not closed:
        outcome.inconclusive = True
        if all(_answer_and_ready(run, a)[0] is None for a in answers) and not outcome.errors:
            return  # nothing to compare: the scenario itself lost the answer
    for which in answers:
        if closed and (base is None or _answer_and_ready(base, which)[0] is None):
            continue  # closed before this answer: the baseline has none either
        bound = REPLY_BOUND if which == "reply" else HANDOFF_BOUND
        _check_delay(outcome, which, base, run, bound)
    _check_slow_answer(outcome, base, run)
    _check_busy(outcome, run)
    if (
        not run.timings.user_noise
        and not closed
        and adversity.tts_fault == "none"  # fillers not rendered are skipped (a back-off)
        and adversity.speech_gap <= MAX_SPEECH_GAP  # fillers skipped by design
        and (silent := _silent_tool_time(run)) is not None
    ):
        if silent > run.timings.filler_delay + run.timings.tts_ttfb + 0.15 and not run.fillers:
            problems.append(f"no filler in {silent:.2f} s of silent tool time")


def _check_slow_answer(
    outcome: PairOutcome, base: ScenarioResult | None, run: ScenarioResult
) -> None:
    """The slow-answer case: one filler :data:`SLOW_ANSWER_WINDOW` after the caller's turn
    when the LLM is slow, none when it is fast, and the agent's first speech after the turn
    no later than the baseline's beyond :data:`REPLY_BOUND`."""
    adversity, problems = outcome.adversity, outcome.problems
    if adversity.slow_answer == "none":
        return
    turn_end = run.marker("turn_end")
    if turn_end is None:
        problems.append("the caller's spoken turn was never answered")
        return
    slow = [u for u in run.fillers if u.text in SLOW_ANSWER_PHRASES]
    if slow:
        outcome.slow_filler_at = slow[0].start - turn_end
    if adversity.slow_answer == "fast" and slow:
        problems.append(
            f"a slow-answer filler for a fast answer, {slow[0].start - turn_end:.2f} s after "
            "the turn"
        )
    elif adversity.slow_answer == "slow":
        low, high = SLOW_ANSWER_WINDOW
        # skipped by design with a speech gap above MAX_SPEECH_GAP or a failing TTS (its
        # back-off); with preemptive generation too, one is required (held from the
        # preemptive reply's creation, queued at the turn's commit: docs/reliability.md)
        required = adversity.speech_gap <= MAX_SPEECH_GAP and adversity.tts_fault == "none"
        if len(slow) > 1 or (required and not slow):
            problems.append(f"{len(slow)} slow-answer fillers for a slow answer")
        elif slow and not low <= slow[0].start - turn_end <= high:
            problems.append(
                f"the slow-answer filler started {slow[0].start - turn_end:.3f} s after the "
                f"turn (window {low:.1f}-{high:.1f} s)"
            )
    if base is None or (base_end := base.marker("turn_end")) is None:
        return
    run_first, base_first = _first_speech(run, turn_end), _first_speech(base, base_end)
    if run_first is None or base_first is None:
        return  # a lost answer is checked with the answers
    if any(
        _caller_between(r, *span)
        for r, span in ((run, (turn_end, run_first.start)), (base, (base_end, base_first.start)))
    ):
        return  # the caller's sound may have held it back: the answers' checks cover it
    delay = (run_first.start - turn_end) - (base_first.start - base_end)
    outcome.first_audio_delay = delay
    if delay > REPLY_BOUND:
        problems.append(f"first speech after the turn {delay * 1000:+.0f} ms vs baseline")


def _first_speech(result: ScenarioResult, since: float) -> Utterance | None:
    return next(
        (
            u
            for u in result.utterances
            if u.speaker == "agent" and u.kind == "speech" and u.start >= since
        ),
        None,
    )


def _caller_between(result: ScenarioResult, start: float, end: float) -> bool:
    """Whether the caller was audible between ``start`` (the end of their turn) and ``end``."""
    return any(u.start < end and u.end > start for u in _user(result))


def _check_busy(outcome: PairOutcome, run: ScenarioResult) -> None:
    """The busy case: exactly one acknowledgement, starting within :data:`BUSY_ACK_BOUND`
    of the caller's stop, over neither the caller nor the answer."""
    adversity, problems = outcome.adversity, outcome.problems
    if not adversity.busy:
        return  # (it is on by default: a drawn uninterruptible step may say it too)
    acks = [u for u in run.utterances if u.text == BUSY_MESSAGE]
    tool_start = run.marker("tool_start")
    if tool_start is None:
        return
    # closed mid-tool, or skipped by design (a speech gap above MAX_SPEECH_GAP, a failing
    # TTS's back-off): at most one, then
    required = (
        adversity.close == "none"
        and adversity.speech_gap <= MAX_SPEECH_GAP
        and adversity.tts_fault == "none"
    )
    at = tool_start + adversity.busy_at
    caller = [u for u in _user(run) if abs(u.start - at) < 0.5]
    if not caller and adversity.close != "none":
        return  # closed before the caller spoke
    if not caller:
        problems.append(f"busy: the caller's sound at +{adversity.busy_at:.2f} s was not heard")
        return
    stop = caller[0].end
    if len(acks) > 1 or (required and not acks):
        problems.append(f"busy: {len(acks)} acknowledgements (one expected)")
        return
    if not acks:
        return
    ack = acks[0]
    outcome.busy_ack_after = ack.start - stop
    if not 0.0 <= ack.start - stop <= BUSY_ACK_BOUND:
        problems.append(
            f"busy: the acknowledgement started {ack.start - stop:.3f} s after the caller "
            f"stopped (bound {BUSY_ACK_BOUND} s)"
        )
    for u in _user(run):
        if u.start < ack.end and ack.start < u.end:
            problems.append(f"busy: the acknowledgement overlaps the caller at {u.start:.2f}")
    answer = run.answer
    if answer is not None and answer.start < ack.end and ack.start < answer.end:
        problems.append("busy: the acknowledgement overlaps the answer")


def _check_closes(outcome: PairOutcome, base: ScenarioResult | None, run: ScenarioResult) -> None:
    """A session that closed with fillers but not without (or for another reason) is a
    close caused by fillers."""
    run_reasons = [reason for _, reason, _ in run.closes]
    base_reasons = [] if base is None else [reason for _, reason, _ in base.closes]
    if run_reasons and run_reasons[:1] != base_reasons[:1]:
        _, reason, error = run.closes[0]
        outcome.filler_close = reason
        without = f"closed {base_reasons[0]}" if base_reasons else "did not close"
        outcome.problems.append(
            f"session closed ({reason}{': ' + error if error else ''}) with fillers; "
            f"without them it {without}"
        )


def _answer_and_ready(result: ScenarioResult, which: str) -> tuple[Utterance | None, float | None]:
    """The answer ``which`` (``reply``, ``handoff``: the AgentTask's first speech,
    ``transfer``: the Specialist's greeting) and when it was ready to be said."""
    if which == "reply":
        final = CLUB_ANSWER if result.scenario == "club_info" else PROGRAMS_ANSWER
        reply = next((u for u in result.utterances if u.text == final), None)
        if reply is None:
            return None, result.marker("tool_end")
        # the last tool of the step (a parallel or chained second tool) to return before it
        ends = [
            t
            for name in ("tool_end", "extra_end")
            for t in result.markers.get(name, [])
            if t <= reply.start
        ]
        return reply, max(ends, default=None)
    if which == "transfer":
        greeting = next((u for u in result.utterances if u.text == SPECIALIST_GREETING), None)
        return greeting, result.marker("handoff")
    return result.answer, result.marker("task_start")


def _caller_hold(result: ScenarioResult, which: str) -> float | None:
    """When the caller last stopped, if their sound could have held the answer back.

    That is: the caller was audible between just before the answer was ready and the
    answer's first audio. None if the caller was quiet all that time.
    """
    answer, ready = _answer_and_ready(result, which)
    if answer is None or ready is None:
        return None
    ends = [u.end for u in _user(result) if u.start < answer.start and u.end > ready - 0.1]
    return max(ends, default=None)


def _check_delay(
    outcome: PairOutcome,
    which: str,
    base: ScenarioResult | None,
    run: ScenarioResult,
    bound: float,
) -> None:
    """Compare one answer's latency with the baseline's.

    When the caller's sound may have held the answer back in either run, the two runs can
    straddle the sound's start by a few milliseconds of jitter, and the difference is the
    caller's, not the fillers'. Such an answer must instead start within
    ``max(baseline latency, caller's end + TTS first byte + GATE_ALLOWANCE) + bound``.
    """
    name = {"reply": "reply", "handoff": "hand-off", "transfer": "agent hand-off"}[which]
    run_answer, run_ready = _answer_and_ready(run, which)
    if run_answer is None or run_ready is None:
        outcome.problems.append(
            {
                "reply": "the reply never played",
                "handoff": "the sub-agent never spoke",
                "transfer": "the Specialist never spoke after the hand-off",
            }[which]
        )
        return
    if base is None:
        return
    base_answer, base_ready = _answer_and_ready(base, which)
    if base_answer is None or base_ready is None:
        return
    base_latency = base_answer.start - base_ready
    run_latency = run_answer.start - run_ready
    delay = run_latency - base_latency
    hold = _caller_hold(run, which)
    if hold is not None or _caller_hold(base, which) is not None:
        outcome.gated.append(which)
        allowed = base_latency
        if hold is not None:
            allowed = max(allowed, hold - run_ready + run.timings.tts_ttfb + GATE_ALLOWANCE)
        excess = run_latency - allowed
        if excess > bound:
            outcome.problems.append(
                f"{name} {excess * 1000:+.0f} ms after the caller-held allowance"
            )
        return
    if which == "reply":
        outcome.reply_delay = delay
    elif which == "handoff":
        outcome.handoff_delay = delay
    else:
        outcome.transfer_delay = delay
    if delay > bound:
        outcome.problems.append(f"{name} {delay * 1000:+.0f} ms vs baseline")


def _user(result: ScenarioResult) -> list[Utterance]:
    return [u for u in result.utterances if u.speaker == "user"]


def _silent_tool_time(run: ScenarioResult) -> float | None:
    """Seconds the tool ran after the agent's own speech (a preamble) had ended."""
    start, end = run.marker("tool_start"), run.marker("task_start") or run.marker("tool_end")
    if start is None or end is None:
        return None
    spoken = [u.end for u in run.utterances if u.kind == "speech" and u.start < end]
    return end - max([start, *spoken])


# -- many pairs ----------------------------------------------------------------------------


class _LagMonitor:
    """Samples how late the event loop wakes up, a measure of CPU saturation."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        """``(time.monotonic(), seconds late)`` per sample."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fuzz.lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(_LAG_INTERVAL)
            self.samples.append((time.monotonic(), max(0.0, loop.time() - before - _LAG_INTERVAL)))

    def max_between(self, start: float, end: float) -> float:
        """The worst lag sampled between two ``time.monotonic()`` times."""
        return max((lag for t, lag in self.samples if start <= t <= end), default=0.0)


@contextlib.contextmanager
def capture_logs() -> Iterator[_Capture]:
    """Capture WARNING+ records of every logger into the pairs that are running.

    Yields:
        The handler; its ``unattributed`` list holds records no run could be tied to.
    """
    handler = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@dataclass
class FuzzResult:
    """Everything one fuzz run produced.

    Attributes:
        outcomes: One per seed and scenario, in completion order.
        unattributed: ERROR records no run could be tied to, with the seeds in flight.
        lag: Event-loop lag samples, ``(time.monotonic(), seconds late)``.
        wall: Seconds the whole run took.
        concurrency: Pairs in flight at once.
    """

    outcomes: list[PairOutcome]
    unattributed: list[tuple[str, list[tuple[int, ScenarioName]]]]
    lag: list[tuple[float, float]]
    wall: float
    concurrency: int


def freeze_imports() -> None:
    """Move every object alive now (the imported modules: livekit, numpy, ...) out of the
    garbage collector's reach.

    Otherwise each full collection walks that whole graph, a 0.14-0.17 s pause of the event
    loop; one that lands between the answer's events of only one run of a pair delays that
    answer by as much (seed 22 ``programs``: +118 to +175 ms in most replays, +0 ms with
    this). The pause is the process's, not the fillers'.
    """
    gc.collect()
    gc.freeze()


async def fuzz(
    cases: Sequence[tuple[int, ScenarioName]],
    *,
    concurrency: int = 12,
    on_outcome: Callable[[PairOutcome], None] | None = None,
    isolate_suspects: bool = True,
    confirm: int = 2,
    force: Mapping[str, str] | None = None,
    plain: bool = False,
    force_for: Callable[[int, ScenarioName], Mapping[str, str]] | None = None,
) -> FuzzResult:
    """Run every ``(seed, scenario)`` pair, ``concurrency`` pairs at a time.

    ERROR records that cannot be tied to one run (logged from a task with a fresh context)
    make every pair that was in flight a suspect; with ``isolate_suspects`` each suspect is
    re-run alone, where the capture is exact, and its outcome replaces the concurrent one.

    Args:
        cases: The pairs to run.
        concurrency: Pairs in flight at once (each pair is two sessions).
        on_outcome: Called with each finished outcome (e.g. for progress).
        isolate_suspects: Re-run suspects of unattributed errors alone.
        confirm: Re-run each failing pair alone up to this many times; one that passes
            every time is marked ``load_only`` (it failed only because the loop stalled
            under the concurrent load). 0 keeps every concurrent failure.
        force: Dimensions forced on every pair (see :func:`fuzz_adversity`), ``model``
            included.
        plain: No adversarial dimensions (timings only; the model is still drawn or forced).
        force_for: Per pair, dimensions to force on top of ``force``.

    Returns:
        The outcomes and the run's statistics.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
    started = time.monotonic()
    lag = _LagMonitor()
    outcomes: list[PairOutcome] = []
    unattributed: list[tuple[str, list[tuple[int, ScenarioName]]]] = []
    with capture_logs() as capture:
        lag.start()
        try:
            outcomes = await _bounded(
                [
                    functools.partial(
                        run_pair,
                        seed,
                        scenario,
                        force={**(force or {}), **(force_for(seed, scenario) if force_for else {})},
                        plain=plain,
                    )
                    for seed, scenario in cases
                ],
                concurrency,
                on_outcome,
            )
        finally:
            await lag.stop()
        suspects: dict[tuple[int, ScenarioName], list[str]] = {}
        for at, text, is_error in capture.unattributed:
            if not is_error:
                continue
            in_flight = [(o.seed, o.scenario) for o in outcomes if o.started_at <= at <= o.ended_at]
            unattributed.append((text, in_flight))
            for key in in_flight:
                suspects.setdefault(key, []).append(text)
        if suspects and isolate_suspects:
            logger.info("re-running suspects alone", extra={"count": len(suspects)})
            by_key = {(o.seed, o.scenario): i for i, o in enumerate(outcomes)}
            by_outcome = {(o.seed, o.scenario): o for o in outcomes}
            for key in suspects:
                capture.unattributed.clear()
                alone = await _again(by_outcome[key])
                # alone, every record in flight belongs to this pair
                extra = [text for _, text, is_error in capture.unattributed if is_error]
                if extra:
                    alone.errors.extend(extra)
                    alone.problems.extend(f"error: {e}" for e in extra)
                outcomes[by_key[key]] = alone
            unattributed = [
                (text, keys) for text, keys in unattributed if not set(keys) <= set(suspects)
            ]
        for o in outcomes:
            o.max_lag = lag.max_between(o.started_at, o.ended_at)
        for index, o in enumerate(outcomes):
            if not o.problems or o.errors or confirm <= 0:
                continue
            tries = [await _again(o) for _ in range(confirm)]
            if all(not t.problems for t in tries):
                o.load_only = True
            else:
                # keep the concurrent outcome: its problems are the ones listed
                logger.info("failure reproduced alone", extra={"seed": o.seed})
            outcomes[index] = o
    return FuzzResult(
        outcomes=outcomes,
        unattributed=unattributed,
        lag=lag.samples,
        wall=time.monotonic() - started,
        concurrency=concurrency,
    )


async def _again(outcome: PairOutcome) -> PairOutcome:
    """Run the pair of ``outcome`` again, with the same dimensions."""
    return await run_pair(
        outcome.seed, outcome.scenario, force=dict(outcome.force), plain=outcome.plain
    )


async def _bounded(
    jobs: Sequence[Callable[[], Awaitable[PairOutcome]]],
    concurrency: int,
    on_outcome: Callable[[PairOutcome], None] | None,
) -> list[PairOutcome]:
    queue: Iterator[Callable[[], Awaitable[PairOutcome]]] = iter(jobs)
    outcomes: list[PairOutcome] = []

    async def worker() -> None:
        for job in queue:
            outcome = await job()
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

    workers = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(jobs)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
    return outcomes


async def calibrate(
    outcomes: Sequence[PairOutcome], count: int, *, seed: int = 0
) -> list[tuple[PairOutcome, PairOutcome]]:
    """Re-run ``count`` passing pairs alone, to see how much concurrency moved the delays.

    Args:
        outcomes: Outcomes of a concurrent run.
        count: How many to re-run (picked at random, reproducibly).
        seed: Seed of the pick.

    Returns:
        ``(concurrent, alone)`` outcome pairs.
    """
    pool = [o for o in outcomes if not o.failed and o.reply_delay is not None]
    picked = random.Random(seed).sample(pool, min(count, len(pool)))
    pairs: list[tuple[PairOutcome, PairOutcome]] = []
    with capture_logs():
        for o in picked:
            pairs.append((o, await _again(o)))
    return pairs


# -- summary --------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _ms(value: float) -> str:
    return f"{value * 1000:+.0f} ms"


@dataclass
class FuzzSummary:
    """The figures of one fuzz run (see :func:`summarize`)."""

    runs: int
    seeds: int
    failed: list[PairOutcome]
    load_only: list[PairOutcome]
    inconclusive: int
    errors: int
    base_errors: int
    unattributed_errors: int
    overlaps: int
    max_dead_air: float
    max_dead_air_baseline: float
    reply_delays: list[float]
    handoff_delays: list[float]
    fillers_played: int
    fillers_cut: int
    runs_with_filler: int
    runs_with_noise: int
    gated: int
    warnings: Counter[str]
    lag_p99: float
    lag_max: float
    wall: float
    concurrency: int
    transfer_delays: list[float] = field(default_factory=list)
    thread_errors: int = 0
    shared_errors: int = 0
    filler_closes: int = 0
    closes: int = 0
    history_leaks: int = 0
    dimensions: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per adversarial dimension tag (``plain`` for none): pairs run, pairs failed."""
    dimension_delays: dict[str, list[float]] = field(default_factory=dict)
    """Per tag: every reply, hand-off and agent hand-off delay of its pairs."""
    fillers_cut_mid_word: int = 0
    """Fillers that stopped inside a word where livekit-filler chose the stop (the answer,
    real speech), on the FakeTTS's known words."""
    fillers_cut_mid_word_forced: int = 0
    """... and where it had to stop at once: the caller spoke, a hand-off, a close, a realtime
    answer, or a live render broke off (a TTS fault)."""
    fillers_cut_early: int = 0
    """Fillers that stopped within their first 0.5 s of audio where livekit-filler chose the
    stop (it started a filler the answer cut short)."""
    fillers_cut_early_forced: int = 0
    """... and where the caller, a hand-off or a close stopped it at once."""
    early_by_history: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per latency history the filler run knew (:func:`_history_band`): fillers cut in
    their first 0.5 s where livekit-filler chose the stop, fillers played."""
    mid_word: list[tuple[int, str]] = field(default_factory=list)
    """``(seed, scenario)`` of each filler cut mid-word where livekit-filler chose the stop."""
    dead_air_total: float = 0.0
    """Silent seconds between each tool's start and its answer, summed over the filler runs
    whose answer both runs played."""
    dead_air_total_baseline: float = 0.0
    """The same over the baseline runs of those pairs."""
    slow_answer_pairs: tuple[int, int] = (0, 0)
    """Pairs of the slow-answer case: with a slow LLM, with a fast one."""
    slow_filler_starts: list[float] = field(default_factory=list)
    """Slow LLM: seconds from the end of the caller's turn to each slow-answer filler."""
    fast_answer_fillers: int = 0
    """Fast LLM: slow-answer fillers played (0 expected)."""
    first_audio_delays: list[float] = field(default_factory=list)
    """Slow-answer case: the first speech after the turn, filler run minus baseline."""
    busy_pairs: int = 0
    """Pairs of the busy case."""
    busy_acks: list[float] = field(default_factory=list)
    """Busy case: seconds from the caller's stop to each acknowledgement."""
    models: dict[str, FuzzSummary] = field(default_factory=dict)
    """Per model that ran (``pipeline``, ``realtime``): the same figures for its pairs only
    (errors no run could be tied to are counted in the whole run's figures only)."""


def summarize(result: FuzzResult) -> FuzzSummary:
    """Aggregate a fuzz run into the figures the report prints, overall and per model."""
    summary = _summarize(result)
    for model in MODELS:
        pairs = [o for o in result.outcomes if o.model == model]
        if pairs:
            part = dataclasses.replace(result, outcomes=pairs, unattributed=[])
            summary.models[model] = _summarize(part)
    return summary


def _summarize(result: FuzzResult) -> FuzzSummary:
    outcomes = result.outcomes
    runs = [o.run for o in outcomes if o.run is not None]
    bases = [o.base for o in outcomes if o.base is not None]
    dead = [r.dead_air for r in runs if r.dead_air is not None]
    dead_base = [r.dead_air for r in bases if r.dead_air is not None]
    fillers = [f for r in runs for f in r.fillers]
    warnings: Counter[str] = Counter()
    for o in outcomes:
        warnings.update(o.warnings)
    dimensions: dict[str, tuple[int, int]] = {}
    dimension_delays: dict[str, list[float]] = {}
    for o in outcomes:
        for tag in o.adversity.tags or ("plain",):
            pairs, failed = dimensions.get(tag, (0, 0))
            dimensions[tag] = (pairs + 1, failed + o.failed)
            dimension_delays.setdefault(tag, []).extend(
                d for d in (o.reply_delay, o.handoff_delay, o.transfer_delay) if d is not None
            )
    by_pair = [
        (
            o,
            _filler_stops(
                o.run, at_once=o.model == "realtime", tts_breaks=o.adversity.tts_fault != "none"
            ),
        )
        for o in outcomes
        if o.run is not None
    ]
    stops = [stop for _, pair in by_pair for stop in pair]
    early_by_history: dict[str, tuple[int, int]] = {}
    for o, pair in by_pair:
        band = _history_band(o.adversity.history)
        early, played = early_by_history.get(band, (0, 0))
        assert o.run is not None
        early_by_history[band] = (
            early + sum(p < EARLY_CUT and not forced for p, _, forced in pair),
            played + len(o.run.fillers),
        )
    both = [
        (o.run.dead_air, o.base.dead_air)
        for o in outcomes
        if o.run is not None
        and o.base is not None
        and o.run.dead_air is not None
        and o.base.dead_air is not None
    ]
    return FuzzSummary(
        fillers_cut_mid_word=sum(inside and not forced for _, inside, forced in stops),
        fillers_cut_mid_word_forced=sum(inside and forced for _, inside, forced in stops),
        fillers_cut_early=sum(played < EARLY_CUT and not forced for played, _, forced in stops),
        fillers_cut_early_forced=sum(played < EARLY_CUT and forced for played, _, forced in stops),
        early_by_history=dict(sorted(early_by_history.items())),
        mid_word=sorted(
            (o.seed, o.scenario)
            for o, pair in by_pair
            for _, inside, forced in pair
            if inside and not forced
        ),
        dead_air_total=sum(run for run, _ in both),
        dead_air_total_baseline=sum(base for _, base in both),
        transfer_delays=[o.transfer_delay for o in outcomes if o.transfer_delay is not None],
        thread_errors=sum(any(s in e for s in THREAD_ERRORS) for o in outcomes for e in o.errors),
        shared_errors=sum(len(o.shared_errors) for o in outcomes),
        filler_closes=sum(o.filler_close is not None for o in outcomes),
        closes=sum(bool(r.closes) for r in runs),
        history_leaks=sum(bool(r.fillers_in_history) for r in runs),
        slow_answer_pairs=(
            sum(o.adversity.slow_answer == "slow" for o in outcomes),
            sum(o.adversity.slow_answer == "fast" for o in outcomes),
        ),
        slow_filler_starts=[
            o.slow_filler_at
            for o in outcomes
            if o.adversity.slow_answer == "slow" and o.slow_filler_at is not None
        ],
        fast_answer_fillers=sum(
            o.adversity.slow_answer == "fast" and o.slow_filler_at is not None for o in outcomes
        ),
        first_audio_delays=[
            o.first_audio_delay for o in outcomes if o.first_audio_delay is not None
        ],
        busy_pairs=sum(o.adversity.busy for o in outcomes),
        busy_acks=[o.busy_ack_after for o in outcomes if o.busy_ack_after is not None],
        dimensions=dict(sorted(dimensions.items())),
        dimension_delays=dimension_delays,
        runs=len(outcomes),
        seeds=len({o.seed for o in outcomes}),
        failed=sorted((o for o in outcomes if o.failed), key=lambda o: (o.seed, o.scenario)),
        load_only=sorted((o for o in outcomes if o.load_only), key=lambda o: (o.seed, o.scenario)),
        inconclusive=sum(o.inconclusive for o in outcomes),
        errors=sum(len(o.errors) - len(o.shared_errors) for o in outcomes)
        + len(result.unattributed),
        base_errors=sum(len(o.base_errors) for o in outcomes),
        unattributed_errors=len(result.unattributed),
        overlaps=sum(len(r.overlaps) for r in runs),
        max_dead_air=max(dead, default=0.0),
        max_dead_air_baseline=max(dead_base, default=0.0),
        reply_delays=[o.reply_delay for o in outcomes if o.reply_delay is not None],
        handoff_delays=[o.handoff_delay for o in outcomes if o.handoff_delay is not None],
        fillers_played=len(fillers),
        fillers_cut=sum(f.interrupted for f in fillers),
        runs_with_filler=sum(bool(r.fillers) for r in runs),
        runs_with_noise=sum(bool(o.timings.user_noise) for o in outcomes),
        gated=sum(len(o.gated) for o in outcomes),
        warnings=warnings,
        lag_p99=_pct([lag for _, lag in result.lag], 0.99) if result.lag else 0.0,
        lag_max=max((lag for _, lag in result.lag), default=0.0),
        wall=result.wall,
        concurrency=result.concurrency,
    )


FORCED_CUT = 0.3
"""A filler that stops within this many seconds of the caller speaking, a hand-off or a close
was stopped at once by design (it never waits for a pause)."""


def _filler_stops(
    run: ScenarioResult, *, at_once: bool, tts_breaks: bool
) -> list[tuple[float, bool, bool]]:
    """Every filler cut short: ``(seconds played, stopped inside a word, stopped at once by
    the caller, a hand-off, a close or a broken render)``.

    ``at_once``: every cut was (a realtime model is sent the tool's output only once every
    speech has ended, so its answer cannot wait for a pause between words: agent_activity's
    realtime tool step). ``tts_breaks``: the run's TTS fails mid-stream, so a filler that
    ended short without being cut was a live render whose audio broke off there.
    """
    spans = user_speaking_spans(run.markers)
    events = [t for name in ("task_start", "handoff", "close") for t in run.markers.get(name, [])]
    stops = []
    for filler, played, inside in run.filler_stops():
        end = filler.end
        forced = (
            at_once
            or (tts_breaks and not filler.interrupted)
            or any(a - FORCED_CUT <= end <= b + FORCED_CUT for a, b in spans)
            or any(t - 0.05 <= end <= t + FORCED_CUT for t in events)
        )
        stops.append((played, inside, forced))
    return stops


def _history_band(history: float) -> str:
    """What the filler run knew of its tool's latency (the ``history`` dimension)."""
    if history == 0:
        return "no history"
    if history < 0.8:
        return "history 0.1-0.6x (a fast prediction)"
    if history <= 1.25:
        return "history 0.8-1.25x (a good prediction)"
    return "history 1.5-3x (a slow prediction)"


def _dist(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return (
        f"p50 {_ms(statistics.median(values))}  p95 {_ms(_pct(values, 0.95))}  "
        f"max {_ms(max(values))}  (n={len(values)})"
    )


def format_summary(summary: FuzzSummary, result: FuzzResult | None = None) -> str:
    """The human-readable summary, ending with one replay command per failing seed."""
    s = summary
    split = ", ".join(f"{model} {m.runs}" for model, m in s.models.items())
    lines = [
        f"devtools.fuzz: {s.runs} pairs ({s.seeds} seeds{'; ' + split if split else ''}), "
        "livekit_filler vs none, "
        f"{s.concurrency} pairs at a time, {s.wall:.0f} s wall",
        f"  errors (exceptions + ERROR logs, filler run only): {s.errors}"
        + (f" ({s.unattributed_errors} unattributed)" if s.unattributed_errors else "")
        + f"   baseline errors: {s.base_errors}"
        + f"   the same in both runs (not the fillers'): {s.shared_errors}",
        f"  the thread's RuntimeErrors (draining/pausing, circular wait): {s.thread_errors}",
        f"  session closes caused by fillers: {s.filler_closes}   "
        f"(runs that closed early: {s.closes}, drawn closes included)",
        f"  overlaps (agent over agent):      {s.overlaps}",
        f"  runs with a filler in history:    {s.history_leaks}",
        f"  max dead air (tool start->answer): {s.max_dead_air:.2f} s "
        f"(baseline {s.max_dead_air_baseline:.2f} s)",
        f"  reply delay vs baseline (caller quiet): {_dist(s.reply_delays)}   bound {_ms(REPLY_BOUND)}",
        f"  hand-off delay vs baseline (caller quiet): {_dist(s.handoff_delays)}   "
        f"bound {_ms(HANDOFF_BOUND)}",
        f"  agent hand-off delay vs baseline (caller quiet): {_dist(s.transfer_delays)}   "
        f"bound {_ms(HANDOFF_BOUND)}",
        f"  fillers played: {s.fillers_played}, cut: {s.fillers_cut}; "
        f"runs with a filler: {s.runs_with_filler}/{s.runs}; "
        f"runs with caller sounds: {s.runs_with_noise}",
        f"  fillers cut mid-word: {s.fillers_cut_mid_word} where livekit-filler chose the stop"
        f" (+{s.fillers_cut_mid_word_forced} stopped at once for the caller, a hand-off, a"
        f" close or a realtime answer, or by a render breaking off)"
        + (
            ": " + ", ".join(f"{seed} {scenario}" for seed, scenario in s.mid_word)
            if s.mid_word
            else ""
        ),
        f"  fillers cut in their first 0.5 s: {s.fillers_cut_early}"
        f" ({_share(s.fillers_cut_early, s.fillers_played)} of played) where livekit-filler"
        f" chose the stop (+{s.fillers_cut_early_forced} stopped at once)",
        *(
            f"    {band}: {early} of {played} ({_share(early, played)})"
            for band, (early, played) in s.early_by_history.items()
        ),
        f"  dead air, tool start->answer, summed: {s.dead_air_total:.1f} s"
        f" (baseline {s.dead_air_total_baseline:.1f} s)",
        f"  answers held back by the caller (checked against the caller's end): {s.gated}",
        f"  inconclusive (baseline lost the answer): {s.inconclusive}",
        f"  event-loop lag: p99 {s.lag_p99 * 1000:.0f} ms, max {s.lag_max * 1000:.0f} ms",
        f"  slow answer: {s.slow_answer_pairs[0]} pairs slow, {s.slow_answer_pairs[1]} fast; "
        f"filler after the turn {_span(s.slow_filler_starts)} "
        f"(window {SLOW_ANSWER_WINDOW[0]:.1f}-{SLOW_ANSWER_WINDOW[1]:.1f} s); fast answers "
        f"with one: {s.fast_answer_fillers}; first speech after the turn vs baseline "
        f"{_dist(s.first_audio_delays)}",
        f"  busy: {s.busy_pairs} pairs, {len(s.busy_acks)} acknowledgements, "
        f"{_span(s.busy_acks)} after the caller stopped (bound {BUSY_ACK_BOUND:.1f} s)",
    ]
    if s.models:
        lines.append("  per model (delays vs baseline with the caller quiet):")
        for model, m in s.models.items():
            lines.extend(_model_lines(model, m))
    if s.dimensions:
        lines.append("  dimensions: pairs, failed, delays p50/p95 (reply, hand-offs)")
        for tag, (pairs, failed) in s.dimensions.items():
            delays = s.dimension_delays.get(tag, [])
            spread = (
                f"{_ms(statistics.median(delays))} / {_ms(_pct(delays, 0.95))}" if delays else "n/a"
            )
            lines.append(f"    {tag:<26} {pairs:>5} {failed:>3}   {spread}")
    if s.warnings:
        top = ", ".join(f"{n}x {w[:90]!r}" for w, n in s.warnings.most_common(3))
        lines.append(f"  warnings in filler runs: {sum(s.warnings.values())} ({top})")
    if result is not None:
        for text, keys in result.unattributed:
            seeds = " ".join(f"{k[0]}/{k[1]}" for k in keys)
            lines.append(f"  unattributed error: {text} (in flight: {seeds})")
    if s.load_only:
        lines.append(
            f"  failed among concurrent pairs but passed alone (loop stalls): {len(s.load_only)}"
        )
        for o in s.load_only:
            lines.append(
                f"    seed {o.seed} {o.scenario} ({o.model}): {'; '.join(o.problems)[:200]} "
                f"[loop lag {o.max_lag * 1000:.0f} ms during the pair]"
            )
    if s.failed:
        lines.append(f"FAILED: {len(s.failed)} pair(s)")
        for o in s.failed:
            lines.append(
                f"  seed {o.seed} {o.scenario} ({o.model}): {'; '.join(o.problems)[:300]} "
                f"[loop lag {o.max_lag * 1000:.0f} ms during the pair]"
            )
            lines.append(f"    replay: {o.replay}")
    else:
        lines.append("PASSED: every pair within bounds")
    return "\n".join(lines)


def _model_lines(model: str, m: FuzzSummary) -> list[str]:
    """The key figures of one model's pairs (see :attr:`FuzzSummary.models`)."""
    load_only = f" (+{len(m.load_only)} under load only)" if m.load_only else ""
    return [
        f"    {model}: {m.runs} pairs ({m.seeds} seeds), failed {len(m.failed)}{load_only}, "
        f"errors {m.errors}, overlaps {m.overlaps}, filler in history {m.history_leaks}, "
        f"filler closes {m.filler_closes}, inconclusive {m.inconclusive}",
        f"      reply delay:             {_dist(m.reply_delays)}",
        f"      hand-off delay:          {_dist(m.handoff_delays)}",
        f"      agent hand-off delay:    {_dist(m.transfer_delays)}",
        f"      fillers played {m.fillers_played}, cut {m.fillers_cut}; "
        f"runs with a filler {m.runs_with_filler}/{m.runs}; max dead air "
        f"{m.max_dead_air:.2f} s (baseline {m.max_dead_air_baseline:.2f} s)",
        f"      cut mid-word {m.fillers_cut_mid_word} (+{m.fillers_cut_mid_word_forced} at once),"
        f" in the first 0.5 s {m.fillers_cut_early}"
        f" ({_share(m.fillers_cut_early, m.fillers_played)}; +{m.fillers_cut_early_forced}"
        f" at once); dead air summed"
        f" {m.dead_air_total:.1f} s (baseline {m.dead_air_total_baseline:.1f} s)",
    ]


def _span(values: Sequence[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f} s" if values else "n/a"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def format_outcome(outcome: PairOutcome) -> str:
    """Both timelines of one pair, its timings and its verdict (the replay output)."""
    lines = [
        f"seed {outcome.seed} {outcome.scenario}: {outcome.timings}",
        f"model: {outcome.model}   dimensions: {outcome.adversity.describe()}",
    ]
    for title, result, errors in (
        ("none (baseline)", outcome.base, outcome.base_errors),
        ("livekit_filler", outcome.run, outcome.errors),
    ):
        lines.append(f"== {title}")
        if result is not None:
            markers = ", ".join(
                f"{k}={v[0]:.2f}" for k, v in sorted(result.markers.items(), key=lambda kv: kv[1])
            )
            lines.append(f"   markers: {markers}")
            lines.append(format_timeline(result.utterances))
            lines.append(
                f"   reply latency {_opt(reply_latency(result))}, "
                f"hand-off latency {_opt(handoff_latency(result))}, "
                f"agent hand-off latency {_opt(transfer_latency(result))}, "
                f"dead air {_opt(result.dead_air)}"
            )
            for at, reason, error in result.closes:
                lines.append(f"   session closed at {at:.2f}: {reason} {error}".rstrip())
        for e in errors:
            lines.append(f"   !! {e}")
    lines.append(
        f"reply delay {_opt_ms(outcome.reply_delay)}, hand-off delay "
        f"{_opt_ms(outcome.handoff_delay)}, agent hand-off delay "
        f"{_opt_ms(outcome.transfer_delay)}"
    )
    if outcome.adversity.slow_answer != "none":
        lines.append(
            f"slow answer ({outcome.adversity.slow_answer}): filler "
            f"{_opt(outcome.slow_filler_at)} after the turn, first speech after the turn "
            f"{_opt_ms(outcome.first_audio_delay)} vs baseline"
        )
    if outcome.adversity.busy:
        lines.append(f"busy: acknowledgement {_opt(outcome.busy_ack_after)} after the caller")
    for e in outcome.shared_errors:
        lines.append(f"   in both runs (not counted): {e}")
    for w in outcome.warnings:
        lines.append(f"   warning: {w}")
    lines.append(f"loop lag during the pair: max {outcome.max_lag * 1000:.0f} ms")
    if outcome.load_only:
        lines.append("FAILED UNDER LOAD ONLY (passed alone): " + "; ".join(outcome.problems))
    else:
        lines.append("FAILED: " + "; ".join(outcome.problems) if outcome.failed else "PASSED")
    return "\n".join(lines)


def _opt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _opt_ms(value: float | None) -> str:
    return "n/a" if value is None else _ms(value)


# -- CLI -----------------------------------------------------------------------------------


def _cases(
    seeds: Iterable[int], scenarios: Sequence[ScenarioName]
) -> list[tuple[int, ScenarioName]]:
    return [(seed, scenario) for seed in seeds for scenario in scenarios]


def _progress(total: int, out: TextIO) -> Callable[[PairOutcome], None]:
    done = 0
    failed = 0
    started = time.monotonic()

    def report(outcome: PairOutcome) -> None:
        nonlocal done, failed
        done += 1
        failed += outcome.failed
        if outcome.failed:
            out.write(
                f"  FAIL seed {outcome.seed} {outcome.scenario} ({outcome.model}): "
                f"{outcome.problems[0]}\n"
            )
        if done % 50 == 0 or done == total:
            out.write(
                f"  {done}/{total} pairs, {failed} failed, {time.monotonic() - started:.0f} s\n"
            )
        out.flush()

    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fuzzer; print the summary; return 1 if any seed failed."""
    freeze_imports()
    parser = argparse.ArgumentParser(
        prog="python -m devtools.fuzz",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--seeds", type=int, default=200, help="seeds 0..N-1 (200)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (0)")
    parser.add_argument("--seed", type=int, default=None, help="replay one seed, verbosely")
    parser.add_argument(
        "--seed-list", type=str, default=None, help="comma-separated seeds instead of --seeds"
    )
    parser.add_argument("--scenario", choices=SCENARIOS, default=None, help="only this one")
    parser.add_argument(
        "--model",
        choices=MODELS,
        default=None,
        help="only this model, on every seed (--force model=M); by default each seed draws "
        "its own (about one in three: realtime)",
    )
    parser.add_argument("--concurrency", type=int, default=12, help="pairs at a time (12)")
    parser.add_argument(
        "--calibrate", type=int, default=0, help="re-run N passing pairs alone afterwards (0)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the summary here")
    parser.add_argument(
        "--details", type=Path, default=None, help="write both timelines of each failing pair here"
    )
    parser.add_argument("--png", type=Path, default=None, help="with --seed: plot the pair")
    parser.add_argument(
        "--confirm", type=int, default=2, help="re-run each failure alone N times (2)"
    )
    parser.add_argument(
        "--strict", action="store_true", help="also fail on failures that pass alone"
    )
    parser.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="DIM=VALUE",
        help="force a dimension on every pair, e.g. model=realtime, extra_tool=parallel, "
        "raising=extra, handoff=update_agent, close=aclose, tts_fault=hang, "
        "interruptions=filler_off, preemptive_generation=true, speech_gap=0.8, "
        "slow_answer=slow (or fast), busy=true (repeatable)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="no adversarial dimensions: timings only (on the seed's model, or --model's)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log DEBUG to stderr")
    args = parser.parse_args(argv)
    force: dict[str, str] = {}
    for item in args.force:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--force takes DIM=VALUE, got {item!r}")
        force[name.strip()] = value.strip()
    if args.model is not None:
        if force.setdefault(_MODEL, args.model) != args.model:
            parser.error(f"--model {args.model} contradicts --force model={force[_MODEL]}")
    try:
        fuzz_adversity(0, force)
    except ValueError as e:
        parser.error(f"--force: {e}")
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.DEBUG)
        logging.getLogger("livekit_filler").addHandler(handler)
        logging.getLogger("livekit_filler").setLevel(logging.DEBUG)
    scenarios: tuple[ScenarioName, ...] = (args.scenario,) if args.scenario else SCENARIOS
    if args.seed is not None:
        return _replay(args.seed, scenarios, args.png, force=force, plain=args.plain)
    seeds = (
        [int(s) for s in args.seed_list.split(",") if s.strip()]
        if args.seed_list
        else list(range(args.first_seed, args.first_seed + args.seeds))
    )
    cases = _cases(seeds, scenarios)
    sys.stdout.write(
        f"fuzzing {len(cases)} pairs ({len(seeds)} seeds x {len(scenarios)} scenarios), "
        f"{args.concurrency} at a time\n"
    )
    result = asyncio.run(
        fuzz(
            cases,
            concurrency=args.concurrency,
            on_outcome=_progress(len(cases), sys.stdout),
            confirm=args.confirm,
            force=force,
            plain=args.plain,
        )
    )
    summary = summarize(result)
    text = format_summary(summary, result)
    if args.calibrate:
        pairs = asyncio.run(calibrate(result.outcomes, args.calibrate))
        text += "\n" + format_calibration(pairs)
    sys.stdout.write(text + "\n")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    if args.details is not None:
        args.details.parent.mkdir(parents=True, exist_ok=True)
        listed = [*summary.failed, *summary.load_only]
        args.details.write_text("\n\n".join(format_outcome(o) for o in listed) + "\n")
    strict_fail = args.strict and bool(summary.load_only)
    return 1 if summary.failed or summary.errors or strict_fail else 0


def format_calibration(pairs: Sequence[tuple[PairOutcome, PairOutcome]]) -> str:
    """How far each re-run-alone pair's delays moved from the concurrent run's."""
    moves: list[float] = []
    for concurrent, alone in pairs:
        for a, b in (
            (concurrent.reply_delay, alone.reply_delay),
            (concurrent.handoff_delay, alone.handoff_delay),
        ):
            if a is not None and b is not None:
                moves.append(abs(a - b))
    if not moves:
        return "calibration: nothing to compare"
    failed = sum(alone.failed for _, alone in pairs)
    return (
        f"calibration: {len(pairs)} pairs re-run alone; delay vs concurrent run moved "
        f"p50 {statistics.median(moves) * 1000:.0f} ms, max {max(moves) * 1000:.0f} ms; "
        f"{failed} failed alone"
    )


def _replay(
    seed: int,
    scenarios: Sequence[ScenarioName],
    png: Path | None,
    *,
    force: Mapping[str, str] | None = None,
    plain: bool = False,
) -> int:
    async def go() -> list[PairOutcome]:
        outcomes: list[PairOutcome] = []
        with capture_logs() as capture:
            for scenario in scenarios:
                capture.unattributed.clear()
                outcome = await run_pair(seed, scenario, force=force, plain=plain)
                # alone, unattributed records belong to the pair that was running
                extra = [text for _, text, is_error in capture.unattributed if is_error]
                outcome.errors.extend(extra)
                outcome.problems.extend(f"error: {e}" for e in extra)
                outcomes.append(outcome)
        return outcomes

    outcomes = asyncio.run(go())
    for outcome in outcomes:
        sys.stdout.write(format_outcome(outcome) + "\n\n")
    first = outcomes[0]
    sys.stdout.write(f"replay: {first.replay.replace(f' --scenario {first.scenario}', '')}\n")
    if png is not None:
        from devtools.plot import plot_runs

        results = [r for o in outcomes for r in (o.base, o.run) if r is not None]
        plot_runs(results, png, title=f"devtools.fuzz seed {seed}")
        sys.stdout.write(f"wrote {png}\n")
    return 1 if any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
