"""Saying one filler into a session: its audio, its gate, its mark, and the record of it.

Every filler (a stream's, ``say_filler``'s, a start or failure message) goes through
:class:`FillerSpeaker`: out of the chat context, gated frame by frame on the floor, marked
as a filler, counted and announced as an event (by :mod:`~livekit_filler.filler_record`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from livekit import rtc
from livekit.agents import NOT_GIVEN, Agent, AgentSession, llm, tts as lk_tts
from livekit.agents.voice import SpeechHandle

from .events import AudioSource, FillerEvent, FillerKind
from .filler_record import FillerRecord
from .filler_voice import FillerVoice
from .floor import Floor, Verdict, may_keep_playing
from .floor_session import follow, read_floor
from .gate import gated
from .log import logger
from .marks import mark_filler
from .metrics import FillerMetrics
from .playing import AWAIT_PAUSE, FINISH, MAX_CUT_WAIT, OnSkip, Phase, Playing, graceful_end
from .render import replay
from .session_tts import llm_of, needs_audio, tts_of
from .sound_cache import SoundLease
from .tracing import FillerSpans, TraceContext
from .tts_identity import sound_key

Emit = Callable[[FillerEvent], None]
Hold = Callable[[], Awaitable[str | None]]
"""Awaited when LiveKit starts reading a filler's audio: None lets it sound, a reason (a
``filler_skipped`` reason) ends it silently (see :meth:`FillerSpeaker.say`)."""

GRACEFUL_REASONS = frozenset({"answer", "progress_update", "error"})
"""Cuts that end a playing filler at its next pause between words rather than mid-word: the
tool's result is ready, and the reply it leads to takes the LLM's and the TTS's time to
sound, while the filler reaches its pause. Real speech (ready at once, perhaps) and a
hand-off (the sub-agent's first words wait for the filler) cut at once, as the user does."""
FINISHING_REASONS = GRACEFUL_REASONS
"""Cuts that let a filler finish when little of it is left (``finish_within``)."""
KEEPS_A_GRACEFUL_END = frozenset({"real_speech"})
"""Cuts that leave a graceful end already under way alone (the reply that follows the
answer is real speech: it sounds once the filler ended at its pause)."""


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
        self._is_open = is_open
        self._spans = spans
        self._record = FillerRecord(metrics=metrics, emit=emit, spans=spans)
        """Where each filler is counted, traced and announced."""
        self.saying = False
        """True while ``session.say()`` runs for a filler (its speech_created is ours)."""
        self._playing: dict[SpeechHandle, Playing] = {}
        self._seconds_per_char: float | None = None
        self.finish_within = 0.3
        """The answer window while no reply has been timed yet (see :meth:`answer_window`)."""
        self.answer_lead: Callable[[], float | None] = lambda: None
        """Seconds the session's replies take to sound after their tool returned (learned;
        None: not known yet)."""
        self.last_end: float | None = None
        """Event-loop time the last filler with audio of ours ended."""
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

    def floor(
        self,
        agent: Agent,
        tool_handle: SpeechHandle | None = None,
        *,
        asked: bool = True,
        sounding: bool = False,
    ) -> Floor:
        """The floor as a filler for ``agent`` sees it now (see :func:`read_floor`)."""
        return read_floor(
            self._session,
            agent,
            open=self._is_open(),
            tool_handle=tool_handle,
            tts_down=self.tts_down,
            asked=asked,
            sounding=sounding,
        )

    def duration_of(self, agent: Agent, text: str) -> float | None:
        """Seconds ``text`` plays for ``agent``: its rendered sound's length, else estimated
        from its characters at the pace of the sounds rendered so far (None: no voice)."""
        tts = tts_of(agent, self._session, self.filler_tts)
        if tts is None:
            return None
        frame = self._voice.cache.peek(sound_key(tts, text))
        if frame is not None:
            if text.strip():
                self._seconds_per_char = frame.duration / len(text.strip())
            return float(frame.duration)
        if self._seconds_per_char is None:
            return None
        return len(text.strip()) * self._seconds_per_char

    def keep_playing(
        self, agent: Agent, *, allow_interruptions: bool, sounding: bool = True
    ) -> Verdict:
        """May a filler of ``agent`` go on sounding (``sounding``: it already is)?"""
        return may_keep_playing(
            self.floor(agent, sounding=sounding), allow_interruptions=allow_interruptions
        )

    def say(
        self,
        text: str,
        *,
        agent: Agent,
        allow_interruptions: bool,
        tool: str | None = None,
        clip: rtc.AudioFrame | None = None,
        parent: TraceContext | None = None,
        on_skip: OnSkip | None = None,
        hold: Hold | None = None,
        kind: FillerKind | None = None,
        private: SoundLease | None = None,
    ) -> SpeechHandle | None:
        """Schedule one filler now; None (and a ``filler_skipped`` event) when it cannot be.

        ``parent`` is the trace context of the tool call it fills (its span's parent).
        ``on_skip`` takes the skip instead (a stream reports each due filler once).
        ``filler_played`` is emitted once its first audio frame goes to the audio output.
        ``hold`` keeps the filler's place in the queue without sounding: it is awaited when
        LiveKit starts reading the audio; None lets it sound, a reason ends it with no audio
        (``filler_skipped``). ``kind`` names a filler that is not for a tool (events, spans).
        ``private``: the text speaks a caller's data (a filled template, an LLM-written
        phrase): its sound is never written to disk and lives in memory only while this
        lease (its call's) lasts.
        """
        if on_skip is None:

            def on_skip(reason: str) -> None:
                self.skip(reason, tool=tool, parent=parent, kind=kind)

        if not self._is_open():  # the last guard: nothing new is scheduled while closing
            on_skip(Verdict.CLOSED.value)
            return None
        source: AudioSource = "text"
        audio: AsyncIterator[rtc.AudioFrame] | None = None
        playing = Playing(tool=tool, on_skip=on_skip, kind=kind)
        tts = tts_of(agent, self._session, self.filler_tts)
        if clip is not None:
            audio, source = replay(clip), "clip"  # no key: no words to cut
        elif tts is not None and needs_audio(agent, self._session):
            key = sound_key(tts, text)
            if private is not None:
                private.add(key)  # held before its render ends, so the call can replay it
            sound = self._voice.audio_for(tts, text, private=private is not None)
            if sound is None:
                on_skip("tts_failed")
                return None
            audio, source = sound
            playing.key = key
            self._find_pauses(playing)
            if playing.pauses is None:
                playing.heard = []
        elif (tts is None and needs_audio(agent, self._session)) or hold is not None:
            # text alone would go through a realtime model's say(), which adds it to the
            # conversation whatever add_to_chat_ctx says, or be refused (no TTS, audio out);
            # a held filler needs audio to hold its place with
            on_skip("no_voice")
            return None
        # else no audio output: the filler is text, nothing is rendered that nobody hears
        playing.source = source
        scheduled: list[SpeechHandle] = []  # the gate learns its handle once say() returns
        if audio is not None and hold is not None:
            audio = self._held(audio, hold, playing)  # played at its first frame, if any
        if audio is not None:
            audio = gated(
                audio,
                playing,
                handle=scheduled,
                keep_playing=lambda sounding: self.keep_playing(
                    agent, allow_interruptions=allow_interruptions, sounding=sounding
                ),
                heard=lambda handle: self._record.heard(handle, playing),
                pending_cut=lambda handle: self._pending_cut(handle, playing),
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
            on_skip("refused")
            return None
        finally:
            self.saying = False
        mark_filler(handle)
        scheduled.append(handle)
        if audio is not None:
            self._playing[handle] = playing
            if playing.key is not None:
                self._voice.cache.hold(playing.key)  # a playing sound stays in memory
            handle.add_done_callback(self._forget)
        self._spans.played(handle, tool=tool, source=source, text=text, parent=parent, kind=kind)
        if audio is None:
            self._record.heard(handle, playing)  # no audio of ours to watch: played when scheduled
        logger.debug("filler scheduled", extra={"speech_id": handle.id, "tool": tool})
        return handle

    async def _held(
        self,
        audio: AsyncIterator[rtc.AudioFrame],
        hold: Hold,
        playing: Playing,
    ) -> AsyncIterator[rtc.AudioFrame]:
        """``audio``, once ``hold`` lets it sound; nothing when it returns a reason (the
        filler's one skip: the gate then reports no render failure)."""
        try:
            reason = await hold()
            if reason is not None:
                skip = playing.hold_refused()
                if skip is not None:
                    skip(reason)
                return
            async for frame in audio:
                yield frame
        finally:
            close = getattr(audio, "aclose", None)
            if close is not None:
                await close()

    def answer_window(self, finish_within: float | None = None) -> float:
        """Seconds a filler may go on once the tool's result is ready without delaying the
        reply: the learned answer lead (0 with a realtime model, whose answer is audio at
        once), else ``finish_within`` (default: the session's)."""
        if self._answers_at_once():
            return 0.0
        lead = self.answer_lead()
        if lead is not None:
            return lead
        return self.finish_within if finish_within is None else finish_within

    def _answers_at_once(self) -> bool:
        """A realtime model's answer is audio ready the moment the tool returns: there is no
        LLM and TTS lead time for a filler to end in, so a graceful end would delay it."""
        try:
            agent = self._session.current_agent
        except RuntimeError:  # not running: nothing to end gracefully for
            return True
        return isinstance(llm_of(agent, self._session), llm.RealtimeModel)

    def cut(self, handle: SpeechHandle, *, reason: str, tool: str | None) -> bool:
        """Stop a filler that is still queued or playing; True when it was (or will be).

        A queued filler is dropped. A playing one stopped because the tool's result is ready
        (:data:`GRACEFUL_REASONS`) ends gracefully when its pauses are known: it finishes if
        it ends within the :meth:`answer_window`, else it ends at the last pause between
        words before the reply is due (once replies are timed), or at its next pause (within
        :data:`MAX_CUT_WAIT`), with a fade.
        Real speech, a hand-off, the user and a closing session cut it at once.
        """
        if handle.done() or handle.interrupted:
            return False
        playing = self._playing.get(handle)
        if playing is not None and playing.ending:
            if reason in GRACEFUL_REASONS or reason in KEEPS_A_GRACEFUL_END:
                return True  # already ending at a pause, or finishing
            self._interrupt(handle)  # the user (or a close) does not wait for the pause
            return True
        now = asyncio.get_running_loop().time()
        position = playing.position(now) if playing is not None else None
        if playing is not None:
            self._find_pauses(playing)
        if (
            playing is not None
            and position is not None
            and playing.pauses is not None
            and reason in GRACEFUL_REASONS
            and not self._answers_at_once()
        ):
            end = graceful_end(
                playing.pauses,
                position,
                may_finish=reason in FINISHING_REASONS,
                window=self.answer_window(),
                lead=self.answer_lead(),
                streaming=playing.heard is not None,
            )
            if end == FINISH:
                playing.finish()
                self._record.cut(handle, playing, reason, tool, stop=playing.pauses.duration)
                return True
            if end == AWAIT_PAUSE:
                # the rest is still arriving from the render: the gate stops at its next pause
                playing.await_pause(reason, tool)
                return True
            if end is not None:
                self._stop_at(handle, playing, end, reason, tool)
                return True
        if playing is not None:
            if position is None:
                playing.drop()  # not sounding yet: the gate lets no frame out any more
            else:
                playing.cut_now()
        handle.interrupt(force=True)
        self._record.cut(handle, playing, reason, tool, stop=position)
        return True

    def sounding(self, handle: SpeechHandle | None) -> bool:
        """True once ``handle``'s audio is playing (the audio output started it)."""
        if handle is None:
            return False
        playing = self._playing.get(handle)
        return playing is None or playing.synced

    def cut_all(self, *, reason: str) -> None:
        """Cut every filler of ours still queued or sounding (a hand-off: at once)."""
        for handle in list(self._playing):
            self.cut(handle, reason=reason, tool=None)

    def _stop_at(
        self, handle: SpeechHandle, playing: Playing, stop: float, reason: str, tool: str | None
    ) -> None:
        """End a playing filler ``stop`` s into its audio: the gate lets nothing after it out,
        and what the audio output holds beyond it is cleared then."""
        assert playing.started_at is not None
        timer = asyncio.get_running_loop().call_at(
            playing.started_at + stop, self._interrupt, handle
        )
        playing.stop(stop, timer)
        self._record.cut(handle, playing, reason, tool, stop=stop)

    def _pending_cut(self, handle: SpeechHandle, playing: Playing) -> None:
        """A frame arrived for a filler whose graceful cut waits for a pause: cut at it now
        if it is known, or where the gate is once no pause came within :data:`MAX_CUT_WAIT`."""
        if playing.phase is not Phase.AWAITING_PAUSE:
            return
        reason, tool = playing.cut_for
        position = playing.position(asyncio.get_running_loop().time()) or 0.0
        playing.pauses = None
        self._find_pauses(playing)
        stop = playing.pauses.next_cut(position) if playing.pauses is not None else math.inf
        if stop - position <= MAX_CUT_WAIT:
            self._stop_at(handle, playing, stop, reason, tool)
        elif playing.sent - position > MAX_CUT_WAIT:
            self._stop_at(handle, playing, position, reason, tool)  # no pause came: now

    def playback_started(self, handle: SpeechHandle) -> None:
        """The audio output started playing ``handle`` (the agent is speaking): its audio's
        clock starts now (the gate's first frame went out a moment earlier)."""
        playing = self._playing.get(handle)
        if playing is not None:
            playing.sync(asyncio.get_running_loop().time())

    def _find_pauses(self, playing: Playing) -> None:
        """Learn a filler's pauses once its whole sound is rendered (found once per sound);
        until then, the pauses in the audio it has let through (those ahead of what plays)."""
        if playing.pauses is None and playing.key is not None:
            playing.learn_pauses(self._voice.cache.peek(playing.key))

    def _interrupt(self, handle: SpeechHandle) -> None:
        if not handle.done() and not handle.interrupted:
            handle.interrupt(force=True)

    def _forget(self, handle: SpeechHandle) -> None:
        self.last_end = asyncio.get_running_loop().time()
        playing = self._playing.pop(handle, None)
        if playing is not None and playing.timer is not None:
            playing.timer.cancel()
        if playing is not None and playing.key is not None:
            self._voice.cache.release(playing.key)

    def skip(
        self,
        reason: str,
        *,
        tool: str | None = None,
        parent: TraceContext | None = None,
        counted: bool = True,
        kind: FillerKind | None = None,
    ) -> None:
        """Record a filler that was not played (see :meth:`.FillerRecord.skip`)."""
        self._record.skip(reason, tool=tool, parent=parent, counted=counted, kind=kind)

    async def follow(
        self, handle: SpeechHandle, *, agent: Agent, allow_interruptions: bool, tool: str | None
    ) -> None:
        """Wait for a filler to end, cutting it the moment its agent loses the floor."""
        await follow(
            handle,
            keep_playing=lambda: self.keep_playing(
                agent, allow_interruptions=allow_interruptions, sounding=self.sounding(handle)
            ),
            on_lost=lambda verdict: self.cut(handle, reason=_cut_reason(verdict), tool=tool),
        )


def _cut_reason(verdict: Verdict) -> str:
    return "user_speech" if verdict is Verdict.USER_SPEAKING else verdict.value
