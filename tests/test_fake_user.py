"""Tests for the simulated caller in ``livekit_filler.testing.fake_user``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

import pytest
from livekit.agents import Agent, llm
from livekit.agents.voice import AgentSession
from livekit.agents.voice.events import (
    AgentStateChangedEvent,
    ConversationItemAddedEvent,
    EventTypes,
    UserStateChangedEvent,
)

from livekit_filler.testing.fake_llm import FakeLLM, FakeResponse
from livekit_filler.testing.fake_tts import FakeTTS
from livekit_filler.testing.fake_user import UserSpeechSimulator
from livekit_filler.testing.session import make_session
from livekit_filler.testing.timeline import TimelineRecorder

LONG_TEXT = "This sentence is long enough to still be playing when the user talks."


class _Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")


def _session(
    user: UserSpeechSimulator, *, fake_llm: FakeLLM, tts: FakeTTS | None = None, **kwargs: Any
) -> AgentSession[None]:
    return make_session(llm=fake_llm, tts=tts, **user.session_kwargs(**kwargs))


async def _next_event(
    session: AgentSession[None],
    event: EventTypes,
    predicate: Callable[[Any], bool],
    *,
    timeout: float = 2.0,
) -> Any:
    """Wait for the next ``event`` whose payload satisfies ``predicate``."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def handler(ev: Any) -> None:
        if not fut.done() and predicate(ev):
            fut.set_result(ev)

    session.on(event, handler)
    try:
        return await asyncio.wait_for(fut, timeout)
    finally:
        session.off(event, handler)


def _is_assistant_message(ev: ConversationItemAddedEvent) -> bool:
    item = ev.item
    return isinstance(item, llm.ChatMessage) and item.role == "assistant"


async def test_user_speech_makes_user_state_speaking_then_listening() -> None:
    user = UserSpeechSimulator()
    loop = asyncio.get_running_loop()
    states: list[tuple[float, str]] = []

    async with _session(user, fake_llm=FakeLLM()) as session:

        def on_user_state(ev: UserStateChangedEvent) -> None:
            states.append((loop.time(), ev.new_state))

        session.on("user_state_changed", on_user_state)
        user.install(session)
        await session.start(_Assistant())

        utterance = await user.say("hello", duration=0.3)

    assert [state for _, state in states] == ["speaking", "listening"]
    assert utterance.started_at is not None
    assert utterance.ended_at is not None
    (spoke_at, _), (silent_at, _) = states
    assert spoke_at - utterance.started_at == pytest.approx(0.0, abs=0.05)
    assert silent_at - spoke_at == pytest.approx(0.3, abs=0.08)


@pytest.mark.parametrize(
    ("streaming_stt", "turn_detection"),
    [(True, "vad"), (False, "vad"), (True, "stt")],
    ids=["streaming-vad", "stream_adapter-vad", "streaming-stt"],
)
async def test_committed_user_turn_reaches_llm_and_agent_replies(
    streaming_stt: bool, turn_detection: Literal["vad", "stt"]
) -> None:
    user = UserSpeechSimulator(streaming_stt=streaming_stt)
    fake_llm = FakeLLM({"What's the weather?": FakeResponse(text="Sunny all day.")}, default=None)

    async with _session(user, fake_llm=fake_llm, turn_detection=turn_detection) as session:
        user.install(session)
        await session.start(_Assistant())

        reply = asyncio.ensure_future(
            _next_event(session, "conversation_item_added", _is_assistant_message)
        )
        utterance = await user.say("What's the weather?", duration=0.3)
        ev: ConversationItemAddedEvent = await reply

    assert utterance.transcribed
    assert len(fake_llm.calls) == 1
    last = fake_llm.calls[0].items[-1]
    assert isinstance(last, llm.ChatMessage)
    assert last.role == "user"
    assert last.text_content == "What's the weather?"
    assert isinstance(ev.item, llm.ChatMessage)
    assert ev.item.text_content == "Sunny all day."


