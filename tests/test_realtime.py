"""Fillers for speech-to-speech agents: a realtime model and no TTS in the session.

The forum thread's two agents run on :class:`FakeRealtimeModel` over randomized timings,
each seed side by side with the same run without fillers; the filler voice is a
``FakeTTS`` passed as ``FillerController.attach(session, tts=...)``. Then the rules that
differ for realtime models: never the model's own ``say()`` (it adds the filler to the
conversation), one WARNING when there is no voice, the ``voice`` setting, and the user's
turn as the model's server-side turn detection hears it. A failing seed replays with
``FILLER_SEEDS=17 pytest tests/test_realtime.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
from filler_harness import assert_every_seed, settle, wait_until
from livekit.agents import Agent, RunContext, function_tool, llm

from devtools.scenarios import ScenarioName, ScenarioResult, Timings, run_scenario
from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.errors import FillerConfigError
from livekit_filler.testing import (
    FakeRealtimeModel,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    format_timeline,
    make_session,
    overlaps,
)

SEEDS = [int(s) for s in os.environ.get("FILLER_SEEDS", "").split(",") if s] or list(range(50))
BATCH = 10
BOUNDS: dict[ScenarioName, float] = {"club_info": 0.100, "programs": 0.150}
MAX_FACTOR = 3
"""No seed's answer may be later than this many times its scenario's p95 bound."""
FIRST_FILLER_BOUND = 0.030
logger = logging.getLogger("tests.test_realtime")

FILLER = "Hold on, realtime check."
FOLLOWUP = "Still on it, realtime."
QUESTION = "Look it up, please."
ANSWER = "Here is what I found."


def _check(base: ScenarioResult, run: ScenarioResult) -> list[str]:
    """What a caller would notice in one pair; the answer's delay is judged over all seeds."""
    problems: list[str] = []
    if run.errors:
        problems.append(f"errors: {run.errors}")
    if run.overlaps:
        problems.append(f"overlaps: {run.overlaps}")
    if run.fillers_in_history:
        problems.append(f"fillers in history or the model's conversation: {run.fillers_in_history}")
    for filler in run.fillers:
        if filler.agent == "CollectAgeGender":
            problems.append("a filler spoke into the AgentTask's conversation")
    if base.answer_latency is None or run.answer_latency is None:
        problems.append("the answer never played")
    elif run.answer_latency - base.answer_latency > MAX_FACTOR * BOUNDS[run.scenario]:
        extra = run.answer_latency - base.answer_latency
        problems.append(f"answer {extra * 1000:.0f} ms later than without fillers")
    return problems


def _first_filler_lag(run: ScenarioResult) -> float | None:
    """Seconds from the first filler's trigger to its audio, when its audio was rendered.

    The trigger is ``filler_delay`` after the tool started, in a run with no preamble (the
    floor was free). The filler voice renders the settings' phrases at attach, one at a
    time: all of them are ready after three TTFBs.
    """
    t = run.timings
    start = run.marker("tool_start")
    if t.preamble or start is None or not run.fillers:
        return None
    trigger = start + t.filler_delay
    if 3 * t.tts_ttfb + 0.1 > trigger:  # not rendered yet: it would pay the TTS, not our delay
        return None
    return run.fillers[0].start - trigger


async def _pair(scenario: ScenarioName, seed: int) -> tuple[ScenarioResult, ScenarioResult]:
    timings = Timings.random(seed)
    base, run = await asyncio.gather(
        run_scenario(scenario, "none", timings, settle=0.05, model="realtime"),
        run_scenario(scenario, "livekit_filler", timings, settle=0.05, model="realtime"),
    )
    return base, run


