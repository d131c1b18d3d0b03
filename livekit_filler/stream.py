"""The fillers of one tool step: when to speak, when to yield, when to stop.

One stream serves every call of a step (parallel tool calls share the step's speech handle).
It speaks only when :func:`~livekit_filler.floor.may_start` says so, right after the session
became idle, and it cuts its filler the moment anything more important happens: the answer
is ready, real speech is created, the user speaks, or a hand-off starts.

With adaptive timing (the default) its timing (:mod:`~livekit_filler.stream_timing`) asks
the tool's learned latency (:mod:`~livekit_filler.latency`) when to speak: a tool predicted
slow gets its first filler after ``grace``, a tool predicted fast none unless it overruns, an
unknown tool waits ``delay``; each phrase is chosen to fit the predicted wait, and none
starts that would be cut in its first half.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice import SpeechHandle

from . import _compat
from ._livekit_private import activity_closed_error
from ._waker import Waker
from .dwell import Dwell
from .floor import Verdict, may_keep_playing, may_start
from .latency import LatencyModel
from .log import logger
from .options import FillerOptions, Pool, combine
from .phrases import PhrasePicker
from .settings_fields import resolve_clip
from .sound_cache import SoundLease
from .speaker import FillerSpeaker
from .stream_timing import StreamTiming
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
    started_at: float | None = None
    """Event-loop time the call started (set when it joins a stream)."""
    handoff_at: float | None = None
    """Event-loop time its agent handed the floor to another (an AgentTask), if it did."""


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
        latency: LatencyModel | None = None,
        persist_templated: bool = False,
    ) -> None:
        self._speaker = speaker
        self._persist_templated = persist_templated
        self.lease = SoundLease(speaker.voice.cache)
        """The private sounds of this step's calls (filled templates, contextual phrases):
        in memory until the stream ends, never on disk."""
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
        self.handoff_spoke_at: float | None = None
        """Event-loop time an AgentTask one of its calls started first spoke, if one did."""
        self._loop = asyncio.get_running_loop()
        self.started_at = self._loop.time()
        """Event-loop time the stream (its first tool call) started."""
        self._dwell = Dwell(anchor=self.started_at)
        """The silence before the next filler (see :mod:`~livekit_filler.dwell`)."""
        self._timing = StreamTiming(
            self,
            latency=latency if latency is not None else LatencyModel(),
            dwell=self._dwell,
            clock=self._loop.time,
            duration_of=lambda text: speaker.duration_of(owner, text),
            answer_window=speaker.answer_window,
            language=language,
        )
        """When the next filler is due and which phrases fit the wait (adaptive timing)."""
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
        self._skipped: tuple[object, str] | None = None
        """The due filler last skipped (its index, or a start message's call) and why."""
        self._acknowledging = False
        """True while an acknowledgement due for this step takes the next slot."""
        self._acknowledgement: SpeechHandle | None = None
        """That acknowledgement, queued or sounding: the dwell restarts at its end."""
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
    def calls(self) -> Collection[StreamCall]:
        """The step's calls still running, the first first."""
        return self._calls.values()

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
        if call.started_at is None:
            call.started_at = self._loop.time()
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
        self.lease.release()

    def cut(self, *, reason: str) -> bool:
        """Interrupt the current filler, if any. Returns True when one was cut."""
        handle = self._current
        if handle is None:
            return False
        return self._speaker.cut(handle, reason=reason, tool=self.tool_name)

    def user_started_speaking(self) -> None:
        """The user talks: cut an interruptible filler and hold the dwell until they stop."""
        # the floor decides: a non-interruptible filler already sounding plays on, one still
        # on its way to the speaker never starts over them (fuzzer seed 882 programs)
        floor = self._speaker.floor(self._owner, sounding=self._speaker.sounding(self._current))
        allow = self.options.allow_interruptions
        if may_keep_playing(replace(floor, user_speaking=True), allow_interruptions=allow) is not (
            Verdict.SPEAK
        ):
            self.cut(reason="user_speech")
        self._acknowledging = False
        self._acknowledgement = None
        self._dwell.hold()
        self._waker.wake()

    def user_stopped_speaking(self, *, acknowledging: SpeechHandle | None = None) -> None:
        """The user is quiet again: the dwell restarts now, unless an acknowledgement is due
        for this step (``acknowledging`` is its tool handle, :mod:`~livekit_filler.busy`):
        that takes this slot, and the dwell waits for it (:meth:`acknowledged`)."""
        if acknowledging is not None and acknowledging is self._tool_handle:
            self._acknowledging = True
            self._dwell.hold()
        else:
            self._acknowledging = False
            self._restart_dwell()

    def acknowledged(self, handle: SpeechHandle | None) -> None:
        """The acknowledgement due for this step was queued (``handle``: it is this stream's
        filler, and the dwell restarts at its end, as after a filler) or dropped (None)."""
        if not self._acknowledging or self._acknowledgement is not None:
            return  # none was due here, the caller spoke again since, or it is sounding
        if handle is None:
            self._acknowledging = False
            self._restart_dwell()
            return
        self.count += 1
        self._acknowledgement = handle
        handle.add_done_callback(self._acknowledgement_done)

    def _acknowledgement_done(self, handle: SpeechHandle) -> None:
        if self._acknowledgement is handle:
            self._acknowledgement = None
            self.acknowledged(None)

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
            logger.error("filler stream crashed", exc_info=True, extra={"tool": self.tool_name})
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
        await self._dwell_out()
        started = self._loop.time()
        if not await self._wait_idle():
            return False
        if self._ended or self._pending_starts:
            return True
        verdict = self._verdict()
        if verdict is Verdict.SPEECH_GAP:
            self._skip(verdict.value, due=self.count, call=self._first_call())
            return False  # LiveKit's speech gap would turn any filler into answer delay
        if verdict is Verdict.TTS_DOWN:
            self._skip(verdict.value, due=self.count, call=self._first_call())
            self._restart_dwell()
            await asyncio.sleep(RETRY_INTERVAL)
            return True
        if verdict is not Verdict.SPEAK:
            # an AgentTask or a hand-off holds the floor: never speak into it
            self._restart_dwell()
            await self._waker.sleep(IDLE_POLL_INTERVAL)
            return True
        if self._loop.time() - started > _BUSY_EPSILON or not self._timing.dwell_elapsed():
            # someone spoke while we waited: a filler needs its own silence first
            self._restart_dwell()
            return True
        call = self._first_call()
        choice = self._timing.fitting_pool()
        if choice is False:
            # predicted to be cut in its first half: wait until the tool is predicted done
            # (if it still runs then, it is overrunning and the prediction is asked again)
            self._skip("no_fit", due=self.count, call=call)
            remaining = self._timing.remaining() or 0.0
            now = self._loop.time()
            self._dwell.defer(now + max(remaining, RETRY_INTERVAL), now)
            self._waker.wake()
            return True
        text = self._next_text(choice)
        if text is None:
            self._skip("no_phrase", due=self.count, call=call)
        elif await self._play(text, call=call, counted=True):
            return True
        # nothing was scheduled (no phrase, a failed render, a refusal): never spin
        self._restart_dwell()
        await asyncio.sleep(RETRY_INTERVAL)
        return True

    def _skip(self, reason: str, *, due: object, call: StreamCall) -> None:
        """Report a due filler that did not play: one event (and span) per reason change,
        not per retry, and counted in ``fillers_skipped`` once, under its first reason."""
        last = self._skipped
        if last == (due, reason):
            return  # the same filler, retried for the same reason
        self._skipped = (due, reason)
        counted = last is None or last[0] != due
        self._speaker.skip(reason, tool=call.tool_name, parent=call.trace_context, counted=counted)

    def _verdict(self) -> Verdict:
        return may_start(self._speaker.floor(self._owner, self._tool_handle))

    def _next_text(self, pool: Pool | None = None) -> str | None:
        if self.clip is not None:
            return ""
        if self.count == 0 and self.contextual_text is not None:
            return self.contextual_text
        if pool is not None:
            return self._picker.pick(pool, index=0, values=self.arguments)
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
        due: object = self.count if counted else ("start", call.call_id)
        handle = self._speaker.say(
            text,
            agent=self._owner,
            allow_interruptions=options.allow_interruptions,
            tool=tool,
            clip=self.clip if counted else None,
            parent=call.trace_context,
            on_skip=lambda reason: self._skip(reason, due=due, call=call),
            private=self.lease if self._private(text) else None,
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

    def _private(self, text: str) -> bool:
        """True when ``text`` may carry the caller's data: a contextual phrase, or a phrase
        filled with the call's arguments (unless ``persist_templated``); only the options'
        fixed phrases and messages are written to disk."""
        if self.contextual_text is not None and text == self.contextual_text:
            return True
        fixed = text in self.options.texts() or any(
            text == c.options.start_message or text == c.options.failure_message
            for c in self._calls.values()
        )
        return not fixed and not self._persist_templated

    # -- the dwell ---------------------------------------------------------------------------

    def _restart_dwell(self) -> None:
        if self._acknowledging:
            return  # held until the acknowledgement due for this step sounded or was dropped
        self._dwell.restart(self._loop.time())
        self._waker.wake()

    async def _dwell_out(self) -> None:
        """Wait until the dwell has passed (or the stream ended, or a start message is due)."""
        while not self._ended:
            due = self._timing.due()
            if due is None:
                await self._waker.sleep(None)
                continue
            remaining = due - self._loop.time()
            if remaining <= 0 or self._pending_starts:
                return
            await self._waker.sleep(remaining)

    async def _wait_idle(self) -> bool:
        """Wait until the session is idle; False when it is closing or the stream ended."""
        while not self._ended:
            try:
                # shielded: on LiveKit 1.6, cancelling a waiter cancels the user's turn
                await _compat.wait_for_idle(self._session)
                return not self._ended
            except activity_closed_error():
                return False
            except RuntimeError:
                # no activity yet or any more: a transition window; look again shortly
                await self._waker.sleep(IDLE_POLL_INTERVAL)
        return False
