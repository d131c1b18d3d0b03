"""The one place livekit-filler reads LiveKit private attributes or unexported modules.

- ``AgentSession`` has no public, synchronous way to reach the activity ``say()`` targets
  (``wait_for_idle()`` returns it, but only asynchronously). The floor decision must know
  synchronously whether ``say()`` would land in a paused or draining activity, and whether
  speech waits in its queue, so :func:`activity_view` reads ``AgentSession._activity`` and
  ``AgentActivity._speech_q``.
- A plugin TTS keeps its voice in private options (``tts._opts``), read for the audio cache key.
- A tool that declares no ``RunContext`` learns its call from LiveKit's task record
  (:func:`running_tool_call`), so ``@fillers`` never changes a tool's signature.
- ``ActivityClosedError``, ``is_context_type``, ``audio_frames_from_file`` and (for the
  testing kit) ``SessionConnectOptions`` live in modules that ``livekit.agents`` does not
  export.

Every read fails safe: an unknown layout reads as "not a safe moment" (a filler is skipped,
never played into the wrong place). ``tests/test_livekit_private.py`` pins each of them and
fails loudly when a livekit-agents release changes one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent, AgentSession
from livekit.agents.llm import FunctionCall
from livekit.agents.llm.utils import is_context_type
from livekit.agents.tts import TTS
from livekit.agents.utils.audio import audio_frames_from_file
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.agent_activity import ActivityClosedError, AgentActivity
from livekit.agents.voice.agent_session import SessionConnectOptions

from .log import logger

__all__ = [
    "ActivityClosedError",
    "ActivityView",
    "RunningToolCall",
    "SessionConnectOptions",
    "activity_view",
    "audio_frames_from_file",
    "is_context_type",
    "running_tool_call",
    "tts_voice",
]

_warned = False


@dataclass(frozen=True)
class ActivityView:
    """What the floor decision reads of the activity ``session.say()`` would use."""

    agent: Agent
    paused: bool
    """``scheduling_paused``: the activity is pausing or draining (say() would raise)."""
    queued: bool
    """Speech is scheduled but not playing yet."""


def activity_view(session: AgentSession[Any]) -> ActivityView | None:
    """The activity ``session.say()`` would use right now, or None (not running, closing)."""
    global _warned
    try:
        activity = session._activity
    except AttributeError:
        if not _warned:
            _warned = True
            logger.warning("this livekit-agents version hides AgentSession._activity")
        return None
    if not isinstance(activity, AgentActivity):
        return None
    try:
        queued = bool(activity._speech_q)
    except AttributeError:
        queued = True  # unknown layout: assume busy, a skipped filler is always safe
    return ActivityView(agent=activity.agent, paused=activity.scheduling_paused, queued=queued)


def tts_voice(tts: TTS[Any]) -> str | None:
    """Everything a TTS's options say about its sound, for the filler audio cache key.

    LiveKit's ``TTS`` base class has no voice property; the plugins keep voice, speed,
    language, instructions and so on in their private options (``tts._opts`` for OpenAI,
    Cartesia, ElevenLabs and others). Only plain values are kept (no clients, no objects
    whose repr changes between processes), so a persisted cache still matches next time.
    A public ``voice`` attribute is used when a TTS has one (the testing kit's FakeTTS does).

    Returns:
        None when the voice cannot be read: the caller must not share that TTS's audio.
    """
    public = getattr(tts, "voice", None)
    if isinstance(public, str):
        return public
    options = getattr(tts, "_opts", None)
    fields = getattr(options, "__dict__", None)
    if not isinstance(fields, dict):
        return None
    plain = {
        k: v
        for k, v in sorted(fields.items())
        if isinstance(v, str | int | float | bool) and "key" not in k.lower()
    }
    return repr(plain)


@dataclass(frozen=True)
class RunningToolCall:
    """The tool call the current task executes, as LiveKit's tool runner recorded it."""

    session: AgentSession[Any]
    function_call: FunctionCall
    speech_handle: SpeechHandle | None


def running_tool_call() -> RunningToolCall | None:
    """The tool call being executed by the current task, for a tool with no RunContext.

    LiveKit records it on the tool's task (``__livekit_agents_activity_task``) and the
    activity in a context variable; None when either is missing (a tool called outside a
    session, or a changed layout).
    """
    try:
        from livekit.agents.voice.agent import _get_activity_task_info
        from livekit.agents.voice.agent_activity import _AgentActivityContextVar
    except ImportError:
        return None
    task = asyncio.current_task()
    info = _get_activity_task_info(task) if task is not None else None
    activity = _AgentActivityContextVar.get(None)
    call = getattr(info, "function_call", None)
    if activity is None or not isinstance(call, FunctionCall):
        return None
    session = getattr(activity, "session", None)
    if not isinstance(session, AgentSession):
        return None
    handle = getattr(info, "speech_handle", None)
    return RunningToolCall(session, call, handle if isinstance(handle, SpeechHandle) else None)
