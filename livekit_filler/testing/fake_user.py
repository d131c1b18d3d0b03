"""Simulate a caller speaking into a headless :class:`AgentSession`, with no room or network.

:class:`UserSpeechSimulator` drives LiveKit's real audio input pipeline:

- :class:`FakeAudioInput` is set as ``session.input.audio``. It yields 10 ms mono frames in
  real time: silence, except while the simulated user speaks, when every sample holds a
  small non-zero *marker* that identifies the utterance.
- :class:`FakeVAD` is an energy VAD: a frame with any non-zero sample is speech. Its stream
  emits ``START_OF_SPEECH``, one ``INFERENCE_DONE`` per frame and ``END_OF_SPEECH``, like
  silero's, so ``user_state``, ``min_duration`` interruptions and endpointing all run
  through the framework's own code.
- :class:`FakeSTT` reads the marker back and returns the utterance's scripted text as a
  ``FINAL_TRANSCRIPT`` shortly after the speech ends. Because it only "hears" what reaches
  it, it behaves like a real STT when the framework swaps the audio for silence (for
  example while non-interruptible agent speech plays and
  ``discard_audio_if_uninterruptible`` is on): no transcript, no user turn.

Times on :class:`UserUtterance` are on the event loop clock (``loop.time()``), like
:class:`~livekit_filler.testing.fake_audio.PlayedSegment`.

Recommended session settings for fast, deterministic tests are returned by
:meth:`UserSpeechSimulator.session_kwargs`:

- ``turn_handling["turn_detection"] = "vad"``: the default is LiveKit's cloud
  ``TurnDetector``, which needs the network.
- ``turn_handling["endpointing"]["min_delay"]`` small (0.1 s): the wait after the user
  stops before the turn is committed.
- ``turn_handling["interruption"]``: ``mode="vad"`` (no cloud adaptive detector),
  ``min_duration`` (seconds of user speech before agent speech is interrupted; LiveKit's
  default is 0.5), ``false_interruption_timeout=None`` so an interruption is final.
- ``turn_handling["preemptive_generation"] = {"enabled": False}``: one LLM call per turn.
- ``aec_warmup_duration=None``: otherwise the first 3 s of agent speech ignore the user.
- ``session_close_transcript_timeout`` just above the STT delay: on close LiveKit feeds the
  STT silence and waits this long (default 2 s) for a final transcript that, with no speech
  pending, never comes.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal, Protocol, TypedDict

from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    LanguageCode,
    NotGivenOr,
    TurnHandlingOptions,
    stt,
    vad,
)
from livekit.agents.utils import AudioBuffer
from livekit.agents.voice import AgentSession, io

__all__ = [
    "FakeAudioInput",
    "FakeSTT",
    "FakeVAD",
    "SessionKwargs",
    "UserSpeechSimulator",
    "UserUtterance",
    "UserUtteranceSink",
]

# Markers are int16 sample values; 0 is silence.
_MAX_MARKER = 32000
# How far the audio clock may fall behind before it stops catching up with a burst.
_MAX_LAG = 0.2
# Extra seconds say() allows for the audio input to play an utterance out.
_PLAYOUT_GRACE = 2.0
# Extra seconds say() allows, beyond the STT delay, for the transcript.
_TRANSCRIPT_GRACE = 0.5


class UserUtteranceSink(Protocol):
    """Anything that records user speech, such as a ``TimelineRecorder``."""

    t0: float
    """Loop time (seconds) that reported times are relative to."""

    def add_user_utterance(self, text: str, start: float, end: float) -> None:
        """Record user speech between ``start`` and ``end`` (seconds after ``t0``)."""


class SessionKwargs(TypedDict):
    """``AgentSession`` keyword arguments for a simulated user (see the module docstring)."""

    vad: FakeVAD
    stt: FakeSTT
    turn_handling: TurnHandlingOptions
    aec_warmup_duration: float | None
    session_close_transcript_timeout: float


class UserUtterance:
    """One simulated utterance and what became of it.

    Times are loop times (``loop.time()``), in seconds; None until they happen.

    Attributes:
        text: The scripted transcript ("" for a noise with no words).
        duration: Seconds of speech.
        started_at: When its first audio frame was produced.
        ended_at: When its last audio frame had played, i.e. when the user went silent.
        transcribed_at: When the STT emitted its transcript (or, for empty text, when
            it noticed the speech end); None if the STT never heard it.
    """

    def __init__(self, text: str, duration: float, marker: int) -> None:
        self.text = text
        self.duration = duration
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.transcribed_at: float | None = None
        self._marker = marker
        loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[None] = loop.create_future()
        self._transcribed: asyncio.Future[None] = loop.create_future()

    @property
    def transcribed(self) -> bool:
        """Whether the STT heard this utterance."""
        return self.transcribed_at is not None

    def __repr__(self) -> str:
        return (
            f"UserUtterance(text={self.text!r}, duration={self.duration!r}, "
            f"started_at={self.started_at!r}, ended_at={self.ended_at!r}, "
            f"transcribed={self.transcribed})"
        )

    def _mark_started(self, now: float) -> None:
        self.started_at = now

    def _mark_ended(self, now: float) -> None:
        self.ended_at = now
        if not self._ended.done():
            self._ended.set_result(None)

    def _mark_transcribed(self) -> None:
        if self.transcribed_at is not None:
            return
        self.transcribed_at = asyncio.get_running_loop().time()
        if not self._transcribed.done():
            self._transcribed.set_result(None)


class _UtteranceBook:
    """Utterances by marker, shared by the audio input and the STT."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._by_marker: dict[int, UserUtterance] = {}
        self.all: list[UserUtterance] = []

    def new(self, text: str, duration: float) -> UserUtterance:
        marker = next(self._counter) % _MAX_MARKER + 1
        utterance = UserUtterance(text, duration, marker)
        self._by_marker[marker] = utterance
        self.all.append(utterance)
        return utterance

    def get(self, marker: int) -> UserUtterance | None:
        return self._by_marker.get(marker)


