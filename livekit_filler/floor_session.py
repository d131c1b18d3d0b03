"""The floor read from a live session, and a filler followed until it must stop.

:func:`read_floor` is the one place the floor's inputs (:class:`~livekit_filler.floor.Floor`)
are read from an ``AgentSession``; :func:`follow` asks
:func:`~livekit_filler.floor.may_keep_playing` every 10 ms while a filler plays. The decisions
themselves are pure, in :mod:`livekit_filler.floor`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from livekit.agents import Agent, AgentSession, AgentTask
from livekit.agents.utils import is_given
from livekit.agents.voice import SpeechHandle

from ._livekit_private import activity_view
from .floor import Floor, Verdict
from .marks import is_filler_speech

HANDOFF_POLL_INTERVAL = 0.01
"""Seconds between checks for a hand-off while a filler is queued or playing."""


def read_floor(
    session: AgentSession[Any],
    agent: Agent,
    *,
    open: bool = True,
    tool_handle: SpeechHandle | None = None,
    tts_down: bool = False,
    asked: bool = True,
    sounding: bool = False,
) -> Floor:
    """Snapshot ``session`` for a filler spoken by ``agent`` (never raises).

    ``asked``: False for a filler nobody asked ``agent`` for (``say_filler()`` without
    ``for_agent``); ``sounding``: the filler asked about is already sounding.
    """
    view = activity_view(session)
    try:
        current: Agent | None = session.current_agent
    except RuntimeError:  # no agent: the session is not running
        current = None
    speech = session.current_speech
    gap = agent.min_consecutive_speech_delay
    queued = view is not None and view.queued
    state = session.agent_state
    return Floor(
        open=open,
        running=view is not None,
        paused=view is not None and view.paused,
        owner_active=view is not None and view.agent is agent,
        owner_current=current is agent,
        user_speaking=session.user_state == "speaking",
        busy=(speech is not None and not speech.done()) or queued,
        tool_interrupted=tool_handle is not None and tool_handle.interrupted,
        speech_gap=gap if is_given(gap) else session.options.min_consecutive_speech_delay,
        tts_down=tts_down,
        unasked_task=not asked and isinstance(agent, AgentTask),
        sounding=sounding,
        queued=queued,
        synthesizing=state in ("initializing", "thinking")
        or (speech is not None and state != "speaking" and not is_filler_speech(speech)),
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
