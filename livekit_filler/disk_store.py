"""The on-disk filler sound store: sounds persisted across processes, safe to share.

Sounds persist on disk (:class:`DiskStore`, opened with :meth:`FillerAudioCache.persist_to`),
so a fresh process (LiveKit runs every call in one) replays what an earlier call or a
deploy-time ``livekit-filler render`` synthesized. Each sound is one directory
``<root>/v<FILE_FORMAT>/<key>/`` holding ``sound.wav`` and its sidecar ``sound.json`` (format,
key, sample count, checksum, optional metadata); it is written under a temporary name and
renamed into place, so a reader sees a whole pair or nothing, and many worker processes may
render the same sound at once. A directory is only listed when opened; a sound's files are
read on its first use, checked against the sidecar (a truncated or damaged one is dropped and
rendered again), and the least recently used sounds are evicted above a size bound. Older
formats' directories (``<root>/v<N>/``, N below :data:`FILE_FORMAT`) are removed by the size
scan: their keys are never asked for again.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import secrets
import shutil
import threading
import time
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from livekit import rtc

from .disk_writer import writer
from .errors import FillerConfigError
from .log import logger

FILE_FORMAT = 4
"""Version of the on-disk layout; sounds live under ``<root>/v<FILE_FORMAT>/``, others are ignored.

4: sound keys hold the whole voice description (issue 18); sounds keyed the old way (v3 and
earlier) are never replayed."""

APP_NAME = "livekit-filler"
"""The name of the per-user cache directory (see :func:`default_cache_dir`)."""

MAX_PENDING_WRITES = 64
"""Sound writes that may wait for the background writer (each holds its audio)."""

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""Default size bound of a disk cache: above it the least recently used sounds are evicted."""

_WAV, _SIDECAR = "sound.wav", "sound.json"
_STALE_TEMP_SECONDS = 3600.0
"""Temporary directories older than this were left by a crashed writer: removed at eviction."""
_RESCAN_EVERY = 64
"""Writes between two scans of a disk cache's size (and at the first write of a process)."""


def _retire_old_formats(root: Path) -> None:
    """Remove the sounds of older cache formats (``<root>/v<N>/``, N below
    :data:`FILE_FORMAT`): their keys are never asked for again. Run by the size scan."""
    try:
        with os.scandir(root) as listing:
            names = [e.name for e in listing]
    except OSError:
        return
    for name in names:
        if name.startswith(".retired-"):  # a removal that was cut short
            shutil.rmtree(root / name, ignore_errors=True)
        if not (name[:1] == "v" and name[1:].isdigit() and int(name[1:]) < FILE_FORMAT):
            continue
        trash = root / f".retired-{name}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.rename(root / name, trash)  # out of use at once, then deleted
        except OSError:
            continue
        shutil.rmtree(trash, ignore_errors=True)


def default_cache_dir() -> Path:
    """The per-user cache directory filler audio persists in unless ``cache_dir`` names one.

    ``~/.cache/livekit-filler`` on Linux (``$XDG_CACHE_HOME`` if set),
    ``~/Library/Caches/livekit-filler`` on macOS, ``%LOCALAPPDATA%\\livekit-filler\\Cache``
    on Windows (:func:`platformdirs.user_cache_dir`).
    """
    import platformdirs  # imported on use: a process without a disk cache never needs it

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def write_soon(
    store: DiskStore, key: str, frame: rtc.AudioFrame, meta: Mapping[str, Any] | None
) -> None:
    """Publish a sound in the background writer (never on the event loop). Past
    :data:`MAX_PENDING_WRITES` waiting (a disk slower than the renders), a sound is not
    written: memory stays bounded, and a later process renders it again."""
    if writer().pending >= MAX_PENDING_WRITES:
        logger.debug("disk writes behind: a filler sound stays in memory only")
        return
    meta = dict(meta) if meta else None
    writer().submit(("sound", id(store), key), lambda: store.write(key, frame, meta))


