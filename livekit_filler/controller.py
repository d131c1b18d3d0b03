"""FillerController: owns all filler speech of one AgentSession."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import weakref
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, llm, tts as lk_tts
from livekit.agents.voice import (
    AgentStateChangedEvent,
    CloseEvent,
    ConversationItemAddedEvent,
    ErrorEvent,
    FunctionToolsExecutedEvent,
    SpeechCreatedEvent,
    SpeechHandle,
    ToolCallEnded,
    ToolCallStarted,
    ToolCallUpdated,
    ToolExecutionUpdatedEvent,
    UserInputTranscribedEvent,
    UserStateChangedEvent,
)

from ._livekit_private import session_closing
from .agent_phrases import phrases_for, tools_of
from .busy import BusyAcknowledger, RunningCall
from .contextual import ContextualFillers
from .disk_store import DiskStore, default_cache_dir
from .disk_writer import FLUSH_TIMEOUT, flush
from .errors import FillerConfigError
from .events import FillerEvent, FillerEventType
from .filler_voice import FillerVoice
from .floor import Verdict, may_prerender, may_start
from .latency import LatencyModel, shared_model
from .log import logger
from .marks import is_filler_speech
from .metrics import FillerMetrics
from .options import FillerOptions, settings_texts
from .phrases import PhrasePicker
from .reply_timer import ReplyTimer
from .session_tts import needs_audio, tts_of
from .settings import FillerSettings, ToolRule
from .slow_answer import SlowAnswer
from .sound_cache import SoundLease, shared_cache
from .speaker import FillerSpeaker
from .stream import FillerStream, StreamCall
from .tool_names import warn_unknown_tools
from .tracing import FillerSpans, current_context
from .tts_identity import name_voice, sound_key

_controllers: weakref.WeakKeyDictionary[AgentSession[Any], FillerController] = (
    weakref.WeakKeyDictionary()
)
_detached: weakref.WeakSet[AgentSession[Any]] = weakref.WeakSet()
_closing_voices: set[asyncio.Task[None]] = set()
"""Filler voices built from settings, closing after their controller detached."""
"""Sessions whose controller was closed with aclose(): decorated tools stay quiet there."""


@dataclass
class _Call:
    """A tool call the controller is filling (the decorator's token)."""

    stream: FillerStream
    call: StreamCall
    from_config: bool = False


class FillerController(rtc.EventEmitter[FillerEventType]):
    """Plays filler speech for the slow tools of one :class:`AgentSession`.

    Fillers go through the session's own speech scheduler, stay out of the chat context
    and ``session.history``, never wait in front of real speech and never raise the
    "draining/pausing" or "circular wait" errors. Create one with :meth:`attach`.

    Events (``controller.on(name, callback)``, each with a :class:`FillerEvent`):
    ``filler_played`` (its first audio went out), ``filler_cut`` (reason: answer,
    real_speech, user_speech, handoff, session_closed...), ``filler_skipped`` (once per due
    filler and reason; reason: a :class:`~livekit_filler.Verdict` value such as busy or
    handoff, or refused, tts_failed, tts_down, no_phrase, no_voice),
    ``filler_rendered`` (a render's TTS request id and characters: LiveKit reports its
    ``TTSMetrics`` as the session TTS's usage, with no speech id) and ``session_summary``
    (the :class:`FillerMetrics` summary, at detach).

    Example:
        ```python
        session = AgentSession(llm=..., tts=..., vad=...)
        controller = FillerController.attach(session)
        await session.start(agent=MyAgent())
        ```
    """

    def __init__(
        self,
        session: AgentSession[Any],
        settings: FillerSettings,
        tts: lk_tts.TTS[Any] | None = None,
        *,
        owns_tts: bool = False,
    ) -> None:
        """Use :meth:`attach`; the constructor does not register the controller."""
        super().__init__()
        self._session = session
        self._settings = settings
        self._owns_tts = owns_tts
        self._warned_no_voice = False
        self._voice_id: str | None = None
        self._said_no_audio = False
        self._streams: dict[object, FillerStream] = {}
        self._calls: dict[str, _Call] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._picker = PhrasePicker()
        self._language: str | None = None
        self._contextual: ContextualFillers | None = None
        self._manual: set[SpeechHandle] = set()
        self._agent_audible = False
        self._user_audible = False
        self._closed = False
        self._prerender_queue: collections.deque[tuple[lk_tts.TTS[Any], str]] = collections.deque()
        self._prerender_task: asyncio.Task[None] | None = None
        self._pinned: list[str] = []
        """Sound keys of the active agent's phrases, kept in memory while it holds the floor."""
        self.metrics = FillerMetrics()
        """Counters of what this controller played, cut and skipped, and why."""
        self._latency = latency_model(settings)
        self._speaker = FillerSpeaker(
            session,
            voice=FillerVoice(
                spawn=lambda coro, name: self._spawn(coro, name=name),
                conn_options=session.conn_options.tts_conn_options,
                on_rendered=self._on_rendered,
            ),
            metrics=self.metrics,
            emit=lambda event: self.emit(event.type, event),
            is_open=self._open,
            spans=FillerSpans(include_text=settings.trace_text),
            filler_tts=tts,
        )
        self._speaker.finish_within = settings.finish_within
        self._speaker.answer_lead = self._latency.answer_lead
        self._replies = ReplyTimer(self._latency)
        spawn = lambda coro, name: self._spawn(coro, name=name)  # noqa: E731
        self._slow_answer = SlowAnswer(
            session,
            self._speaker,
            settings,
            picker=lambda: self._picker,
            language=lambda: self._language,
            spawn=spawn,
            manual=self._manual,
            tools_running=lambda: self._busy.any_running(),
        )
        self._busy = BusyAcknowledger(
            self._speaker,
            settings,
            current_agent=self._current_agent,
            manual=self._manual,
            spawn=spawn,
        )
        self._listeners: list[tuple[str, Callable[[Any], None]]] = [
            ("user_state_changed", self._on_user_state_changed),
            ("agent_state_changed", self._on_agent_state_changed),
            ("user_input_transcribed", self._on_user_input_transcribed),
            ("speech_created", self._on_speech_created),
            ("function_tools_executed", self._on_function_tools_executed),
            ("tool_execution_updated", self._on_tool_execution_updated),
            ("conversation_item_added", self._on_conversation_item_added),
            ("error", self._on_error),
            ("close", self._on_close),
        ]
        for event, listener in self._listeners:
            session.on(event, listener)  # type: ignore[arg-type]

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        session: AgentSession[Any],
        *,
        settings: FillerSettings | None = None,
        tts: lk_tts.TTS[Any] | None = None,
        voice_id: str | None = None,
    ) -> FillerController:
        """Return the session's controller, creating it on first use.

        Call it from a running event loop, before or after ``session.start()``.

        Args:
            session: the session whose fillers this controller owns.
            settings: options for this session; None loads them from env and the config file.
            tts: the filler voice: renders fillers when neither the agent nor the session has
                a TTS (a speech-to-speech model's session); pick the realtime model's voice.
                None uses the ``voice`` setting, if any.
            voice_id: names the sound of the session's TTS (else of the filler voice) in
                the filler audio cache key; None uses the ``voice_id`` setting. Needed for
                a TTS whose options cannot be read (:func:`livekit_filler.voice_key` returns
                None), whose fillers are otherwise kept in memory for that TTS object only.

        Raises:
            TypeError: ``session`` is not an ``AgentSession``, ``settings`` not a
                ``FillerSettings``, ``tts`` not a LiveKit TTS or ``voice_id`` not a str.
            ValueError: a controller is already attached with different settings, voice
                or ``voice_id``.
            FillerConfigError: ``settings`` is None and the environment or file is invalid,
                the ``voice`` setting cannot be built, or ``voice_id`` is blank or too long.
        """
        if not isinstance(session, AgentSession):
            raise TypeError(
                f"FillerController.attach() needs an AgentSession, got {type(session).__name__}"
            )
        if settings is not None and not isinstance(settings, FillerSettings):
            raise TypeError(f"settings must be a FillerSettings, got {type(settings).__name__}")
        if tts is not None and not isinstance(tts, lk_tts.TTS):
            raise TypeError(f"tts must be a LiveKit TTS, got {type(tts).__name__}")
        if voice_id is not None:
            voice_id = _checked_voice_id(voice_id)
        existing = _controllers.get(session)
        if existing is not None and not existing._closed:
            if settings is not None and settings != existing._settings:
                raise ValueError(
                    "a FillerController is already attached to this session with other "
                    "settings; pass settings on the first attach only"
                )
            if tts is not None and tts is not existing.filler_tts:
                raise ValueError(
                    "a FillerController is already attached to this session with another "
                    "filler voice; pass tts on the first attach only"
                )
            if voice_id is not None and voice_id != existing._voice_id:
                raise ValueError(
                    "a FillerController is already attached to this session with another "
                    "voice_id; pass voice_id on the first attach only"
                )
            return existing
        settings = settings if settings is not None else FillerSettings.load()
        open_disk_cache(settings, wait=False)  # listed in the background: no I/O on the loop
        _flush_at_job_end()
        owns_tts = tts is None and settings.voice is not None
        if settings.voice is not None and tts is None:
            tts = settings.voice.build()
        controller = cls(session, settings, tts, owns_tts=owns_tts)
        controller._voice_id = voice_id if voice_id is not None else settings.voice_id
        named = session.tts if session.tts is not None else tts
        if controller._voice_id is not None and named is not None:
            name_voice(named, controller._voice_id)
        _controllers[session] = controller
        _detached.discard(session)
        controller._start_prerender()
        logger.info("filler controller attached", extra={"enabled": controller._settings.enabled})
        return controller

    @classmethod
    def _for_tool(cls, session: object) -> FillerController | None:
        """The controller a decorated tool's call uses; attaches a default one on first use.

        None when ``session`` is not an AgentSession (a mock, a custom runner), when its
        controller was closed with :meth:`aclose`, or when the configuration is invalid
        (logged once): the tool must still run.
        """
        if not isinstance(session, AgentSession):
            return None
        controller = cls.of(session)
        if controller is not None or session in _detached:
            return controller
        try:
            controller = cls.attach(session)
        except FillerConfigError as e:
            # Attach explicitly at start-up to fail early; here, mid-call, the tool must run.
            if str(e) not in _config_errors_logged:
                _config_errors_logged.add(str(e))
                logger.error("fillers disabled: invalid configuration", extra={"error": str(e)})
            return None
        logger.info(
            "filler controller attached by the first decorated call: nothing was pre-rendered"
            " before it; call FillerController.attach(session) in the entrypoint to render the"
            " agent's phrases before the first call"
        )
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
    def voice(self) -> FillerVoice:
        """Where filler audio comes from (the process-wide rendered-audio cache)."""
        return self._speaker.voice

    @property
    def filler_tts(self) -> lk_tts.TTS[Any] | None:
        """The filler voice: renders fillers when neither agent nor session has a TTS."""
        return self._speaker.filler_tts

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
        # what this session learned and rendered reaches the disk (bounded; off the loop)
        await asyncio.to_thread(flush, FLUSH_TIMEOUT)

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
        self._slow_answer.close()
        self._pin([])
        self._latency.save_soon(delay=0)  # the history is written now, in the background
        if _controllers.get(self._session) is self:
            del _controllers[self._session]
        owned = self._speaker.filler_tts if self._owns_tts else None
        if owned is not None:  # built from the voice setting: its connections are ours
            _closing_voices.add(task := asyncio.get_running_loop().create_task(owned.aclose()))
            task.add_done_callback(_closing_voices.discard)
        self.metrics.log_summary()
        self.emit("session_summary", FillerEvent("session_summary", summary=self.metrics.summary()))
        logger.info("filler controller detached", extra={"reason": reason})

    def _open(self) -> bool:
        """True while fillers may be scheduled: attached, and the session is not closing."""
        return not self._closed and not session_closing(self._session)

    def _render_tts(self) -> lk_tts.TTS[Any] | None:
        """The TTS phrases are pre-rendered with: the session's, else the filler voice."""
        tts = self._session.tts
        return tts if tts is not None else self._speaker.filler_tts

    @classmethod
    def prewarm(cls, settings: FillerSettings | None = None) -> int:
        """Open the disk cache of filler audio for this process: a worker's prewarm step.

        LiveKit runs each call in a fresh process taken from a pool of idle ones that ran
        the server's ``setup_fnc``; call this there, so a call starts with the cache listed
        (sounds are read on first use). ``attach`` does it too when it was not done.

        Args:
            settings: the settings the calls use; None loads them from env and file.

        Returns:
            How many sounds the disk cache holds (0 when it is off).

        Raises:
            FillerConfigError: the settings are invalid, or ``cache_dir`` is a file.
        """
        return open_disk_cache(settings if settings is not None else FillerSettings.load())

    def _start_prerender(self) -> None:
        """Attached to a running session: pre-render what its current agent may say."""
        agent = self._current_agent()
        if agent is not None:
            self._prerender_agent(agent)

    def _prerender_agent(self, agent: Agent) -> None:
        """Queue the phrases ``agent`` may say, ahead of those of agents queued earlier.

        Sounds on disk are read first (no synthesis); the others are rendered one at a
        time, each once the session's own speech has been synthesized (:meth:`_wait_turn`).
        """
        if not self._settings.prerender or not self._settings.enabled or not self._open():
            return
        tts = tts_of(agent, self._session, self._speaker.filler_tts)
        if tts is None:
            return
        if not needs_audio(agent, self._session):
            # no audio output and no realtime model: fillers go out as text, nobody hears a
            # render (the console's text mode), so none is billed
            if not self._said_no_audio:
                self._said_no_audio = True
                logger.debug("no filler pre-render: the session has no audio output")
            return
        # the session's tools (AgentSession(tools=...)) are the agent's too
        tools = [*getattr(self._session, "tools", ()), *agent.tools]
        texts = phrases_for(self._settings, tools_of(tools, self._settings))
        cache = self.voice.cache
        # this agent's sounds stay in memory while it holds the floor (the memory bound
        # drops others first)
        self._pin([sound_key(tts, t) for t in texts])
        # the sounds already on disk (or in memory) first: reading them costs no synthesis
        ready = [t for t in texts if cache.contains(sound_key(tts, t))]
        missing = [t for t in texts if t not in ready]
        queued = [(tts, t) for t in [*ready, *missing]]
        self._prerender_queue = collections.deque(
            [*queued, *(item for item in self._prerender_queue if item not in queued)]
        )
        logger.debug(
            "pre-rendering the agent's filler phrases",
            extra={"agent": type(agent).__name__, "phrases": len(texts), "on_disk": len(ready)},
        )
        if self._prerender_task is None or self._prerender_task.done():
            self._prerender_task = self._spawn(
                self._run_prerender(), name="livekit_filler.prerender"
            )

    def _pin(self, keys: list[str]) -> None:
        """Hold ``keys`` in the memory cache instead of the keys held so far."""
        cache = self.voice.cache
        for key in keys:
            cache.hold(key)
        for key in self._pinned:
            cache.release(key)
        self._pinned = keys

    async def _run_prerender(self) -> None:
        while self._prerender_queue and self._open():
            tts, text = self._prerender_queue.popleft()
            await self.voice.prerender(tts, [text], wait_turn=self._wait_turn)
            if self.voice.paused:  # a render failed: the rest waits for a later activation
                self._prerender_queue.clear()

    async def _wait_turn(self) -> bool:
        """True once the session's own speech has had the TTS first, for a moment; False
        when the controller closed meanwhile (no render may start then).

        A pre-render must never make the caller wait: with a provider that serves one
        request at a time, a render in flight would hold back the greeting or a reply.
        So a render starts only after the session has been quiet (no speech being
        prepared, nothing queued, no LLM or tool step, the user not speaking) for
        :data:`PRERENDER_QUIET` seconds; audio already playing is fine, it is synthesized.
        """
        loop = asyncio.get_running_loop()
        quiet_since: float | None = None
        while self._open():
            if self._session_quiet():
                now = loop.time()
                if quiet_since is None:
                    quiet_since = now
                elif now - quiet_since >= PRERENDER_QUIET:
                    return True
            else:
                quiet_since = None
            await asyncio.sleep(PRERENDER_POLL)
        return False

    def _session_quiet(self) -> bool:
        agent = self._current_agent()
        return agent is not None and may_prerender(self._speaker.floor(agent))

    async def prerender(self, *texts: str) -> int:
        """Render ``texts`` (default: every fixed phrase of the settings) with the session's TTS.

        With no session TTS, the filler voice renders them.

        Returns:
            How many texts were rendered now (already cached ones are skipped).
        """
        tts = self._render_tts()
        if tts is None:
            return 0
        return await self.voice.prerender(tts, texts or settings_texts(self._settings))

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
        tts = tts_of(stream.owner, self._session, self._speaker.filler_tts)
        if text is None or tts is None or stream.ended:
            return
        # written from the call's arguments: never on disk, in memory only for this call
        stream.lease.add(sound_key(tts, text))
        if await self.voice.prerender(tts, [text], private=True) or self.voice.is_ready(tts, text):
            stream.contextual_text = text

    # -- say_filler -------------------------------------------------------------------------

    def say_filler(
        self, text: str | None = None, *, for_agent: Agent | None = None
    ) -> SpeechHandle | None:
        """Speak one filler now, if this is a safe moment; never raises scheduling errors.

        Safe means :func:`~livekit_filler.may_start`: the controller is open; the session's
        current activity is running (not pausing or draining for an AgentTask or a
        hand-off); nothing is speaking or queued; the user is quiet; and the agent holding
        the floor is ``for_agent`` or, when that is None, not an AgentTask (a filler must not
        talk into a sub-agent's conversation). The filler stays out of the chat history,
        and is cut like any other filler when real speech, a tool's answer, the user or a
        hand-off comes.

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
        agent = for_agent or self._current_agent()
        if agent is None:
            self._speaker.skip(Verdict.HANDOFF.value)
            return None
        verdict = may_start(self._speaker.floor(agent, asked=for_agent is not None))
        if verdict is not Verdict.SPEAK:
            self._speaker.skip(verdict.value)
            return None
        options = FillerOptions.resolve(self._settings, "")
        phrase = text or self._picker.pick(options.pool_for(self._language), index=0, values={})
        if phrase is None:
            self._speaker.skip("no_phrase")
            return None
        # a text given in code may carry the caller's words: kept off disk unless it is one
        # of the settings' fixed phrases
        lease = None if phrase in settings_texts(self._settings) else SoundLease(self.voice.cache)
        handle = self._speaker.say(
            phrase, agent=agent, allow_interruptions=options.allow_interruptions, private=lease
        )
        if handle is None:
            if lease is not None:
                lease.release()
            return None
        self._manual.add(handle)
        self._spawn(
            self._follow_manual(handle, agent, options.allow_interruptions, lease),
            name="livekit_filler.say_filler",
        )
        return handle

    async def _follow_manual(
        self,
        handle: SpeechHandle,
        agent: Agent,
        allow_interruptions: bool,
        lease: SoundLease | None,
    ) -> None:
        try:
            await self._speaker.follow(
                handle, agent=agent, allow_interruptions=allow_interruptions, tool=None
            )
        finally:
            self._manual.discard(handle)
            if lease is not None:
                lease.release()

    def _cut_manual(self, reason: str) -> None:
        for handle in list(self._manual):
            self._speaker.cut(handle, reason=reason, tool=None)

    def _current_agent(self) -> Agent | None:
        try:
            return self._session.current_agent
        except RuntimeError:  # not started, or closed
            return None

    # -- tool calls (used by the decorator and the config-driven tool following) -------------

    def _begin_call(
        self,
        *,
        call_id: str,
        tool_name: str,
        tool_handle: SpeechHandle | None,
        rule: ToolRule | None = None,
        arguments: Mapping[str, object] | None = None,
        from_config: bool = False,
    ) -> _Call | None:
        """Start filling a tool call; returns a token for :meth:`_end_call`, or None.

        Args:
            call_id: the LLM's id for this call.
            tool_name: the tool's name, which selects its config section.
            tool_handle: the speech handle of the step that called the tool; parallel calls
                of one step share it and so share one filler stream.
            rule: the decorator's options, if any; they beat the config section.
            arguments: the call's arguments, for phrase templates such as ``{club}``.
            from_config: the call was found through the session's tool events (no decorator).
        """
        if not self._open() or not self._settings.enabled:
            return None
        existing = self._calls.get(call_id)
        if existing is not None:
            if existing.from_config and not from_config:
                # the decorator learns of a call after the config section did: its options win
                existing.from_config = False
                existing.stream.replace_options(
                    call_id, FillerOptions.resolve(self._settings, tool_name, rule)
                )
                return existing
            return None
        options = FillerOptions.resolve(self._settings, tool_name, rule)
        if not options.enabled:
            return None
        if options.max_count == 0 and not (options.start_message or options.failure_message):
            return None
        owner = self._current_agent()
        if owner is None:
            return None
        self._warn_if_no_voice(owner, options)
        # in the tool's task, the current trace context is LiveKit's function_tool span
        call = StreamCall(call_id, tool_name, options, dict(arguments or {}), current_context())
        key: object = tool_handle if tool_handle is not None else call_id
        stream = self._streams.get(key)
        if stream is None or stream.ended:
            stream = FillerStream(
                self._speaker,
                call,
                session=self._session,
                owner=owner,
                tool_handle=tool_handle,
                picker=self._picker,
                language=lambda: self._language,
                latency=self._latency,
                persist_templated=self._settings.persist_templated,
            )
            self._streams[key] = stream
            stream.task = self._spawn(stream.run(), name=f"livekit_filler.stream.{tool_name}")
            contextual = self._contextual
            if contextual is not None and options.clip is None and not (rule and rule.phrases):
                # the tool's own words (decorator phrases) and clips are never rewritten
                stream.side_tasks.add(
                    self._spawn(
                        self._write_contextual(stream, contextual), name="livekit_filler.contextual"
                    )
                )
        else:
            stream.add_call(call)
        token = _Call(stream=stream, call=call, from_config=from_config)
        self._calls[call_id] = token
        self.metrics.tool_started()
        logger.debug("tool call filling", extra={"tool": tool_name, "call_id": call_id})
        return token

    def _end_call(self, token: _Call, *, reason: str = "answer") -> None:
        """The call returned (``"answer"``), returned the next agent (``"handoff"``),
        raised (``"error"``) or was cancelled.

        The answer must not wait for a filler: a queued one is dropped, a playing one cut
        (unless ``on_answer="finish"``). A hand-off ends the step's fillers at once, though
        its other calls still run. A failing call speaks its own ``failure_message``.

        Never raises: it runs in the decorator's ``finally`` and in session event handlers,
        where an error of ours would replace the tool's own result or exception.
        """
        try:
            self._finish_call(token, reason=reason)
        except Exception:
            logger.exception("filler bookkeeping failed at the end of a tool call")
            try:  # whatever failed, the call's fillers stop
                self._calls.pop(token.call.call_id, None)
                token.stream.end(reason=reason)
            except Exception:
                logger.debug("could not end a filler stream", exc_info=True)

    def _finish_call(self, token: _Call, *, reason: str) -> None:
        if self._calls.get(token.call.call_id) is not token:
            return
        del self._calls[token.call.call_id]
        stream = token.stream
        stream.remove_call(token.call.call_id)
        if reason in ("answer", "error", "handoff") and token.call.started_at is not None:
            # how long this tool kept the caller waiting (until its return, or until an
            # AgentTask it started took the floor): its next calls, in this process and the
            # next ones, time their fillers by it
            end = token.call.handoff_at or asyncio.get_running_loop().time()
            self._latency.record(token.call.tool_name, end - token.call.started_at)
            self._latency.save_soon()  # merged into the history by the background writer
        if stream.empty:
            for key, value in list(self._streams.items()):
                if value is stream:
                    del self._streams[key]
            stream.end(reason=reason)
            self.metrics.tool_ended(
                stream.started_at, stream.first_audio_at, handed_off_at=stream.handoff_spoke_at
            )
            if reason == "answer":
                self._replies.answer_ready(asyncio.get_running_loop().time())
        elif reason == "handoff":
            # the step's other calls still run, but the call is the next agent's: no filler
            # of this agent may start (or go on) before it takes over
            stream.end(reason=reason)
        failure = token.call.options.failure_message
        if reason == "error" and failure:
            agent = stream.owner
            options = token.call.options
            # the failure message follows the filler it cut: the floor must be free but
            # for that filler, which is still finishing its interruption
            if may_start(self._speaker.floor(agent), after_cut=True) is Verdict.SPEAK:
                self._speaker.say(
                    failure,
                    agent=agent,
                    allow_interruptions=options.allow_interruptions,
                    tool=token.call.tool_name,
                    parent=token.call.trace_context,
                )

    def _warn_if_no_voice(self, owner: Agent, options: FillerOptions) -> None:
        """Say once, loudly, that phrases cannot be spoken here (no TTS, no filler voice)."""
        if self._warned_no_voice or (options.clip is not None and not options.start_message):
            return
        if tts_of(owner, self._session, self._speaker.filler_tts) is not None:
            return
        if not needs_audio(owner, self._session):
            return  # a text-only session: fillers are sent as text
        self._warned_no_voice = True
        logger.warning(
            "fillers cannot speak phrases: this session has no TTS (a speech-to-speech model?)"
            " and no filler voice. Pass one with FillerController.attach(session, tts=...)"
            ' or set voice = {provider = "openai", voice = "alloy"} in the filler settings,'
            " matching the realtime model's voice; until then only clips play"
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        # A fresh context: filler tasks must not inherit the tool task's LiveKit context
        # variables (speech handle, idle hold), which belong to the tool, not to fillers.
        task: asyncio.Task[Any] = contextvars.Context().run(asyncio.create_task, coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_rendered(self, request_id: str, characters: int) -> None:
        # LiveKit reports the render's TTSMetrics (and usage) as the session TTS's own, with
        # no speech id: this event lets users tell them apart by request id
        self.emit(
            "filler_rendered",
            FillerEvent("filler_rendered", request_id=request_id, characters=characters),
        )

    # -- session events (synchronous, must never raise) --------------------------------------

    def _on_agent_state_changed(self, ev: AgentStateChangedEvent) -> None:
        self._agent_audible = ev.new_state == "speaking"
        self.metrics.audible(self._agent_audible or self._user_audible)
        speech = self._session.current_speech
        if self._agent_audible and (speech is None or not is_filler_speech(speech)):
            self._speaker.tts_down = False  # real speech plays: the TTS works again
            self.metrics.answer_started()
            now = asyncio.get_running_loop().time()
            for token in self._calls.values():
                if token.call.handoff_at is not None and token.stream.handoff_spoke_at is None:
                    # an AgentTask's first words: the step's dead air ends here
                    token.stream.handoff_spoke_at = now
            if self._replies.reply_started(now, self._speaker.last_end) is not None:
                self._latency.save_soon()
            self._slow_answer.reply_sounding(now)
        if self._agent_audible and speech is not None and is_filler_speech(speech):
            self._speaker.playback_started(speech)
            for stream in self._streams.values():
                if stream.current is speech and stream.first_audio_at is None:
                    stream.first_audio_at = asyncio.get_running_loop().time()

    def _on_user_state_changed(self, ev: UserStateChangedEvent) -> None:
        self._user_audible = ev.new_state == "speaking"
        self.metrics.audible(self._agent_audible or self._user_audible)
        if self._user_audible:
            self._replies.void()  # what sounds next may answer the user, not the tool
        if ev.new_state == "speaking" and self._settings.allow_interruptions:
            self._cut_manual("user_speech")
        for stream in list(self._streams.values()):
            if ev.new_state == "speaking":
                stream.user_started_speaking()
            elif ev.old_state == "speaking":
                stream.user_stopped_speaking()
        if ev.new_state == "speaking":
            self._busy.user_started_speaking()
        elif ev.old_state == "speaking":
            self._busy.user_stopped_speaking()

    def _on_user_input_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        if ev.is_final and ev.language:
            self._language = str(ev.language)
        if ev.is_final:
            self._slow_answer.heard()
            self._busy.heard(ev.transcript)

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        if self._speaker.saying or is_filler_speech(ev.speech_handle):
            return
        for stream in list(self._streams.values()):
            stream.yield_to_speech()
        self._cut_manual("real_speech")
        self._slow_answer.reply_created(
            ev.speech_handle,
            user_initiated=ev.user_initiated,
            source=getattr(ev, "source", ""),
        )

    def _on_function_tools_executed(self, ev: FunctionToolsExecutedEvent) -> None:
        if ev.has_agent_handoff:
            # a tool returned an agent: LiveKit drains this one next, and the new agent's
            # first words wait for every filler still sounding, one left to finish included
            self._replies.void()
            self._speaker.cut_all(reason="handoff")
            return
        # the step's reply reuses the tool step's speech handle (no speech_created): a
        # say_filler() filler said during the tools must give way to it now
        self._cut_manual("answer")

    def _on_tool_execution_updated(self, ev: ToolExecutionUpdatedEvent) -> None:
        update = ev.update
        if isinstance(update, ToolCallStarted):
            self._replies.void()  # the step goes on: what sounds next follows this call
            call = update.function_call
            if (agent := self._current_agent()) is not None:
                running = RunningCall(call.name, self._session.current_speech, agent)
                self._busy.tool_started(call.call_id, running)
            self._slow_answer.tool_started()
            if call.name in self._settings.tools:
                # a configured tool: fill it with no decorator, like a hosted platform would
                self._begin_call(
                    call_id=call.call_id,
                    tool_name=call.name,
                    tool_handle=self._session.current_speech,
                    arguments=_arguments(call),
                    from_config=True,
                )
        elif isinstance(update, ToolCallUpdated):
            self._busy.tool_ended(update.call_id)
            if (tracked := self._calls.get(update.call_id)) is not None:
                # ctx.update() turned the tool asynchronous: the LLM speaks now, fillers stop
                self._end_call(tracked, reason="progress_update")
        elif isinstance(update, ToolCallEnded):
            self._busy.tool_ended(update.call_id)
            if (tracked := self._calls.get(update.call_id)) is not None:
                self._end_call(tracked, reason="error" if update.status == "error" else "answer")

    def _on_conversation_item_added(self, ev: ConversationItemAddedEvent) -> None:
        if not isinstance(ev.item, llm.AgentHandoff):
            return
        if ev.item.old_agent_id is None:
            warn_unknown_tools(self._settings)
        else:
            # the calls of the agent that gave up the floor stop waiting here (an AgentTask
            # inside a tool): that, not the tool's return, is how long they are filled
            now = asyncio.get_running_loop().time()
            for token in self._calls.values():
                if token.stream.owner.id == ev.item.old_agent_id:
                    token.call.handoff_at = token.call.handoff_at or now
        # an agent became active (session start, hand-off, AgentTask, back from one): its
        # phrases are rendered before its first tool call, not at it
        agent = self._current_agent()
        if agent is not None and agent.id == ev.item.new_agent_id:
            self._prerender_agent(agent)

    def _on_error(self, ev: ErrorEvent) -> None:
        # filler renders never reach the session's error events (audio.py): this is the
        # session's own speech, and fillers must not hide it from LiveKit's error handling
        if isinstance(ev.error, lk_tts.TTSError) and not ev.error.recoverable:
            self._speaker.tts_down = True
            logger.debug("TTS failed on real speech: fillers pause until real speech plays")

    def _on_close(self, ev: CloseEvent) -> None:
        self._shutdown(reason="session_closed")


def latency_model(settings: FillerSettings) -> LatencyModel:
    """The process-wide tool latency model controllers with these settings learn into: the
    history of their ``project`` (default: the program's directory) in their cache."""
    return shared_model(_latency_dir(settings), settings.project)


def _latency_dir(settings: FillerSettings) -> Path | None:
    """Where tool latencies persist: beside the audio cache (None: in memory only)."""
    if not getattr(settings, "disk_cache", True):
        return None
    if settings.cache_dir is not None:
        return Path(settings.cache_dir)
    try:
        return default_cache_dir()
    except Exception:  # no platformdirs, no home: keep the latencies in memory
        logger.debug("no cache directory for tool latencies", exc_info=True)
        return None


def _arguments(call: llm.FunctionCall) -> dict[str, object]:
    try:
        values = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}