def _pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@pytest.mark.parametrize("scenario", ["club_info", "programs"])
async def test_thread_scenario_on_a_realtime_model(scenario: ScenarioName) -> None:
    extra: dict[int, float] = {}
    lags: dict[int, float] = {}
    filled: set[int] = set()

    async def case(seed: int) -> list[str]:
        # one attempt per seed: every seed's delay counts, passing or not (conftest's rerun
        # policy is the only retry, and it reruns the whole test)
        base, run = await _pair(scenario, seed)
        if base.answer_latency is not None and run.answer_latency is not None:
            extra[seed] = run.answer_latency - base.answer_latency
        if (lag := _first_filler_lag(run)) is not None:
            lags[seed] = lag
        if run.fillers:
            filled.add(seed)
        return _check(base, run)

    for first in range(0, len(SEEDS), BATCH):
        await assert_every_seed(case, SEEDS[first : first + BATCH])

    delays = sorted(extra.values())
    lag_values = sorted(lags.values())
    summary = (
        f"{scenario} realtime, {len(delays)} seeds: answer vs no fillers "
        f"p50 {_pct(delays, 50) * 1000:+.0f} ms, p95 {_pct(delays, 95) * 1000:+.0f} ms; "
        f"first filler after its trigger ({len(lag_values)} seeds) "
        f"p50 {_pct(lag_values, 50) * 1000:.0f} ms, p95 {_pct(lag_values, 95) * 1000:.0f} ms"
    )
    logger.info("%s", summary)  # the figures the docs quote (pytest --log-cli-level=INFO)
    assert len(delays) == len(SEEDS), summary  # every seed's answer played (checked above)
    assert _pct(delays, 95) <= BOUNDS[scenario], summary
    assert len(filled) >= len(SEEDS) // 3, f"only {len(filled)} of {len(SEEDS)} runs had a filler"
    # the first filler's lag is bounded alone, with fixed timing, below: here twenty sessions
    # share the loop, and adaptive timing moves the trigger once the tool's latency is known


# -- one slow tool on a realtime model --------------------------------------------------------


def _script(chat_ctx: llm.ChatContext) -> FakeResponse | None:
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.FunctionCallOutput):
        return FakeResponse(text=ANSWER, ttft=0.1)
    if isinstance(last, llm.ChatMessage) and last.text_content == QUESTION:
        return FakeResponse(tool_calls=[FakeToolCall("slow_tool")], ttft=0.05)
    return None


class SlowAgent(Agent):
    def __init__(self, seconds: float = 1.2) -> None:
        super().__init__(instructions="You are a test assistant.")
        self.seconds = seconds
        self.cancelled = False
        self.started_at = 0.0

    @function_tool
    @fillers()
    async def slow_tool(self, context: RunContext[Any]) -> str:
        """Look something up slowly."""
        self.started_at = asyncio.get_running_loop().time()
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "the result"


def _settings(**overrides: Any) -> FillerSettings:
    values: dict[str, Any] = {
        "delay": 0.2,
        "interval": 0.3,
        "max_count": 3,
        "phrases": [FILLER],
        "followup_phrases": [FOLLOWUP],
    }
    values.update(overrides)
    return FillerSettings.from_values(**values)


def _filler_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.get_records("call")
        if r.name.startswith("livekit_filler") and r.levelno >= logging.WARNING
    ]


async def test_a_model_that_can_say_never_speaks_a_filler_without_a_voice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 10 item 4: the model's say() puts the filler into the conversation."""
    model = FakeRealtimeModel(_script, default=None, supports_say=True, seconds_per_char=0.01)
    skipped: list[str] = []
    async with make_session(llm=model, tts=None) as session:
        rec = TimelineRecorder.install(session, filler_texts=(FILLER, FOLLOWUP))
        controller = FillerController.attach(session, settings=_settings())
        controller.on("filler_skipped", lambda ev: skipped.append(ev.reason or ""))
        await session.start(SlowAgent(seconds=0.8))
        await session.run(user_input=QUESTION)
        await wait_until(lambda: any(u.text == ANSWER for u in rec.utterances), 5.0)
        await settle(session, 0.05)
        history = [i.text_content for i in session.history.items if isinstance(i, llm.ChatMessage)]
    timeline = format_timeline(rec.utterances)
    assert FILLER not in history and FOLLOWUP not in history, history
    assert model.said == [], model.said
    assert FILLER not in model.conversation_texts()
    assert not [u for u in rec.utterances if u.kind == "filler"], timeline
    assert "no_voice" in skipped, skipped
    warnings = _filler_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert "tts=" in warnings[0] and "voice" in warnings[0], warnings


