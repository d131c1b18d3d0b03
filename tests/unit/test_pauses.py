"""Pauses between words, found in rendered speech whose pauses are known (the FakeTTS)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from livekit import rtc

from livekit_filler.pauses import MIN_PAUSE, Pauses, fade_out, find_pauses, pauses_of
from livekit_filler.testing import FakeTTS

PHRASE = "One moment, let me check that."


@pytest.mark.parametrize("seconds_per_char", [0.02, 0.03, 0.05])
def test_the_pauses_between_the_fake_words_are_found(seconds_per_char: float) -> None:
    tts = FakeTTS(seconds_per_char=seconds_per_char, sample_rate=24000)
    pauses = find_pauses(tts.pcm_for(PHRASE), tts.sample_rate)
    expected = tts.pauses_for(PHRASE)
    assert len(expected) == 5
    assert len(pauses.spans) == len(expected)
    for (start, end), (a, b) in zip(pauses.spans, expected, strict=True):
        # found within one 10 ms window (and the words' 5 ms fade edges)
        assert start == pytest.approx(a, abs=0.016) and end == pytest.approx(b, abs=0.016)
    assert pauses.duration == pytest.approx(tts.duration_for(PHRASE), abs=1e-3)


def test_every_cut_point_is_quiet_and_never_inside_a_word() -> None:
    tts = FakeTTS(seconds_per_char=0.03)
    pauses = find_pauses(tts.pcm_for(PHRASE), tts.sample_rate)
    words = tts.words_for(PHRASE)
    for position in np.arange(0.0, pauses.duration, 0.005):
        cut = pauses.next_cut(float(position))
        assert cut >= position
        assert not any(a + 0.001 < cut < b - 0.001 for a, b in words), (position, cut)
        assert pauses.quiet_at(cut)


def test_the_latest_cut_is_the_last_quiet_place_before_the_limit() -> None:
    tts = FakeTTS(seconds_per_char=0.03)
    pauses = find_pauses(tts.pcm_for(PHRASE), tts.sample_rate)
    words = tts.words_for(PHRASE)
    middles = [(a + b) / 2 for a, b in pauses.spans]
    for position in np.arange(0.0, pauses.duration, 0.01):
        for window in (0.0, 0.1, 0.3, 0.6):
            limit = float(position) + window
            cut = pauses.latest_cut(float(position), limit)
            if cut is None:
                # nothing quiet before the limit: not even the next cut point
                assert pauses.next_cut(float(position)) > limit
                continue
            assert position <= cut <= limit
            assert not any(a + 0.001 < cut < b - 0.001 for a, b in words), (position, cut)
            # no later pause middle fits before the limit
            assert not [m for m in middles if cut < m <= limit]


def test_a_continuous_tone_has_no_pause() -> None:
    tts = FakeTTS(seconds_per_char=0.03, word_gap=0)
    pauses = find_pauses(tts.pcm_for(PHRASE), tts.sample_rate)
    assert pauses.spans == ()
    # nowhere to stop but the end
    assert pauses.next_cut(0.2) == pytest.approx(pauses.end_of_speech)


def test_short_gaps_are_not_pauses() -> None:
    sr = 16000
    tone = (np.sin(np.arange(sr // 5) * 0.1) * 8000).astype(np.int16)
    gap = np.zeros(int(sr * (MIN_PAUSE - 0.02)), dtype=np.int16)
    long_gap = np.zeros(int(sr * 0.1), dtype=np.int16)
    pcm = np.concatenate([tone, gap, tone, long_gap, tone])
    pauses = find_pauses(pcm, sr)
    assert len(pauses.spans) == 1
    assert pauses.spans[0][0] == pytest.approx(0.4 + MIN_PAUSE - 0.02, abs=0.011)


def test_leading_and_trailing_silence_are_not_between_words() -> None:
    sr = 16000
    silence = np.zeros(sr // 5, dtype=np.int16)
    tone = (np.sin(np.arange(sr // 2) * 0.1) * 8000).astype(np.int16)
    pauses = find_pauses(np.concatenate([silence, tone, silence]), sr)
    assert pauses.spans == ()
    assert pauses.onset == pytest.approx(0.2, abs=0.011)
    assert pauses.end_of_speech == pytest.approx(0.7, abs=0.011)
    assert pauses.quiet_at(0.1) and pauses.quiet_at(0.8) and not pauses.quiet_at(0.4)


def test_noise_well_below_the_words_counts_as_quiet() -> None:
    sr = 16000
    rng = np.random.default_rng(1)
    tone = (np.sin(np.arange(sr // 4) * 0.1) * 10000).astype(np.int16)
    hiss = rng.normal(0, 60, sr // 10).astype(np.int16)  # about -50 dB below the words
    pauses = find_pauses(np.concatenate([tone, hiss, tone]), sr)
    assert len(pauses.spans) == 1


def test_stereo_and_empty_audio() -> None:
    tts = FakeTTS(seconds_per_char=0.03, sample_rate=16000)
    mono = np.frombuffer(tts.pcm_for(PHRASE), dtype=np.int16)
    stereo = np.repeat(mono, 2)
    assert len(find_pauses(stereo, 16000, 2).spans) == 5
    assert find_pauses(b"", 16000) == Pauses(duration=0.0)


def test_pauses_of_a_sound_are_found_once_per_key() -> None:
    tts = FakeTTS(seconds_per_char=0.03)
    pcm = tts.pcm_for(PHRASE)
    frame = rtc.AudioFrame(pcm, tts.sample_rate, 1, len(pcm) // 2)
    first = pauses_of(frame, "test-key")
    other = rtc.AudioFrame(b"\0\0" * 2400, tts.sample_rate, 1, 2400)
    assert pauses_of(other, "test-key") is first  # memoized by the sound's key
    assert pauses_of(other).spans == ()


def test_fade_out_ends_in_silence() -> None:
    pcm = np.full(2400, 10000, dtype=np.int16)
    faded = fade_out(pcm, 24000)
    assert faded[-1] == 0 and faded[0] == 10000
    assert np.all(np.diff(faded[-240:].astype(np.int32)) <= 0)  # a ramp, no step
    assert pcm[-1] == 10000  # a copy


def test_finding_pauses_imports_nothing_on_a_calls_event_loop() -> None:
    """The first filler of a call (a fresh process) finds its sound's pauses on the event
    loop: that must not import a module (``np.percentile`` imported ``numpy.ma``, 0.2 s)."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        from livekit import rtc
        from livekit_filler.pauses import fade_out, find_pauses, pauses_of
        pcm = (np.sin(np.arange(24000) / 3.0) * 8000).astype(np.int16)
        before = set(sys.modules)
        frame = rtc.AudioFrame(pcm.tobytes(), 24000, 1, len(pcm))
        pauses_of(frame, "k")
        find_pauses(pcm, 24000)
        fade_out(pcm, 24000)
        print(sorted(set(sys.modules) - before))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