class DiskStore:
    """One directory of persisted sounds, safe to share between processes.

    Layout: ``<root>/v<FILE_FORMAT>/<key>/sound.wav`` and ``sound.json`` (the sidecar:
    format, key, sample rate, channels, sample count, SHA-256 of the samples, metadata).
    A sound is written into a temporary directory and renamed into place, so readers see a
    complete pair or nothing; a published sound is never modified, only removed. When two
    processes publish one key, the first rename wins and the other discards its copy. Both
    files are opened through one directory handle, so a reader never pairs one sound's audio
    with another's sidecar. A sound that does not match its sidecar (truncated, damaged) is
    skipped with one WARNING per directory and removed, so it is rendered and written again.
    Reading a sound refreshes its directory's time; the oldest are evicted when the total
    size passes ``max_bytes``.
    """

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        """Create the store; :meth:`open` lists it."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        self.root = root
        self.directory = root / f"v{FILE_FORMAT}"
        self.max_bytes = max_bytes
        self.writable = True
        """False after a failed write: new sounds are then kept in memory only."""
        self._keys: set[str] = set()
        self._warned_damaged = False
        self._bytes: int | None = None
        """Total size at the last scan plus this process's writes since; None: not scanned."""
        self._writes_since_scan = 0
        self._scan_lock = threading.Lock()
        self._scan_thread: threading.Thread | None = None
        self.evicted = 0
        """Sounds this process evicted for the size bound."""

    @property
    def count(self) -> int:
        """How many sounds the directory held when listed (plus this process's writes)."""
        return len(self._keys)

    def check(self) -> None:
        """Raise FillerConfigError when the root (or a parent) is a file (a few ``stat``)."""
        blocker = _file_in_the_way(self.root)
        if blocker is not None:
            raise FillerConfigError(
                f"cache_dir = {str(self.root)!r}: {str(blocker)!r} is a file, not a directory"
            )

    def listed(self, key: str) -> bool:
        """True when the sound was listed or written by this process (no file I/O)."""
        return key in self._keys

    def open(self) -> int:
        """Create the directory if needed and list its sounds; returns how many.

        Raises:
            FillerConfigError: the root (or a parent) is a file.
        """
        self.check()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._cannot_write(e)
        try:
            with os.scandir(self.directory) as entries:
                self._keys |= {e.name for e in entries if not e.name.startswith(".")}
        except OSError:
            pass
        return len(self._keys)

    def open_in_background(self) -> None:
        """:meth:`open` in the background writer: a file in the way logs, never raises."""
        try:
            self.open()
        except FillerConfigError as e:
            self.writable = False
            logger.warning(
                "the filler audio cache directory is a file; sounds stay in memory",
                extra={"error": str(e)},
            )

    def has(self, key: str) -> bool:
        """True when the sound is listed or (written by another process since) on disk.

        Blocking (a ``stat``): the background writer and worker threads call it."""
        if key in self._keys:
            return True
        if os.path.isdir(self.directory / key):
            self._keys.add(key)
            return True
        return False

    def read(self, key: str) -> tuple[rtc.AudioFrame, dict[str, Any]] | None:
        """The sound and its metadata; None when absent, vanished or damaged (then removed)."""
        path = self.directory / key
        try:
            handle = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            self._keys.discard(key)
            return None
        try:
            try:
                wav = _read_at(handle, path, _WAV)
                sidecar = _read_at(handle, path, _SIDECAR)
            except FileNotFoundError:
                if not _same_directory(handle, path):
                    return None  # evicted or replaced while we read: not damage
                raise
            frame = _decode(wav)
            record = json.loads(sidecar)
            if not isinstance(record, dict) or {
                k: v for k, v in record.items() if k != "meta"
            } != _record(key, frame):
                raise ValueError("the audio does not match its sidecar")
        except (OSError, ValueError, wave.Error, EOFError) as e:
            self._damaged(key, path, handle, e)
            return None
        else:
            _touch(handle)
            meta = record.get("meta")
            return frame, dict(meta) if isinstance(meta, dict) else {}
        finally:
            os.close(handle)

    def write(self, key: str, frame: rtc.AudioFrame, meta: Mapping[str, Any] | None = None) -> None:
        """Publish a sound (never raises: a failed write logs once and stops writing)."""
        if not self.writable or self.has(key):
            return
        temp = self.directory / f".tmp-{key}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(temp)
            size = _write_files(temp, key, frame, meta)
            try:
                os.rename(temp, self.directory / key)
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # another process published this key first: keep theirs
                shutil.rmtree(temp, ignore_errors=True)
                self._keys.add(key)
                return
        except OSError as e:
            shutil.rmtree(temp, ignore_errors=True)
            self._cannot_write(e)
            return
        self._keys.add(key)
        self._writes_since_scan += 1
        if self._bytes is not None:
            self._bytes += size
        if (
            self._bytes is None
            or self._bytes > self.max_bytes
            or self._writes_since_scan >= _RESCAN_EVERY
        ) and (self._scan_thread is None or not self._scan_thread.is_alive()):
            # a scan stats every sound (~15 ms for 1,000): off the event loop
            self._writes_since_scan = 0
            self._scan_thread = threading.Thread(
                target=self.enforce_bound, name="livekit_filler.disk_scan", daemon=True
            )
            self._scan_thread.start()

    def wait_for_scan(self, timeout: float | None = None) -> None:
        """Wait for a size scan a write started in the background (tests, benchmarks)."""
        if self._scan_thread is not None:
            self._scan_thread.join(timeout)

    def enforce_bound(self) -> int:
        """Scan the directory's size and evict the least recently used sounds above the
        bound (down to 90 % of it); also removes temporary files crashed writers left.

        Returns:
            How many sounds were evicted.
        """
        with self._scan_lock:
            return self._enforce_bound()

    def _enforce_bound(self) -> int:
        self._writes_since_scan = 0
        _retire_old_formats(self.root)
        entries: list[tuple[float, int, str]] = []
        total = 0
        now = time.time()
        try:
            with os.scandir(self.directory) as listing:
                for entry in listing:
                    try:
                        mtime = entry.stat().st_mtime
                        if entry.name.startswith("."):
                            if now - mtime > _STALE_TEMP_SECONDS:
                                shutil.rmtree(entry.path, ignore_errors=True)
                            continue
                        size = os.stat(os.path.join(entry.path, _WAV)).st_size
                    except OSError:
                        continue
                    entries.append((mtime, size, entry.name))
                    total += size
        except OSError:
            return 0
        evicted = 0
        if total > self.max_bytes:
            target = self.max_bytes * 0.9
            for _mtime, size, name in sorted(entries):
                if total <= target:
                    break
                if self._remove(name):
                    evicted += 1
                total -= size
        self._bytes = total
        self.evicted += evicted
        return evicted

    def _remove(self, key: str) -> bool:
        """Take a sound out of use atomically (rename aside), then delete it."""
        self._keys.discard(key)
        trash = self.directory / f".trash-{key}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.rename(self.directory / key, trash)
        except OSError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def _damaged(self, key: str, path: Path, handle: int, error: Exception) -> None:
        if not self._warned_damaged:
            self._warned_damaged = True
            logger.warning(
                "skipping filler audio files that do not match their record",
                extra={"path": str(self.directory), "key": key, "error": repr(error)},
            )
        else:
            logger.debug("skipping damaged filler audio", extra={"key": key})
        if _same_directory(handle, path):
            self._remove(key)  # rendered and written again when next needed
        self._keys.discard(key)

    def _cannot_write(self, error: OSError) -> None:
        if self.writable:
            logger.warning(
                "cannot write filler audio to the disk cache; new renders stay in memory only",
                extra={"path": str(self.directory), "error": repr(error)},
            )
        self.writable = False


