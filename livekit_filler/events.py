"""What a :class:`~livekit_filler.FillerController` tells its listeners."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AudioSource", "FillerEvent", "FillerEventType", "FillerKind"]

FillerEventType = Literal[
    "filler_played", "filler_cut", "filler_skipped", "filler_rendered", "session_summary"
]
AudioSource = Literal["cache", "tts", "clip", "text"]
"""Where a filler's audio came from: rendered before, synthesized now, a clip, or say(text)."""
FillerKind = Literal["slow_answer", "busy"]
"""Fillers not for a tool: a slow answer, or an acknowledgement during a busy tool."""


@dataclass(frozen=True)
class FillerEvent:
    """A filler played, cut, skipped or rendered, or a controller's end-of-session summary.

    ``filler_played`` comes once the filler's first audio frame went to the session's audio
    output (a text-only session: once it is scheduled), as ``FillerMetrics.fillers_played``
    counts it. ``filler_skipped`` comes once per due filler and reason, not per retry.

    Attributes:
        type: which of the four events this is.
        tool: the tool the filler was for; None for ``say_filler`` and the summary.
        reason: why it was cut (answer, real_speech, user_speech, handoff, session_closed,
            detach...) or skipped (not a safe moment: busy, paused, handoff, closed...;
            refused, tts_failed, tts_down, no_phrase, no_voice, no_fit).
        speech_id: the filler's speech handle id, when it was scheduled.
        source: where a played filler's audio came from.
        summary: the :class:`~livekit_filler.FillerMetrics` summary (``session_summary``).
        request_id: ``filler_rendered``: the TTS request id of the render, the
            ``request_id`` of the ``TTSMetrics`` LiveKit reports for it, so usage can be
            split between fillers and real speech.
        characters: ``filler_rendered``: the characters synthesized.
        kind: what a filler not for a tool was for: ``"slow_answer"`` (the answer itself was
            slow) or ``"busy"`` (the caller spoke during a tool that cannot be interrupted);
            None for tool fillers, ``say_filler`` and the other events.
    """

    type: FillerEventType
    tool: str | None = None
    reason: str | None = None
    speech_id: str | None = None
    source: AudioSource | None = None
    summary: dict[str, object] | None = None
    request_id: str | None = None
    characters: int | None = None
    kind: FillerKind | None = None
