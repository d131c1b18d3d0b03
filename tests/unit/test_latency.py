"""The tool latency model on scripted histories, its persistence, and the timing decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from livekit_filler.disk_writer import flush
from livekit_filler.latency import (
    LEAD_MARGIN,
    LatencyModel,
    StartPlan,
    estimate_duration,
    fit,
    plan_start,
    quantile,
    shared_model,
)
from livekit_filler.latency_files import FILE_NAME, default_scope, history_path
from livekit_filler.reply_timer import HELD_BACK, ReplyTimer


def _model(tool: str, *latencies: float, **kwargs: object) -> LatencyModel:
    model = LatencyModel(**kwargs)  # type: ignore[arg-type]
    for seconds in latencies:
        model.record(tool, seconds)
    return model


def test_an_unknown_tool_has_no_prediction() -> None:
    model = _model("slow", 2.0)
    assert "other" not in model
    assert model.typical("other") is None and model.worst("other") is None
    assert model.remaining("other", 0.0) is None


def test_the_median_ignores_an_outlier() -> None:
    model = _model("lookup", 2.0, 2.1, 1.9, 30.0, 2.0)
    assert model.typical("lookup") == pytest.approx(2.0)
    # 0.5 s in: the calls that ran longer than that are still typical
    assert model.remaining("lookup", 0.5) == pytest.approx(1.5)


def test_only_the_recent_calls_count() -> None:
    model = _model("lookup", *([5.0] * 10), *([1.0] * 10), window=10)
    assert model.samples("lookup") == [1.0] * 10
    assert model.typical("lookup") == pytest.approx(1.0)


def test_remaining_is_conditional_on_the_time_already_run() -> None:
    model = _model("lookup", 0.3, 0.4, 2.0, 2.2, 2.4)
    # at 1 s the fast calls are ruled out: the slow ones predict about 1.2 s more
    assert model.remaining("lookup", 1.0) == pytest.approx(1.2)
    # past every call it ever made: an overrun, nothing is known
    assert model.remaining("lookup", 3.0) is None


def test_bad_samples_are_ignored() -> None:
    model = _model("lookup", float("nan"), -1.0, float("inf"), 1.0)
    assert model.samples("lookup") == [1.0]


def test_forget_makes_a_tool_unknown_again() -> None:
    model = _model("lookup", 1.0)
    model.forget("lookup")
    assert model.typical("lookup") is None


def test_quantile_interpolates() -> None:
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert quantile([3.0], 0.9) == 3.0
    assert quantile([], 0.5) != quantile([], 0.5)  # NaN


def test_persistence_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cache" / FILE_NAME
    model = _model("get_programs", 2.5, 2.7, path=path)
    model.record("check_membership", 0.2)
    assert model.save()
    data = json.loads(path.read_text())
    assert data["format"] == 1 and set(data["tools"]) == {"get_programs", "check_membership"}
    assert not list(path.parent.glob("*.tmp"))  # written to a temporary file, then renamed
    fresh = LatencyModel(path=path)
    assert fresh.load() == 2
    assert fresh.samples("get_programs") == [2.5, 2.7]
    assert fresh.typical("check_membership") == pytest.approx(0.2)


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        '{"format": 99, "tools": {"a": [1]}}',
        '{"format": 1, "tools": []}',
        '{"format": 1, "tools": {"a": "x", "b": [true, "2", -1, 1e999], "c": [0.5]}}',
    ],
)
def test_a_corrupt_file_is_an_empty_history(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / FILE_NAME
    path.write_text(content)
    model = LatencyModel(path=path)
    model.load()
    assert "a" not in model and "b" not in model
    # whatever it held, the model still learns and writes a good file over it
    model.record("a", 1.0)
    assert model.save()
    assert LatencyModel(path=path).load() >= 1


def test_a_missing_file_or_directory_is_fine(tmp_path: Path) -> None:
    assert LatencyModel(path=tmp_path / "none" / FILE_NAME).load() == 0
    blocked = tmp_path / "file"
    blocked.write_text("")
    # the directory is a file: saving fails quietly (one warning), the model still works
    model = _model("a", 1.0, path=blocked / FILE_NAME)
    assert not model.save()
    assert model.typical("a") == 1.0


def test_the_shared_model_is_one_per_directory_and_reads_the_file(tmp_path: Path) -> None:
    first = shared_model(tmp_path / "one")
    assert shared_model(tmp_path / "one") is first
    assert shared_model(tmp_path / "two") is not first
    seeded = LatencyModel(path=history_path(tmp_path / "four", default_scope()))
    seeded.record("lookup", 1.5)
    seeded.save()
    model = shared_model(tmp_path / "four")
    assert flush()  # read in the background writer
    assert model.typical("lookup") == 1.5
    # another project's history in the same directory is another file
    assert shared_model(tmp_path / "four", "/srv/other-agent").typical("lookup") is None


# -- the start decision ----------------------------------------------------------------------


def _plan(
    typical: float | None, worst: float | None, *, delay: float = 1.0, **kw: Any
) -> StartPlan:
    return plan_start(
        typical=typical,
        worst=worst,
        delay=delay,
        grace=kw.get("grace", 0.15),
        fast_below=kw.get("fast_below", 0.5),
        slow_after=kw.get("slow_after", 1.0),
        adaptive=kw.get("adaptive", True),
    )


def test_a_slow_tool_speaks_after_the_grace() -> None:
    plan = _plan(2.5, 3.0)
    assert (plan.kind, plan.dwell) == ("slow", 0.15)


def test_a_fast_tool_waits_until_it_overruns() -> None:
    plan = _plan(0.2, 0.4)
    assert plan.kind == "fast" and plan.dwell == 1.0  # delay beats twice its p90
    plan = _plan(0.2, 0.45, delay=0.3)
    assert plan.dwell == pytest.approx(0.9)  # it never got a filler in its usual time


def test_an_unknown_or_usual_tool_uses_the_delay() -> None:
    assert _plan(None, None).dwell == 1.0
    assert _plan(0.7, 0.9).kind == "usual"


def test_fixed_timing_ignores_the_history() -> None:
    plan = _plan(5.0, 6.0, adaptive=False)
    assert (plan.kind, plan.dwell) == ("fixed", 1.0)


def test_the_grace_is_never_longer_than_the_delay() -> None:
    assert _plan(5.0, 6.0, delay=0.1).dwell == 0.1


# -- fitting phrases to the wait ---------------------------------------------------------------

_LENGTHS = {"short": 0.6, "medium": 1.0, "long": 2.0}


def test_phrases_that_end_before_the_answer_are_chosen() -> None:
    assert fit(_LENGTHS, _LENGTHS.__getitem__, 1.2, finish_within=0.0) == ["short", "medium"]
    # finish_within: a phrase ending that little after the answer may finish
    assert fit(_LENGTHS, _LENGTHS.__getitem__, 1.8, finish_within=0.3) == [
        "short",
        "medium",
        "long",
    ]


def test_with_no_prediction_every_phrase_may_play() -> None:
    assert fit(_LENGTHS, _LENGTHS.__getitem__, None, finish_within=0.3) == list(_LENGTHS)


def test_the_shortest_plays_when_none_fits_but_at_least_half_of_it_would() -> None:
    assert fit(_LENGTHS, _LENGTHS.__getitem__, 0.55, finish_within=0.0) == ["short"]


def test_nothing_starts_that_would_be_cut_in_its_first_half() -> None:
    lengths = {"long": 2.0, "longer": 3.0}
    assert fit(lengths, lengths.__getitem__, 0.9, finish_within=0.0) is None


def test_nothing_starts_when_the_call_may_well_end_within_half_a_second() -> None:
    assert fit(_LENGTHS, _LENGTHS.__getitem__, 0.45, finish_within=0.3) is None
    # the median says 1.2 s more, but a fifth of such calls end within 0.3 s
    assert fit(_LENGTHS, _LENGTHS.__getitem__, 1.2, finish_within=0.0, soonest=0.3) is None


def test_estimated_durations_grow_with_the_text() -> None:
    assert estimate_duration("One moment.") == pytest.approx(11 * 0.065)
    assert estimate_duration("  ") == 0.0


# -- the answer lead: how long a reply takes to sound after its tool returned ----------------


def test_the_answer_lead_is_a_low_quantile_of_the_recent_leads_minus_a_margin() -> None:
    model = LatencyModel(window=5)
    assert model.answer_lead() is None  # no reply timed yet: the caller's default applies
    for lead in (0.5, 0.6, 0.55, 0.45, 2.5):  # one slow reply barely moves it
        model.record_lead(lead)
    assert model.answer_lead() == pytest.approx(quantile(model.leads(), 0.2) - LEAD_MARGIN)
    assert 0.4 < (model.answer_lead() or 0) < 0.5
    for lead in (0.1, 0.1, 0.1, 0.1, 0.1):  # the LLM got faster: only recent replies count
        model.record_lead(lead)
    assert model.answer_lead() == pytest.approx(0.1 - LEAD_MARGIN)
    model.record_lead(-1.0)
    model.record_lead(float("nan"))
    model.record_lead(30.0)  # not a reply being prepared (the user's next turn, say)
    assert model.leads() == [0.1] * 5


def test_a_tiny_lead_is_never_negative() -> None:
    model = LatencyModel()
    model.record_lead(0.01)
    assert model.answer_lead() == 0.0


def test_answer_leads_persist_with_the_tool_latencies(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    model = LatencyModel(path=path)
    model.record_lead(0.4)
    model.record_lead(0.5)
    assert model.save()
    fresh = LatencyModel(path=path)
    fresh.load()
    assert fresh.leads() == [0.4, 0.5]
    # an older file without leads, and malformed leads, read as none
    path.write_text('{"format": 1, "tools": {"a": [1.0]}, "leads": ["x", -2, 99]}')
    older = LatencyModel(path=path)
    assert older.load() == 1 and older.leads() == []


def test_a_reply_timer_times_the_reply_that_follows_a_tool() -> None:
    model = LatencyModel()
    timer = ReplyTimer(model)
    assert timer.reply_started(5.0, None) is None  # nothing was ready: not a tool's reply
    timer.answer_ready(10.0)
    assert timer.reply_started(10.5, filler_ended_at=10.2) == pytest.approx(0.5)
    assert timer.reply_started(11.0, None) is None  # timed once
    assert model.leads() == [pytest.approx(0.5)]


def test_a_reply_that_may_have_waited_for_a_filler_counts_half() -> None:
    model = LatencyModel()
    timer = ReplyTimer(model)
    timer.answer_ready(10.0)
    # the filler ended 10 ms before the reply sounded: the reply may have waited for it
    assert timer.reply_started(10.4, filler_ended_at=10.4 - HELD_BACK / 3) == pytest.approx(0.2)
    # a filler that ended before the tool returned held nothing back
    timer.answer_ready(20.0)
    assert timer.reply_started(20.3, filler_ended_at=19.99) == pytest.approx(0.3)


def test_another_tool_call_or_the_user_voids_the_timing() -> None:
    model = LatencyModel()
    timer = ReplyTimer(model)
    timer.answer_ready(1.0)
    timer.void()
    assert timer.reply_started(3.0, None) is None
    assert model.leads() == []
