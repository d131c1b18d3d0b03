"""The process's one background writer: every disk write of livekit-filler, off the event loop.

Sounds, their sidecars and the tool latency history are written by one daemon thread, in
the order they were asked for. A job is submitted under a key: a job submitted again before
it ran replaces the pending one (so the latency history is written once for many calls), and
a job may be held back a moment (``delay``) to gather more. :func:`flush` runs everything
pending at once and waits for it within a bound; it runs at interpreter exit and when a
controller closes. A job that raises is logged and dropped: the writer goes on with the next.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Hashable

from .log import logger

__all__ = ["FLUSH_TIMEOUT", "BackgroundWriter", "flush", "writer"]

FLUSH_TIMEOUT = 2.0
"""Longest wait (seconds) for pending writes at exit: a slow or stuck disk never holds a
process longer."""


class BackgroundWriter:
    """One daemon thread running keyed, coalesced write jobs (see the module docstring)."""

    def __init__(self, name: str = "livekit_filler.writer") -> None:
        self._name = name
        self._jobs: dict[Hashable, tuple[float, Callable[[], object]]] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running: Hashable | None = None
        self._busy = False
        self._urgent = False
        self.completed = 0
        """Jobs run to the end (failed ones included)."""
        self.failed = 0
        """Jobs that raised."""

    def submit(self, key: Hashable, job: Callable[[], object], *, delay: float = 0.0) -> None:
        """Run ``job`` in the writer thread, after ``delay`` seconds at the earliest.

        A job pending under ``key`` is replaced (it keeps its earlier due time, so a steady
        stream of submissions still runs every ``delay``).
        """
        with self._cond:
            due = time.monotonic() + delay
            pending = self._jobs.pop(key, None)
            if pending is not None:
                due = min(due, pending[0])
            self._jobs[key] = (due, job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Jobs waiting to run (the one running excluded)."""
        with self._cond:
            return len(self._jobs)

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Run every pending job now and wait for them; False when ``timeout`` passed first
        (the rest still runs in the background while the process lives)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._urgent = True
            self._cond.notify_all()
            try:
                while self._jobs or self._busy:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._urgent = False

    def _next(self) -> Callable[[], object]:
        """Wait for the next due job and take it (called with the condition held)."""
        while True:
            if self._jobs:
                now = time.monotonic()
                key, (due, job) = min(self._jobs.items(), key=lambda item: item[1][0])
                if due <= now or self._urgent:
                    del self._jobs[key]
                    return job
                self._cond.wait(due - now)
            else:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                job = self._next()
                self._busy = True
            try:
                job()
            except Exception as e:  # a job handles its own errors; this is the last guard
                self.failed += 1
                logger.debug("filler disk write failed", extra={"error": repr(e)})
            finally:
                with self._cond:
                    self._busy = False
                    self.completed += 1
                    self._cond.notify_all()


_writer = BackgroundWriter()


def writer() -> BackgroundWriter:
    """The process's writer."""
    return _writer


def flush(timeout: float = FLUSH_TIMEOUT) -> bool:
    """Write everything pending now, waiting at most ``timeout`` seconds (blocking: call it
    from a thread, or at exit); True when nothing is left."""
    return _writer.flush(timeout)


atexit.register(flush)
