"""Filler audio and phrases: the rendered-audio cache, clips, picking, templates and languages.

Every session test runs a real ``AgentSession`` on the testing kit (FakeLLM, FakeTTS,
FakeAudioOutput through a TimelineRecorder) in real time and asserts on what was audible.
The process-wide audio cache is emptied around every test, so no test sees another's audio.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import filler_harness
import pytest
from filler_harness import ANSWER, QUESTION, RESULT, TTFB, Assistant, fillers_of, wait_until
from livekit import rtc
from livekit.agents import Agent, RunContext, function_tool, llm

from livekit_filler import FillerController, FillerSettings, fillers, is_filler_speech
from livekit_filler.disk_writer import flush
from livekit_filler.filler_voice import FillerVoice
from livekit_filler.settings import DEFAULT_BUSY_MESSAGE
from livekit_filler.sound_cache import FillerAudioCache, shared_cache
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    format_timeline,
    make_session,
    overlaps,
)
from livekit_filler.testing.fake_user import UserSpeechSimulator
from livekit_filler.tts_identity import sound_key

SPC = 0.01  # FakeTTS seconds per character
FILLER = "Hmm, one moment."
OTHER = "Let me see."


@pytest.fixture(autouse=True)
def empty_shared_cache() -> Any:
    """Each test starts and ends with an empty process-wide audio cache."""
    shared_cache().clear()
    yield
    shared_cache().clear()


def fake_tts(**overrides: Any) -> FakeTTS:
    values: dict[str, Any] = {"ttfb": TTFB, "seconds_per_char": SPC}
    values.update(overrides)
    return FakeTTS(**values)


def settings(**overrides: Any) -> FillerSettings:
    values: dict[str, Any] = {
        "delay": 0.1,
        "interval": 0.1,
        "max_count": 1,
        "phrases": [FILLER],
        "followup_phrases": [],
    }
    values.update(overrides)
    return FillerSettings.from_values(**values)


def tool_script(tool: str, arguments: dict[str, Any] | None = None) -> Any:
    """The LLM calls ``tool`` for any user message and answers ANSWER after it."""

    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        last = chat_ctx.items[-1] if chat_ctx.items else None
        if isinstance(last, llm.FunctionCallOutput):
            return FakeResponse(text=ANSWER)
        if isinstance(last, llm.ChatMessage) and last.role == "user":
            return FakeResponse(tool_calls=[FakeToolCall(tool, arguments or {})])
        return None

    return respond


# here settling waits 0.05 s after the last speech, and fails after 10 s
settle = functools.partial(filler_harness.settle, seconds=0.05, timeout=10.0)


class SlowAgent(Agent):
    """``look_up`` waits until ``until()`` is true (if given), then sleeps ``seconds``."""

    def __init__(self, seconds: float = 0.0, until: Callable[[], bool] | None = None) -> None:
        super().__init__(instructions="You are a test assistant.")
        self._seconds = seconds
        self._until = until

    @function_tool
    @fillers()
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        if self._until is not None:
            await wait_until(self._until, 10.0)
        await asyncio.sleep(self._seconds)
        return RESULT


async def collect(audio: AsyncIterator[rtc.AudioFrame]) -> bytes:
    return b"".join([bytes(frame.data) async for frame in audio])


# -- the rendered-audio cache -------------------------------------------------------------------


async def test_a_second_session_with_an_equal_tts_replays_the_filler_without_synthesis() -> None:
    first_tts = fake_tts()
    async with make_session(llm=FakeLLM(), tts=first_tts) as session:
        TimelineRecorder.install(session)
        controller = FillerController.attach(session, settings=settings())
        await session.start(SlowAgent())  # its look_up tool may say FILLER
        await wait_until(lambda: controller.voice.is_ready(first_tts, FILLER), 5.0)
    assert first_tts.synthesized == [FILLER]  # rendered once, as the agent became active
    hits = shared_cache().hits

    second_tts = fake_tts()  # a new instance with equal settings: the same sound
    async with make_session(llm=FakeLLM(), tts=second_tts) as session:
        rec = TimelineRecorder.install(session)
        controller = FillerController.attach(session, settings=settings())
        await session.start(Assistant())
        handle = controller.say_filler()
        assert handle is not None
        await handle
        await settle(session)
        utterances = rec.utterances
    assert second_tts.synthesized == []
    assert shared_cache().hits == hits + 1
    played = fillers_of(utterances)
    assert [u.text for u in played] == [FILLER], format_timeline(utterances)
    assert played[0].duration == pytest.approx(first_tts.duration_for(FILLER), abs=0.03)


def test_the_sound_key_changes_with_voice_sample_rate_and_text_only() -> None:
    base = sound_key(fake_tts(), FILLER)
    assert sound_key(fake_tts(), FILLER) == base  # equal TTS settings: equal sound
    assert sound_key(fake_tts(ttfb=0.5), FILLER) == base  # latency does not change the sound
    assert sound_key(fake_tts(seconds_per_char=0.02), FILLER) != base  # FakeTTS.voice changes
    assert sound_key(fake_tts(sample_rate=16000), FILLER) != base
    assert sound_key(fake_tts(), OTHER) != base


def test_the_sound_key_reads_a_plugin_voice_from_its_options() -> None:
    from livekit.plugins import openai

    alloy = sound_key(openai.TTS(voice="alloy", api_key="test"), FILLER)
    assert sound_key(openai.TTS(voice="alloy", api_key="test"), FILLER) == alloy
    assert sound_key(openai.TTS(voice="echo", api_key="test"), FILLER) != alloy


async def test_audio_rendered_for_one_voice_is_not_replayed_for_another() -> None:
    voice = FillerVoice(FillerAudioCache())
    tts = fake_tts()
    assert await voice.prerender(tts, [FILLER]) == 1
    assert voice.is_ready(fake_tts(), FILLER)
    assert not voice.is_ready(fake_tts(sample_rate=16000), FILLER)
    assert not voice.is_ready(fake_tts(seconds_per_char=0.02), FILLER)
    assert not voice.is_ready(tts, OTHER)
    assert await voice.prerender(fake_tts(), [FILLER]) == 0  # already there: no synthesis


async def test_rendered_audio_persists_to_a_directory_and_reloads_in_a_fresh_cache(
    tmp_path: Any,
) -> None:
    directory = tmp_path / "filler-audio"
    cache = FillerAudioCache()
    assert cache.persist_to(directory) == 0
    tts = fake_tts()
    for text in (FILLER, OTHER):
        cache.put(sound_key(tts, text), await tts.synthesize(text).collect())
    assert flush()  # written by the background writer
    assert len(list(directory.glob("v*/*/sound.wav"))) == 2

    fresh = FillerAudioCache()
    assert fresh.persist_to(directory) == 2
    reloaded_tts = fake_tts()
    voice = FillerVoice(fresh)
    assert voice.is_ready(reloaded_tts, FILLER) and voice.is_ready(reloaded_tts, OTHER)
    sound = voice.audio_for(reloaded_tts, FILLER)
    assert sound is not None
    audio, source = sound
    assert source == "cache"
    original = cache.get(sound_key(tts, FILLER))
    assert original is not None
    assert await collect(audio) == bytes(original.data)
    assert reloaded_tts.synthesized == []
    # a cache that persisted first saves what is rendered later too
    voice.cache.put(sound_key(reloaded_tts, "Later."), await tts.synthesize("Later.").collect())
    assert flush()
    assert len(list(directory.glob("v*/*/sound.wav"))) == 3


async def test_a_voice_renders_into_the_empty_cache_it_is_given() -> None:
    cache = FillerAudioCache()
    voice = FillerVoice(cache)
    assert voice.cache is cache
    assert await voice.prerender(fake_tts(), [FILLER]) == 1
    assert len(cache) == 1
    assert len(shared_cache()) == 0


async def test_a_pre_render_whose_turn_never_comes_synthesizes_nothing() -> None:
    """A controller closing while its pre-render waits for the session's speech: the wait
    answers False and no render starts after it (none would outlive the session)."""
    cache = FillerAudioCache()
    tts = fake_tts()
    turns: list[str] = []

    async def closed() -> bool:
        turns.append("asked")
        return False

    assert await FillerVoice(cache).prerender(tts, [FILLER, "Later."], wait_turn=closed) == 0
    assert turns == ["asked"] and len(cache) == 0 and cache.characters_rendered == 0


# -- a failing TTS ------------------------------------------------------------------------------


async def test_a_failed_render_logs_one_warning_and_fillers_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = fake_tts(fail_on=lambda text: text == FILLER)
    fake_llm = FakeLLM(tool_script("look_up"), default=None, ttft=0.02)
    async with make_session(llm=fake_llm, tts=failing) as session:
        rec = TimelineRecorder.install(session)
        controller = FillerController.attach(session, settings=settings(max_count=3, interval=0.05))
        await session.start(SlowAgent(seconds=0.6))
        await session.run(user_input=QUESTION)
        await settle(session)
        utterances = rec.utterances
    warnings = [
        r
        for r in caplog.records
        if r.name.startswith("livekit_filler") and r.levelno == logging.WARNING
    ]
    assert [r.getMessage() for r in warnings] == [
        "filler synthesis failed; fillers not rendered yet are skipped until it works again"
    ]
    assert fillers_of(utterances) == [], format_timeline(utterances)
    assert controller.metrics.fillers_skipped["tts_failed"] >= 2
    assert controller.metrics.fillers_played == 0
    assert failing.synthesized.count(FILLER) == 1  # tried once, not again within the back-off
    assert [u.text for u in utterances] == [ANSWER], format_timeline(utterances)


# -- clips --------------------------------------------------------------------------------------


async def test_a_clip_filler_plays_through_the_speech_scheduler_and_never_overlaps() -> None:
    tts = fake_tts()
    created: list[Any] = []
    fake_llm = FakeLLM(tool_script("look_up"), default=None, ttft=0.02)
    async with make_session(llm=fake_llm, tts=tts) as session:
        session.on("speech_created", lambda ev: created.append(ev.speech_handle))
        rec = TimelineRecorder.install(session)
        # no pre-render: every synthesis below is one the clip filler asked for
        FillerController.attach(session, settings=settings(clip="keyboard_typing", prerender=False))
        await session.start(SlowAgent(seconds=0.8))
        await session.run(user_input=QUESTION)
        await settle(session)
        utterances = rec.utterances
        segments = list(rec.audio_output.segments)
    timeline = format_timeline(utterances)
    filler_handles = [h for h in created if is_filler_speech(h)]
    assert len(filler_handles) == 1, timeline
    clip_segments = [s for s in segments if s.speech_id == filler_handles[0].id]
    assert len(clip_segments) == 1, timeline  # the session's own audio output played it
    played = fillers_of(utterances)
    assert len(played) == 1 and played[0].speaker == "agent", timeline
    assert played[0].interrupted, timeline  # the 9.7 s clip is cut for the answer
    assert overlaps(utterances) == [], timeline
    answer = next(u for u in utterances if u.text == ANSWER)
    assert answer.start >= played[0].end, timeline
    assert tts.synthesized == [ANSWER]  # the clip needs no TTS, and no phrase was rendered


# -- picking phrases ----------------------------------------------------------------------------


async def test_no_phrase_repeats_back_to_back_within_a_session() -> None:
    count = 12
    fake_llm = FakeLLM(tool_script("look_up"), default=None, ttft=0.02)
    tts = fake_tts(seconds_per_char=0.004)
    async with make_session(llm=fake_llm, tts=tts) as session:
        rec = TimelineRecorder.install(session)
        controller = FillerController.attach(
            session,
            settings=settings(delay=0.05, interval=0.05, max_count=count, phrases=[FILLER, OTHER]),
        )
        await controller.prerender()

        def heard_all() -> bool:
            done = [s for s in rec.audio_output.segments if s.end is not None]
            return len(done) >= count

        await session.start(SlowAgent(until=heard_all))
        await session.run(user_input=QUESTION)
        await settle(session)
        utterances = rec.utterances
    said = [u.text for u in fillers_of(utterances)]
    assert len(said) == count, format_timeline(utterances)
    repeats = [i for i in range(1, len(said)) if said[i] == said[i - 1]]
    assert repeats == [], said


# -- templates ----------------------------------------------------------------------------------


class ClubAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")

    @function_tool
    @fillers("Let me check the {club} schedule", delay=0.1, max_count=1)
    async def get_schedule(self, club: str, context: RunContext[Any]) -> str:
        """Get a club's schedule."""
        await asyncio.sleep(0.6)
        return RESULT


