"""The persistent disk cache of filler audio: on by default, safe with many processes, bounded.

LiveKit runs each call in a fresh process, so only the disk carries a rendered filler from one
call to the next. conftest.py gives every test its own default cache directory
(``isolate_disk_cache``): no test touches the user's.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from filler_harness import wait_until
from livekit.agents import Agent, RunContext, function_tool

from livekit_filler import FillerController, FillerSettings, fillers
from livekit_filler.disk_store import FILE_FORMAT, DiskStore
from livekit_filler.disk_writer import flush
from livekit_filler.errors import FillerConfigError
from livekit_filler.filler_voice import FillerVoice
from livekit_filler.sound_cache import FillerAudioCache, shared_cache
from livekit_filler.testing import FakeLLM, FakeTTS, TimelineRecorder, make_session
from livekit_filler.tts_identity import sound_key

REPO = Path(__file__).resolve().parent.parent
WORDS = "Saved filler words."
MORE = "More filler words."


@pytest.fixture(autouse=True)
def empty_shared_cache() -> Iterator[None]:
    shared_cache().clear()
    yield
    shared_cache().clear()


def fake_tts() -> FakeTTS:
    return FakeTTS(ttfb=0.01, seconds_per_char=0.01)


def sound_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / f"v{FILE_FORMAT}").iterdir() if not p.name.startswith("."))


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("livekit_filler") and r.levelno == logging.WARNING
    ]


def pcm(frame: Any) -> bytes:
    return bytes(frame.data)


class Desk(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a test assistant.")

    @function_tool
    @fillers(WORDS)
    async def look_up(self, context: RunContext[Any]) -> str:
        """Look something up."""
        return "done"


def settings(**overrides: Any) -> FillerSettings:
    return FillerSettings.from_values(**{"delay": 0.1, **overrides})


# -- on by default -------------------------------------------------------------------------------


async def test_a_fresh_process_replays_what_an_earlier_call_rendered(
    isolate_disk_cache: Path,
) -> None:
    first = fake_tts()
    async with make_session(llm=FakeLLM(), tts=first) as session:
        TimelineRecorder.install(session)
        controller = FillerController.attach(session, settings=settings())
        await session.start(Desk())
        await wait_until(lambda: controller.voice.is_ready(first, WORDS), 5.0)
    assert first.synthesized == [WORDS]
    assert len(sound_dirs(isolate_disk_cache)) == 1  # in the per-user directory by default

    # a fresh process: nothing in memory, the disk cache opened again
    shared_cache().clear()
    shared_cache().detach_disk()
    assert FillerController.prewarm(settings()) == 1
    second = fake_tts()
    async with make_session(llm=FakeLLM(), tts=second) as session:
        TimelineRecorder.install(session)
        controller = FillerController.attach(session, settings=settings())
        await session.start(Desk())
        await wait_until(lambda: shared_cache().disk_loads == 1, 5.0)
        sound = controller.voice.audio_for(second, WORDS)
        assert sound is not None and sound[1] == "cache"
    assert second.synthesized == []
    assert shared_cache().characters_rendered == 0


@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_the_disk_cache_is_off_when_configured_off(
    how: str, isolate_disk_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "argument":
        off = settings(disk_cache=False)
    else:
        monkeypatch.setenv("LIVEKIT_FILLER_DISK_CACHE", "false")
        off = FillerSettings.load(delay=0.1)
    assert off.disk_cache is False
    tts = fake_tts()
    async with make_session(llm=FakeLLM(), tts=tts) as session:
        TimelineRecorder.install(session)
        controller = FillerController.attach(session, settings=off)
        await session.start(Desk())
        await wait_until(lambda: controller.voice.is_ready(tts, WORDS), 5.0)
    assert FillerController.prewarm(off) == 0
    assert shared_cache().stores == ()
    assert not os.path.exists(isolate_disk_cache)  # noqa: ASYNC240


# -- bad directories ------------------------------------------------------------------------------


def test_a_cache_directory_given_as_a_file_fails_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x")
    with pytest.raises(FillerConfigError, match=r"cache_dir = .*not-a-dir.*is a file"):
        FillerSettings.from_values(cache_dir=a_file)
    monkeypatch.setenv("LIVEKIT_FILLER_CACHE_DIR", str(a_file / "sub"))
    with pytest.raises(FillerConfigError) as caught:
        FillerSettings.load()
    assert "cache_dir" in str(caught.value) and "LIVEKIT_FILLER_CACHE_DIR" in str(caught.value)
    assert str(a_file) in str(caught.value)


async def test_a_default_cache_directory_that_is_a_file_fails_at_attach(
    isolate_disk_cache: Path,
) -> None:
    os.makedirs(isolate_disk_cache.parent)
    with open(isolate_disk_cache, "w") as f:  # noqa: ASYNC230
        f.write("x")
    async with make_session(llm=FakeLLM(), tts=fake_tts()) as session:
        with pytest.raises(FillerConfigError, match="cache_dir") as caught:
            FillerController.attach(session, settings=settings())
        assert str(isolate_disk_cache) in str(caught.value)
        assert FillerController.of(session) is None


async def test_attach_after_the_prewarm_step_checks_no_directory_on_the_event_loop(
    isolate_disk_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from livekit_filler import disk_store

    on_loop: list[Path] = []  # checks made in this thread (the background writer's are not)
    real = disk_store._file_in_the_way

    def recording(path: Path) -> Path | None:
        if threading.current_thread() is threading.main_thread():
            on_loop.append(path)
        return real(path)

    monkeypatch.setattr(disk_store, "_file_in_the_way", recording)
    async with make_session(llm=FakeLLM(), tts=fake_tts()) as session:
        FillerController.attach(session, settings=settings())  # no prewarm: checked at once
    assert on_loop == [isolate_disk_cache]
    shared_cache().detach_disk()
    FillerController.prewarm(settings())  # the idle process's step, before any call
    after_prewarm = len(on_loop)
    assert after_prewarm > 1
    async with make_session(llm=FakeLLM(), tts=fake_tts()) as session:
        FillerController.attach(session, settings=settings())
    assert len(on_loop) == after_prewarm  # the call's attach did not stat it again


@pytest.mark.parametrize("fault", ["read_only", "disk_full"])
async def test_an_unwritable_cache_directory_logs_one_warning_and_falls_back_to_memory(
    fault: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = tmp_path / "cache"
    if fault == "read_only":
        root.mkdir()
        root.chmod(0o555)
        real_mkdir = os.mkdir

        def no_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
            # root ignores file modes: refuse as a read-only file system would
            if str(path).startswith(str(root)):
                raise PermissionError(errno.EROFS, "Read-only file system", str(path))
            real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", no_mkdir)
    else:

        def full(*args: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr("livekit_filler.disk_store._write_files", full)
    try:
        cache = FillerAudioCache()
        cache.persist_to(root)
        voice = FillerVoice(cache)
        tts = fake_tts()
        assert await voice.prerender(tts, [WORDS, MORE]) == 2
        sound = voice.audio_for(tts, WORDS)
        assert sound is not None and sound[1] == "cache"  # kept in memory
        assert voice.is_ready(tts, MORE)
        assert warnings_of(caplog) == [
            "cannot write filler audio to the disk cache; new renders stay in memory only"
        ]
        assert not cache.stores[0].writable
        assert not [p for p in root.rglob("*") if p.is_file()]  # no partial file left behind
    finally:
        root.chmod(0o755)


# -- damage ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated_wav", "garbage_wav", "empty_sidecar", "other_key"])
async def test_a_corrupt_or_truncated_sound_is_skipped_and_replaced(
    damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "cache"
    tts = fake_tts()
    first = FillerAudioCache()
    first.persist_to(root)
    assert await FillerVoice(first).prerender(tts, [WORDS, MORE]) == 2
    assert flush()  # the background writer published both
    key = sound_key(tts, WORDS)
    entry = root / f"v{FILE_FORMAT}" / key
    wav, sidecar = entry / "sound.wav", entry / "sound.json"
    if damage == "truncated_wav":
        data = wav.read_bytes()
        wav.write_bytes(data[: len(data) // 2])
    elif damage == "garbage_wav":
        wav.write_bytes(os.urandom(2000))
    elif damage == "empty_sidecar":
        sidecar.write_text("")
    else:  # a sidecar recording another sound
        record = json.loads(sidecar.read_text())
        record["key"] = sound_key(tts, MORE)
        sidecar.write_text(json.dumps(record))

    fresh = FillerAudioCache()
    assert fresh.persist_to(root) == 2
    voice = FillerVoice(fresh)
    assert await fresh.load_async(sound_key(tts, MORE)) is not None  # the undamaged one loads
    assert await fresh.load_async(key) is None  # skipped, not played
    assert warnings_of(caplog) == ["skipping filler audio files that do not match their record"]
    assert not entry.exists()  # removed, so it can be written again
    assert await voice.prerender(tts, [WORDS]) == 1  # rendered again...
    assert tts.synthesized == [WORDS, MORE, WORDS]
    assert flush()

    again = FillerAudioCache()  # ...and replaced on disk
    again.persist_to(root)
    reloaded = again.peek(key) if again.load(key) else None
    assert reloaded is not None and pcm(reloaded) == tts.pcm_for(WORDS)


_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from livekit_filler.filler_voice import FillerVoice
    from livekit_filler.sound_cache import FillerAudioCache
    from livekit_filler.tts_identity import sound_key
    from livekit_filler.disk_writer import flush
    from livekit_filler.testing import FakeTTS

    root, start, text = sys.argv[1], float(sys.argv[2]), sys.argv[3]

    async def main() -> None:
        tts = FakeTTS(ttfb=0.0, seconds_per_char=0.01)
        frame = await tts.synthesize(text).collect()
        while time.time() < start:
            await asyncio.sleep(0.001)
        rendered = 0
        for _ in range(30):  # render (or find) the same key again and again, in new caches
            cache = FillerAudioCache()
            cache.persist_to(root)
            cache.put(sound_key(tts, text), frame)
            if cache.get(sound_key(tts, text)) is None:
                sys.exit("reader error")
        assert flush(10.0)  # the background writer published them
        cache = FillerAudioCache()
        cache.persist_to(root)
        rendered = await FillerVoice(cache).prerender(tts, [text])
        print(rendered)

    asyncio.run(main())
    """
)


