"""Pin every LiveKit private attribute livekit-filler reads (all in _livekit_private.py).

These fail loudly when a livekit-agents release renames or retypes them; pyproject pins
``livekit-agents>=1.8.9,<1.9`` and a failure here is the signal to revisit the pin.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from livekit.agents import Agent
from livekit.agents.voice.agent_activity import AgentActivity
from livekit.plugins import openai

from livekit_filler import _livekit_private
from livekit_filler.testing import FakeLLM, FakeTTS, make_session

PACKAGE = Path(_livekit_private.__file__).parent


async def test_session_activity_is_the_running_agent_activity() -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS()) as session:
        assert _livekit_private.current_activity(session) is None
        agent = Agent(instructions="x")
        await session.start(agent)
        activity = _livekit_private.current_activity(session)
        assert isinstance(activity, AgentActivity)
        assert activity.agent is agent
        assert activity is await session.wait_for_idle()


def test_openai_tts_keeps_voice_and_speed_in_private_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    nova = _livekit_private.tts_voice(openai.TTS(voice="nova"))
    assert "'voice': 'nova'" in nova
    assert nova == _livekit_private.tts_voice(openai.TTS(voice="nova"))
    assert nova != _livekit_private.tts_voice(openai.TTS(voice="ash"))
    assert nova != _livekit_private.tts_voice(openai.TTS(voice="nova", speed=1.3))
    assert "sk-test" not in nova


def test_fake_tts_voice_is_public_and_changes_with_its_sound() -> None:
    assert _livekit_private.tts_voice(FakeTTS(seconds_per_char=0.02)) != _livekit_private.tts_voice(
        FakeTTS(seconds_per_char=0.03)
    )


def test_no_other_module_reads_a_livekit_private_attribute() -> None:
    """Private LiveKit access lives in exactly one module."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_livekit_private.py" or "testing" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in {"session", "activity", "agent", "handle", "speech", "tts"}
            ):
                offenders.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not offenders, offenders


async def test_activity_speech_queue_holds_speech_said_but_not_yet_playing() -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS()) as session:
        await session.start(Agent(instructions="x"))
        activity = _livekit_private.current_activity(session)
        assert activity is not None
        assert not _livekit_private.has_queued_speech(activity)
        handle = session.say("queued until the scheduler pops it")
        assert _livekit_private.has_queued_speech(activity)
        assert isinstance(activity._speech_q, list)
        await handle
        assert not _livekit_private.has_queued_speech(activity)
