"""Filler audio: each sound rendered once per process, replayed without TTS latency.

A text filler spoken through ``session.say(text)`` pays the TTS time to first byte after it
reaches the head of the speech queue, and costs a synthesis on every play. Here a phrase is
rendered once with ``tts.synthesize(text)``, keyed by everything that changes its sound, and
played as ``session.say(text, audio=...)``. Audio clips (LiveKit's built-in sounds or a file)
are decoded once the same way. A phrase not rendered yet is synthesized on demand (and kept);
a failed synthesis is logged once and the filler skipped, so a broken TTS costs LiveKit's
error budget at most one error per controller.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import wave
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import BuiltinAudioClip, tts as lk_tts
from livekit.agents.utils import combine_frames

from ._livekit_private import audio_frames_from_file, tts_voice
from .events import AudioSource
from .log import logger

FRAME_SECONDS = 0.05
"""Replayed audio is pushed in frames this long, so a cut takes effect at once."""

CLIP_SAMPLE_RATE = 48000


LOCAL_PREFIX = "local-"
"""Keys of sounds whose voice could not be read: kept for this TTS instance only, never saved."""


def sound_key(tts: lk_tts.TTS[Any], text: str) -> str:
    """A stable key for the sound of ``text`` spoken by ``tts``: same key, same audio.

    When the TTS's voice cannot be read, the key names this TTS instance instead, so two
    voices never share a sound (and such a sound is never written to disk).
    """
    voice = tts_voice(tts)
    parts = [
        f"{type(tts).__module__}.{type(tts).__qualname__}",
        tts.provider,
        tts.model,
        voice if voice is not None else f"instance {id(tts)}",
        tts.sample_rate,
        tts.num_channels,
        text,
    ]
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]
    return digest if voice is not None else LOCAL_PREFIX + digest


class FillerAudioCache:
    """Rendered filler audio, shared by every session of the process (see :func:`shared_cache`)."""

    def __init__(self) -> None:
        self._frames: dict[str, rtc.AudioFrame] = {}
        self._pending: dict[str, Render] = {}
        self._directories: set[Path] = set()
        self._write_failed = False
        self.hits = 0
        self.misses = 0
        self.characters_rendered = 0
        """Characters this cache asked a TTS to synthesize."""

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, key: str) -> rtc.AudioFrame | None:
        """The audio stored under ``key``, counting the hit or miss."""
        frame = self._frames.get(key)
        if frame is None:
            self.misses += 1
        else:
            self.hits += 1
        return frame

    def contains(self, key: str) -> bool:
        """True when ``key`` is stored (counts nothing)."""
        return key in self._frames

    def put(self, key: str, frame: rtc.AudioFrame) -> None:
        """Store ``frame`` under ``key`` and write it to every persistence directory."""
        self._frames[key] = frame
        if key.startswith(LOCAL_PREFIX):
            return
        for directory in self._directories:
            try:
                _write_wav(directory / f"{key}.wav", frame)
            except OSError as e:
                if not self._write_failed:
                    self._write_failed = True
                    logger.warning(
                        "cannot persist filler audio",
                        extra={"path": str(directory), "error": repr(e)},
                    )

    def in_flight(self, key: str) -> Render | None:
        """The render of ``key`` under way on this event loop, if any."""
        render = self._pending.get(key)
        if render is None or render.finished or render.loop is not asyncio.get_running_loop():
            return None
        return render

    def begin_render(self, key: str) -> Render:
        """Announce a render of ``key``: others stream it instead of synthesizing again."""
        render = Render()
        self._pending[key] = render
        return render

    def end_render(self, key: str, render: Render, frame: rtc.AudioFrame | None) -> None:
        """Finish a render begun with :meth:`begin_render` (``frame`` None: it failed)."""
        if frame is not None:
            self.put(key, frame)
        render.finish(ok=frame is not None)
        if self._pending.get(key) is render:
            del self._pending[key]

    def persist_to(self, directory: str | Path) -> int:
        """Load the audio saved in ``directory`` and save new renders there too.

        Call it once per process (for example in a worker's prewarm step).

        Returns:
            How many sounds were loaded.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        loaded = 0
        if path not in self._directories:
            for file in sorted(path.glob("*.wav")):
                try:
                    self._frames.setdefault(file.stem, _read_wav(file))
                    loaded += 1
                except (OSError, wave.Error, EOFError):
                    logger.warning(
                        "skipping unreadable filler audio file", extra={"path": str(file)}
                    )
            self._directories.add(path)
        for key, frame in self._frames.items():
            if not key.startswith(LOCAL_PREFIX) and not (path / f"{key}.wav").exists():
                _write_wav(path / f"{key}.wav", frame)
        return loaded

    def clear(self) -> None:
        """Forget every sound and counter (persistence directories are kept)."""
        self._frames.clear()
        self.hits = self.misses = self.characters_rendered = 0


_shared = FillerAudioCache()


def shared_cache() -> FillerAudioCache:
    """The process-wide cache every controller uses."""
    return _shared


class Render:
    """One synthesis in progress: its frames so far, streamable by any number of listeners."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.frames: list[rtc.AudioFrame] = []
        self.finished = False
        self.ok = False
        self._changed = asyncio.Event()

    def add(self, frame: rtc.AudioFrame) -> None:
        """A frame arrived from the TTS."""
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
        """The frames as they arrive; stops early (at what it has) if the synthesis fails."""
        sent = 0
        while True:
            while sent < len(self.frames):
                yield self.frames[sent]
                sent += 1
            if self.finished:
                return
            self._changed.clear()
            if sent == len(self.frames) and not self.finished:
                await self._changed.wait()


Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[Any]"]


class FillerVoice:
    """Turns filler text or a clip into audio for one controller, never raising.

    Every synthesis runs to completion in its own task, even when the filler that asked for
    it is cut, so each sound is synthesized once per process; whoever needs it meanwhile
    streams the same render.
    """

    def __init__(
        self, cache: FillerAudioCache | None = None, *, spawn: Spawn | None = None
    ) -> None:
        self._cache = cache if cache is not None else shared_cache()
        self._spawn = spawn or _spawn_task
        self._broken = False

    @property
    def cache(self) -> FillerAudioCache:
        """The cache this voice reads and fills."""
        return self._cache

    @property
    def broken(self) -> bool:
        """True once a synthesis failed: only already-rendered audio plays from then on."""
        return self._broken

    def is_ready(self, tts: lk_tts.TTS[Any], text: str) -> bool:
        """True when ``text`` is already rendered for ``tts``."""
        return self._cache.contains(sound_key(tts, text))

    def audio_for(
        self, tts: lk_tts.TTS[Any], text: str
    ) -> tuple[AsyncIterator[rtc.AudioFrame], AudioSource] | None:
        """Audio for ``text``: replayed if rendered, else streamed from a render; None if broken."""
        key = sound_key(tts, text)
        frame = self._cache.get(key)
        if frame is not None:
            return replay(frame), "cache"
        render = self._render(tts, text, key)
        return None if render is None else (render.stream(), "tts")

    async def prerender(self, tts: lk_tts.TTS[Any], texts: Iterable[str]) -> int:
        """Render every text not in the cache yet, one at a time; stop at the first failure.

        Returns:
            How many texts were rendered (by this call or a render it waited for).
        """
        rendered = 0
        for text in dict.fromkeys(texts):
            key = sound_key(tts, text)
            if self._cache.contains(key):
                continue
            render = self._render(tts, text, key)
            if render is None or not await render.wait():
                return rendered
            rendered += 1
        return rendered

    def _render(self, tts: lk_tts.TTS[Any], text: str, key: str) -> Render | None:
        render = self._cache.in_flight(key)
        if render is not None:
            return render
        if self._broken:
            return None
        render = self._cache.begin_render(key)
        self._cache.characters_rendered += len(text)
        self._spawn(self._synthesize(tts, text, key, render), "livekit_filler.render")
        return render

    async def _synthesize(self, tts: lk_tts.TTS[Any], text: str, key: str, render: Render) -> None:
        frame: rtc.AudioFrame | None = None
        try:
            async with tts.synthesize(text) as stream:
                async for event in stream:
                    render.add(event.frame)
            frame = combine_frames(render.frames) if render.frames else None
        except Exception as e:
            self._fail(e)
        finally:
            self._cache.end_render(key, render, frame)

    def _fail(self, error: Exception) -> None:
        if not self._broken:
            self._broken = True
            logger.warning(
                "filler synthesis failed; only pre-rendered fillers will play",
                extra={"error": repr(error)},
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


def _write_wav(path: Path, frame: rtc.AudioFrame) -> None:
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(frame.num_channels)
        out.setsampwidth(2)
        out.setframerate(frame.sample_rate)
        out.writeframes(frame.data.tobytes())
    tmp.replace(path)


def _read_wav(path: Path) -> rtc.AudioFrame:
    with wave.open(str(path), "rb") as src:
        if src.getsampwidth() != 2:
            raise wave.Error("filler audio must be 16-bit PCM")
        data = src.readframes(src.getnframes())
        return rtc.AudioFrame(
            data=data,
            sample_rate=src.getframerate(),
            num_channels=src.getnchannels(),
            samples_per_channel=src.getnframes(),
        )