async def test_a_pipeline_session_without_tts_still_sends_fillers_as_text() -> None:
    """Headless and text-only: today's behaviour, no warning, fillers as text."""
    from livekit_filler.testing import FakeLLM

    fake = FakeLLM(_script, default=None, ttft=0.05)
    async with make_session(llm=fake, tts=None) as session:
        controller = FillerController.attach(session, settings=_settings())
        played: list[str] = []
        controller.on("filler_played", lambda ev: played.append(ev.source or ""))
        await session.start(SlowAgent(seconds=0.6))
        await session.run(user_input=QUESTION)
        await settle(session, 0.05)
        history = [i.text_content for i in session.history.items if isinstance(i, llm.ChatMessage)]
    assert played and set(played) == {"text"}, played
    assert FILLER not in history


async def test_the_filler_voice_speaks_in_a_session_without_tts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    voice = FakeTTS(ttfb=0.05, seconds_per_char=0.011)
    model = FakeRealtimeModel(_script, default=None, supports_say=True, seconds_per_char=0.01)
    async with make_session(llm=model, tts=None) as session:
        rec = TimelineRecorder.install(session, filler_texts=(FILLER, FOLLOWUP))
        controller = FillerController.attach(session, settings=_settings(), tts=voice)
        assert controller.filler_tts is voice
        assert FillerController.attach(session, tts=voice) is controller
        with pytest.raises(ValueError, match="filler voice"):
            FillerController.attach(session, tts=FakeTTS())
        await session.start(SlowAgent(seconds=1.0))
        await session.run(user_input=QUESTION)
        await wait_until(lambda: any(u.text == ANSWER for u in rec.utterances), 5.0)
        await settle(session, 0.05)
        history = [i.text_content for i in session.history.items if isinstance(i, llm.ChatMessage)]
    timeline = format_timeline(rec.utterances)
    fillers_heard = [u for u in rec.utterances if u.kind == "filler"]
    assert fillers_heard, timeline
    assert FILLER in voice.synthesized  # rendered by the filler voice, not the model
    assert model.said == []
    assert not overlaps(rec.utterances), timeline
    assert FILLER not in history and FILLER not in model.conversation_texts()
    assert not _filler_warnings(caplog)
    with pytest.raises(TypeError, match="LiveKit TTS"):
        FillerController.attach(session, tts="alloy")  # type: ignore[arg-type]


async def test_a_rendered_filler_starts_within_30_ms_of_its_trigger() -> None:
    voice = FakeTTS(ttfb=0.05, seconds_per_char=0.01)
    lags: list[float] = []
    for _ in range(5):
        model = FakeRealtimeModel(_script, default=None, seconds_per_char=0.01)
        async with make_session(llm=model, tts=None) as session:
            rec = TimelineRecorder.install(session, filler_texts=(FILLER, FOLLOWUP))
            controller = FillerController.attach(
                session, settings=_settings(timing="fixed"), tts=voice
            )
            await controller.prerender()
            agent = SlowAgent(seconds=0.5)
            await session.start(agent)
            await session.run(user_input=QUESTION)
            await settle(session, 0.05)
        first = next(u for u in rec.utterances if u.kind == "filler")
        lags.append(first.start + rec.t0 - (agent.started_at + 0.2))
    # the median: a shared two-core machine can stall one run of five by tens of ms
    assert statistics.median(lags) <= FIRST_FILLER_BOUND, lags
    assert max(lags) <= 0.1, lags


