"""The tool latency histories on disk: where they live, their lock, their atomic write.

A :class:`~.latency.LatencyModel` persists as a small JSON history per project
(:func:`history_path`: under ``<cache_dir>/latency/``, named for the project's
:func:`default_scope`), shared by every process that uses the directory. A save is a
read-merge-write under an advisory lock (``flock``, :func:`locked`; :data:`LOCK_TIMEOUT`):
the samples this process recorded since its last save are added to what the file holds, so
every process's calls count. It runs in the background writer (:mod:`.disk_writer`), never
on the event loop. The file is replaced atomically (:func:`write_atomically`), so a crash
mid-write loses at most that process's unsaved calls; temporary files a crashed writer left
are removed after an hour. A lock that cannot be taken (read-only directory, another process
holding it too long) keeps the samples in memory (one WARNING) for the next save.

The history's JSON data and the merge are the model's (:mod:`.latency`); this module is only
the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

if sys.platform != "win32":
    import fcntl

__all__ = [
    "DIRECTORY",
    "FILE_NAME",
    "LOCK_TIMEOUT",
    "LockTimeout",
    "default_scope",
    "history_path",
    "locked",
    "write_atomically",
]

FILE_NAME = "tool_latency.json"
"""A history file's name when a model is given no path of its own (tests, tools)."""
DIRECTORY = "latency"
"""The histories' subdirectory of the cache directory (one file per project)."""
LOCK_TIMEOUT = 1.0
"""Longest wait (seconds) for another process's lock on a history; past it the save is
retried with the next one (the samples stay in memory)."""
_STALE_TEMP_SECONDS = 3600.0


def default_scope() -> str:
    """The project a process's tool latencies belong to when ``project`` is not set: the
    directory of the program it runs (the ``__main__`` script, or a package run with
    ``-m``; LiveKit's job processes run their worker's), else the working directory."""
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    try:
        return str(Path(file).resolve().parent) if file else str(Path.cwd())
    except OSError:
        return "default"


def history_path(directory: Path | str, scope: str) -> Path:
    """The history file of project ``scope`` in the cache ``directory``:
    ``<directory>/latency/<name>-<hash>.json`` (the name is the scope's last part, readable;
    the hash tells two projects of one name apart)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(scope).name or scope)[:40] or "project"
    digest = hashlib.sha256(scope.encode()).hexdigest()[:12]
    return Path(directory).expanduser() / DIRECTORY / f"{name}-{digest}.json"


class LockTimeout(Exception):
    """Another process held a history's lock past :data:`LOCK_TIMEOUT`."""


@contextlib.contextmanager
def locked(lock_path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold the advisory lock of a history (``flock`` on its ``.lock`` file; none where
    there is no ``fcntl``), waiting at most ``timeout`` seconds (default :data:`LOCK_TIMEOUT`,
    read at the call)."""
    if sys.platform == "win32":  # pragma: no cover - histories are merged without a lock
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + (LOCK_TIMEOUT if timeout is None else timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"{lock_path} held for over {timeout} s") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (readers see the old
    or the new file, never part of one); removes temporary files crashed writers left."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    now = time.time()
    for stale in path.parent.glob(f"{path.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > _STALE_TEMP_SECONDS:
                stale.unlink()