def test_processes_rendering_one_key_at_once_leave_one_valid_sound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "shared"
    tts = FakeTTS(ttfb=0.0, seconds_per_char=0.01)
    key = sound_key(tts, WORDS)
    start = time.time() + 4.0  # every writer is imported and waiting by then
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), str(start), WORDS],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(4)
    ]
    reads = loaded = 0
    while any(w.poll() is None for w in writers):
        if time.time() >= start:  # read while they write: a whole sound or nothing
            reader = FillerAudioCache()
            reader.persist_to(root)
            frame = reader.peek(key) if reader.load(key) else None
            reads += 1
            if frame is not None:
                loaded += 1
                assert pcm(frame) == tts.pcm_for(WORDS)
        time.sleep(0.002)
    for writer in writers:
        out, err = writer.communicate()
        assert writer.returncode == 0, err
        assert out.strip() == "0"  # the last pass found the sound on disk: nothing rendered
    assert warnings_of(caplog) == []  # no reader ever saw a damaged sound
    assert reads > 0 and loaded > 0
    assert [p.name for p in sound_dirs(root)] == [key]
    leftovers = [p.name for p in (root / f"v{FILE_FORMAT}").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert sorted(p.name for p in (root / f"v{FILE_FORMAT}" / key).iterdir()) == [
        "sound.json",
        "sound.wav",
    ]
    final = FillerAudioCache()
    final.persist_to(root)
    frame = final.peek(key) if final.load(key) else None
    assert frame is not None and pcm(frame) == tts.pcm_for(WORDS)


# -- bound and start-up cost ---------------------------------------------------------------------


async def test_the_least_recently_used_sounds_are_evicted_above_the_size_bound(
    tmp_path: Path,
) -> None:
    root = tmp_path / "cache"
    tts = FakeTTS(ttfb=0.0, seconds_per_char=0.01)
    texts = [f"Filler number {i:02d}." for i in range(12)]  # 0.17 s: 8,204 bytes each
    frames = {t: await tts.synthesize(t).collect() for t in texts}
    bound = 85_000  # 10 sounds; the 11th write evicts down to 90 %: the 2 least recently used
    cache = FillerAudioCache()
    cache.persist_to(root, max_bytes=bound)
    store = cache.stores[0]
    for n, text in enumerate(texts[:4]):
        cache.put(sound_key(tts, text), frames[text])
        assert flush()
        store.wait_for_scan(5.0)
        os.utime(root / f"v{FILE_FORMAT}" / sound_key(tts, text), (1000.0 + n, 1000.0 + n))
    # the oldest of these is used again: it becomes the most recent
    reader = FillerAudioCache()
    reader.persist_to(root, max_bytes=bound)
    assert reader.load(sound_key(tts, texts[0]))
    for text in texts[4:]:
        cache.put(sound_key(tts, text), frames[text])
        assert flush()
        store.wait_for_scan(5.0)  # a write past the bound scans in the background
    total = sum(p.stat().st_size for p in root.rglob("sound.wav"))
    assert total <= bound
    assert store.evicted > 0
    kept = {p.name for p in sound_dirs(root)}
    assert sound_key(tts, texts[0]) in kept  # used recently
    assert sound_key(tts, texts[1]) not in kept  # the oldest unused went first
    assert sound_key(tts, texts[2]) not in kept
    assert sound_key(tts, texts[3]) in kept
    assert sound_key(tts, texts[-1]) in kept


def test_opening_a_thousand_sounds_reads_no_sound_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cache"
    directory = root / f"v{FILE_FORMAT}"
    directory.mkdir(parents=True)
    for i in range(1000):
        entry = directory / f"{i:032x}"
        entry.mkdir()
        (entry / "sound.wav").write_bytes(b"")
        (entry / "sound.json").write_text("{}")
    opened: list[str] = []

    def read_at(handle: int, path: Path, name: str) -> bytes:
        opened.append(name)
        return b""

    monkeypatch.setattr("livekit_filler.disk_store._read_at", read_at)
    store = DiskStore(root)
    began = time.perf_counter()
    assert store.open() == 1000
    elapsed = time.perf_counter() - began
    assert opened == []  # listed only; each sound is read on its first use
    assert elapsed < 0.5  # the benchmark measures it properly (docs/benchmarks.md)
