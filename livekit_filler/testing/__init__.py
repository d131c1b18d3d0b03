"""Fakes and a timeline recorder for testing LiveKit agents offline, in real time.

Drive a real :class:`~livekit.agents.AgentSession` with a scripted LLM and a TTS
that makes audible tones, then assert on what was actually played, and when::

    from livekit_filler.testing import (
        FakeLLM, FakeResponse, FakeTTS, TimelineRecorder, format_timeline, make_session,
    )

    async def test_greeting() -> None:
        llm = FakeLLM({"Hi": FakeResponse(text="Hello! How can I help?")})
        async with make_session(llm=llm, tts=FakeTTS(seconds_per_char=0.01)) as session:
            rec = TimelineRecorder.install(session)  # before session.start()
            await session.start(MyAgent())
            await session.run(user_input="Hi")
        print(format_timeline(rec.utterances))

``make_session`` is a thin wrapper around ``AgentSession(llm=FakeLLM(...), tts=FakeTTS())``
with test-friendly defaults; a plain ``AgentSession`` works too.
"""

from __future__ import annotations

from .fake_audio import FakeAudioOutput, FakeTextOutput, PlayedSegment
from .fake_llm import FakeLLM, FakeResponse, FakeToolCall
from .fake_realtime import FakeRealtimeModel, FakeRealtimeSession
from .fake_tts import FakeTTS
from .fake_user import FakeAudioInput, FakeSTT, FakeVAD, UserSpeechSimulator, UserUtterance
from .session import make_session
from .timeline import (
    TimelineRecorder,
    Utterance,
    dead_air,
    first_after,
    format_timeline,
    longest_silence,
    overlaps,
    user_speaking_spans,
)

__all__ = [
    "FakeAudioInput",
    "FakeAudioOutput",
    "FakeLLM",
    "FakeRealtimeModel",
    "FakeRealtimeSession",
    "FakeResponse",
    "FakeSTT",
    "FakeTTS",
    "FakeTextOutput",
    "FakeToolCall",
    "FakeVAD",
    "PlayedSegment",
    "TimelineRecorder",
    "UserSpeechSimulator",
    "UserUtterance",
    "Utterance",
    "dead_air",
    "first_after",
    "format_timeline",
    "longest_silence",
    "make_session",
    "overlaps",
    "user_speaking_spans",
]
