"""The fillers of one tool step: when to speak, when to yield, when to stop.

One stream serves every call of a step (parallel tool calls share the step's speech handle).
It speaks only when :func:`~livekit_filler.floor.may_start` says so, right after the session
became idle, and it cuts its filler the moment anything more important happens: the answer
is ready, real speech is created, the user speaks, or a hand-off starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice import SpeechHandle

from ._livekit_private import ActivityClosedError
from ._waker import Waker
from .floor import Verdict, may_start
from .log import logger
from .options import FillerOptions, combine
from .phrases import PhrasePicker
from .settings import resolve_clip
from .speaker import FillerSpeaker
from .tracing import TraceContext

IDLE_POLL_INTERVAL = 0.1
"""Seconds between checks while the floor is not ours (an AgentTask, a transition)."""

RETRY_INTERVAL = 0.1
"""Seconds before trying again after a filler could not be scheduled (never a busy loop)."""

_BUSY_EPSILON = 0.01


@dataclass
class StreamCall:
    """One tool call a stream fills."""

    call_id: str
    tool_name: str
    options: FillerOptions
    arguments: dict[str, object] = field(default_factory=dict)
    trace_context: TraceContext | None = None
    """The trace context the call started in (its ``function_tool`` span)."""
    start_done: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once this call's start message has played, was skipped, or there is none."""


