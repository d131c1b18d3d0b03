"""A scripted :class:`llm.RealtimeModel` (speech-to-speech) that speaks tones, with no network.

It answers like :class:`~livekit_filler.testing.FakeLLM` (the same :class:`FakeResponse`
scripts), but as a realtime model does: each reply is a generation carrying the spoken audio,
its transcript and the tool calls, and the model keeps its own conversation, which LiveKit
updates with ``update_chat_ctx``. Every update is recorded, so a test can assert that
nothing it should not know (a filler) ever reached the model.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from livekit import rtc
from livekit.agents import NOT_GIVEN, NotGivenOr, llm, utils

from .fake_llm import FakeResponse, Script, _trigger

__all__ = ["FakeRealtimeModel", "FakeRealtimeSession"]

_TONE_HZ = 180.0  # lower than FakeTTS's tone: the model's voice, not the filler voice
_AMPLITUDE = 0.05
_FRAME_SECONDS = 0.05
_CHUNK_CHARS = 12
_OKAY = FakeResponse(text="Okay.")


class FakeRealtimeModel(llm.RealtimeModel):
    """A realtime model that answers from a script with audio, transcripts and tool calls.

    The script sees the model's conversation with its instructions first, as a system
    message, so the scripts written for :class:`FakeLLM` work unchanged. Each reply waits
    ``ttft`` (or the response's own), then streams its text and a tone lasting
    ``len(text) * seconds_per_char`` seconds, faster than real time as a real model does,
    then its tool calls.

    Example:
        ```python
        model = FakeRealtimeModel(
            {
                "What's the weather?": FakeResponse(
                    text="Let me check.", tool_calls=[FakeToolCall("get_weather")]
                ),
                "sunny": FakeResponse(text="It's sunny."),
            }
        )
        async with make_session(llm=model, tts=None) as session:
            ...
        assert "One moment." not in model.conversation_texts()
        ```
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        default: FakeResponse | None = _OKAY,
        ttft: float = 0.2,
        seconds_per_char: float = 0.03,
        chars_per_second: float = 400.0,
        sample_rate: int = 24000,
        turn_detection: bool = False,
        supports_say: bool = False,
        auto_tool_reply_generation: bool = False,
    ) -> None:
        """Create the fake.

        Args:
            script: A mapping from trigger text (the last user message or tool output) to
                reply, or a callable taking the conversation and returning a reply or None.
            default: Reply when the script has none; None replies with nothing.
            ttft: Default seconds from a reply's request to its first audio.
            seconds_per_char: Seconds of audio per character of a reply's text.
            chars_per_second: Pace at which a reply's text and audio are generated.
            sample_rate: Sample rate of the int16 mono audio, in Hz.
            turn_detection: The model detects the user's turns itself (server-side VAD):
                drive them with :meth:`FakeRealtimeSession.user_speaks`.
            supports_say: ``session.say(text)`` without audio may go through the model,
                which then adds the text to its conversation (as real models do).
            auto_tool_reply_generation: The model answers by itself once tool outputs
                reach it, instead of LiveKit asking for the reply.

        Raises:
            ValueError: If a duration is negative or a rate is not positive.
        """
        super().__init__(
            capabilities=llm.RealtimeCapabilities(
                message_truncation=True,
                turn_detection=turn_detection,
                user_transcription=turn_detection,
                auto_tool_reply_generation=auto_tool_reply_generation,
                audio_output=True,
                manual_function_calls=True,
                mutable_chat_context=True,
                mutable_instructions=True,
                mutable_tools=True,
                supports_say=supports_say,
            )
        )
        if ttft < 0 or seconds_per_char < 0:
            raise ValueError("ttft and seconds_per_char must be non-negative")
        if chars_per_second <= 0 or sample_rate <= 0:
            raise ValueError("chars_per_second and sample_rate must be positive")
        self._script = script
        self._default = default
        self.ttft = ttft
        self.seconds_per_char = seconds_per_char
        self.chars_per_second = chars_per_second
        self.sample_rate = sample_rate
        self.sessions: list[FakeRealtimeSession] = []
        """Every session created, in order (LiveKit makes one per agent activity)."""
        self.chat_ctx_updates: list[llm.ChatContext] = []
        """A copy of every conversation LiveKit sent with ``update_chat_ctx``, all sessions."""
        self.said: list[str] = []
        """Texts LiveKit asked the model to speak with ``say()``."""
        self.requests: list[llm.ChatContext] = []
        """The conversation (instructions first) each reply was generated from."""

    @property
    def model(self) -> str:
        """The model name reported in metrics."""
        return "fake-realtime"

    @property
    def provider(self) -> str:
        """The provider name reported in metrics."""
        return "livekit_filler.testing"

    @property
    def current(self) -> FakeRealtimeSession:
        """The latest session (the running agent's).

        Raises:
            RuntimeError: No session was created yet.
        """
        if not self.sessions:
            raise RuntimeError("no realtime session yet: start the AgentSession first")
        return self.sessions[-1]

    def session(self, *, turn_detection_disabled: bool = False) -> FakeRealtimeSession:
        """Create a session (LiveKit calls this for each agent activity)."""
        session = FakeRealtimeSession(self)
        self.sessions.append(session)
        return session

    async def aclose(self) -> None:
        """Close every session."""
        for session in self.sessions:
            await session.aclose()

    def response_for(self, chat_ctx: llm.ChatContext) -> FakeResponse | None:
        """Return the scripted reply for ``chat_ctx``, or the default."""
        response: FakeResponse | None = None
        if callable(self._script):
            response = self._script(chat_ctx)
        elif self._script is not None:
            response = self._script.get(_trigger(chat_ctx))
        return response if response is not None else self._default

    def conversation_texts(self) -> list[str]:
        """Every message text the model was ever told or asked to say.

        From every ``update_chat_ctx``, every session's current conversation, and ``say()``.
        """
        contexts = [*self.chat_ctx_updates, *(s.chat_ctx for s in self.sessions)]
        texts = [
            item.text_content or ""
            for ctx in contexts
            for item in ctx.items
            if isinstance(item, llm.ChatMessage)
        ]
        return [*texts, *self.said]

    def duration_for(self, text: str) -> float:
        """Seconds of audio the model speaks for ``text``."""
        return len(text) * self.seconds_per_char

    def _frames(self, text: str) -> list[rtc.AudioFrame]:
        samples = round(self.duration_for(text) * self.sample_rate)
        t = np.arange(samples, dtype=np.float64) / self.sample_rate
        pcm = (np.sin(2 * math.pi * _TONE_HZ * t) * (_AMPLITUDE * 32767)).astype(np.int16)
        step = round(_FRAME_SECONDS * self.sample_rate)
        return [
            rtc.AudioFrame(
                data=pcm[i : i + step].tobytes(),
                sample_rate=self.sample_rate,
                num_channels=1,
                samples_per_channel=len(pcm[i : i + step]),
            )
            for i in range(0, samples, step)
        ]


