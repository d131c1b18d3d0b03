"""The edges of the tool latency files: exact bounds, the lock's wait, stale temporary files,
the values a history keeps (deterministic: a fake clock, no sleeping)."""

from __future__ import annotations

import fcntl
import json
import os
import types
from pathlib import Path

import pytest

from livekit_filler import latency, latency_files
from livekit_filler.latency import MAX_LEAD, LatencyModel
from livekit_filler.latency_files import history_path


class _Clock:
    """``latency_files``' view of :mod:`time`: sleeping advances the clock instead of waiting."""

    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self.on_sleep: list[object] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            action = self.on_sleep.pop(0)
            if callable(action):
                action()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(
        latency_files,
        "time",
        types.SimpleNamespace(monotonic=fake.monotonic, time=fake.time, sleep=fake.sleep),
    )
    return fake


def _hold(lock: Path) -> int:
    """Another holder of the lock (``flock`` locks an open file, so one process can hold it
    against itself)."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_held_lock_is_waited_for_at_most_the_timeout(tmp_path: Path, clock: _Clock) -> None:
    lock = tmp_path / "h.json.lock"
    fd = _hold(lock)
    try:
        start = clock.now
        with pytest.raises(latency_files.LockTimeout), latency_files.locked(lock, timeout=0.05):
            pytest.fail("entered a lock another holder has")
        assert 0.05 <= clock.now - start < 0.07  # it polled until the deadline, then gave up
        clock.sleeps.clear()
        with pytest.raises(latency_files.LockTimeout), latency_files.locked(lock, timeout=0.0):
            pass
        assert clock.sleeps == []  # no wait at all: the deadline is now
    finally:
        os.close(fd)


def test_a_lock_released_while_waiting_is_taken(tmp_path: Path, clock: _Clock) -> None:
    lock = tmp_path / "h.json.lock"
    fd = _hold(lock)
    clock.on_sleep = [None, lambda: os.close(fd)]  # the other holder is done after two polls
    with latency_files.locked(lock, timeout=1.0):
        with pytest.raises(BlockingIOError):  # this process holds it now
            _hold(lock)
    assert len(clock.sleeps) == 2
    os.close(_hold(lock))  # and released it on leaving


def test_a_save_is_counted_and_a_model_without_a_path_never_saves(tmp_path: Path) -> None:
    assert LatencyModel().save() is False
    model = LatencyModel(path=history_path(tmp_path, "p"))
    model.record("lookup", 1.0)
    assert model.save() and model.saves == 1
    assert model.save() and model.saves == 2  # nothing new: written (and counted) all the same
    assert LatencyModel().saves == 0


def test_the_tool_bound_is_exact_on_merge_on_save_and_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(latency, "MAX_TOOLS", 3)
    history = {"format": 1, "tools": {f"t{n}": [float(n + 1)] for n in range(5)}, "leads": []}
    merged = LatencyModel()
    merged.merge_json(history)
    assert [t for t in ("t0", "t1", "t2", "t3", "t4") if t in merged] == ["t2", "t3", "t4"]

    path = history_path(tmp_path, "p")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(history))  # written by a process with a larger bound
    quiet = LatencyModel(path=path)
    assert quiet.save()  # nothing new to add: the file is trimmed to the bound all the same
    assert list(json.loads(path.read_text())["tools"]) == ["t2", "t3", "t4"]

    path.write_text(json.dumps(history))
    model = LatencyModel(path=path)
    model.record("new", 9.0)
    assert model.save()
    assert list(json.loads(path.read_text())["tools"]) == ["t3", "t4", "new"]
    assert [t for t in ("t2", "t3", "t4", "new") if t in model] == ["t3", "t4", "new"]


def test_a_zero_latency_and_the_longest_lead_survive_the_file(tmp_path: Path) -> None:
    path = history_path(tmp_path, "p")
    model = LatencyModel(path=path)
    model.record("cached", 0.0)  # answered from a cache: a real, instant call
    model.record_lead(MAX_LEAD)
    assert model.save()
    fresh = LatencyModel(path=path)
    assert fresh.load() == 1
    assert fresh.samples("cached") == [0.0] and fresh.leads() == [MAX_LEAD]
    # a longer lead in the file (written by hand, or by another version) is not a lead
    path.write_text(json.dumps({"format": 1, "tools": {}, "leads": [MAX_LEAD + 0.5, 0.3]}))
    other = LatencyModel(path=path)
    other.load()
    assert other.leads() == [0.3]


def test_only_temporary_files_older_than_an_hour_are_removed(tmp_path: Path, clock: _Clock) -> None:
    path = tmp_path / "h.json"
    ages = {"fresh": 10.0, "hour": 3600.0, "stale": 3601.0}
    for name, age in ages.items():
        tmp = tmp_path / f"h.json.{name}.tmp"
        tmp.write_text("{")
        os.utime(tmp, (clock.now - age, clock.now - age))
    latency_files.write_atomically(path, "{}")
    left = sorted(p.name for p in tmp_path.glob("h.json.*.tmp"))
    # another writer's file in progress and one exactly an hour old are kept
    assert left == ["h.json.fresh.tmp", "h.json.hour.tmp"]
    assert path.read_text() == "{}"
