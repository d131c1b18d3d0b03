"""The tool calls a controller is filling: each call's token, the filler stream of its
step, and what happens when it returns, raises, hands off or is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from livekit.agents import Agent, AgentSession
from livekit.agents.voice import SpeechHandle

from .contextual import ContextualFillers
from .floor import Verdict, may_start
from .latency import LatencyModel
from .log import logger
from .metrics import FillerMetrics
from .options import FillerOptions
from .phrases import PhrasePicker
from .reply_timer import ReplyTimer
from .session_tts import needs_audio, tts_of
from .settings import FillerSettings, ToolRule
from .speaker import FillerSpeaker
from .stream import FillerStream, StreamCall
from .tracing import current_context
from .tts_identity import sound_key

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


@dataclass
class TrackedCall:
    """A tool call the controller is filling (the decorator's token)."""

    stream: FillerStream
    call: StreamCall
    from_config: bool = False


class ToolCalls:
    """The calls being filled, by call id, and their streams, by the step that called them.

    Owned by the controller: the decorator begins and ends calls through it, and so does
    the controller's session event wiring for calls found by the session's tool events.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        settings: FillerSettings,
        speaker: FillerSpeaker,
        *,
        metrics: FillerMetrics,
        latency: LatencyModel,
        replies: ReplyTimer,
        is_open: Callable[[], bool],
        current_agent: Callable[[], Agent | None],
        spawn: Spawn,
        picker: Callable[[], PhrasePicker],
        language: Callable[[], str | None],
        contextual: Callable[[], ContextualFillers | None],
    ) -> None:
        self._session = session
        self._settings = settings
        self._speaker = speaker
        self._metrics = metrics
        self._latency = latency
        self._replies = replies
        self._open = is_open
        self._current_agent = current_agent
        self._spawn = spawn
        self._picker = picker
        self._language = language
        self._contextual = contextual
        self._warned_no_voice = False
        self.streams: dict[object, FillerStream] = {}
        """The filler stream of each step: keyed by its speech handle (else the call id)."""
        self.by_id: dict[str, TrackedCall] = {}
        """The calls being filled, by the LLM's call id."""

    def end_all(self, *, reason: str) -> None:
        """The controller is closing: every stream ends, no call is tracked any more."""
        for stream in list(self.streams.values()):
            stream.end(reason=reason)
        self.streams.clear()
        self.by_id.clear()

    def begin(
        self,
        *,
        call_id: str,
        tool_name: str,
        tool_handle: SpeechHandle | None,
        rule: ToolRule | None = None,
        arguments: Mapping[str, object] | None = None,
        from_config: bool = False,
    ) -> TrackedCall | None:
        """Start filling a tool call; returns a token for :meth:`end`, or None.

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
        existing = self.by_id.get(call_id)
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
        stream = self.streams.get(key)
        if stream is None or stream.ended:
            stream = FillerStream(
                self._speaker,
                call,
                session=self._session,
                owner=owner,
                tool_handle=tool_handle,
                picker=self._picker(),
                language=self._language,
                latency=self._latency,
                persist_templated=self._settings.persist_templated,
            )
            self.streams[key] = stream
            stream.task = self._spawn(stream.run(), f"livekit_filler.stream.{tool_name}")
            contextual = self._contextual()
            if contextual is not None and options.clip is None and not (rule and rule.phrases):
                # the tool's own words (decorator phrases) and clips are never rewritten
                stream.side_tasks.add(
                    self._spawn(
                        self._write_contextual(stream, contextual), "livekit_filler.contextual"
                    )
                )
        else:
            stream.add_call(call)
        token = TrackedCall(stream=stream, call=call, from_config=from_config)
        self.by_id[call_id] = token
        self._metrics.tool_started()
        logger.debug("tool call filling", extra={"tool": tool_name, "call_id": call_id})
        return token

    def end(self, token: TrackedCall, *, reason: str = "answer") -> None:
        """The call returned (``"answer"``), returned the next agent (``"handoff"``),
        raised (``"error"``) or was cancelled.

        The answer must not wait for a filler: a queued one is dropped, a playing one cut
        (unless ``on_answer="finish"``). A hand-off ends the step's fillers at once, though
        its other calls still run. A failing call speaks its own ``failure_message``.

        Never raises: it runs in the decorator's ``finally`` and in session event handlers,
        where an error of ours would replace the tool's own result or exception.
        """
        try:
            self._finish(token, reason=reason)
        except Exception:
            logger.exception("filler bookkeeping failed at the end of a tool call")
            try:  # whatever failed, the call's fillers stop
                self.by_id.pop(token.call.call_id, None)
                token.stream.end(reason=reason)
            except Exception:
                logger.debug("could not end a filler stream", exc_info=True)

    def _finish(self, token: TrackedCall, *, reason: str) -> None:
        if self.by_id.get(token.call.call_id) is not token:
            return
        del self.by_id[token.call.call_id]
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
            for key, value in list(self.streams.items()):
                if value is stream:
                    del self.streams[key]
            stream.end(reason=reason)
            self._metrics.tool_ended(
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

    async def _write_contextual(self, stream: FillerStream, contextual: ContextualFillers) -> None:
        text = await contextual.write(stream.tool_name, stream.arguments)
        tts = tts_of(stream.owner, self._session, self._speaker.filler_tts)
        if text is None or tts is None or stream.ended:
            return
        # written from the call's arguments: never on disk, in memory only for this call
        stream.lease.add(sound_key(tts, text))
        if await self._speaker.voice.prerender(
            tts, [text], private=True
        ) or self._speaker.voice.is_ready(tts, text):
            stream.contextual_text = text
