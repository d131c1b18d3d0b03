"""Pauses between words in rendered speech: where a filler may stop without clipping a word.

Pure functions on PCM. :func:`find_pauses` scans a sound once for low-energy stretches (at
least :data:`MIN_PAUSE` long, quieter than :data:`RELATIVE_DB` below the sound's loud parts);
:meth:`Pauses.next_cut` is where a filler that must stop now ends: here if this is a pause,
else inside the next pause. :func:`fade_out` ramps the last samples of the audio kept to
zero, so the stop never clicks. :func:`pauses_of` memoizes per rendered sound.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from livekit import rtc

__all__ = ["MIN_PAUSE", "Pauses", "fade_out", "find_pauses", "pauses_of"]

MIN_PAUSE = 0.06
"""Shortest low-energy stretch (seconds) counted as a pause between words."""
WINDOW = 0.01
"""Seconds per energy window."""
RELATIVE_DB = -30.0
"""A window this far below the sound's loud windows (its 90th percentile RMS) is quiet."""
SILENCE_RMS = 30.0
"""A window below this RMS (int16 units, about -61 dBFS) is quiet whatever the sound."""
CUT_LEAD = 0.03
"""Seconds of quiet a cut needs ahead of it: a stop takes a moment to reach the audio output,
so a cut lands in the middle of the next pause, or right away only this far from its end."""
FADE = 0.01
"""Seconds of the fade-out at a cut."""
_MEMO_SIZE = 512


@dataclass(frozen=True)
class Pauses:
    """Where a sound is quiet (seconds from its start)."""

    duration: float
    onset: float = 0.0
    """Where the first word starts (leading silence before it)."""
    offset: float | None = None
    """Where the last word ends (trailing silence after it); None: at ``duration``."""
    spans: tuple[tuple[float, float], ...] = ()
    """Pauses between words: ``(start, end)``, in order."""
    complete: bool = True
    """False for the beginning of a sound still arriving: after its end, nothing is known."""

    @property
    def end_of_speech(self) -> float:
        """Where the last word ends."""
        return self.duration if self.offset is None else self.offset

    def quiet_at(self, t: float, *, margin: float = 0.0) -> bool:
        """True when ``t`` is before the first word, after the last or inside a pause
        (``margin`` seconds clear of the words on both sides)."""
        if not self.complete and t > self.duration:
            return False  # not heard yet
        if t <= self.onset - margin or t >= self.end_of_speech + margin:
            return True
        return any(start + margin <= t <= end - margin for start, end in self.spans)

    def next_cut(self, position: float, *, lead: float = CUT_LEAD) -> float:
        """Where a sound playing at ``position`` s may stop: ``position`` itself when at least
        ``lead`` s of quiet follow, else the middle of the next pause, else the end of its
        last word."""
        if position <= self.onset - lead:
            return position
        if position >= self.end_of_speech and (self.complete or position <= self.duration - lead):
            return position
        for start, end in self.spans:
            if start <= position <= end - lead:
                return position
            if position < start:
                return (start + end) / 2
        return self.end_of_speech if self.complete else math.inf

    def latest_cut(self, position: float, limit: float, *, lead: float = CUT_LEAD) -> float | None:
        """The last place at or after ``position`` and at most ``limit`` where a sound may
        stop without clipping a word (``position`` itself when quiet, else the middle of a
        pause); None when there is none before ``limit``."""
        best: float | None = None
        first = self.next_cut(position, lead=lead)
        if first <= limit:
            best = first
        for start, end in self.spans:
            middle = (start + end) / 2
            if position <= middle <= limit and (best is None or middle > best):
                best = middle
        return best


def find_pauses(
    pcm: npt.NDArray[np.int16] | bytes,
    sample_rate: int,
    num_channels: int = 1,
    *,
    min_pause: float = MIN_PAUSE,
) -> Pauses:
    """Find the pauses between words in int16 PCM (interleaved when ``num_channels`` > 1)."""
    samples = np.frombuffer(pcm, dtype=np.int16) if isinstance(pcm, bytes) else np.asarray(pcm)
    channels = max(1, num_channels)
    frames = len(samples) // channels
    duration = frames / sample_rate if sample_rate > 0 else 0.0
    step = max(1, int(sample_rate * WINDOW))
    count = frames // step
    if count == 0:
        return Pauses(duration=duration)
    mono = samples[: count * step * channels].astype(np.float64).reshape(count * step, channels)
    rms = np.sqrt(np.mean(np.square(mono.mean(axis=1)).reshape(count, step), axis=1))
    loud = _p90(rms)
    threshold = max(SILENCE_RMS, loud * 10 ** (RELATIVE_DB / 20))
    quiet = rms < threshold
    if quiet.all():
        return Pauses(duration=duration, offset=0.0)
    voiced = np.flatnonzero(~quiet)
    first, last = int(voiced[0]), int(voiced[-1])
    onset = first * step / sample_rate
    offset = min(duration, (last + 1) * step / sample_rate)
    spans: list[tuple[float, float]] = []
    run_start: int | None = None
    for i in range(first, last + 1):
        if quiet[i] and run_start is None:
            run_start = i
        elif not quiet[i] and run_start is not None:
            if (i - run_start) * step / sample_rate >= min_pause - 1e-9:
                spans.append((run_start * step / sample_rate, i * step / sample_rate))
            run_start = None
    return Pauses(duration=duration, onset=onset, offset=offset, spans=tuple(spans))


def _p90(values: npt.NDArray[np.float64]) -> float:
    """The 90th percentile, interpolated as ``np.percentile`` does; not ``np.percentile``
    itself, whose first call imports ``numpy.ma`` (about 0.2 s, blocking a call's event loop
    at its first filler)."""
    ordered = np.sort(values)
    pos = (len(ordered) - 1) * 0.9
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


_memo: OrderedDict[str, Pauses] = OrderedDict()


def pauses_of(frame: rtc.AudioFrame, key: str | None = None) -> Pauses:
    """:func:`find_pauses` of a rendered sound, computed once per ``key`` (its cache key)."""
    if key is not None and (known := _memo.get(key)) is not None:
        _memo.move_to_end(key)
        return known
    pauses = find_pauses(
        np.frombuffer(frame.data, dtype=np.int16), frame.sample_rate, frame.num_channels
    )
    if key is not None:
        _memo[key] = pauses
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return pauses


def fade_out(
    pcm: npt.NDArray[np.int16], sample_rate: int, num_channels: int = 1
) -> npt.NDArray[np.int16]:
    """A copy of int16 ``pcm`` whose last :data:`FADE` seconds ramp down to silence."""
    out = np.array(pcm, dtype=np.int16, copy=True)
    channels = max(1, num_channels)
    frames = len(out) // channels
    n = min(frames, max(1, int(sample_rate * FADE)))
    if n == 0:
        return out
    ramp = np.linspace(1.0, 0.0, n, endpoint=True)
    tail = out[(frames - n) * channels : frames * channels].astype(np.float64)
    tail = tail.reshape(n, channels) * ramp[:, None]
    out[(frames - n) * channels : frames * channels] = tail.reshape(-1).astype(np.int16)
    return out
