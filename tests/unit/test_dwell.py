"""A stream's dwell (dwell.py): its phases and transitions, refusals, and its lengths, on
plain numbers (no clock, no sleeping)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import livekit_filler
from livekit_filler.dwell import FINISH_SLACK, Dwell, DwellError, DwellPhase


def _phase(dwell: Dwell) -> DwellPhase:
    """The phase now (read through a call: mypy would keep an earlier narrowing)."""
    return dwell.phase


def test_a_stream_starts_counting_from_its_first_call() -> None:
    dwell = Dwell(anchor=100.0)
    assert _phase(dwell) is DwellPhase.COUNTING
    assert dwell.due(1.5) == 101.5
    assert not dwell.elapsed(101.4, 1.5)
    assert dwell.elapsed(101.5, 1.5)


def test_the_caller_holds_it_and_nothing_is_due_until_it_restarts() -> None:
    dwell = Dwell(anchor=100.0)
    dwell.hold()
    assert _phase(dwell) is DwellPhase.HELD and dwell.anchor is None
    assert dwell.due(1.5) is None
    assert not dwell.elapsed(1e9, 0.0)  # never, however long
    dwell.hold()  # the caller speaks again: still held
    assert _phase(dwell) is DwellPhase.HELD
    dwell.restart(130.0)  # the caller stopped: a new silence
    assert _phase(dwell) is DwellPhase.COUNTING
    assert dwell.due(1.5) == 131.5


def test_a_restart_counts_the_silence_afresh() -> None:
    dwell = Dwell(anchor=100.0)
    dwell.restart(100.8)  # a filler ended, or real speech
    assert dwell.due(1.5) == pytest.approx(102.3)
    dwell.restart(100.8)  # the same instant twice is fine
    assert dwell.anchor == 100.8


def test_a_deferral_restarts_and_holds_fillers_back_until_it_passes() -> None:
    dwell = Dwell(anchor=100.0)
    dwell.defer(105.0, 101.0)
    assert _phase(dwell) is DwellPhase.COUNTING and dwell.anchor == 101.0
    assert dwell.not_before == 105.0
    assert dwell.due(1.5) == 105.0  # the deferral is later than the dwell
    assert dwell.due(6.0) == 107.0  # the dwell is later than the deferral
    dwell.restart(110.0)  # a past deferral no longer matters
    assert dwell.due(1.5) == 111.5
    dwell.hold()
    assert dwell.due(1.5) is None  # held beats a deferral


def test_time_never_runs_back() -> None:
    dwell = Dwell(anchor=100.0)
    with pytest.raises(DwellError, match="before its anchor"):
        dwell.restart(99.0)
    assert dwell.anchor == 100.0  # refused: untouched
    with pytest.raises(DwellError, match="in the past"):
        dwell.defer(100.5, 101.0)
    assert dwell.anchor == 100.0 and dwell.not_before is None
    dwell.hold()
    dwell.restart(50.0)  # from HELD there is no anchor to run back from
    assert dwell.anchor == 50.0


def test_the_first_filler_keeps_its_plan_unless_the_dwell_restarted_after_the_call() -> None:
    started = 100.0
    assert Dwell(anchor=100.0).first_length(2.0, grace=0.5, started=started) == 2.0
    assert Dwell(anchor=99.0).first_length(2.0, grace=0.5, started=started) == 2.0
    held = Dwell(anchor=None)
    assert held.first_length(2.0, grace=0.5, started=started) == 2.0
    # restarted 0.5 s into the call: the plan still counts from the call's start
    assert Dwell(anchor=100.5).first_length(2.0, grace=0.5, started=started) == 1.5
    # restarted late: never sooner than grace after the restart
    assert Dwell(anchor=101.9).first_length(2.0, grace=0.5, started=started) == 0.5


def test_a_followup_is_timed_to_end_before_the_reply() -> None:
    dwell = Dwell(anchor=100.0)
    kw = {"interval": 4.0, "grace": 0.5, "window": 0.3}
    # predicted done in 2.0 s from now (100.5): due 2.5 s after the anchor, plus the window
    length = dwell.followup_length(2.0, now=100.5, longest=1.0, **kw)
    assert length == pytest.approx(2.0 + 0.5 + 0.3 - FINISH_SLACK - 1.0)
    # never later than interval, never sooner than grace
    assert dwell.followup_length(30.0, now=100.5, longest=1.0, **kw) == 4.0
    assert dwell.followup_length(0.1, now=100.5, longest=3.0, **kw) == 0.5
    dwell.hold()
    assert dwell.followup_length(2.0, now=100.5, longest=1.0, **kw) == 4.0  # held: interval


def test_the_state_models_are_pure() -> None:
    """dwell.py and playing.py read no session: no LiveKit session machinery, nothing of the
    package beyond plain data (the event names, pauses)."""
    package = Path(livekit_filler.__file__).parent
    allowed: dict[str, set[str]] = {"dwell": set(), "playing": {"events", "pauses"}}
    for name, inside in allowed.items():
        modules: set[str] = set()
        for node in ast.walk(ast.parse((package / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom):
                modules.add("." * node.level + (node.module or ""))
            elif isinstance(node, ast.Import):
                modules.update(alias.name for alias in node.names)
        assert {m[1:] for m in modules if m.startswith(".")} == inside, name
        assert not any(m.startswith(("livekit.agents", "livekit_filler")) for m in modules), name
