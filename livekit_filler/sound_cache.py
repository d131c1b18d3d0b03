"""The in-memory filler sound cache, shared by every session of the process.

:class:`FillerAudioCache` keeps rendered sounds in memory up to a size bound (least recently
used dropped first, held ones never), reads them from and writes them to its disk stores
(:mod:`.disk_store`), and registers the renders in flight (:mod:`.render`).
:class:`SoundLease` holds the sounds of one call or filler; :func:`shared_cache` is the
process-wide cache.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from livekit import rtc

from .disk_store import DEFAULT_MAX_BYTES, DiskStore, write_soon
from .disk_writer import writer
from .render import Render
from .tts_identity import LOCAL_PREFIX

DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024
"""Default bound of the sounds one process keeps in memory (``memory_cache_mb``)."""


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
            key: the sound's key (:func:`~livekit_filler.tts_identity.sound_key`).
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
                write_soon(store, key, frame, meta)

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
                write_soon(store, key, frame, meta)
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


_shared = FillerAudioCache()


def shared_cache() -> FillerAudioCache:
    """The process-wide cache every controller uses."""
    return _shared
