"""State that holds in a fleet (issue 19): learning merged across job processes, no file I/O
on the event loop, nothing of a caller's on disk, contained bookkeeping errors, crash-safe
files. Real AgentSessions driven by the testing kit; real processes where processes matter.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from filler_harness import ANSWER, RESULT, settle
from livekit.agents import Agent, RunContext, function_tool, llm

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler._compat import tool_call_outputs
from livekit_filler.disk_store import FILE_FORMAT
from livekit_filler.disk_writer import BackgroundWriter, flush
from livekit_filler.latency import LatencyModel, reset_shared
from livekit_filler.latency_files import history_path
from livekit_filler.sound_cache import FillerAudioCache, shared_cache
from livekit_filler.testing import (
    FakeLLM,
    FakeResponse,
    FakeToolCall,
    FakeTTS,
    TimelineRecorder,
    make_session,
)
from livekit_filler.tool_calls import ToolCalls, TrackedCall
from livekit_filler.tts_identity import sound_key

REPO = Path(__file__).resolve().parent.parent
FIXED = "One moment please."
TEMPLATE = "Let me pull up the file for {name}."
CALLER = "Jane Doe"


@pytest.fixture(autouse=True)
def fresh_state() -> Iterator[None]:
    shared_cache().clear()
    reset_shared()
    yield
    flush()
    shared_cache().clear()
    reset_shared()


def _script(arguments: dict[str, Any]) -> Callable[[llm.ChatContext], FakeResponse | None]:
    def respond(chat_ctx: llm.ChatContext) -> FakeResponse | None:
        last = chat_ctx.items[-1]
        if isinstance(last, llm.FunctionCallOutput):
            return FakeResponse(text=ANSWER) if RESULT in last.output else None
        if isinstance(last, llm.ChatMessage) and last.role == "user":
            return FakeResponse(tool_calls=[FakeToolCall(last.text_content or "", arguments)])
        return None

    return respond


class Records(Agent):
    """A slow tool whose filler names the caller, and a fixed-phrase one."""

    def __init__(self, seconds: float = 0.6) -> None:
        super().__init__(instructions="test")
        self.seconds = seconds

    @function_tool
    @fillers(TEMPLATE, delay=0.1, max_count=1)
    async def open_file(self, context: RunContext[Any], name: str) -> str:
        """Open a caller's file."""
        await asyncio.sleep(self.seconds)
        return RESULT

    @function_tool
    @fillers(FIXED, delay=0.1, max_count=1)
    async def lookup(self, context: RunContext[Any]) -> str:
        """Look something up."""
        await asyncio.sleep(self.seconds)
        return RESULT

    @function_tool
    @fillers(max_count=1)
    async def check(self, context: RunContext[Any], name: str) -> str:
        """Check a caller's record (the settings' phrases, or a contextual one)."""
        await asyncio.sleep(self.seconds)
        return RESULT


async def _call(
    agent: Agent, tool: str, settings: FillerSettings, arguments: dict[str, Any] | None = None
) -> tuple[TimelineRecorder, FillerController]:
    fake_llm = FakeLLM(_script(arguments or {}), default=None, ttft=0.02)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=0.02, seconds_per_char=0.01)) as s:
        controller = FillerController.attach(s, settings=settings)
        rec = TimelineRecorder.install(s)
        await s.start(agent)
        await s.run(user_input=tool)
        await settle(s, 0.05)
    return rec, controller


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


