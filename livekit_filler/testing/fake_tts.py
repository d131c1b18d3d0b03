"""A :class:`tts.TTS` that makes a quiet tone as long as the text, with no network."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectionError,
    APIConnectOptions,
    tts,
    utils,
)

__all__ = ["FakeTTS", "SynthesizeFault"]

SynthesizeFault = Literal["hang", "drop", "empty"]
"""A scripted fault of ``FakeTTS.synthesize()``: see ``synthesize_fault``."""

_TONE_HZ = 220.0
# About -26 dBFS: audible in a WAV, quiet enough not to startle.
_AMPLITUDE = 0.05
_WORD = re.compile(r"\S+")
_EDGE = 0.005  # seconds of ramp at each word's edges (no clicks)


class FakeTTS(tts.TTS[Any]):
    """A TTS that turns text into a tone lasting ``len(text) * seconds_per_char`` seconds.

    Like speech, the tone pauses between words: each gap between two words is
    ``word_gap`` seconds of silence (less when the text is too short for it: words keep at
    least 40 % of the time), and the words share the rest by their length.

    It supports both ``synthesize()`` and ``stream()``. A stream synthesizes each
    flushed segment once its text is complete. Every synthesized text is appended
    to :attr:`synthesized`.

    Example:
        ```python
        fake = FakeTTS(ttfb=0.05, seconds_per_char=0.01, fail_on=lambda t: "boom" in t)
        ```
    """

    def __init__(
        self,
        *,
        ttfb: float = 0.1,
        seconds_per_char: float = 0.05,
        sample_rate: int = 24000,
        fail_on: Callable[[str], bool] | None = None,
        hang_on: Callable[[str], bool] | None = None,
        synthesize_fault: Callable[[str], Exception | SynthesizeFault | None] | None = None,
        word_gap: float = 0.08,
    ) -> None:
        """Create the fake.

        Args:
            ttfb: Seconds before the first audio bytes.
            seconds_per_char: Seconds of audio per character of text.
            sample_rate: Sample rate of the int16 mono PCM, in Hz.
            fail_on: When it returns True for a text, synthesis raises a
                non-retryable :class:`APIConnectionError`, which the session
                treats as an ordinary TTS failure.
            hang_on: When it returns True for a text, no audio is ever produced
                (until the synthesis is cancelled).
            synthesize_fault: Faults of ``synthesize()`` only (``stream()``, which the
                session uses for its own speech, is unaffected), asked once per call with
                the text, after the TTFB: an exception to raise (for example
                ``APIStatusError("down", status_code=500)``); ``"hang"``: no audio until
                cancelled; ``"drop"``: the first half of the audio, then a retryable
                :class:`APIConnectionError` (the connection dropped mid-stream);
                ``"empty"``: end without audio. None synthesizes normally. Return a
                fault only on the first call of a text to fail once, then succeed.
            word_gap: Seconds of silence between two words; 0 makes one continuous tone.

        Raises:
            ValueError: If a duration is negative or ``sample_rate`` is not positive.
        """
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=True),
            sample_rate=sample_rate,
            num_channels=1,
        )
        if ttfb < 0:
            raise ValueError(f"ttfb must be non-negative, got {ttfb!r}")
        if seconds_per_char < 0:
            raise ValueError(f"seconds_per_char must be non-negative, got {seconds_per_char!r}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
        if word_gap < 0:
            raise ValueError(f"word_gap must be non-negative, got {word_gap!r}")
        self._word_gap = word_gap
        self._ttfb = ttfb
        self._seconds_per_char = seconds_per_char
        self._fail_on = fail_on
        self._hang_on = hang_on
        self._synthesize_fault = synthesize_fault
        self.synthesized: list[str] = []
        """Every text synthesized, in order (for streams, each flushed segment)."""

    @property
    def model(self) -> str:
        """The model name reported in metrics."""
        return "fake-tts"

    @property
    def provider(self) -> str:
        """The provider name reported in metrics."""
        return "livekit_filler.testing"

    @property
    def voice(self) -> str:
        """Everything that changes this fake's sound; part of the filler audio cache key."""
        gap = f":gap{self._word_gap!r}" if self._word_gap else ""
        return f"fake:{self._seconds_per_char!r}:{self.sample_rate}{gap}"

    @property
    def characters_synthesized(self) -> int:
        """Total characters of all texts synthesized so far."""
        return sum(len(text) for text in self.synthesized)

    def duration_for(self, text: str) -> float:
        """Return the seconds of audio this TTS makes for ``text``."""
        return len(text) * self._seconds_per_char

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        """Synthesize ``text`` in one request."""
        return _FakeChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(
        self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.SynthesizeStream:
        """Open a stream that synthesizes each flushed text segment."""
        return _FakeSynthesizeStream(tts=self, conn_options=conn_options)

    async def _produce(self, text: str, emit: Callable[[bytes], None]) -> None:
        """Record ``text``, wait the TTFB and emit its PCM (or fail, or hang)."""
        self.synthesized.append(text)
        if self._fail_on is not None and self._fail_on(text):
            raise APIConnectionError("FakeTTS: scripted failure", retryable=False)
        await asyncio.sleep(self._ttfb)
        if self._hang_on is not None and self._hang_on(text):
            await asyncio.Event().wait()
        emit(self.pcm_for(text))

    async def _produce_chunked(self, text: str, emit: Callable[[bytes], None]) -> None:
        """``synthesize()``'s production: :meth:`_produce`, or the scripted fault."""
        fault = self._synthesize_fault(text) if self._synthesize_fault is not None else None
        if fault is None:
            await self._produce(text, emit)
            return
        self.synthesized.append(text)
        await asyncio.sleep(self._ttfb)
        if isinstance(fault, Exception):
            raise fault
        if fault == "hang":
            await asyncio.Event().wait()
        elif fault == "drop":
            pcm = self.pcm_for(text)
            half = len(pcm) // 4 * 2  # whole int16 samples
            emit(pcm[:half])
            await asyncio.sleep(0.05)  # the partial audio reaches the listener first
            raise APIConnectionError("FakeTTS: connection dropped mid-stream", retryable=True)

    def pcm_for(self, text: str) -> bytes:
        """The int16 mono PCM this TTS makes for ``text`` (what a render must equal)."""
        n = round(self.duration_for(text) * self.sample_rate)
        t = np.arange(n, dtype=np.float64) / self.sample_rate
        wave = np.sin(2 * math.pi * _TONE_HZ * t) * (_AMPLITUDE * 32767)
        words = self.words_for(text)
        if len(words) > 1:
            envelope = np.zeros(n, dtype=np.float64)
            edge = max(1, int(_EDGE * self.sample_rate))
            for start, end in words:
                a, b = round(start * self.sample_rate), min(n, round(end * self.sample_rate))
                if b <= a:
                    continue
                ramp = min(edge, (b - a) // 2)
                envelope[a:b] = 1.0
                if ramp > 0:
                    envelope[a : a + ramp] = np.linspace(0.0, 1.0, ramp)
                    envelope[b - ramp : b] = np.linspace(1.0, 0.0, ramp)
            wave *= envelope
        return wave.astype(np.int16).tobytes()

    def words_for(self, text: str) -> list[tuple[float, float]]:
        """Where each word of ``text`` sounds in its audio: ``(start, end)`` seconds."""
        total = self.duration_for(text)
        words = [m.group() for m in _WORD.finditer(text)]
        if len(words) < 2 or self._word_gap == 0:
            return [(0.0, total)] if words else []
        gaps = len(words) - 1
        gap = min(self._word_gap, 0.6 * total / gaps)
        per_char = (total - gaps * gap) / sum(len(w) for w in words)
        spans: list[tuple[float, float]] = []
        t = 0.0
        for word in words:
            end = t + len(word) * per_char
            spans.append((t, end))
            t = end + gap
        return spans

    def pauses_for(self, text: str) -> list[tuple[float, float]]:
        """The silent gaps between the words of ``text``'s audio: ``(start, end)`` seconds."""
        words = self.words_for(text)
        return [(a[1], b[0]) for a, b in itertools.pairwise(words)]


class _FakeChunkedStream(tts.ChunkedStream):
    def __init__(self, *, tts: FakeTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._fake = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid("fake_tts_"),
            sample_rate=self._fake.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        # no flush(): the base class ends the segment, and a flush before that end
        # would make the emitter append a 10 ms silent marker frame
        await self._fake._produce_chunked(self.input_text, output_emitter.push)


class _FakeSynthesizeStream(tts.SynthesizeStream):
    def __init__(self, *, tts: FakeTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._fake = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid("fake_tts_"),
            sample_rate=self._fake.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
            stream=True,
        )
        text = ""
        # _input_ch and _FlushSentinel are the documented subclass contract of SynthesizeStream.
        async for data in self._input_ch:
            if isinstance(data, str):
                text += data
                continue
            if not text:
                continue
            self._mark_started()
            output_emitter.start_segment(segment_id=utils.shortuuid("segment_"))
            await self._fake._produce(text, output_emitter.push)
            output_emitter.end_segment()
            text = ""
