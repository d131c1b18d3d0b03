"""Tests for livekit_filler.testing: the fakes drive a real AgentSession, offline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import (
    Agent,
    AgentSession,
    APIConnectionError,
    RunResult,
    function_tool,
    llm,
)
from livekit.agents.voice.events import ErrorEvent, UserStateChangedEvent

import livekit_filler.testing as kit
from livekit_filler.marks import mark_filler
from livekit_filler.testing import (
    FakeAudioOutput,
    FakeLLM,
    FakeResponse,
    FakeTextOutput,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    Utterance,
    dead_air,
    first_after,
    format_timeline,
    longest_silence,
    make_session,
    overlaps,
)

SPC = 0.02  # FakeTTS seconds per character
# Real-time scheduling slack: playback may end a little late, never early.
SLACK = 0.1


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")
        self.lookups: list[str] = []

    @function_tool
    async def lookup_weather(self, city: str) -> str:
        """Look up the weather in a city.

        Args:
            city: The city.
        """
        self.lookups.append(city)
        await asyncio.sleep(0.1)
        return f"sunny in {city}"


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def _assert_no_leaked_tasks() -> None:
    # let cancelled callbacks settle before looking
    for _ in range(5):
        if not _other_tasks():
            return
        await asyncio.sleep(0.01)
    assert not _other_tasks()


def _agent_utterances(rec: TimelineRecorder) -> list[Utterance]:
    return [u for u in rec.utterances if u.speaker == "agent"]


# -- a real session ------------------------------------------------------------------


async def test_say_plays_for_text_length_and_is_recorded_with_text() -> None:
    fake_tts = FakeTTS(ttfb=0.02, seconds_per_char=SPC)
    text = "Hello there, friend"
    async with make_session(llm=FakeLLM(), tts=fake_tts) as session:
        rec = TimelineRecorder.install(session)
        await session.start(Assistant())
        rec.mark("say")
        await session.say(text).wait_for_playout()

    (u,) = _agent_utterances(rec)
    assert u.text == text
    assert (u.kind, u.agent, u.interrupted) == ("speech", "Assistant", False)
    expected = len(text) * SPC
    assert expected - 0.01 <= u.duration <= expected + SLACK
    assert u.start >= rec.markers["say"][0]
    assert fake_tts.synthesized == [text]
    assert fake_tts.characters_synthesized == len(text)
    assert rec.audio_output.segments[0].pushed_duration == pytest.approx(expected, abs=0.01)
    await _assert_no_leaked_tasks()


async def test_llm_reply_to_user_input_is_recorded() -> None:
    fake_llm = FakeLLM({"Hi": FakeResponse(text="Hello! How can I help?")})
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=0.02, seconds_per_char=SPC)) as session:
        rec = TimelineRecorder.install(session)
        await session.start(Assistant())
        result: RunResult[None] = await session.run(user_input="Hi")

    result.expect.next_event().is_message(role="assistant")
    (u,) = _agent_utterances(rec)
    assert u.text == "Hello! How can I help?"
    assert not u.interrupted
    last = fake_llm.calls[-1].items[-1]
    assert isinstance(last, llm.ChatMessage) and last.text_content == "Hi"
    await _assert_no_leaked_tasks()


async def test_scripted_tool_call_runs_the_tool_and_the_reply_after_it_is_recorded() -> None:
    fake_llm = FakeLLM(
        {
            "Weather in Paris?": FakeResponse(
                text="Let me check.",
                tool_calls=[FakeToolCall("lookup_weather", {"city": "Paris"})],
            ),
            "sunny in Paris": FakeResponse(text="It is sunny in Paris."),
        }
    )
    agent = Assistant()
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=0.02, seconds_per_char=SPC)) as session:
        rec = TimelineRecorder.install(session)
        await session.start(agent)
        result: RunResult[None] = await session.run(user_input="Weather in Paris?")

    result.expect.contains_function_call(name="lookup_weather", arguments={"city": "Paris"})
    assert agent.lookups == ["Paris"]
    texts = [u.text for u in _agent_utterances(rec)]
    assert texts == ["Let me check.", "It is sunny in Paris."]
    after_tool = fake_llm.calls[-1].items[-1]
    assert isinstance(after_tool, llm.FunctionCallOutput)
    assert after_tool.output == "sunny in Paris"
    await _assert_no_leaked_tasks()


async def test_interrupted_say_is_recorded_as_cut_and_shorter() -> None:
    text = "This sentence is long enough to be cut off."
    async with make_session(llm=FakeLLM(), tts=FakeTTS(ttfb=0.02, seconds_per_char=SPC)) as session:
        rec = TimelineRecorder.install(session)
        await session.start(Assistant())
        handle = session.say(text)
        await asyncio.sleep(0.3)
        handle.interrupt()
        await handle.wait_for_playout()

    (u,) = _agent_utterances(rec)
    assert u.interrupted
    assert u.text == text
    assert 0.1 < u.duration < len(text) * SPC - 0.3
    assert "(cut)" in format_timeline(rec.utterances)
    await _assert_no_leaked_tasks()


async def test_say_with_custom_audio_is_recorded_with_its_text() -> None:
    async def frames() -> AsyncIterator[rtc.AudioFrame]:
        for _ in range(3):
            yield rtc.AudioFrame(b"\0\0" * 2400, 24000, 1, 2400)

    fake_tts = FakeTTS()
    async with make_session(llm=FakeLLM(), tts=fake_tts) as session:
        rec = TimelineRecorder.install(session)
        await session.start(Assistant())
        await session.say("Prerecorded", audio=frames()).wait_for_playout()

    (u,) = _agent_utterances(rec)
    assert u.text == "Prerecorded"
    assert 0.3 - 0.01 <= u.duration <= 0.3 + SLACK
    assert fake_tts.synthesized == []


async def _speak_through_a_failing_tts(
    fake_tts: FakeTTS,
) -> tuple[list[str], list[ErrorEvent]]:
    errors: list[ErrorEvent] = []
    async with make_session(llm=FakeLLM(), tts=fake_tts) as session:
        session.on("error", errors.append)
        rec = TimelineRecorder.install(session)
        await session.start(Assistant())
        await asyncio.wait_for(session.say("boom goes the speaker").wait_for_playout(), 1.0)
        await asyncio.wait_for(session.say("Still here.").wait_for_playout(), 1.0)
    return [u.text for u in _agent_utterances(rec)], errors


@pytest.mark.allow_error_logs  # LiveKit logs "Error in _tts_task" for any TTS failure
async def test_failing_tts_drops_that_speech_and_the_session_goes_on() -> None:
    fake_tts = FakeTTS(ttfb=0.02, seconds_per_char=SPC, fail_on=lambda t: "boom" in t)
    spoken, errors = await _speak_through_a_failing_tts(fake_tts)
    assert spoken == ["Still here."]
    assert fake_tts.synthesized == ["boom goes the speaker", "Still here."]
    assert len(errors) == 1
    assert isinstance(errors[0].error.error, APIConnectionError)
    assert not errors[0].error.recoverable
    await _assert_no_leaked_tasks()


async def test_hanging_tts_produces_nothing_until_interrupted() -> None:
    fake_tts = FakeTTS(ttfb=0.01, seconds_per_char=SPC, hang_on=lambda t: "hang" in t)
    async with make_session(llm=FakeLLM(), tts=fake_tts) as session:
        rec = TimelineRecorder.install(session)
        await session.start(Assistant())
        handle = session.say("hang on")
        await asyncio.sleep(0.2)
        assert not handle.done()
        handle.interrupt()
        await asyncio.wait_for(handle.wait_for_playout(), 1.0)

    assert rec.utterances == []
    await _assert_no_leaked_tasks()


async def test_marked_filler_and_filler_texts_are_labelled_filler() -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS(ttfb=0.01, seconds_per_char=0.01)) as s:
        rec = TimelineRecorder.install(s, filler_texts=["Hmm."])
        await s.start(Assistant())
        await s.say("Hmm.").wait_for_playout()
        marked = s.say("One moment.")
        mark_filler(marked)
        await marked.wait_for_playout()
        await s.say("Done.").wait_for_playout()

    assert [(u.text, u.kind) for u in rec.utterances] == [
        ("Hmm.", "filler"),
        ("One moment.", "filler"),
        ("Done.", "speech"),
    ]
    assert first_after(rec.utterances, 0.0, kind="speech") == rec.utterances[2]


# -- the fakes on their own ----------------------------------------------------------


async def test_fake_llm_picks_reply_by_trigger_and_streams_tool_calls() -> None:
    fake = FakeLLM(
        {
            "go": FakeResponse(
                text="one two three four five", tool_calls=[FakeToolCall("t", {"a": 1})]
            )
        },
        default=None,
        ttft=0.0,
    )
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content="go")
    chunks = [c async for c in fake.chat(chat_ctx=ctx).to_str_iterable()]
    assert "".join(chunks) == "one two three four five"
    assert len(chunks) > 1

    response = await fake.chat(chat_ctx=ctx).collect()
    (call,) = response.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("t", {"a": 1})

    other = llm.ChatContext.empty()
    other.add_message(role="user", content="unknown")
    assert (await fake.chat(chat_ctx=other).collect()).text == ""
    assert len(fake.calls) == 3
    await fake.aclose()


async def test_fake_llm_callable_script_and_cancellation() -> None:
    fake = FakeLLM(lambda ctx: FakeResponse(text=f"{len(ctx.items)} items", ttft=5.0))
    stream = fake.chat(chat_ctx=llm.ChatContext.empty())
    await asyncio.sleep(0.01)
    await stream.aclose()  # cancels the 5 s wait at once
    assert fake.response_for(llm.ChatContext.empty()) == FakeResponse(text="0 items", ttft=5.0)
    await _assert_no_leaked_tasks()


async def test_fake_tts_makes_audible_pcm_of_the_right_length() -> None:
    fake = FakeTTS(ttfb=0.0, seconds_per_char=0.01, sample_rate=16000)
    frame = await fake.synthesize("abcdefghij").collect()
    assert frame.sample_rate == 16000 and frame.num_channels == 1
    assert frame.duration == pytest.approx(0.1, abs=0.001)
    assert max(abs(s) for s in frame.data) > 500  # not silence


def _frame(seconds: float) -> rtc.AudioFrame:
    n = int(24000 * seconds)
    return rtc.AudioFrame(b"\0\0" * n, 24000, 1, n)


async def test_fake_audio_output_finishes_each_segment_exactly_once() -> None:
    out = FakeAudioOutput()
    finished: list[Any] = []
    out.on("playback_finished", finished.append)
    await out.capture_frame(_frame(0.1))
    await out.capture_frame(_frame(0.05))
    out.flush()
    ev = await asyncio.wait_for(out.wait_for_playout(), 1.0)
    assert not ev.interrupted and ev.playback_position == pytest.approx(0.15)
    (seg,) = out.segments
    assert 0.15 <= seg.duration <= 0.15 + SLACK
    out.clear_buffer()  # nothing playing: no extra event
    await asyncio.sleep(0.05)
    assert len(finished) == 1


async def test_fake_audio_output_clear_cuts_playing_and_queued_segments() -> None:
    out = FakeAudioOutput()
    finished: list[Any] = []
    out.on("playback_finished", finished.append)
    await out.capture_frame(_frame(1.0))
    out.flush()
    await out.capture_frame(_frame(1.0))  # queued behind the first
    await asyncio.sleep(0.1)
    out.clear_buffer()
    await out.capture_frame(_frame(0.5))  # late frame of the cleared segment: dropped
    out.flush()
    await asyncio.wait_for(out.wait_for_playout(), 1.0)
    await asyncio.sleep(0.05)
    assert [e.interrupted for e in finished] == [True, True]
    assert 0.05 < finished[0].playback_position < 0.3
    assert finished[1].playback_position == 0.0
    (seg,) = out.segments  # the queued one never played
    assert seg.interrupted and seg.duration < 0.3


async def test_fake_text_output_records_segments() -> None:
    seen: list[str] = []
    out = FakeTextOutput(on_text=seen.append)
    await out.capture_text("Hel")
    await out.capture_text("lo")
    out.flush()
    await out.capture_text("")
    await out.capture_text("Bye")
    assert out.segments == ["Hello", "Bye"]
    assert out.text == "Hello\nBye"
    assert seen == ["Hel", "lo", "Bye"]


async def test_make_session_merges_turn_handling_overrides() -> None:
    session = make_session(
        llm=FakeLLM(), tts=None, turn_handling={"endpointing": {"min_delay": 0.2}}
    )
    assert isinstance(session, AgentSession)
    assert session.options.turn_handling["endpointing"]["min_delay"] == 0.2
    assert session.options.turn_handling["preemptive_generation"]["enabled"] is False
    await session.aclose()


def test_public_names_are_exported_and_sorted() -> None:
    assert kit.__all__ == sorted(kit.__all__)
    for name in kit.__all__:
        assert getattr(kit, name).__module__.startswith("livekit_filler.testing")


# -- analysis helpers ----------------------------------------------------------------


def _u(start: float, end: float, speaker: str = "agent", kind: str = "speech") -> Utterance:
    return Utterance(
        speaker="user" if speaker == "user" else "agent",
        text=f"{speaker}@{start}",
        start=start,
        end=end,
        kind="user" if speaker == "user" else ("filler" if kind == "filler" else "speech"),
    )


def test_overlaps_reports_agent_pairs_and_user_only_on_request() -> None:
    a, b = _u(0.0, 1.0), _u(0.5, 1.5, kind="filler")
    touching = _u(1.5, 2.0)
    user = _u(1.8, 2.5, speaker="user")
    user2 = _u(1.9, 2.2, speaker="user")
    timeline = [touching, user, b, a, user2]
    assert overlaps(timeline) == [(a, b)]
    assert overlaps(timeline, include_user=True) == [(a, b), (touching, user), (touching, user2)]
    assert overlaps([]) == []


def test_overlaps_finds_a_short_utterance_inside_a_long_one() -> None:
    long, inner, later = _u(0.0, 5.0), _u(1.0, 1.2), _u(4.0, 6.0)
    assert overlaps([long, inner, later]) == [(long, inner), (long, later)]


def test_dead_air_and_longest_silence() -> None:
    timeline = [_u(1.0, 2.0), _u(1.5, 2.5), _u(3.0, 3.5, speaker="user"), _u(5.0, 9.0)]
    # silent: 0-1, 2.5-3, 3.5-5 within [0, 6]
    assert dead_air(timeline, 0.0, 6.0) == pytest.approx(1.0 + 0.5 + 1.5)
    assert longest_silence(timeline, 0.0, 6.0) == pytest.approx(1.5)
    # clipped window inside one utterance
    assert dead_air(timeline, 5.5, 6.0) == 0.0
    assert longest_silence(timeline, 5.5, 6.0) == 0.0
    # empty timeline and empty window
    assert dead_air([], 2.0, 4.0) == pytest.approx(2.0)
    assert dead_air(timeline, 4.0, 4.0) == 0.0
    assert longest_silence([], 3.0, 1.0) == 0.0


def test_first_after_filters_by_time_kind_and_agent() -> None:
    a = Utterance("agent", "hi", 0.0, 1.0, agent="Greeter")
    f = Utterance("agent", "hmm", 2.0, 2.5, kind="filler", agent="Greeter")
    s = Utterance("agent", "done", 3.0, 4.0, agent="Booker")
    assert first_after([s, f, a], 0.5) == f
    assert first_after([s, f, a], 0.5, kind="speech") == s
    assert first_after([s, f, a], 0.0, agent="Greeter", kind="speech") == a
    assert first_after([s, f, a], 3.5) is None


def test_format_timeline_is_an_aligned_table() -> None:
    text = format_timeline(
        [
            Utterance("agent", "Hello", 0.0, 1.25, agent="Assistant"),
            Utterance("user", "Stop", 10.5, 11.0, kind="user"),
            Utterance("agent", "Sure", 1.5, 2.0, interrupted=True, agent="Assistant"),
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["start", "end", "who", "kind", "agent", "text"]
    assert [line.split()[-1] for line in lines[1:]] == ["Hello", "(cut)", "Stop"]
    # columns line up: every row's "who" column starts at the same offset
    offsets = {
        line.index(who) for line, who in zip(lines, ["who", "agent", "agent", "user"], strict=True)
    }
    assert len(offsets) == 1
    assert format_timeline([]) == "start  end  who  kind  agent  text"


async def test_recorder_keeps_user_utterances_states_and_markers() -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS(ttfb=0.01, seconds_per_char=0.01)) as s:
        rec = TimelineRecorder.install(s)
        await s.start(Assistant())
        rec.add_user_utterance("Hi there", 0.0, 0.2)
        s.emit(
            "user_state_changed", UserStateChangedEvent(old_state="listening", new_state="speaking")
        )
        t = rec.mark("tool_start")
        await s.say("Hello.").wait_for_playout()
        rec.detach()
        s.emit(
            "user_state_changed", UserStateChangedEvent(old_state="speaking", new_state="listening")
        )

    assert [(u.speaker, u.text) for u in rec.utterances] == [
        ("user", "Hi there"),
        ("agent", "Hello."),
    ]
    assert [state for _, state in rec.user_states] == ["speaking"]
    assert rec.markers["tool_start"] == [t] and 0.0 <= t <= rec.now()
    assert first_after(rec.utterances, 0.0, kind="user") == rec.utterances[0]
    with pytest.raises(ValueError, match="end"):
        rec.add_user_utterance("x", 2.0, 1.0)
