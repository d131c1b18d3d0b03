"""FillerController: owns all filler speech of one AgentSession."""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.events import (
    CloseEvent,
    SpeechCreatedEvent,
    ToolCallUpdated,
    ToolExecutionUpdatedEvent,
    UserStateChangedEvent,
)

from ._livekit_private import current_activity
from .log import logger
from .marks import is_filler_speech, mark_filler
from .options import FillerOptions, ToolFillerSpec
from .phrases import PhrasePicker
from .settings import FillerSettings
from .stream import FillerStream

_controllers: weakref.WeakKeyDictionary[AgentSession[Any], FillerController] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class ToolCall:
    """A tool call the controller is filling; returned by ``begin_tool_call``."""

    call_id: str
    tool_name: str
    stream_key: object


class FillerController:
    """Plays filler speech for the slow tools of one :class:`AgentSession`.

    Fillers go through the session's own speech scheduler, stay out of the chat context
    and ``session.history``, never wait in front of real speech and never raise the
    "draining/pausing" or "circular wait" errors. Create one with :meth:`attach`.

    Example:
        ```python
        session = AgentSession(llm=..., tts=..., vad=...)
        controller = FillerController.attach(session)
        await session.start(agent=MyAgent())
        ```
    """

    def __init__(self, session: AgentSession[Any], settings: FillerSettings) -> None:
        """Use :meth:`attach`; the constructor does not register the controller."""
        self._session = session
        self._settings = settings
        self._streams: dict[object, FillerStream] = {}
        self._calls: dict[str, ToolCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._picker = PhrasePicker()
        self._speaking_filler = False
        self._closed = False
        self._listeners: list[tuple[str, Callable[[Any], None]]] = [
            ("user_state_changed", self._on_user_state_changed),
            ("speech_created", self._on_speech_created),
            ("tool_execution_updated", self._on_tool_execution_updated),
            ("close", self._on_close),
        ]
        for event, listener in self._listeners:
            session.on(event, listener)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def attach(
        cls, session: AgentSession[Any], *, settings: FillerSettings | None = None
    ) -> FillerController:
        """Return the session's controller, creating it on first use.

        Args:
            session: the session whose fillers this controller owns.
            settings: options for this session; None loads them from env and the config file.

        Raises:
            TypeError: ``session`` is not an ``AgentSession`` or ``settings`` not a ``FillerSettings``.
            ValueError: a controller is already attached with different settings.
        """
        if not isinstance(session, AgentSession):
            raise TypeError(
                f"FillerController.attach() needs an AgentSession, got {type(session).__name__}"
            )
        if settings is not None and not isinstance(settings, FillerSettings):
            raise TypeError(f"settings must be a FillerSettings, got {type(settings).__name__}")
        existing = _controllers.get(session)
        if existing is not None and not existing._closed:
            if settings is not None and settings != existing._settings:
                raise ValueError(
                    "a FillerController is already attached to this session with other "
                    "settings; pass settings on the first attach only"
                )
            return existing
        controller = cls(session, settings if settings is not None else _default_settings())
        _controllers[session] = controller
        logger.info("filler controller attached", extra={"enabled": controller._settings.enabled})
        return controller

    @classmethod
    def of(cls, session: AgentSession[Any]) -> FillerController | None:
        """Return the controller attached to ``session``, or None."""
        controller = _controllers.get(session)
        return controller if controller is not None and not controller._closed else None

    @property
    def session(self) -> AgentSession[Any]:
        """The session this controller belongs to."""
        return self._session

    @property
    def settings(self) -> FillerSettings:
        """The settings this controller was attached with."""
        return self._settings

    @property
    def closed(self) -> bool:
        """True once detached, by :meth:`aclose` or by the session closing."""
        return self._closed

    async def aclose(self) -> None:
        """Detach from the session: cut live fillers and wait for every task to end."""
        self._shutdown(reason="detach")
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _shutdown(self, *, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        # detach handlers first: a late event must not start work on a closing controller
        for event, listener in self._listeners:
            self._session.off(event, listener)  # type: ignore[arg-type]
        for stream in list(self._streams.values()):
            stream.end(reason=reason)
        self._streams.clear()
        self._calls.clear()
        if _controllers.get(self._session) is self:
            del _controllers[self._session]
        logger.info("filler controller detached", extra={"reason": reason})

    # -- public helpers ----------------------------------------------------------------------

    def is_filler(self, handle: SpeechHandle) -> bool:
        """True when ``handle`` is a filler spoken by livekit-filler."""
        return is_filler_speech(handle)

    def say_filler(self, text: str | None = None) -> SpeechHandle | None:
        """Speak one filler now, if this is a safe moment; never raises scheduling errors.

        Safe means: the controller is open, the session's current activity is running (not
        pausing or draining for an AgentTask or a hand-off), nothing is speaking or queued
        and the user is quiet. The filler stays out of the chat history.

        Args:
            text: what to say; None picks a phrase from the settings.

        Returns:
            The filler's speech handle, or None when it is not a safe moment.
        """
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError(f"say_filler(): text must be a non-empty string, got {text!r}")
        if self._closed:
            return None
        session = self._session
        activity = current_activity(session)
        # An unpaused activity that belongs to the current agent is the one say() targets;
        # the agent check also rules out the first instants of a hand-off (internals §6.1).
        if (
            activity is None
            or activity.scheduling_paused
            or not _has_agent(session)
            or activity.agent is not session.current_agent
            or session.current_speech is not None
            or session.user_state == "speaking"
        ):
            return None
        phrase = text or self._picker.pick(
            self._settings.phrases, self._settings.followup_phrases, index=0
        )
        return self._say(phrase, allow_interruptions=self._settings.allow_interruptions)

    # -- tool calls (used by the decorator and the config-driven tool following) -------------

    def begin_tool_call(
        self,
        *,
        call_id: str,
        tool_name: str,
        tool_handle: SpeechHandle | None,
        spec: ToolFillerSpec | None = None,
    ) -> ToolCall | None:
        """Start filling a tool call; returns a token for :meth:`end_tool_call`, or None."""
        if self._closed or not self._settings.enabled or call_id in self._calls:
            return None
        rule = self._settings.tools.get(tool_name)
        if rule is not None and not rule.enabled:
            return None
        options = FillerOptions.resolve(self._settings, tool_name, spec)
        if options.max_count == 0:
            return None
        key: object = tool_handle if tool_handle is not None else call_id
        stream = self._streams.get(key)
        if stream is None or stream.ended:
            stream = FillerStream(
                self,
                session=self._session,
                owner=self._session.current_agent,
                options=options,
                tool_handle=tool_handle,
                tool_name=tool_name,
            )
            self._streams[key] = stream
            stream.task = self._spawn(stream.run(), name=f"livekit_filler.stream.{tool_name}")
        else:
            stream.merge_options(options)
        stream.calls.add(call_id)
        call = ToolCall(call_id=call_id, tool_name=tool_name, stream_key=key)
        self._calls[call_id] = call
        logger.debug("tool call filling", extra={"tool": tool_name, "call_id": call_id})
        return call

    def end_tool_call(self, call: ToolCall, *, reason: str = "answer") -> None:
        """The call returned, raised or was cancelled: the answer must not wait for a filler."""
        if self._calls.pop(call.call_id, None) is None:
            return
        stream = self._streams.get(call.stream_key)
        if stream is None:
            return
        stream.calls.discard(call.call_id)
        if not stream.calls:
            del self._streams[call.stream_key]
            stream.end(reason=reason)

    # -- internals used by FillerStream ------------------------------------------------------

    def _play_filler(self, stream: FillerStream) -> SpeechHandle | None:
        options = stream.options
        phrase = self._picker.pick(options.phrases, options.followup_phrases, index=stream.count)
        return self._say(phrase, allow_interruptions=options.allow_interruptions)

    def _say(self, text: str, *, allow_interruptions: bool) -> SpeechHandle | None:
        self._speaking_filler = True
        try:
            handle = self._session.say(
                text, allow_interruptions=allow_interruptions, add_to_chat_ctx=False
            )
        except RuntimeError:
            # a closing session or a transition window: skipping a filler is always safe
            logger.debug("filler skipped: the session refused new speech", exc_info=True)
            return None
        finally:
            self._speaking_filler = False
        mark_filler(handle)
        logger.debug("filler scheduled", extra={"speech_id": handle.id})
        return handle

    def _record_cut(self, stream: FillerStream, reason: str) -> None:
        logger.debug("filler cut", extra={"tool": stream.tool_name, "reason": reason})

    def _spawn(self, coro: Any, *, name: str) -> asyncio.Task[None]:
        # A fresh context: the stream must not inherit the tool task's LiveKit context
        # variables (speech handle, idle hold), which belong to the tool, not to fillers.
        task: asyncio.Task[None] = contextvars.Context().run(asyncio.create_task, coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- session events (synchronous, must never raise) --------------------------------------

    def _on_user_state_changed(self, ev: UserStateChangedEvent) -> None:
        for stream in list(self._streams.values()):
            if ev.new_state == "speaking":
                stream.user_started_speaking()
            elif ev.old_state == "speaking":
                stream.user_stopped_speaking()

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        if self._speaking_filler or is_filler_speech(ev.speech_handle):
            return
        for stream in list(self._streams.values()):
            stream.yield_to_speech()

    def _on_tool_execution_updated(self, ev: ToolExecutionUpdatedEvent) -> None:
        update = ev.update
        if isinstance(update, ToolCallUpdated) and (call := self._calls.get(update.call_id)):
            # ctx.update() turned the tool asynchronous: the LLM speaks now, fillers stop
            self.end_tool_call(call, reason="progress_update")

    def _on_close(self, ev: CloseEvent) -> None:
        self._shutdown(reason="session_closed")


def _has_agent(session: AgentSession[Any]) -> bool:
    try:
        session.current_agent  # noqa: B018
    except RuntimeError:
        return False
    return True


def _default_settings() -> FillerSettings:
    load = getattr(FillerSettings, "load", None)
    return load() if callable(load) else FillerSettings()