async def test_user_speech_interrupts_interruptible_say() -> None:
    user = UserSpeechSimulator()
    tts = FakeTTS(ttfb=0.02, seconds_per_char=0.03)

    async with _session(
        user, fake_llm=FakeLLM(default=None), tts=tts, min_interruption_duration=0.2
    ) as session:
        rec = TimelineRecorder.install(session)
        user.install(session, timeline=rec)
        await session.start(_Assistant())

        speaking = asyncio.ensure_future(
            _next_event(
                session,
                "agent_state_changed",
                lambda ev: isinstance(ev, AgentStateChangedEvent) and ev.new_state == "speaking",
            )
        )
        handle = session.say(LONG_TEXT, allow_interruptions=True)
        await speaking
        utterance = await user.say("wait a second", duration=0.5)
        await asyncio.wait_for(handle.wait_for_playout(), 1.0)

    assert handle.interrupted
    assert utterance.started_at is not None
    segment = rec.audio_output.segments[0]
    assert segment.interrupted
    assert segment.end is not None
    # cut once min_interruption_duration (0.2 s) of speech was heard, long before the
    # ~2 s of audio ran out
    assert 0.15 <= segment.end - utterance.started_at < 0.5
    user_parts = [u for u in rec.utterances if u.speaker == "user"]
    assert [u.text for u in user_parts] == ["wait a second"]
    assert user_parts[0].duration == pytest.approx(0.5, abs=0.05)


async def test_user_speech_does_not_cut_uninterruptible_say_and_is_not_heard() -> None:
    user = UserSpeechSimulator()
    tts = FakeTTS(ttfb=0.02, seconds_per_char=0.02)
    fake_llm = FakeLLM(default=None)

    async with _session(user, fake_llm=fake_llm, tts=tts, min_interruption_duration=0.2) as session:
        rec = TimelineRecorder.install(session)
        user.install(session)
        await session.start(_Assistant())

        speaking = asyncio.ensure_future(
            _next_event(
                session,
                "agent_state_changed",
                lambda ev: isinstance(ev, AgentStateChangedEvent) and ev.new_state == "speaking",
            )
        )
        handle = session.say(LONG_TEXT, allow_interruptions=False)
        await speaking
        utterance = await user.say("wait a second", duration=0.4)
        await asyncio.wait_for(handle.wait_for_playout(), 2.0)

    assert not handle.interrupted
    assert not rec.audio_output.segments[0].interrupted
    # the session fed silence to the STT while the speech could not be interrupted
    assert not utterance.transcribed
    assert fake_llm.calls == []


async def test_no_tasks_leak_after_session_close() -> None:
    before = asyncio.all_tasks()
    user = UserSpeechSimulator(streaming_stt=True)

    async with _session(user, fake_llm=FakeLLM()) as session:
        user.install(session)
        await session.start(_Assistant())
        reply = asyncio.ensure_future(
            _next_event(session, "conversation_item_added", _is_assistant_message)
        )
        await user.say("hello", duration=0.2)
        await reply
        # close while the user is mid-utterance, with the STT stream still open
        user.speak("and one more thing", duration=1.0)
        await asyncio.sleep(0.1)

    for _ in range(3):
        await asyncio.sleep(0)
    leaked = asyncio.all_tasks() - before
    assert not leaked, leaked


async def test_speak_validates_its_arguments_and_state() -> None:
    user = UserSpeechSimulator()
    with pytest.raises(RuntimeError, match="install"):
        user.speak("hi")

    async with _session(user, fake_llm=FakeLLM()) as session:
        user.install(session)
        with pytest.raises(ValueError, match="duration"):
            user.speak("hi", duration=0)
        user.speak("hi", duration=0.5)
        with pytest.raises(RuntimeError, match="already speaking"):
            user.speak("again")
        with pytest.raises(RuntimeError, match="another session"):
            user.install(make_session(llm=FakeLLM(), tts=None))


def test_constructor_rejects_bad_durations() -> None:
    with pytest.raises(ValueError, match="transcript_delay"):
        UserSpeechSimulator(transcript_delay=-1.0)
    with pytest.raises(ValueError, match="frame_duration"):
        UserSpeechSimulator(frame_duration=0.0)
