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
Only a completed attempt is ever kept, and a persisted sound carries its sample count and
checksum in a sidecar, so a truncated or doubled file is rejected on load.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import wave
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    APIConnectOptions,
    BuiltinAudioClip,
    tts as lk_tts,
)
from livekit.agents.utils import combine_frames

from ._livekit_private import audio_frames_from_file, filler_render, hide_render_errors, tts_voice
from .events import AudioSource
from .log import logger

FRAME_SECONDS = 0.05
"""Replayed audio is pushed in frames this long, so a cut takes effect at once."""

CLIP_SAMPLE_RATE = 48000


LOCAL_PREFIX = "local-"
"""Keys of sounds whose voice could not be read: kept for this TTS instance only, never saved."""

RENDER_BACKOFF = (5.0, 60.0)
"""Seconds without new renders after a failed one: the first pause, and the cap it doubles to."""

FILE_FORMAT = 2
"""Version of a persisted sound's sidecar (``<key>.json``); files without one are rejected."""


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
                _write_sound(directory, key, frame)
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

        A file whose sidecar is missing, or whose audio does not match the sample count and
        checksum recorded there (truncated, doubled, written by an older version), is
        skipped (one warning per directory) and rendered again when needed.

        Returns:
            How many sounds were loaded.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        on_disk: set[str] = set()
        loaded = 0
        if path not in self._directories:
            rejected: list[str] = []
            for file in sorted(path.glob("*.wav")):
                try:
                    frame = _read_sound(file)
                except (OSError, ValueError, wave.Error, EOFError):
                    rejected.append(file.name)
                    continue
                self._frames.setdefault(file.stem, frame)
                on_disk.add(file.stem)
                loaded += 1
            if rejected:
                logger.warning(
                    "skipping filler audio files that do not match their record",
                    extra={"path": str(path), "files": rejected[:5], "count": len(rejected)},
                )
            self._directories.add(path)
        else:
            on_disk = {f.stem for f in path.glob("*.wav") if f.with_suffix(".json").exists()}
        for key, frame in self._frames.items():
            if not key.startswith(LOCAL_PREFIX) and key not in on_disk:
                _write_sound(path, key, frame)
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
        """
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
        self, tts: lk_tts.TTS[Any], text: str
    ) -> tuple[AsyncIterator[rtc.AudioFrame], AudioSource] | None:
        """Audio for ``text``: replayed if rendered, else streamed from a render; None while
        renders are paused after a failure."""
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
        if self.paused or not self._can_render(tts):
            return None
        render = self._cache.begin_render(key)
        self._cache.characters_rendered += len(text)
        self._spawn(self._synthesize(tts, text, key, render), "livekit_filler.render")
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

    async def _synthesize(self, tts: lk_tts.TTS[Any], text: str, key: str, render: Render) -> None:
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
        except Exception as e:
            if isinstance(e, asyncio.TimeoutError):
                e = RenderFailed(f"no audio from the TTS for {self._timeout} s")
            self._fail(e, render)
        else:
            self._backoff = self._backoff_first
        finally:
            self._cache.end_render(key, render, frame)

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


def _record(frame: rtc.AudioFrame) -> dict[str, object]:
    """What a persisted sound must match: its format, sample count and checksum."""
    return {
        "format": FILE_FORMAT,
        "sample_rate": frame.sample_rate,
        "num_channels": frame.num_channels,
        "samples_per_channel": frame.samples_per_channel,
        "sha256": hashlib.sha256(frame.data.tobytes()).hexdigest(),
    }


def _write_sound(directory: Path, key: str, frame: rtc.AudioFrame) -> None:
    """Write ``<key>.wav`` and its sidecar ``<key>.json`` (each atomically)."""
    wav = directory / f"{key}.wav"
    tmp = directory / f"{key}.wav.{os.getpid()}.tmp"
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(frame.num_channels)
        out.setsampwidth(2)
        out.setframerate(frame.sample_rate)
        out.writeframes(frame.data.tobytes())
    tmp.replace(wav)
    sidecar = directory / f"{key}.json.{os.getpid()}.tmp"
    sidecar.write_text(json.dumps(_record(frame)))
    sidecar.replace(directory / f"{key}.json")


def _read_sound(path: Path) -> rtc.AudioFrame:
    """Read a persisted sound; ValueError when it does not match its sidecar."""
    with wave.open(str(path), "rb") as src:
        if src.getsampwidth() != 2:
            raise wave.Error("filler audio must be 16-bit PCM")
        data = src.readframes(src.getnframes())
        frame = rtc.AudioFrame(
            data=data,
            sample_rate=src.getframerate(),
            num_channels=src.getnchannels(),
            samples_per_channel=len(data) // (2 * max(1, src.getnchannels())),
        )
    expected = json.loads(path.with_suffix(".json").read_text())
    if expected != _record(frame):
        raise ValueError("filler audio does not match its sidecar")
    return frame