async def test_a_template_phrase_speaks_the_tool_arguments() -> None:
    tts = fake_tts()
    fake_llm = FakeLLM(tool_script("get_schedule", {"club": "Giants"}), default=None, ttft=0.02)
    async with make_session(llm=fake_llm, tts=tts) as session:
        rec = TimelineRecorder.install(session)
        FillerController.attach(session, settings=settings())
        await session.start(ClubAgent())
        await session.run(user_input=QUESTION)
        await settle(session)
        utterances = rec.utterances
    said = [u.text for u in fillers_of(utterances)]
    assert said == ["Let me check the Giants schedule"], format_timeline(utterances)
    assert "Let me check the Giants schedule" in tts.synthesized
    assert not any("{club}" in text for text in tts.synthesized)  # templates are not pre-rendered


def test_a_template_naming_a_missing_parameter_fails_at_decoration() -> None:
    async def get_schedule(club: str, context: RunContext[Any]) -> str:
        return club

    with pytest.raises(ValueError, match=r"\{team\}.*team.*not a parameter"):
        fillers("Let me check the {team} schedule")(get_schedule)
    with pytest.raises(ValueError, match="team"):
        fillers("Let me check the {team} schedule")(function_tool(get_schedule))
    fillers("Let me check the {club} schedule")(get_schedule)  # a real parameter is fine