# -- privacy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("persist_templated", [False, True])
async def test_a_templated_filler_with_a_callers_name_writes_no_file(
    persist_templated: bool, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    settings = FillerSettings.from_values(
        cache_dir=cache_dir, prerender=False, persist_templated=persist_templated
    )
    # the fixed phrase is on disk first: the directory is in use, and fixed phrases persist
    await _call(Records(), "lookup", settings)
    assert flush()
    before = _files(cache_dir)
    assert any(p.name == "sound.wav" for p in before)
    shared_cache().clear()

    rec, _ = await _call(Records(), "open_file", settings, {"name": CALLER})
    assert flush()
    said = [u.text for u in rec.utterances if u.kind == "filler"]
    assert said == [f"Let me pull up the file for {CALLER}."]  # the filler did play
    new_sounds = {p for p in _files(cache_dir) - before if p.parent.parent.name.startswith("v")}
    if persist_templated:
        assert len(new_sounds) == 2  # sound.wav + sound.json: the opt-in persists it
    else:
        assert new_sounds == set()
        assert shared_cache()._private == {}  # nor kept in memory after its call


async def test_a_contextual_filler_is_never_written_to_disk(tmp_path: Path) -> None:
    from livekit_filler import ContextualFillers

    written = "Opening the file of Jane Doe now."
    cache_dir = tmp_path / "cache"
    tts = FakeTTS(ttfb=0.02, seconds_per_char=0.01)
    writer = FakeLLM(default=FakeResponse(text=written), ttft=0.02)
    settings = FillerSettings.from_values(cache_dir=cache_dir, phrases=[FIXED], delay=0.4)
    async with make_session(llm=FakeLLM(_script({"name": CALLER})), tts=tts) as s:
        rec = TimelineRecorder.install(s)
        controller = FillerController.attach(s, settings=settings)
        controller.use_contextual(ContextualFillers(writer, budget=0.3))
        await s.start(Records(seconds=1.2))
        await s.run(user_input="check")
        await settle(s, 0.05)
    assert flush()
    assert [u.text for u in rec.utterances if u.kind == "filler"] == [written]
    on_disk = {p.name for p in (cache_dir / f"v{FILE_FORMAT}").iterdir()}
    assert sound_key(tts, FIXED) in on_disk  # the fixed phrase was pre-rendered and written
    assert sound_key(tts, written) not in on_disk
    assert shared_cache().peek(sound_key(tts, written)) is None  # gone with its call


# -- containment --------------------------------------------------------------------------------


class Outcomes(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="test")
        self.seen: list[str] = []

    @function_tool
    @fillers(FIXED, delay=0.05, max_count=1)
    async def works(self, context: RunContext[Any]) -> str:
        """Returns."""
        await asyncio.sleep(0.2)
        return RESULT

    @function_tool
    @fillers(FIXED, delay=0.05, max_count=1)
    async def fails(self, context: RunContext[Any]) -> str:
        """Raises."""
        await asyncio.sleep(0.2)
        raise ValueError("the tool's own error")


@pytest.mark.allow_error_logs
async def test_a_bookkeeping_error_never_changes_a_tools_result_or_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: LatencyModel, tool: str, seconds: float) -> None:
        raise RuntimeError("injected bookkeeping failure")

    monkeypatch.setattr(LatencyModel, "record", broken)
    settings = FillerSettings.from_values(cache_dir=tmp_path / "c", prerender=False)
    outputs: list[tuple[str, str, bool]] = []
    for tool in ("works", "fails"):
        fake_llm = FakeLLM(_script({}), default=None, ttft=0.02)
        async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=0.02, seconds_per_char=0.01)) as s:
            FillerController.attach(s, settings=settings)

            def on_executed(ev: Any) -> None:
                outputs.extend((o.name, o.output, o.is_error) for o in tool_call_outputs(ev))

            s.on("function_tools_executed", on_executed)
            await s.start(Outcomes())
            await s.run(user_input=tool)
            await settle(s, 0.05)
    assert outputs[0] == ("works", RESULT, False)  # the result reached the LLM unchanged
    assert outputs[1][0] == "fails" and outputs[1][2] is True
    # LiveKit saw the tool's own exception, not ours
    raised = [r.exc_info[1] for r in caplog.records if r.name == "livekit.agents" and r.exc_info]
    assert [type(e) for e in raised] == [ValueError] and "own error" in str(raised[0])
    ours = [r for r in caplog.records if r.name == "livekit_filler" and r.levelno >= logging.ERROR]
    assert len(ours) == 2 and all("bookkeeping failed" in r.getMessage() for r in ours)


