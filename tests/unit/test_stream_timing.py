"""A stream's timing (stream_timing.py): its dwell lengths and the phrases that fit the
predicted wait, on plain numbers (a fake stream, a hand-set clock, no session)."""

from __future__ import annotations

from dataclasses import dataclass, field

from livekit import rtc

from livekit_filler.dwell import Dwell
from livekit_filler.latency import LatencyModel
from livekit_filler.options import FillerOptions, Pool
from livekit_filler.stream_timing import StreamTiming, TimedCall

SHORT, LONG = "One moment.", "Let me look that up for you in our records."
DURATIONS = {SHORT: 0.8, LONG: 3.0}


@dataclass
class _Call:
    tool_name: str = "lookup"
    started_at: float | None = 100.0


@dataclass
class _Stream:
    """Stands in for a FillerStream: what the timing reads of it."""

    options: FillerOptions
    calls: list[TimedCall] = field(default_factory=lambda: [_Call()])
    started_at: float = 100.0
    count: int = 0
    clip: rtc.AudioFrame | None = None
    contextual_text: str | None = None
    arguments: dict[str, object] = field(default_factory=dict)


def _options(**changes: object) -> FillerOptions:
    values: dict[str, object] = {
        "delay": 1.5,
        "interval": 4.0,
        "max_count": 3,
        "pool": Pool((SHORT, LONG), (SHORT,)),
        "timing": "adaptive",
        "grace": 0.2,
        "slow_after": 1.0,
        "fast_below": 0.5,
    }
    values.update(changes)
    return FillerOptions(**values)  # type: ignore[arg-type]


def _timing(
    stream: _Stream, *, samples: tuple[float, ...] = (), now: float = 100.0, anchor: float = 100.0
) -> tuple[StreamTiming, Dwell, list[float]]:
    latency = LatencyModel()
    for seconds in samples:
        latency.record("lookup", seconds)
    dwell = Dwell(anchor=anchor)
    clock = [now]
    timing = StreamTiming(
        stream,
        latency=latency,
        dwell=dwell,
        clock=lambda: clock[0],
        duration_of=DURATIONS.get,
        answer_window=lambda finish_within: finish_within,
        language=lambda: None,
    )
    return timing, dwell, clock


def test_fixed_timing_dwells_delay_then_interval_and_predicts_nothing() -> None:
    stream = _Stream(_options(timing="fixed"))
    timing, _, _ = _timing(stream, samples=(5.0,) * 5)
    assert not timing.adaptive
    assert timing.dwell_length() == 1.5
    assert timing.due() == 101.5
    assert timing.remaining() is None and timing.fitting_pool() is None
    stream.count = 1
    assert timing.dwell_length() == 4.0


def test_an_unknown_tool_waits_delay_and_a_slow_one_only_grace() -> None:
    stream = _Stream(_options())
    unknown, _, _ = _timing(stream)
    assert unknown.remaining() is None and unknown.dwell_length() == 1.5
    slow, _, _ = _timing(stream, samples=(5.0,) * 5)
    assert slow.dwell_length() == 0.2
    assert slow.due() == 100.2


def test_nothing_is_due_while_the_caller_holds_the_dwell() -> None:
    timing, dwell, clock = _timing(_Stream(_options()), samples=(5.0,) * 5)
    dwell.hold()
    clock[0] = 1e9
    assert timing.due() is None and not timing.dwell_elapsed()
    dwell.restart(200.0)
    clock[0] = 200.1
    assert not timing.dwell_elapsed()
    clock[0] = 200.2
    assert timing.dwell_elapsed()


def test_the_phrases_that_fit_the_predicted_wait() -> None:
    stream = _Stream(_options())
    timing, _, clock = _timing(stream, samples=(5.0,) * 5, now=101.0)
    assert timing.remaining() == 4.0
    assert timing.fitting_pool() == Pool((SHORT, LONG))  # both end before the answer
    clock[0] = 103.0  # 2 s left: the long phrase would be cut, the short one fits
    assert timing.fitting_pool() == Pool((SHORT,))
    clock[0] = 104.7  # 0.3 s left: likely to end before anything could play
    assert timing.fitting_pool() is False


def test_a_voice_whose_pace_is_unknown_picks_as_usual() -> None:
    stream = _Stream(_options(pool=Pool(("Not rendered yet.",))))
    timing, _, _ = _timing(stream, samples=(5.0,) * 5, now=103.0)
    assert timing.fitting_pool() is None


def test_a_followup_dwell_ends_the_longest_followup_before_the_reply() -> None:
    stream = _Stream(_options(), count=1)
    # 5 s tool, 1 s in, the last filler ended at 101: 4 s + 0.3 s window - 0.1 s slack
    # - 0.8 s (the longest follow-up) = 3.4 s
    timing, _, _ = _timing(stream, samples=(5.0,) * 5, now=101.0, anchor=101.0)
    assert abs(timing.dwell_length() - 3.4) < 1e-9
    assert timing.dwell_length() <= stream.options.interval