# -- languages ----------------------------------------------------------------------------------

FRENCH = "Un instant, je regarde."


async def test_the_language_pool_is_used_after_a_transcript_in_that_language() -> None:
    user = UserSpeechSimulator(language="fr")
    fake_llm = FakeLLM(tool_script("look_up"), default=None, ttft=0.02)
    tts = fake_tts()
    async with make_session(llm=fake_llm, tts=tts, **user.session_kwargs()) as session:
        rec = TimelineRecorder.install(session)
        user.install(session, timeline=rec)
        controller = FillerController.attach(
            session, settings=settings(languages={"fr": {"phrases": [FRENCH]}})
        )
        await session.start(SlowAgent(seconds=0.6))
        await user.say("Tu peux regarder ?", duration=0.3)
        await wait_until(lambda: controller.metrics.tool_calls >= 1, 5.0)
        await wait_until(lambda: any(u.text == ANSWER for u in rec.utterances), 5.0)
        await settle(session)
        utterances = rec.utterances
    said = [u.text for u in fillers_of(utterances)]
    assert said == [FRENCH], format_timeline(utterances)


async def test_concurrent_renders_of_one_sound_synthesize_it_once() -> None:
    cache = FillerAudioCache()
    tts = FakeTTS(ttfb=0.1, seconds_per_char=0.001)
    voices = [FillerVoice(cache) for _ in range(5)]
    # five controllers pre-render at once, and a filler asks for the same phrase meanwhile
    rendering = [asyncio.ensure_future(v.prerender(tts, ["One moment."])) for v in voices]
    await asyncio.sleep(0.02)
    sound = voices[0].audio_for(tts, "One moment.")
    assert sound is not None
    audio, source = sound
    assert source == "tts"
    frames = [f async for f in audio]
    await asyncio.gather(*rendering)
    assert tts.synthesized == ["One moment."]
    assert cache.characters_rendered == len("One moment.")
    assert sum(f.samples_per_channel for f in frames) > 0


