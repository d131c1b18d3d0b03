"""The filler voice: turns a filler's text or clip into audio, rendered once per process.

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
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
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
from .events import AudioSource
from .log import logger
from .render import Render, RenderFailed, replay
from .sound_cache import FillerAudioCache, shared_cache
from .tts_identity import sound_key

CLIP_SAMPLE_RATE = 48000

RENDER_BACKOFF = (5.0, 60.0)
"""Seconds without new renders after a failed one: the first pause, and the cap it doubles to."""


Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[Any]"]


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


def _hidden_error(error: lk_tts.TTSError) -> None:
    """An ``error`` a render's stream emitted on the TTS, kept from the session."""
    logger.debug(
        "filler render error kept from the session",
        extra={"recoverable": error.recoverable, "error": repr(error.error)},
    )
