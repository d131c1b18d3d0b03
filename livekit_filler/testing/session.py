"""Build an :class:`AgentSession` suited to headless, offline tests."""

from __future__ import annotations

from typing import Any

from livekit.agents import APIConnectOptions, TurnHandlingOptions
from livekit.agents.llm import LLM, RealtimeModel
from livekit.agents.tts import TTS
from livekit.agents.voice import AgentSession

from .._livekit_private import session_connect_options

__all__ = ["make_session"]

# Fail fast: a scripted failure must not wait out LiveKit's retry back-off.
_NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.0, timeout=5.0)


def _turn_handling() -> TurnHandlingOptions:
    return {
        # the default TurnDetector needs a VAD and logs a warning without one
        "turn_detection": None,
        "endpointing": {"min_delay": 0.05, "max_delay": 0.5},
        # FakeAudioOutput cannot pause, so resuming after a false interruption is impossible
        "interruption": {"resume_false_interruption": False},
        "preemptive_generation": {"enabled": False},
    }


def make_session(
    *, llm: LLM[Any] | RealtimeModel, tts: TTS[Any] | None, **kwargs: Any
) -> AgentSession[None]:
    """Build an AgentSession that runs without a room, network or models.

    It has no VAD and no turn detector (pass ``vad=`` / ``stt=`` for audio user
    turns), short endpointing delays, no preemptive generation, no false-interruption
    resume, no user-away timer, and no LLM/TTS retries, so scripted failures
    surface at once. Install a :class:`TimelineRecorder` (or set
    ``session.output.audio``) before ``session.start()`` to get audio playback.

    Example:
        ```python
        async with make_session(llm=FakeLLM(), tts=FakeTTS()) as session:
            rec = TimelineRecorder.install(session)
            await session.start(MyAgent())
        ```

    Args:
        llm: The LLM, usually a :class:`FakeLLM`, or a speech-to-speech model such as
            :class:`FakeRealtimeModel` (then ``tts=None``).
        tts: The TTS, usually a :class:`FakeTTS`; None for text-only replies.
        **kwargs: Other ``AgentSession`` arguments; they override these defaults.
            A ``turn_handling`` mapping is merged key by key over the defaults.

    Returns:
        A session that is not started yet.
    """
    turn_handling = _turn_handling()
    overrides: TurnHandlingOptions | None = kwargs.pop("turn_handling", None)
    if overrides:
        turn_handling.update(overrides)
    options: dict[str, Any] = {
        "vad": None,
        "user_away_timeout": None,
    }
    conn_options = session_connect_options(
        llm_conn_options=_NO_RETRY, tts_conn_options=_NO_RETRY, stt_conn_options=_NO_RETRY
    )
    if conn_options is not None:
        options["conn_options"] = conn_options
    options.update(kwargs)
    if tts is not None:
        options["tts"] = tts
    return AgentSession(llm=llm, turn_handling=turn_handling, **options)
