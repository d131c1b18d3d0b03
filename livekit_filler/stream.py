"""The fillers of one tool step: when to speak, when to yield, when to stop.

One stream serves every call of a step (parallel tool calls share the step's speech handle).
It only ever speaks when the agent that owns the tool is in charge of a running, idle
activity and the user is quiet; it cuts its filler the moment anything more important
happens: the answer is ready, real speech is created, the user speaks, or a hand-off starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.agent_activity import ActivityClosedError, AgentActivity

from ._waker import Waker
from .log import logger
from .options import FillerOptions
from .settings import resolve_clip

if TYPE_CHECKING:
    from .controller import FillerController

HANDOFF_POLL_INTERVAL = 0.01
"""Seconds between checks for a hand-off while a filler is queued or playing."""

IDLE_POLL_INTERVAL = 0.1
"""Seconds between checks while another agent (an AgentTask) holds the conversation."""

_BUSY_EPSILON = 0.01


class FillerStream:
    """Plays the fillers of one tool step until it is ended."""

    def __init__(
        self,
        controller: FillerController,
        *,
        session: AgentSession[Any],
        owner: Agent,
        options: FillerOptions,
        tool_handle: SpeechHandle | None,
        tool_name: str,
        arguments: dict[str, object] | None = None,
    ) -> None:
        self._controller = controller
        self._session = session
        self._owner = owner
        self._options = options
        self._tool_handle = tool_handle
        self.tool_name = tool_name
        self.arguments: dict[str, object] = arguments or {}
        """The call's arguments, for phrase templates."""
        self.calls: set[str] = set()
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
        self.task: asyncio.Task[None] | None = None
        self.side_tasks: set[asyncio.Task[Any]] = set()
        """Helper tasks (a contextual phrase being written) cancelled when the stream ends."""
        self.contextual_text: str | None = None
        """A phrase a fast LLM wrote for this call, ready to play as its first filler."""
        self.start_message_done = asyncio.Event()
        """Set once the start message has played, was skipped, or there is none."""

    @property
    def options(self) -> FillerOptions:
        """The options this stream plays with."""
        return self._options

    @property
    def owner(self) -> Agent:
        """The agent whose tool this stream fills."""
        return self._owner

    @property
    def current(self) -> SpeechHandle | None:
        """The filler queued or playing right now, if any."""
        return self._current

    @property
    def ended(self) -> bool:
        """True once the stream will play nothing more."""
        return self._ended

    def merge_options(self, options: FillerOptions) -> None:
        """Take the options of another call joining this step."""
        self._options = self._options.merged_with(options)
        self._waker.wake()

    def replace_options(self, options: FillerOptions) -> None:
        """Use ``options`` from now on (the decorator's, found after the config rule's)."""
        self._options = options
        self._waker.wake()

    # -- signals from the controller ---------------------------------------------------------

    def end(self, *, reason: str) -> None:
        """Stop the stream: drop a queued filler; cut a playing one unless it may finish."""
        if self._ended:
            return
        self._ended = True
        handle = self._current
        if handle is not None and not handle.done():
            playing = self._session.current_speech is handle
            if reason == "answer" and playing and self._options.on_answer == "finish":
                logger.debug("filler left to finish", extra={"tool": self.tool_name})
            else:
                self.cut(reason=reason)
        for task in (self.task, *self.side_tasks):
            if task is not None and not task.done():
                task.cancel()
        self.start_message_done.set()

    def cut(self, *, reason: str) -> bool:
        """Interrupt the current filler, if any. Returns True when one was cut."""
        handle = self._current
        if handle is None or handle.done() or handle.interrupted:
            return False
        handle.interrupt(force=True)
        self._controller._record_cut(reason, tool=self.tool_name, speech_id=handle.id)
        return True

    def user_started_speaking(self) -> None:
        """The user talks: cut the filler and hold the dwell until they stop."""
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
        """Play fillers until ended, the session closes or ``max_count`` is reached."""
        try:
            await self._prepare()
            while not self._ended and self.count < self._options.max_count:
                await self._dwell()
                started = self._loop.time()
                activity = await self._idle_activity()
                if activity is None:
                    return
                if not self._owner_in_charge(activity):
                    # an AgentTask or a hand-off holds the floor: never speak into it
                    self._restart_dwell()
                    await self._waker.sleep(IDLE_POLL_INTERVAL)
                    continue
                if self._loop.time() - started > _BUSY_EPSILON or not self._dwell_elapsed():
                    # someone spoke while we waited: a filler needs its own silence first
                    self._restart_dwell()
                    continue
                await self._play(start_message=False)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.warning("filler stream stopped on an unexpected error", exc_info=True)

    async def _prepare(self) -> None:
        """Decode the clip and speak the start message before the first dwell."""
        try:
            if self._options.clip is not None:
                self.clip = await self._controller.voice.clip(resolve_clip(self._options.clip))
            if self._options.start_message is None:
                return
            activity = await self._idle_activity()
            if activity is not None and self._owner_in_charge(activity):
                await self._play(start_message=True)
        finally:
            self.start_message_done.set()

    async def _play(self, *, start_message: bool) -> None:
        """Play one filler (or the start message) and follow it to its end."""
        handle = self._controller._play_filler(self, start_message=start_message)
        if handle is not None:
            if not start_message:
                self.count += 1
            self._current = handle
            try:
                await self._follow(handle)
            finally:
                self._current = None
        self._restart_dwell()

    def _gap(self) -> float:
        return self._options.delay if self.count == 0 else self._options.interval

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
            if remaining <= 0:
                return
            await self._waker.sleep(remaining)

    async def _idle_activity(self) -> AgentActivity | None:
        """Wait until the session is idle; None when it is closing or the stream ended."""
        while not self._ended:
            try:
                return await self._session.wait_for_idle()
            except ActivityClosedError:
                return None
            except RuntimeError:
                # no activity yet or any more: a transition window; look again shortly
                await self._waker.sleep(IDLE_POLL_INTERVAL)
        return None

    def owner_in_charge(self) -> bool:
        """True while the tool's agent holds the conversation (no AgentTask, no hand-off)."""
        return holds_floor(self._session, self._owner)

    def _owner_in_charge(self, activity: AgentActivity) -> bool:
        # Checked synchronously right before say(): an unpaused activity is the one say()
        # targets, and the owner check also rules out the first instants of a transition,
        # before the old activity is paused (livekit-internals §6.1).
        return (
            not self._ended
            and not activity.scheduling_paused
            and activity.agent is self._owner
            and self.owner_in_charge()
            and self._session.user_state != "speaking"
            and not (self._tool_handle is not None and self._tool_handle.interrupted)
        )

    async def _follow(self, handle: SpeechHandle) -> None:
        await follow_filler(handle, in_charge=self.owner_in_charge, on_lost=self._lost_floor)

    def _lost_floor(self) -> None:
        self.cut(reason="handoff")


def holds_floor(session: AgentSession[Any], agent: Agent) -> bool:
    """True while ``agent`` is the session's current agent (no AgentTask, no hand-off started).

    LiveKit switches ``current_agent`` synchronously at the very start of an AgentTask await
    or an ``update_agent`` hand-off, before the old activity pauses (internals §2.3).
    """
    try:
        return session.current_agent is agent
    except RuntimeError:  # no agent: the session is not running
        return False


async def follow_filler(
    handle: SpeechHandle, *, in_charge: Callable[[], bool], on_lost: Callable[[], None]
) -> None:
    """Wait for a filler to end, calling ``on_lost`` once as soon as its agent loses the floor."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def _on_done(_: SpeechHandle) -> None:
        if not done.done():
            done.set_result(None)

    handle.add_done_callback(_on_done)
    lost = False
    try:
        while not done.done():
            if not lost and not handle.interrupted and not in_charge():
                lost = True
                on_lost()
            await asyncio.wait([done], timeout=HANDOFF_POLL_INTERVAL)
    finally:
        handle.remove_done_callback(_on_done)