def _frame_marker(frame: rtc.AudioFrame) -> int:
    """Return the utterance marker carried by ``frame`` (0 for silence)."""
    data = frame.data
    return max(data) if len(data) else 0


class FakeAudioInput(io.AudioInput):
    """An audio input that produces frames in real time, carrying simulated speech.

    Built by :class:`UserSpeechSimulator`; set as ``session.input.audio`` by its
    :meth:`~UserSpeechSimulator.install`.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        frame_duration: float = 0.01,
        timeline: UserUtteranceSink | None = None,
        label: str = "FakeAudioInput",
    ) -> None:
        """Create the input.

        Args:
            sample_rate: Sample rate of the int16 mono frames, in Hz.
            frame_duration: Length of each frame, in seconds.
            timeline: Told about each utterance when it ends.
            label: Label shown in LiveKit's logs.

        Raises:
            ValueError: If ``sample_rate`` or ``frame_duration`` is not positive, or a
                frame would hold no samples.
        """
        super().__init__(label=label)
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate!r}")
        if not frame_duration > 0:
            raise ValueError(f"frame_duration must be positive, got {frame_duration!r}")
        self._samples = round(sample_rate * frame_duration)
        if self._samples < 1:
            raise ValueError(
                f"frame_duration {frame_duration!r} holds no samples at {sample_rate!r} Hz"
            )
        self._sample_rate = sample_rate
        self._frame_duration = self._samples / sample_rate
        self.timeline = timeline
        """Told about each utterance (text, start, end) when it ends."""
        self._silence = bytes(2 * self._samples)
        self._pending: UserUtterance | None = None
        self._current: UserUtterance | None = None
        self._current_pcm = self._silence
        self._frames_left = 0
        self._next_at: float | None = None
        self._closed = False

    @property
    def frame_duration(self) -> float:
        """Length of each frame, in seconds."""
        return self._frame_duration

    @property
    def speaking(self) -> bool:
        """Whether an utterance is waiting to play or playing."""
        return self._pending is not None or self._current is not None

    def close(self) -> None:
        """Stop producing frames; iteration ends within one frame. Idempotent."""
        self._closed = True

    def _start_utterance(self, utterance: UserUtterance) -> None:
        if self.speaking:
            raise RuntimeError("the simulated user is already speaking")
        self._pending = utterance

    async def __anext__(self) -> rtc.AudioFrame:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._next_at is None or now - self._next_at > _MAX_LAG:
            self._next_at = now
        elif self._next_at > now:
            await asyncio.sleep(self._next_at - now)
            now = loop.time()
        self._next_at += self._frame_duration
        if self._closed:
            raise StopAsyncIteration
        return rtc.AudioFrame(
            data=self._next_pcm(now),
            sample_rate=self._sample_rate,
            num_channels=1,
            samples_per_channel=self._samples,
        )

    def _next_pcm(self, now: float) -> bytes:
        if self._current is not None and self._frames_left == 0:
            # the previous frame was the last one of the utterance
            self._finish_utterance(self._current, now)
        if self._current is None and self._pending is not None:
            self._current, self._pending = self._pending, None
            self._current._mark_started(now)
            self._frames_left = max(1, round(self._current.duration / self._frame_duration))
            self._current_pcm = array.array("h", [self._current._marker] * self._samples).tobytes()
        if self._current is None:
            return self._silence
        self._frames_left -= 1
        return self._current_pcm

    def _finish_utterance(self, utterance: UserUtterance, now: float) -> None:
        self._current = None
        utterance._mark_ended(now)
        if self.timeline is not None and utterance.started_at is not None:
            t0 = self.timeline.t0
            self.timeline.add_user_utterance(utterance.text, utterance.started_at - t0, now - t0)


class FakeVAD(vad.VAD):
    """An energy VAD: a frame with any non-zero sample is speech.

    Each frame yields one ``INFERENCE_DONE`` event. ``START_OF_SPEECH`` follows
    ``min_speech_duration`` seconds of consecutive speech frames and ``END_OF_SPEECH``
    follows ``min_silence_duration`` seconds of consecutive silent frames (at least one
    frame). Durations in the events are computed from the frames, like silero's. Any
    number of streams may be open (LiveKit's ``stt.StreamAdapter`` opens its own).
    """

    def __init__(
        self,
        *,
        min_speech_duration: float = 0.0,
        min_silence_duration: float = 0.0,
        update_interval: float = 0.01,
    ) -> None:
        """Create the VAD.

        Args:
            min_speech_duration: Seconds of speech before ``START_OF_SPEECH``.
            min_silence_duration: Seconds of silence before ``END_OF_SPEECH``.
            update_interval: Nominal seconds between inferences (used for metrics).

        Raises:
            ValueError: If a duration is negative or ``update_interval`` is not positive.
        """
        super().__init__(capabilities=vad.VADCapabilities(update_interval=update_interval))
        if not min_speech_duration >= 0:
            raise ValueError(
                f"min_speech_duration must be non-negative, got {min_speech_duration!r}"
            )
        if not min_silence_duration >= 0:
            raise ValueError(
                f"min_silence_duration must be non-negative, got {min_silence_duration!r}"
            )
        if not update_interval > 0:
            raise ValueError(f"update_interval must be positive, got {update_interval!r}")
        self._min_speech = min_speech_duration
        self._min_silence = min_silence_duration

    @property
    def model(self) -> str:
        """The model name reported in metrics."""
        return "fake-vad"

    @property
    def provider(self) -> str:
        """The provider name reported in metrics."""
        return "livekit_filler.testing"

    def stream(self) -> vad.VADStream:
        """Open a stream that classifies pushed frames."""
        return _FakeVADStream(self, self._min_speech, self._min_silence)


class _FakeVADStream(vad.VADStream):
    def __init__(self, fake: FakeVAD, min_speech: float, min_silence: float) -> None:
        self._min_speech = min_speech
        self._min_silence = min_silence
        super().__init__(fake)

    async def _main_task(self) -> None:
        speaking = False
        speech_duration = 0.0  # of the current segment, while speaking
        silence_duration = 0.0  # since the last segment, while not speaking
        raw_speech = 0.0  # consecutive speech frames
        raw_silence = 0.0  # consecutive silent frames
        samples_index = 0
        onset: list[rtc.AudioFrame] = []  # speech frames before START_OF_SPEECH
        segment: list[rtc.AudioFrame] = []  # frames of the current segment

        # _input_ch and _FlushSentinel are VADStream's documented subclass contract
        async for item in self._input_ch:
            if isinstance(item, vad.VADStream._FlushSentinel):
                # a hard segment boundary: forget everything, emit nothing
                speaking = False
                speech_duration = silence_duration = raw_speech = raw_silence = 0.0
                onset, segment = [], []
                continue

            frame = item
            voiced = _frame_marker(frame) != 0
            step = frame.duration
            samples_index += frame.samples_per_channel
            timestamp = samples_index / frame.sample_rate
            if voiced:
                raw_speech += step
                raw_silence = 0.0
            else:
                raw_silence += step
                raw_speech = 0.0

            transition: vad.VADEvent | None = None
            if speaking:
                segment.append(frame)
                speech_duration += step
                if not voiced and raw_silence >= max(self._min_silence, step):
                    speaking = False
                    transition = vad.VADEvent(
                        type=vad.VADEventType.END_OF_SPEECH,
                        samples_index=samples_index,
                        timestamp=timestamp,
                        speech_duration=speech_duration,
                        silence_duration=raw_silence,
                        frames=segment,
                    )
                    speech_duration, silence_duration, segment = 0.0, raw_silence, []
            else:
                silence_duration += step
                if voiced:
                    onset.append(frame)
                    if raw_speech >= self._min_speech:
                        speaking = True
                        speech_duration, silence_duration = raw_speech, 0.0
                        segment, onset = onset, []
                        transition = vad.VADEvent(
                            type=vad.VADEventType.START_OF_SPEECH,
                            samples_index=samples_index,
                            timestamp=timestamp,
                            speech_duration=speech_duration,
                            silence_duration=0.0,
                            frames=list(segment),
                        )
                else:
                    onset.clear()

            self._event_ch.send_nowait(
                vad.VADEvent(
                    type=vad.VADEventType.INFERENCE_DONE,
                    samples_index=samples_index,
                    timestamp=timestamp,
                    speech_duration=speech_duration,
                    silence_duration=silence_duration,
                    frames=[frame],
                    probability=1.0 if voiced else 0.0,
                    speaking=speaking,
                    raw_accumulated_speech=raw_speech,
                    raw_accumulated_silence=raw_silence,
                )
            )
            if transition is not None:
                self._event_ch.send_nowait(transition)


class FakeSTT(stt.STT[Literal["metrics_collected", "error"]]):
    """An STT that returns the scripted text of the simulated utterances it hears.

    Built by :class:`UserSpeechSimulator`. With ``streaming=True`` the session streams
    audio to it; its stream emits ``START_OF_SPEECH`` at an utterance's first frame,
    then ``FINAL_TRANSCRIPT`` (unless the text is empty) and ``END_OF_SPEECH``
    ``transcript_delay`` seconds after its last one. With ``streaming=False`` LiveKit
    wraps it in an ``stt.StreamAdapter`` driven by the session's VAD, which calls
    :meth:`recognize` on each speech segment.
    """

    def __init__(
        self,
        *,
        book: _UtteranceBook,
        streaming: bool = True,
        transcript_delay: float = 0.05,
        language: str = "en",
    ) -> None:
        """Create the STT.

        Args:
            book: The simulator's utterances.
            streaming: Whether to offer ``stream()``.
            transcript_delay: Seconds from the end of speech to the transcript.
            language: Language code reported with transcripts.

        Raises:
            ValueError: If ``transcript_delay`` is negative.
        """
        super().__init__(
            capabilities=stt.STTCapabilities(streaming=streaming, interim_results=False)
        )
        if not transcript_delay >= 0:
            raise ValueError(f"transcript_delay must be non-negative, got {transcript_delay!r}")
        self._book = book
        self._transcript_delay = transcript_delay
        self._language = LanguageCode(language)

    @property
    def model(self) -> str:
        """The model name reported in metrics."""
        return "fake-stt"

    @property
    def provider(self) -> str:
        """The provider name reported in metrics."""
        return "livekit_filler.testing"

    @property
    def transcript_delay(self) -> float:
        """Seconds from the end of speech to the transcript."""
        return self._transcript_delay

    def _speech_data(self, text: str) -> stt.SpeechData:
        return stt.SpeechData(language=self._language, text=text, confidence=1.0)

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frames = buffer if isinstance(buffer, list) else [buffer]
        heard: list[UserUtterance] = []
        for frame in frames:
            utterance = self._book.get(_frame_marker(frame))
            if utterance is not None and utterance not in heard:
                heard.append(utterance)
        await asyncio.sleep(self._transcript_delay)
        for utterance in heard:
            utterance._mark_transcribed()
        text = " ".join(u.text for u in heard if u.text)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[self._speech_data(text)]
        )

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        """Open a streaming recognition.

        Raises:
            NotImplementedError: If the STT was created with ``streaming=False``.
        """
        if not self.capabilities.streaming:
            return super().stream(language=language, conn_options=conn_options)
        return _FakeRecognizeStream(self, conn_options=conn_options)


class _FakeRecognizeStream(stt.RecognizeStream):
    def __init__(self, fake: FakeSTT, *, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=fake, conn_options=conn_options)
        self._fake = fake
        # transcripts waiting for the STT delay, by timer
        self._pending: dict[asyncio.TimerHandle, UserUtterance] = {}

    async def _run(self) -> None:
        current = 0
        try:
            # _input_ch and _FlushSentinel are RecognizeStream's documented subclass contract
            async for item in self._input_ch:
                if isinstance(item, stt.RecognizeStream._FlushSentinel):
                    if current:
                        self._finish(current, delay=0.0)
                        current = 0
                    continue
                marker = _frame_marker(item)
                if marker == current:
                    continue
                if current:
                    self._finish(current, delay=self._fake.transcript_delay)
                if marker:
                    self._event_ch.send_nowait(
                        stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH)
                    )
                current = marker
            # input ended: deliver everything now, as a real STT flushes at end of input
            if current:
                self._finish(current, delay=0.0)
            for timer, utterance in list(self._pending.items()):
                timer.cancel()
                self._emit(utterance)
        finally:
            for timer in self._pending:
                timer.cancel()
            self._pending.clear()

    def _finish(self, marker: int, *, delay: float) -> None:
        utterance = self._fake._book.get(marker)
        if utterance is None:
            return
        if delay <= 0:
            self._emit(utterance)
            return

        def fire() -> None:
            self._pending.pop(timer, None)
            self._emit(utterance)

        timer = asyncio.get_running_loop().call_later(delay, fire)
        self._pending[timer] = utterance

    def _emit(self, utterance: UserUtterance) -> None:
        if self._event_ch.closed:
            return
        if utterance.text:
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                    alternatives=[self._fake._speech_data(utterance.text)],
                )
            )
        self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH))
        utterance._mark_transcribed()


class UserSpeechSimulator:
    """A scripted caller for a headless ``AgentSession``.

    Example:
        ```python
        user = UserSpeechSimulator()
        session = AgentSession(llm=FakeLLM(), tts=FakeTTS(), **user.session_kwargs())
        user.install(session)
        await session.start(MyAgent())
        await user.say("What's the weather in Paris?")
        ```
    """

    def __init__(
        self,
        *,
        timeline: UserUtteranceSink | None = None,
        transcript_delay: float = 0.05,
        streaming_stt: bool = True,
        min_speech_duration: float = 0.0,
        min_silence_duration: float = 0.0,
        sample_rate: int = 16000,
        frame_duration: float = 0.01,
        language: str = "en",
    ) -> None:
        """Create the simulator and its VAD, STT and audio input.

        Args:
            timeline: Told about each utterance (text, start, end) when it ends, e.g. a
                ``TimelineRecorder``.
            transcript_delay: Seconds from the end of speech to the final transcript.
            streaming_stt: Whether :attr:`stt` streams; if not, LiveKit wraps it in an
                ``stt.StreamAdapter`` using the session's VAD.
            min_speech_duration: Seconds of speech before the VAD reports its start.
            min_silence_duration: Seconds of silence before the VAD reports its end
                (silero's default is 0.55; 0 ends it at the first silent frame).
            sample_rate: Sample rate of the audio input, in Hz.
            frame_duration: Length of each audio frame, in seconds.
            language: Language code reported with transcripts.

        Raises:
            ValueError: If an argument is out of range.
        """
        self._book = _UtteranceBook()
        self._audio_input = FakeAudioInput(
            sample_rate=sample_rate, frame_duration=frame_duration, timeline=timeline
        )
        self._vad = FakeVAD(
            min_speech_duration=min_speech_duration,
            min_silence_duration=min_silence_duration,
            update_interval=self._audio_input.frame_duration,
        )
        self._stt = FakeSTT(
            book=self._book,
            streaming=streaming_stt,
            transcript_delay=transcript_delay,
            language=language,
        )
        self._session: AgentSession[Any] | None = None

    @property
    def vad(self) -> FakeVAD:
        """The VAD to pass as ``AgentSession(vad=...)``."""
        return self._vad

    @property
    def stt(self) -> FakeSTT:
        """The STT to pass as ``AgentSession(stt=...)``."""
        return self._stt

    @property
    def audio_input(self) -> FakeAudioInput:
        """The audio input that :meth:`install` sets on the session."""
        return self._audio_input

    @property
    def utterances(self) -> Sequence[UserUtterance]:
        """Every utterance started so far, in order."""
        return tuple(self._book.all)

    def session_kwargs(
        self,
        *,
        turn_detection: Literal["vad", "stt"] = "vad",
        endpointing_delay: float = 0.1,
        min_interruption_duration: float = 0.2,
        false_interruption_timeout: float | None = None,
    ) -> SessionKwargs:
        """Return ``AgentSession`` keyword arguments that wire in this simulated user.

        They pass :attr:`vad` and :attr:`stt`, and set turn handling for fast, offline
        tests (see the module docstring). Use them as
        ``AgentSession(llm=..., tts=..., **user.session_kwargs())``.

        Args:
            turn_detection: ``"vad"`` commits the turn from VAD end of speech and the
                transcript; ``"stt"`` from the STT's end of speech.
            endpointing_delay: Seconds of silence before the user turn is committed
                (``endpointing.min_delay``; LiveKit's default is 0.5).
            min_interruption_duration: Seconds of user speech before interruptible agent
                speech is interrupted (``interruption.min_duration``; default 0.5).
            false_interruption_timeout: Seconds of silence after an interruption without
                a transcript before the agent resumes, if its audio output can pause;
                None makes every interruption final.

        Returns:
            ``vad``, ``stt``, ``turn_handling``, ``aec_warmup_duration`` and
            ``session_close_transcript_timeout``.
        """
        return SessionKwargs(
            vad=self._vad,
            stt=self._stt,
            turn_handling={
                "turn_detection": turn_detection,
                "endpointing": {"min_delay": endpointing_delay, "max_delay": 1.0},
                "interruption": {
                    "mode": "vad",
                    "min_duration": min_interruption_duration,
                    "false_interruption_timeout": false_interruption_timeout,
                    "resume_false_interruption": false_interruption_timeout is not None,
                },
                "preemptive_generation": {"enabled": False},
            },
            aec_warmup_duration=None,
            session_close_transcript_timeout=self._stt.transcript_delay + _TRANSCRIPT_GRACE,
        )

    def install(
        self, session: AgentSession[Any], *, timeline: UserUtteranceSink | None = None
    ) -> None:
        """Set :attr:`audio_input` as ``session.input.audio``.

        Call it before or after ``session.start()``; LiveKit starts reading the input
        when both have happened. The session must use :attr:`vad` and :attr:`stt`.

        Args:
            session: The session the user speaks to.
            timeline: Told about each utterance from now on, e.g. a ``TimelineRecorder``
                installed on the same session; replaces the one given at construction.

        Raises:
            RuntimeError: If the simulator is installed on another session.
        """
        if self._session is not None and self._session is not session:
            raise RuntimeError("this UserSpeechSimulator is installed on another session")
        self._session = session
        if timeline is not None:
            self._audio_input.timeline = timeline
        session.input.audio = self._audio_input

    def speak(self, text: str, *, duration: float = 0.6) -> UserUtterance:
        """Start speaking ``text`` now, for ``duration`` seconds, without waiting.

        Speech begins with the next audio frame. The VAD reports its start at once, so
        interruptible agent speech is interrupted once ``min_interruption_duration`` of
        it has played; its end after ``duration``; the STT returns ``text`` shortly
        after, and the session commits a user turn after its endpointing delay.

        Args:
            text: What the user says; "" makes a noise the STT finds no words in.
            duration: Seconds of speech.

        Returns:
            The utterance, updated as it plays.

        Raises:
            ValueError: If ``duration`` is not a positive finite number.
            RuntimeError: If not installed, or the user is already speaking.
        """
        if not (duration > 0 and math.isfinite(duration)):
            raise ValueError(f"duration must be a positive number of seconds, got {duration!r}")
        if self._session is None:
            raise RuntimeError("call install(session) before making the user speak")
        if self._audio_input.speaking:
            raise RuntimeError("the simulated user is already speaking")
        utterance = self._book.new(text, duration)
        self._audio_input._start_utterance(utterance)
        return utterance

    async def say(self, text: str, *, duration: float = 0.6) -> UserUtterance:
        """Speak ``text`` now for ``duration`` seconds, and wait for the transcript.

        Returns once the STT has delivered the transcript (or, for empty text, noticed
        the end of speech), or when it evidently never heard the speech (the session
        replaced it with silence). The user turn is committed after the session's
        endpointing delay, so this returns before the agent answers.

        Args:
            text: What the user says; "" makes a noise the STT finds no words in.
            duration: Seconds of speech.

        Returns:
            The utterance; check ``transcribed`` to see whether the STT heard it.

        Raises:
            ValueError: If ``duration`` is not a positive finite number.
            RuntimeError: If not installed, the user is already speaking, or the session
                is not reading the audio input (not started, or closed).
        """
        utterance = self.speak(text, duration=duration)
        try:
            await asyncio.wait_for(asyncio.shield(utterance._ended), duration + _PLAYOUT_GRACE)
        except asyncio.TimeoutError:
            raise RuntimeError(
                "the session is not reading the simulated audio input; "
                "call install(session) and session.start() before say()"
            ) from None
        try:
            await asyncio.wait_for(
                asyncio.shield(utterance._transcribed),
                self._stt.transcript_delay + _TRANSCRIPT_GRACE,
            )
        except asyncio.TimeoutError:
            pass  # the STT never heard it: a legitimate outcome
        return utterance

    async def aclose(self) -> None:
        """Stop the audio input. Idempotent; closing the session is enough in tests."""
        self._audio_input.close()