@pytest.mark.allow_error_logs
async def test_a_bookkeeping_error_never_changes_a_cancellation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ToolCalls, token: object, *, reason: str) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(ToolCalls, "_finish", broken)
    settings = FillerSettings.from_values(cache_dir=tmp_path / "c", prerender=False)
    fake_llm = FakeLLM(_script({}), default=None, ttft=0.02)
    async with make_session(llm=fake_llm, tts=FakeTTS(ttfb=0.02, seconds_per_char=0.01)) as s:
        controller = FillerController.attach(s, settings=settings)
        await s.start(Outcomes())
        agent = s.current_agent
        assert isinstance(agent, Outcomes)

        token: list[TrackedCall] = []

        async def body() -> None:
            found = controller._calls.begin(call_id="c1", tool_name="works", tool_handle=None)
            assert found is not None
            token.append(found)
            try:
                await asyncio.sleep(10)
            finally:
                controller._calls.end(found, reason="cancelled")

        task = asyncio.create_task(body())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert token


# -- learning across processes -------------------------------------------------------------------

_LEARNER = textwrap.dedent(
    """
    import sys, time
    from livekit_filler.latency import shared_model
    directory, tool, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    model = shared_model(directory, "project-a")
    while time.time() < start:
        time.sleep(0.001)
    for seconds in (1.4, 1.5, 1.6):  # three calls, each saved as a job process would
        model.record(tool, seconds)
        model.save_soon()
    # the process ends: the writer flushes at exit
    """
)


