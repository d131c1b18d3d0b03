"""Which speech handles are fillers: one process-wide weak registry, readable by anyone."""

from __future__ import annotations

import weakref

from livekit.agents.voice import SpeechHandle

_fillers: weakref.WeakSet[SpeechHandle] = weakref.WeakSet()


def mark_filler(handle: SpeechHandle) -> None:
    """Record that ``handle`` was scheduled by livekit-filler."""
    _fillers.add(handle)


def is_filler_speech(handle: SpeechHandle) -> bool:
    """Return True when ``handle`` is a filler played by a :class:`FillerController`."""
    return handle in _fillers
