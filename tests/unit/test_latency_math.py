"""The latency model's math at its edges: each comparison and sum pinned where it flips.

(The model's persistence, load/save/merge, is tested in test_latency.py.)
"""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import pytest

from livekit_filler import latency, reply_timer
from livekit_filler.latency import (
    EARLY,
    LEAD_MARGIN,
    MAX_LEAD,
    SECONDS_PER_CHAR,
    LatencyModel,
    StartPlan,
    estimate_duration,
    fit,
    plan_start,
    quantile,
)
from livekit_filler.reply_timer import ReplyTimer


def _model(tool: str, *latencies: float, window: int = 20) -> LatencyModel:
    model = LatencyModel(window=window)
    for seconds in latencies:
        model.record(tool, seconds)
    return model


# -- quantile ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 0.0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 1.0, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 0.25, 1.75),
        ([4.0, 1.0, 3.0, 2.0], 0.75, 3.25),  # unsorted input
        ([1.0, 2.0, 3.0, 4.0], -1.0, 1.0),  # clamped below
        ([1.0, 2.0, 3.0, 4.0], 2.0, 4.0),  # clamped above
        ([10.0, 20.0], 0.5, 15.0),
        ([2.0], 0.0, 2.0),
        ([2.0], 1.0, 2.0),
    ],
)
def test_quantile_at_its_ends_and_between(values: list[float], q: float, expected: float) -> None:
    assert quantile(values, q) == pytest.approx(expected)


def test_quantile_of_nothing_is_nan() -> None:
    assert math.isnan(quantile([], 0.5))


# -- record, typical, worst, remaining ----------------------------------------------------------


def test_a_zero_latency_counts_and_a_negative_one_does_not() -> None:
    assert _model("t", 0.0).samples("t") == [0.0]
    assert _model("t", -0.001).samples("t") == []
    assert "t" in _model("t", 0.0) and "t" not in _model("t", -1.0)


def test_worst_is_the_p90_by_default_and_any_quantile_on_request() -> None:
    model = _model("t", *[float(i) for i in range(1, 11)])
    assert model.worst("t") == pytest.approx(quantile([float(i) for i in range(1, 11)], 0.9))
    assert model.worst("t", 0.5) == pytest.approx(5.5)
    assert model.typical("t") == pytest.approx(5.5)


def test_remaining_counts_only_calls_strictly_longer_than_the_elapsed_time() -> None:
    model = _model("t", 1.0, 2.0, 3.0)
    # at exactly 2 s, the 2 s call has ended: only the 3 s call is left (1 s more)
    assert model.remaining("t", 2.0) == pytest.approx(1.0)
    assert model.remaining("t", 1.5) == pytest.approx((0.5 + 1.5) / 2)
    assert model.remaining("t", 3.0) is None  # at the longest call: an overrun
    assert model.remaining("t", 0.0, q=0.0) == pytest.approx(1.0)
    assert model.remaining("t", 0.0, q=1.0) == pytest.approx(3.0)


def test_the_least_recently_called_tool_is_forgotten_first() -> None:
    model = LatencyModel()
    for i in range(latency.MAX_TOOLS):
        model.record(f"tool{i}", 1.0)
    model.record("tool0", 1.0)  # used again: now the most recent
    model.record("new", 1.0)
    assert "tool0" in model and "tool1" not in model and "new" in model
    assert "tool2" in model


def test_a_window_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        LatencyModel(window=0)
    assert LatencyModel(window=1).window == 1


# -- the answer lead ----------------------------------------------------------------------------


def test_a_lead_at_the_bounds_is_kept_and_past_them_is_not() -> None:
    model = LatencyModel()
    model.record_lead(0.0)
    model.record_lead(MAX_LEAD)
    model.record_lead(MAX_LEAD + 0.001)
    model.record_lead(-0.001)
    assert model.leads() == [0.0, MAX_LEAD]


def test_the_answer_lead_takes_the_margin_off() -> None:
    model = LatencyModel()
    model.record_lead(0.5)
    assert model.answer_lead() == pytest.approx(0.5 - LEAD_MARGIN)
    model = LatencyModel()
    model.record_lead(LEAD_MARGIN)
    assert model.answer_lead() == 0.0


# -- plan_start ----------------------------------------------------------------------------------


def _plan(typical: float | None, worst: float | None, **kw: float) -> StartPlan:
    return plan_start(
        typical=typical,
        worst=worst,
        delay=kw.get("delay", 1.0),
        grace=kw.get("grace", 0.15),
        fast_below=kw.get("fast_below", 0.5),
        slow_after=kw.get("slow_after", 1.0),
    )


