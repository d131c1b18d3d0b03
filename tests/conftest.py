"""Shared test fixtures."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from livekit.agents.telemetry import set_tracer_provider
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what the imports left in memory, as the fuzzer does: a full garbage collection
    walks every imported module (about 0.16 s with LiveKit loaded), and landing in one run of
    a timed pair it would stall that run's event loop and read as a late reply or cut."""
    gc.collect()
    gc.freeze()


# -- the retry policy: the one place a test may run twice ------------------------------------

REAL_CLOCK_FILES = frozenset(
    f"test_{name}.py"
    for name in (
        "beyond_demo", "busy", "call_defects", "client_agent_task", "client_events",
        "config_tools", "contextual", "controller", "decorator", "disk_cache", "examples",
        "fake_user", "faults", "filler_audio", "fleet_state", "fuzz", "livekit_private", "metrics",
        "one_floor", "real_plugins", "realtime", "realtime_barge_in", "render_usage",
        "slow_answer", "stream_never_spins", "testing_kit", "thread_scenarios", "timing",
        "tool_contract", "tracing", "tts_faults", "why_fillers_race",
    )
)  # fmt: skip
"""Files whose tests drive a session on the real clock: the only ones that may run twice."""

MAX_RERUNS = 3
"""Most reruns one pytest run may need and still pass (README "Development", docs/reliability.md)."""

_reruns: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run a real-clock test once more when an assertion fails, and nothing else.

    A shared machine's scheduler can stall the event loop for tens of milliseconds, landing
    in one run of a timed pair; but a stall is not a proof, and a defect that shows half the
    time passes a rerun half the time too. So: one rerun at most, only for the files in
    :data:`REAL_CLOCK_FILES`, only on an AssertionError (an error, a leak, an ERROR log or a
    timeout is never run again), every rerun listed at the end, and the run fails when more
    than :data:`MAX_RERUNS` tests needed one. The unit tier and the deterministic files run
    once. No test retries inside itself on top of this.
    """
    for item in items:
        if item.path.name in REAL_CLOCK_FILES and item.path.parent.name != "unit":
            item.add_marker(pytest.mark.flaky(reruns=1, only_rerun=[AssertionError]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcome: str = report.outcome  # pytest-rerunfailures adds "rerun" to pytest's three
    if outcome == "rerun":
        _reruns.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a run that needed more than :data:`MAX_RERUNS` reruns, however they ended."""
    if len(_reruns) > MAX_RERUNS and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the rerun count against its bound, and each rerun test, on every run."""
    verdict = "FAILED: too many" if len(_reruns) > MAX_RERUNS else "within bound"
    terminalreporter.write_line(
        f"reruns: {len(_reruns)} (at most {MAX_RERUNS} allowed per run; {verdict})",
        red=len(_reruns) > MAX_RERUNS,
    )
    for nodeid in _reruns:
        terminalreporter.write_line(f"  rerun: {nodeid}")


@pytest.fixture(autouse=True)
def isolate_filler_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide the developer's LIVEKIT_FILLER_* variables and config/filler.toml from every test.

    The working directory becomes ``tmp_path``, so the default ``config/filler.toml`` is absent
    unless a test writes one; use paths relative to ``__file__`` to reach repository files.
    """
    for name in list(os.environ):
        if name.upper().startswith("LIVEKIT_FILLER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def isolate_disk_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Give every test its own default disk cache of filler audio, never the user's.

    The per-user cache directory (``platformdirs``) becomes ``tmp_path/user-cache/...``, in
    this process and in subprocesses (``XDG_CACHE_HOME``), and the process-wide audio cache
    forgets the disk caches earlier tests opened. Yields the default directory.
    """
    import platformdirs

    from livekit_filler.disk_store import default_cache_dir
    from livekit_filler.sound_cache import shared_cache

    user_cache = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(user_cache))
    monkeypatch.setattr(
        platformdirs,
        "user_cache_dir",
        lambda appname=None, *args, **kwargs: str(user_cache / (appname or "")),
    )
    shared_cache().detach_disk()
    yield default_cache_dir()
    shared_cache().detach_disk()


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running after it ends (LiveKit's own idiom)."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leaked: set[asyncio.Task[object]] = set()
    for _ in range(50):  # give finishing tasks a moment (at most 0.5 s)
        leaked = {t for t in asyncio.all_tasks() - before if t is not current and not t.done()}
        if not leaked:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"leaked tasks: {sorted(t.get_name() for t in leaked)}")


@pytest.fixture(autouse=True)
def no_error_logs(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Fail a test that logs at ERROR, unless it is marked ``allow_error_logs``."""
    caplog.set_level(logging.DEBUG, logger="livekit_filler")
    yield
    if request.node.get_closest_marker("allow_error_logs"):
        # A test that provokes LiveKit errors may leave a failed task whose exception nobody
        # retrieved, kept alive by the captured records' tracebacks: drop those and collect
        # now, so its "never retrieved" log lands here, not in whichever test runs next.
        caplog.get_records("call").clear()
        caplog.clear()
        gc.collect()
        return
    errors = [r for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    if errors:  # pytest.fail, not assert: an ERROR log is never run again
        pytest.fail(
            "ERROR log records: " + "; ".join(f"{r.name}: {r.getMessage()}" for r in errors)
        )


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """The finished spans of the test, from LiveKit's tracer (a provider of its own)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = trace.get_tracer_provider()
    set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        set_tracer_provider(previous)
        provider.shutdown()
