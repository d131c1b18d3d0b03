"""Pin every LiveKit private attribute and unexported module livekit-filler uses.

All of them live in ``livekit_filler/_livekit_private.py``. These tests fail loudly when a
livekit-agents release renames, moves or retypes one; the library itself fails safe (a
filler is skipped) when that happens.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import logging
from pathlib import Path
from typing import Any

import pytest
from filler_harness import ANSWER, RESULT, phrase_settings, run_tool, sleeping
from livekit.agents import (
    Agent,
    APIConnectOptions,
    APIError,
    APIStatusError,
    RunContext,
    __version__ as LIVEKIT_VERSION,
    function_tool,
)
from livekit.agents.tts import TTSError
from livekit.plugins import openai

from livekit_filler import _livekit_private
from livekit_filler.testing import FakeLLM, FakeResponse, FakeToolCall, FakeTTS, make_session

PACKAGE = Path(_livekit_private.__file__).parent


async def test_activity_view_reads_the_running_activity_of_the_current_agent() -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS()) as session:
        assert _livekit_private.activity_view(session) is None  # not started
        agent = Agent(instructions="x")
        await session.start(agent)
        view = _livekit_private.activity_view(session)
        assert view is not None
        assert view.agent is agent and not view.paused and not view.queued
        assert (await session.wait_for_idle()).agent is agent


async def test_activity_view_sees_speech_said_but_not_yet_playing() -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS()) as session:
        await session.start(Agent(instructions="x"))
        handle = session.say("queued until the scheduler pops it")
        view = _livekit_private.activity_view(session)
        assert view is not None and view.queued
        await handle
        view = _livekit_private.activity_view(session)
        assert view is not None and not view.queued


async def test_running_tool_call_finds_the_call_of_a_tool_without_a_run_context() -> None:
    seen: list[_livekit_private.RunningToolCall | None] = []

    class Probe(Agent):
        def __init__(self) -> None:
            super().__init__(instructions="x")

        @function_tool
        async def probe(self) -> str:
            """Probe."""
            seen.append(_livekit_private.running_tool_call())
            return "done"

    llm = FakeLLM(
        {"go": FakeResponse(tool_calls=[FakeToolCall("probe")]), "done": FakeResponse(text="ok")}
    )
    async with make_session(llm=llm, tts=FakeTTS()) as session:
        await session.start(Probe())
        await session.run(user_input="go")
        assert len(seen) == 1 and seen[0] is not None
        assert seen[0].session is session
        assert seen[0].function_call.name == "probe"
        assert seen[0].speech_handle is not None
    assert _livekit_private.running_tool_call() is None  # outside any tool


def test_openai_tts_keeps_voice_and_speed_in_private_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    nova = _livekit_private.tts_voice(openai.TTS(voice="nova"))
    assert nova is not None and '"voice":"nova"' in nova
    assert nova == _livekit_private.tts_voice(openai.TTS(voice="nova"))
    assert nova != _livekit_private.tts_voice(openai.TTS(voice="ash"))
    assert nova != _livekit_private.tts_voice(openai.TTS(voice="nova", speed=1.3))
    assert "sk-test" not in nova


def test_fake_tts_voice_is_public_and_changes_with_its_sound() -> None:
    assert _livekit_private.tts_voice(FakeTTS(seconds_per_char=0.02)) != _livekit_private.tts_voice(
        FakeTTS(seconds_per_char=0.03)
    )


def test_a_tts_whose_voice_cannot_be_read_gets_no_voice() -> None:
    class Opaque(FakeTTS):
        voice = None  # type: ignore[assignment]

    assert _livekit_private.tts_voice(Opaque()) is None


def test_plugins_keep_their_options_in_a_private_dataclass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    options = openai.TTS(voice="nova")._opts
    assert dataclasses.is_dataclass(options)
    assert {"voice", "speed", "model"} <= {f.name for f in dataclasses.fields(options)}


def test_the_inference_tts_keeps_extra_kwargs_in_its_options() -> None:
    from livekit.agents import inference

    tts = inference.TTS(
        "cartesia/sonic-3", voice="v", extra_kwargs={"speed": 1.3}, api_key="k", api_secret="s"
    )
    assert tts._opts.extra_kwargs == {"speed": 1.3}
    assert tts._opts.api_secret == "s"  # a secret beside the voice: the key must drop it
    voice = _livekit_private.tts_voice(tts)
    assert voice is not None and '"extra_kwargs":{"speed":1.3}' in voice
    assert '"s"' not in voice and '"k"' not in voice


def test_fallback_adapter_keeps_its_primary_first_in_tts_instances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from livekit.agents.tts import FallbackAdapter

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    primary, backup = openai.TTS(voice="alloy"), openai.TTS(voice="echo")
    adapter = FallbackAdapter([primary, backup])
    assert adapter._tts_instances[0] is primary
    assert _livekit_private.voice_source(adapter) is primary
    assert _livekit_private.tts_voice(adapter) == _livekit_private.tts_voice(primary)
    assert _livekit_private.tts_voice(adapter) != _livekit_private.tts_voice(backup)


def test_stream_adapter_keeps_the_tts_it_wraps_in_wrapped_tts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from livekit.agents.tts import FallbackAdapter, StreamAdapter

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    inner = openai.TTS(voice="alloy")
    adapter = StreamAdapter(tts=inner)
    assert adapter._wrapped_tts is inner
    assert _livekit_private.voice_source(adapter) is inner
    # wrappers of wrappers: a fallback of stream adapters speaks with the first inner TTS
    assert _livekit_private.voice_source(FallbackAdapter([adapter])) is inner


def test_a_wrapper_whose_layout_changed_reads_as_no_voice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from livekit.agents.tts import FallbackAdapter

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    adapter = FallbackAdapter([openai.TTS(voice="alloy")])
    del adapter._tts_instances  # a release that renames it
    assert _livekit_private.voice_source(adapter) is adapter
    assert _livekit_private.tts_voice(adapter) is None


def test_unexported_livekit_names_still_exist() -> None:
    from livekit.agents.voice.agent_activity import ActivityClosedError

    assert issubclass(ActivityClosedError, Exception)
    assert callable(_livekit_private.is_context_type)
    assert callable(_livekit_private.audio_frames_from_file)
    assert _livekit_private.is_context_type(RunContext[Any], allow_subclasses=True)


def _library_modules() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "_livekit_private.py"]


def test_no_other_module_reads_a_livekit_private_attribute() -> None:
    """Private LiveKit access lives in exactly one module."""
    offenders = []
    for path in _library_modules():
        if "testing" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in {"session", "activity", "agent", "handle", "speech", "tts"}
            ):
                offenders.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert not offenders, offenders


def test_no_other_module_imports_what_livekit_does_not_export() -> None:
    """``from livekit.agents.X import Y`` elsewhere needs Y in ``livekit.agents.X.__all__``."""
    offenders = []
    for path in _library_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("livekit"):
                assert node.module is not None
                exported = set(getattr(importlib.import_module(node.module), "__all__", ()))
                if node.module == "livekit":
                    exported = {"rtc"}
                offenders += [
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name not in exported
                ]
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{path.relative_to(PACKAGE)}:{node.lineno} import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("livekit.agents.")
                ]
    assert not offenders, offenders


class _StreamOnlyTTS(FakeTTS):
    """A TTS whose synthesize() goes through stream(), like LiveKit Inference's TTS."""

    def synthesize(self, text: str, *, conn_options: Any = None) -> Any:
        return self._synthesize_with_stream(text, conn_options=conn_options or _NO_RETRY)


_NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.0, timeout=2.0)


@pytest.mark.parametrize("path", ["chunked_stream", "synthesize_with_stream"])
async def test_a_render_s_tts_errors_reach_the_render_and_no_other_listener(path: str) -> None:
    """LiveKit emits a failed synthesis's ``error`` on the TTS from the stream's own tasks,
    which inherit the context they were created in: ``filler_render`` can claim them."""
    failing = (
        FakeTTS(ttfb=0.0, synthesize_fault=lambda text: APIStatusError("down", status_code=500))
        if path == "chunked_stream"
        else _StreamOnlyTTS(ttfb=0.0, fail_on=lambda text: True)
    )
    heard: list[object] = []
    claimed: list[object] = []
    metrics: list[object] = []
    failing.on("error", heard.append)
    failing.on("metrics_collected", metrics.append)
    assert _livekit_private.hide_render_errors(failing)
    assert _livekit_private.hide_render_errors(failing)  # once per instance
    with pytest.raises(APIError), _livekit_private.filler_render(claimed.append):
        async with failing.synthesize("Hello.", conn_options=_NO_RETRY) as stream:
            await stream.collect()
    assert heard == [] and len(claimed) >= 1
    assert all(isinstance(e, TTSError) and not e.recoverable for e in claimed[-1:])
    # outside a render, the session still hears every error of its TTS
    with pytest.raises(APIError):
        async with failing.synthesize("Hello.", conn_options=_NO_RETRY) as stream:
            await stream.collect()
    assert len(heard) >= 1  # (two through stream(): the inner stream's and the outer's)
    # and other events pass through
    working = FakeTTS(ttfb=0.0)
    working.on("metrics_collected", metrics.append)
    assert _livekit_private.hide_render_errors(working)
    with _livekit_private.filler_render(claimed.append):
        async with working.synthesize("Hello.", conn_options=_NO_RETRY) as stream:
            await stream.collect()
    await asyncio.sleep(0.01)
    assert len(metrics) == 1