def test_four_processes_learn_into_one_history_a_fifth_knows_every_tool(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    tools = [f"tool_{i}" for i in range(4)]
    start = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LEARNER, str(directory), tool, str(start)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tool in tools
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    fifth = LatencyModel(path=history_path(directory, "project-a"))
    fifth.load()
    assert {t: fifth.typical(t) for t in tools} == dict.fromkeys(tools, pytest.approx(1.5))
    assert all(len(fifth.samples(t)) == 3 for t in tools)
    # another project in the same directory learned nothing of them
    other = LatencyModel(path=history_path(directory, "project-b"))
    assert other.load() == 0


_KILLED = textwrap.dedent(
    """
    import sys
    from livekit import rtc
    from livekit_filler.sound_cache import FillerAudioCache
    from livekit_filler.latency import LatencyModel
    from livekit_filler.latency_files import history_path
    root = sys.argv[1]
    model = LatencyModel(path=history_path(root, "p"))
    cache = FillerAudioCache()
    cache.persist_to(root)
    store = cache.stores[0]
    print("ready", flush=True)
    n = 0
    while True:  # write until killed
        n += 1
        model.record(f"tool_{n % 40}", 0.5 + n % 7)
        model.save()
        pcm = bytes([n % 256]) * 9600
        store.write(f"{n:032x}", rtc.AudioFrame(pcm, 24000, 1, 4800))
    """
)


@pytest.mark.parametrize("after", [0.05, 0.13, 0.31])
def test_a_process_killed_mid_write_leaves_a_readable_cache(
    after: float, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    caplog.set_level(logging.WARNING, logger="livekit_filler")
    model = LatencyModel(path=history_path(root, "p"))
    assert model.load() > 0
    cache = FillerAudioCache()
    count = cache.persist_to(root)
    assert count > 0
    for key in list(cache.stores[0]._keys):
        assert cache.load(key), key  # every published sound is whole
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- lock, writer -------------------------------------------------------------------------------


def test_a_lock_held_too_long_by_another_process_never_blocks_learning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import fcntl

    from livekit_filler import latency_files

    monkeypatch.setattr(latency_files, "LOCK_TIMEOUT", 0.1)
    path = history_path(tmp_path, "p")
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            " fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)",
            str(path.with_name(path.name + ".lock")),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        model = LatencyModel(path=path)
        started = time.monotonic()
        model.record("lookup", 1.0)  # a call never waits for the disk
        assert time.monotonic() - started < 0.05  # well under LOCK_TIMEOUT (0.1 s here)
        assert not model.save() and not model.save()
        assert model.typical("lookup") == 1.0  # learning goes on in memory
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "locked by another process" in warnings[0].getMessage()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert model.save()  # the lock is free: the kept samples reach the file
    fresh = LatencyModel(path=path)
    fresh.load()
    assert fresh.samples("lookup") == [1.0]
    del fcntl


def test_the_writer_coalesces_saves_and_flush_is_bounded() -> None:
    w = BackgroundWriter(name="test-writer")
    runs: list[int] = []

    def save(n: int) -> Callable[[], None]:
        return lambda: runs.append(n)

    for n in range(50):
        w.submit("history", save(n), delay=0.2)
    assert w.flush(5.0)
    assert runs == [49]  # fifty saves asked for, one write
    release = threading.Event()
    w.submit("stuck", release.wait)
    started = time.monotonic()
    assert not w.flush(0.1)  # a stuck disk never holds the caller past the bound
    assert time.monotonic() - started < 0.5
    release.set()
    assert w.flush(5.0)


# -- no file I/O on the event loop -------------------------------------------------------------


class _LoopIO:
    """Records file operations under ``root`` made on a thread running an event loop."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = str(root)
        self.on_loop: list[str] = []
        for name in ("open", "rename", "replace", "mkdir", "scandir", "stat", "unlink", "utime"):
            original = getattr(os, name)
            monkeypatch.setattr(os, name, self._wrap(name, original))
        monkeypatch.setattr(builtins, "open", self._wrap("builtins.open", builtins.open))
        monkeypatch.setattr(io, "open", self._wrap("io.open", io.open))

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            target = str(args[0]) if args else ""
            if target.startswith(self.root) and _on_loop():
                self.on_loop.append(f"{name} {target}")
            return original(*args, **kwargs)

        return wrapped


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def test_no_file_operation_of_the_cache_runs_on_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    settings = FillerSettings.from_values(
        cache_dir=cache_dir, delay=0.1, phrases=[FIXED], timing="fixed"
    )
    io_log = _LoopIO(cache_dir, monkeypatch)
    # a first process: attach, pre-render, three calls; a second: replays from disk
    for _ in range(2):
        for tool in ("lookup", "lookup", "lookup"):
            rec, _ = await _call(Records(seconds=0.4), tool, settings)
            assert [u.text for u in rec.utterances if u.kind == "filler"] == [FIXED]
        await asyncio.to_thread(flush)
        shared_cache().clear()
        shared_cache().detach_disk()
        reset_shared()
    assert shared_cache().characters_rendered == 0  # the second process read the disk
    assert io_log.on_loop == []
    # the files were there: the check saw them (it would have recorded any on the loop)
    assert any((cache_dir / f"v{FILE_FORMAT}").iterdir())
    assert list((cache_dir / "latency").glob("*.json"))


def test_the_memory_bound_holds_with_many_distinct_sounds() -> None:
    cache = FillerAudioCache(max_bytes=1_000_000)
    tts = FakeTTS(ttfb=0.0, seconds_per_char=0.01)
    pcm = b"\x01\x00" * 24000  # 1 s at 24 kHz: 48,000 bytes
    from livekit import rtc

    pinned = sound_key(tts, "pinned")
    cache.hold(pinned)
    cache.put(pinned, rtc.AudioFrame(pcm, 24000, 1, 24000))
    for n in range(200):
        cache.put(sound_key(tts, f"phrase {n}"), rtc.AudioFrame(pcm, 24000, 1, 24000))
        assert cache.memory_bytes <= 1_000_000
    assert cache.peek(pinned) is not None  # held: never evicted
    assert cache.peek(sound_key(tts, "phrase 199")) is not None
    assert cache.peek(sound_key(tts, "phrase 0")) is None
    assert cache.evicted > 150
