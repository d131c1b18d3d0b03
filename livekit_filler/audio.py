"""Filler audio: each sound rendered once per process, replayed without TTS latency.

A text filler spoken through ``session.say(text)`` pays the TTS time to first byte after it
reaches the head of the speech queue, and costs a synthesis on every play. Here a phrase is
rendered once with ``tts.synthesize(text)``, keyed by everything that changes its sound, and
played as ``session.say(text, audio=...)``. Audio clips (LiveKit's built-in sounds or a file)
are decoded once the same way. A phrase not rendered yet is synthesized on demand (and kept).

A render never touches the session's error budget: it runs with no LiveKit retry
(``max_retry=0``) and the session's TTS timeout (as the longest wait for the next audio
frame), and the ``error`` events its stream emits on the TTS are hidden from the session
(:func:`~livekit_filler._livekit_private.hide_render_errors`). Whatever the TTS does (raise,
hang, return nothing, drop mid-stream), a failed render only skips fillers that are not
rendered yet, for a back-off of 5 s doubling to 60 s; one WARNING per :class:`FillerVoice`.
Only a completed attempt is ever kept.

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

import asyncio
import collections
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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectOptions,
    APIError,
    BuiltinAudioClip,
    tts as lk_tts,
)
from livekit.agents.utils import combine_frames

from ._livekit_private import (
    audio_frames_from_file,
    filler_render,
    hide_render_errors,
    voice_source,
)
from .disk_writer import writer
from .errors import FillerConfigError
from .events import AudioSource
from .log import logger
from .tts_identity import cache_voice

FRAME_SECONDS = 0.05
"""Replayed audio is pushed in frames this long, so a cut takes effect at once."""

CLIP_SAMPLE_RATE = 48000


LOCAL_PREFIX = "local-"
"""Keys of sounds whose voice could not be read: kept for this TTS object only, never saved."""

RENDER_BACKOFF = (5.0, 60.0)
"""Seconds without new renders after a failed one: the first pause, and the cap it doubles to."""

FILE_FORMAT = 4
"""Version of the on-disk layout; sounds live under ``<root>/v<FILE_FORMAT>/``, others are ignored.

