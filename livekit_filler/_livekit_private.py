"""The one place livekit-filler reads LiveKit private attributes.

``AgentSession`` has no public, synchronous way to reach its current ``AgentActivity``
(``wait_for_idle()`` returns it, but only asynchronously). ``FillerController.say_filler``
must decide synchronously whether ``say()`` would land in a paused or draining activity,
so it reads ``AgentSession._activity`` and ``AgentActivity._speech_q`` here (and a plugin
TTS's private voice option, for the audio cache key). ``tests/test_livekit_private.py``
fails loudly when a LiveKit release renames or retypes them; pyproject pins
``livekit-agents<1.9``.
"""

from __future__ import annotations

from typing import Any

from livekit.agents import AgentSession
from livekit.agents.tts import TTS
from livekit.agents.voice.agent_activity import AgentActivity

from .log import logger

_warned = False


def current_activity(session: AgentSession[Any]) -> AgentActivity | None:
    """Return the activity ``session.say()`` would use when it is not paused, else None."""
    global _warned
    try:
        activity = session._activity
    except AttributeError:
        if not _warned:
            _warned = True
            logger.warning("this livekit-agents version hides AgentSession._activity")
        return None
    return activity if isinstance(activity, AgentActivity) else None


def has_queued_speech(activity: AgentActivity) -> bool:
    """True when ``activity`` has speech scheduled but not yet playing (``_speech_q``).

    ``current_speech`` only shows what plays; a ``say()`` made an instant ago waits in the
    scheduler's heap, and a filler queued behind it would delay what comes next.
    """
    try:
        return bool(activity._speech_q)
    except AttributeError:
        return True  # unknown layout: assume busy, a skipped filler is always safe


def tts_voice(tts: TTS[Any]) -> str:
    """Everything a TTS's options say about its sound, for the filler audio cache key.

    LiveKit's ``TTS`` base class has no voice property; the plugins keep voice, speed,
    language, instructions and so on in their private options (``tts._opts`` for OpenAI,
    Cartesia, ElevenLabs and others). Only plain values are kept (no clients, no objects
    whose repr changes between processes), so a persisted cache still matches next time.
    A public ``voice`` attribute is used when a TTS has one (the testing kit's FakeTTS does).
    """
    public = getattr(tts, "voice", None)
    if isinstance(public, str):
        return public
    options = getattr(tts, "_opts", None)
    fields = getattr(options, "__dict__", None)
    if not isinstance(fields, dict):
        return ""
    plain = {
        k: v
        for k, v in sorted(fields.items())
        if isinstance(v, str | int | float | bool) and "key" not in k.lower()
    }
    return repr(plain)