def test_a_tool_whose_p90_equals_fast_below_is_fast() -> None:
    assert _plan(0.3, 0.5).kind == "fast"
    assert _plan(0.3, 0.51).kind == "usual"
    assert _plan(0.3, 0.6, delay=1.0).dwell == 1.0


def test_a_fast_tool_waits_twice_its_p90_when_that_is_longer_than_the_delay() -> None:
    assert _plan(0.3, 0.5, delay=0.2) == StartPlan(1.0, "fast")
    assert _plan(0.3, 0.4, delay=0.2) == StartPlan(0.8, "fast")


def test_a_tool_whose_median_equals_slow_after_is_slow() -> None:
    assert _plan(1.0, 2.0) == StartPlan(0.15, "slow")
    assert _plan(0.99, 2.0) == StartPlan(1.0, "usual")
    assert _plan(1.0, 2.0, grace=2.0) == StartPlan(1.0, "slow")  # never later than the delay


def test_a_plan_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        _plan(1.0, 2.0).dwell = 0.0  # type: ignore[misc]


def test_a_tool_known_by_one_quantile_only_is_unknown() -> None:
    assert _plan(1.0, None) == StartPlan(1.0, "unknown")
    assert _plan(None, 1.0) == StartPlan(1.0, "unknown")


# -- fit -----------------------------------------------------------------------------------------


_LENGTHS = {"short": 0.6, "medium": 1.0, "long": 2.0}


def test_a_phrase_ending_exactly_at_the_answer_plus_the_finish_window_fits() -> None:
    assert fit(_LENGTHS, _LENGTHS.__getitem__, 0.8, finish_within=0.2) == ["short", "medium"]
    assert fit(_LENGTHS, _LENGTHS.__getitem__, 0.79, finish_within=0.2) == ["short"]


def test_a_call_ending_exactly_at_early_may_still_get_a_filler() -> None:
    assert fit(_LENGTHS, _LENGTHS.__getitem__, EARLY, finish_within=0.1) == ["short"]
    assert fit(_LENGTHS, _LENGTHS.__getitem__, 1.2, finish_within=0.0, soonest=EARLY) == [
        "short",
        "medium",
    ]
    # soonest, when given, decides alone: a long remaining time does not override it
    assert fit(_LENGTHS, _LENGTHS.__getitem__, 5.0, finish_within=0.0, soonest=0.1) is None


def test_the_shortest_plays_when_exactly_half_of_it_would() -> None:
    lengths = {"a": 1.2, "b": 3.0}
    assert fit(lengths, lengths.__getitem__, 0.6, finish_within=0.0) == ["a"]
    assert fit(lengths, lengths.__getitem__, 0.59, finish_within=0.0) is None


def test_no_candidates_is_an_empty_list_and_duplicates_are_dropped() -> None:
    assert fit([], _LENGTHS.__getitem__, 1.0, finish_within=0.0) == []
    assert fit(["short", "short"], _LENGTHS.__getitem__, 1.0, finish_within=0.0) == ["short"]


# -- estimate_duration and the reply timer --------------------------------------------------------


def test_the_estimate_counts_the_stripped_text_at_the_given_pace() -> None:
    assert estimate_duration("  ab  ") == pytest.approx(2 * SECONDS_PER_CHAR)
    assert estimate_duration("abcd", 0.5) == pytest.approx(2.0)


def test_a_reply_timed_exactly_at_the_held_back_edges_counts_half(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reply_timer, "HELD_BACK", 0.25)  # binary-exact sums at the edges
    cases = [  # (ready, filler ended, reply started, lead recorded)
        (8.25, 8.25, 8.5, 0.125),  # ready == ended, and now == ended + HELD_BACK: halved
        (8.25, 8.5, 8.5, 0.125),  # the filler ended as the reply started: halved
        (8.375, 8.3125, 8.5, 0.125),  # it ended before the tool returned: whole
        (8.25, 8.5 + 2**-10, 8.5, 0.25),  # it ended after the reply started: whole
        (8.0, 8.125, 8.5, 0.5),  # the reply came too long after it ended: whole
    ]
    for ready, ended, now, lead in cases:
        timer = ReplyTimer(LatencyModel())
        timer.answer_ready(ready)
        assert timer.reply_started(now, filler_ended_at=ended) == lead, (ready, ended, now)


def test_a_reply_at_the_very_moment_of_the_answer_is_a_zero_lead() -> None:
    model = LatencyModel()
    timer = ReplyTimer(model)
    timer.answer_ready(5.0)
    assert timer.reply_started(5.0, None) == 0.0
    assert model.leads() == [0.0]
    timer.answer_ready(5.0)
    assert timer.reply_started(4.9, None) is None  # earlier than ready: not its reply
    assert model.leads() == [0.0]
