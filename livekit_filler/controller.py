"""FillerController: owns all filler speech of one AgentSession."""

from __future__ import annotations

import asyncio
import contextvars
import json
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from livekit import rtc
from livekit.agents import NOT_GIVEN, Agent, AgentSession, AgentTask, llm, tts as lk_tts, utils
from livekit.agents.voice import SpeechHandle
from livekit.agents.voice.events import (
    AgentStateChangedEvent,
    CloseEvent,
    ConversationItemAddedEvent,
    SpeechCreatedEvent,
    ToolCallEnded,
    ToolCallStarted,
    ToolCallUpdated,
    ToolExecutionUpdatedEvent,
    UserInputTranscribedEvent,
    UserStateChangedEvent,
)

from ._livekit_private import current_activity, has_queued_speech
from .audio import FillerVoice, replay
from .contextual import ContextualFillers
from .log import logger
from .marks import is_filler_speech, mark_filler
from .metrics import FillerMetrics
from .options import FillerOptions, ToolFillerSpec, settings_texts
from .phrases import PhrasePicker
from .settings import FillerSettings
from .stream import FillerStream, follow_filler, holds_floor
from .tool_names import warn_unknown_tools

_controllers: weakref.WeakKeyDictionary[AgentSession[Any], FillerController] = (
    weakref.WeakKeyDictionary()
)
_detached: weakref.WeakSet[AgentSession[Any]] = weakref.WeakSet()
"""Sessions whose controller was closed with aclose(): decorated tools stay quiet there."""


@dataclass
class ToolCall:
    """A tool call the controller is filling; returned by ``begin_tool_call``."""

    call_id: str
    tool_name: str
    stream: FillerStream
    from_config: bool = False


FillerEventType = Literal["filler_played", "filler_cut", "filler_skipped", "session_summary"]


@dataclass(frozen=True)
class FillerEvent:
    """What a controller did: played, cut or skipped a filler, or its end-of-session summary."""

    type: FillerEventType
    tool: str | None = None
    reason: str | None = None
    speech_id: str | None = None
    summary: dict[str, object] | None = None


