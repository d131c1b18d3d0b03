"""A render in flight, and the replay of a finished sound.

A :class:`Render` is one synthesis under way: its frames so far, which any number of
fillers stream while it runs (so a sound is synthesized once however many ask for it).
:func:`replay` plays a finished sound again in short frames, so a cut takes effect at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from livekit import rtc

FRAME_SECONDS = 0.05
"""Replayed audio is pushed in frames this long, so a cut takes effect at once."""


class Render:
    """One synthesis in progress: its frames so far, streamable by any number of listeners.

    Only one attempt's audio is kept: when frames arrive under a new ``request_id`` (a TTS
    that restarted the synthesis), the earlier attempt's frames are dropped and whoever
    was streaming them stops there, so nobody hears (or caches) a sound that restarts.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time()
        self.frames: list[rtc.AudioFrame] = []
        self.attempt = 0
        """How many times the synthesis restarted after some of its audio arrived."""
        self.finished = False
        self.ok = False
        self._request_id: str | None = None
        self._changed = asyncio.Event()

    @property
    def request_id(self) -> str | None:
        """The TTS request id of the attempt whose frames are kept."""
        return self._request_id

    def add(self, frame: rtc.AudioFrame, request_id: str = "") -> None:
        """A frame arrived from the TTS (for the attempt ``request_id``)."""
        if request_id != self._request_id:
            if self.frames:
                self.attempt += 1
                self.frames = []
            self._request_id = request_id
        self.frames.append(frame)
        self._changed.set()

    def finish(self, *, ok: bool) -> None:
        """The synthesis ended (``ok``: completely)."""
        self.finished, self.ok = True, ok
        self._changed.set()

    async def wait(self) -> bool:
        """Wait for the end; True when the audio is complete."""
        while not self.finished:
            self._changed.clear()
            if not self.finished:
                await self._changed.wait()
        return self.ok

    async def stream(self) -> AsyncIterator[rtc.AudioFrame]:
        """The frames as they arrive; stops early (at what it has) if the synthesis fails
        or restarts."""
        attempt = self.attempt
        sent = 0
        while True:
            while self.attempt == attempt and sent < len(self.frames):
                yield self.frames[sent]
                sent += 1
            if self.finished or self.attempt != attempt:
                return
            self._changed.clear()
            if sent == len(self.frames) and not self.finished:
                await self._changed.wait()


class RenderFailed(Exception):
    """A render ended without complete audio."""


async def replay(frame: rtc.AudioFrame) -> AsyncIterator[rtc.AudioFrame]:
    """Yield ``frame`` again in short frames (a fresh iterator for every play)."""
    step = max(1, int(frame.sample_rate * FRAME_SECONDS))
    data = frame.data
    channels = frame.num_channels
    for start in range(0, frame.samples_per_channel, step):
        chunk = data[start * channels : (start + step) * channels]
        yield rtc.AudioFrame(
            data=chunk.tobytes(),
            sample_rate=frame.sample_rate,
            num_channels=channels,
            samples_per_channel=len(chunk) // channels,
        )
        await asyncio.sleep(0)
