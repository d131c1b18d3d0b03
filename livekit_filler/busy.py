"""An acknowledgement when the caller speaks during a tool that cannot be interrupted.

When a tool's step does not allow interruptions, LiveKit lets the tool run while the caller
talks. :class:`BusyAcknowledger` says ``busy_message`` ("Sorry, just a few more seconds.")
once per call when the caller stops speaking and such a tool still runs: through the
session's scheduler like every filler, interruptible by the caller whatever the tool's step
says, and cut like ``say_filler``'s fillers by the tool's answer, by real speech and by a
hand-off. Words the caller said get LiveKit's own reply (it answers a user turn while a
tool runs, telling the LLM the tool is in progress): then no acknowledgement is said, and
one already sounding is cut the moment that reply is created.

The acknowledgement takes the slot the caller's stop opens: the tool step it is due for
learns it from :meth:`BusyAcknowledger.user_stopped_speaking`, and its filler stream waits
for it (queued: it counts as the stream's filler; dropped: the stream goes on) instead of
queuing a filler of its own on the caller's stop and making the floor busy for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent
from livekit.agents.voice import SpeechHandle

from .agent_phrases import function_tools, tool_rule
from .floor import Verdict, may_start
from .options import FillerOptions
from .settings import FillerSettings, ToolRule
from .speaker import FillerSpeaker
from .tracing import TraceContext

__all__ = ["ACK_WAIT", "BusyAcknowledger", "RunningCall", "busy_message_for"]

ACK_WAIT = 0.25
"""Seconds after the caller stops before the acknowledgement: time for their words'
transcript to arrive (LiveKit answers words itself), well within the 0.8 s target."""


@dataclass(frozen=True)
class RunningCall:
    """A tool call the session is running (any tool: decorated, configured or neither)."""

    tool_name: str
    tool_handle: SpeechHandle | None
    owner: Agent
    trace_context: TraceContext | None = None
    """The trace context the call started in (its ``function_tool`` span): the parent of
    the acknowledgement's span, as of a tool filler's."""


def busy_message_for(
    settings: FillerSettings, tool_name: str, decorator: ToolRule | None = None
) -> str | None:
    """The acknowledgement for ``tool_name``: its decorator's ``busy_message``, else its
    ``[tools.X]`` section's, else the global one; None when it is off (empty or blank)."""
    return FillerOptions.resolve(settings, tool_name, decorator).busy_message


Spawn = Callable[[Coroutine[Any, Any, Any], str], Any]
Settled = Callable[[SpeechHandle | None], None]
"""Called once a due acknowledgement was queued (its handle) or dropped (None)."""


def _unheard(handle: SpeechHandle | None) -> None:
    pass


class BusyAcknowledger:
    """Acknowledges, once per call, a caller who spoke during an uninterruptible tool."""

    def __init__(
        self,
        speaker: FillerSpeaker,
        settings: FillerSettings,
        *,
        current_agent: Callable[[], Agent | None],
        manual: set[SpeechHandle],
        spawn: Spawn,
    ) -> None:
        self._speaker = speaker
        self._settings = settings
        self._running: dict[str, RunningCall] = {}
        self._current_agent = current_agent
        self._manual = manual
        self._spawn = spawn
        self._heard_during: set[SpeechHandle] = set()
        self._words = False
        self.said = False
        """True once the acknowledgement was said in this call."""

    def tool_started(self, call_id: str, call: RunningCall) -> None:
        """The session started a tool call (its ``ToolCallStarted`` event)."""
        self._running[call_id] = call

    def tool_ended(self, call_id: str) -> None:
        """A tool call ended, or turned asynchronous (``ctx.update()``)."""
        self._running.pop(call_id, None)

    def any_running(self) -> bool:
        """True while a tool call of the session runs."""
        return bool(self._calls())

    def _calls(self) -> list[RunningCall]:
        for call_id, call in list(self._running.items()):
            if call.tool_handle is None or call.tool_handle.done():
                del self._running[call_id]  # its end was never announced
        return list(self._running.values())

    def heard(self, transcript: str) -> None:
        """A final transcript: words LiveKit will answer itself."""
        if transcript.strip():
            self._words = True

    def user_started_speaking(self) -> None:
        """The caller talks: remember the uninterruptible steps they talked over."""
        if self.said or not self._settings.enabled:
            return
        if not self._heard_during:
            self._words = False
        for call in self._calls():
            handle = call.tool_handle
            if handle is not None and not handle.allow_interruptions and not handle.done():
                self._heard_during.add(handle)

    def user_stopped_speaking(self, settled: Settled = _unheard) -> SpeechHandle | None:
        """The caller is quiet again: acknowledge them if their tool still runs.

        Returns:
            The tool step an acknowledgement is due for, ``ACK_WAIT`` from now (None: none):
            ``settled`` is called once it was queued (with its handle) or dropped (None).
        """
        talked_over, self._heard_during = self._heard_during, set()
        if self.said or not talked_over:
            return None
        for call in self._calls():
            handle = call.tool_handle
            if handle is None or handle not in talked_over or handle.done():
                continue
            decorator = next(
                (
                    tool_rule(t)
                    for t in function_tools(call.owner.tools)
                    if t.info.name == call.tool_name
                ),
                None,
            )
            message = busy_message_for(self._settings, call.tool_name, decorator)
            if message is None:
                continue
            self._spawn(self._acknowledge(message, call, settled), "livekit_filler.busy")
            return handle
        return None

    async def _acknowledge(self, message: str, call: RunningCall, settled: Settled) -> None:
        said: SpeechHandle | None = None
        try:
            await asyncio.sleep(ACK_WAIT)
            handle = call.tool_handle
            if self.said or self._heard_during or handle is None or handle.done():
                return  # said, the caller speaks again (asked again then), or the tool returned
            if self._words:
                self._skip("user_turn", call)
                return  # LiveKit answers their words
            said = self._say(message, call)
        finally:
            settled(said)

    def _say(self, message: str, call: RunningCall) -> SpeechHandle | None:
        agent = call.owner
        if self._current_agent() is not agent:
            self._skip(Verdict.HANDOFF.value, call)
            return None
        verdict = may_start(self._speaker.floor(agent))
        if verdict is not Verdict.SPEAK:
            self._skip(verdict.value, call)
            return None
        # the caller always cuts it: it answers them, it must never talk over them
        handle = self._speaker.say(
            message,
            agent=agent,
            allow_interruptions=True,
            tool=call.tool_name,
            parent=call.trace_context,
            kind="busy",
        )
        if handle is None:
            return None
        self.said = True
        self._manual.add(handle)
        self._spawn(self._follow(handle, agent, call.tool_name), "livekit_filler.busy")
        return handle

    def _skip(self, reason: str, call: RunningCall) -> None:
        self._speaker.skip(reason, tool=call.tool_name, parent=call.trace_context, kind="busy")

    async def _follow(self, handle: SpeechHandle, agent: Agent, tool: str) -> None:
        try:
            await self._speaker.follow(handle, agent=agent, allow_interruptions=True, tool=tool)
        finally:
            self._manual.discard(handle)
