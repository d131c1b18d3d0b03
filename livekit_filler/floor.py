"""Who holds the floor: the one place that decides whether a filler may start or keep sounding.

:func:`read_floor` takes a synchronous snapshot of the session (:class:`Floor`);
:func:`may_start` and :func:`may_keep_playing` are pure decisions on it. The filler stream,
``say_filler``, the failure message, the per-frame audio gate and the hand-off watch all ask
these two questions, so "may a filler speak now?" has one answer everywhere.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent, AgentSession
from livekit.agents.utils import is_given
from livekit.agents.voice import SpeechHandle

from ._livekit_private import activity_view

HANDOFF_POLL_INTERVAL = 0.01
"""Seconds between checks for a hand-off while a filler is queued or playing."""

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


def may_start(floor: Floor) -> Verdict:
    """May a filler be scheduled now? Only into a quiet, running activity of its own agent."""
    if not floor.open:
        return Verdict.CLOSED
    if not floor.running:
        return Verdict.NO_ACTIVITY
    if floor.paused:
        return Verdict.PAUSED
    if not (floor.owner_active and floor.owner_current):
        return Verdict.HANDOFF
    if floor.user_speaking:
        return Verdict.USER_SPEAKING
    if floor.busy:
        return Verdict.BUSY
    if floor.tool_interrupted:
        return Verdict.TOOL_INTERRUPTED
    if floor.speech_gap > MAX_SPEECH_GAP:
        return Verdict.SPEECH_GAP
    return Verdict.SPEAK


def may_keep_playing(floor: Floor, *, allow_interruptions: bool) -> Verdict:
    """May a scheduled filler go on sounding (checked per audio frame and every 10 ms)?

    Its agent must still hold the conversation; a user who starts talking stops it unless
    the filler is not interruptible. Its own playing does not count as busy.
    """
    if not floor.open:
        return Verdict.CLOSED
    if not floor.owner_current:
        return Verdict.HANDOFF
    if floor.user_speaking and allow_interruptions:
        return Verdict.USER_SPEAKING
    return Verdict.SPEAK


def read_floor(
    session: AgentSession[Any],
    agent: Agent,
    *,
    open: bool = True,
    tool_handle: SpeechHandle | None = None,
) -> Floor:
    """Snapshot ``session`` for a filler spoken by ``agent`` (never raises)."""
    view = activity_view(session)
    try:
        current: Agent | None = session.current_agent
    except RuntimeError:  # no agent: the session is not running
        current = None
    speech = session.current_speech
    gap = agent.min_consecutive_speech_delay
    return Floor(
        open=open,
        running=view is not None,
        paused=view is not None and view.paused,
        owner_active=view is not None and view.agent is agent,
        owner_current=current is agent,
        user_speaking=session.user_state == "speaking",
        busy=(speech is not None and not speech.done()) or (view is not None and view.queued),
        tool_interrupted=tool_handle is not None and tool_handle.interrupted,
        speech_gap=gap if is_given(gap) else session.options.min_consecutive_speech_delay,
    )


async def follow(
    handle: SpeechHandle,
    *,
    keep_playing: Callable[[], Verdict],
    on_lost: Callable[[Verdict], object],
) -> None:
    """Wait for a filler to end, calling ``on_lost`` once as soon as it must stop.

    LiveKit switches ``current_agent`` synchronously at the very start of an AgentTask or
    an ``update_agent`` hand-off, before the old activity pauses: polling every 10 ms is how
    a filler learns of it (there is no event for it).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def _on_done(_: SpeechHandle) -> None:
        if not done.done():
            done.set_result(None)

    handle.add_done_callback(_on_done)
    lost = False
    try:
        while not done.done():
            if not lost and not handle.interrupted:
                verdict = keep_playing()
                if verdict is not Verdict.SPEAK:
                    lost = True
                    on_lost(verdict)
            await asyncio.wait([done], timeout=HANDOFF_POLL_INTERVAL)
    finally:
        handle.remove_done_callback(_on_done)