4: sound keys hold the whole voice description (issue 18); sounds keyed the old way (v3 and
earlier) are never replayed."""

APP_NAME = "livekit-filler"
"""The name of the per-user cache directory (see :func:`default_cache_dir`)."""

DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024
"""Default bound of the sounds one process keeps in memory (``memory_cache_mb``)."""

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


def sound_key(tts: lk_tts.TTS[Any], text: str) -> str:
    """A stable key for the sound of ``text`` spoken by ``tts``: same key, same audio.

    It hashes the text and the TTS's voice description
    (:func:`~livekit_filler.tts_identity.voice_key`: class, provider, model, sample rate,
    channels, every option that shapes the sound, the ``voice_id`` it was named with; no
    credentials). When the voice cannot be read and was not named, the key holds a token
    of this TTS object instead (never its ``id()``, which is reused), so two voices never
    share a sound (and such a sound is never written to disk).
    """
    voice = cache_voice(tts)
    digest = hashlib.sha256(json.dumps([voice.description, text]).encode()).hexdigest()[:32]
    return digest if voice.persistent else LOCAL_PREFIX + digest


class FillerAudioCache:
    """Rendered filler audio, shared by every session of the process (see :func:`shared_cache`).

    Sounds live in memory, at most :attr:`max_bytes` of them: above it the least recently
    used are dropped, except those held (:meth:`hold`: playing, or pre-rendered for an agent
    holding the floor). :meth:`persist_to` adds a :class:`DiskStore` that sounds are read from
    (off the event loop: :meth:`load_async`) and every new sound is written to, by the
    process's background writer (:mod:`.disk_writer`). A private sound (a phrase filled with
    a tool's arguments, an LLM-written one) is never written and lives in memory only while
    held. Thread-safe: sessions on several event loops share it.
    """

    def __init__(self, *, max_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
        self.max_bytes = max_bytes
        """The bound of the sounds kept in memory (held ones are never dropped)."""
        self._lock = threading.RLock()
        self._frames: collections.OrderedDict[str, rtc.AudioFrame] = collections.OrderedDict()
        self._bytes = 0
        self._private: dict[str, rtc.AudioFrame] = {}
        self._holds: dict[str, int] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, Render] = {}
        self._stores: list[DiskStore] = []
        self.hits = 0
        self.misses = 0
        self.disk_loads = 0
        """Sounds read from a disk cache into memory."""
        self.characters_rendered = 0
        """Characters this cache asked a TTS to synthesize."""
        self.evicted = 0
        """Sounds dropped from memory for the bound."""

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def memory_bytes(self) -> int:
        """Bytes of audio kept in memory (private sounds excluded)."""
        return self._bytes

    @property
    def stores(self) -> tuple[DiskStore, ...]:
        """The disk caches this cache reads and writes (see :meth:`persist_to`)."""
        return tuple(self._stores)

    def get(self, key: str) -> rtc.AudioFrame | None:
        """The audio stored under ``key`` if it is in memory, counting hit or miss; never
        reads a file (see :meth:`load_async`)."""
        with self._lock:
            frame = self._memory(key)
            if frame is None:
                self.misses += 1
            else:
                self.hits += 1
                if key in self._frames:
                    self._frames.move_to_end(key)
            return frame

    def contains(self, key: str) -> bool:
        """True when ``key`` is in memory or listed on disk (counts nothing, no file I/O)."""
        return self._memory(key) is not None or self.on_disk(key)

    def on_disk(self, key: str) -> bool:
        """True when a disk cache listed ``key`` (or this process wrote it); no file I/O."""
        return not key.startswith(LOCAL_PREFIX) and any(s.listed(key) for s in self._stores)

    def load(self, key: str) -> bool:
        """Make ``key`` ready in memory, reading it from disk if needed; False when absent
        or damaged on disk (counts nothing). Blocking: on an event loop use
        :meth:`load_async`."""
        return self._memory(key) is not None or self._load(key) is not None

    async def load_async(self, key: str) -> rtc.AudioFrame | None:
        """:meth:`load` in a worker thread: the sound of ``key``, None when absent."""
        frame = self._memory(key)
        if frame is not None or not self._stores or key.startswith(LOCAL_PREFIX):
            return frame
        return await asyncio.to_thread(self._load, key)

    def meta(self, key: str) -> Mapping[str, Any]:
        """The metadata stored with ``key`` by :meth:`put` (empty when none or not loaded)."""
        return self._meta.get(key, {})

    def peek(self, key: str) -> rtc.AudioFrame | None:
        """The audio of ``key`` if it is in memory (counts nothing, reads no file)."""
        return self._memory(key)

    def hold(self, key: str) -> None:
        """Keep ``key`` in memory until :meth:`release` (counted: each hold, one release)."""
        with self._lock:
            self._holds[key] = self._holds.get(key, 0) + 1

    def release(self, key: str) -> None:
        """End one :meth:`hold`; a private sound no longer held is forgotten."""
        with self._lock:
            count = self._holds.get(key, 0) - 1
            if count > 0:
                self._holds[key] = count
                return
            self._holds.pop(key, None)
            self._private.pop(key, None)
            self._evict()

    def put(
        self,
        key: str,
        frame: rtc.AudioFrame,
        meta: Mapping[str, Any] | None = None,
        *,
        private: bool = False,
    ) -> None:
        """Store ``frame`` under ``key`` and write it to every disk cache (in the background).

        Args:
            key: the sound's key (:func:`sound_key`).
            frame: the whole sound.
            meta: JSON-serializable data kept with the sound (in its sidecar on disk).
            private: the sound speaks a caller's data: never written, kept only while held
                (:meth:`hold`); not held, it is not kept at all.
        """
        with self._lock:
            if private:
                if self._holds.get(key, 0) > 0 and key not in self._frames:
                    self._private[key] = frame
                return
            old = self._frames.pop(key, None)
            if old is not None:
                self._bytes -= _size(old)
            self._frames[key] = frame
            self._bytes += _size(frame)
            if meta:
                self._meta[key] = dict(meta)
            self._evict()
            stores = list(self._stores)
        if not key.startswith(LOCAL_PREFIX):
            for store in stores:
                _write_soon(store, key, frame, meta)

    def _memory(self, key: str) -> rtc.AudioFrame | None:
        frame = self._frames.get(key)
        return frame if frame is not None else self._private.get(key)

    def _evict(self) -> None:
        """Drop the least recently used sounds not held, down to the bound (lock held)."""
        if self._bytes <= self.max_bytes:
            return
        for key in list(self._frames):
            if self._bytes <= self.max_bytes:
                break
            if self._holds.get(key, 0) > 0:
                continue
            frame = self._frames.pop(key)
            self._meta.pop(key, None)
            self._bytes -= _size(frame)
            self.evicted += 1

    def _load(self, key: str) -> rtc.AudioFrame | None:
        if key.startswith(LOCAL_PREFIX):
            return None
        for store in list(self._stores):
            sound = store.read(key)
            if sound is not None:
                frame, meta = sound
                with self._lock:
                    known = self._frames.get(key)
                    if known is not None:
                        return known
                    self._frames[key] = frame
                    self._bytes += _size(frame)
                    if meta:
                        self._meta[key] = meta
                    self.disk_loads += 1
                    self._evict()
                return frame
        return None

    def in_flight(self, key: str) -> Render | None:
        """The render of ``key`` under way on this event loop, if any."""
        render = self._pending.get(key)
        if render is None or render.finished or render.loop is not asyncio.get_running_loop():
            return None
        return render

    def begin_render(self, key: str) -> Render:
        """Announce a render of ``key``: others stream it instead of synthesizing again."""
        render = Render()
        with self._lock:
            self._pending[key] = render
        return render

    def end_render(
        self, key: str, render: Render, frame: rtc.AudioFrame | None, *, private: bool = False
    ) -> None:
        """Finish a render begun with :meth:`begin_render` (``frame`` None: it failed)."""
        if frame is not None:
            self.put(key, frame, private=private)
        render.finish(ok=frame is not None)
        with self._lock:
            if self._pending.get(key) is render:
                del self._pending[key]

    def persist_to(
        self, directory: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, wait: bool = True
    ) -> int:
        """Read sounds from ``directory`` and write new renders there too.

        Call it once per process (for example in a worker's prewarm step); calling it again
        with the same directory does nothing. Only the directory's listing is read now, so
        it costs about a millisecond for a thousand sounds. Sounds already in memory are
        written there. An unwritable directory (read-only, full disk) logs one WARNING and
        new renders stay in memory only.

        Args:
            directory: the cache's root; sounds go to its ``v<FILE_FORMAT>`` subdirectory.
            max_bytes: the size bound; the least recently used sounds are evicted above it.
            wait: False checks and lists the directory in the background writer (on an
                event loop; a file in the way then logs a WARNING, and sounds stay in
                memory): the count returned is then 0.

        Returns:
            How many sounds the directory holds.

        Raises:
            FillerConfigError: ``directory`` (or a parent) is a file, not a directory.
        """
        path = Path(directory).expanduser()
        with self._lock:
            for store in self._stores:
                if store.root == path:
                    return store.count
            store = DiskStore(path, max_bytes=max_bytes)
            if wait:
                store.check()
            self._stores.append(store)
            frames = [(k, f, self._meta.get(k)) for k, f in self._frames.items()]
        if wait:
            count = store.open()
        else:
            count = 0
            writer().submit(("open", id(store)), store.open_in_background)
        for key, frame, meta in frames:
            if not key.startswith(LOCAL_PREFIX):
                _write_soon(store, key, frame, meta)
        return count

    def detach_disk(self) -> None:
        """Stop reading and writing every disk cache (their files stay)."""
        with self._lock:
            self._stores.clear()

    def clear(self) -> None:
        """Forget every sound in memory and every counter (disk caches are kept)."""
        with self._lock:
            self._frames.clear()
            self._private.clear()
            self._meta.clear()
            self._bytes = 0
            self.hits = self.misses = self.disk_loads = self.characters_rendered = 0
            self.evicted = 0


class SoundLease:
    """The sounds one call (or one filler) keeps in memory: private ones live only as long
    as it, the others are kept from the memory bound meanwhile."""

    def __init__(self, cache: FillerAudioCache) -> None:
        self._cache = cache
        self._keys: set[str] = set()

    def add(self, key: str) -> None:
        """Hold ``key`` until :meth:`release` (once, however often it is added)."""
        if key not in self._keys:
            self._keys.add(key)
            self._cache.hold(key)

    def release(self) -> None:
        """Let every held sound go (private ones are forgotten)."""
        keys, self._keys = self._keys, set()
        for key in keys:
            self._cache.release(key)


def _size(frame: rtc.AudioFrame) -> int:
    """Bytes of a sound's samples."""
    return frame.samples_per_channel * frame.num_channels * 2


def _write_soon(
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


_shared = FillerAudioCache()


def shared_cache() -> FillerAudioCache:
    """The process-wide cache every controller uses."""
    return _shared


class Render:
    """One synthesis in progress: its frames so far, streamable by any number of listeners.

    Only one attempt's audio is kept: when frames arrive under a new ``request_id`` (a TTS
    that restarted the synthesis), the earlier attempt's frames are dropped and whoever
    was streaming them stops there, so nobody hears (or caches) a sound that restarts.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time()
        self.frames: list[rtc.AudioFrame] = []
        self.attempt = 0
        """How many times the synthesis restarted after some of its audio arrived."""
        self.finished = False
        self.ok = False
        self._request_id: str | None = None
        self._changed = asyncio.Event()

    @property
    def request_id(self) -> str | None:
        """The TTS request id of the attempt whose frames are kept."""
        return self._request_id

    def add(self, frame: rtc.AudioFrame, request_id: str = "") -> None:
        """A frame arrived from the TTS (for the attempt ``request_id``)."""
        if request_id != self._request_id:
            if self.frames:
                self.attempt += 1
                self.frames = []
            self._request_id = request_id
        self.frames.append(frame)
        self._changed.set()

    def finish(self, *, ok: bool) -> None:
        """The synthesis ended (``ok``: completely)."""
        self.finished, self.ok = True, ok
        self._changed.set()

    async def wait(self) -> bool:
        """Wait for the end; True when the audio is complete."""
        while not self.finished:
            self._changed.clear()
            if not self.finished:
                await self._changed.wait()
        return self.ok

    async def stream(self) -> AsyncIterator[rtc.AudioFrame]:
        """The frames as they arrive; stops early (at what it has) if the synthesis fails
        or restarts."""
        attempt = self.attempt
        sent = 0
        while True:
            while self.attempt == attempt and sent < len(self.frames):
                yield self.frames[sent]
                sent += 1
            if self.finished or self.attempt != attempt:
                return
            self._changed.clear()
            if sent == len(self.frames) and not self.finished:
                await self._changed.wait()


Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[Any]"]


class RenderFailed(Exception):
    """A render ended without complete audio."""


class FillerVoice:
    """Turns filler text or a clip into audio for one controller, never raising.

    Every synthesis runs to completion in its own task, even when the filler that asked for
    it is cut, so each sound is synthesized once per process; whoever needs it meanwhile
    streams the same render.

    A failed render never reaches the session (see the module docstring): it logs one
    WARNING per voice and pauses new renders for a back-off (:data:`RENDER_BACKOFF`: 5 s,
    doubling after each failure to 60 s, back to 5 s after a success). Meanwhile fillers
    that are not rendered yet are skipped (``tts_failed``); rendered ones still play.
    """

    def __init__(
        self,
        cache: FillerAudioCache | None = None,
        *,
        spawn: Spawn | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        backoff: tuple[float, float] | None = None,
        on_rendered: Callable[[str, int], None] | None = None,
    ) -> None:
        """Create a voice.

        Args:
            cache: where rendered audio lives; the process-wide cache by default.
            spawn: starts a render's task (a controller passes its own, so it can end them).
            conn_options: the session's TTS connection options
                (``session.conn_options.tts_conn_options``): ``timeout`` bounds every wait
                for the next frame of a render; renders never retry.
            backoff: seconds of the first pause after a failure and its cap
                (default :data:`RENDER_BACKOFF`).
            on_rendered: told the TTS request id and the characters of each completed
                render (the request id of its ``TTSMetrics``).
        """
        self._on_rendered = on_rendered
        self._cache = cache if cache is not None else shared_cache()
        self._spawn = spawn or _spawn_task
        self._timeout = conn_options.timeout
        self._options = APIConnectOptions(
            max_retry=0, retry_interval=conn_options.retry_interval, timeout=conn_options.timeout
        )
        self._backoff_first, self._backoff_cap = backoff or RENDER_BACKOFF
        self._backoff = self._backoff_first
        self._paused_until: float | None = None
        self._failed_at: float | None = None
        self._warned = False
        self._unsafe: set[int] = set()
        self.failures = 0
        """Renders that failed (each one paused new renders for a while)."""

    @property
    def cache(self) -> FillerAudioCache:
        """The cache this voice reads and fills."""
        return self._cache

    @property
    def paused(self) -> bool:
        """True while new renders wait out the back-off of a failed one."""
        return self._paused_until is not None and (
            asyncio.get_running_loop().time() < self._paused_until
        )

    def is_ready(self, tts: lk_tts.TTS[Any], text: str) -> bool:
        """True when ``text`` is already rendered for ``tts``."""
        return self._cache.contains(sound_key(tts, text))

    def audio_for(
        self, tts: lk_tts.TTS[Any], text: str, *, private: bool = False
    ) -> tuple[AsyncIterator[rtc.AudioFrame], AudioSource] | None:
        """Audio for ``text``: replayed if in memory, else read from disk in a worker thread
        as it plays, else streamed from a render; None while renders are paused after a
        failure. Never reads a file on the event loop.

        Args:
            tts: the voice.
            text: what to say.
            private: it speaks a caller's data: its render is never written to disk (hold
                its key first, :meth:`FillerAudioCache.hold`, to keep it for the call).
        """
        key = sound_key(tts, text)
        frame = self._cache.get(key)
        if frame is not None:
            return replay(frame), "cache"
        if not private and self._cache.on_disk(key):
            return self._from_disk(tts, text, key), "cache"
        render = self._render(tts, text, key, private=private)
        return None if render is None else (render.stream(), "tts")

    async def _from_disk(
        self, tts: lk_tts.TTS[Any], text: str, key: str
    ) -> AsyncIterator[rtc.AudioFrame]:
        """A listed sound not in memory yet: read off the loop; gone or damaged, rendered."""
        frame = await self._cache.load_async(key)
        if frame is not None:
            async for chunk in replay(frame):
                yield chunk
            return
        render = self._render(tts, text, key)
        if render is not None:
            async for chunk in render.stream():
                yield chunk

    async def prerender(
        self,
        tts: lk_tts.TTS[Any],
        texts: Iterable[str],
        *,
        wait_turn: Callable[[], Awaitable[bool]] | None = None,
        private: bool = False,
    ) -> int:
        """Render every text not in the cache yet, one at a time; stop at the first failure.

        A text on disk is read into memory instead (in a worker thread, no synthesis).

        Args:
            tts: the voice to render with.
            texts: what to render, in order.
            wait_turn: awaited before each synthesis this call starts (a controller's
                "the session's own speech goes first"); False ends the call there (the
                session is gone).
            private: the texts speak a caller's data: never read from or written to disk,
                kept only while held (:meth:`FillerAudioCache.hold`).

        Returns:
            How many texts were rendered (by this call or a render it waited for).
        """
        rendered = 0
        for text in dict.fromkeys(texts):
            key = sound_key(tts, text)
            if await self._ready(key, private):
                continue
            if wait_turn is not None and self._cache.in_flight(key) is None:
                if not await wait_turn():
                    return rendered
                if await self._ready(key, private):
                    continue
            render = self._render(tts, text, key, private=private)
            if render is None or not await render.wait():
                return rendered
            rendered += 1
        return rendered

    async def _ready(self, key: str, private: bool) -> bool:
        if private:
            return self._cache.peek(key) is not None
        return await self._cache.load_async(key) is not None

    def _render(
        self, tts: lk_tts.TTS[Any], text: str, key: str, *, private: bool = False
    ) -> Render | None:
        render = self._cache.in_flight(key)
        if render is not None:
            return render
        tts = voice_source(tts)  # a FallbackAdapter's primary: never a fallback's voice
        if self.paused or not self._can_render(tts):
            return None
        render = self._cache.begin_render(key)
        self._cache.characters_rendered += len(text)
        self._spawn(
            self._synthesize(tts, text, key, render, private=private), "livekit_filler.render"
        )
        return render

    def _can_render(self, tts: lk_tts.TTS[Any]) -> bool:
        if id(tts) in self._unsafe:
            return False
        if hide_render_errors(tts):
            return True
        self._unsafe.add(id(tts))
        logger.warning(
            "cannot keep filler renders out of the session's TTS errors; "
            "only pre-rendered fillers will play",
            extra={"tts": type(tts).__name__},
        )
        return False

    async def _synthesize(
        self, tts: lk_tts.TTS[Any], text: str, key: str, render: Render, *, private: bool
    ) -> None:
        frame: rtc.AudioFrame | None = None
        try:
            with filler_render(_hidden_error):
                async with tts.synthesize(text, conn_options=self._options) as stream:
                    frames = stream.__aiter__()
                    while True:
                        try:
                            event = await asyncio.wait_for(frames.__anext__(), self._timeout)
                        except StopAsyncIteration:
                            break
                        render.add(event.frame, event.request_id)
            if not render.frames:
                raise RenderFailed("the TTS returned no audio")
            frame = combine_frames(render.frames)
        except (APIError, RenderFailed, asyncio.TimeoutError, OSError) as e:
            # a TTS or its connection failed: back off (see the class docstring)
            if isinstance(e, asyncio.TimeoutError):
                e = RenderFailed(f"no audio from the TTS for {self._timeout} s")
            self._fail(e, render)
        except Exception:
            # a defect (ours, a plugin's): loud, and no back-off that would hide it as an outage
            logger.error("filler render crashed", exc_info=True, extra={"tts": type(tts).__name__})
        else:
            self._backoff = self._backoff_first
            if self._on_rendered is not None:
                self._on_rendered(render.request_id or "", len(text))
        finally:
            self._cache.end_render(key, render, frame, private=private)

    def _fail(self, error: Exception, render: Render) -> None:
        self.failures += 1
        now = asyncio.get_running_loop().time()
        if self._failed_at is not None and render.started_at < self._failed_at:
            # began before the last failure: the same outage, already paused for
            logger.debug("filler synthesis failed", extra={"error": repr(error)})
            return
        pause = self._backoff
        self._failed_at = now
        self._paused_until = now + pause
        self._backoff = min(pause * 2, self._backoff_cap)
        if self._warned:
            logger.debug("filler synthesis failed", extra={"error": repr(error), "pause": pause})
            return
        self._warned = True
        logger.warning(
            "filler synthesis failed; fillers not rendered yet are skipped until it works again",
            extra={"error": repr(error), "pause": pause},
        )

    async def clip(self, source: str | BuiltinAudioClip) -> rtc.AudioFrame | None:
        """Decode a clip (a built-in LiveKit sound or a file) once; None if it cannot be read."""
        path = source.path() if isinstance(source, BuiltinAudioClip) else str(source)
        key = "clip-" + hashlib.sha256(path.encode()).hexdigest()[:32]
        frame = self._cache.get(key)
        if frame is not None:
            return frame
        try:
            frames = [f async for f in audio_frames_from_file(path, sample_rate=CLIP_SAMPLE_RATE)]
        except Exception as e:
            logger.warning("cannot decode filler clip", extra={"path": path, "error": repr(e)})
            return None
        if not frames:
            return None
        frame = combine_frames(frames)
        self._cache.put(key, frame)
        return frame


_tasks: set[asyncio.Task[Any]] = set()


def _spawn_task(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[Any]:
    task = asyncio.create_task(coro, name=name)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


async def replay(frame: rtc.AudioFrame) -> AsyncIterator[rtc.AudioFrame]:
    """Yield ``frame`` again in short frames (a fresh iterator for every play)."""
    step = max(1, int(frame.sample_rate * FRAME_SECONDS))
    data = frame.data
    channels = frame.num_channels
    for start in range(0, frame.samples_per_channel, step):
        chunk = data[start * channels : (start + step) * channels]
        yield rtc.AudioFrame(
            data=chunk.tobytes(),
            sample_rate=frame.sample_rate,
            num_channels=channels,
            samples_per_channel=len(chunk) // channels,
        )
        await asyncio.sleep(0)


def _hidden_error(error: lk_tts.TTSError) -> None:
    """An ``error`` a render's stream emitted on the TTS, kept from the session."""
    logger.debug(
        "filler render error kept from the session",
        extra={"recoverable": error.recoverable, "error": repr(error.error)},
    )


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