class FakeRealtimeSession(llm.RealtimeSession[Literal["input_audio_transcription_completed"]]):
    """One conversation with a :class:`FakeRealtimeModel` (one per agent activity)."""

    def __init__(self, model: FakeRealtimeModel) -> None:
        """Use :meth:`FakeRealtimeModel.session`."""
        super().__init__(model)
        self._model = model
        self._chat_ctx = llm.ChatContext.empty()
        self._tools = llm.ToolContext.empty()
        self.instructions = ""
        """The instructions LiveKit set last."""
        self.tool_choice: llm.ToolChoice | None = None
        self.audio_frames_received = 0
        """Audio frames of the user pushed to the model."""
        self.interrupts = 0
        """Times LiveKit cancelled the current generation."""
        self._generation: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- the model's conversation ------------------------------------------------------------

    @property
    def chat_ctx(self) -> llm.ChatContext:
        """A copy of the model's conversation."""
        return self._chat_ctx.copy()

    @property
    def tools(self) -> llm.ToolContext:
        """The tools LiveKit set last."""
        return self._tools.copy()

    async def update_instructions(self, instructions: str) -> None:
        """Replace the instructions."""
        self.instructions = instructions

    async def update_chat_ctx(self, chat_ctx: llm.ChatContext) -> None:
        """Replace the conversation (recorded in ``chat_ctx_updates``)."""
        self._model.chat_ctx_updates.append(chat_ctx.copy())
        self._chat_ctx = chat_ctx.copy()
        await asyncio.sleep(0)
        if self._model.capabilities.auto_tool_reply_generation and _ends_with_tool_output(chat_ctx):
            self._start(user_initiated=False)

    async def update_tools(self, tools: list[llm.Tool]) -> None:
        """Replace the tools."""
        self._tools = llm.ToolContext(tools)

    def update_options(self, *, tool_choice: NotGivenOr[llm.ToolChoice | None] = NOT_GIVEN) -> None:
        """Record the tool choice."""
        if utils.is_given(tool_choice):
            self.tool_choice = tool_choice

    # -- audio in ----------------------------------------------------------------------------

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        """Count the user's audio (the fake does not listen to it)."""
        self.audio_frames_received += 1

    def push_video(self, frame: rtc.VideoFrame) -> None:
        """Ignore video."""

    def commit_audio(self) -> None:
        """Nothing to commit: the fake does not listen to audio."""

    def clear_audio(self) -> None:
        """Nothing to clear."""

    def user_speaks(self, text: str = "", *, duration: float = 0.5) -> asyncio.Task[None]:
        """Simulate the caller speaking, as the model's server-side turn detection hears it.

        ``input_speech_started`` at once, ``input_speech_stopped`` after ``duration``; with
        words, their transcript follows and the model answers by itself (its reply is a
        generation LiveKit did not ask for). Needs ``turn_detection=True``.

        Returns:
            The task that plays the turn out.

        Raises:
            RuntimeError: The model has no server-side turn detection.
        """
        if not self._model.capabilities.turn_detection:
            raise RuntimeError("user_speaks() needs FakeRealtimeModel(turn_detection=True)")
        return self._spawn(self._user_turn(text, duration))

    async def _user_turn(self, text: str, duration: float) -> None:
        self.emit("input_speech_started", llm.InputSpeechStartedEvent())
        await asyncio.sleep(duration)
        self.emit(
            "input_speech_stopped", llm.InputSpeechStoppedEvent(user_transcription_enabled=True)
        )
        if not text:
            return
        message = llm.ChatMessage(role="user", content=[text])
        self._chat_ctx.items.append(message)
        self.emit(
            "input_audio_transcription_completed",
            llm.InputTranscriptionCompleted(item_id=message.id, transcript=text, is_final=True),
        )
        self._start(user_initiated=False)

    # -- replies -----------------------------------------------------------------------------

    def generate_reply(
        self,
        *,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        tools: NotGivenOr[list[llm.Tool]] = NOT_GIVEN,
    ) -> asyncio.Future[llm.GenerationCreatedEvent]:
        """Start the scripted reply to the conversation so far."""
        return self._start(user_initiated=True)

    def say(self, text: str | Any) -> asyncio.Future[llm.GenerationCreatedEvent]:
        """Speak ``text`` and add it to the conversation (only with ``supports_say``)."""
        if not self._model.capabilities.supports_say:
            return super().say(text)
        if not isinstance(text, str):
            raise TypeError("FakeRealtimeSession.say() takes a str")
        self._model.said.append(text)
        return self._start(user_initiated=True, response=FakeResponse(text=text, ttft=0.0))

    def interrupt(self) -> None:
        """Cancel the reply being generated, if any."""
        self.interrupts += 1
        if self._generation is not None and not self._generation.done():
            self._generation.cancel()

    def truncate(
        self,
        *,
        message_id: str,
        modalities: list[Literal["text", "audio"]],
        audio_end_ms: int,
        audio_transcript: NotGivenOr[str] = NOT_GIVEN,
    ) -> None:
        """Keep only what the user heard of a message."""
        for item in self._chat_ctx.items:
            if isinstance(item, llm.ChatMessage) and item.id == message_id:
                item.content = [audio_transcript if utils.is_given(audio_transcript) else ""]

    async def aclose(self) -> None:
        """Stop every generation."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start(
        self, *, user_initiated: bool, response: FakeResponse | None = None
    ) -> asyncio.Future[llm.GenerationCreatedEvent]:
        created: asyncio.Future[llm.GenerationCreatedEvent] = (
            asyncio.get_running_loop().create_future()
        )
        if self._closed:
            created.set_exception(llm.RealtimeError("the realtime session is closed"))
            return created
        if response is None:
            request = self._chat_ctx.copy()
            request.items.insert(0, llm.ChatMessage(role="system", content=[self.instructions]))
            self._model.requests.append(request)
            response = self._model.response_for(request) or FakeResponse()
        self._generation = self._spawn(self._generate(response, created, user_initiated))
        return created

    async def _generate(
        self,
        response: FakeResponse,
        created: asyncio.Future[llm.GenerationCreatedEvent],
        user_initiated: bool,
    ) -> None:
        model = self._model
        messages = utils.aio.Chan[llm.MessageGeneration]()
        functions = utils.aio.Chan[llm.FunctionCall]()
        text_ch = utils.aio.Chan[str]()
        audio_ch = utils.aio.Chan[rtc.AudioFrame]()
        event = llm.GenerationCreatedEvent(
            message_stream=messages,
            function_stream=functions,
            user_initiated=user_initiated,
            response_id=utils.shortuuid("fake_resp_"),
        )
        if not created.done():
            created.set_result(event)
        if not user_initiated:
            self.emit("generation_created", event)
        try:
            await asyncio.sleep(model.ttft if response.ttft is None else response.ttft)
            if response.text:
                modalities: asyncio.Future[list[Literal["text", "audio"]]] = (
                    asyncio.get_running_loop().create_future()
                )
                modalities.set_result(["audio", "text"])
                message = llm.ChatMessage(role="assistant", content=[response.text])
                self._chat_ctx.items.append(message)
                messages.send_nowait(
                    llm.MessageGeneration(
                        message_id=message.id,
                        text_stream=text_ch,
                        audio_stream=audio_ch,
                        modalities=modalities,
                    )
                )
                await self._speak(response.text, text_ch, audio_ch)
            text_ch.close()
            audio_ch.close()
            for call in _function_calls(response):
                self._chat_ctx.items.append(call)
                functions.send_nowait(call)
        finally:
            for ch in (text_ch, audio_ch, messages, functions):
                ch.close()

    async def _speak(
        self, text: str, text_ch: utils.aio.Chan[str], audio_ch: utils.aio.Chan[rtc.AudioFrame]
    ) -> None:
        model = self._model
        for start in range(0, len(text), _CHUNK_CHARS):
            chunk = text[start : start + _CHUNK_CHARS]
            text_ch.send_nowait(chunk)
            for frame in model._frames(chunk):
                audio_ch.send_nowait(frame)
            await asyncio.sleep(len(chunk) / model.chars_per_second)


def _function_calls(response: FakeResponse) -> Sequence[llm.FunctionCall]:
    return [
        llm.FunctionCall(
            call_id=utils.shortuuid("call_"),
            name=call.name,
            arguments=json.dumps(dict(call.arguments)),
        )
        for call in response.tool_calls
    ]


def _ends_with_tool_output(chat_ctx: llm.ChatContext) -> bool:
    return bool(chat_ctx.items) and isinstance(chat_ctx.items[-1], llm.FunctionCallOutput)