class FillerController(rtc.EventEmitter[FillerEventType]):
    """Plays filler speech for the slow tools of one :class:`AgentSession`.

    Fillers go through the session's own speech scheduler, stay out of the chat context
    and ``session.history``, never wait in front of real speech and never raise the
    "draining/pausing" or "circular wait" errors. Create one with :meth:`attach`.

    Events (``controller.on(name, callback)``, each with a :class:`FillerEvent`):
    ``filler_played``, ``filler_cut`` (reason: answer, real_speech, user_speech, handoff,
    session_closed...), ``filler_skipped`` (reason: not_safe, refused, tts_failed,
    no_phrase) and ``session_summary`` (the :class:`FillerMetrics` summary, at detach).

    Example:
        ```python
        session = AgentSession(llm=..., tts=..., vad=...)
        controller = FillerController.attach(session)
        await session.start(agent=MyAgent())
        ```
    """

    def __init__(self, session: AgentSession[Any], settings: FillerSettings) -> None:
        """Use :meth:`attach`; the constructor does not register the controller."""
        super().__init__()
        self._session = session
        self._settings = settings
        self._streams: dict[object, FillerStream] = {}
        self._calls: dict[str, ToolCall] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._picker = PhrasePicker()
        self._voice = FillerVoice(spawn=lambda coro, name: self._spawn(coro, name=name))
        self._language: str | None = None
        self._contextual: ContextualFillers | None = None
        self._manual: set[SpeechHandle] = set()
        self._speaking_filler = False
        self._agent_audible = False
        self._user_audible = False
        self._closed = False
        self.metrics = FillerMetrics()
        """Counters of what this controller played, cut and skipped, and why."""
        self._listeners: list[tuple[str, Callable[[Any], None]]] = [
            ("user_state_changed", self._on_user_state_changed),
            ("agent_state_changed", self._on_agent_state_changed),
            ("user_input_transcribed", self._on_user_input_transcribed),
            ("speech_created", self._on_speech_created),
            ("tool_execution_updated", self._on_tool_execution_updated),
            ("conversation_item_added", self._on_conversation_item_added),
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

        Call it from a running event loop, before or after ``session.start()``.

        Args:
            session: the session whose fillers this controller owns.
            settings: options for this session; None loads them from env and the config file.

        Raises:
            TypeError: ``session`` is not an ``AgentSession`` or ``settings`` not a ``FillerSettings``.
            ValueError: a controller is already attached with different settings.
            FillerConfigError: ``settings`` is None and the environment or file is invalid.
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
        controller = cls(session, settings if settings is not None else FillerSettings.load())
        _controllers[session] = controller
        _detached.discard(session)
        controller._start_prerender()
        logger.info("filler controller attached", extra={"enabled": controller._settings.enabled})
        return controller

    @classmethod
    def detached(cls, session: AgentSession[Any]) -> bool:
        """True when ``session``'s controller was closed with :meth:`aclose` (and not re-attached).

        A decorated tool in such a session plays no filler instead of attaching a new one.
        """
        return session in _detached

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
    def voice(self) -> FillerVoice:
        """Where filler audio comes from (the process-wide rendered-audio cache)."""
        return self._voice

    @property
    def closed(self) -> bool:
        """True once detached, by :meth:`aclose` or by the session closing."""
        return self._closed

    async def aclose(self) -> None:
        """Detach from the session: cut live fillers and wait for every task to end.

        Decorated tools of this session then play no filler, until ``attach`` is called again.
        """
        if not self._closed:
            _detached.add(self._session)
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
        for task in list(self._tasks):
            task.cancel()
        if _controllers.get(self._session) is self:
            del _controllers[self._session]
        self.metrics.log_summary()
        self.emit("session_summary", FillerEvent("session_summary", summary=self.metrics.summary()))
        logger.info("filler controller detached", extra={"reason": reason})

    def _start_prerender(self) -> None:
        tts = self._session.tts
        if not self._settings.prerender or not self._settings.enabled or tts is None:
            return
        if self._settings.cache_dir is not None:
            self._voice.cache.persist_to(self._settings.cache_dir)
        self._spawn(
            self._voice.prerender(tts, settings_texts(self._settings)),
            name="livekit_filler.prerender",
        )

    async def prerender(self, *texts: str) -> int:
        """Render ``texts`` (default: every fixed phrase of the settings) with the session's TTS.

        Returns:
            How many texts were rendered now (already cached ones are skipped).
        """
        tts = self._session.tts
        if tts is None:
            return 0
        return await self._voice.prerender(tts, texts or settings_texts(self._settings))

    def seed_phrases(self, seed: int | str) -> None:
        """Make phrase choices repeatable (tests, demos, replaying a fuzz seed)."""
        self._picker = PhrasePicker(seed=seed)

    def use_contextual(self, contextual: ContextualFillers | None) -> None:
        """Let a fast LLM phrase each call's first filler (None turns it off).

        The phrase is used only when its text and audio are ready by the time the filler is
        due; otherwise the canned phrase plays, so it never delays a filler.
        """
        if contextual is not None and not isinstance(contextual, ContextualFillers):
            raise TypeError(f"expected ContextualFillers, got {type(contextual).__name__}")
        self._contextual = contextual

    async def _write_contextual(self, stream: FillerStream, contextual: ContextualFillers) -> None:
        text = await contextual.write(stream.tool_name, stream.arguments)
        tts = _tts_of(stream.owner, self._session)
        if text is None or tts is None or stream.ended:
            return
        if await self._voice.prerender(tts, [text]) or self._voice.is_ready(tts, text):
            stream.contextual_text = text

    # -- public helpers ----------------------------------------------------------------------

    def is_filler(self, handle: SpeechHandle) -> bool:
        """True when ``handle`` is a filler spoken by livekit-filler."""
        return is_filler_speech(handle)

    def say_filler(
        self, text: str | None = None, *, for_agent: Agent | None = None
    ) -> SpeechHandle | None:
        """Speak one filler now, if this is a safe moment; never raises scheduling errors.

        Safe means: the controller is open; the session's current activity is running (not
        pausing or draining for an AgentTask or a hand-off); nothing is speaking or queued;
        the user is quiet; and the agent holding the floor is ``for_agent`` or, when that is
        None, not an AgentTask (a filler must not talk into a sub-agent's conversation). The
        filler stays out of the chat history, and is cut like any other filler when real
        speech, the user or a hand-off comes.

        Args:
            text: what to say; None picks a phrase from the settings.
            for_agent: the agent the filler speaks for; pass ``self`` from an AgentTask's own
                tools, where the task holds the floor.

        Returns:
            The filler's speech handle, or None when it is not a safe moment.
        """
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ValueError(f"say_filler(): text must be a non-empty string, got {text!r}")
        if for_agent is not None and not isinstance(for_agent, Agent):
            raise TypeError(f"for_agent must be an Agent, got {type(for_agent).__name__}")
        agent = self._safe_agent(require_silence=True)
        if (
            agent is None
            or (for_agent is not None and agent is not for_agent)
            or (for_agent is None and isinstance(agent, AgentTask))
        ):
            self._skip("not_safe")
            return None
        options = FillerOptions.resolve(self._settings, "")
        phrase = text or self._picker.pick(options.pool_for(self._language), index=0, values={})
        if phrase is None:
            return None
        handle = self._say(phrase, agent=agent, allow_interruptions=options.allow_interruptions)
        if handle is not None:
            self._manual.add(handle)
            self._spawn(self._follow_manual(handle, agent), name="livekit_filler.say_filler")
        return handle

    async def _follow_manual(self, handle: SpeechHandle, agent: Agent) -> None:
        try:
            await follow_filler(
                handle,
                in_charge=lambda: holds_floor(self._session, agent),
                on_lost=lambda: self._cut_manual(handle, "handoff"),
            )
        finally:
            self._manual.discard(handle)

    def _cut_manual(self, handle: SpeechHandle, reason: str) -> None:
        if not handle.done() and not handle.interrupted:
            handle.interrupt(force=True)
            self._record_cut(reason, tool=None, speech_id=handle.id)

    def _safe_agent(self, *, require_silence: bool) -> Agent | None:
        """The agent ``say()`` would speak for, if a filler is safe right now; else None."""
        if self._closed:
            return None
        session = self._session
        activity = current_activity(session)
        # an unpaused activity that belongs to the current agent is the one say() targets;
        # the agent check also rules out the first instants of a hand-off (internals §6.1)
        if activity is None or activity.scheduling_paused or session.user_state == "speaking":
            return None
        try:
            agent = session.current_agent
        except RuntimeError:
            return None
        if activity.agent is not agent:
            return None
        if require_silence:
            speech = session.current_speech
            if (speech is not None and not speech.done()) or has_queued_speech(activity):
                return None
        return agent

    # -- tool calls (used by the decorator and the config-driven tool following) -------------

    def begin_tool_call(
        self,
        *,
        call_id: str,
        tool_name: str,
        tool_handle: SpeechHandle | None,
        spec: ToolFillerSpec | None = None,
        arguments: Mapping[str, object] | None = None,
        from_config: bool = False,
    ) -> ToolCall | None:
        """Start filling a tool call; returns a token for :meth:`end_tool_call`, or None.

        Args:
            call_id: the LLM's id for this call.
            tool_name: the tool's name, which selects its config rule.
            tool_handle: the speech handle of the step that called the tool; parallel calls
                of one step share it and so share one filler stream.
            spec: the decorator's options, if any; they beat the config rule.
            arguments: the call's arguments, for phrase templates such as ``{club}``.
            from_config: the call was found through the session's tool events (no decorator).
        """
        if self._closed or not self._settings.enabled:
            return None
        existing = self._calls.get(call_id)
        if existing is not None:
            if existing.from_config and not from_config:
                # the decorator learns of a call after the config rule did: its options win
                existing.from_config = False
                existing.stream.replace_options(
                    FillerOptions.resolve(self._settings, tool_name, spec)
                )
                return existing
            return None
        rule = self._settings.tools.get(tool_name)
        if rule is not None and not rule.enabled:
            return None
        options = FillerOptions.resolve(self._settings, tool_name, spec)
        if options.max_count == 0 and not (options.start_message or options.failure_message):
            return None
        try:
            owner = self._session.current_agent
        except RuntimeError:
            return None
        key: object = tool_handle if tool_handle is not None else call_id
        stream = self._streams.get(key)
        if stream is None or stream.ended:
            stream = FillerStream(
                self,
                session=self._session,
                owner=owner,
                options=options,
                tool_handle=tool_handle,
                tool_name=tool_name,
                arguments=dict(arguments or {}),
            )
            self._streams[key] = stream
            stream.task = self._spawn(stream.run(), name=f"livekit_filler.stream.{tool_name}")
            contextual = self._contextual
            if contextual is not None and options.clip is None and not (spec and spec.phrases):
                # the tool's own words (decorator phrases) and clips are never rewritten
                stream.side_tasks.add(
                    self._spawn(
                        self._write_contextual(stream, contextual), name="livekit_filler.contextual"
                    )
                )
        else:
            stream.merge_options(options)
        call = ToolCall(
            call_id=call_id, tool_name=tool_name, stream=stream, from_config=from_config
        )
        stream.calls.add(call_id)
        self._calls[call_id] = call
        self.metrics.tool_started()
        logger.debug("tool call filling", extra={"tool": tool_name, "call_id": call_id})
        return call

    def end_tool_call(self, call: ToolCall, *, reason: str = "answer") -> None:
        """The call returned (``"answer"``), raised (``"error"``) or was cancelled.

        The answer must not wait for a filler: a queued one is dropped, a playing one cut
        (unless ``on_answer="finish"``). A failing call speaks its ``failure_message``.
        """
        if self._calls.pop(call.call_id, None) is None:
            return
        stream = call.stream
        stream.calls.discard(call.call_id)
        if not stream.calls:
            for key, value in list(self._streams.items()):
                if value is stream:
                    del self._streams[key]
            stream.end(reason=reason)
            self.metrics.tool_ended(stream)
        if reason == "error" and stream.options.failure_message:
            agent = self._safe_agent(require_silence=False)
            if agent is stream.owner:
                self._say(
                    stream.options.failure_message,
                    agent=agent,
                    allow_interruptions=stream.options.allow_interruptions,
                )

    # -- internals used by FillerStream ------------------------------------------------------

    def _play_filler(
        self, stream: FillerStream, *, start_message: bool = False
    ) -> SpeechHandle | None:
        options = stream.options
        if start_message and options.start_message:
            text: str | None = options.start_message
        elif stream.clip is not None:
            return self._say(
                "",
                agent=stream.owner,
                allow_interruptions=options.allow_interruptions,
                audio=replay(stream.clip),
            )
        elif stream.count == 0 and stream.contextual_text is not None:
            text = stream.contextual_text
        else:
            text = self._picker.pick(
                options.pool_for(self._language), index=stream.count, values=stream.arguments
            )
        if text is None:
            self._skip("no_phrase")
            return None
        return self._say(text, agent=stream.owner, allow_interruptions=options.allow_interruptions)

    def _say(
        self,
        text: str,
        *,
        agent: Agent,
        allow_interruptions: bool,
        audio: AsyncIterator[rtc.AudioFrame] | None = None,
    ) -> SpeechHandle | None:
        tts = _tts_of(agent, self._session)
        if audio is None and tts is not None:
            audio = self._voice.audio_for(tts, text)
            if audio is None:
                self._skip("tts_failed")
                return None
        if audio is not None:
            audio = self._gated(audio, agent)
        self._speaking_filler = True
        try:
            handle = self._session.say(
                text,
                audio=audio if audio is not None else NOT_GIVEN,
                allow_interruptions=allow_interruptions,
                add_to_chat_ctx=False,
            )
        except RuntimeError:
            # a closing session or a transition window: skipping a filler is always safe
            logger.debug("filler skipped: the session refused new speech", exc_info=True)
            self._skip("refused")
            return None
        finally:
            self._speaking_filler = False
        mark_filler(handle)
        self.metrics.played()
        self.emit("filler_played", FillerEvent("filler_played", speech_id=handle.id))
        logger.debug("filler scheduled", extra={"speech_id": handle.id})
        return handle

    async def _gated(
        self, audio: AsyncIterator[rtc.AudioFrame], agent: Agent
    ) -> AsyncIterator[rtc.AudioFrame]:
        """Feed a filler's audio only while its agent holds the floor and the user is quiet.

        A filler scheduled an instant before an AgentTask or hand-off begins would otherwise
        start sounding a few ms into the transition, before the hand-off check cuts it.
        """
        try:
            async for frame in audio:
                if (
                    self._closed
                    or self._session.user_state == "speaking"
                    or not holds_floor(self._session, agent)
                ):
                    return
                yield frame
        finally:
            close = getattr(audio, "aclose", None)
            if close is not None:
                await close()

    def _skip(self, reason: str) -> None:
        self.metrics.skip(reason)
        self.emit("filler_skipped", FillerEvent("filler_skipped", reason=reason))

    def _record_cut(self, reason: str, *, tool: str | None, speech_id: str | None) -> None:
        self.metrics.cut(reason)
        self.emit(
            "filler_cut", FillerEvent("filler_cut", tool=tool, reason=reason, speech_id=speech_id)
        )
        logger.debug("filler cut", extra={"tool": tool, "reason": reason})

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        # A fresh context: filler tasks must not inherit the tool task's LiveKit context
        # variables (speech handle, idle hold), which belong to the tool, not to fillers.
        task: asyncio.Task[Any] = contextvars.Context().run(asyncio.create_task, coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- session events (synchronous, must never raise) --------------------------------------

    def _on_agent_state_changed(self, ev: AgentStateChangedEvent) -> None:
        self._agent_audible = ev.new_state == "speaking"
        self.metrics.audible(self._agent_audible or self._user_audible)
        speech = self._session.current_speech
        if self._agent_audible and speech is not None and is_filler_speech(speech):
            for stream in self._streams.values():
                if stream.current is speech and stream.first_audio_at is None:
                    stream.first_audio_at = asyncio.get_running_loop().time()

    def _on_user_state_changed(self, ev: UserStateChangedEvent) -> None:
        self._user_audible = ev.new_state == "speaking"
        self.metrics.audible(self._agent_audible or self._user_audible)
        if ev.new_state == "speaking":
            for handle in list(self._manual):
                self._cut_manual(handle, "user_speech")
        for stream in list(self._streams.values()):
            if ev.new_state == "speaking":
                stream.user_started_speaking()
            elif ev.old_state == "speaking":
                stream.user_stopped_speaking()

    def _on_user_input_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        if ev.is_final and ev.language:
            self._language = str(ev.language)

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        if self._speaking_filler or is_filler_speech(ev.speech_handle):
            return
        for stream in list(self._streams.values()):
            stream.yield_to_speech()
        for handle in list(self._manual):
            self._cut_manual(handle, "real_speech")

    def _on_tool_execution_updated(self, ev: ToolExecutionUpdatedEvent) -> None:
        update = ev.update
        if isinstance(update, ToolCallStarted):
            call = update.function_call
            if call.name in self._settings.tools:
                # a configured tool: fill it with no decorator, like a hosted platform would
                self.begin_tool_call(
                    call_id=call.call_id,
                    tool_name=call.name,
                    tool_handle=self._session.current_speech,
                    arguments=_arguments(call),
                    from_config=True,
                )
        elif isinstance(update, ToolCallUpdated):
            if (tracked := self._calls.get(update.call_id)) is not None:
                # ctx.update() turned the tool asynchronous: the LLM speaks now, fillers stop
                self.end_tool_call(tracked, reason="progress_update")
        elif isinstance(update, ToolCallEnded):
            if (tracked := self._calls.get(update.call_id)) is not None:
                self.end_tool_call(
                    tracked, reason="error" if update.status == "error" else "answer"
                )

    def _on_conversation_item_added(self, ev: ConversationItemAddedEvent) -> None:
        if isinstance(ev.item, llm.AgentHandoff) and ev.item.old_agent_id is None:
            warn_unknown_tools(self._settings)

    def _on_close(self, ev: CloseEvent) -> None:
        self._shutdown(reason="session_closed")


def _tts_of(agent: Agent, session: AgentSession[Any]) -> lk_tts.TTS[Any] | None:
    own = agent.tts
    return own if utils.is_given(own) else session.tts


def _arguments(call: llm.FunctionCall) -> dict[str, object]:
    try:
        values = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}
