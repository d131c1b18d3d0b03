"""The files a fleet of processes shares: merged tool histories, faults while writing them,
private sounds that never reach the disk (deterministic, no sleeping)."""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import threading
from pathlib import Path

import pytest
from livekit import rtc

from livekit_filler import latency
from livekit_filler.disk_store import FILE_FORMAT, DiskStore
from livekit_filler.disk_writer import flush
from livekit_filler.latency import WINDOW, LatencyModel
from livekit_filler.latency_files import history_path
from livekit_filler.sound_cache import FillerAudioCache


def _frame(n: int, seconds: float = 0.1) -> rtc.AudioFrame:
    samples = int(24000 * seconds)
    return rtc.AudioFrame(bytes([n % 256, 0]) * samples, 24000, 1, samples)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_two_processes_histories_merge_instead_of_the_last_writer_winning(tmp_path: Path) -> None:
    path = history_path(tmp_path, "project")
    first, second = LatencyModel(path=path), LatencyModel(path=path)
    first.load(), second.load()  # both read the (empty) file at start, as processes do
    first.record("lookup", 1.0)
    second.record("book", 2.0)
    second.record("lookup", 3.0)
    assert first.save() and second.save()
    fifth = LatencyModel(path=path)
    assert fifth.load() == 2
    assert sorted(fifth.samples("lookup")) == [1.0, 3.0]  # every process's calls count
    assert fifth.samples("book") == [2.0]
    # a save counts each sample once, and leaves the model with the merged history
    assert first.save()
    assert sorted(first.samples("lookup")) == [1.0, 3.0] and first.samples("book") == [2.0]
    fresh = LatencyModel(path=path)
    fresh.load()
    assert sorted(fresh.samples("lookup")) == [1.0, 3.0]


def test_the_merged_history_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latency, "MAX_TOOLS", 5)
    path = history_path(tmp_path, "p")
    for n in range(12):
        model = LatencyModel(path=path)
        for i in range(WINDOW):
            model.record(f"tool_{n}", 1.0 + i)
            model.record("shared", 1.0)
        assert model.save()
    data = json.loads(path.read_text())
    assert len(data["tools"]) <= 5
    assert all(len(v) <= WINDOW for v in data["tools"].values())
    assert "shared" in data["tools"] and "tool_11" in data["tools"]


def test_two_projects_in_one_directory_keep_separate_histories(tmp_path: Path) -> None:
    a, b = history_path(tmp_path, "/srv/a/agent"), history_path(tmp_path, "/srv/b/agent")
    assert a != b and a.parent == b.parent == tmp_path / "latency"
    assert a.name.startswith("agent-")
    model = LatencyModel(path=a)
    model.record("lookup", 1.0)
    assert model.save()
    assert LatencyModel(path=b).load() == 0


def test_a_half_merged_history_is_empty_only_for_the_tools_it_cannot_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = history_path(tmp_path, "p")
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"format": 1, "tools": {"good": [1.0, 2.0], "bad": [1.0, "x"], "worse": {}}})
    )
    model = LatencyModel(path=path)
    assert model.load() == 1
    assert model.samples("good") == [1.0, 2.0] and "bad" not in model and "worse" not in model
    model.load()
    assert _warnings(caplog) == ["ignoring unreadable entries of a tool latency history"]
    model.record("bad", 4.0)
    assert model.save()  # a good file is written over it
    assert LatencyModel(path=path).load() == 2


def test_an_unlockable_directory_keeps_learning_in_memory_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = history_path(tmp_path, "p")
    real_open = os.open

    def read_only(file: object, *args: object, **kwargs: object) -> int:
        if str(file).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", read_only)
    model = LatencyModel(path=path)
    for seconds in (1.0, 2.0, 3.0):
        model.record("lookup", seconds)
        assert not model.save()
    assert model.typical("lookup") == 2.0
    assert len(_warnings(caplog)) == 1
    monkeypatch.setattr(os, "open", real_open)
    assert model.save()  # writable again: nothing was lost meanwhile
    fresh = LatencyModel(path=path)
    fresh.load()
    assert fresh.samples("lookup") == [1.0, 2.0, 3.0]


