"""A filler's playing state (playing.py): legal transitions, illegal ones refused, derived
fields, and the pure graceful-end decision. No event loop, no session."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from livekit import rtc

from livekit_filler.gate import up_to
from livekit_filler.pauses import Pauses
from livekit_filler.playing import (
    AWAIT_PAUSE,
    ENDING,
    FINISH,
    MAX_CUT_WAIT,
    RECORDED,
    Phase,
    Playing,
    PlayingStateError,
    graceful_end,
)


@pytest.fixture
def timer() -> Iterator[asyncio.TimerHandle]:
    loop = asyncio.new_event_loop()
    handle = loop.call_later(3600, lambda: None)
    yield handle
    handle.cancel()
    loop.close()


def _phase(playing: Playing) -> Phase:
    """The phase now (read through a call: mypy would keep an earlier narrowing)."""
    return playing.phase


def _recorded(playing: Playing) -> bool:
    return playing.recorded


def _heard(playing: Playing) -> list[rtc.AudioFrame] | None:
    return playing.heard


def _queued(key: str | None = "k") -> Playing:
    return Playing(key=key, tool="lookup")


def _sounding() -> Playing:
    playing = _queued()
    playing.start(10.0)
    return playing


def _in(phase: Phase, timer: asyncio.TimerHandle) -> Playing:
    """A filler brought to ``phase`` through legal transitions only."""

    def sounding(p: Playing) -> None:
        p.start(10.0)

    def awaiting(p: Playing) -> None:
        sounding(p)
        p.await_pause("answer", "t")

    def stopping(p: Playing) -> None:
        sounding(p)
        p.stop(1.5, timer)

    def finishing(p: Playing) -> None:
        sounding(p)
        p.finish()

    def cut(p: Playing) -> None:
        sounding(p)
        p.cut_now()

    paths: dict[Phase, Callable[[Playing], object]] = {
        Phase.QUEUED: lambda p: None,
        Phase.SOUNDING: sounding,
        Phase.AWAITING_PAUSE: awaiting,
        Phase.STOPPING: stopping,
        Phase.FINISHING: finishing,
        Phase.CUT: cut,
        Phase.SKIPPED: lambda p: p.render_failed(),
    }
    playing = _queued()
    paths[phase](playing)
    assert _phase(playing) is phase
    return playing


def test_a_new_filler_is_queued_and_plays_on() -> None:
    playing = _queued()
    assert _phase(playing) is Phase.QUEUED
    assert playing.stop_at is None and playing.position(5.0) is None
    assert not playing.recorded and not playing.ending


def test_start_sounds_it_from_now() -> None:
    playing = _sounding()
    assert _phase(playing) is Phase.SOUNDING
    assert playing.started_at == 10.0
    assert playing.position(10.25) == pytest.approx(0.25)
    assert playing.position(9.0) == 0.0  # never negative


def test_a_graceful_cut_that_waits_for_a_pause_then_stops_at_it(
    timer: asyncio.TimerHandle,
) -> None:
    playing = _sounding()
    playing.await_pause("answer", "lookup")
    assert _phase(playing) is Phase.AWAITING_PAUSE
    assert playing.cut_for == ("answer", "lookup")
    assert playing.ending and not playing.recorded  # counted once it stops
    playing.stop(0.8, timer)
    assert _phase(playing) is Phase.STOPPING
    assert playing.stop_at == 0.8 and playing.timer is timer
    assert _recorded(playing)
    with pytest.raises(PlayingStateError):
        _ = playing.cut_for  # no cut waits any more


def test_finish_and_cut_now_are_recorded() -> None:
    finishing = _sounding()
    finishing.finish()
    assert _phase(finishing) is Phase.FINISHING and finishing.recorded and finishing.ending
    assert finishing.stop_at is None  # it plays to its end
    cut = _sounding()
    cut.cut_now()
    assert _phase(cut) is Phase.CUT and cut.recorded
    assert cut.stop_at is None  # LiveKit's interrupt ends it, not the gate


def test_drop_before_the_first_frame_lets_no_frame_out() -> None:
    playing = _queued()
    playing.drop()
    assert _phase(playing) is Phase.CUT and playing.stop_at == 0.0 and playing.recorded
    with pytest.raises(PlayingStateError):
        playing.start(11.0)  # the gate never starts a dropped filler


def test_a_refused_hold_skips_it_and_hands_its_skip_over_once() -> None:
    told: list[str] = []
    playing = Playing(key="k", on_skip=told.append)
    skip = playing.hold_refused()
    assert _phase(playing) is Phase.SKIPPED and not playing.recorded
    assert skip is not None
    skip("reply_started")
    assert told == ["reply_started"] and playing.on_skip is None
    playing.drop()  # a cut in the moment before its handle is done: counted as cut
    assert _phase(playing) is Phase.CUT


def test_a_hold_refused_after_a_drop_stays_cut_and_still_reports() -> None:
    told: list[str] = []
    playing = Playing(key="k", on_skip=told.append)
    playing.drop()
    skip = playing.hold_refused()
    assert _phase(playing) is Phase.CUT
    assert skip is not None and playing.on_skip is None


def test_a_render_that_ended_with_no_audio_is_skipped() -> None:
    told: list[str] = []
    playing = Playing(key="k", on_skip=told.append)
    skip = playing.render_failed()
    assert _phase(playing) is Phase.SKIPPED
    assert skip is not None and playing.on_skip is None


LEGAL: dict[str, set[Phase]] = {
    "start": {Phase.QUEUED},
    "finish": {Phase.SOUNDING},
    "stop": {Phase.SOUNDING, Phase.AWAITING_PAUSE},
    "await_pause": {Phase.SOUNDING},
    "drop": {Phase.QUEUED, Phase.SKIPPED},
    "cut_now": {Phase.SOUNDING},
    "hold_refused": {Phase.QUEUED, Phase.CUT},
    "render_failed": {Phase.QUEUED},
}


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("transition", sorted(LEGAL))
def test_every_transition_is_refused_outside_its_phases(
    phase: Phase, transition: str, timer: asyncio.TimerHandle
) -> None:
    playing = _in(phase, timer)
    calls: dict[str, Callable[[], object]] = {
        "start": lambda: playing.start(20.0),
        "finish": playing.finish,
        "stop": lambda: playing.stop(2.0, timer),
        "await_pause": lambda: playing.await_pause("answer", None),
        "drop": playing.drop,
        "cut_now": playing.cut_now,
        "hold_refused": playing.hold_refused,
        "render_failed": playing.render_failed,
    }
    if phase in LEGAL[transition]:
        calls[transition]()
    else:
        before = (playing.phase, playing.stop_at, playing.started_at)
        with pytest.raises(PlayingStateError, match=phase.value):
            calls[transition]()
        assert (playing.phase, playing.stop_at, playing.started_at) == before  # untouched


def test_recorded_and_ending_are_derived_from_the_phase(timer: asyncio.TimerHandle) -> None:
    for phase in Phase:
        playing = _in(phase, timer)
        assert playing.recorded is (phase in RECORDED)
        assert playing.ending is (phase in ENDING)
    assert RECORDED < ENDING  # every counted end is on its way out


def test_speech_is_a_sound_with_a_key_and_a_clip_has_no_words() -> None:
    assert _queued("k").speech
    assert not _queued(None).speech


def test_sync_moves_the_clock_once_and_never_after_a_stop(timer: asyncio.TimerHandle) -> None:
    playing = _sounding()
    assert playing.sync(10.05) and playing.synced and playing.started_at == 10.05
    assert not playing.sync(10.2) and playing.started_at == 10.05
    stopping = _sounding()
    stopping.stop(1.0, timer)
    assert not stopping.sync(10.05) and stopping.started_at == 10.0  # its stop keeps its clock
    assert _phase(stopping) is Phase.STOPPING  # not a transition


def _frame(seconds: float, rate: int = 1000) -> rtc.AudioFrame:
    samples = round(seconds * rate)
    data = np.full(samples, 1000, dtype=np.int16)
    return rtc.AudioFrame(
        data=data.tobytes(), sample_rate=rate, num_channels=1, samples_per_channel=samples
    )


def _pauses(playing: Playing) -> Pauses | None:
    return playing.pauses


def test_learn_pauses_takes_the_whole_sound_once_and_drops_what_it_heard() -> None:
    playing = _queued()
    playing.heard = [_frame(0.1)]
    playing.learn_pauses(None)  # only the beginning heard: pauses not complete
    assert playing.pauses is not None and not playing.pauses.complete
    assert playing.heard is not None
    playing.pauses = None
    playing.learn_pauses(_frame(0.5))
    known = _pauses(playing)
    assert known is not None and known.complete
    assert known.duration == pytest.approx(0.5)
    assert _heard(playing) is None
    playing.learn_pauses(_frame(2.0))
    assert _pauses(playing) is known  # found once per sound
    clip = _queued(None)
    clip.learn_pauses(_frame(0.5))
    assert clip.pauses is None  # a clip has no words to cut between


# -- the graceful end -----------------------------------------------------------------------

SPEECH = Pauses(duration=2.0, spans=((0.5, 0.7), (1.2, 1.4)))


def test_it_finishes_when_its_speech_ends_within_the_window() -> None:
    end = graceful_end(SPEECH, 1.8, may_finish=True, window=0.3, lead=None, streaming=False)
    assert end == FINISH
    # not a finishing reason, or too much left: a pause instead
    assert graceful_end(SPEECH, 1.8, may_finish=False, window=0.3, lead=None, streaming=False) != (
        FINISH
    )
    assert graceful_end(SPEECH, 1.0, may_finish=True, window=0.3, lead=None, streaming=False) != (
        FINISH
    )


def test_it_stops_at_the_next_pause_within_the_longest_wait() -> None:
    end = graceful_end(SPEECH, 0.3, may_finish=True, window=0.0, lead=None, streaming=False)
    assert end == pytest.approx(0.6)  # the middle of the next pause
    assert isinstance(end, float) and end - 0.3 <= MAX_CUT_WAIT


def test_a_timed_reply_lets_it_reach_the_last_pause_before_the_reply() -> None:
    end = graceful_end(SPEECH, 0.3, may_finish=True, window=0.0, lead=1.5, streaming=False)
    assert end == pytest.approx(1.3)  # the later pause, before the reply is due at 1.8


def test_no_pause_near_enough_waits_for_the_render_or_cuts_at_once() -> None:
    far = Pauses(duration=3.0, spans=((2.0, 2.2),))
    assert graceful_end(far, 0.2, may_finish=True, window=0.0, lead=None, streaming=False) is None
    arriving = Pauses(duration=0.5, complete=False)
    assert (
        graceful_end(arriving, 0.2, may_finish=True, window=0.0, lead=None, streaming=True)
        == AWAIT_PAUSE
    )
    # nothing more arriving: the gate can learn no pause, so it is cut at once
    assert (
        graceful_end(arriving, 0.2, may_finish=True, window=0.0, lead=None, streaming=False) is None
    )
    # an incomplete sound never finishes, whatever the window
    assert graceful_end(arriving, 0.4, may_finish=True, window=9.0, lead=None, streaming=True) == (
        AWAIT_PAUSE
    )


def test_up_to_keeps_a_frame_that_ends_in_time_and_fades_the_rest() -> None:
    frame = _frame(0.1)
    assert up_to(frame, math.inf) is frame
    assert up_to(frame, 0.2) is frame
    assert up_to(frame, 0.0) is None
    cut = up_to(frame, 0.04)
    assert cut is not None and cut.samples_per_channel == 40
    tail = np.frombuffer(cut.data, dtype=np.int16)
    assert tail[-1] < tail[0]  # faded out