# -- pre-render on agent activation -------------------------------------------------------------

FIRST_WORDS = ("Desk first.", "Desk second.")
DESK_FAILURE = "Desk failed."
SECTION = {
    "check_stock": {
        "phrases": ["Stock first."],
        "followup_phrases": ["Stock follow-up."],
        "start_message": "Stock start.",
    },
    "unused_tool": {"phrases": ["Never said."]},
}


class Desk(Agent):
    """Decorated tools (own phrases, global phrases, a template) and a config-section tool."""

    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")

    @function_tool
    @fillers(*FIRST_WORDS, failure_message=DESK_FAILURE)
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up."""
        return RESULT

    @function_tool
    @fillers(max_count=2)
    async def general(self, context: RunContext[Any]) -> str:
        """Uses the global phrases and follow-ups."""
        return RESULT

    @function_tool
    @fillers("Checking the {club} schedule")
    async def schedule(self, club: str, context: RunContext[Any]) -> str:
        """A template: rendered when its arguments are known, not before."""
        return RESULT

    @function_tool
    async def check_stock(self, context: RunContext[Any]) -> str:
        """No decorator: its [tools.check_stock] section gives it fillers."""
        return RESULT


class Billing(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")

    @function_tool
    @fillers("Billing words.")
    async def invoice(self, context: RunContext[Any]) -> str:
        """Find an invoice."""
        return RESULT


async def test_an_agent_becoming_active_pre_renders_exactly_its_phrases_first_ones_first() -> None:
    tts = fake_tts(seconds_per_char=0.001)
    desk_first = {*FIRST_WORDS, FILLER, "Stock first.", "Stock start."}
    desk_later = {OTHER, "Stock follow-up."}  # follow-ups of the tools that play more than one
    # every tool may acknowledge a caller who speaks while it runs (issue 22): last of all
    desk = desk_first | desk_later | {DESK_FAILURE, DEFAULT_BUSY_MESSAGE}
    async with make_session(llm=FakeLLM(), tts=tts) as session:
        TimelineRecorder.install(session)
        controller = FillerController.attach(
            session,
            settings=settings(max_count=3, followup_phrases=[OTHER], tools=SECTION),
        )
        assert tts.synthesized == []  # nothing at attach: no agent yet
        await session.start(Desk())
        await wait_until(lambda: len(tts.synthesized) >= len(desk), 5.0)
        await asyncio.sleep(0.3)
        rendered = list(tts.synthesized)
        assert set(rendered) == desk, rendered  # not "Never said.", no template, not Billing
        assert len(rendered) == len(desk)
        last_first = max(rendered.index(t) for t in desk_first)
        assert last_first < min(rendered.index(t) for t in desk_later), rendered
        assert rendered[-2:] == [DESK_FAILURE, DEFAULT_BUSY_MESSAGE], rendered
        assert controller.voice.cache.characters_rendered == sum(len(t) for t in desk)

        # a hand-off: the new agent's phrases, and only those (its busy message is the
        # same sound, already rendered)
        session.update_agent(Billing())
        await wait_until(lambda: "Billing words." in tts.synthesized, 5.0)
        await asyncio.sleep(0.3)
    assert tts.synthesized == [*rendered, "Billing words."]


async def test_attaching_to_a_running_session_pre_renders_its_current_agent() -> None:
    tts = fake_tts(seconds_per_char=0.001)
    async with make_session(llm=FakeLLM(), tts=tts) as session:
        TimelineRecorder.install(session)
        await session.start(Billing())
        controller = FillerController.attach(session, settings=settings())
        await wait_until(lambda: controller.voice.is_ready(tts, "Billing words."), 5.0)
    assert tts.synthesized == ["Billing words."]
