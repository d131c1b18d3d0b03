"""Saying one filler into a session: its audio, its gate, its mark, and the record of it.

Every filler (a stream's, ``say_filler``'s, a start or failure message) goes through
:class:`FillerSpeaker`: out of the chat context, gated frame by frame on the floor, marked
as a filler, counted and announced as an event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from livekit import rtc
from livekit.agents import NOT_GIVEN, Agent, AgentSession, llm, tts as lk_tts, utils
from livekit.agents.voice import SpeechHandle

from .audio import FillerVoice, replay
from .events import AudioSource, FillerEvent
from .floor import MAX_SPEECH_GAP, Floor, Verdict, follow, may_keep_playing, read_floor
from .log import logger
from .marks import mark_filler
from .metrics import FillerMetrics
from .tracing import FillerSpans, TraceContext

Emit = Callable[[FillerEvent], None]


class FillerSpeaker:
    """Says, cuts and records the fillers of one session."""

    def __init__(
        self,
        session: AgentSession[Any],
        *,
        voice: FillerVoice,
        metrics: FillerMetrics,
        emit: Emit,
        is_open: Callable[[], bool],
        spans: FillerSpans,
        filler_tts: lk_tts.TTS[Any] | None = None,
    ) -> None:
        self._session = session
        self._voice = voice
        self.filler_tts = filler_tts
        """The TTS that renders fillers when neither the agent nor the session has one."""
        self._metrics = metrics
        self._emit = emit
        self._is_open = is_open
        self._spans = spans
        self.saying = False
        """True while ``session.say()`` runs for a filler (its speech_created is ours)."""
        self._warned_gap = False
        self.tts_down = False
        """True after an unrecoverable TTS error on real speech, until real speech plays.

        Fillers pause meanwhile (skipped as ``tts_down``): a filler puts the agent in the
        speaking state, which resets LiveKit's count of TTS errors, so playing fillers would
        hide a dead TTS from the session's own error handling (close, fallback).
        """

    @property
    def voice(self) -> FillerVoice:
        """Where filler audio comes from."""
        return self._voice

    def floor(self, agent: Agent, tool_handle: SpeechHandle | None = None) -> Floor:
        """The floor as a filler for ``agent`` sees it now."""
        return read_floor(self._session, agent, open=self._is_open(), tool_handle=tool_handle)

    def keep_playing(self, agent: Agent, *, allow_interruptions: bool) -> Verdict:
        """May a filler of ``agent`` go on sounding?"""
        return may_keep_playing(self.floor(agent), allow_interruptions=allow_interruptions)

    def say(
        self,
        text: str,
        *,
        agent: Agent,
        allow_interruptions: bool,
        tool: str | None = None,
        clip: rtc.AudioFrame | None = None,
        parent: TraceContext | None = None,
    ) -> SpeechHandle | None:
        """Schedule one filler now; None (and a ``filler_skipped`` event) when it cannot be.

        ``parent`` is the trace context of the tool call it fills (its span's parent).
        """
        if self.tts_down:
            self.skip("tts_down", tool=tool, parent=parent)
            return None
        source: AudioSource = "text"
        audio: AsyncIterator[rtc.AudioFrame] | None = None
        if clip is not None:
            audio, source = replay(clip), "clip"
        elif (tts := tts_of(agent, self._session, self.filler_tts)) is not None:
            sound = self._voice.audio_for(tts, text)
            if sound is None:
                self.skip("tts_failed", tool=tool, parent=parent)
                return None
            audio, source = sound
        elif needs_audio(agent, self._session):
            # text alone would go through a realtime model's say(), which adds it to the
            # conversation whatever add_to_chat_ctx says, or be refused (no TTS, audio out)
            self.skip("no_voice", tool=tool, parent=parent)
            return None
        scheduled: list[SpeechHandle] = []  # the gate learns its handle once say() returns
        if audio is not None:
            audio = self._gated(
                audio, agent, allow_interruptions=allow_interruptions, handle=scheduled
            )
        self.saying = True
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
            self.skip("refused", tool=tool, parent=parent)
            return None
        finally:
            self.saying = False
        mark_filler(handle)
        scheduled.append(handle)
        self._spans.played(handle, tool=tool, source=source, text=text, parent=parent)
        if audio is None:
            self._metrics.played()  # no audio of ours to watch: counted when scheduled
        self._emit(FillerEvent("filler_played", tool=tool, speech_id=handle.id, source=source))
        logger.debug("filler scheduled", extra={"speech_id": handle.id, "tool": tool})
        return handle

    def cut(self, handle: SpeechHandle, *, reason: str, tool: str | None) -> bool:
        """Interrupt a filler that is still queued or playing; True when it was."""
        if handle.done() or handle.interrupted:
            return False
        handle.interrupt(force=True)
        self._spans.cut(handle, reason=reason)
        self._metrics.cut(reason)
        self._emit(FillerEvent("filler_cut", tool=tool, reason=reason, speech_id=handle.id))
        logger.debug("filler cut", extra={"tool": tool, "reason": reason})
        return True

    def skip(
        self, reason: str, *, tool: str | None = None, parent: TraceContext | None = None
    ) -> None:
        """Record a filler that was not played."""
        if reason == Verdict.SPEECH_GAP.value and not self._warned_gap:
            self._warned_gap = True
            logger.warning(
                "fillers are off while min_consecutive_speech_delay is above %.1f s: a cut"
                " filler would delay the reply by that gap",
                MAX_SPEECH_GAP,
                extra={"tool": tool},
            )
        self._metrics.skip(reason)
        self._spans.skipped(tool=tool, reason=reason, parent=parent)
        self._emit(FillerEvent("filler_skipped", tool=tool, reason=reason))

    async def follow(
        self, handle: SpeechHandle, *, agent: Agent, allow_interruptions: bool, tool: str | None
    ) -> None:
        """Wait for a filler to end, cutting it the moment its agent loses the floor."""
        await follow(
            handle,
            keep_playing=lambda: self.keep_playing(agent, allow_interruptions=allow_interruptions),
            on_lost=lambda verdict: self.cut(handle, reason=_cut_reason(verdict), tool=tool),
        )

    async def _gated(
        self,
        audio: AsyncIterator[rtc.AudioFrame],
        agent: Agent,
        *,
        allow_interruptions: bool,
        handle: list[SpeechHandle],
    ) -> AsyncIterator[rtc.AudioFrame]:
        """Feed a filler's audio only while :func:`may_keep_playing` says so.

        A filler scheduled an instant before an AgentTask or hand-off begins would otherwise
        start sounding a few ms into the transition, before the 10 ms watch cuts it.
        """
        started = False
        try:
            async for frame in audio:
                if self.keep_playing(agent, allow_interruptions=allow_interruptions) is not (
                    Verdict.SPEAK
                ):
                    return
                if not started:
                    started = True
                    self._metrics.played()  # its audio starts: heard, not just scheduled
                    if handle:
                        self._spans.first_audio(handle[0])
                yield frame
        finally:
            close = getattr(audio, "aclose", None)
            if close is not None:
                await close()


def tts_of(
    agent: Agent, session: AgentSession[Any], filler_tts: lk_tts.TTS[Any] | None = None
) -> lk_tts.TTS[Any] | None:
    """The TTS that speaks fillers for ``agent``: its own, else the session's, else ``filler_tts``."""
    own = agent.tts
    tts = own if utils.is_given(own) else session.tts
    return tts if tts is not None else filler_tts


def llm_of(agent: Agent, session: AgentSession[Any]) -> llm.LLM[Any] | llm.RealtimeModel | None:
    """The model that answers for ``agent``: its own, else the session's."""
    own = agent.llm
    return own if utils.is_given(own) else session.llm


def needs_audio(agent: Agent, session: AgentSession[Any]) -> bool:
    """True when a filler of ``agent`` must be given as audio, never as text alone.

    With a realtime model, ``say(text)`` without audio goes through the model's own
    ``say()`` (added to its conversation and ``session.history`` whatever
    ``add_to_chat_ctx`` says) or fails; with audio output and no TTS LiveKit refuses it.
    A text-only pipeline session (no audio output) speaks fillers as text.
    """
    if isinstance(llm_of(agent, session), llm.RealtimeModel):
        return True
    output = session.output
    return output.audio is not None and output.audio_enabled


def _cut_reason(verdict: Verdict) -> str:
    return "user_speech" if verdict is Verdict.USER_SPEAKING else verdict.value