def _record(key: str, frame: rtc.AudioFrame) -> dict[str, object]:
    """What a persisted sound's sidecar must hold (besides ``meta``): format, key, shape,
    checksum."""
    return {
        "format": FILE_FORMAT,
        "key": key,
        "sample_rate": frame.sample_rate,
        "num_channels": frame.num_channels,
        "samples_per_channel": frame.samples_per_channel,
        "sha256": hashlib.sha256(frame.data.tobytes()).hexdigest(),
    }


def _write_files(
    directory: Path, key: str, frame: rtc.AudioFrame, meta: Mapping[str, Any] | None
) -> int:
    """Write ``sound.wav`` and ``sound.json`` into a new (unpublished) directory; the WAV's size."""
    with wave.open(str(directory / _WAV), "wb") as out:
        out.setnchannels(frame.num_channels)
        out.setsampwidth(2)
        out.setframerate(frame.sample_rate)
        out.writeframes(frame.data.tobytes())
    record: dict[str, object] = _record(key, frame)
    if meta:
        record["meta"] = dict(meta)
    sidecar = json.dumps(record)
    (directory / _SIDECAR).write_text(sidecar)
    return (directory / _WAV).stat().st_size  # what a scan counts (sidecars are tiny)


def _decode(data: bytes) -> rtc.AudioFrame:
    """A whole 16-bit PCM WAV file as one frame."""
    with wave.open(io.BytesIO(data), "rb") as src:
        if src.getsampwidth() != 2:
            raise wave.Error("filler audio must be 16-bit PCM")
        channels = max(1, src.getnchannels())
        pcm = src.readframes(src.getnframes())
        return rtc.AudioFrame(
            data=pcm,
            sample_rate=src.getframerate(),
            num_channels=channels,
            samples_per_channel=len(pcm) // (2 * channels),
        )


def _read_at(handle: int, path: Path, name: str) -> bytes:
    """A file of the directory open as ``handle`` (``path`` where ``dir_fd`` is unsupported)."""
    if os.open in os.supports_dir_fd:
        fd = os.open(name, os.O_RDONLY, dir_fd=handle)
    else:  # pragma: no cover - Windows
        fd = os.open(path / name, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _same_directory(handle: int, path: Path) -> bool:
    """True while ``path`` still names the directory open as ``handle``."""
    try:
        mine, now = os.fstat(handle), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _touch(handle: int) -> None:
    """Mark a sound as just used (its directory's time orders eviction); best effort."""
    if os.utime in os.supports_fd:
        try:
            os.utime(handle)
        except OSError:
            pass  # a read-only cache (an image layer) is fine


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing component of ``path`` that is not a directory, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None
