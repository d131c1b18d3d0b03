"""The floor decision: every condition, without a session."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from livekit_filler.floor import (
    MAX_SPEECH_GAP,
    Floor,
    Verdict,
    may_keep_playing,
    may_prerender,
    may_start,
)

FREE = Floor()


def test_a_free_floor_lets_a_filler_start_and_keep_playing() -> None:
    assert may_start(FREE) is Verdict.SPEAK
    assert may_keep_playing(FREE, allow_interruptions=True) is Verdict.SPEAK


@pytest.mark.parametrize(
    ("change", "verdict"),
    [
        ({"open": False}, Verdict.CLOSED),
        ({"running": False}, Verdict.NO_ACTIVITY),
        ({"paused": True}, Verdict.PAUSED),
        ({"owner_active": False}, Verdict.HANDOFF),
        ({"owner_current": False}, Verdict.HANDOFF),
        ({"user_speaking": True}, Verdict.USER_SPEAKING),
        ({"busy": True}, Verdict.BUSY),
        ({"tool_interrupted": True}, Verdict.TOOL_INTERRUPTED),
        ({"speech_gap": MAX_SPEECH_GAP + 0.01}, Verdict.SPEECH_GAP),
        ({"tts_down": True}, Verdict.TTS_DOWN),
        ({"unasked_task": True}, Verdict.HANDOFF),
    ],
)
def test_each_condition_alone_stops_a_filler_from_starting(
    change: dict[str, bool], verdict: Verdict
) -> None:
    assert may_start(replace(FREE, **change)) is verdict


def test_the_first_reason_wins_in_a_fixed_order() -> None:
    everything_wrong = Floor(
        open=False,
        running=False,
        paused=True,
        owner_active=False,
        owner_current=False,
        user_speaking=True,
        busy=True,
        tool_interrupted=True,
        speech_gap=1.0,
    )
    assert may_start(everything_wrong) is Verdict.CLOSED
    assert may_start(replace(everything_wrong, open=True)) is Verdict.NO_ACTIVITY
    assert may_start(replace(FREE, busy=True, user_speaking=True)) is Verdict.USER_SPEAKING


@pytest.mark.parametrize(
    ("change", "interruptible", "not_interruptible"),
    [
        ({"open": False}, Verdict.CLOSED, Verdict.CLOSED),
        ({"owner_current": False}, Verdict.HANDOFF, Verdict.HANDOFF),
        ({"user_speaking": True}, Verdict.USER_SPEAKING, Verdict.SPEAK),
        # a playing filler is itself what makes the floor busy; a pause lets it play out
        ({"busy": True}, Verdict.SPEAK, Verdict.SPEAK),
        ({"paused": True}, Verdict.SPEAK, Verdict.SPEAK),
        ({"owner_active": False}, Verdict.SPEAK, Verdict.SPEAK),
    ],
)
def test_what_stops_a_playing_filler(
    change: dict[str, bool], interruptible: Verdict, not_interruptible: Verdict
) -> None:
    floor = replace(FREE, sounding=True, **change)
    assert may_keep_playing(floor, allow_interruptions=True) is interruptible
    assert may_keep_playing(floor, allow_interruptions=False) is not_interruptible


def test_the_caller_stops_a_non_interruptible_filler_only_before_it_sounds() -> None:
    caller = replace(FREE, user_speaking=True)
    assert may_keep_playing(caller, allow_interruptions=False) is Verdict.USER_SPEAKING
    assert may_keep_playing(replace(caller, sounding=True), allow_interruptions=False) is (
        Verdict.SPEAK
    )
    assert may_keep_playing(replace(caller, sounding=True), allow_interruptions=True) is (
        Verdict.USER_SPEAKING
    )
    assert may_keep_playing(FREE, allow_interruptions=False) is Verdict.SPEAK  # nobody talks


def test_a_message_after_a_cut_ignores_only_the_busy_floor() -> None:
    busy = replace(FREE, busy=True)
    assert may_start(busy) is Verdict.BUSY
    assert may_start(busy, after_cut=True) is Verdict.SPEAK
    for change in ({"user_speaking": True}, {"paused": True}, {"tts_down": True}):
        assert may_start(replace(busy, **change), after_cut=True) is may_start(
            replace(FREE, **change)
        )


def test_a_small_speech_gap_lets_fillers_play_and_never_stops_a_playing_one() -> None:
    assert may_start(replace(FREE, speech_gap=MAX_SPEECH_GAP)) is Verdict.SPEAK
    playing = replace(FREE, speech_gap=5.0)
    assert may_keep_playing(playing, allow_interruptions=True) is Verdict.SPEAK


def test_the_default_floor_is_free_quiet_and_not_sounding() -> None:
    floor = Floor()
    assert may_start(floor) is Verdict.SPEAK
    assert may_prerender(floor)
    assert not floor.sounding  # so the caller stops a non-interruptible filler not yet heard
    assert may_keep_playing(replace(floor, user_speaking=True), allow_interruptions=False) is (
        Verdict.USER_SPEAKING
    )


@pytest.mark.parametrize(
    "change",
    [
        {"open": False},
        {"running": False},
        {"paused": True},
        {"queued": True},
        {"synthesizing": True},
        {"user_speaking": True},
    ],
)
def test_each_condition_alone_holds_a_prerender(change: dict[str, bool]) -> None:
    assert not may_prerender(replace(FREE, **change))


@pytest.mark.parametrize(
    "change",
    [
        {"busy": True},  # its own audio: a render waits only for what is queued or thinking
        {"owner_current": False},
        {"owner_active": False},
        {"tool_interrupted": True},
        {"tts_down": True},
        {"unasked_task": True},
        {"speech_gap": 5.0},
    ],
)
def test_what_a_prerender_does_not_wait_for(change: dict[str, Any]) -> None:
    assert may_prerender(replace(FREE, **change))


def test_every_verdict_but_speak_names_a_reason() -> None:
    assert Verdict.SPEAK.value == "speak"
    assert Verdict("tts_down") is Verdict.TTS_DOWN
    assert {v.value for v in Verdict} >= {"handoff", "user_speaking", "busy", "speech_gap"}


def test_a_floor_is_a_frozen_snapshot() -> None:
    with pytest.raises(FrozenInstanceError):
        FREE.busy = True  # type: ignore[misc]
