"""The session TTS of an agent: which TTS speaks for it, which model answers for it, and
whether its fillers must be audio.

An agent's own TTS or LLM wins over its session's; a session with no TTS (a realtime model)
speaks fillers with the filler voice (``filler_tts``) when one is given.
"""

from __future__ import annotations

from typing import Any

from livekit.agents import Agent, AgentSession, llm, tts as lk_tts, utils


def tts_of(
    agent: Agent, session: AgentSession[Any], filler_tts: lk_tts.TTS[Any] | None = None
) -> lk_tts.TTS[Any] | None:
    """The TTS that speaks fillers for ``agent``: its own, else the session's, else ``filler_tts``."""
    own = agent.tts
    tts = own if utils.is_given(own) else session.tts
    return tts if tts is not None else filler_tts


def llm_of(agent: Agent, session: AgentSession[Any]) -> llm.LLM[Any] | llm.RealtimeModel | None:
    """The model that answers for ``agent``: its own, else the session's."""
    own = agent.llm
    return own if utils.is_given(own) else session.llm


def needs_audio(agent: Agent, session: AgentSession[Any]) -> bool:
    """True when a filler of ``agent`` must be given as audio, never as text alone.

    With a realtime model, ``say(text)`` without audio goes through the model's own
    ``say()`` (added to its conversation and ``session.history`` whatever
    ``add_to_chat_ctx`` says) or fails; with audio output and no TTS LiveKit refuses it.
    A text-only pipeline session (no audio output) speaks fillers as text.
    """
    if isinstance(llm_of(agent, session), llm.RealtimeModel):
        return True
    output = session.output
    return output.audio is not None and output.audio_enabled