_config_errors_logged: set[str] = set()

PRERENDER_QUIET = 0.15
"""Seconds the session must have been quiet before a pre-render starts (see _wait_turn)."""
PRERENDER_POLL = 0.02
"""Seconds between two looks at the session while a pre-render waits for its turn."""


def open_disk_cache(settings: FillerSettings, *, wait: bool = True) -> int:
    """Open the disk cache the settings name in the process-wide audio cache (once), and
    bound its memory (``memory_cache_mb``).

    Args:
        settings: the settings.
        wait: False lists the directory in the background writer (on an event loop).

    Returns:
        How many sounds it holds; 0 when the disk cache or fillers are off (or not listed
        yet).

    Raises:
        FillerConfigError: ``cache_dir`` (or the default directory) is a file.
    """
    cache = shared_cache()
    cache.max_bytes = settings.memory_cache_mb * 1024 * 1024
    if not settings.disk_cache or not settings.enabled:
        return 0
    if settings.cache_dir is None:
        directory = default_cache_dir()
        # not checked when the settings were made: a file in its place fails here, at once
        DiskStore(directory).check()
    else:
        directory = settings.cache_dir  # checked when the settings were made
    return cache.persist_to(directory, max_bytes=settings.cache_max_mb * 1024 * 1024, wait=wait)


_flushing_jobs: weakref.WeakSet[object] = weakref.WeakSet()


def _flush_at_job_end() -> None:
    """In a LiveKit job, write what is pending when the job shuts down (bounded, off the loop);
    elsewhere the interpreter's exit does it (:mod:`.disk_writer`)."""
    try:
        from livekit.agents import get_job_context

        ctx = get_job_context()
    except Exception:  # not in a job (a test, a console session)
        return
    if ctx in _flushing_jobs:
        return
    _flushing_jobs.add(ctx)

    async def _flush() -> None:
        await asyncio.to_thread(flush, FLUSH_TIMEOUT)

    ctx.add_shutdown_callback(_flush)


def _checked_voice_id(voice_id: str) -> str:
    """``voice_id`` checked as the ``voice_id`` setting is: the same FillerConfigError."""
    if not isinstance(voice_id, str):
        raise TypeError(f"voice_id must be a str, got {type(voice_id).__name__}")
    return FillerSettings.from_values(voice_id=voice_id).voice_id or voice_id