async def test_the_user_takes_the_floor_from_a_filler_through_server_side_turn_detection() -> None:
    model = FakeRealtimeModel(_script, default=None, turn_detection=True, seconds_per_char=0.01)
    voice = FakeTTS(ttfb=0.02, seconds_per_char=0.05)  # long fillers: 1.2 s
    cuts: list[str] = []
    async with make_session(llm=model, tts=None) as session:
        rec = TimelineRecorder.install(session, filler_texts=(FILLER, FOLLOWUP))
        controller = FillerController.attach(session, settings=_settings(), tts=voice)
        controller.on("filler_cut", lambda ev: cuts.append(ev.reason or ""))
        agent = SlowAgent(seconds=3.0)
        await session.start(agent)
        session.generate_reply(user_input=QUESTION)
        await wait_until(
            lambda: bool(rec.audio_output.segments) and rec.audio_output.segments[-1].end is None
        )
        spoke_at = asyncio.get_running_loop().time() - rec.t0
        await model.current.user_speaks("", duration=0.4)
        await asyncio.sleep(0.3)
        heard = list(rec.utterances)
    timeline = format_timeline(heard)
    fillers_heard = [u for u in heard if u.kind == "filler"]
    assert fillers_heard and fillers_heard[0].interrupted, timeline
    assert fillers_heard[0].end - spoke_at < 0.06, timeline
    assert "user_speech" in cuts, cuts
    # nothing of ours while the user talks (LiveKit's own barge-in also cancels the tool)
    assert not [u for u in fillers_heard[1:] if spoke_at <= u.start <= spoke_at + 0.4], timeline


# -- the voice setting --------------------------------------------------------------------------


async def test_the_voice_setting_builds_an_openai_tts(monkeypatch: pytest.MonkeyPatch) -> None:
    from livekit.plugins import openai

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = FillerSettings.from_values(
        voice={"voice": "coral", "model": "gpt-4o-mini-tts"}, prerender=False
    )
    assert settings.voice is not None
    model = FakeRealtimeModel()
    async with make_session(llm=model, tts=None) as session:
        controller = FillerController.attach(session, settings=settings)
        tts = controller.filler_tts
        assert isinstance(tts, openai.TTS)
        assert tts.model == "gpt-4o-mini-tts"
        await controller.aclose()


def test_the_voice_setting_is_read_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "filler.toml"
    config.write_text('[voice]\nprovider = "openai"\nvoice = "alloy"\n')
    settings = FillerSettings.load(config_file=config)
    assert settings.voice is not None and settings.voice.voice == "alloy"
    config.write_text('voice = {provider = "elevenlabs"}\n')
    with pytest.raises(FillerConfigError, match=r"voice\.provider"):
        FillerSettings.load(config_file=config)


@pytest.mark.parametrize(
    ("voice", "field"),
    [
        ({"provider": "elevenlabs"}, r"voice\.provider"),
        ({"voice": ""}, r"voice\.voice"),
        ({"speed": 0}, r"voice\.speed"),
        ({"tone": "warm"}, r"voice\.tone"),
    ],
)
def test_a_bad_voice_setting_names_the_field(voice: dict[str, Any], field: str) -> None:
    with pytest.raises(FillerConfigError, match=field):
        FillerSettings.from_values(voice=voice)


async def test_a_voice_that_cannot_be_built_names_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = FillerSettings.from_values(voice={"voice": "alloy"})
    async with make_session(llm=FakeRealtimeModel(), tts=None) as session:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        with pytest.raises(FillerConfigError, match=r"voice = .*openai filler voice"):
            FillerController.attach(session, settings=settings)
        # the plugin is an optional extra: without it, say which setting needs it
        monkeypatch.setitem(sys.modules, "livekit.plugins.openai", None)
        with pytest.raises(FillerConfigError, match=r"voice\.provider = 'openai'.*plugin"):
            FillerController.attach(session, settings=settings)
        assert FillerController.of(session) is None
