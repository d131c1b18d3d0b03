"""What a :class:`~livekit_filler.FillerController` tells its listeners."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AudioSource", "FillerEvent", "FillerEventType"]

FillerEventType = Literal["filler_played", "filler_cut", "filler_skipped", "session_summary"]
AudioSource = Literal["cache", "tts", "clip", "text"]
"""Where a filler's audio came from: rendered before, synthesized now, a clip, or say(text)."""


@dataclass(frozen=True)
class FillerEvent:
    """A filler played, cut or skipped, or a controller's end-of-session summary.

    Attributes:
        type: which of the four events this is.
        tool: the tool the filler was for; None for ``say_filler`` and the summary.
        reason: why it was cut (answer, real_speech, user_speech, handoff, session_closed,
            detach...) or skipped (not a safe moment: busy, paused, handoff...; refused,
            tts_failed, no_phrase).
        speech_id: the filler's speech handle id, when it was scheduled.
        source: where a played filler's audio came from.
        summary: the :class:`~livekit_filler.FillerMetrics` summary (``session_summary``).
    """

    type: FillerEventType
    tool: str | None = None
    reason: str | None = None
    speech_id: str | None = None
    source: AudioSource | None = None
    summary: dict[str, object] | None = None