def test_a_full_disk_while_saving_keeps_the_old_file_and_the_new_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = history_path(tmp_path, "p")
    model = LatencyModel(path=path)
    model.record("lookup", 1.0)
    assert model.save()

    real_replace = os.replace

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    model.record("lookup", 2.0)
    assert not model.save()
    assert json.loads(path.read_text())["tools"] == {"lookup": [1.0]}  # the old file, whole
    assert not list(path.parent.glob("*.tmp"))  # no partial file left
    monkeypatch.setattr(os, "replace", real_replace)
    assert model.save()
    assert json.loads(path.read_text())["tools"] == {"lookup": [1.0, 2.0]}
    assert len(_warnings(caplog)) == 1


def test_to_json_is_safe_while_other_threads_record(monkeypatch: pytest.MonkeyPatch) -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can
    monkeypatch.setattr(latency, "MAX_TOOLS", 400)  # evictions change the dict too
    model = LatencyModel()
    stop = threading.Event()
    errors: list[BaseException] = []

    def record(offset: int) -> None:
        n = 0
        while not stop.is_set():
            model.record(f"tool_{offset}_{n}", 1.0)
            n += 1

    threads = [threading.Thread(target=record, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(300):
            try:
                model.to_json()
                model.typical("tool_0_1")
            except RuntimeError as e:  # "dictionary changed size during iteration"
                errors.append(e)
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
    assert errors == []


def test_a_full_disk_while_flushing_loses_only_the_unwritten_sounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from livekit_filler import disk_store

    cache = FillerAudioCache()
    cache.persist_to(tmp_path)
    real = disk_store._write_files
    written: list[str] = []

    def filling_up(directory: Path, key: str, frame: rtc.AudioFrame, meta: object) -> int:
        if len(written) >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(key)
        return real(directory, key, frame, meta)  # type: ignore[arg-type]

    monkeypatch.setattr(disk_store, "_write_files", filling_up)
    keys = [f"{n:032x}" for n in range(6)]
    for n, key in enumerate(keys):
        cache.put(key, _frame(n))
    assert flush()
    assert written == keys[:3]
    assert len(_warnings(caplog)) == 1
    directory = tmp_path / f"v{FILE_FORMAT}"
    assert sorted(p.name for p in directory.iterdir()) == keys[:3]  # no temporary left
    reader = FillerAudioCache()
    reader.persist_to(tmp_path)
    assert all(reader.load(k) for k in keys[:3])  # what was written is whole
    assert all(cache.peek(k) is not None for k in keys)  # the process still has them all


def test_a_private_sound_is_never_written_and_lives_only_while_held(tmp_path: Path) -> None:
    cache = FillerAudioCache()
    cache.persist_to(tmp_path)
    cache.put("a" * 32, _frame(1), private=True)  # not held: not kept at all
    assert cache.peek("a" * 32) is None
    cache.hold("b" * 32)
    cache.put("b" * 32, _frame(2), private=True)
    assert cache.peek("b" * 32) is not None and cache.contains("b" * 32)
    assert flush()
    assert list((tmp_path / f"v{FILE_FORMAT}").iterdir()) == []
    cache.release("b" * 32)
    assert cache.peek("b" * 32) is None


def test_disk_store_lists_without_io_after_open(tmp_path: Path) -> None:
    store = DiskStore(tmp_path)
    store.open()
    assert not store.listed("c" * 32)
    store.write("c" * 32, _frame(3))
    assert store.listed("c" * 32)


@pytest.mark.parametrize(
    ("values", "name"),
    [({"memory_cache_mb": 0}, "memory_cache_mb"), ({"project": ""}, "project")],
)
def test_the_new_settings_reject_bad_values_by_name(values: dict[str, object], name: str) -> None:
    from livekit_filler import FillerSettings
    from livekit_filler.errors import FillerConfigError

    with pytest.raises(FillerConfigError, match=name):
        FillerSettings.from_values(**values)
    assert FillerSettings.from_values().memory_cache_mb == 64
    assert FillerSettings.from_values().persist_templated is False


def test_the_shared_cache_stays_consistent_under_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    cache = FillerAudioCache(max_bytes=20 * 4800)  # 20 sounds of 0.1 s
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for n in range(3000):
                key = f"{offset}-{n % 50}"
                cache.hold(key)
                cache.put(key, _frame(n))
                cache.get(f"{offset}-{(n * 7) % 50}")
                cache.put(f"p{offset}-{n}", _frame(n), private=True)
                cache.release(key)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert cache.memory_bytes == sum(f.data.nbytes for f in cache._frames.values())
    assert cache.memory_bytes <= cache.max_bytes
    assert cache._holds == {} and cache._private == {}
