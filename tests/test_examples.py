"""The examples cannot rot: each one imports without API keys, and the worker's agents run.

``examples/`` is not a package; modules are loaded from their file with importlib.
The worker's own ``FrontDeskAgent`` and ``CollectAgeGender`` run headless on the testing kit
through the forum thread's flow: ``get_programs`` looks up slowly, awaits the AgentTask,
and the front desk answers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from livekit.agents import JobExecutorType, JobProcess, llm
from livekit.agents.voice.events import ConversationItemAddedEvent, ErrorEvent

from livekit_filler import FillerController, FillerSettings
from livekit_filler.errors import FillerConfigError
from livekit_filler.testing import (
    FakeLLM,
    FakeRealtimeModel,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    Utterance,
    format_timeline,
    make_session,
    overlaps,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.py"))

QUESTION = "What programs do you have for my seven year old son?"
TASK_GREETING = "A seven year old boy, got it."
FINAL_ANSWER = "For a seven year old boy we have Giants, Hustlers and Avengers."
LOOKUP_SECONDS = 1.0


@pytest.fixture
def no_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide every provider and LiveKit credential, as on a fresh machine."""
    for name in ("OPENAI_API_KEY", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(name, raising=False)
    # load_dotenv() at import searches upward from examples/: a developer's .env would put
    # the keys back (and into os.environ for every later test)
    monkeypatch.setattr("dotenv.load_dotenv", lambda *args, **kwargs: False)


def _load(path: Path) -> ModuleType:
    """Import an example from its file, once per test session."""
    name = f"_livekit_filler_examples.{path.stem}"
    if (module := sys.modules.get(name)) is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses and function_tool resolve postponed annotations through sys.modules
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@pytest.fixture
def worker(no_api_keys: None) -> ModuleType:
    """The worker example, imported with no keys and no .env."""
    return _load(EXAMPLES / "worker.py")


def test_examples_directory_has_modules() -> None:
    assert EXAMPLES / "worker.py" in EXAMPLE_FILES
    assert EXAMPLES / "realtime_worker.py" in EXAMPLE_FILES


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_imports_without_api_keys(path: Path, no_api_keys: None) -> None:
    module = _load(path)
    assert module.__doc__, f"{path.name} needs a module docstring saying how to run it"


def test_worker_agents_build_without_api_keys(worker: ModuleType) -> None:
    agent = worker.FrontDeskAgent()
    assert sorted(tool.info.name for tool in agent.tools) == ["book_trial_class", "get_programs"]
    task = worker.CollectAgeGender(age=7)
    assert {tool.info.name for tool in task.tools} == {"record_child_profile", "cancel_task"}
    assert "Age: 7" in task.instructions
    assert worker.server.setup_fnc is worker.prewarm


def _job_process() -> JobProcess:
    return JobProcess(executor_type=JobExecutorType.THREAD, user_arguments=None, http_proxy=None)


def test_worker_prewarm_loads_vad_and_settings(worker: ModuleType, tmp_path: Path) -> None:
    config = tmp_path / "config" / "filler.toml"
    config.parent.mkdir()
    config.write_text("delay = 0.25\n")
    proc = _job_process()
    worker.prewarm(proc)
    assert proc.userdata[worker.SETTINGS_KEY].delay == 0.25
    assert proc.userdata[worker.VAD_KEY] is not None


def test_worker_prewarm_fails_on_bad_config(
    worker: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVEKIT_FILLER_DELAY", "-1")
    proc = _job_process()
    with pytest.raises(FillerConfigError, match="LIVEKIT_FILLER_DELAY"):
        worker.prewarm(proc)
    assert worker.VAD_KEY not in proc.userdata


# -- the worker's agents, headless -------------------------------------------------------------


def _script(task_instructions: str) -> Any:
    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        items = chat_ctx.items
        last = items[-1] if items else None
        if isinstance(last, llm.FunctionCallOutput):
            if last.name == "get_programs":
                return FakeResponse(text=FINAL_ANSWER)
            return FakeResponse()  # after record_child_profile the task is over
        in_task = any(
            isinstance(i, llm.ChatMessage)
            and i.role in ("system", "developer")
            and task_instructions in (i.text_content or "")
            for i in items
        )
        if in_task:
            return FakeResponse(
                text=TASK_GREETING,
                tool_calls=(FakeToolCall("record_child_profile", {"age": 7, "gender": "male"}),),
            )
        if isinstance(last, llm.ChatMessage) and last.text_content == QUESTION:
            return FakeResponse(tool_calls=(FakeToolCall("get_programs"),))
        return None

    return respond


def _texts(items: Sequence[llm.ChatItem]) -> list[str]:
    return [i.text_content or "" for i in items if isinstance(i, llm.ChatMessage)]


@dataclass
class _Call:
    """What a caller heard and the session kept from one front-desk call."""

    utterances: list[Utterance]
    history: list[str]
    errors: list[ErrorEvent]


async def _front_desk_call(
    example: ModuleType,
    model: FakeLLM | FakeRealtimeModel,
    *,
    session_tts: FakeTTS | None,
    filler_voice: FakeTTS | None = None,
) -> _Call:
    """Run the example's ``FrontDeskAgent`` through the thread's flow with a slow lookup and
    the controller attached, until the final answer has played."""

    async def slow_lookup() -> Any:
        await asyncio.sleep(LOOKUP_SECONDS)
        return example.CATALOGUE  # as the example's own lookup_programs

    errors: list[ErrorEvent] = []
    async with make_session(llm=model, tts=session_tts) as session:
        session.on("error", errors.append)
        answered = asyncio.Event()

        def on_item_added(ev: ConversationItemAddedEvent) -> None:
            if isinstance(ev.item, llm.ChatMessage) and ev.item.text_content == FINAL_ANSWER:
                answered.set()

        session.on("conversation_item_added", on_item_added)
        recorder = TimelineRecorder.install(session)
        FillerController.attach(
            session,
            settings=FillerSettings.from_values(delay=0.3, interval=2.0, max_count=1),
            tts=filler_voice,
        )
        await session.start(example.FrontDeskAgent(lookup=slow_lookup))
        await session.run(user_input=QUESTION)
        # with an AgentTask inside the tool, run() can return before the parent's reply
        await asyncio.wait_for(answered.wait(), timeout=15.0)
        while (speech := session.current_speech) is not None:
            await speech
            await asyncio.sleep(0.01)  # a done handle stays current until the scheduler runs
        return _Call(recorder.utterances, _texts(session.history.items), errors)


def _assert_filled_through_the_task(
    call: _Call, example: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    """One filler of the example's own while the tool ran, then the task and the answer, with
    no error, no warning, no overlap and no filler in the history."""
    timeline = format_timeline(call.utterances)
    assert not call.errors, timeline
    warnings = [
        r.getMessage()
        for r in caplog.get_records("call")
        if r.name.startswith("livekit_filler") and r.levelno >= logging.WARNING
    ]
    assert not warnings, warnings
    assert not overlaps(call.utterances), timeline

    fillers = [u for u in call.utterances if u.kind == "filler"]
    assert fillers, f"no filler in a {LOOKUP_SECONDS} s lookup:\n{timeline}"
    assert {u.text for u in fillers} <= set(example.PROGRAM_FILLERS), timeline
    assert all(u.agent == "FrontDeskAgent" for u in fillers), timeline

    spoken = [(u.agent, u.text) for u in call.utterances if u.kind == "speech"]
    assert spoken == [
        ("CollectAgeGender", TASK_GREETING),
        ("FrontDeskAgent", FINAL_ANSWER),
    ], timeline
    assert FINAL_ANSWER in call.history
    assert not set(example.PROGRAM_FILLERS) & set(call.history), call.history


def _program_outputs(chat_contexts: Sequence[llm.ChatContext]) -> list[str]:
    return [
        item.output
        for ctx in chat_contexts
        for item in ctx.items
        if isinstance(item, llm.FunctionCallOutput) and item.name == "get_programs"
    ]


async def test_worker_front_desk_plays_a_filler_through_the_agent_task(
    worker: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm = FakeLLM(_script(worker.COLLECT_AGE_GENDER_INSTRUCTIONS), default=None, ttft=0.05)
    call = await _front_desk_call(
        worker, fake_llm, session_tts=FakeTTS(ttfb=0.05, seconds_per_char=0.01)
    )

    _assert_filled_through_the_task(call, worker, caplog)
    llm_texts = {t for ctx in fake_llm.calls for t in _texts(ctx.items)}
    assert not set(worker.PROGRAM_FILLERS) & llm_texts
    outputs = _program_outputs(fake_llm.calls)
    assert outputs[-1] == "Programs for a 7 year old male: Giants, Hustlers, Avengers"


# -- the realtime worker's agents, headless ----------------------------------------------------


@pytest.fixture
def realtime_worker(no_api_keys: None) -> ModuleType:
    """The realtime worker example, imported with no keys and no .env."""
    return _load(EXAMPLES / "realtime_worker.py")


def test_realtime_worker_agents_build_without_api_keys(realtime_worker: ModuleType) -> None:
    agent = realtime_worker.FrontDeskAgent()
    assert [tool.info.name for tool in agent.tools] == ["get_programs"]
    assert realtime_worker.server.setup_fnc is realtime_worker.prewarm


async def test_realtime_worker_front_desk_fills_on_a_speech_to_speech_model(
    realtime_worker: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    model = FakeRealtimeModel(
        _script(realtime_worker.COLLECT_AGE_GENDER_INSTRUCTIONS),
        default=None,
        ttft=0.05,
        seconds_per_char=0.01,
    )
    voice = FakeTTS(ttfb=0.05, seconds_per_char=0.012)  # the filler voice
    call = await _front_desk_call(realtime_worker, model, session_tts=None, filler_voice=voice)

    _assert_filled_through_the_task(call, realtime_worker, caplog)
    # never reached the model
    assert not set(realtime_worker.PROGRAM_FILLERS) & set(model.conversation_texts())
    outputs = _program_outputs(model.chat_ctx_updates)
    assert outputs[-1] == "Programs for a 7 year old male: Giants, Hustlers, Avengers"
