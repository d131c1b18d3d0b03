"""FillerController, the public facade: owns all filler speech of one AgentSession.

It attaches to a session and wires the parts that do the work: the tool calls being filled
(:mod:`.tool_calls`), the pre-render (:mod:`.prerender`), the fillers said from code
(:mod:`.manual_fillers`) and the session's events (:mod:`.session_events`).
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Coroutine
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, tts as lk_tts
from livekit.agents.voice import SpeechHandle

from ._livekit_private import session_closing
from .busy import BusyAcknowledger
from .contextual import ContextualFillers
from .disk_writer import FLUSH_TIMEOUT, flush
from .errors import FillerConfigError
from .events import FillerEvent, FillerEventType
from .filler_voice import FillerVoice
from .log import logger
from .manual_fillers import ManualFillers
from .metrics import FillerMetrics
from .options import settings_texts
from .phrases import PhrasePicker
from .prerender import Prerenderer
from .process_state import flush_at_job_end, latency_model, open_disk_cache
from .reply_timer import ReplyTimer
from .session_events import SessionEvents
from .settings import FillerSettings
from .slow_answer import SlowAnswer
from .speaker import FillerSpeaker
from .tool_calls import ToolCalls
from .tracing import FillerSpans
from .tts_identity import name_voice

_controllers: weakref.WeakKeyDictionary[AgentSession[Any], FillerController] = (
    weakref.WeakKeyDictionary()
)
_detached: weakref.WeakSet[AgentSession[Any]] = weakref.WeakSet()
_closing_voices: set[asyncio.Task[None]] = set()
"""Filler voices built from settings, closing after their controller detached."""
"""Sessions whose controller was closed with aclose(): decorated tools stay quiet there."""


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
        self._voice_id: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._picker = PhrasePicker()
        self._contextual: ContextualFillers | None = None
        self._closed = False
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
        self._manual = ManualFillers(
            settings,
            self._speaker,
            current_agent=self._current_agent,
            spawn=spawn,
            picker=lambda: self._picker,
            language=self._language,
        )
        self._slow_answer = SlowAnswer(
            session,
            self._speaker,
            settings,
            picker=lambda: self._picker,
            language=self._language,
            spawn=spawn,
            manual=self._manual.handles,
            tools_running=lambda: self._busy.any_running(),
        )
        self._busy = BusyAcknowledger(
            self._speaker,
            settings,
            current_agent=self._current_agent,
            manual=self._manual.handles,
            spawn=spawn,
        )
        self._calls = ToolCalls(
            session,
            settings,
            self._speaker,
            metrics=self.metrics,
            latency=self._latency,
            replies=self._replies,
            is_open=self._open,
            current_agent=self._current_agent,
            spawn=spawn,
            picker=lambda: self._picker,
            language=self._language,
            contextual=lambda: self._contextual,
        )
        self._prerenderer = Prerenderer(
            session,
            settings,
            self._speaker,
            is_open=self._open,
            current_agent=self._current_agent,
            spawn=spawn,
        )
        # listens from here on: the last step, as every handler uses the parts above
        self._session_events = SessionEvents(
            session,
            settings,
            self._speaker,
            metrics=self.metrics,
            latency=self._latency,
            replies=self._replies,
            calls=self._calls,
            manual=self._manual,
            prerenderer=self._prerenderer,
            slow_answer=self._slow_answer,
            busy=self._busy,
            current_agent=self._current_agent,
            shutdown=lambda reason: self._shutdown(reason=reason),
        )

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
        voice_id = _checked_arguments(session, settings, tts, voice_id)
        existing = _controllers.get(session)
        if existing is not None and not existing._closed:
            _check_same(existing, settings, tts, voice_id)
            return existing
        settings = settings if settings is not None else FillerSettings.load()
        open_disk_cache(settings, wait=False)  # listed in the background: no I/O on the loop
        flush_at_job_end()
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
        controller._prerenderer.start()
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
        self._session_events.disconnect()
        self._calls.end_all(reason=reason)
        for task in list(self._tasks):
            task.cancel()
        self._slow_answer.close()
        self._prerenderer.pin([])
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
        return self._manual.say(text, for_agent=for_agent)

    def _language(self) -> str | None:
        """The caller's language, as the session's transcripts named it last."""
        return self._session_events.language

    def _current_agent(self) -> Agent | None:
        try:
            return self._session.current_agent
        except RuntimeError:  # not started, or closed
            return None

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


_config_errors_logged: set[str] = set()


def _checked_voice_id(voice_id: str) -> str:
    """``voice_id`` checked as the ``voice_id`` setting is: the same FillerConfigError."""
    if not isinstance(voice_id, str):
        raise TypeError(f"voice_id must be a str, got {type(voice_id).__name__}")
    return FillerSettings.from_values(voice_id=voice_id).voice_id or voice_id


def _checked_arguments(
    session: object,
    settings: object,
    tts: object,
    voice_id: str | None,
) -> str | None:
    """:meth:`FillerController.attach`'s arguments checked; returns ``voice_id`` checked."""
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
    return voice_id


def _check_same(
    existing: FillerController,
    settings: FillerSettings | None,
    tts: lk_tts.TTS[Any] | None,
    voice_id: str | None,
) -> None:
    """A second attach may pass only what the first one did (ValueError otherwise)."""
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
