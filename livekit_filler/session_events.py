"""The session events a controller listens to, and what each one changes: cuts, the
calls found by tool events, the caller's language, pre-renders, the learned reply lead."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

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

from .busy import BusyAcknowledger, RunningCall
from .latency import LatencyModel
from .log import logger
from .manual_fillers import ManualFillers
from .marks import is_filler_speech
from .metrics import FillerMetrics
from .prerender import Prerenderer
from .reply_timer import ReplyTimer
from .settings import FillerSettings
from .slow_answer import SlowAnswer
from .speaker import FillerSpeaker
from .tool_calls import ToolCalls
from .tool_names import warn_unknown_tools
from .tracing import current_context


class SessionEvents:
    """Listens to one session's events for its controller (synchronous, must never raise).

    Connected at construction, :meth:`disconnect` at detach. It also keeps what the events
    tell: the caller's language (:attr:`language`) and whether someone is audible.
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
        calls: ToolCalls,
        manual: ManualFillers,
        prerenderer: Prerenderer,
        slow_answer: SlowAnswer,
        busy: BusyAcknowledger,
        current_agent: Callable[[], Agent | None],
        shutdown: Callable[[str], None],
    ) -> None:
        self._session = session
        self._settings = settings
        self._speaker = speaker
        self._metrics = metrics
        self._latency = latency
        self._replies = replies
        self._calls = calls
        self._manual = manual
        self._prerenderer = prerenderer
        self._slow_answer = slow_answer
        self._busy = busy
        self._current_agent = current_agent
        self._shutdown = shutdown
        self.language: str | None = None
        """The caller's language, from the last final transcript that named one."""
        self._agent_audible = False
        self._user_audible = False
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

    def disconnect(self) -> None:
        """Stop listening: a late event must not start work on a closing controller."""
        for event, listener in self._listeners:
            self._session.off(event, listener)  # type: ignore[arg-type]

    def _on_agent_state_changed(self, ev: AgentStateChangedEvent) -> None:
        self._agent_audible = ev.new_state == "speaking"
        self._metrics.audible(self._agent_audible or self._user_audible)
        speech = self._session.current_speech
        if self._agent_audible and (speech is None or not is_filler_speech(speech)):
            self._speaker.tts_down = False  # real speech plays: the TTS works again
            self._metrics.answer_started()
            now = asyncio.get_running_loop().time()
            for token in self._calls.by_id.values():
                if token.call.handoff_at is not None and token.stream.handoff_spoke_at is None:
                    # an AgentTask's first words: the step's dead air ends here
                    token.stream.handoff_spoke_at = now
            if self._replies.reply_started(now, self._speaker.last_end) is not None:
                self._latency.save_soon()
            self._slow_answer.reply_sounding(now)
        if self._agent_audible and speech is not None and is_filler_speech(speech):
            self._speaker.playback_started(speech)
            for stream in self._calls.streams.values():
                if stream.current is speech and stream.first_audio_at is None:
                    stream.first_audio_at = asyncio.get_running_loop().time()

    def _on_user_state_changed(self, ev: UserStateChangedEvent) -> None:
        self._user_audible = ev.new_state == "speaking"
        self._metrics.audible(self._agent_audible or self._user_audible)
        if self._user_audible:
            self._replies.void()  # what sounds next may answer the user, not the tool
        if ev.new_state == "speaking" and self._settings.allow_interruptions:
            self._manual.cut("user_speech")
        # an acknowledgement due for a step takes the slot the caller's stop opens: its
        # stream waits for it rather than queue a filler first (busy.py)
        acknowledging = None
        if ev.new_state != "speaking" and ev.old_state == "speaking":
            acknowledging = self._busy.user_stopped_speaking(self._acknowledged)
        for stream in list(self._calls.streams.values()):
            if ev.new_state == "speaking":
                stream.user_started_speaking()
            elif ev.old_state == "speaking":
                stream.user_stopped_speaking(acknowledging=acknowledging)
        if ev.new_state == "speaking":
            self._busy.user_started_speaking()
        self._slow_answer.user_state_changed(ev.old_state, ev.new_state)

    def _acknowledged(self, handle: SpeechHandle | None) -> None:
        for stream in list(self._calls.streams.values()):
            stream.acknowledged(handle)

    def _on_user_input_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        if ev.is_final and ev.language:
            self.language = str(ev.language)
        if ev.is_final:
            self._slow_answer.heard()
            self._busy.heard(ev.transcript)

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        if self._speaker.saying or is_filler_speech(ev.speech_handle):
            return
        for stream in list(self._calls.streams.values()):
            stream.yield_to_speech()
        self._manual.cut("real_speech")
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
        self._manual.cut("answer")

    def _on_tool_execution_updated(self, ev: ToolExecutionUpdatedEvent) -> None:
        update = ev.update
        if isinstance(update, ToolCallStarted):
            self._replies.void()  # the step goes on: what sounds next follows this call
            call = update.function_call
            if (agent := self._current_agent()) is not None:
                # emitted in the tool's task: the current context is its function_tool span
                running = RunningCall(
                    call.name, self._session.current_speech, agent, current_context()
                )
                self._busy.tool_started(call.call_id, running)
            self._slow_answer.tool_started()
            if call.name in self._settings.tools:
                # a configured tool: fill it with no decorator, like a hosted platform would
                self._calls.begin(
                    call_id=call.call_id,
                    tool_name=call.name,
                    tool_handle=self._session.current_speech,
                    arguments=_arguments(call),
                    from_config=True,
                )
        elif isinstance(update, ToolCallUpdated):
            self._busy.tool_ended(update.call_id)
            if (tracked := self._calls.by_id.get(update.call_id)) is not None:
                # ctx.update() turned the tool asynchronous: the LLM speaks now, fillers stop
                self._calls.end(tracked, reason="progress_update")
        elif isinstance(update, ToolCallEnded):
            self._busy.tool_ended(update.call_id)
            if (tracked := self._calls.by_id.get(update.call_id)) is not None:
                self._calls.end(tracked, reason="error" if update.status == "error" else "answer")

    def _on_conversation_item_added(self, ev: ConversationItemAddedEvent) -> None:
        if not isinstance(ev.item, llm.AgentHandoff):
            return
        if ev.item.old_agent_id is None:
            warn_unknown_tools(self._settings)
        else:
            # the calls of the agent that gave up the floor stop waiting here (an AgentTask
            # inside a tool): that, not the tool's return, is how long they are filled
            now = asyncio.get_running_loop().time()
            for token in self._calls.by_id.values():
                if token.stream.owner.id == ev.item.old_agent_id:
                    token.call.handoff_at = token.call.handoff_at or now
        # an agent became active (session start, hand-off, AgentTask, back from one): its
        # phrases are rendered before its first tool call, not at it
        agent = self._current_agent()
        if agent is not None and agent.id == ev.item.new_agent_id:
            self._prerenderer.queue_agent(agent)

    def _on_error(self, ev: ErrorEvent) -> None:
        # filler renders never reach the session's error events (filler_voice.py): this is the
        # session's own speech, and fillers must not hide it from LiveKit's error handling
        if isinstance(ev.error, lk_tts.TTSError) and not ev.error.recoverable:
            self._speaker.tts_down = True
            logger.debug("TTS failed on real speech: fillers pause until real speech plays")

    def _on_close(self, ev: CloseEvent) -> None:
        self._shutdown("session_closed")


def _arguments(call: llm.FunctionCall) -> dict[str, object]:
    try:
        values = json.loads(call.arguments or "{}")
    except ValueError:
        return {}
    return values if isinstance(values, dict) else {}
