"""The gate a filler's audio passes on its way to the session: frame by frame, only while
the floor lets it sound, and only up to where a graceful cut ends it.

The speaker (:mod:`~livekit_filler.speaker`) wraps every filler's audio in :func:`gated`;
the gate drives the filler's :class:`~livekit_filler.playing.Playing` (``start`` at its
first frame, ``render_failed`` when no audio came) and reads where it stops.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable

import numpy as np
from livekit import rtc
from livekit.agents.voice import SpeechHandle

from .floor import Verdict
from .log import logger
from .pauses import fade_out
from .playing import Phase, Playing


async def gated(
    audio: AsyncIterator[rtc.AudioFrame],
    playing: Playing,
    *,
    handle: list[SpeechHandle],
    keep_playing: Callable[[bool], Verdict],
    heard: Callable[[SpeechHandle | None], None],
    pending_cut: Callable[[SpeechHandle], None],
) -> AsyncIterator[rtc.AudioFrame]:
    """Feed a filler's audio only while :func:`may_keep_playing` says so, up to where a
    graceful cut ends it (the last frame faded out).

    ``keep_playing(sounding)`` asks the floor; ``heard(handle)`` is told its first frame went
    out; ``pending_cut(handle)`` looks for the pause a waiting graceful cut stops at (with
    the frame just arrived among ``playing.heard``); ``handle`` holds its speech handle once
    ``say()`` returned.

    A filler scheduled an instant before an AgentTask or hand-off begins would otherwise
    start sounding a few ms into the transition, before the 10 ms watch cuts it.
    """
    started = False
    try:
        async for frame in audio:
            verdict = keep_playing(started)
            if verdict is not Verdict.SPEAK:
                return
            if not started:
                if playing.phase is Phase.CUT:
                    return  # dropped before it sounded: never played
                started = True
                playing.start(asyncio.get_running_loop().time())
                # its audio starts: heard, not just scheduled
                heard(handle[0] if handle else None)
            if playing.phase is Phase.AWAITING_PAUSE and handle:
                playing.heard = [*(playing.heard or ()), frame]
                pending_cut(handle[0])
                playing.heard.pop()
            if playing.stop_at is not None:
                last = up_to(frame, playing.stop_at - playing.sent)
                if last is not frame:
                    if last is not None:
                        yield last
                    return
            playing.sent += frame.duration
            if playing.heard is not None:
                playing.heard.append(frame)
            yield frame
        if not started and playing.phase is Phase.QUEUED:
            skip = playing.render_failed()  # the render ended with no audio: never played
            if skip is not None:
                skip("tts_failed")
    except Exception:  # a defect: loud, and the filler ends (LiveKit never sees it)
        logger.error("filler audio crashed", exc_info=True)
    finally:
        close = getattr(audio, "aclose", None)
        if close is not None:
            await close()


def up_to(frame: rtc.AudioFrame, seconds: float) -> rtc.AudioFrame | None:
    """``frame`` if it ends within ``seconds``; else its first ``seconds`` faded out (None
    when nothing of it is left)."""
    if not math.isfinite(seconds):  # no pause ahead: the frame plays whole
        return frame
    keep = round(seconds * frame.sample_rate)
    if keep >= frame.samples_per_channel:
        return frame
    if keep <= 0:
        return None
    channels = frame.num_channels
    data = np.frombuffer(frame.data, dtype=np.int16)[: keep * channels]
    return rtc.AudioFrame(
        data=fade_out(data, frame.sample_rate, channels).tobytes(),
        sample_rate=frame.sample_rate,
        num_channels=channels,
        samples_per_channel=keep,
    )