@pytest.mark.parametrize("close", ["aclose", "shutdown"])
async def test_session_closing_is_true_from_the_start_of_a_close(close: str) -> None:
    async with make_session(llm=FakeLLM(), tts=FakeTTS()) as session:
        await session.start(Agent(instructions="x"))
        assert _livekit_private.session_closing(session) is False
        seen: list[bool] = []
        # the close cancels tools and drains before its close event: closing from its start
        session.on("close", lambda _: seen.append(_livekit_private.session_closing(session)))
        if close == "aclose":
            closing = asyncio.ensure_future(session.aclose())
            await asyncio.sleep(0)
            seen.append(_livekit_private.session_closing(session))
            await closing
        else:
            session.shutdown(drain=True)
            seen.append(_livekit_private.session_closing(session))
            await asyncio.sleep(0.5)
        assert seen[:2] == [True, True], seen


# -- each private name missing: the worker starts, the session runs, fillers are skipped --------


def test_every_unexported_name_resolves_in_this_release() -> None:
    for key, (module, name) in _livekit_private.PRIVATE_NAMES.items():
        assert hasattr(importlib.import_module(module), name), (key, module, name)


def test_no_unexported_livekit_module_is_imported_at_module_load() -> None:
    """A release that moves one must not stop ``import livekit_filler`` (and the worker)."""
    tree = ast.parse((PACKAGE / "_livekit_private.py").read_text())
    offenders = []
    for node in tree.body:  # the module's top level: what runs at import
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("livekit"):
            assert node.module is not None
            exported = set(getattr(importlib.import_module(node.module), "__all__", ()))
            exported |= {"rtc"} if node.module == "livekit" else set()
            offenders += [f"{node.module}.{a.name}" for a in node.names if a.name not in exported]
    assert not offenders, offenders


@pytest.fixture
def fresh_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget what was imported and warned, so a simulated release starts from scratch."""
    monkeypatch.setattr(_livekit_private, "_imported", {})
    monkeypatch.setattr(_livekit_private, "_warned", set())


def _gone(monkeypatch: pytest.MonkeyPatch, key: str) -> str:
    """Simulate a release without ``key``; returns the name its WARNING must give."""
    if key in _livekit_private.PRIVATE_NAMES:
        module, _ = _livekit_private.PRIVATE_NAMES[key]
        monkeypatch.setitem(_livekit_private.PRIVATE_NAMES, key, (module, "RenamedByARelease"))
        return f"{module}.RenamedByARelease"
    monkeypatch.setitem(_livekit_private.PRIVATE_ATTRIBUTES, key, "_renamed_by_a_release")
    return "._renamed_by_a_release"


def _fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.get_records("call")
        if r.name.startswith("livekit_filler") and r.levelno == logging.WARNING
    ]


@pytest.mark.usefixtures("fresh_fallbacks")
@pytest.mark.parametrize(
    "key",
    [
        "AgentActivity",
        "session.activity",
        "activity.agent",
        "activity.paused",
        "activity.queue",
        "session.closing_task",
        "session.closing",
    ],
)
async def test_without_what_the_floor_reads_the_session_runs_with_no_filler(
    key: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = _gone(monkeypatch, key)
    run = await run_tool(
        sleeping(1.0),
        settings=phrase_settings("Private first.", "Private follow-up.", delay=0.2),
        wait_for=ANSWER,
    )
    assert run.outcomes == {"slow_tool": RESULT}, run.outcomes
    assert ANSWER in [u.text for u in run.utterances], run.timeline
    assert not run.fillers, run.timeline
    warnings = [w for w in _fallback_warnings(caplog) if missing in w]
    assert len(warnings) == 1, _fallback_warnings(caplog)  # one, however often it is read
    assert LIVEKIT_VERSION in warnings[0] and "fillers are skipped" in warnings[0], warnings


@pytest.mark.usefixtures("fresh_fallbacks")
async def test_without_the_other_unexported_names_each_fallback_works_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = [
        _gone(monkeypatch, key)
        for key in (
            "ActivityClosedError",
            "is_context_type",
            "audio_frames_from_file",
            "SessionConnectOptions",
            "_get_activity_task_info",
        )
    ]
    assert _livekit_private.activity_closed_error() is not Exception
    assert not issubclass(RuntimeError, _livekit_private.activity_closed_error())
    assert _livekit_private.is_context_type(RunContext[Any], allow_subclasses=True)
    assert not _livekit_private.is_context_type(int, allow_subclasses=True)
    with pytest.raises(RuntimeError, match="cannot decode"):
        _livekit_private.audio_frames_from_file("clip.wav", sample_rate=48000)
    assert _livekit_private.running_tool_call() is None
    async with make_session(llm=FakeLLM(), tts=FakeTTS()) as session:  # no SessionConnectOptions
        await session.start(Agent(instructions="x"))
    warnings = _fallback_warnings(caplog)
    for name in missing:
        assert len([w for w in warnings if name in w]) == 1, (name, warnings)
    assert all(LIVEKIT_VERSION in w for w in warnings), warnings
