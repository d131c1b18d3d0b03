"""Audio and text sinks that "play" in real time and record what was played."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents.voice import io

__all__ = ["FakeAudioOutput", "FakeTextOutput", "PlayedSegment"]


@dataclass(eq=False)
class PlayedSegment:
    """One audio segment as the fake speaker played it (compared by identity).

    Times are on the event loop's clock (``loop.time()``), in seconds.

    Attributes:
        start: When playback of the segment began.
        end: When it finished or was cut; None while it is playing.
        pushed_duration: Seconds of audio captured for the segment.
        interrupted: Whether ``clear_buffer()`` cut it short.
        speech_id: Id of the speech that produced it, when known.
        text: Text of that speech, when known.
        kind: ``"speech"`` or ``"filler"``.
        agent: Class name of the agent that was active when it was captured.
    """

    start: float
    end: float | None = None
    pushed_duration: float = 0.0
    interrupted: bool = False
    speech_id: str | None = None
    text: str = ""
    kind: str = "speech"
    agent: str = ""

    @property
    def duration(self) -> float:
        """Seconds actually played (0 while still playing)."""
        return 0.0 if self.end is None else self.end - self.start


@dataclass
class _Playout:
    segment: PlayedSegment
    flushed: bool = False
    started: bool = False
    flush_time: float = 0.0
    timer: asyncio.TimerHandle | None = None
    # frames captured after a clear_buffer() belong to the cleared segment and are dropped
    cleared: bool = field(default=False)


class FakeAudioOutput(io.AudioOutput):
    """An audio sink that plays captured audio in real time on the event loop clock.

    A segment starts playing with its first frame (or when the previous segment
    ends) and finishes ``pushed_duration`` seconds later, or at its flush when the
    audio arrived slower than real time. ``clear_buffer()`` cuts what is playing
    at once. Each segment reports ``playback_finished`` exactly once. Played
    segments are listed in :attr:`segments`.
    """

    def __init__(
        self,
        *,
        label: str = "FakeAudioOutput",
        sample_rate: int | None = None,
        on_segment_captured: Callable[[PlayedSegment], None] | None = None,
    ) -> None:
        """Create the sink.

        Args:
            label: Label shown in LiveKit's logs.
            sample_rate: Sample rate the sink requires, in Hz; None accepts any.
            on_segment_captured: Called with a new segment when its first frame
                is captured, so a caller can label it (see :class:`TimelineRecorder`).
        """
        super().__init__(
            label=label,
            capabilities=io.AudioOutputCapabilities(pause=False),
            sample_rate=sample_rate,
        )
        self.on_segment_captured = on_segment_captured
        """Called with each new segment at its first frame (see ``__init__``)."""
        self._queue: deque[_Playout] = deque()
        self._capturing: _Playout | None = None
        self.segments: list[PlayedSegment] = []
        """Segments that began playing, in order."""

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        """Queue ``frame`` for playback."""
        await super().capture_frame(frame)
        playout = self._capturing
        if playout is None:
            playout = _Playout(segment=PlayedSegment(start=self._now()))
            self._capturing = playout
            self._queue.append(playout)
            if self.on_segment_captured is not None:
                self.on_segment_captured(playout.segment)
        if playout.cleared:
            return
        playout.segment.pushed_duration += frame.duration
        if playout is self._queue[0] and not playout.started:
            self._start(playout)

    def flush(self) -> None:
        """Mark the segment being captured as complete."""
        super().flush()
        playout = self._capturing
        self._capturing = None
        if playout is None or playout.cleared:
            return
        playout.flushed = True
        playout.flush_time = self._now()
        if playout.started:
            self._schedule_end(playout)

    def clear_buffer(self) -> None:
        """Stop playback at once, cutting every queued segment."""
        now = self._now()
        while self._queue:
            playout = self._queue.popleft()
            if playout.timer is not None:
                playout.timer.cancel()
            playout.cleared = True
            position = 0.0
            if playout.started:
                position = min(now - playout.segment.start, playout.segment.pushed_duration)
                playout.segment.end = now
                playout.segment.interrupted = True
            self.on_playback_finished(playback_position=max(position, 0.0), interrupted=True)

    def close(self) -> None:
        """Cut anything still playing and cancel pending timers. Idempotent."""
        self.clear_buffer()

    def _start(self, playout: _Playout) -> None:
        playout.started = True
        playout.segment.start = self._now()
        self.segments.append(playout.segment)
        self.on_playback_started(created_at=time.time())
        if playout.flushed:
            self._schedule_end(playout)

    def _schedule_end(self, playout: _Playout) -> None:
        segment = playout.segment
        end_at = max(segment.start + segment.pushed_duration, playout.flush_time)
        playout.timer = asyncio.get_running_loop().call_at(end_at, self._finish, playout)

    def _finish(self, playout: _Playout) -> None:
        if not self._queue or self._queue[0] is not playout:
            return  # already cut by clear_buffer()
        self._queue.popleft()
        playout.timer = None
        playout.segment.end = self._now()
        self.on_playback_finished(
            playback_position=playout.segment.pushed_duration, interrupted=False
        )
        if self._queue:
            # a queued segment always holds at least its first frame
            self._start(self._queue[0])


class FakeTextOutput(io.TextOutput):
    """A transcription sink that records the text of each segment.

    A segment opens with the first captured text and closes at ``flush()``.
    """

    def __init__(
        self,
        *,
        label: str = "FakeTextOutput",
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        """Create the sink.

        Args:
            label: Label shown in LiveKit's logs.
            on_text: Called with every captured text chunk, as it arrives.
        """
        super().__init__(label=label, next_in_chain=None)
        self._on_text = on_text
        self._open = False
        self.segments: list[str] = []
        """Text of each segment, in order (the last may still be growing)."""

    @property
    def text(self) -> str:
        """All captured text, segments joined by newlines."""
        return "\n".join(self.segments)

    async def capture_text(self, text: str) -> None:
        """Append ``text`` to the current segment."""
        if not text:
            return
        if not self._open:
            self.segments.append("")
            self._open = True
        self.segments[-1] += text
        if self._on_text is not None:
            self._on_text(text)

    def flush(self) -> None:
        """Close the current segment."""
        self._open = False