class FillerStream:
    """Plays the fillers of one tool step until it is ended."""

    def __init__(
        self,
        speaker: FillerSpeaker,
        first: StreamCall,
        *,
        session: AgentSession[Any],
        owner: Agent,
        tool_handle: SpeechHandle | None,
        picker: PhrasePicker,
        language: Callable[[], str | None],
    ) -> None:
        self._speaker = speaker
        self._session = session
        self._owner = owner
        self._tool_handle = tool_handle
        self._picker = picker
        self._language = language
        self._calls: dict[str, StreamCall] = {}
        self._options = first.options
        self._pending_starts: list[StreamCall] = []
        self.clip: rtc.AudioFrame | None = None
        """The decoded clip this stream plays instead of phrases, if any."""
        self.first_audio_at: float | None = None
        """Event-loop time when the first filler's audio started."""
        self._loop = asyncio.get_running_loop()
        self.started_at = self._loop.time()
        """Event-loop time the stream (its first tool call) started."""
        self._anchor: float | None = self.started_at
        self._waker = Waker()
        self._current: SpeechHandle | None = None
        self._ended = False
        self.count = 0
        """Fillers played (start messages excluded)."""
        self.task: asyncio.Task[None] | None = None
        self.side_tasks: set[asyncio.Task[Any]] = set()
        """Helper tasks (a contextual phrase being written) cancelled when the stream ends."""
        self.contextual_text: str | None = None
        """A phrase a fast LLM wrote for this call, ready to play as its first filler."""
        self.add_call(first)

    @property
    def options(self) -> FillerOptions:
        """The options this stream plays with: its calls' options, combined."""
        return self._options

    @property
    def owner(self) -> Agent:
        """The agent whose tool this stream fills."""
        return self._owner

    @property
    def tool_name(self) -> str:
        """The first call's tool name (for events and logs)."""
        return self._first_call().tool_name if self._calls else ""

    @property
    def arguments(self) -> dict[str, object]:
        """Every call's arguments, for phrase templates (the first call's win)."""
        values: dict[str, object] = {}
        for call in reversed(self._calls.values()):
            values.update(call.arguments)
        return values

    @property
    def current(self) -> SpeechHandle | None:
        """The filler queued or playing right now, if any."""
        return self._current

    @property
    def ended(self) -> bool:
        """True once the stream will play nothing more."""
        return self._ended

    # -- calls -------------------------------------------------------------------------------

    def add_call(self, call: StreamCall) -> None:
        """A call of this step starts: its options join, its start message is due."""
        self._calls[call.call_id] = call
        self._combine()
        if call.options.start_message is not None and not self._ended:
            self._pending_starts.append(call)
        else:
            call.start_done.set()
        self._waker.wake()

    def replace_options(self, call_id: str, options: FillerOptions) -> None:
        """Use ``options`` for a call from now on (the decorator's, found after the config's)."""
        call = self._calls.get(call_id)
        if call is not None:
            call.options = options
            self._combine()
            self._waker.wake()

    def remove_call(self, call_id: str) -> StreamCall | None:
        """A call ended; returns it (None if unknown)."""
        call = self._calls.pop(call_id, None)
        if call is not None:
            call.start_done.set()
            if call in self._pending_starts:
                self._pending_starts.remove(call)
            if self._calls:
                self._combine()
        return call

    def _combine(self) -> None:
        self._options = combine([c.options for c in self._calls.values()])

    @property
    def empty(self) -> bool:
        """True when no call is left."""
        return not self._calls

    # -- signals from the controller ---------------------------------------------------------

    def end(self, *, reason: str) -> None:
        """Stop the stream: drop a queued filler; cut a playing one unless it may finish."""
        if self._ended:
            return
        self._ended = True
        handle = self._current
        if handle is not None and not handle.done():
            playing = self._session.current_speech is handle
            if reason == "answer" and playing and self.options.on_answer == "finish":
                logger.debug("filler left to finish", extra={"tool": self.tool_name})
            else:
                self.cut(reason=reason)
        for task in (self.task, *self.side_tasks):
            if task is not None and not task.done():
                task.cancel()
        for call in self._calls.values():
            call.start_done.set()
        self._pending_starts.clear()

    def cut(self, *, reason: str) -> bool:
        """Interrupt the current filler, if any. Returns True when one was cut."""
        handle = self._current
        if handle is None:
            return False
        return self._speaker.cut(handle, reason=reason, tool=self.tool_name)

    def user_started_speaking(self) -> None:
        """The user talks: cut an interruptible filler and hold the dwell until they stop."""
        if self.options.allow_interruptions:
            self.cut(reason="user_speech")
        self._anchor = None
        self._waker.wake()

    def user_stopped_speaking(self) -> None:
        """The user is quiet again: the dwell restarts now."""
        self._restart_dwell()

    def yield_to_speech(self) -> None:
        """Real speech was created: it must not wait behind a filler."""
        if self.cut(reason="real_speech"):
            self._restart_dwell()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Play start messages and fillers until ended or the session closes."""
        try:
            if self.options.clip is not None:
                self.clip = await self._speaker.voice.clip(resolve_clip(self.options.clip))
            while not self._ended:
                if self._pending_starts:
                    await self._start_message(self._pending_starts.pop(0))
                elif self.count >= self.options.max_count:
                    await self._waker.sleep(None)  # until a joining call brings a start message
                elif not await self._filler():
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("filler stream stopped on an unexpected error", exc_info=True)
        finally:
            for call in self._calls.values():
                call.start_done.set()

    async def _start_message(self, call: StreamCall) -> None:
        try:
            if await self._wait_idle() and self._verdict() is Verdict.SPEAK:
                text = call.options.start_message
                if text is not None:
                    await self._play(text, call=call)
        finally:
            call.start_done.set()

    async def _filler(self) -> bool:
        """Dwell, then play one filler if the floor is ours; False when no filler may follow."""
        await self._dwell()
        started = self._loop.time()
        if not await self._wait_idle():
            return False
        if self._ended or self._pending_starts:
            return True
        verdict = self._verdict()
        if verdict is Verdict.SPEECH_GAP:
            call = self._first_call()
            self._speaker.skip(verdict.value, tool=call.tool_name, parent=call.trace_context)
            return False  # LiveKit's speech gap would turn any filler into answer delay
        if verdict is not Verdict.SPEAK:
            # an AgentTask or a hand-off holds the floor: never speak into it
            self._restart_dwell()
            await self._waker.sleep(IDLE_POLL_INTERVAL)
            return True
        if self._loop.time() - started > _BUSY_EPSILON or not self._dwell_elapsed():
            # someone spoke while we waited: a filler needs its own silence first
            self._restart_dwell()
            return True
        text = self._next_text()
        call = self._first_call()
        if text is None:
            self._speaker.skip("no_phrase", tool=call.tool_name, parent=call.trace_context)
        elif await self._play(text, call=call, counted=True):
            return True
        # nothing was scheduled (no phrase, a failed render, a refusal): never spin
        self._restart_dwell()
        await asyncio.sleep(RETRY_INTERVAL)
        return True

    def _verdict(self) -> Verdict:
        return may_start(self._speaker.floor(self._owner, self._tool_handle))

    def _next_text(self) -> str | None:
        if self.clip is not None:
            return ""
        if self.count == 0 and self.contextual_text is not None:
            return self.contextual_text
        pool = self.options.pool_for(self._language())
        return self._picker.pick(pool, index=self.count, values=self.arguments)

    def _first_call(self) -> StreamCall:
        return next(iter(self._calls.values()))

    async def _play(self, text: str, *, call: StreamCall, counted: bool = False) -> bool:
        """Play one filler (or ``call``'s start message) and follow it to its end.

        Returns:
            False when it could not be scheduled.
        """
        options = self.options
        tool = call.tool_name
        handle = self._speaker.say(
            text,
            agent=self._owner,
            allow_interruptions=options.allow_interruptions,
            tool=tool,
            clip=self.clip if counted else None,
            parent=call.trace_context,
        )
        if handle is None:
            return False
        if counted:
            self.count += 1
        self._current = handle
        try:
            await self._speaker.follow(
                handle,
                agent=self._owner,
                allow_interruptions=options.allow_interruptions,
                tool=tool,
            )
        finally:
            self._current = None
        self._restart_dwell()
        return True

    def _gap(self) -> float:
        return self.options.delay if self.count == 0 else self.options.interval

    def _restart_dwell(self) -> None:
        self._anchor = self._loop.time()
        self._waker.wake()

    def _dwell_elapsed(self) -> bool:
        return self._anchor is not None and self._loop.time() >= self._anchor + self._gap()

    async def _dwell(self) -> None:
        while not self._ended:
            if self._anchor is None:
                await self._waker.sleep(None)
                continue
            remaining = self._anchor + self._gap() - self._loop.time()
            if remaining <= 0 or self._pending_starts:
                return
            await self._waker.sleep(remaining)

    async def _wait_idle(self) -> bool:
        """Wait until the session is idle; False when it is closing or the stream ended."""
        while not self._ended:
            try:
                await self._session.wait_for_idle()
                return not self._ended
            except ActivityClosedError:
                return False
            except RuntimeError:
                # no activity yet or any more: a transition window; look again shortly
                await self._waker.sleep(IDLE_POLL_INTERVAL)
        return False
