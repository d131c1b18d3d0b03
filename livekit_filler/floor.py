"""Who holds the floor: the one place that decides whether a filler may start or keep sounding.

:func:`~livekit_filler.floor_session.read_floor` takes a synchronous snapshot of the session
(:class:`Floor`); :func:`may_start`, :func:`may_keep_playing` and :func:`may_prerender` are
pure decisions on it (this module reads no session: the unit tier tests it whole). The
filler stream, ``say_filler``, start and failure messages, the per-frame audio gate, the hand-off watch, the
caller's barge-in and the pre-render (:func:`may_prerender`) all ask these questions of one
snapshot, so "may a filler speak now?" has one answer everywhere.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

MAX_SPEECH_GAP = 0.1
"""Largest ``min_consecutive_speech_delay`` (seconds) with which fillers still play.

LiveKit holds the next speech until that gap has passed since the last speech played, and
a cut filler counts: a filler cut for the tool's answer would delay the answer by up to
the gap. Above this bound fillers are skipped (``Verdict.SPEECH_GAP``).
"""


class Verdict(str, enum.Enum):
    """The answer to "may a filler speak now?"; every value but ``SPEAK`` names why not."""

    SPEAK = "speak"
    CLOSED = "closed"
    """The controller is closed."""
    NO_ACTIVITY = "no_activity"
    """The session is not running, or is closing."""
    PAUSED = "paused"
    """The activity is pausing or draining for an AgentTask or a hand-off."""
    HANDOFF = "handoff"
    """Another agent (an AgentTask, a hand-off target) holds the conversation."""
    USER_SPEAKING = "user_speaking"
    BUSY = "busy"
    """Other speech is playing or queued."""
    TOOL_INTERRUPTED = "tool_interrupted"
    """The step that called the tool was interrupted."""
    SPEECH_GAP = "speech_gap"
    """``min_consecutive_speech_delay`` is above :data:`MAX_SPEECH_GAP`."""
    TTS_DOWN = "tts_down"
    """The session's TTS failed on real speech: fillers wait until real speech plays (a
    filler would reset LiveKit's count of TTS errors and hide a dead TTS from it)."""


@dataclass(frozen=True)
class Floor:
    """What the floor decision needs to know, read at one instant (all fields plain)."""

    open: bool = True
    """The controller is attached and not closed."""
    running: bool = True
    """The session has an activity that ``say()`` would use."""
    paused: bool = False
    """That activity is pausing or draining."""
    owner_active: bool = True
    """That activity belongs to the filler's agent."""
    owner_current: bool = True
    """The session's current agent is the filler's agent (switches first in a hand-off)."""
    user_speaking: bool = False
    busy: bool = False
    """Speech is playing or queued."""
    tool_interrupted: bool = False
    speech_gap: float = 0.0
    """The agent's (else the session's) ``min_consecutive_speech_delay``, in seconds."""
    tts_down: bool = False
    """The session's TTS failed on real speech and no real speech has played since."""
    unasked_task: bool = False
    """The filler's agent is an AgentTask that did not ask for it (``say_filler()`` without
    ``for_agent``): a filler must not talk into a sub-agent's conversation."""
    sounding: bool = False
    """The filler asked about is already sounding (its audio output started it)."""
    queued: bool = False
    """Speech is scheduled but not playing yet (part of ``busy``)."""
    synthesizing: bool = False
    """The agent is initializing or thinking, or real speech is scheduled but not audible
    yet: the session's TTS may be busy with its own speech."""


def may_start(floor: Floor, *, after_cut: bool = False) -> Verdict:
    """May a filler be scheduled now? Only into a quiet, running activity of its own agent,
    with a TTS that is not down.

    ``after_cut``: a message that follows the filler it has just cut (the failure message):
    that filler, still finishing its interruption, does not make the floor busy.
    """
    if not floor.open:
        return Verdict.CLOSED
    if not floor.running:
        return Verdict.NO_ACTIVITY
    if floor.paused:
        return Verdict.PAUSED
    if not (floor.owner_active and floor.owner_current) or floor.unasked_task:
        return Verdict.HANDOFF
    if floor.user_speaking:
        return Verdict.USER_SPEAKING
    if floor.busy and not after_cut:
        return Verdict.BUSY
    if floor.tool_interrupted:
        return Verdict.TOOL_INTERRUPTED
    if floor.speech_gap > MAX_SPEECH_GAP:
        return Verdict.SPEECH_GAP
    if floor.tts_down:
        return Verdict.TTS_DOWN
    return Verdict.SPEAK


def may_keep_playing(floor: Floor, *, allow_interruptions: bool) -> Verdict:
    """May a scheduled filler go on sounding (checked per audio frame, every 10 ms, and as
    the caller starts talking)?

    Its agent must still hold the conversation. A caller who starts talking stops an
    interruptible filler, and a non-interruptible one that is not sounding yet (it never
    starts over them); one already sounding plays on. Its own playing does not count as busy.
    """
    if not floor.open:
        return Verdict.CLOSED
    if not floor.owner_current:
        return Verdict.HANDOFF
    if floor.user_speaking and (allow_interruptions or not floor.sounding):
        return Verdict.USER_SPEAKING
    return Verdict.SPEAK


def may_prerender(floor: Floor) -> bool:
    """May a pre-render use the TTS now? Only while the session's own speech cannot need it:
    a running activity, nothing queued or being synthesized, the caller quiet."""
    return (
        floor.open
        and floor.running
        and not floor.paused
        and not floor.queued
        and not floor.synthesizing
        and not floor.user_speaking
    )
